/// The router side of IGMP and MLD speaks one set of messages. MLDv1 (RFC 2710) is IGMPv2
/// (RFC 2236) for IPv6 and MLDv2 (RFC 3810) is IGMPv3 (RFC 3376), so the state machine reads
/// a family-generic form; `IGMPCodec` and `MLDCodec` translate it to and from the wire.
///
/// Versions are named by IGMP generation: `.v2` is IGMPv2 or MLDv1, `.v3` is IGMPv3 or MLDv2.
/// IGMPv1 (RFC 1112) has no MLD twin.
public enum ListenerVersion: Int, Hashable, Comparable, Sendable, CaseIterable, CustomStringConvertible {
    case v1 = 1, v2 = 2, v3 = 3

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The protocol's own name for this generation in `family`.
    public func name(for family: AddressFamily) -> String {
        switch (family, self) {
        case (.ipv4, _): "IGMPv\(rawValue)"
        case (.ipv6, .v3): "MLDv2"
        case (.ipv6, _): "MLDv1"
        }
    }

    public var description: String { "v\(rawValue)" }
}

/// A Membership Query (IGMP type 0x11, MLD type 130). A general query has no group.
public struct ListenerQuery: Hashable, Sendable {
    public var version: ListenerVersion
    /// nil: a general query (group field 0.0.0.0 / ::).
    public var group: IPAddress?
    /// The Max Resp Code as on the wire: IGMP tenths of a second (8 bits, exponential in v3),
    /// MLD milliseconds (16 bits, exponential in v2). Zero in an IGMPv1 query.
    public var maxResponseCode: UInt16
    /// v3 only: the S flag (RFC 3376 4.1.5): receiving routers do not lower their timers.
    public var suppressRouterSideProcessing: Bool
    /// v3 only: the querier's robustness variable (0: above 7, or unknown).
    public var robustness: UInt8
    /// v3 only: the Querier's Query Interval Code (seconds, exponential above 127).
    public var queryIntervalCode: UInt8
    /// v3 only: a group-and-source-specific query's sources.
    public var sources: [IPAddress]

    public init(version: ListenerVersion, group: IPAddress? = nil, maxResponseCode: UInt16,
                suppressRouterSideProcessing: Bool = false, robustness: UInt8 = 0,
                queryIntervalCode: UInt8 = 0, sources: [IPAddress] = []) {
        self.version = version
        self.group = group
        self.maxResponseCode = maxResponseCode
        self.suppressRouterSideProcessing = suppressRouterSideProcessing
        self.robustness = robustness
        self.queryIntervalCode = queryIntervalCode
        self.sources = sources
    }

    /// The Max Response Time the code stands for, in `family`'s units and encoding.
    public func maxResponseTime(_ family: AddressFamily) -> Duration {
        switch (family, version) {
        case (.ipv4, .v1): .seconds(10)  // RFC 2236 4: a v1 query means 10 seconds
        case (.ipv4, .v2): .milliseconds(100 * Int64(maxResponseCode & 0xFF))
        case (.ipv4, .v3): .milliseconds(100 * Int64(ExponentialCode.decode8(UInt8(truncatingIfNeeded: maxResponseCode))))
        case (.ipv6, .v3): .milliseconds(Int64(ExponentialCode.decode16(maxResponseCode)))
        case (.ipv6, _): .milliseconds(Int64(maxResponseCode))
        }
    }

    /// The querier's query interval (v3; nil when the code is 0, which says nothing).
    public var queryInterval: Duration? {
        queryIntervalCode == 0 ? nil : .seconds(Int64(ExponentialCode.decode8(queryIntervalCode)))
    }
}

