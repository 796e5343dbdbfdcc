import Testing
@testable import RelayCore

/// Every row of RFC 3376 6.4.1 and 6.4.2 (RFC 3810 7.4.1 and 7.4.2 are the same tables),
/// applied to one record. Timers: A's sources at 50 s and 60 s, the group timer at 100 s,
/// GMI at 260 s.
@Suite struct ListenerTableTests {
    static let (s1, s2, s3, s4, s5) = (source(1), source(2), source(3), source(4), source(5))
    static let gmi = at(260)

    static func source(_ n: UInt8) -> IPAddress { .v4(IPv4Address(198, 18, 0, n)) }

    struct Row: CustomTestStringConvertible, Sendable {
        var name: String
        var startsExcluding: Bool
        var record: GroupRecordType
        var sources: [IPAddress]
        var mode: FilterMode
        var requested: [IPAddress: Instant]
        var excluded: Set<IPAddress>
        var groupTimer: Instant?
        var queries: [QueryRequest]
        var testDescription: String { name }
    }

    /// INCLUDE (A) with A = {s1: 50, s2: 60}.
    static func including() -> ListenerGroup {
        var g = ListenerGroup()
        g.requested = [s1: at(50), s2: at(60)]
        return g
    }

    /// EXCLUDE (X, Y) with X = {s1: 50, s2: 60}, Y = {s3, s4}, group timer 100.
    static func excluding() -> ListenerGroup {
        var g = including()
        g.mode = .exclude
        g.excluded = [s3, s4]
        g.groupTimer = at(100)
        return g
    }

    static let b = [s2, s3]
    static let a = [s2, s3, s5]

    static let rows: [Row] = [
        // 6.4.1, INCLUDE (A)
        Row(name: "INCLUDE(A) IS_IN(B) -> INCLUDE(A+B); (B)=GMI", startsExcluding: false, record: .modeIsInclude, sources: b,
            mode: .include, requested: [s1: at(50), s2: gmi, s3: gmi], excluded: [], groupTimer: nil, queries: []),
        Row(name: "INCLUDE(A) IS_EX(B) -> EXCLUDE(A*B, B-A); (B-A)=0; Delete(A-B); GT=GMI", startsExcluding: false,
            record: .modeIsExclude, sources: b,
            mode: .exclude, requested: [s2: at(60)], excluded: [s3], groupTimer: gmi, queries: []),
        // 6.4.1, EXCLUDE (X, Y)
        Row(name: "EXCLUDE(X,Y) IS_IN(A) -> EXCLUDE(X+A, Y-A); (A)=GMI", startsExcluding: true, record: .modeIsInclude, sources: a,
            mode: .exclude, requested: [s1: at(50), s2: gmi, s3: gmi, s5: gmi], excluded: [s4], groupTimer: at(100), queries: []),
        Row(name: "EXCLUDE(X,Y) IS_EX(A) -> EXCLUDE(A-Y, Y*A); (A-X-Y)=GMI; Delete(X-A); Delete(Y-A); GT=GMI", startsExcluding: true,
            record: .modeIsExclude, sources: a,
            mode: .exclude, requested: [s2: at(60), s5: gmi], excluded: [s3], groupTimer: gmi, queries: []),
        // 6.4.2, INCLUDE (A)
        Row(name: "INCLUDE(A) ALLOW(B) -> INCLUDE(A+B); (B)=GMI", startsExcluding: false, record: .allowNewSources, sources: b,
            mode: .include, requested: [s1: at(50), s2: gmi, s3: gmi], excluded: [], groupTimer: nil, queries: []),
        Row(name: "INCLUDE(A) BLOCK(B) -> INCLUDE(A); Send Q(G,A*B)", startsExcluding: false, record: .blockOldSources, sources: b,
            mode: .include, requested: [s1: at(50), s2: at(60)], excluded: [], groupTimer: nil, queries: [.sources([s2])]),
        Row(name: "INCLUDE(A) TO_EX(B) -> EXCLUDE(A*B, B-A); (B-A)=0; Delete(A-B); Send Q(G,A*B); GT=GMI", startsExcluding: false,
            record: .changeToExclude, sources: b,
            mode: .exclude, requested: [s2: at(60)], excluded: [s3], groupTimer: gmi, queries: [.sources([s2])]),
        Row(name: "INCLUDE(A) TO_IN(B) -> INCLUDE(A+B); (B)=GMI; Send Q(G,A-B)", startsExcluding: false, record: .changeToInclude, sources: b,
            mode: .include, requested: [s1: at(50), s2: gmi, s3: gmi], excluded: [], groupTimer: nil, queries: [.sources([s1])]),
        // 6.4.2, EXCLUDE (X, Y)
        Row(name: "EXCLUDE(X,Y) ALLOW(A) -> EXCLUDE(X+A, Y-A); (A)=GMI", startsExcluding: true, record: .allowNewSources, sources: a,
            mode: .exclude, requested: [s1: at(50), s2: gmi, s3: gmi, s5: gmi], excluded: [s4], groupTimer: at(100), queries: []),
        Row(name: "EXCLUDE(X,Y) BLOCK(A) -> EXCLUDE(X+(A-Y), Y); (A-X-Y)=GT; Send Q(G,A-Y)", startsExcluding: true,
            record: .blockOldSources, sources: a,
            mode: .exclude, requested: [s1: at(50), s2: at(60), s5: at(100)], excluded: [s3, s4], groupTimer: at(100),
            queries: [.sources([s2, s5])]),
        Row(name: "EXCLUDE(X,Y) TO_EX(A) -> EXCLUDE(A-Y, Y*A); (A-X-Y)=GT; Delete(X-A); Delete(Y-A); Send Q(G,A-Y); GT=GMI",
            startsExcluding: true, record: .changeToExclude, sources: a,
            mode: .exclude, requested: [s2: at(60), s5: at(100)], excluded: [s3], groupTimer: gmi, queries: [.sources([s2, s5])]),
        Row(name: "EXCLUDE(X,Y) TO_IN(A) -> EXCLUDE(X+A, Y-A); (A)=GMI; Send Q(G,X-A); Send Q(G)", startsExcluding: true,
            record: .changeToInclude, sources: a,
            mode: .exclude, requested: [s1: at(50), s2: gmi, s3: gmi, s5: gmi], excluded: [s4], groupTimer: at(100),
            queries: [.sources([s1]), .group]),
    ]

