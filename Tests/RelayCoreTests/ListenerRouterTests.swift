import Collections
import Testing
@testable import RelayCore

/// Drives `Listeners` for one interface the way a driver does: events in, actions out, time
/// jumping from deadline to deadline.
struct ListenerDriver {
    var listeners = Listeners()
    var now = Instant.zero
    var sent: [(at: Instant, transmit: ListenerTransmit)] = []
    var changes: [(at: Instant, group: IPAddress)] = []
    var querierChanges: [(at: Instant, querier: IPAddress?, isSelf: Bool)] = []
    let interface = InterfaceName("lan0")!
    let family: AddressFamily

    init(address: IPAddress?, configuration: ListenerConfiguration = ListenerConfiguration()) {
        family = address?.family ?? .ipv4
        handle(.start(interface, family, address: address, configuration: configuration))
    }

    var state: ListenerInterface { listeners.interfaces[.init(interface, family)]! }

    mutating func handle(_ event: ListenerEvent) {
        listeners.handle(event, now: now)
        collect()
    }

    mutating func collect() {
        while let action = listeners.poll() {
            switch action {
            case let .send(transmit): sent.append((now, transmit))
            case let .listenersChanged(_, group): changes.append((now, group))
            case let .querierChanged(_, _, querier, isSelf): querierChanges.append((now, querier, isSelf))
            }
        }
    }

    /// Fires every deadline up to `target`, then stands at `target`.
    mutating func advance(to target: Instant) {
        while let deadline = listeners.nextDeadline, deadline <= target {
            now = max(now, deadline)
            handle(.timerFired)
        }
        now = target
    }

    mutating func advance(by duration: Duration) { advance(to: now + duration) }

    mutating func receive(_ message: ListenerMessage, from source: IPAddress) {
        handle(.received(interface, ListenerFrame.Received(message: message, source: source, destination: message.destination(family))))
    }

    func wants(_ source: IPAddress, _ group: IPAddress) -> Bool {
        listeners.wants(interface: interface, source: source, group: group)
    }

    var queries: [(at: Instant, query: ListenerQuery)] {
        sent.compactMap { if case let .query(q) = $0.transmit.message { ($0.at, q) } else { nil } }
    }
}

func at(_ seconds: Double) -> Instant { Instant(nanoseconds: UInt64(seconds * 1e9)) }

@Suite struct ListenerRouterTests {
    static let me = IPAddress.v4(IPv4Address(10, 0, 0, 5))
    static let lower = IPAddress.v4(IPv4Address(10, 0, 0, 1))
    static let higher = IPAddress.v4(IPv4Address(10, 0, 0, 9))
    static let host = IPAddress.v4(IPv4Address(10, 0, 0, 100))
    static let group = IPAddress.v4(IPv4Address(239, 1, 1, 1))
    static let s1 = IPAddress.v4(IPv4Address(198, 18, 0, 1))
    static let s2 = IPAddress.v4(IPv4Address(198, 18, 0, 2))
    static let s3 = IPAddress.v4(IPv4Address(198, 18, 0, 3))

    static func generalQuery(_ version: ListenerVersion = .v3) -> ListenerMessage {
        .query(ListenerQuery(version: version, maxResponseCode: 100, robustness: 2, queryIntervalCode: 125))
    }

    // MARK: querier

    @Test func startupQueriesThenTheQueryInterval() {
        var d = ListenerDriver(address: Self.me)
        #expect(d.state.isQuerier)
        d.advance(to: at(400))
        // RFC 3376 8.6/8.7: robustness (2) startup queries a quarter query interval apart, then 125 s.
        #expect(d.queries.map(\.at) == [at(0), at(31.25), at(156.25), at(281.25)])
        let first = d.queries[0].query
        #expect(first == ListenerQuery(version: .v3, maxResponseCode: 100, robustness: 2, queryIntervalCode: 125))
        #expect(d.sent[0].transmit.destination == .v4(IPv4Address(224, 0, 0, 1)) && d.sent[0].transmit.source == Self.me)
        #expect(d.querierChanges.map(\.querier) == [Self.me])
    }

