#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl

/// A blocking client for the daemon's control socket: one request, one reply line.
/// Used by `mcrelay rule|stats` and by the end-to-end tests.
public enum ControlClient {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func send(_ request: ControlRequest, to path: String, timeout: Duration = .seconds(10)) throws(Failure) -> ControlReply {
        let line = try sendRaw(ControlProtocol.encodeLine(request), to: path, timeout: timeout)
        do { return try ControlProtocol.decodeReply(line) } catch { throw Failure(description: error.description) }
    }

    /// Sends bytes as they are and returns the first reply line (without the newline).
    public static func sendRaw(_ bytes: [UInt8], to path: String, timeout: Duration = .seconds(10)) throws(Failure) -> [UInt8] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: SystemError.last("socket(AF_UNIX)").description) }
        defer { Descriptors.close(fd) }
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))

        let connected: Int32
        do { connected = try UnixSocketAddress.with(path: path) { connect(fd, $0, $1) } } catch {
            throw Failure(description: "cannot connect to \(path): \(SystemError.message(for: error.errno))")
        }
        guard connected == 0 else {
            let code = errno
            let hint = code == ENOENT || code == ECONNREFUSED ? " (is the daemon running?)" : ""
            throw Failure(description: "cannot connect to \(path): \(String(cString: strerror(code)))\(hint)")
        }
        do { try Descriptors.writeAll(fd, bytes) } catch {
            throw Failure(description: "sending to \(path): \(SystemError.message(for: error.errno))")
        }
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = retryingInterrupts { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            if n > 0 {
                reply.append(contentsOf: chunk[0..<n])
                if let newline = reply.firstIndex(of: UInt8(ascii: "\n")) { return Array(reply[..<newline]) }
                continue
            }
            if n == 0 { throw Failure(description: "the daemon at \(path) closed the connection without replying") }
            let code = errno
            if code == EAGAIN || code == EWOULDBLOCK {
                throw Failure(description: "no reply from the daemon at \(path) within \(timeout)")
            }
            throw Failure(description: "reading from \(path): \(SystemError.message(for: code))")
        }
    }
}
