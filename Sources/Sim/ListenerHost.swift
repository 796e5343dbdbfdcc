import RelayCore

/// What a simulated host asks for on one group: a source filter (RFC 3376 3.1). INCLUDE with
/// no sources is no membership at all.
struct HostFilter: Hashable, Sendable {
    var mode: FilterMode
    var sources: [IPAddress]

    init(mode: FilterMode, sources: [IPAddress]) {
        self.mode = mode
        self.sources = Array(Set(sources)).sorted()
    }

    static let none = HostFilter(mode: .include, sources: [])
    var isMember: Bool { mode == .exclude || !sources.isEmpty }

    /// Whether traffic from `source` passes this filter.
    func admits(_ source: IPAddress) -> Bool {
        mode == .include ? sources.contains(source) : !sources.contains(source)
    }
}

/// A host on a simulated LAN segment, as the host side of IGMPv2 (RFC 2236) / MLDv1 (RFC 2710)
/// and IGMPv3 (RFC 3376 5) / MLDv2 (RFC 3810 6) behaves. Times are simulated nanoseconds; every
/// random delay comes from the `SimRandom` the caller passes (one stream per run), so a seed
/// fixes what every host does. Each method returns the messages the host sends at that instant.
///
/// Modelled: unsolicited state-change reports sent [Robustness Variable] times at random
/// intervals within the Unsolicited Report Interval (v3: ALLOW/BLOCK, TO_IN/TO_EX records;
/// a newer change of a group replaces its pending retransmissions); current-state answers to
/// general, group-specific and group-and-source-specific queries after a random delay up to
/// the query's Max Resp Time (an earlier pending answer is kept); the v3 host's fall-back to
/// v2 when it hears a v1/v2 query (RFC 3376 7.2.1, for the Older Version Querier Present
/// Timeout); v2 report suppression (a report heard from another host for the group cancels
/// the pending one and clears the "last reporter" flag) and leaves only from the last reporter.
/// Not modelled: IGMPv1 hosts, merging of pending ALLOW/BLOCK lists (a newer change replaces
/// them), report size limits (every record fits one message).
struct ListenerHost: Sendable {
    let interface: Int
    let address: IPAddress
    let mac: MACAddress
    /// The configured version (`force_igmp_version` / `force_mld_version`): `.v2` or `.v3`.
    var version: ListenerVersion
    /// RFC 3376 8.11: a v3 host behaves as v2 until this time after hearing a v2 query.
    var olderQuerierUntil: UInt64 = 0
    private(set) var filters: [IPAddress: HostFilter] = [:]

    /// v3 state-change records still to be (re)sent, per group, and how many sends are left.
    private var pendingChanges: [IPAddress: (records: [GroupRecord], left: Int)] = [:]
    private var changeAt: UInt64?
    /// v3: the answer to a general query (all groups' current state).
    private var generalAt: UInt64?
    /// Per group: a pending answer (v3: to a group / group-and-source query; v2: to any query,
    /// or the repeat of an unsolicited report).
    private var groupAt: [IPAddress: UInt64] = [:]
    /// v3 group-and-source queries: the sources asked about (nil: the whole group was asked).
    private var askedSources: [IPAddress: Set<IPAddress>?] = [:]
    /// v2: the groups whose last report on the segment was this host's.
    private(set) var lastReporter: Set<IPAddress> = []

    static let robustness = 2
    /// RFC 3376 8.11 / RFC 2236 8.10 / RFC 3810 9.11: 1 s (v3), 10 s (IGMPv2 unsolicited).
    static let unsolicitedReportIntervalV3: UInt64 = 1_000_000_000
    static let unsolicitedReportIntervalV2: UInt64 = 10_000_000_000
    /// RFC 3376 8.12 with the defaults: 2 x 125 s + 10 s.
    static let olderVersionQuerierPresentTimeout: UInt64 = 260_000_000_000

    init(interface: Int, address: IPAddress, mac: MACAddress, version: ListenerVersion) {
        self.interface = interface
        self.address = address
        self.mac = mac
        self.version = version
    }

    var family: AddressFamily { address.family }

    /// The version the host speaks now.
    func effectiveVersion(now: UInt64) -> ListenerVersion {
        version == .v3 && now < olderQuerierUntil ? .v2 : version
    }

