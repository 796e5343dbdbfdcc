import RelayCore

/// The judge of outputs that follow listeners and of querier election. Like `Oracle`, it
/// knows only what the simulated world did — which host asked for what and when, which
/// messages reached the relay's interface, which queries went out — never the core's state.
///
/// Bounds, for the follow output of group G on interface I whose frames carry source S (the
/// relay's address there), derived from RFC 3376 / RFC 2236 timers (RFC 3810 / 2710 have the
/// same shapes) and this simulator's latencies:
///
/// - **open** (`follow_output_open`): a frame the relay accepts for the output's rule at time t
///   must be sent to it when some host H has wanted (S,G) since before it sent a report saying
///   so, that report reached the relay at t_r (a version the relay reads), t_r + `openSlack` <= t
///   <= t_r + GMI - 10 ms (the smallest group membership interval the relay may run, its own or
///   one adopted from another querier: a lost refresh lets the state lapse after that), and no
///   message that lowers timers for G (a leave, TO_IN, or BLOCK / TO_EX naming S, or another
///   querier's group-specific query) reached the relay after that report (RFC 3376 6.4.2: after one, only a new report keeps the state). `openSlack` is the supervisor/worker
///   channel's latency plus its fault delay (≤ 50 ms) plus 1 ms, plus 5 s of gate resends
///   (every 250 ms) when supervisor/worker messages may be lost. Not judged: within a second
///   of a worker crash or restart, interface change or rule change, while the interface is
///   down, or when more than 25 % of supervisor/worker messages are lost (20 resends could
///   all fail too often; the liveness phase judges those runs once faults stop).
/// - **closed, loose** (`follow_output_closed`): a send at t is wrong when no host wants (S,G)
///   at t and none ever did, or the last one stopped at t_l with t > t_l + GMI + QRI + 5 s.
///   After the last want ends, a report still in flight or an answer of a member that does not
///   want S to a query (within the Max Resp Time, at most QRI) can start a GMI timer for S
///   (RFC 3376 6.4.1: IS_EX(A) in EXCLUDE mode sets (A-X-Y) = GMI), and nothing after can; v2
///   compatibility (Older Host Present = GMI) ends as soon. The 5 s cover gate resends under
///   message loss.
/// - **closed, tight**: when the relay is the only router on the segment (no simulated querier
///   ever started there), a message that lowers S's timers and asks for nothing of S (a v2
///   leave, a v3 TO_IN without S, a BLOCK of S) reached the relay at t_d when no host wanted S
///   any more, no host is in EXCLUDE mode for G from t_d on (its IS_EX answers could put S on
///   the requested list again, RFC 3376 6.4.1; INCLUDE members' answers cannot name S), and no
///   v1/v2 report for G reached the relay within the Older Host Present
///   Interval before t_d (v2 compatibility ignores BLOCK), then the relay's last member
///   queries go unanswered and the state ends at t_d + LMQT: a send after t_d + LMQT +
///   `openSlack` is wrong. Not judged when more than 25 % of supervisor/worker messages are lost.
/// - **one querier** (`single_querier`): a general query from the relay at t is wrong when a
///   query from a router with a lower address reached the relay at t_q > t - OQPI + 10 ms (the
///   relay's Other Querier Present Interval, with the robustness and query interval it adopts
///   from that router); and when a lower router's last query reached the relay at t_q and the
///   interface stayed up, the relay must send a general query by t_q + OQPI + 1 s (it takes
///   over when the other goes quiet); at the end of a run with no lower router heard for
///   OQPI + 1 s, the relay's last general query must be at most its query interval + 1 s old.
struct ListenerOracle {
    struct Key: Hashable, Comparable {
        var interface: Int
        var group: IPAddress
        static func < (a: Self, b: Self) -> Bool { (a.interface, a.group) < (b.interface, b.group) }
    }

    /// What the world did about one (interface, group), from the source S the relay's frames carry.
    struct Group {
        var source: IPAddress
        var wanting: [Int: UInt64] = [:]  // host -> wanted since
        /// Hosts in EXCLUDE mode for G: their answers (IS_EX) can put S back on the
        /// router's requested list (RFC 3376 6.4.1), so the tight bound needs none left.
        var excludeMembers: Set<Int> = []
        var everWanted = false
        var lastWantEnd: UInt64?
        /// Per wanting host: the arrival of its last report that says it wants S.
        var wantReport: [Int: UInt64] = [:]
        var lastLowering: UInt64?
        var lastOldReport: UInt64?
        /// The earliest arrival of a stop message after the wants ended (tight bound), while it applies.
        var stopDelivered: UInt64?
    }