    @Test func lowerAddressWinsAndTheTimerGivesItBack() {
        var d = ListenerDriver(address: Self.me)
        d.advance(to: at(10))
        d.receive(Self.generalQuery(), from: Self.higher)
        #expect(d.state.isQuerier, "a higher address does not take over")
        d.receive(Self.generalQuery(), from: Self.lower)
        #expect(!d.state.isQuerier && d.state.querier == Self.lower)
        #expect(d.querierChanges.last! == (at(10), Self.lower, false))
        let sentBefore = d.queries.count
        // The other querier present interval: 2 x 125 + 10 / 2 = 255 s.
        d.advance(to: at(10 + 254.999))
        #expect(d.queries.count == sentBefore && !d.state.isQuerier)
        d.advance(to: at(10 + 255))
        #expect(d.state.isQuerier && d.querierChanges.last!.isSelf)
        #expect(d.queries.last!.at == at(265) && d.queries.last!.query.group == nil)
    }

    @Test func theQuerierKeepsItsRoleWhileItQueries() {
        var d = ListenerDriver(address: Self.me)
        for t in stride(from: 1.0, to: 1000, by: 125) {
            d.advance(to: at(t))
            d.receive(Self.generalQuery(), from: Self.lower)
        }
        d.advance(to: at(1100))
        #expect(!d.state.isQuerier && d.querierChanges.count == 2)
        #expect(d.queries.allSatisfy { $0.at < at(1) }, "silent while another querier is present")
    }

    /// RFC 4541 proxy queriers (snooping switches) query from 0.0.0.0: they never win.
    @Test func queriesFromTheUnspecifiedAddressAreNotElected() {
        var d = ListenerDriver(address: Self.me)
        d.receive(Self.generalQuery(), from: .v4(IPv4Address(0)))
        #expect(d.state.isQuerier && d.state.counters.queriesFromUnspecified == 1)
    }

    /// A non-querier adopts the querier's QRV and QQI (RFC 3376 8.1, 8.2).
    @Test func nonQuerierAdoptsRobustnessAndInterval() {
        var d = ListenerDriver(address: Self.me)
        d.receive(.query(ListenerQuery(version: .v3, maxResponseCode: 100, robustness: 3, queryIntervalCode: 60)), from: Self.lower)
        #expect(d.state.effective.robustness == 3 && d.state.effective.queryInterval == .seconds(60))
        #expect(d.state.otherQuerierExpiry == at(3 * 60 + 5))
        d.receive(.report(.v2, group: Self.group), from: Self.host)
        #expect(d.state.groups[Self.group]!.groupTimer == at(3 * 60 + 10))
    }

    @Test func aLowerOwnAddressTakesOverAtOnce() {
        var d = ListenerDriver(address: Self.me)
        d.receive(Self.generalQuery(), from: Self.lower)
        d.advance(to: at(5))
        d.handle(.addressChanged(d.interface, .ipv4, .v4(IPv4Address(10, 0, 0, 0))))
        #expect(d.state.isQuerier && d.queries.last!.at == at(5))
    }

    @Test func aDisabledQuerierOnlyListens() {
        var d = ListenerDriver(address: Self.me, configuration: ListenerConfiguration(querierEnabled: false))
        d.receive(.report(.v2, group: Self.group), from: Self.host)
        d.advance(to: at(100))
        #expect(d.sent.isEmpty && !d.state.isQuerier && d.wants(Self.s1, Self.group))
    }

    // MARK: timing

