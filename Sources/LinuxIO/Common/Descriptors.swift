#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// Small helpers over raw file descriptors, shared by the supervisor and the workers.
/// Everything the daemon opens is close-on-exec, so workers spawned with posix_spawn
/// inherit only the channel they are given explicitly.
public enum Descriptors {
    public static func setNonBlocking(_ fd: Int32, _ on: Bool = true) throws(SystemError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { throw .last("fcntl(F_GETFL) fd \(fd)") }
        let wanted = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        guard wanted == flags || fcntl(fd, F_SETFL, wanted) == 0 else { throw .last("fcntl(F_SETFL) fd \(fd)") }
    }

    public static func setCloseOnExec(_ fd: Int32, _ on: Bool = true) throws(SystemError) {
        let flags = fcntl(fd, F_GETFD)
        guard flags >= 0 else { throw .last("fcntl(F_GETFD) fd \(fd)") }
        let wanted = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC
        guard wanted == flags || fcntl(fd, F_SETFD, wanted) == 0 else { throw .last("fcntl(F_SETFD) fd \(fd)") }
    }

    /// Closes and ignores the result (after close, the descriptor is gone whatever it says).
    public static func close(_ fd: Int32) {
        guard fd >= 0 else { return }
        _ = Glibc.close(fd)
    }

    /// Writes everything, retrying on EINTR and short writes; for blocking descriptors.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = retryingInterrupts { Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
            guard n > 0 else { throw .last("write fd \(fd)") }
            offset += n
        }
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = retryingInterrupts { bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) } }
            guard n > 0 else { throw .last("write fd \(fd)") }
            offset += n
        }
    }

    /// setsockopt with an int value.
    public static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32, _ what: String) throws(SystemError) {
        var value = value
        guard setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw .last("setsockopt \(what)")
        }
    }

    /// The whole content of a small file (/proc, /sys), nil if it cannot be read.
    public static func readSmallFile(_ path: String, limit: Int = 64 * 1024) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let n = retryingInterrupts { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            guard n > 0 else { return n == 0 ? String(decoding: bytes, as: UTF8.self) : nil }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
