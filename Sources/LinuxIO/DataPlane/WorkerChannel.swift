import CLinuxNet
import Glibc
import RelayControl

/// The worker's end of the supervisor socketpair (SOCK_STREAM), non-blocking so it can sit
/// in the same poll loop as the ingress sockets. Messages are length-prefixed JSON
/// (`MessageFraming`). The channel closing means the supervisor is gone: the worker exits.
final class WorkerChannel {
    enum ReadOutcome {
        /// Complete messages; `closed` when the stream also ended after them (the supervisor
        /// closed its end or died), so the caller handles them and then exits.
        case messages([SupervisorMessage], closed: Bool)
        /// Bytes that cannot be a message; the stream cannot be resynchronised.
        case failed(String)
    }

    let fd: Int32
    private var reassembler = MessageReassembler<SupervisorMessage>()
    private let readBuffer: UnsafeMutableRawBufferPointer
    /// How long a send may wait for the supervisor to drain the channel before the worker
    /// considers it dead (a supervisor that stopped reading must not wedge the data plane).
    static let sendTimeoutMilliseconds: Int64 = 5000

    init(fd: Int32) {
        self.fd = fd
        readBuffer = .allocate(byteCount: 64 << 10, alignment: 8)
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }

    deinit { readBuffer.deallocate() }

    /// Reads everything available now and returns the complete messages in it.
    func readAvailable() -> ReadOutcome {
        var messages: [SupervisorMessage] = []
        while true {
            let count = read(fd, readBuffer.baseAddress, readBuffer.count)
            if count > 0 {
                reassembler.append(UnsafeRawBufferPointer(rebasing: readBuffer[0..<count]))
                do {
                    while let message = try reassembler.next() { messages.append(message) }
                } catch {
                    return .failed("supervisor channel: \(error)")
                }
                continue
            }
            if count == 0 { return .messages(messages, closed: true) }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .messages(messages, closed: false) }
            return .messages(messages, closed: true)
        }
    }

    /// Sends one message; false when the supervisor is gone (or stopped reading for
    /// `sendTimeoutMilliseconds`).
    func send(_ message: WorkerMessage) -> Bool {
        guard let bytes = try? MessageFraming.encode(message) else { return false }
        let deadline = DataPlaneClock.milliseconds() + Self.sendTimeoutMilliseconds
        var offset = 0
        return bytes.withUnsafeBytes { raw -> Bool in
            while offset < raw.count {
                let sent = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if sent > 0 { offset += sent; continue }
                let code = errno
                if sent < 0 && code == EINTR { continue }
                guard sent < 0 && (code == EAGAIN || code == EWOULDBLOCK) else { return false }
                let remaining = deadline - DataPlaneClock.milliseconds()
                guard remaining > 0 else { return false }
                var waiting = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&waiting, 1, Int32(min(remaining, 1000)))
            }
            return true
        }
    }
}
