#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayCore

/// The metrics endpoint's listening socket and its connections, driven by the supervisor's
/// poll loop (no thread of its own): `pollEntries()` says what to watch, `handle` reacts to
/// readiness, `expire` enforces the time limits at `nextDeadline`. Whatever a client does,
/// the cost is bounded by `MetricsHTTPLimits`, and nothing here touches the relay's state.
public final class MetricsHTTPServer {
    public let limits: MetricsHTTPLimits
    public let address: MetricsAddress
    /// The port actually bound (the requested one).
    public private(set) var port: UInt16 = 0
    private var listenFD: Int32
    private var connections: [(token: UInt64, connection: MetricsHTTPConnection)] = []
    private var nextToken: UInt64 = 1
    /// After EMFILE/ENFILE the listener stays readable; stop watching it briefly instead of spinning.
    private var acceptPausedUntil: Instant?
    /// Responses by status code, and connections refused for the connection limit (as 503).
    public private(set) var responses: [Int: UInt64] = [:]
    /// Called with one line per refused or failed request (for the debug log).
    public var trace: (String) -> Void = { _ in }

    public static let listenerToken: UInt64 = 0

    public init(address: MetricsAddress, limits: MetricsHTTPLimits = MetricsHTTPLimits()) throws(SystemError) {
        self.address = address
        self.limits = limits
        let family: Int32
        switch address.host {
        case .ipv4: family = AF_INET
        case .ipv6: family = AF_INET6
        }
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .last("socket for --metrics \(address)") }
        listenFD = fd
        do {
            // A restarted daemon can bind again while old connections sit in TIME_WAIT.
            try Descriptors.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, "SO_REUSEADDR")
            switch address.host {
            case let .ipv4(raw):
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                sin.sin_port = address.port.bigEndian
                sin.sin_addr.s_addr = raw
                let result = withUnsafePointer(to: &sin) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                guard result == 0 else { throw SystemError.last("bind \(address)") }
            case let .ipv6(bytes):
                try Descriptors.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: 1, "IPV6_V6ONLY")
                var sin6 = sockaddr_in6()
                sin6.sin6_family = sa_family_t(AF_INET6)
                sin6.sin6_port = address.port.bigEndian
                withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: bytes) }
                let result = withUnsafePointer(to: &sin6) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
                }
                guard result == 0 else { throw SystemError.last("bind \(address)") }
            }
            guard listen(fd, 64) == 0 else { throw SystemError.last("listen \(address)") }
        } catch let error as SystemError {
            Descriptors.close(fd)
            throw error
        } catch {
            Descriptors.close(fd)
            throw SystemError("--metrics \(address)", errno: EINVAL)
        }
        port = address.port
    }

    /// Descriptors to watch: the listener (token `listenerToken`) and every connection.
    public func pollEntries(now: Instant) -> [(fd: Int32, events: Int16, token: UInt64)] {
        var entries: [(fd: Int32, events: Int16, token: UInt64)] = []
        if listenFD >= 0, acceptPausedUntil.map({ $0 <= now }) ?? true {
            entries.append((listenFD, Int16(POLLIN), Self.listenerToken))
        }
        for (token, connection) in connections where connection.events != 0 {
            entries.append((connection.fd, connection.events, token))
        }
        return entries
    }

    public var nextDeadline: Instant? {
        let earliest = connections.map(\.connection.deadline).min()
        guard let paused = acceptPausedUntil else { return earliest }
        return min(paused, earliest ?? paused)
    }

    /// Readiness of one entry from `pollEntries`; tokens of connections closed since are ignored.
    /// `render` produces the exposition, only when a scrape is answered.
    public func handle(token: UInt64, revents: Int16, now: Instant, render: () -> [UInt8]) {
        if token == Self.listenerToken {
            accept(now: now)
        } else if let index = connections.firstIndex(where: { $0.token == token }) {
            connections[index].connection.handle(revents: revents, now: now, render: render)
        }
        reap()
    }

    public func expire(now: Instant) {
        if let paused = acceptPausedUntil, paused <= now { acceptPausedUntil = nil }
        for (_, connection) in connections where connection.deadline <= now { connection.expire(now: now) }
        reap()
    }

    public var connectionCount: Int { connections.count }

    public func close() {
        for (_, connection) in connections { connection.close() }
        connections = []
        Descriptors.close(listenFD)
        listenFD = -1
    }

    // MARK: -

    private func accept(now: Instant) {
        // Bounded per wake-up, so a connection storm cannot hold the loop.
        for _ in 0..<64 {
            // accept4 is not visible from Swift's Glibc module; the flags are set right after
            // (no other thread spawns processes in between, so close-on-exec comes in time).
            let fd = Glibc.accept(listenFD, nil, nil)
            guard fd >= 0 else {
                let code = errno
                if code == EINTR || code == ECONNABORTED { continue }
                if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM {
                    trace("metrics: accept: \(SystemError.message(for: code)); pausing accepts for 1 s")
                    acceptPausedUntil = now + .seconds(1)
                }
                return
            }
            do {
                try Descriptors.setCloseOnExec(fd)
                try Descriptors.setNonBlocking(fd)
            } catch {
                Descriptors.close(fd)
                continue
            }
            guard connections.count < limits.maximumConnections else {
                // One non-blocking attempt at a 503; the socket buffer of a new connection takes it.
                let refusal = MetricsHTTPResponse.error(
                    status: 503, reason: "too many metrics connections (\(limits.maximumConnections)); try again")
                _ = refusal.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                Descriptors.close(fd)
                responses[503, default: 0] += 1
                trace("metrics: refused a connection: \(limits.maximumConnections) already open")
                continue
            }
            connections.append((nextToken, MetricsHTTPConnection(fd: fd, now: now, limits: limits)))
            nextToken += 1
        }
    }

    private func reap() {
        connections.removeAll { _, connection in
            guard connection.phase == .done else { return false }
            if let status = connection.status {
                responses[status, default: 0] += 1
                if let reason = connection.reason { trace("metrics: answered \(status): \(reason)") }
            }
            connection.close()
            return true
        }
    }
}
