import RelayCore
import Testing
@testable import Sim

/// The simulated hosts and router alone, against the RFCs' rules (RFC 3376 5, RFC 2236 3).
@Suite struct HostModelTests {
    let group = IPAddress.v4(IPv4Address(239, 10, 0, 1))
    let a = IPAddress.v4(IPv4Address(198, 19, 1, 1)), b = IPAddress.v4(IPv4Address(198, 19, 1, 2))

    func host(_ version: ListenerVersion, _ last: UInt8 = 10) -> ListenerHost {
        ListenerHost(interface: 0, address: .v4(IPv4Address(198, 18, 5, last)), mac: MACAddress(2, 0, 0, 0, 0, last), version: version)
    }

    func heard(_ message: ListenerMessage, from last: UInt8 = 1) -> ListenerFrame.Received {
        ListenerFrame.Received(message: message, source: .v4(IPv4Address(198, 18, 0, last)), destination: message.destination(.ipv4))
    }

    /// Runs the host's timers to `until`, collecting what it sends.
    func run(_ host: inout ListenerHost, from now: UInt64, until end: UInt64, rng: inout SimRandom) -> [ListenerMessage] {
        var sent: [ListenerMessage] = []
        while let next = host.nextDeadline, next <= end { sent += host.advance(now: max(next, now), rng: &rng) }
        return sent
    }

