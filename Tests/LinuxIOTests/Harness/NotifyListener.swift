import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// Plays systemd's side of sd_notify: a datagram socket the daemon gets as `$NOTIFY_SOCKET`.
/// Every datagram is kept in order with its arrival time and the sender's pid (SO_PASSCRED),
/// so a test can check who sent what, and when.
final class NotifyListener {
    struct Message: CustomStringConvertible {
        var text: String
        var pid: Int32
        var at: ContinuousClock.Instant
        var lines: [String] { text.split(separator: "\n").map(String.init) }
        func has(_ line: String) -> Bool { lines.contains(line) }
        func value(_ key: String) -> String? {
            lines.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
        }
        var description: String { "[pid \(pid)] " + lines.joined(separator: " | ") }
    }

    let path: String
    let fd: Int32
    private(set) var messages: [Message] = []

    init(path: String) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("notify socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw HarnessError("notify socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        var on: Int32 = 1
        guard bound == 0, setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, 4) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw HarnessError("notify socket \(path): \(message)")
        }
        // Like systemd's own socket: anyone may send (the daemon may run unprivileged).
        chmod(path, 0o777)
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Receives what has arrived, waiting up to `timeout` for the first datagram.
    private func receive(timeout: Duration) {
        var waitMilliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        while true {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, waitMilliseconds) > 0 else { return }
            waitMilliseconds = 0
            var buffer = [UInt8](repeating: 0, count: 4096)
            var control = [UInt8](repeating: 0, count: 64)
            var pid: Int32 = -1
            let count = buffer.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { controlBytes in
                    var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var header = msghdr()
                        header.msg_iov = vectorPointer
                        header.msg_iovlen = 1
                        header.msg_control = controlBytes.baseAddress
                        header.msg_controllen = controlBytes.count
                        let n = recvmsg(fd, &header, Int32(MSG_DONTWAIT))
                        var length = 0
                        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }, SCM_CREDENTIALS = 2
                        if n >= 0, let credentials = cln_cmsg_find(&header, SOL_SOCKET, 2, &length), length >= 12 {
                            pid = credentials.loadUnaligned(as: Int32.self)
                        }
                        return n
                    }
                }
            }
            guard count >= 0 else { return }
            messages.append(Message(text: String(decoding: buffer[0..<count], as: UTF8.self), pid: pid, at: .now))
        }
    }

    /// The first message after index `from` that satisfies `match`, waiting up to `timeout`;
    /// nil if none came. Returns its index too, to continue from.
    func wait(after from: Int = -1, timeout: Duration, _ match: (Message) -> Bool) -> (index: Int, message: Message)? {
        let deadline = ContinuousClock.now + timeout
        var checked = from + 1
        while true {
            while checked < messages.count {
                if match(messages[checked]) { return (checked, messages[checked]) }
                checked += 1
            }
            let left = deadline - .now
            guard left > .zero else { return nil }
            receive(timeout: min(left, .milliseconds(100)))
        }
    }

    /// Collects whatever is pending without waiting.
    func drain() { receive(timeout: .zero) }
}
