import Collections

/// The relay's control plane as one sans-IO state machine: the rule book, IGMP membership
/// (the relay's own joins), worker dispatch and the IGMP/MLD router on the receivers' side
/// (`Listeners`), each a sibling state machine composed here. Every input carries `now`; every effect is a `ControlAction` the
/// driver pulls with `poll()` and executes. The daemon and the simulator drive the same type.
public struct ControlPlane: Sendable {
    public struct Configuration: Hashable, Sendable {
        public var socketLimits: SocketLimits
        /// The IPv4 limit.
        public var socketLimit: Int {
            get { socketLimits.ipv4 }
            set { socketLimits.ipv4 = newValue }
        }
        public var retryPolicy: RetryPolicy
        public var workerCount: Int
        public var dispatchMode: DispatchMode
        public var fanoutBase: UInt16
        public var resendInterval: Duration

        public init(socketLimit: Int = 20, socketLimitIPv6: Int = SocketLimits.defaultIPv6,
                    retryPolicy: RetryPolicy = RetryPolicy(), workerCount: Int = 1,
                    dispatchMode: DispatchMode = .fanout, fanoutBase: UInt16 = 0x4D43,
                    resendInterval: Duration = .milliseconds(250)) {
            self.socketLimits = SocketLimits(ipv4: socketLimit, ipv6: socketLimitIPv6)
            self.retryPolicy = retryPolicy
            self.workerCount = workerCount
            self.dispatchMode = dispatchMode
            self.fanoutBase = fanoutBase
            self.resendInterval = resendInterval
        }
    }