    /// A silent group expires at the group membership interval (2 x 125 + 10 = 260 s).
    @Test func silentGroupExpiresAtTheMembershipInterval() {
        var d = ListenerDriver(address: Self.me, configuration: ListenerConfiguration(querierEnabled: false))
        d.advance(to: at(3))
        d.receive(.report(.v2, group: Self.group), from: Self.host)
        #expect(d.wants(Self.s1, Self.group) && d.changes.map(\.at) == [at(3)])
        d.advance(to: at(3 + 259.999))
        #expect(d.wants(Self.s1, Self.group))
        d.advance(to: at(3 + 260))
        #expect(!d.wants(Self.s1, Self.group) && d.state.groups.isEmpty)
        #expect(d.changes.map(\.at) == [at(3), at(263)])
    }

    /// A v2 host's leave: the querier sends Q(G) twice, one second apart, and the group is
    /// gone at the last member query time (2 s).
    @Test func aLeavingHostStopsBeingAListenerWithinTheLastMemberQueryTime() {
        var d = ListenerDriver(address: Self.me)
        d.receive(.report(.v2, group: Self.group), from: Self.host)
        d.advance(to: at(50))
        d.receive(.leave(group: Self.group), from: Self.host)
        let specific = d.queries.filter { $0.query.group == Self.group }
        #expect(specific.map(\.at) == [at(50)])
        #expect(specific[0].query.maxResponseCode == 10 && !specific[0].query.suppressRouterSideProcessing)
        #expect(specific[0].query.sources.isEmpty)
        d.advance(to: at(51.999))
        #expect(d.wants(Self.s1, Self.group))
        #expect(d.queries.filter { $0.query.group == Self.group }.map(\.at) == [at(50), at(51)])
        d.advance(to: at(52))
        #expect(!d.wants(Self.s1, Self.group))
    }

    /// A report answering Q(G) keeps the group; the retransmission then carries the S flag.
    @Test func anAnswerToTheGroupQuerySetsTheSFlag() {
        var d = ListenerDriver(address: Self.me)
        d.receive(.report(.v2, group: Self.group), from: Self.host)
        d.advance(to: at(50))
        d.receive(.leave(group: Self.group), from: Self.host)
        d.advance(to: at(50.5))
        d.receive(.report(.v2, group: Self.group), from: .v4(IPv4Address(10, 0, 0, 101)))
        d.advance(to: at(60))
        let specific = d.queries.filter { $0.query.group == Self.group }
        #expect(specific.map(\.query.suppressRouterSideProcessing) == [false, true])
        #expect(d.wants(Self.s1, Self.group))
    }

    /// A non-querier does not send Q(G) but lowers its timer when it hears the querier's.
    @Test func aNonQuerierFollowsTheQuerierSpecificQueries() {
        var d = ListenerDriver(address: Self.me)
        d.receive(Self.generalQuery(), from: Self.lower)
        d.receive(.report(.v2, group: Self.group), from: Self.host)
        d.advance(to: at(20))
        d.receive(.leave(group: Self.group), from: Self.host)
        #expect(!d.sent.contains { $0.at == at(20) })
        d.receive(.query(ListenerQuery(version: .v3, group: Self.group, maxResponseCode: 10)), from: Self.lower)
        d.advance(to: at(21.999))
        #expect(d.wants(Self.s1, Self.group))
        d.advance(to: at(22))
        #expect(!d.wants(Self.s1, Self.group))
        // With the S flag the timer is left alone.
        d.receive(.report(.v2, group: Self.group), from: Self.host)
        d.receive(.query(ListenerQuery(version: .v3, group: Self.group, maxResponseCode: 10, suppressRouterSideProcessing: true)),
                  from: Self.lower)
        d.advance(to: at(30))
        #expect(d.wants(Self.s1, Self.group))
    }

    // MARK: source-specific (RFC 3376 6.6.3.2)

