import Collections

/// Every interface's IGMP / MLD router state, in the core's sans-IO shape: inputs are
/// `handle(_:now:)`, effects are `ListenerAction`s pulled with `poll()`, and `nextDeadline`
/// is when `.timerFired` is next due. An interface runs IGMP and MLD side by side, as two
/// independent `ListenerInterface`s (one per family).
public struct Listeners: Sendable {
    public struct Key: Hashable, Comparable, Sendable, CustomStringConvertible {
        public var interface: InterfaceName
        public var family: AddressFamily

        public init(_ interface: InterfaceName, _ family: AddressFamily) {
            self.interface = interface
            self.family = family
        }

        public static func < (lhs: Self, rhs: Self) -> Bool {
            (lhs.interface, lhs.family.rawValue) < (rhs.interface, rhs.family.rawValue)
        }

        public var description: String { "\(interface)/\(family)" }
    }

    public private(set) var interfaces: [Key: ListenerInterface] = [:]
    /// Frames refused before they reached an interface's state, by reason.
    public private(set) var refusals = ListenerRefusalCounts()
    private var actions: Deque<ListenerAction> = []

    public init() {}

    public mutating func poll() -> ListenerAction? { actions.popFirst() }

    public mutating func drain() -> [ListenerAction] {
        defer { actions.removeAll() }
        return Array(actions)
    }

    public var nextDeadline: Instant? { interfaces.values.compactMap(\.nextDeadline).min() }

    public mutating func handle(_ event: ListenerEvent, now: Instant) {
        switch event {
        case let .start(interface, family, address, configuration):
            let key = Key(interface, family)
            interfaces[key]?.shutDown(actions: &actions)
            interfaces[key] = ListenerInterface(name: interface, family: family, address: address,
                                                configuration: configuration, now: now, actions: &actions)
        case let .stop(interface, family):
            interfaces[Key(interface, family)]?.shutDown(actions: &actions)
            interfaces[Key(interface, family)] = nil
        case let .addressChanged(interface, family, address):
            interfaces[Key(interface, family)]?.setAddress(address, now: now, actions: &actions)
        case let .frame(interface, bytes):
            switch ListenerFrame.extract(bytes) {
            case let .success(received): deliver(received, on: interface, now: now)
            case let .failure(reason): refusals.count(reason)
            }
        case let .received(interface, received):
            deliver(received, on: interface, now: now)
        case .timerFired:
            for key in interfaces.keys.sorted() { interfaces[key]!.advance(now: now, actions: &actions) }
            return
        }
        // Work due now (startup queries of a new interface) is done now, not at the next timer.
        for key in interfaces.keys.sorted() where interfaces[key]!.nextDeadline.map({ $0 <= now }) ?? false {
            interfaces[key]!.advance(now: now, actions: &actions)
        }
    }

    private mutating func deliver(_ received: ListenerFrame.Received, on interface: InterfaceName, now: Instant) {
        interfaces[Key(interface, received.family)]?.receive(received, now: now, actions: &actions)
    }

    // MARK: - Questions forwarding and the operator surface ask

    /// Does a listener on `interface` want traffic from `source` to `group`? INCLUDE: the
    /// source is listed with a running timer; EXCLUDE: it is not excluded; an IGMPv1/v2 or
    /// MLDv1 listener is EXCLUDE {}.
    public func wants(interface: InterfaceName, source: IPAddress, group: IPAddress) -> Bool {
        interfaces[Key(interface, group.family)]?.wants(source: source, group: group) ?? false
    }

    /// Does a listener on `interface` want `group` from any source ((*,G))?
    public func wantsAnySource(interface: InterfaceName, group: IPAddress) -> Bool {
        interfaces[Key(interface, group.family)]?.wantsAnySource(group: group) ?? false
    }

    /// The filter the listeners of a group on an interface ask for (closed: none listen, or
    /// no listener state is kept there).
    public func gateFilter(for key: GateKey) -> GateFilter {
        guard let record = interfaces[Key(key.interface, key.group.family)]?.groups[key.group] else { return .closed }
        let forwarding = record.forwarding
        return GateFilter(mode: forwarding.mode, sources: forwarding.sources)
    }

    public var interfaceStatus: [ListenerInterfaceStatus] {
        interfaces.keys.sorted().map { ListenerInterfaceStatus(interfaces[$0]!) }
    }

    public var groupStatus: [ListenerGroupStatus] {
        interfaces.keys.sorted().flatMap { key in
            let state = interfaces[key]!
            return state.groups.keys.sorted().map { ListenerGroupStatus(state, group: $0) }
        }
    }
}

public enum ListenerEvent: Hashable, Sendable {
    /// Run IGMP (`.ipv4`) or MLD (`.ipv6`) on an interface, from `address` (its IPv4
    /// address, or its IPv6 link-local one). Starting again restarts from scratch.
    case start(InterfaceName, AddressFamily, address: IPAddress?, configuration: ListenerConfiguration)
    case stop(InterfaceName, AddressFamily)
    case addressChanged(InterfaceName, AddressFamily, IPAddress?)
    /// A whole Ethernet frame read on the interface (refusals are counted in `refusals`).
    case frame(InterfaceName, [UInt8])
    case received(InterfaceName, ListenerFrame.Received)
    case timerFired
}

/// One interface, for `mcrelay igmp interfaces`.
public struct ListenerInterfaceStatus: Hashable, Sendable {
    public var interface: InterfaceName
    public var family: AddressFamily
    public var version: ListenerVersion
    public var address: IPAddress?
    public var isQuerier: Bool
    public var querier: IPAddress?
    public var otherQuerierExpiry: Instant?
    public var nextGeneralQuery: Instant?
    public var startupQueriesLeft: Int
    public var robustness: Int
    public var queryInterval: Duration
    public var groups: Int
    public var counters: ListenerCounters

    init(_ state: ListenerInterface) {
        interface = state.name
        family = state.family
        version = state.configuration.version
        address = state.address
        isQuerier = state.isQuerier
        querier = state.querier
        otherQuerierExpiry = state.otherQuerierExpiry
        nextGeneralQuery = state.isQuerier ? state.nextGeneralQuery : nil
        startupQueriesLeft = state.startupQueriesLeft
        robustness = state.effective.robustness
        queryInterval = state.effective.queryInterval
        groups = state.groups.count
        counters = state.counters
    }
}

/// One group on one interface, for `mcrelay igmp groups`.
public struct ListenerGroupStatus: Hashable, Sendable {
    public struct Source: Hashable, Sendable {
        public var address: IPAddress
        /// nil: excluded (EXCLUDE mode, timer zero).
        public var expiry: Instant?
        public var forwarded: Bool
    }

    public var interface: InterfaceName
    public var group: IPAddress
    public var mode: FilterMode
    public var compatibility: ListenerVersion
    /// EXCLUDE mode's group timer; INCLUDE records expire with their last source.
    public var expiry: Instant?
    public var sources: [Source]
    public var lastReporter: IPAddress?
    public var lastReportAt: Instant?

    init(_ state: ListenerInterface, group: IPAddress) {
        let record = state.groups[group]!
        interface = state.name
        self.group = group
        mode = record.mode
        compatibility = record.compatibility(router: state.configuration.version)
        expiry = record.mode == .exclude ? record.groupTimer : record.requested.values.max()
        sources = record.requested.keys.sorted().map { Source(address: $0, expiry: record.requested[$0], forwarded: true) }
            + record.excluded.sorted().map { Source(address: $0, expiry: nil, forwarded: false) }
        lastReporter = record.lastReporter
        lastReportAt = record.lastReportAt
    }
}
