/// What the listener machinery asks its driver to do, pulled with `Listeners.poll()`.
public enum ListenerAction: Hashable, Sendable {
    /// Send this query on the interface (`ListenerTransmit.frame(sourceMAC:)` builds it).
    case send(ListenerTransmit)
    /// Who wants `group` on `interface` may have changed: forwarding asks `wants` again.
    case listenersChanged(interface: InterfaceName, group: IPAddress)
    /// The segment's querier changed: `querier` is the new one (nil: none known, e.g. the
    /// interface went down); `isSelf` when it is this router.
    case querierChanged(interface: InterfaceName, family: AddressFamily, querier: IPAddress?, isSelf: Bool)
}

/// A message for the wire: what, from which address, to which.
public struct ListenerTransmit: Hashable, Sendable {
    public var interface: InterfaceName
    public var message: ListenerMessage
    public var source: IPAddress
    public var destination: IPAddress

    public init(interface: InterfaceName, message: ListenerMessage, source: IPAddress, destination: IPAddress) {
        self.interface = interface
        self.message = message
        self.source = source
        self.destination = destination
    }

    /// The IP payload: the IGMP message, or the ICMPv6 message with its checksum.
    public var payload: [UInt8] {
        switch (source, destination) {
        case let (.v6(src), .v6(dst)): MLDCodec.encode(message, source: src, destination: dst)
        default: IGMPCodec.encode(message)
        }
    }

    /// The whole Ethernet frame (Router Alert, TTL / hop limit 1, checksums).
    public func frame(sourceMAC: MACAddress) -> [UInt8] {
        ListenerFrame.build(message, sourceMAC: sourceMAC, source: source, destination: destination)
    }
}

/// Per-interface counts for metrics.
public struct ListenerCounters: Hashable, Sendable {
    public var generalQueriesSent: UInt64 = 0
    public var specificQueriesSent: UInt64 = 0
    public var queriesReceived: UInt64 = 0
    /// Queries of another version than this router's (RFC 3376 7.3.1 calls that a
    /// misconfiguration to report; FRRouting ignores them, this router elects by them).
    public var queriesOfOtherVersion: UInt64 = 0
    /// Queries from 0.0.0.0 / :: (a snooping switch's proxy querier): never elected.
    public var queriesFromUnspecified: UInt64 = 0
    public var reportsReceived: [ListenerVersion: UInt64] = [:]
    public var leavesReceived: UInt64 = 0
    /// v3 reports a v2-configured router ignores, leaves and BLOCKs ignored in compatibility modes.
    public var ignoredByCompatibility: UInt64 = 0
    public var querierChanges: UInt64 = 0
    /// Reports ignored because they would pass `maximumGroups` or `maximumSourcesPerGroup`.
    public var ignoredByLimits: UInt64 = 0

    public init() {}
}