    @Test func blockSendsAGroupAndSourceQueryAndTheSourceGoes() {
        var d = ListenerDriver(address: Self.me)
        d.advance(to: at(1))
        d.receive(.v3Report([GroupRecord(.allowNewSources, group: Self.group, sources: [Self.s1, Self.s2])]), from: Self.host)
        #expect(d.wants(Self.s1, Self.group) && d.wants(Self.s2, Self.group) && !d.wants(Self.s3, Self.group))
        #expect(!d.listeners.wantsAnySource(interface: d.interface, group: Self.group))
        d.advance(to: at(10))
        d.receive(.v3Report([GroupRecord(.blockOldSources, group: Self.group, sources: [Self.s1, Self.s3])]), from: Self.host)
        let q = d.queries.filter { $0.query.group == Self.group }
        #expect(q.count == 1 && q[0].query.sources == [Self.s1] && q[0].at == at(10))
        d.advance(to: at(12))
        #expect(!d.wants(Self.s1, Self.group) && d.wants(Self.s2, Self.group))
        #expect(d.queries.filter { $0.query.group == Self.group }.map(\.at) == [at(10), at(11)])
    }

    // MARK: compatibility (RFC 3376 7.3.2)

    @Test func v2HostsTurnBlockOffAndToExcludeIntoExcludeAll() {
        var d = ListenerDriver(address: Self.me)
        d.receive(.report(.v2, group: Self.group), from: Self.host)
        #expect(d.state.groups[Self.group]!.compatibility(router: .v3) == .v2)
        d.receive(.v3Report([GroupRecord(.changeToExclude, group: Self.group, sources: [Self.s1])]), from: Self.host)
        #expect(d.wants(Self.s1, Self.group), "TO_EX({s1}) is TO_EX({}) in v2 mode")
        d.receive(.v3Report([GroupRecord(.blockOldSources, group: Self.group, sources: [Self.s2])]), from: Self.host)
        #expect(d.state.counters.ignoredByCompatibility == 1 && d.wants(Self.s2, Self.group))
        // Once the older host present timer (260 s) runs out, v3 rules again.
        d.advance(to: at(261))
        #expect(d.state.groups[Self.group] == nil || d.state.groups[Self.group]!.compatibility(router: .v3) == .v3)
    }

    @Test func v1HostsMakeLeavesIgnoredAndNoSpecificQueries() {
        var d = ListenerDriver(address: Self.me)
        d.receive(.report(.v1, group: Self.group), from: Self.host)
        d.receive(.leave(group: Self.group), from: Self.host)
        #expect(d.wants(Self.s1, Self.group) && d.state.counters.ignoredByCompatibility == 1)
        #expect(!d.queries.contains { $0.query.group != nil })
    }

    @Test func aV2RouterIgnoresV3ReportsAndSendsV2Queries() {
        var d = ListenerDriver(address: Self.me, configuration: ListenerConfiguration(version: .v2))
        d.receive(.v3Report([GroupRecord(.changeToExclude, group: Self.group)]), from: Self.host)
        #expect(!d.wants(Self.s1, Self.group))
        #expect(d.queries[0].query == ListenerQuery(version: .v2, maxResponseCode: 100))
        #expect(d.sent[0].transmit.payload == [0x11, 0x64, 0xEE, 0x9B, 0, 0, 0, 0])  // as in the real trace
        d.receive(.report(.v2, group: Self.group), from: Self.host)
        #expect(d.wants(Self.s1, Self.group))
    }

    // MARK: MLD

    @Test func mldRouterQueriesFromItsLinkLocalAddress() {
        let me = IPAddress.v6(IPv6Address("fe80::5")!)
        var d = ListenerDriver(address: me)
        let frame = d.sent[0].transmit.frame(sourceMAC: MACAddress(2, 0, 0, 0, 0, 5))
        guard case let .success(received) = ListenerFrame.extract(frame) else { Issue.record("own query does not parse"); return }
        #expect(received.destination == .v6(IPv6Address("ff02::1")!) && received.routerAlert && received.hopLimit == 1)
        // MLDv2 Max Response Code is in milliseconds: 10 s.
        #expect(received.message == .query(ListenerQuery(version: .v3, maxResponseCode: 10000, robustness: 2, queryIntervalCode: 125)))
        let group = IPAddress.v6(IPv6Address("ff3e::8000:1")!)
        let source = IPAddress.v6(IPv6Address("2001:db8::10")!)
        d.receive(.v3Report([GroupRecord(.modeIsInclude, group: group, sources: [source])]), from: .v6(IPv6Address("fe80::100")!))
        #expect(d.wants(source, group) && !d.wants(.v6(IPv6Address("2001:db8::11")!), group))
        // An MLDv1 listener (a v2-generation report) puts the group in MLDv1 mode.
        d.receive(.report(.v2, group: group), from: .v6(IPv6Address("fe80::101")!))
        #expect(d.state.groups[group]!.compatibility(router: .v3) == .v2 && d.wants(.v6(IPv6Address("2001:db8::11")!), group))
        // Election by the lowest link-local address.
        d.receive(Self.generalQuery(), from: .v6(IPv6Address("fe80::1")!))
        #expect(!d.state.isQuerier)
    }