    struct Segment {
        /// The relay's settings per family (nil: no IGMP/MLD router of the relay on this family).
        var relay: [AddressFamily: ListenerConfiguration] = [:]
        var relayAddress: [AddressFamily: IPAddress] = [:]
        /// Simulated routers ever started here, with the robustness and query interval (ns)
        /// the relay runs under them: a v3 querier's QRV and QQI are adopted (RFC 3376 8.1,
        /// 8.2); a v2 query carries neither, so the relay keeps its own.
        var routers: [IPAddress: (robustness: UInt64, interval: UInt64)] = [:]
        /// The last query from a lower-addressed router that reached the relay, per family.
        var lowerQuery: [AddressFamily: (at: UInt64, router: IPAddress)] = [:]
        var lastRelayGeneralQuery: [AddressFamily: UInt64] = [:]
        var lastDownChange: UInt64 = 0
    }

    var groups: [Key: Group] = [:]
    var segments: [Segment]
    var lastDisruption: UInt64 = 0
    let controlLossPossible: Bool
    let openSlack: UInt64

    init(interfaceCount: Int, faults: FaultSpec, channelLatency: UInt64) {
        segments = Array(repeating: Segment(), count: interfaceCount)
        // The core resends gate deltas every 250 ms until acknowledged: at a loss of 25 % or
        // less, 5 s of resends fail together with odds below 1e-12; above it, not judged.
        controlLossPossible = faults.controlLoss > 0.25
        openSlack = channelLatency + (faults.controlDelay > 0 ? 50_000_000 : 0) + 1_000_000
            + (faults.controlLoss > 0 ? 5_000_000_000 : 0)
    }

    static func ns(_ duration: Duration) -> UInt64 { UInt64(max(0, duration.simNanoseconds)) }

    // MARK: - Timers the bounds use

    func groupMembershipIntervals(_ interface: Int, _ family: AddressFamily) -> (min: UInt64, max: UInt64) {
        guard let relay = segments[interface].relay[family] else { return (0, 0) }
        var low = Self.ns(relay.groupMembershipInterval), high = low
        for adopted in segments[interface].routers.values {
            let adopted = adopted.robustness * adopted.interval + Self.ns(relay.queryResponseInterval)
            low = min(low, adopted)
            high = max(high, adopted)
        }
        return (low, high)
    }

    func closeBound(_ interface: Int, _ family: AddressFamily) -> UInt64 {
        guard let relay = segments[interface].relay[family] else { return 0 }
        let response = max(Self.ns(relay.queryResponseInterval), SegmentQuerier.queryResponseInterval)
        return groupMembershipIntervals(interface, family).max + response + 5_000_000_000
    }

    // MARK: - What hosts want

    /// A host's state for `group` now (called after anything that may change it).
    mutating func hostState(interface: Int, group: IPAddress, host: Int, wants: Bool, excludeMember: Bool,
                            source: IPAddress, now: UInt64) {
        let key = Key(interface: interface, group: group)
        var record = groups[key] ?? Group(source: source)
        if wants {
            if record.wanting[host] == nil { record.wanting[host] = now }
            record.everWanted = true
            record.lastWantEnd = nil
            record.stopDelivered = nil
        } else if record.wanting.removeValue(forKey: host) != nil {
            record.wantReport[host] = nil
            if record.wanting.isEmpty { record.lastWantEnd = now }
        }
        if excludeMember {
            if record.excludeMembers.insert(host).inserted { record.stopDelivered = nil }
        } else {
            record.excludeMembers.remove(host)
        }
        groups[key] = record
    }

    // MARK: - What reached the relay