    public let configuration: Configuration
    public private(set) var rules = RuleBook()
    public private(set) var membership: Membership
    public private(set) var dispatcher: Dispatcher
    public private(set) var listeners = Listeners()
    /// IGMP/MLD proxies: upstream joins derived from downstream listeners.
    public private(set) var proxies = Proxies()
    /// What the rules alone need joined; the proxies' joins come on top.
    private var ruleMemberships: Set<MembershipKey> = []
    private var actions: Deque<ControlAction> = []
    private var armedTimer: Instant?

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        membership = Membership(socketLimits: configuration.socketLimits, retryPolicy: configuration.retryPolicy)
        dispatcher = Dispatcher(workerCount: configuration.workerCount, mode: configuration.dispatchMode,
                                fanoutBase: configuration.fanoutBase, resendInterval: configuration.resendInterval)
    }

    /// The next action for the driver, in the order decided; nil when there is nothing to do.
    public mutating func poll() -> ControlAction? { actions.popFirst() }

    /// Drains every pending action (convenience for drivers and tests).
    public mutating func drain() -> [ControlAction] {
        defer { actions.removeAll() }
        return Array(actions)
    }

    // MARK: - Rule changes

    @discardableResult
    public mutating func addRule(_ spec: RuleSpec, now: Instant) throws(RuleError) -> RuleBook.AddOutcome {
        try checkAgainstProxies(RuleBook.validated(spec))
        let outcome = try rules.add(spec)
        if case .added = outcome { rulesChanged(now: now) }
        return outcome
    }

    @discardableResult
    public mutating func removeRule(_ selector: String, now: Instant) throws(RuleError) -> Rule {
        let rule = try rules.remove(selector)
        rulesChanged(now: now)
        return rule
    }

    /// A config reload: all or nothing, touching only rules that changed.
    @discardableResult
    public mutating func replaceRules(_ specs: [RuleSpec], now: Instant) throws(RuleError) -> RuleBook.Diff {
        for spec in specs { try checkAgainstProxies(RuleBook.validated(spec)) }
        let diff = try rules.replaceAll(with: specs)
        if !diff.isEmpty { rulesChanged(now: now) }
        return diff
    }

    /// A config reload that changes rules and proxies together: the new rules are checked
    /// against the new proxies (not the old ones, which a valid new file may contradict), and
    /// nothing changes unless both are accepted. Proxy joins that stay are not touched.
    @discardableResult
    public mutating func replaceRules(_ specs: [RuleSpec], proxies configurations: [ProxyConfiguration],
                                      now: Instant) throws(ConfigurationError) -> RuleBook.Diff {
        var book = RuleBook()
        do {
            for spec in specs { try book.add(spec) }
        } catch { throw .rule(error) }
        do {
            try ProxyConfiguration.validate(configurations)
            try ProxyConfiguration.check(configurations, against: book.rules.values)
        } catch { throw .proxy(error) }
        var next = proxies
        do { _ = try next.replace(configurations, listeners: listeners) } catch { throw .proxy(error) }
        let diff: RuleBook.Diff
        do { diff = try rules.replaceAll(with: specs) } catch { throw .rule(error) }
        proxies = next
        // Rules first (their memberships become the base), then the proxies' change on top.
        ruleMemberships = Self.neededMemberships(for: rules.rules.values)
        membership.setNeeded(ruleMemberships.union(proxies.needed), now: now, actions: &actions)
        updateGates(now: now)
        updateDispatch(now: now)
        armTimer()
        return diff
    }

    public enum ConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
        case rule(RuleError)
        case proxy(ProxyError)
        public var description: String {
            switch self {
            case let .rule(error): error.description
            case let .proxy(error): error.description
            }
        }
    }

    // MARK: - Proxies

    /// Sets the IGMP/MLD proxies (config load or reload): all or nothing. Their upstream joins
    /// follow from what the downstream listeners want now and change with every
    /// `.listenersChanged` after.
    public mutating func replaceProxies(_ configurations: [ProxyConfiguration], now: Instant) throws(ProxyError) {
        try ProxyConfiguration.check(configurations, against: rules.rules.values)
        var next = proxies
        let delta = try next.replace(configurations, listeners: listeners)
        proxies = next
        apply(delta, now: now)
        // The proxies' routes and the gates of their downstreams, gates first (as for rules).
        updateGates(now: now)
        updateDispatch(now: now)
        armTimer()
    }

    private func checkAgainstProxies(_ rule: Rule) throws(RuleError) {
        do {
            try ProxyConfiguration.check(proxies.configurations, against: [rule])
        } catch {
            if case let .ruleFeedsUpstream(index, _, output) = error {
                throw .outputFeedsProxy(output, proxy: index, upstream: proxies.configurations[index].upstream)
            }
        }
    }

    private mutating func apply(_ delta: Proxies.Delta, now: Instant) {
        guard !delta.isEmpty else { return }
        membership.changeNeeded(adding: delta.added, removing: delta.removed.subtracting(ruleMemberships),
                                now: now, actions: &actions)
    }

    // MARK: - Events

    public mutating func handle(_ event: ControlEvent, now: Instant) {
        switch event {
        case let .interfaceUp(interface):
            membership.interfaceUp(interface, now: now, actions: &actions)
            updateDispatch(now: now)
        case let .interfaceDown(interface):
            membership.interfaceDown(interface, now: now, actions: &actions)
            updateDispatch(now: now)
        case let .joinCompleted(ticket, result):
            membership.joinCompleted(ticket, result: result, now: now, actions: &actions)
        case .timerFired:
            // A timer may fire late or spuriously; each part acts only on what is due.
            armedTimer = nil
            membership.timerFired(now: now, actions: &actions)
            dispatcher.timerFired(now: now, actions: &actions)
            if let due = listeners.nextDeadline, due <= now { handleListeners(.timerFired, now: now) }
        case let .listener(event):
            handleListeners(event, now: now)
        case let .workerStarted(worker):
            dispatcher.workerStarted(worker, now: now, actions: &actions)
        case let .workerExited(worker):
            dispatcher.workerExited(worker, now: now, actions: &actions)
        case let .workerAcknowledged(worker, version):
            dispatcher.acknowledged(worker, version: version, now: now, actions: &actions)
        case let .workerGatesAcknowledged(worker, version):
            dispatcher.gatesAcknowledged(worker, version: version)
        case let .workerGatesBehind(worker, version):
            dispatcher.gatesBehind(worker, version: version, now: now, actions: &actions)
        }
        armTimer()
    }

    /// The earliest instant at which the control plane has work; what `.setTimer` last asked for.
    public var nextDeadline: Instant? {
        [membership.nextDeadline, dispatcher.nextDeadline, listeners.nextDeadline].compactMap { $0 }.min()
    }

    private mutating func handleListeners(_ event: ListenerEvent, now: Instant) {
        listeners.handle(event, now: now)
        var changed: [GateEntry] = []
        while let action = listeners.poll() {
            actions.append(.listener(action))
            guard case let .listenersChanged(interface, group) = action else { continue }
            if !proxies.configurations.isEmpty {
                apply(proxies.listenersChanged(interface: interface, group: group, listeners: listeners), now: now)
            }
            // A join opens at once and a leave closes when the listener state drops the group
            // (after the last member queries), a silent listener at the group membership
            // interval: the gate follows exactly what `Listeners` says, when it says it.
            let key = GateKey(interface: interface, group: group)
            if followedGates.contains(key) || proxies.routes(key) { changed.append(GateEntry(key: key, filter: listeners.gateFilter(for: key))) }
        }
        if !changed.isEmpty { dispatcher.setGates(changed, now: now, actions: &actions) }
    }

    /// (Output interface, group) of every output that follows listeners.
    public private(set) var followedGates: Set<GateKey> = []

    private mutating func updateGates(now: Instant) {
        var followed = Set<GateKey>()
        for rule in rules.rules.values {
            for output in rule.outputs where output.followsListeners {
                followed.insert(GateKey(interface: output.interface, group: output.destination))
            }
        }
        followedGates = followed
        var wanted: [GateKey: GateFilter] = [:]
        // A proxy's routed outputs need the gate of every group its downstream listeners want
        // within its ranges (looked up per datagram); a group nobody wants has none (closed).
        var keys = followed
        if !proxies.configurations.isEmpty {
            for status in listeners.groupStatus {
                let key = GateKey(interface: status.interface, group: status.group)
                if proxies.routes(key) { keys.insert(key) }
            }
        }
        for key in keys {
            let filter = listeners.gateFilter(for: key)
            if !filter.isClosed { wanted[key] = filter }
        }
        dispatcher.replaceGates(wanted, now: now, actions: &actions)
    }

    // MARK: - Derivations

    /// Memberships the rules need. Membership is per group, not per port: a group used by an
    /// any-source rule is joined once from any source; a group used only by source-specific
    /// rules is joined once per source.
    public static func neededMemberships(for rules: some Sequence<Rule>) -> Set<MembershipKey> {
        var anySource = Set<MembershipKey>()
        var specific = Set<MembershipKey>()
        // A prefix is no group to join: a proxy joins what its downstream listeners want in it.
        for rule in rules where rule.input.prefixLength == nil {
            let key = MembershipKey(interface: rule.input.interface, group: rule.input.group, source: rule.input.source)
            if key.source == nil { anySource.insert(key) } else { specific.insert(key) }
        }
        return anySource.union(specific.filter {
            !anySource.contains(MembershipKey(interface: $0.interface, group: $0.group))
        })
    }

    /// Input interfaces that are up and used by a rule, sorted: what workers read.
    public var readableInputs: [InterfaceName] {
        Set(rules.rules.values.map(\.input.interface)).union(proxies.configurations.map(\.upstream))
            .filter(membership.isUp).sorted()
    }

    /// The proxies' routes (`Proxies.routes`): what the workers forward besides the rules.
    public var proxyRoutes: [Rule] { Proxies.routes(for: proxies.configurations, besides: rules.rules.values) }

    private mutating func rulesChanged(now: Instant) {
        ruleMemberships = Self.neededMemberships(for: rules.rules.values)
        membership.setNeeded(ruleMemberships.union(proxies.needed), now: now, actions: &actions)
        // Gates before the plan, so the plan carries the gates its follow outputs need.
        updateGates(now: now)
        updateDispatch(now: now)
        armTimer()
    }

    private mutating func updateDispatch(now: Instant) {
        dispatcher.update(rules: Array(rules.rules.values) + proxyRoutes, ingress: readableInputs, now: now, actions: &actions)
    }

    private mutating func armTimer() {
        let deadline = nextDeadline
        guard deadline != armedTimer else { return }
        armedTimer = deadline
        actions.append(.setTimer(deadline))
    }
}