    @Test(arguments: rows) func tableRow(_ row: Row) {
        var group = row.startsExcluding ? Self.excluding() : Self.including()
        let queries = group.apply(row.record, row.sources, gmi: Self.gmi)
        #expect(group.mode == row.mode)
        #expect(group.requested == row.requested)
        #expect(group.excluded == row.excluded)
        #expect(group.groupTimer == row.groupTimer)
        #expect(queries == row.queries)
    }

    /// 6.5 / 6.3: source timers in INCLUDE drop the source; in EXCLUDE they move it to the
    /// exclude list; the group timer returns EXCLUDE to INCLUDE with the running sources.
    @Test func timersRunOut() {
        var include = Self.including()
        include.expireTimers(now: at(50))
        #expect(include.requested == [Self.s2: at(60)])
        var exclude = Self.excluding()
        exclude.expireTimers(now: at(50))
        #expect(exclude.requested == [Self.s2: at(60)] && exclude.excluded == [Self.s1, Self.s3, Self.s4])
        #expect(exclude.wants(source: Self.s2) && !exclude.wants(source: Self.s1) && exclude.wants(source: Self.s5))
        exclude.requested[Self.s2] = at(200)
        exclude.expireTimers(now: at(100))
        #expect(exclude.mode == .include && exclude.excluded.isEmpty && exclude.requested == [Self.s2: at(200)])
        #expect(exclude.wants(source: Self.s2) && !exclude.wants(source: Self.s5))
    }

    /// "Send Q(G,A)" on the querier lowers A's timers to the last member query time (6.6.3.2).
    @Test func sendingASourceQueryLowersTheSourceTimers() {
        var d = ListenerDriver(address: .v4(IPv4Address(10, 0, 0, 5)))
        let group = IPAddress.v4(IPv4Address(239, 1, 1, 1))
        d.receive(.v3Report([GroupRecord(.modeIsInclude, group: group, sources: [Self.s1, Self.s2])]), from: .v4(IPv4Address(10, 0, 0, 100)))
        d.advance(to: at(5))
        d.receive(.v3Report([GroupRecord(.changeToInclude, group: group, sources: [Self.s2])]), from: .v4(IPv4Address(10, 0, 0, 100)))
        #expect(d.state.groups[group]!.requested == [Self.s1: at(7), Self.s2: at(265)])
    }
}
