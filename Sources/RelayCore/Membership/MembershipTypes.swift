/// One IGMP or MLD membership the relay needs: `group` on `interface`, from any source (nil)
/// or from one source (a source-specific join).
public struct MembershipKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var interface: InterfaceName
    public var group: IPAddress
    public var source: IPAddress?

    public init(interface: InterfaceName, group: IPv4Address, source: IPv4Address? = nil) {
        self.init(interface: interface, group: .v4(group), source: source.map(IPAddress.v4))
    }

    public init(interface: InterfaceName, group: IPAddress, source: IPAddress? = nil) {
        self.interface = interface
        self.group = group
        self.source = source
    }

    public var description: String {
        "\(group) on \(interface)" + (source.map { " from \($0)" } ?? "")
    }

    public var family: AddressFamily { group.family }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        if lhs.interface != rhs.interface { return lhs.interface < rhs.interface }
        if lhs.group != rhs.group { return lhs.group < rhs.group }
        return IPAddress.precedes(lhs.source, rhs.source)
    }
}

/// A helper socket: an unbound UDP socket of one family the driver opens only to hold
/// memberships on one interface. The kernel limits how many groups one socket may join
/// (IPv4: `net.ipv4.igmp_max_memberships`, default 20; IPv6: see `SocketLimits`), so the
/// core keeps a pool of them per interface and family.
public struct HelperSocketID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var interface: InterfaceName
    public var family: AddressFamily
    public var ordinal: Int

    public init(interface: InterfaceName, family: AddressFamily = .ipv4, ordinal: Int) {
        self.interface = interface
        self.family = family
        self.ordinal = ordinal
    }

    /// `eth0#0` for IPv4 (as before IPv6), `eth0#v6.0` for IPv6.
    public var description: String { family == .ipv4 ? "\(interface)#\(ordinal)" : "\(interface)#v6.\(ordinal)" }
    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.interface, lhs.family == .ipv6 ? 1 : 0, lhs.ordinal) < (rhs.interface, rhs.family == .ipv6 ? 1 : 0, rhs.ordinal)
    }
}

/// How many groups one helper socket may hold, per family.
public struct SocketLimits: Hashable, Sendable {
    /// `net.ipv4.igmp_max_memberships` (default 20); the daemon reads the sysctl.
    public var ipv4: Int
    /// IPv6 has no count sysctl: each membership is charged to the socket's option memory
    /// (`net.core.optmem_max`, per namespace), and the join fails with ENOMEM (or ENOBUFS)
    /// when it runs out. Measured here (docs/ipv6-linux-facts.md): 56 bytes per any-source
    /// group (2340 per socket at the default 131072), 240 per source-specific group with one
    /// source (546). `ipv6(optmemMax:)` takes the source-specific cost, so no group placed on a
    /// socket is refused for memory; a group with many sources can still be, and the core then
    /// learns the socket's real capacity as it does for IPv4's ENOBUFS.
    public var ipv6: Int

    public init(ipv4: Int = 20, ipv6: Int = SocketLimits.defaultIPv6) {
        self.ipv4 = ipv4
        self.ipv6 = ipv6
    }

    /// `ipv6(optmemMax:)` at the default optmem_max of current kernels (131072).
    public static let defaultIPv6 = 546

    /// Bytes of socket option memory one source-specific IPv6 membership takes (measured).
    public static let ipv6MembershipBytes = 240

    public static func ipv6(optmemMax: Int) -> Int { max(1, optmemMax / ipv6MembershipBytes) }

    public subscript(family: AddressFamily) -> Int { family == .ipv4 ? ipv4 : ipv6 }
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
