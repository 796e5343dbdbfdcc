/// RFC 3376 6.2.1 / RFC 3810 7.2.1.
public enum FilterMode: String, Hashable, Sendable, CustomStringConvertible {
    case include, exclude
    public var description: String { rawValue.uppercased() }
}

/// What a router's table action asks to be queried (RFC 3376 6.4: "Send Q(G)", "Send Q(G,A)").
enum QueryRequest: Hashable, Sendable {
    case group
    case sources(Set<IPAddress>)
}

/// The router's record of one multicast address on one interface (RFC 3376 6.2.1, RFC 3810
/// 7.2.1): filter mode, group timer, source records with timers, and the older-version
/// host-present timers. The source records are split the way the RFC reads them: sources
/// with a running timer (the INCLUDE list, or EXCLUDE mode's "requested list" X) and, in
/// EXCLUDE mode, sources whose timer is zero (the "exclude list" Y).
public struct ListenerGroup: Hashable, Sendable {
    public internal(set) var mode: FilterMode = .include
    /// Running in EXCLUDE mode only; its expiry returns the group to INCLUDE (6.5).
    public internal(set) var groupTimer: Instant?
    /// Sources with a running timer, and when each expires.
    public internal(set) var requested: [IPAddress: Instant] = [:]
    /// EXCLUDE mode's sources not to forward.
    public internal(set) var excluded: Set<IPAddress> = []
    /// Older Host Present timers (RFC 3376 7.3.2; RFC 3810 8.3.2 has the MLDv1 one only).
    public internal(set) var v1HostPresent: Instant?
    public internal(set) var v2HostPresent: Instant?
    public internal(set) var lastReporter: IPAddress?
    public internal(set) var lastReportAt: Instant?

    // Querier retransmissions (6.6.3): each pending group or source query and how many more
    // times it is sent, one last-member query interval apart.
    var groupQueriesLeft = 0
    var sourceQueriesLeft: [IPAddress: Int] = [:]
    var nextRetransmission: Instant?

    init() {}

    /// No record left: INCLUDE with no sources and nothing pending.
    var isEmpty: Bool { mode == .include && requested.isEmpty && groupQueriesLeft == 0 && sourceQueriesLeft.isEmpty }

    /// Does a listener want traffic from `source`? INCLUDE: the source has a running timer.
    /// EXCLUDE: the source is not in the exclude list (RFC 3376 6.3).
    public func wants(source: IPAddress) -> Bool {
        mode == .include ? requested[source] != nil : !excluded.contains(source)
    }

    /// Does a listener want the group from any source (a (*,G) output)? Only EXCLUDE mode
    /// asks for sources not named.
    public var wantsAnySource: Bool { mode == .exclude }

    /// What forwarding depends on; a change in it is a `listenersChanged` action.
    struct Forwarding: Hashable { var mode: FilterMode; var sources: Set<IPAddress> }
    var forwarding: Forwarding {
        Forwarding(mode: mode, sources: mode == .include ? Set(requested.keys) : excluded)
    }

    /// The group compatibility mode (RFC 3376 7.3.2): the oldest version whose host-present
    /// timer runs, else the router's own.
    func compatibility(router: ListenerVersion) -> ListenerVersion {
        if v1HostPresent != nil { return min(.v1, router) }
        if v2HostPresent != nil { return min(.v2, router) }
        return router
    }

    // MARK: - RFC 3376 6.4 tables