    /// What the host's reports ask the router for: in v2 (or fallen back), any member wants
    /// every source, since v2 cannot say otherwise.
    func wants(source: IPAddress, group: IPAddress, now: UInt64) -> Bool {
        guard let filter = filters[group], filter.isMember else { return false }
        return effectiveVersion(now: now) == .v3 ? filter.admits(source) : true
    }

    func isMember(_ group: IPAddress) -> Bool { filters[group]?.isMember ?? false }

    var nextDeadline: UInt64? {
        var deadlines = [changeAt, generalAt].compactMap { $0 } + groupAt.values
        if version == .v3, olderQuerierUntil > 0 { deadlines.append(olderQuerierUntil) }
        return deadlines.min()
    }

    // MARK: - The application's socket calls

    /// The host's filter for `group` changes (a join, a source change, or a leave as
    /// `HostFilter.none`).
    mutating func setFilter(_ filter: HostFilter, group: IPAddress, now: UInt64, rng: inout SimRandom) -> [ListenerMessage] {
        let old = filters[group] ?? .none
        guard old != filter else { return [] }
        filters[group] = filter.isMember ? filter : nil
        if effectiveVersion(now: now) == .v3 {
            let records = Self.changeRecords(from: old, to: filter, group: group)
            guard !records.isEmpty else { return [] }
            pendingChanges[group] = (records, Self.robustness - 1)
            if changeAt == nil { changeAt = now + 1 + UInt64(rng.below(Int(Self.unsolicitedReportIntervalV3))) }
            return [.v3Report(records)]
        }
        // v2: a join is an unsolicited report, repeated once; a leave is sent only by the last reporter.
        if filter.isMember && !old.isMember {
            lastReporter.insert(group)
            groupAt[group] = now + 1 + UInt64(rng.below(Int(Self.unsolicitedReportIntervalV2)))
            return [.report(.v2, group: group)]
        }
        if !filter.isMember && old.isMember {
            groupAt[group] = nil
            defer { lastReporter.remove(group) }
            return lastReporter.contains(group) ? [.leave(group: group)] : []
        }
        return []
    }

    /// RFC 3376 5.1: the records for a filter change (mode change: TO_IN / TO_EX with the new
    /// list; same mode: ALLOW the new sources and BLOCK the old).
    static func changeRecords(from old: HostFilter, to new: HostFilter, group: IPAddress) -> [GroupRecord] {
        if old.mode != new.mode {
            return [GroupRecord(new.mode == .include ? .changeToInclude : .changeToExclude, group: group, sources: new.sources)]
        }
        let oldSet = Set(old.sources), newSet = Set(new.sources)
        let added = newSet.subtracting(oldSet).sorted(), removed = oldSet.subtracting(newSet).sorted()
        // INCLUDE: new sources are allowed, dropped ones blocked; EXCLUDE: the other way round.
        let (allow, block) = new.mode == .include ? (added, removed) : (removed, added)
        var records: [GroupRecord] = []
        if !allow.isEmpty { records.append(GroupRecord(.allowNewSources, group: group, sources: allow)) }
        if !block.isEmpty { records.append(GroupRecord(.blockOldSources, group: group, sources: block)) }
        return records
    }

    /// `force_igmp_version`: switching drops what is pending for the old version.
    mutating func setVersion(_ newVersion: ListenerVersion) {
        guard newVersion != version else { return }
        version = newVersion
        pendingChanges = [:]
        changeAt = nil
        generalAt = nil
        groupAt = [:]
        askedSources = [:]
        lastReporter = []
    }

    // MARK: - Frames heard on the segment

    mutating func receive(_ received: ListenerFrame.Received, now: UInt64, rng: inout SimRandom) -> [ListenerMessage] {
        guard received.family == family, received.source != address else { return [] }
        switch received.message {
        case let .query(query):
            receiveQuery(query, now: now, rng: &rng)
        case let .report(_, group):
            // RFC 2236 3: another member answered; this host stays quiet for the group.
            if effectiveVersion(now: now) == .v2, isMember(group) {
                groupAt[group] = nil
                lastReporter.remove(group)
            }
        case .leave, .v3Report:
            break  // hosts ignore leaves and v3 reports (only routers read them)
        }
        return []
    }

