#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl

/// One control client, non-blocking both ways: requests are cut from the input at newlines,
/// replies queue in `output` and leave as the socket accepts them. A client that never reads
/// its replies cannot stall the daemon; it is dropped once its backlog passes a limit.
final class ControlConnection {
    let fd: Int32
    let serial: UInt64
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private var outputStart = 0
    /// Set once the peer closed its side or a fatal protocol error was replied to: flush, then close.
    private(set) var closing = false
    /// A request whose reply is not queued yet (stats waits for workers): later lines wait too,
    /// so replies stay in request order.
    var awaitingReply = false

    static let maximumBacklog = 16 << 20

    init(fd: Int32, serial: UInt64) {
        self.fd = fd
        self.serial = serial
    }

    var wantsWrite: Bool { outputStart < output.count }
    var finished: Bool { closing && !wantsWrite && !awaitingReply && pending.isEmpty }

    /// Complete request lines not handled yet. The daemon stops reading from a client while
    /// it has any, so a client that pipelines requests cannot make this grow without bound.
    private var pending: [[UInt8]] = []
    var hasPendingLines: Bool { !pending.isEmpty }

    enum ReceiveStatus { case ok, tooLong, closed }

    /// Reads what is available and queues complete request lines (without their newline).
    func receive() -> ReceiveStatus {
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        var eof = false
        while input.count <= ControlProtocol.maximumRequestSize {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { input.append(contentsOf: chunk[0..<n]); continue }
            if n == 0 { eof = true }
            else if errno == EINTR { continue }
            else if errno != EAGAIN && errno != EWOULDBLOCK { eof = true }
            break
        }
        var start = 0
        while let newline = input[start...].firstIndex(of: UInt8(ascii: "\n")) {
            if newline - start + 1 > ControlProtocol.maximumRequestSize { return .tooLong }
            var line = Array(input[start..<newline])
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            if !line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { pending.append(line) }
            start = newline + 1
        }
        input.removeFirst(start)
        if input.count >= ControlProtocol.maximumRequestSize { return .tooLong }
        if eof {
            closing = true
            // A last request without a newline still counts.
            if !input.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { pending.append(input) }
            input.removeAll()
            return pending.isEmpty ? .closed : .ok
        }
        return .ok
    }

    func nextLine() -> [UInt8]? { pending.isEmpty ? nil : pending.removeFirst() }

    func send(_ reply: ControlReply) {
        output.append(contentsOf: ControlProtocol.encodeLine(reply))
        flush()
    }

    /// Replies, then closes: for errors after which the stream cannot be trusted.
    func sendAndClose(_ reply: ControlReply) {
        closing = true
        input.removeAll()
        pending.removeAll()
        send(reply)
    }

    /// Writes as much as the socket takes; false when the client is gone or hopelessly behind.
    @discardableResult
    func flush() -> Bool {
        while outputStart < output.count {
            let n = output.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + outputStart, $0.count - outputStart, Int32(MSG_NOSIGNAL))
            }
            if n > 0 { outputStart += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
            closing = true
            output.removeAll()
            outputStart = 0
            return false
        }
        if outputStart == output.count {
            output.removeAll(keepingCapacity: output.count < 1 << 20)
            outputStart = 0
        } else if output.count - outputStart > Self.maximumBacklog {
            closing = true
            output.removeAll()
            outputStart = 0
            return false
        }
        return true
    }

    func close() { Descriptors.close(fd) }
}