    @Test func framesFeedTheStateAndRefusalsAreCounted() {
        var d = ListenerDriver(address: Self.me)
        let report = ListenerFrame.build(.v3Report([GroupRecord(.changeToExclude, group: Self.group)]), sourceMAC: MACAddress(2, 0, 0, 0, 0, 9),
                                         source: Self.host)
        d.handle(.frame(d.interface, report))
        #expect(d.wants(Self.s1, Self.group))
        var bad = report
        bad[bad.count - 1] ^= 1
        d.handle(.frame(d.interface, bad))
        #expect(d.listeners.refusals[.badChecksum] == 1)
    }

    @Test func statusForTheOperator() {
        var d = ListenerDriver(address: Self.me)
        d.advance(to: at(2))
        d.receive(.v3Report([GroupRecord(.modeIsExclude, group: Self.group, sources: [Self.s1])]), from: Self.host)
        let interface = d.listeners.interfaceStatus[0]
        #expect(interface.isQuerier && interface.querier == Self.me && interface.nextGeneralQuery == at(31.25))
        #expect(interface.groups == 1 && interface.startupQueriesLeft == 1)
        let group = d.listeners.groupStatus[0]
        #expect(group.mode == .exclude && group.expiry == at(262) && group.lastReporter == Self.host)
        #expect(group.sources == [.init(address: Self.s1, expiry: nil, forwarded: false)])
        d.handle(.stop(d.interface, .ipv4))
        #expect(d.changes.last!.group == Self.group && d.querierChanges.last!.querier == nil)
        #expect(d.listeners.interfaces.isEmpty)
    }
}

@Suite struct ListenerLimitTests {
    /// A report flood cannot grow the state past the configured bounds.
    @Test func reportFloodsStopAtTheLimits() {
        let config = ListenerConfiguration(querierEnabled: false, maximumGroups: 3, maximumSourcesPerGroup: 2)
        var d = ListenerDriver(address: ListenerRouterTests.me, configuration: config)
        for n in 1...10 {
            d.receive(.report(.v2, group: .v4(IPv4Address(239, 9, 0, UInt8(n)))), from: ListenerRouterTests.host)
        }
        #expect(d.state.groups.count == 3 && d.state.counters.ignoredByLimits == 7)
        let group = IPAddress.v4(IPv4Address(239, 9, 0, 1))
        // The v2 record is EXCLUDE {}; three requested sources exceed two.
        d.receive(.v3Report([GroupRecord(.allowNewSources, group: group, sources: [ListenerRouterTests.s1, ListenerRouterTests.s2])]),
                  from: ListenerRouterTests.host)
        #expect(d.state.groups[group]!.requested.count == 2)
        d.receive(.v3Report([GroupRecord(.allowNewSources, group: group, sources: [ListenerRouterTests.s3])]), from: ListenerRouterTests.host)
        #expect(d.state.groups[group]!.requested.count == 2 && d.state.counters.ignoredByLimits == 8)
        // Existing groups are still refreshed at the limit.
        d.receive(.report(.v2, group: group), from: ListenerRouterTests.host)
        #expect(d.state.counters.ignoredByLimits == 8)
    }