    private mutating func receiveQuery(_ query: ListenerQuery, now: UInt64, rng: inout SimRandom) {
        if query.version < .v3, version == .v3 {
            // RFC 3376 7.2.1: an older querier; answer in its version from now on.
            olderQuerierUntil = now + Self.olderVersionQuerierPresentTimeout
            pendingChanges = [:]
            changeAt = nil
            generalAt = nil
        }
        let maxResponse = UInt64(max(1, query.maxResponseTime(family).simNanoseconds))
        let delay = now + 1 + UInt64(rng.below(Int(maxResponse)))
        if effectiveVersion(now: now) == .v2 {
            // RFC 2236 3: a delay per group asked about; a running timer is reset only when
            // the query's Max Response Time is less than what it has left.
            let groups = query.group.map { [$0] } ?? filters.keys.sorted()
            for group in groups where isMember(group) {
                if let pending = groupAt[group], pending <= now + maxResponse { continue }
                groupAt[group] = delay
            }
            return
        }
        // RFC 3376 5.2: a general query answer pending sooner covers everything.
        if let general = generalAt, general <= delay { return }
        guard let group = query.group else {
            generalAt = delay
            return
        }
        guard isMember(group) else { return }
        if let pending = groupAt[group], let asked = askedSources[group] {
            // A pending group answer stays whole; pending source lists grow.
            if let asked, !query.sources.isEmpty {
                askedSources[group] = asked.union(query.sources)
            } else {
                askedSources[group] = .some(nil)
            }
            groupAt[group] = min(pending, delay)
        } else {
            askedSources[group] = query.sources.isEmpty ? .some(nil) : Set(query.sources)
            groupAt[group] = delay
        }
    }

    // MARK: - Timers

    mutating func advance(now: UInt64, rng: inout SimRandom) -> [ListenerMessage] {
        var messages: [ListenerMessage] = []
        if version == .v3, olderQuerierUntil > 0, olderQuerierUntil <= now { olderQuerierUntil = 0 }
        let speaking = effectiveVersion(now: now)
        if let at = changeAt, at <= now {
            changeAt = nil
            var records: [GroupRecord] = []
            for group in pendingChanges.keys.sorted() {
                let pending = pendingChanges[group]!
                records += pending.records
                pendingChanges[group] = pending.left > 1 ? (pending.records, pending.left - 1) : nil
            }
            if !pendingChanges.isEmpty { changeAt = now + 1 + UInt64(rng.below(Int(Self.unsolicitedReportIntervalV3))) }
            if !records.isEmpty, speaking == .v3 { messages.append(.v3Report(records)) }
        }
        if let at = generalAt, at <= now {
            generalAt = nil
            // RFC 3376 5.2: current-state records of every group with state.
            let records = filters.keys.sorted().compactMap { group -> GroupRecord? in
                let filter = filters[group]!
                return GroupRecord(filter.mode == .include ? .modeIsInclude : .modeIsExclude, group: group, sources: filter.sources)
            }
            if !records.isEmpty, speaking == .v3 { messages.append(.v3Report(records)) }
        }
        for group in groupAt.keys.sorted() where groupAt[group]! <= now {
            groupAt[group] = nil
            let asked = askedSources.removeValue(forKey: group) ?? nil
            guard let filter = filters[group], filter.isMember else { continue }
            if speaking == .v2 {
                messages.append(.report(.v2, group: group))
                lastReporter.insert(group)
                continue
            }
            if let asked {
                // RFC 3376 5.2: a group-and-source query is answered with IS_IN of the asked
                // sources the host still wants (nothing, when it wants none of them).
                let wanted = asked.filter { filter.admits($0) }.sorted()
                if !wanted.isEmpty { messages.append(.v3Report([GroupRecord(.modeIsInclude, group: group, sources: wanted)])) }
            } else {
                messages.append(.v3Report([GroupRecord(filter.mode == .include ? .modeIsInclude : .modeIsExclude,
                                                       group: group, sources: filter.sources)]))
            }
        }
        return messages
    }
}