    /// A host's message reached the relay's interface (and its tap) at `now`; it was sent at `sentAt`.
    mutating func relayHeard(_ message: ListenerMessage, family: AddressFamily, interface: Int, host: Int,
                             sentAt: UInt64, now: UInt64) {
        guard let relay = segments[interface].relay[family] else { return }
        func note(_ group: IPAddress, wantsS: (IPAddress) -> Bool, lowers: (IPAddress) -> Bool, old: Bool) {
            let key = Key(interface: interface, group: group)
            guard var record = groups[key] else { return }
            let source = record.source
            if old { record.lastOldReport = now }
            if lowers(source) { record.lastLowering = now }
            if wantsS(source), let since = record.wanting[host], since <= sentAt { record.wantReport[host] = now }
            // A stop: the message lowers S's timers and asks for nothing of S (a leave, TO_IN
            // without S, BLOCK of S), once no host wants S any more.
            if lowers(source), !wantsS(source), record.wanting.isEmpty, record.excludeMembers.isEmpty, record.stopDelivered == nil {
                record.stopDelivered = now
            }
            groups[key] = record
        }
        switch message {
        case let .report(_, group):
            note(group, wantsS: { _ in true }, lowers: { _ in false }, old: true)
        case let .leave(group):
            note(group, wantsS: { _ in false }, lowers: { _ in true }, old: false)
        case let .v3Report(records):
            guard relay.version == .v3 else { return }  // a v2 router ignores v3 reports
            for record in records {
                let sources = record.sources
                switch record.type {
                case .modeIsExclude, .changeToExclude:
                    note(record.group, wantsS: { !sources.contains($0) }, lowers: { record.type == .changeToExclude && sources.contains($0) },
                         old: false)
                case .modeIsInclude, .allowNewSources:
                    note(record.group, wantsS: { sources.contains($0) }, lowers: { _ in false }, old: false)
                case .changeToInclude:
                    note(record.group, wantsS: { sources.contains($0) }, lowers: { _ in true }, old: false)
                case .blockOldSources:
                    note(record.group, wantsS: { _ in false }, lowers: { sources.contains($0) }, old: false)
                }
            }
        case .query:
            break
        }
    }

    /// Another querier's group-specific query reached the relay: it lowers the group's
    /// timers there to LMQT (RFC 3376 6.6.1), so only a later report keeps the state.
    mutating func lowered(interface: Int, group: IPAddress, now: UInt64) {
        groups[Key(interface: interface, group: group)]?.lastLowering = now
    }

    // MARK: - Judging sends

    /// Whether the relay must send a frame it accepted at `now` to the follow output of `group`
    /// on `interface`; nil when it need not (or this is not judged now).
    func mustOpen(interface: Int, group: IPAddress, interfaceUp: Bool, now: UInt64) -> Int? {
        guard !controlLossPossible, interfaceUp, now >= lastDisruption + 1_000_000_000,
              now >= segments[interface].lastDownChange + 1_000_000_000,
              let record = groups[Key(interface: interface, group: group)] else { return nil }
        let gmi = groupMembershipIntervals(interface, group.family).min
        for host in record.wanting.keys.sorted() {
            guard let heard = record.wantReport[host], heard >= (record.lastLowering ?? 0) else { continue }
            if heard + openSlack <= now, now + 10_000_000 <= heard + gmi { return host }
        }
        return nil
    }

    /// Why sending to the follow output of `group` on `interface` at `now` is wrong, or nil.
    func closedViolation(interface: Int, group: IPAddress, now: UInt64) -> String? {
        let record = groups[Key(interface: interface, group: group)]
        guard let record else { return "no host on the segment ever joined \(group)" }
        guard record.wanting.isEmpty else { return nil }
        guard record.everWanted, let end = record.lastWantEnd else {
            return "no host on the segment ever wanted \(record.source) -> \(group)"
        }
        let loose = closeBound(interface, group.family)
        if now > end + loose {
            return "the last host wanting \(record.source) -> \(group) stopped at \(Instant(nanoseconds: end)); "
                + "the state must end within GMI + QRI + 5 s (\(loose / 1_000_000) ms)"
        }
        let segment = segments[interface]
        guard !controlLossPossible, segment.routers.isEmpty, let relay = segment.relay[group.family], relay.querierEnabled,
              let stop = record.stopDelivered, record.excludeMembers.isEmpty else { return nil }
        if let old = record.lastOldReport, old + groupMembershipIntervals(interface, group.family).max >= stop { return nil }
        let lmqt = Self.ns(relay.lastMemberQueryTime)
        if now > stop + lmqt + openSlack {
            return "the last wanting host's leave for \(group) reached the relay at \(Instant(nanoseconds: stop)) and no member "
                + "is left: the state must end within LMQT (\(lmqt / 1_000_000) ms) + \(openSlack / 1_000) µs"
        }
        return nil
    }