    /// MLDv1 Done is a leave (RFC 2710 4): Q(G) from the link-local address, gone at LMQT.
    @Test func mldDoneEndsTheListenerWithinTheLastMemberQueryTime() {
        let me = IPAddress.v6(IPv6Address("fe80::5")!)
        let group = IPAddress.v6(IPv6Address("ff3e::8000:2")!)
        var d = ListenerDriver(address: me, configuration: ListenerConfiguration(version: .v2))
        d.receive(.report(.v2, group: group), from: .v6(IPv6Address("fe80::100")!))
        d.advance(to: at(10))
        d.receive(.leave(group: group), from: .v6(IPv6Address("fe80::100")!))
        let q = d.sent.last!.transmit
        #expect(q.destination == group && q.source == me)
        // MLDv1 Max Response Delay in milliseconds, 24 bytes on the wire.
        #expect(q.message == .query(ListenerQuery(version: .v2, group: group, maxResponseCode: 1000)) && q.payload.count == 24)
        d.advance(to: at(11.999))
        #expect(d.wants(.v6(IPv6Address("2001:db8::1")!), group))
        d.advance(to: at(12))
        #expect(!d.wants(.v6(IPv6Address("2001:db8::1")!), group))
    }

    /// All-systems / all-nodes and IPv6 scopes 0 and 1 are never tracked.
    @Test func wellKnownAndNodeLocalGroupsAreNotTracked() {
        var v4 = ListenerDriver(address: ListenerRouterTests.me)
        v4.receive(.report(.v2, group: .v4(IPv4Address(224, 0, 0, 1))), from: ListenerRouterTests.host)
        v4.receive(.report(.v2, group: .v4(IPv4Address(224, 0, 0, 251))), from: ListenerRouterTests.host)  // mDNS is tracked
        #expect(v4.state.groups.keys.sorted() == [.v4(IPv4Address(224, 0, 0, 251))])
        var v6 = ListenerDriver(address: .v6(IPv6Address("fe80::5")!))
        for text in ["ff02::1", "ff01::1:2", "ff00::1234", "ff02::fb"] {
            v6.receive(.report(.v2, group: .v6(IPv6Address(text)!)), from: .v6(IPv6Address("fe80::100")!))
        }
        #expect(v6.state.groups.keys.sorted() == [.v6(IPv6Address("ff02::fb")!)])
    }
}

@Suite struct ListenerScaleTests {
    /// Thousands of groups: reports, refreshes, leaves and expiry stay correct, and a deadline
    /// question does not scan every group (the timer heap), so this runs in well under a second.
    @Test func manyGroupsComeAndGo() {
        var d = ListenerDriver(address: ListenerRouterTests.me, configuration: ListenerConfiguration(maximumGroups: 10000))
        let groups = (0..<5000).map { IPAddress.v4(IPv4Address(239, 10, UInt8($0 / 256), UInt8($0 % 256))) }
        for (index, group) in groups.enumerated() {
            d.now = Instant(nanoseconds: UInt64(index) * 1_000_000)  // one report a millisecond
            d.receive(.report(.v2, group: group), from: ListenerRouterTests.host)
        }
        #expect(d.state.groups.count == 5000)
        // Half leave; the rest are refreshed by the general queries' answers.
        for group in groups.prefix(2500) { d.receive(.leave(group: group), from: ListenerRouterTests.host) }
        d.advance(by: .seconds(3))
        #expect(d.state.groups.count == 2500)
        for _ in 0..<3 {
            d.advance(by: .seconds(100))
            for group in groups.suffix(1250) { d.receive(.report(.v2, group: group), from: ListenerRouterTests.host) }
        }
        d.advance(by: .seconds(300))
        #expect(d.state.groups.isEmpty)
        d.advance(by: .seconds(5))
        let refreshed = groups.suffix(1250)
        #expect(!refreshed.contains { d.wants(ListenerRouterTests.s1, $0) })
    }
}