    @Test func stateChangeRecords() {
        let none = HostFilter.none, any = HostFilter(mode: .exclude, sources: [])
        #expect(ListenerHost.changeRecords(from: none, to: any, group: group) == [GroupRecord(.changeToExclude, group: group)])
        #expect(ListenerHost.changeRecords(from: any, to: none, group: group) == [GroupRecord(.changeToInclude, group: group)])
        let onlyA = HostFilter(mode: .include, sources: [a]), both = HostFilter(mode: .include, sources: [a, b])
        #expect(ListenerHost.changeRecords(from: onlyA, to: both, group: group) == [GroupRecord(.allowNewSources, group: group, sources: [b])])
        #expect(ListenerHost.changeRecords(from: both, to: HostFilter(mode: .include, sources: [b]), group: group)
                    == [GroupRecord(.blockOldSources, group: group, sources: [a])])
        // EXCLUDE: excluding fewer sources allows them; excluding more blocks them.
        #expect(ListenerHost.changeRecords(from: HostFilter(mode: .exclude, sources: [a]), to: any, group: group)
                    == [GroupRecord(.allowNewSources, group: group, sources: [a])])
    }

    @Test func v3JoinIsSentRobustnessTimesWithinTheUnsolicitedReportInterval() {
        var rng = SimRandom(seed: 1), h = host(.v3)
        let first = h.setFilter(HostFilter(mode: .exclude, sources: []), group: group, now: 0, rng: &rng)
        #expect(first == [.v3Report([GroupRecord(.changeToExclude, group: group)])])
        let repeats = run(&h, from: 0, until: ListenerHost.unsolicitedReportIntervalV3, rng: &rng)
        #expect(repeats == first)
        #expect(h.nextDeadline == nil)
        #expect(h.wants(source: a, group: group, now: 0))
    }

    @Test func v3AnswersQueriesWithCurrentState() {
        var rng = SimRandom(seed: 2), h = host(.v3)
        _ = h.setFilter(HostFilter(mode: .include, sources: [a]), group: group, now: 0, rng: &rng)
        _ = run(&h, from: 0, until: 2_000_000_000, rng: &rng)
        // A general query (Max Resp 10 s): IS_IN {a} within 10 s.
        _ = h.receive(heard(.query(ListenerQuery(version: .v3, maxResponseCode: 100))), now: 5_000_000_000, rng: &rng)
        let answer = run(&h, from: 5_000_000_000, until: 15_000_000_000, rng: &rng)
        #expect(answer == [.v3Report([GroupRecord(.modeIsInclude, group: group, sources: [a])])])
        // A group-and-source query for a and b: IS_IN of the one it wants.
        _ = h.receive(heard(.query(ListenerQuery(version: .v3, group: group, maxResponseCode: 10, sources: [a, b]))),
                      now: 20_000_000_000, rng: &rng)
        let specific = run(&h, from: 20_000_000_000, until: 21_000_000_000, rng: &rng)
        #expect(specific == [.v3Report([GroupRecord(.modeIsInclude, group: group, sources: [a])])])
        #expect(h.wants(source: a, group: group, now: 0) && !h.wants(source: b, group: group, now: 0))
    }

    @Test func v3HostFallsBackToV2OnAV2Query() {
        var rng = SimRandom(seed: 3), h = host(.v3)
        _ = h.setFilter(HostFilter(mode: .include, sources: [a]), group: group, now: 0, rng: &rng)
        _ = h.receive(heard(.query(ListenerQuery(version: .v2, maxResponseCode: 100))), now: 1, rng: &rng)
        #expect(h.effectiveVersion(now: 2) == .v2)
        #expect(h.wants(source: b, group: group, now: 2))  // a v2 report cannot name sources
        #expect(run(&h, from: 1, until: 10_000_000_001, rng: &rng) == [.report(.v2, group: group)])
        #expect(h.effectiveVersion(now: ListenerHost.olderVersionQuerierPresentTimeout + 2) == .v3)
    }

    @Test func v2ReportSuppressionAndTheLastReportersLeave() {
        var rng = SimRandom(seed: 4), h = host(.v2)
        #expect(h.setFilter(HostFilter(mode: .exclude, sources: []), group: group, now: 0, rng: &rng) == [.report(.v2, group: group)])
        // Another member's report cancels the repeat and makes this host not the last reporter.
        _ = h.receive(heard(.report(.v2, group: group), from: 99), now: 1_000, rng: &rng)
        #expect(h.nextDeadline == nil && !h.lastReporter.contains(group))
        _ = h.receive(heard(.query(ListenerQuery(version: .v2, maxResponseCode: 100))), now: 2_000, rng: &rng)
        _ = h.receive(heard(.report(.v2, group: group), from: 99), now: 3_000, rng: &rng)
        #expect(run(&h, from: 3_000, until: 20_000_000_000, rng: &rng).isEmpty)
        #expect(h.setFilter(.none, group: group, now: 30_000_000_000, rng: &rng).isEmpty)  // not the last reporter: no leave
        var last = host(.v2, 11)
        _ = last.setFilter(HostFilter(mode: .exclude, sources: []), group: group, now: 0, rng: &rng)
        #expect(last.setFilter(.none, group: group, now: 1_000, rng: &rng) == [.leave(group: group)])
    }

    @Test func routerYieldsToALowerQuerierAndTakesOver() {
        var router = SegmentQuerier(interface: 0, address: .v4(IPv4Address(198, 18, 0, 5)), mac: MACAddress(2, 0, 0, 0, 0, 5),
                                    version: .v3, queryInterval: 10_000_000_000, now: 0)
        #expect(router.advance(now: 0).count == 1)
        router.receive(heard(.query(ListenerQuery(version: .v3, maxResponseCode: 100)), from: 1), now: 1_000)
        #expect(!router.isQuerier)
        #expect(router.nextDeadline == 1_000 + router.otherQuerierPresentInterval)
        #expect(router.advance(now: router.nextDeadline!).count == 1)
        #expect(router.isQuerier)
        // As querier, a leave draws [robustness] group-specific queries a second apart.
        router.receive(heard(.leave(group: group), from: 200), now: 30_000_000_000)
        let first = router.advance(now: 30_000_000_000), second = router.advance(now: 31_000_000_000)
        guard case let .query(query)? = first.first else { Issue.record("no query"); return }
        #expect(query.group == group && second.count == 1 && router.advance(now: 32_000_000_000).isEmpty)
    }
}
