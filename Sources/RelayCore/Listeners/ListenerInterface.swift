import Collections

/// The router side of IGMP (RFC 2236, RFC 3376) or MLD (RFC 2710, RFC 3810) on one interface
/// and family: querier election, general / startup / group-specific / group-and-source-specific
/// queries, and the listener records of every group. Listener state is kept whether or not
/// this router is the querier (a non-querier learns from the reports that answer the
/// querier's queries, and from those queries). Pure: time comes in, actions go out.
public struct ListenerInterface: Sendable {
    public let name: InterfaceName
    public let family: AddressFamily
    public private(set) var configuration: ListenerConfiguration
    /// This router's address on the link: the interface's IPv4 address, or its IPv6
    /// link-local address (MLD is sent from link-local only). nil: it cannot query.
    public private(set) var address: IPAddress?
    /// The other router that is querier, while its Other Querier Present timer runs.
    public private(set) var otherQuerier: IPAddress?
    public private(set) var otherQuerierExpiry: Instant?
    /// When the next general query goes out, while this router is querier.
    public private(set) var nextGeneralQuery: Instant?
    public private(set) var startupQueriesLeft: Int
    /// QRV and QQI heard from the querier, adopted while not querier (RFC 3376 8.1, 8.2).
    public private(set) var adopted: ListenerConfiguration?
    public private(set) var groups: [IPAddress: ListenerGroup] = [:]
    public private(set) var counters = ListenerCounters()

    /// Group deadlines in time order, so a timer or a deadline question costs log(groups), not
    /// a scan of every group (a segment with thousands of groups takes reports all the time).
    /// Entries may be stale (a record refreshed or gone): popping one re-checks the record, so
    /// a stale entry costs one spurious check, never a missed deadline. `scheduled` is the
    /// earliest entry each group has, so a refresh does not push another.
    struct Due: Comparable, Sendable {
        var at: Instant
        var group: IPAddress
        static func < (lhs: Self, rhs: Self) -> Bool { (lhs.at, lhs.group) < (rhs.at, rhs.group) }
    }
    private var timers = Heap<Due>()
    private var scheduled: [IPAddress: Instant] = [:]

    public init(name: InterfaceName, family: AddressFamily, address: IPAddress?,
                configuration: ListenerConfiguration = ListenerConfiguration(), now: Instant,
                actions: inout Deque<ListenerAction>) {
        self.name = name
        self.family = family
        var configuration = configuration
        // MLD has no IGMPv1 twin: its oldest version is MLDv1, the `.v2` generation.
        if family == .ipv6, configuration.version == .v1 { configuration.version = .v2 }
        self.configuration = configuration
        self.address = address?.family == family ? address : nil
        startupQueriesLeft = configuration.startupQueryCount
        // RFC 3376 6.6.2: a router starts as querier and sends its startup queries at once.
        if isQuerier {
            nextGeneralQuery = now
            actions.append(.querierChanged(interface: name, family: family, querier: self.address, isSelf: true))
        }
    }

    /// The settings in force: this router's own, with the querier's QRV / QQI while not querier.
    public var effective: ListenerConfiguration { adopted ?? configuration }

    public var isQuerier: Bool { configuration.querierEnabled && address != nil && otherQuerier == nil }

    /// The segment's querier as far as this router knows.
    public var querier: IPAddress? { otherQuerier ?? (isQuerier ? address : nil) }

    /// Does a listener here want (source, group)? (v1/v2 and MLDv1 listeners are EXCLUDE {}.)
    public func wants(source: IPAddress, group: IPAddress) -> Bool {
        groups[group]?.wants(source: source) ?? false
    }

    /// Does a listener here want `group` from every source not excluded ((*,G))?
    public func wantsAnySource(group: IPAddress) -> Bool { groups[group]?.wantsAnySource ?? false }

    public var nextDeadline: Instant? {
        var earliest = otherQuerierExpiry
        if isQuerier, let next = nextGeneralQuery, earliest.map({ next < $0 }) ?? true { earliest = next }
        if let next = timers.min?.at, earliest.map({ next < $0 }) ?? true { earliest = next }
        return earliest
    }

    // MARK: - Inputs

    /// A new address (or none): the election restarts from this router's side. With a lower
    /// address than the current querier it takes over at once instead of waiting out the
    /// other querier's timer.
    public mutating func setAddress(_ address: IPAddress?, now: Instant, actions: inout Deque<ListenerAction>) {
        let wasQuerier = isQuerier, before = querier
        self.address = address?.family == family ? address : nil
        if let own = self.address, let other = otherQuerier, own < other {
            otherQuerier = nil
            otherQuerierExpiry = nil
        }
        if isQuerier, !wasQuerier || before != querier { becomeQuerier(now: now) }
        if !isQuerier { cancelRetransmissions() }
        reportQuerier(before: before, actions: &actions)
    }

