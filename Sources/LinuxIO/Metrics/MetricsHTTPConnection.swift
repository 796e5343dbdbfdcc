#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayCore

/// Limits that keep the metrics endpoint from ever costing the relay more than a bounded
/// amount of memory, descriptors and time, whatever a client sends or fails to send.
public struct MetricsHTTPLimits: Sendable {
    /// Connections open at once; one more is answered 503 and closed.
    public var maximumConnections = 16
    /// The whole request head must arrive within this time of the accept (a client trickling
    /// one byte a second gets 408, not a connection held forever).
    public var headTimeout: Duration = .seconds(5)
    /// The response must be taken by the client within this time.
    public var writeTimeout: Duration = .seconds(10)
    /// After the response, unread input is drained this long before closing, so the kernel
    /// does not answer leftover bytes with a reset that could destroy the response in flight.
    public var lingerTimeout: Duration = .seconds(2)
    public var maximumHeadSize = HTTPRequestParser.defaultMaximumHeadSize

    public init() {}
}

/// One accepted connection: read one request head, write one response, close. Non-blocking;
/// the supervisor's poll loop says when it is readable or writable.
final class MetricsHTTPConnection {
    enum Phase: Equatable { case reading, writing, lingering, done }

    let fd: Int32
    private let limits: MetricsHTTPLimits
    private var parser: HTTPRequestParser
    private var output: [UInt8] = []
    private var written = 0
    private(set) var phase: Phase = .reading
    private(set) var deadline: Instant
    /// The status answered (nil: none, e.g. the client left before sending a whole head).
    private(set) var status: Int?
    /// Why an error status was answered, for the debug log.
    private(set) var reason: String?

    init(fd: Int32, now: Instant, limits: MetricsHTTPLimits) {
        self.fd = fd
        self.limits = limits
        parser = HTTPRequestParser(maximumHeadSize: limits.maximumHeadSize)
        deadline = now + limits.headTimeout
    }

    /// poll(2) events wanted now.
    var events: Int16 {
        switch phase {
        case .reading, .lingering: Int16(POLLIN)
        case .writing: Int16(POLLOUT)
        case .done: 0
        }
    }

    func handle(revents: Int16, now: Instant, render: () -> [UInt8]) {
        switch phase {
        case .reading: readRequest(now: now, render: render)
        case .writing: flush(now: now)
        case .lingering: drain()
        case .done: break
        }
        if revents & Int16(POLLERR | POLLNVAL) != 0, phase != .done, phase != .reading { phase = .done }
    }

    /// Called when `deadline` has passed.
    func expire(now: Instant) {
        guard deadline <= now else { return }
        switch phase {
        case .reading:
            // Best effort: one non-blocking write of the 408, then close whatever happened.
            respond(status: 408, reason: "request head not received within \(limits.headTimeout)",
                    bytes: MetricsHTTPResponse.error(status: 408, reason: "request head not received within \(limits.headTimeout)"),
                    now: now)
            if phase == .writing { phase = .done }
        case .writing, .lingering: phase = .done
        case .done: break
        }
    }

    func close() {
        Descriptors.close(fd)
        phase = .done
    }

    // MARK: -

    private func readRequest(now: Instant, render: () -> [UInt8]) {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while phase == .reading {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                switch parser.append(chunk[0..<n]) {
                case .incomplete: continue
                case let .invalid(status, reason):
                    respond(status: status, reason: reason, bytes: MetricsHTTPResponse.error(status: status, reason: reason), now: now)
                case let .complete(head):
                    let answer = MetricsHTTPResponse.answer(head, body: render)
                    respond(status: answer.status, reason: nil, bytes: answer.bytes, now: now)
                }
                return
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            // End of input (or an error) before a whole head: the client gave up; nothing to answer.
            phase = .done
        }
    }

    private func respond(status: Int, reason: String?, bytes: [UInt8], now: Instant) {
        self.status = status
        self.reason = reason
        output = bytes
        written = 0
        phase = .writing
        deadline = now + limits.writeTimeout
        flush(now: now)
    }

    private func flush(now: Instant) {
        while written < output.count {
            let n = output.withUnsafeBytes { send(fd, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
            if n > 0 { written += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            phase = .done
            return
        }
        output = []
        // Half-close, then read until the client closes its side (or the linger deadline).
        _ = shutdown(fd, Int32(SHUT_WR))
        phase = .lingering
        deadline = now + limits.lingerTimeout
        drain()
    }

    private func drain() {
        var chunk = [UInt8](repeating: 0, count: 4096)
        var budget = 16  // a client flooding its side cannot keep the loop here
        while phase == .lingering {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                budget -= 1
                if budget == 0 { return }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            phase = .done
        }
    }
}