/// The six IGMPv3 / MLDv2 group record types (RFC 3376 4.2.12, RFC 3810 5.2.12).
public enum GroupRecordType: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Current-state records, sent in answer to queries.
    case modeIsInclude = 1, modeIsExclude = 2
    /// Filter-mode-change records.
    case changeToInclude = 3, changeToExclude = 4
    /// Source-list-change records.
    case allowNewSources = 5, blockOldSources = 6

    /// The RFCs' short names (IS_IN, IS_EX, TO_IN, TO_EX, ALLOW, BLOCK).
    public var description: String {
        switch self {
        case .modeIsInclude: "IS_IN"
        case .modeIsExclude: "IS_EX"
        case .changeToInclude: "TO_IN"
        case .changeToExclude: "TO_EX"
        case .allowNewSources: "ALLOW"
        case .blockOldSources: "BLOCK"
        }
    }
}

public struct GroupRecord: Hashable, Sendable {
    public var type: GroupRecordType
    public var group: IPAddress
    public var sources: [IPAddress]
    /// Auxiliary data (no use is defined; RFC 3376 4.2.10 says receivers ignore it). Kept so
    /// a decoded report re-encodes byte for byte.
    public var auxiliaryData: [UInt8]

    public init(_ type: GroupRecordType, group: IPAddress, sources: [IPAddress] = [], auxiliaryData: [UInt8] = []) {
        self.type = type
        self.group = group
        self.sources = sources
        self.auxiliaryData = auxiliaryData
    }
}

/// One IGMP or MLD message, family-generic.
public enum ListenerMessage: Hashable, Sendable {
    case query(ListenerQuery)
    /// An IGMPv1 (0x12) or IGMPv2 (0x16) report, or an MLDv1 report (131, as `.v2`).
    case report(ListenerVersion, group: IPAddress)
    /// An IGMPv2 Leave Group (0x17) or MLDv1 Done (132).
    case leave(group: IPAddress)
    /// An IGMPv3 (0x22) or MLDv2 (143) report.
    case v3Report([GroupRecord])

    /// The IP destination the RFCs send this message to: general queries to all systems
    /// (224.0.0.1 / ff02::1), specific queries and v1/v2 reports to the group, leaves to all
    /// routers (224.0.0.2 / ff02::2), v3 reports to all IGMPv3 / MLDv2 routers (224.0.0.22 /
    /// ff02::16).
    public func destination(_ family: AddressFamily) -> IPAddress {
        switch self {
        case let .query(query): query.group ?? ListenerAddresses.allSystems(family)
        case let .report(_, group): group
        case .leave: ListenerAddresses.allRouters(family)
        case .v3Report: ListenerAddresses.allV3Routers(family)
        }
    }

    public var version: ListenerVersion {
        switch self {
        case let .query(query): query.version
        case let .report(version, _): version
        case .leave: .v2
        case .v3Report: .v3
        }
    }
}

/// The well-known groups of RFC 1112/2236/3376 and RFC 2710/3810.
public enum ListenerAddresses {
    public static func allSystems(_ family: AddressFamily) -> IPAddress {
        family == .ipv4 ? .v4(IPv4Address(224, 0, 0, 1)) : .v6(IPv6Address(0xFF02, 0, 0, 0, 0, 0, 0, 1))
    }

    public static func allRouters(_ family: AddressFamily) -> IPAddress {
        family == .ipv4 ? .v4(IPv4Address(224, 0, 0, 2)) : .v6(IPv6Address(0xFF02, 0, 0, 0, 0, 0, 0, 2))
    }

    public static func allV3Routers(_ family: AddressFamily) -> IPAddress {
        family == .ipv4 ? .v4(IPv4Address(224, 0, 0, 22)) : .v6(IPv6Address(0xFF02, 0, 0, 0, 0, 0, 0, 0x16))
    }

    /// Groups no host reports and no router tracks: all-systems / all-nodes (RFC 2236 6,
    /// RFC 3810 6: never sent for the link-scope all-nodes address, nor for scope 0
    /// (reserved) or 1 (interface-local), which never leave the node).
    public static func isUntracked(_ group: IPAddress) -> Bool {
        if case let .v6(v6) = group, v6.multicastScope <= 1 { return true }
        return group == allSystems(group.family)
    }
}