    public mutating func receive(_ received: ListenerFrame.Received, now: Instant, actions: inout Deque<ListenerAction>) {
        guard received.source.family == family else { return }
        switch received.message {
        case let .query(query):
            receiveQuery(query, from: received.source, now: now, actions: &actions)
        case let .report(version, group):
            counters.reportsReceived[version, default: 0] += 1
            guard !ListenerAddresses.isUntracked(group) else { return }
            update(group, reporter: received.source, now: now, actions: &actions) { record, config, gmi in
                // RFC 3376 7.3.2: older reports set their host-present timer and count as IS_EX({}).
                let ohpi = now + config.olderHostPresentInterval
                if version == .v1 { record.v1HostPresent = ohpi } else if version == .v2 { record.v2HostPresent = ohpi }
                return record.apply(.modeIsExclude, [], gmi: gmi)
            }
        case let .leave(group):
            counters.leavesReceived += 1
            guard !ListenerAddresses.isUntracked(group) else { return }
            // RFC 3376 7.3.2: in IGMPv1 mode leaves are ignored; otherwise a leave is TO_IN({}).
            if groups[group]?.compatibility(router: configuration.version) == .v1 {
                counters.ignoredByCompatibility += 1
                return
            }
            update(group, reporter: received.source, now: now, actions: &actions) { record, _, gmi in
                record.apply(.changeToInclude, [], gmi: gmi)
            }
        case let .v3Report(records):
            counters.reportsReceived[.v3, default: 0] += 1
            // A v2 router (RFC 2236, RFC 2710) does not know v3 reports.
            guard configuration.version == .v3 else {
                counters.ignoredByCompatibility += 1
                return
            }
            for record in records where !ListenerAddresses.isUntracked(record.group) {
                let type = record.type
                var sources = record.sources
                let mode = groups[record.group]?.compatibility(router: configuration.version) ?? configuration.version
                if mode < .v3 {
                    // RFC 3376 7.3.2: BLOCK is ignored and TO_EX(x) is TO_EX({}) in older modes.
                    if type == .blockOldSources { counters.ignoredByCompatibility += 1; continue }
                    if type == .changeToExclude { sources = [] }
                }
                update(record.group, reporter: received.source, now: now, actions: &actions) { group, _, gmi in
                    group.apply(type, sources, gmi: gmi)
                }
            }
        }
    }

    /// Runs out what is due at `now`: the other-querier timer, general queries, query
    /// retransmissions and every group's timers. Late or spurious calls are harmless.
    public mutating func advance(now: Instant, actions: inout Deque<ListenerAction>) {
        if let expiry = otherQuerierExpiry, expiry <= now {
            // RFC 3376 6.6.2: the other querier went quiet; this router takes over.
            let before = querier
            otherQuerier = nil
            otherQuerierExpiry = nil
            adopted = nil
            if isQuerier { becomeQuerier(now: now) }
            reportQuerier(before: before, actions: &actions)
        }
        if isQuerier, let next = nextGeneralQuery, next <= now {
            sendGeneralQuery(now: now, actions: &actions)
        }
        while let first = timers.min, first.at <= now {
            _ = timers.popMin()
            let key = first.group
            if scheduled[key] == first.at { scheduled[key] = nil }
            guard var record = groups[key], let due = record.nextDeadline, due <= now else {
                schedule(key)
                continue
            }
            let before = record.forwarding
            if isQuerier, let next = record.nextRetransmission, next <= now {
                sendScheduledQueries(key, &record, now: now, actions: &actions)
            }
            record.expireTimers(now: now)
            store(key, record, before: before, actions: &actions)
        }
    }

    /// Makes sure the heap holds an entry no later than the group's next deadline.
    private mutating func schedule(_ group: IPAddress) {
        guard let deadline = groups[group]?.nextDeadline else { return }
        if let existing = scheduled[group], existing <= deadline { return }
        scheduled[group] = deadline
        timers.insert(Due(at: deadline, group: group))
    }

    // MARK: - Queries heard

