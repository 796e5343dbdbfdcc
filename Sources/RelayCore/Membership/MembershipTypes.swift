/// One IGMP membership the relay needs: `group` on `interface`, from any source (nil) or
/// from one source (a source-specific join).
public struct MembershipKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var interface: InterfaceName
    public var group: IPv4Address
    public var source: IPv4Address?

    public init(interface: InterfaceName, group: IPv4Address, source: IPv4Address? = nil) {
        self.interface = interface
        self.group = group
        self.source = source
    }

    public var description: String {
        "\(group) on \(interface)" + (source.map { " from \($0)" } ?? "")
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.interface, lhs.group, lhs.source?.value ?? 0) < (rhs.interface, rhs.group, rhs.source?.value ?? 0)
    }
}

/// A helper socket: an unbound UDP socket the driver opens only to hold memberships on one
/// interface. The kernel limits how many groups one socket may join
/// (`net.ipv4.igmp_max_memberships`, default 20), so the core keeps a pool of them.
public struct HelperSocketID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var interface: InterfaceName
    public var ordinal: Int

    public init(interface: InterfaceName, ordinal: Int) {
        self.interface = interface
        self.ordinal = ordinal
    }

    public var description: String { "\(interface)#\(ordinal)" }
    public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.interface, lhs.ordinal) < (rhs.interface, rhs.ordinal) }
}

/// Identifies one join attempt, so a result that arrives after the need went away (or after
/// the interface flapped) is recognised as stale.
public struct JoinTicket: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "join#\(rawValue)" }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// How a join failed, as the driver maps errno.
public enum JoinError: Error, Hashable, Sendable, CustomStringConvertible {
    /// ENOBUFS: this socket holds as many memberships as the kernel allows.
    case socketFull
    /// ENODEV: the interface does not exist (yet, or any more).
    case noSuchDevice
    /// EADDRINUSE: already a member; as good as a success.
    case alreadyMember
    /// EADDRNOTAVAIL and the like: the interface cannot join now (no address, not up).
    case notAvailable
    /// Any other errno, kept for the report.
    case other(errno: Int32)

    public var description: String {
        switch self {
        case .socketFull: "ENOBUFS (socket membership limit)"
        case .noSuchDevice: "ENODEV (no such interface)"
        case .alreadyMember: "EADDRINUSE (already a member)"
        case .notAvailable: "EADDRNOTAVAIL (interface cannot join)"
        case let .other(errno): "errno \(errno)"
        }
    }
}

/// Exponential backoff for failed joins. Deterministic: no jitter (a driver that wants
/// jitter adds it when it schedules the timer).
public struct RetryPolicy: Hashable, Sendable {
    public var initialDelay: Duration
    public var maximumDelay: Duration

    public init(initialDelay: Duration = .milliseconds(100), maximumDelay: Duration = .seconds(30)) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
    }

    /// Delay before retry number `attempt` (1 = the first retry).
    public func delay(afterAttempt attempt: Int) -> Duration {
        var delay = initialDelay
        var remaining = max(0, attempt - 1)
        while remaining > 0 && delay < maximumDelay {
            delay = delay * 2
            remaining -= 1
        }
        return min(delay, maximumDelay)
    }
}