    /// Applies one record and returns the queries the table says to send. `gmi` is now plus
    /// the group membership interval.
    mutating func apply(_ type: GroupRecordType, _ sourceList: [IPAddress], gmi: Instant) -> [QueryRequest] {
        let b = Set(sourceList)
        switch (mode, type) {
        // 6.4.1 IS_IN(B) and 6.4.2 ALLOW(B), both modes:
        //   INCLUDE (A) -> INCLUDE (A+B), (B)=GMI
        //   EXCLUDE (X,Y) -> EXCLUDE (X+A, Y-A), (A)=GMI
        case (_, .modeIsInclude), (_, .allowNewSources):
            setTimers(b, gmi)
            return []

        // INCLUDE (A), IS_EX (B) -> EXCLUDE (A*B, B-A), (B-A)=0, Delete (A-B), GT=GMI
        // INCLUDE (A), TO_EX (B) -> the same, and Send Q(G,A*B)
        case (.include, .modeIsExclude), (.include, .changeToExclude):
            let a = Set(requested.keys)
            requested = requested.filter { b.contains($0.key) }
            excluded = b.subtracting(a)
            mode = .exclude
            groupTimer = gmi
            return type == .changeToExclude ? query(a.intersection(b)) : []

        // EXCLUDE (X,Y), IS_EX (A) -> EXCLUDE (A-Y, Y*A), (A-X-Y)=GMI, Delete (X-A), Delete (Y-A), GT=GMI
        // EXCLUDE (X,Y), TO_EX (A) -> EXCLUDE (A-Y, Y*A), (A-X-Y)=Group Timer, Delete (X-A),
        //                             Delete (Y-A), Send Q(G,A-Y), GT=GMI
        case (.exclude, .modeIsExclude), (.exclude, .changeToExclude):
            let newSourceTimer = type == .modeIsExclude ? gmi : (groupTimer ?? gmi)
            let aMinusY = b.subtracting(excluded)
            var kept: [IPAddress: Instant] = [:]
            for source in aMinusY { kept[source] = requested[source] ?? newSourceTimer }
            requested = kept
            excluded = excluded.intersection(b)
            groupTimer = gmi
            return type == .changeToExclude ? query(aMinusY) : []

        // INCLUDE (A), BLOCK (B) -> INCLUDE (A), Send Q(G,A*B)
        case (.include, .blockOldSources):
            return query(Set(requested.keys).intersection(b))

        // EXCLUDE (X,Y), BLOCK (A) -> EXCLUDE (X+(A-Y), Y), (A-X-Y)=Group Timer, Send Q(G,A-Y)
        case (.exclude, .blockOldSources):
            let aMinusY = b.subtracting(excluded)
            let timer = groupTimer ?? gmi
            for source in aMinusY where requested[source] == nil { requested[source] = timer }
            return query(aMinusY)

        // INCLUDE (A), TO_IN (B) -> INCLUDE (A+B), (B)=GMI, Send Q(G,A-B)
        case (.include, .changeToInclude):
            let aMinusB = Set(requested.keys).subtracting(b)
            setTimers(b, gmi)
            return query(aMinusB)

        // EXCLUDE (X,Y), TO_IN (A) -> EXCLUDE (X+A, Y-A), (A)=GMI, Send Q(G,X-A), Send Q(G)
        case (.exclude, .changeToInclude):
            let xMinusA = Set(requested.keys).subtracting(b)
            setTimers(b, gmi)
            return query(xMinusA) + [.group]
        }
    }

    private mutating func setTimers(_ sources: Set<IPAddress>, _ deadline: Instant) {
        for source in sources { requested[source] = deadline }
        excluded.subtract(sources)
    }

    private func query(_ sources: Set<IPAddress>) -> [QueryRequest] {
        sources.isEmpty ? [] : [.sources(sources)]
    }

    // MARK: - Timers (RFC 3376 6.5, 6.6.1)

    /// Lowers the group timer to `deadline` (a group-specific query was sent or heard).
    mutating func lowerGroupTimer(to deadline: Instant) {
        if mode == .exclude, let timer = groupTimer, timer > deadline { groupTimer = deadline }
    }

    /// Lowers the timers of `sources` that have one (a group-and-source query).
    mutating func lowerSourceTimers(_ sources: some Sequence<IPAddress>, to deadline: Instant) {
        for source in sources {
            if let timer = requested[source], timer > deadline { requested[source] = deadline }
        }
    }

    /// Runs out every timer due at `now`: source timers (INCLUDE: the source goes; EXCLUDE: it
    /// moves to the exclude list), then the group timer (EXCLUDE -> INCLUDE with the sources
    /// still running; the exclude list goes), and the host-present timers.
    mutating func expireTimers(now: Instant) {
        for (source, deadline) in requested where deadline <= now {
            requested[source] = nil
            if mode == .exclude { excluded.insert(source) }
        }
        if mode == .exclude, let timer = groupTimer, timer <= now {
            mode = .include
            groupTimer = nil
            excluded = []
        }
        if let timer = v1HostPresent, timer <= now { v1HostPresent = nil }
        if let timer = v2HostPresent, timer <= now { v2HostPresent = nil }
    }

    /// The earliest of this record's deadlines.
    var nextDeadline: Instant? {
        var earliest = requested.values.min()
        for candidate in [groupTimer, v1HostPresent, v2HostPresent, nextRetransmission] {
            if let c = candidate, earliest.map({ c < $0 }) ?? true { earliest = c }
        }
        return earliest
    }
}