    // MARK: - Querier election

    /// A simulated router starts on `interface`.
    mutating func routerStarted(interface: Int, address: IPAddress, version: ListenerVersion, queryInterval: UInt64) {
        guard let relay = segments[interface].relay[address.family] else { return }
        segments[interface].routers[address] = version == .v3
            ? (2, queryInterval) : (UInt64(relay.robustness), Self.ns(relay.queryInterval))
    }

    /// The relay's Other Querier Present Interval under `router` (RFC 3376 8.5).
    func otherQuerierPresentInterval(_ interface: Int, _ family: AddressFamily, _ router: IPAddress) -> UInt64? {
        guard let relay = segments[interface].relay[family], let adopted = segments[interface].routers[router] else { return nil }
        return adopted.robustness * adopted.interval + Self.ns(relay.queryResponseInterval) / 2
    }

    /// The relay sent a general query on `interface`: wrong while a lower router is present.
    mutating func relayGeneralQuery(interface: Int, family: AddressFamily, now: UInt64) -> String? {
        segments[interface].lastRelayGeneralQuery[family] = now
        guard let lower = segments[interface].lowerQuery[family],
              let oqpi = otherQuerierPresentInterval(interface, family, lower.router) else { return nil }
        if now + 10_000_000 < lower.at + oqpi {
            return "the relay queried \(Instant(nanoseconds: now).description) although \(lower.router), a lower address, "
                + "queried at \(Instant(nanoseconds: lower.at)) (other querier present interval \(oqpi / 1_000_000) ms)"
        }
        return nil
    }

    /// A router's query reached the relay. Returns the time by which the relay must take
    /// over if no other lower query follows, when that is judged.
    mutating func routerQueryHeard(interface: Int, family: AddressFamily, router: IPAddress, now: UInt64) -> UInt64? {
        guard let relay = segments[interface].relay[family], let own = segments[interface].relayAddress[family],
              router < own, let oqpi = otherQuerierPresentInterval(interface, family, router) else { return nil }
        if let current = segments[interface].lowerQuery[family], current.router < router,
           let currentInterval = otherQuerierPresentInterval(interface, family, current.router), current.at + currentInterval > now {
            return nil  // an even lower router is the querier
        }
        segments[interface].lowerQuery[family] = (now, router)
        guard relay.querierEnabled else { return nil }
        return now + oqpi + 1_000_000_000
    }

    /// At the end of a run: a segment whose relay may query, with no lower router heard for
    /// OQPI + 1 s, must have had a general query from the relay within its query interval + 1 s
    /// (zero queriers is as wrong as two).
    func querierMissing(interface: Int, family: AddressFamily, now: UInt64) -> String? {
        let segment = segments[interface]
        guard let relay = segment.relay[family], relay.querierEnabled, let own = segment.relayAddress[family] else { return nil }
        if let lower = segment.lowerQuery[family], let oqpi = otherQuerierPresentInterval(interface, family, lower.router),
           now < lower.at + oqpi + 1_000_000_000 { return nil }
        let bound = Self.ns(relay.queryInterval) + 1_000_000_000
        if let last = segment.lastRelayGeneralQuery[family], last + bound >= now { return nil }
        let last = segment.lastRelayGeneralQuery[family].map { "\(Instant(nanoseconds: $0))" } ?? "never"
        return "no querier: no lower router is present, and the relay (\(own)) last sent a general query \(last), "
            + "more than its query interval + 1 s (\(bound / 1_000_000) ms) before \(Instant(nanoseconds: now))"
    }

    /// At a takeover deadline: a violation when the relay has not queried since the lower
    /// router went quiet (nil when another query came since, or the interface changed).
    func takeoverViolation(interface: Int, family: AddressFamily, heardAt: UInt64, now: UInt64) -> String? {
        let segment = segments[interface]
        guard let lower = segment.lowerQuery[family], lower.at == heardAt, segment.lastDownChange < heardAt else { return nil }
        if let last = segment.lastRelayGeneralQuery[family], last > heardAt { return nil }
        return "\(lower.router) last queried at \(Instant(nanoseconds: heardAt)); the relay had not taken over as querier by \(Instant(nanoseconds: now))"
    }
}