    mutating func receiveQuery(_ query: ListenerQuery, from source: IPAddress, now: Instant, actions: inout Deque<ListenerAction>) {
        counters.queriesReceived += 1
        guard source != address else { return }  // our own, looped back
        if query.version != configuration.version {
            counters.queriesOfOtherVersion += 1
        }
        let unspecified = source == .v4(IPv4Address(0)) || source == .v6(IPv6Address(high: 0, low: 0))
        if unspecified {
            // RFC 4541 2.1.1: snooping switches may query from 0.0.0.0; they are not routers
            // and never win an election, or every relay behind such a switch would go silent.
            counters.queriesFromUnspecified += 1
        } else if address.map({ source < $0 }) ?? true {
            // RFC 3376 6.6.2: a query from a lower address makes this router a non-querier.
            // A query from someone between the current querier and us changes nothing.
            if otherQuerier.map({ source <= $0 }) ?? true {
                let before = querier
                otherQuerier = source
                if query.version == .v3 {
                    adopted = configuration.adopting(robustness: query.robustness, queryInterval: query.queryInterval)
                }
                otherQuerierExpiry = now + effective.otherQuerierPresentInterval
                cancelRetransmissions()
                reportQuerier(before: before, actions: &actions)
            }
        }
        // RFC 3376 6.6.1: a specific query without the S flag lowers the timers it names to
        // the last member query time (the querier's interval, from its Max Resp Code).
        guard let group = query.group, !query.suppressRouterSideProcessing, var record = groups[group] else { return }
        let before = record.forwarding
        let lmqt = now + query.maxResponseTime(family) * effective.lastMemberQueryCount
        if query.sources.isEmpty { record.lowerGroupTimer(to: lmqt) } else { record.lowerSourceTimers(query.sources, to: lmqt) }
        store(group, record, before: before, actions: &actions)
    }

    // MARK: - Queries sent

    private mutating func becomeQuerier(now: Instant) {
        adopted = nil
        nextGeneralQuery = now
    }

    private mutating func cancelRetransmissions() {
        for key in groups.keys {
            groups[key]!.groupQueriesLeft = 0
            groups[key]!.sourceQueriesLeft = [:]
            groups[key]!.nextRetransmission = nil
            if groups[key]!.isEmpty { groups[key] = nil }
        }
    }

    private mutating func reportQuerier(before: IPAddress?, actions: inout Deque<ListenerAction>) {
        let now = querier
        guard now != before else { return }
        counters.querierChanges += 1
        actions.append(.querierChanged(interface: name, family: family, querier: now, isSelf: now != nil && now == address))
    }

    private mutating func sendGeneralQuery(now: Instant, actions: inout Deque<ListenerAction>) {
        let config = effective
        send(query(group: nil, responseTime: config.queryResponseInterval, sources: [], suppress: false), actions: &actions)
        counters.generalQueriesSent += 1
        if startupQueriesLeft > 0 { startupQueriesLeft -= 1 }
        nextGeneralQuery = now + (startupQueriesLeft > 0 ? config.startupQueryInterval : config.queryInterval)
    }

    /// The Max Resp Code for `time` in this family's and version's encoding.
    private func responseCode(_ time: Duration) -> UInt16 {
        let milliseconds = Int(time.components.seconds) * 1000 + Int(time.components.attoseconds / 1_000_000_000_000_000)
        switch (family, configuration.version) {
        case (.ipv4, .v3): return UInt16(ExponentialCode.encode8(milliseconds / 100))
        case (.ipv4, _): return UInt16(min(max(milliseconds / 100, 1), 255))
        case (.ipv6, .v3): return ExponentialCode.encode16(milliseconds)
        case (.ipv6, _): return UInt16(min(milliseconds, 65535))
        }
    }

    private func query(group: IPAddress?, responseTime: Duration, sources: [IPAddress], suppress: Bool) -> ListenerQuery {
        let config = effective
        let version = configuration.version
        let qqi = Int(config.queryInterval.components.seconds)
        return ListenerQuery(
            version: version, group: group, maxResponseCode: responseCode(responseTime),
            suppressRouterSideProcessing: version == .v3 && suppress,
            robustness: version == .v3 && config.robustness <= 7 ? UInt8(config.robustness) : 0,
            queryIntervalCode: version == .v3 ? ExponentialCode.encode8(qqi) : 0,
            sources: version == .v3 ? sources : [])
    }

    private mutating func send(_ query: ListenerQuery, actions: inout Deque<ListenerAction>) {
        guard let source = address else { return }
        let message = ListenerMessage.query(query)
        actions.append(.send(ListenerTransmit(interface: name, message: message, source: source,
                                              destination: message.destination(family))))
    }