/// Another multicast router on a segment (say FRRouting's querier): it sends general queries
/// at its query interval (startup queries first, RFC 3376 8.6/8.7), yields to a query from a
/// lower address for the Other Querier Present Interval (RFC 3376 6.6.2), and takes over
/// again when that one goes quiet. While querier it answers a leave (and, as a v3 router, a
/// TO_IN or BLOCK record) with [Last Member Query Count] group-specific queries a Last
/// Member Query Interval apart (RFC 3376 6.6.3.1, RFC 2236 3), which lower a non-querier's
/// timers. It keeps no listener state of its own: the relay's behaviour as a non-querier
/// under such a router is what the runs check.
struct SegmentQuerier: Sendable {
    let interface: Int
    let address: IPAddress
    let mac: MACAddress
    let version: ListenerVersion
    let queryInterval: UInt64
    let robustness = 2
    static let queryResponseInterval: UInt64 = 10_000_000_000
    var active = true
    private(set) var nextQueryAt: UInt64?
    private var startupLeft: Int
    private var otherQuerierUntil: UInt64?
    /// Group-specific queries still to send: how many, and when the next is due.
    private var groupQueries: [IPAddress: (left: Int, at: UInt64)] = [:]
    static let lastMemberQueryInterval: UInt64 = 1_000_000_000

    init(interface: Int, address: IPAddress, mac: MACAddress, version: ListenerVersion, queryInterval: UInt64, now: UInt64) {
        self.interface = interface
        self.address = address
        self.mac = mac
        self.version = version
        self.queryInterval = queryInterval
        startupLeft = robustness
        nextQueryAt = now
    }

    var family: AddressFamily { address.family }
    var isQuerier: Bool { active && otherQuerierUntil == nil }
    var otherQuerierPresentInterval: UInt64 { UInt64(robustness) * queryInterval + Self.queryResponseInterval / 2 }
    var nextDeadline: UInt64? {
        active ? ([nextQueryAt, otherQuerierUntil].compactMap { $0 } + groupQueries.values.map(\.at)).min() : nil
    }

    mutating func stop() {
        active = false
        nextQueryAt = nil
        otherQuerierUntil = nil
        groupQueries = [:]
    }

    mutating func receive(_ received: ListenerFrame.Received, now: UInt64) {
        guard active, received.family == family else { return }
        var departed: [IPAddress] = []
        switch received.message {
        case .query:
            guard received.source < address else { return }
            otherQuerierUntil = now + otherQuerierPresentInterval
            nextQueryAt = nil
            groupQueries = [:]
            return
        case let .leave(group):
            departed = [group]
        case let .v3Report(records) where version == .v3:
            departed = records.filter { $0.type == .changeToInclude || $0.type == .blockOldSources }.map(\.group)
        default:
            return
        }
        guard isQuerier else { return }
        for group in departed where groupQueries[group] == nil { groupQueries[group] = (robustness, now) }
    }

    mutating func advance(now: UInt64) -> [ListenerMessage] {
        guard active else { return [] }
        if let until = otherQuerierUntil, until <= now {
            otherQuerierUntil = nil
            nextQueryAt = now
        }
        guard isQuerier else { return [] }
        var messages: [ListenerMessage] = []
        for group in groupQueries.keys.sorted() where groupQueries[group]!.at <= now {
            let left = groupQueries[group]!.left - 1
            groupQueries[group] = left > 0 ? (left, now + Self.lastMemberQueryInterval) : nil
            var query = generalQuery(responseTime: Self.lastMemberQueryInterval)
            query.group = group
            messages.append(.query(query))
        }
        if let at = nextQueryAt, at <= now {
            if startupLeft > 0 { startupLeft -= 1 }
            nextQueryAt = now + (startupLeft > 0 ? queryInterval / 4 : queryInterval)
            messages.append(.query(generalQuery(responseTime: Self.queryResponseInterval)))
        }
        return messages
    }

    func generalQuery(responseTime: UInt64) -> ListenerQuery {
        let tenths = Int(responseTime / 100_000_000)
        switch (family, version) {
        case (.ipv4, .v3):
            return ListenerQuery(version: .v3, maxResponseCode: UInt16(ExponentialCode.encode8(tenths)),
                                 robustness: UInt8(robustness), queryIntervalCode: ExponentialCode.encode8(Int(queryInterval / 1_000_000_000)))
        case (.ipv4, _):
            return ListenerQuery(version: .v2, maxResponseCode: UInt16(min(tenths, 255)))
        case (.ipv6, .v3):
            return ListenerQuery(version: .v3, maxResponseCode: ExponentialCode.encode16(tenths * 100),
                                 robustness: UInt8(robustness), queryIntervalCode: ExponentialCode.encode8(Int(queryInterval / 1_000_000_000)))
        case (.ipv6, _):
            return ListenerQuery(version: .v2, maxResponseCode: UInt16(min(tenths * 100, 65535)))
        }
    }
}

extension Duration {
    /// Whole nanoseconds (the simulator's clock unit).
    var simNanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