    /// A table's "Send Q(G)" / "Send Q(G,A)" (RFC 3376 6.6.3): lower the timers to the last
    /// member query time, send now, and again count - 1 times one interval apart.
    private mutating func schedule(_ requests: [QueryRequest], _ group: IPAddress, _ record: inout ListenerGroup,
                                   now: Instant, actions: inout Deque<ListenerAction>) {
        guard isQuerier, !requests.isEmpty else { return }
        // IGMPv1 hosts do not understand specific queries and would not answer (7.3.2).
        if record.compatibility(router: configuration.version) == .v1 { return }
        let count = effective.lastMemberQueryCount
        for request in requests {
            switch request {
            case .group:
                record.groupQueriesLeft = count
            case let .sources(sources):
                // A v2 router and IGMPv2 / MLDv1 hosts know no source-specific queries.
                guard configuration.version == .v3 else { continue }
                for source in sources { record.sourceQueriesLeft[source] = count }
            }
        }
        sendScheduledQueries(group, &record, now: now, actions: &actions, lowering: requests)
    }

    /// Sends the pending group and source queries of one group. S flag (6.6.3.1/6.6.3.2): set
    /// on a retransmission when the timer it is about is above the last member query time,
    /// since a report raised it; sources are split into those two lists.
    private mutating func sendScheduledQueries(_ group: IPAddress, _ record: inout ListenerGroup, now: Instant,
                                               actions: inout Deque<ListenerAction>, lowering: [QueryRequest] = []) {
        let config = effective
        let lmqt = now + config.lastMemberQueryTime
        for request in lowering {
            switch request {
            case .group: record.lowerGroupTimer(to: lmqt)
            case let .sources(sources): record.lowerSourceTimers(sources, to: lmqt)
            }
        }
        if record.groupQueriesLeft > 0 {
            let suppress = (record.groupTimer ?? now) > lmqt
            send(query(group: group, responseTime: config.lastMemberQueryInterval, sources: [], suppress: suppress), actions: &actions)
            counters.specificQueriesSent += 1
            record.groupQueriesLeft -= 1
        }
        if !record.sourceQueriesLeft.isEmpty {
            var above: [IPAddress] = [], below: [IPAddress] = []
            for source in record.sourceQueriesLeft.keys.sorted() {
                if let timer = record.requested[source], timer > lmqt { above.append(source) } else { below.append(source) }
                let left = record.sourceQueriesLeft[source]! - 1
                record.sourceQueriesLeft[source] = left > 0 ? left : nil
            }
            for (sources, suppress) in [(above, true), (below, false)] where !sources.isEmpty {
                send(query(group: group, responseTime: config.lastMemberQueryInterval, sources: sources, suppress: suppress),
                     actions: &actions)
                counters.specificQueriesSent += 1
            }
        }
        let pending = record.groupQueriesLeft > 0 || !record.sourceQueriesLeft.isEmpty
        record.nextRetransmission = pending ? now + config.lastMemberQueryInterval : nil
    }

    // MARK: - Records

    /// Applies a change to one group's record, sends what its table asks, and reports a
    /// change in who is wanted.
    private mutating func update(_ group: IPAddress, reporter: IPAddress, now: Instant, actions: inout Deque<ListenerAction>,
                                 _ change: (inout ListenerGroup, ListenerConfiguration, Instant) -> [QueryRequest]) {
        guard groups[group] != nil || groups.count < configuration.maximumGroups else {
            counters.ignoredByLimits += 1
            return
        }
        var record = groups[group] ?? ListenerGroup()
        let before = record.forwarding
        let config = effective
        let previous = record
        let requests = change(&record, config, now + config.groupMembershipInterval)
        if record.requested.count + record.excluded.count > configuration.maximumSourcesPerGroup,
           record.requested.count + record.excluded.count > previous.requested.count + previous.excluded.count {
            // As if the report had not arrived: a partial source list would mean something else.
            counters.ignoredByLimits += 1
            return
        }
        record.lastReporter = reporter
        record.lastReportAt = now
        schedule(requests, group, &record, now: now, actions: &actions)
        store(group, record, before: before, actions: &actions)
    }

    private mutating func store(_ group: IPAddress, _ record: ListenerGroup, before: ListenerGroup.Forwarding,
                                actions: inout Deque<ListenerAction>) {
        // An INCLUDE {} record has no listeners; its pending queries have nothing left to ask.
        let gone = record.mode == .include && record.requested.isEmpty
        groups[group] = gone ? nil : record
        schedule(group)
        if record.forwarding != before {
            actions.append(.listenersChanged(interface: name, group: group))
        }
    }

    /// The interface went away: every listener with it.
    public mutating func shutDown(actions: inout Deque<ListenerAction>) {
        for group in groups.keys.sorted() where groups[group]!.forwarding != ListenerGroup().forwarding {
            actions.append(.listenersChanged(interface: name, group: group))
        }
        groups = [:]
        timers = Heap()
        scheduled = [:]
        if querier != nil {
            actions.append(.querierChanged(interface: name, family: family, querier: nil, isSelf: false))
        }
    }
}
