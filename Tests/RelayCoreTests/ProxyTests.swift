import Testing
@testable import RelayCore

/// A ControlPlane with one proxy (up0 -> down1, down2 for 239.0.0.0/8), driven as the daemon
/// drives it: joins complete at once, time jumps from deadline to deadline. With `worker`, a
/// Forwarder plays worker 0: it installs every plan and applies every gate delta it is sent.
struct ProxyLab {
    var plane = ControlPlane()
    var now = Instant.zero
    /// Memberships held on the (simulated) helper sockets: what the host kernel would report upstream.
    var held: Set<MembershipKey> = []
    var joins: [MembershipKey] = []
    var leaves: [MembershipKey] = []
    var worker: Forwarder?
    static let up = InterfaceName("up0")!
    static let down1 = InterfaceName("down1")!
    static let down2 = InterfaceName("down2")!

    init(groups: [String] = ["239.0.0.0/8"]) throws {
        handle(.interfaceUp(Self.up))
        for (index, interface) in [Self.down1, Self.down2].enumerated() {
            handle(.listener(.start(interface, .ipv4, address: .v4(IPv4Address(198, 18, UInt8(index + 1), 1)),
                                    configuration: ListenerConfiguration())))
        }
        try plane.replaceProxies([ProxyConfiguration(upstream: Self.up, downstream: [Self.down1, Self.down2],
                                                     groups: try groups.map { try GroupPrefix(parsing: $0) })], now: now)
        drain()
    }

    mutating func handle(_ event: ControlEvent) {
        plane.handle(event, now: now)
        drain()
    }

    mutating func drain() {
        while let action = plane.poll() {
            switch action {
            case let .join(request):
                joins.append(request.membership)
                held.insert(request.membership)
                plane.handle(.joinCompleted(request.ticket, .joined), now: now)
            case let .leave(request):
                leaves.append(request.membership)
                held.remove(request.membership)
            case let .sendPlan(plan) where worker != nil:
                worker!.install(plan)
                plane.handle(.workerAcknowledged(plan.worker, version: plan.version), now: now)
            case let .sendGates(delta) where worker != nil:
                if case let .current(version) = worker!.applyGates(delta) {
                    plane.handle(.workerGatesAcknowledged(delta.worker, version: version), now: now)
                }
            default: break
            }
        }
    }

    mutating func report(_ records: [GroupRecord], on interface: InterfaceName, from host: IPv4Address) {
        let message = ListenerMessage.v3Report(records)
        handle(.listener(.received(interface, ListenerFrame.Received(message: message, source: .v4(host),
                                                                     destination: message.destination(.ipv4)))))
    }

    mutating func advance(by duration: Duration) {
        let target = now + duration
        while let deadline = plane.nextDeadline, deadline <= target {
            now = max(now, deadline)
            handle(.timerFired)
        }
        now = target
    }
}

@Suite struct ProxyTests {
    static let group = IPAddress.v4(IPv4Address(239, 1, 1, 1))
    static let s1 = IPAddress.v4(IPv4Address(198, 18, 0, 1))
    static let s2 = IPAddress.v4(IPv4Address(198, 18, 0, 2))
    static let host1 = IPv4Address(198, 18, 1, 100)
    static let host2 = IPv4Address(198, 18, 2, 100)

    static func anySource(_ group: IPAddress = group) -> MembershipKey { MembershipKey(interface: ProxyLab.up, group: group) }
    static func from(_ source: IPAddress) -> MembershipKey { MembershipKey(interface: ProxyLab.up, group: group, source: source) }

    @Test func joinsUpstreamOnlyAfterADownstreamListenerJoinsAndLeavesAfterTheLeave() throws {
        var lab = try ProxyLab()
        #expect(lab.held.isEmpty, "nothing joined upstream before a listener")
        lab.report([GroupRecord(.changeToExclude, group: Self.group)], on: ProxyLab.down1, from: Self.host1)
        #expect(lab.held == [Self.anySource()])
        #expect(lab.plane.proxies.joins[Proxies.Key(upstream: ProxyLab.up, group: Self.group)]?.excludeOn == [ProxyLab.down1])
        // A second listener on the other downstream changes nothing upstream.
        lab.report([GroupRecord(.changeToExclude, group: Self.group)], on: ProxyLab.down2, from: Self.host2)
        #expect(lab.joins == [Self.anySource()])
        // Both leave (TO_IN {}): after the last member query time (2 x 1 s) the upstream join goes.
        lab.report([GroupRecord(.changeToInclude, group: Self.group)], on: ProxyLab.down1, from: Self.host1)
        lab.report([GroupRecord(.changeToInclude, group: Self.group)], on: ProxyLab.down2, from: Self.host2)
        #expect(lab.held == [Self.anySource()], "still held during the last member queries")
        lab.advance(by: .seconds(3))
        #expect(lab.held.isEmpty)
        #expect(lab.leaves == [Self.anySource()])
    }

    @Test func includeSourcesAreUnitedAndExcludeMeansAnySource() throws {
        var lab = try ProxyLab()
        lab.report([GroupRecord(.allowNewSources, group: Self.group, sources: [Self.s1])], on: ProxyLab.down1, from: Self.host1)
        lab.report([GroupRecord(.allowNewSources, group: Self.group, sources: [Self.s1, Self.s2])], on: ProxyLab.down2, from: Self.host2)
        #expect(lab.held == [Self.from(Self.s1), Self.from(Self.s2)])
        // An EXCLUDE listener downstream: one any-source join replaces the source joins.
        lab.report([GroupRecord(.changeToExclude, group: Self.group, sources: [Self.s2])], on: ProxyLab.down1, from: Self.host1)
        #expect(lab.held == [Self.anySource()])
        // It leaves: back to the INCLUDE union (down2's s1, s2; down1's EXCLUDE ends after the LMQT).
        lab.report([GroupRecord(.changeToInclude, group: Self.group)], on: ProxyLab.down1, from: Self.host1)
        lab.advance(by: .seconds(3))
        #expect(lab.held == [Self.from(Self.s1), Self.from(Self.s2)])
        // s2 blocked on down2: only s1 stays.
        lab.report([GroupRecord(.blockOldSources, group: Self.group, sources: [Self.s2])], on: ProxyLab.down2, from: Self.host2)
        lab.advance(by: .seconds(3))
        #expect(lab.held == [Self.from(Self.s1)])
    }

    @Test func groupsOutsideTheRangesAreNotProxied() throws {
        var lab = try ProxyLab(groups: ["239.1.0.0/16"])
        let outside = IPAddress.v4(IPv4Address(239, 2, 0, 1))
        lab.report([GroupRecord(.changeToExclude, group: outside), GroupRecord(.changeToExclude, group: Self.group)],
                   on: ProxyLab.down1, from: Self.host1)
        #expect(lab.held == [Self.anySource()])
    }

    @Test func listenersBeforeTheProxyIsConfiguredAreJoinedAtLoad() throws {
        var plane = ControlPlane()
        plane.handle(.interfaceUp(ProxyLab.up), now: .zero)
        plane.handle(.listener(.start(ProxyLab.down1, .ipv4, address: .v4(IPv4Address(198, 18, 1, 1)),
                                      configuration: ListenerConfiguration())), now: .zero)
        let message = ListenerMessage.v3Report([GroupRecord(.changeToExclude, group: Self.group)])
        plane.handle(.listener(.received(ProxyLab.down1, ListenerFrame.Received(message: message, source: .v4(Self.host1),
                                                                                 destination: message.destination(.ipv4)))), now: .zero)
        _ = plane.drain()
        try plane.replaceProxies([ProxyConfiguration(upstream: ProxyLab.up, downstream: [ProxyLab.down1],
                                                     groups: [try GroupPrefix(parsing: "239.0.0.0/8")])], now: .zero)
        let joins = plane.drain().compactMap { if case let .join(request) = $0 { request.membership } else { nil } }
        #expect(joins == [Self.anySource()])
        try plane.replaceProxies([], now: .zero)
        let leaves = plane.drain().compactMap { if case let .leave(request) = $0 { request.membership } else { nil } }
        #expect(leaves.isEmpty, "the join was still in flight; Membership drops it when it completes")
        #expect(plane.proxies.needed.isEmpty)
    }

    @Test func aRuleNeedingTheSameGroupKeepsItJoined() throws {
        var lab = try ProxyLab()
        try lab.plane.addRule(spec("up0:239.1.1.1:5000", ["eth9:239.50.0.1:5000"]), now: lab.now)
        lab.drain()
        lab.report([GroupRecord(.changeToExclude, group: Self.group)], on: ProxyLab.down1, from: Self.host1)
        lab.report([GroupRecord(.changeToInclude, group: Self.group)], on: ProxyLab.down1, from: Self.host1)
        lab.advance(by: .seconds(3))
        #expect(lab.held == [Self.anySource()], "the rule's join stays")
        #expect(lab.leaves.isEmpty)
    }

    @Test func configurationErrorsSayWhere() throws {
        func refused(_ proxies: [ProxyConfiguration]) -> ProxyError? {
            do { try ProxyConfiguration.validate(proxies); return nil } catch { return error }
        }
        let range = [try GroupPrefix(parsing: "239.0.0.0/8")]
        #expect(refused([ProxyConfiguration(upstream: ProxyLab.up, downstream: [ProxyLab.up], groups: range)])?.description
            == "proxies[0]: upstream up0 is also listed downstream")
        #expect(refused([ProxyConfiguration(upstream: ProxyLab.up, downstream: [], groups: range)]) == .noDownstream(0))
        #expect(refused([ProxyConfiguration(upstream: ProxyLab.up, downstream: [ProxyLab.down1], groups: [])]) == .noGroups(0))
        #expect(refused([ProxyConfiguration(upstream: ProxyLab.up, downstream: [ProxyLab.down1, ProxyLab.down1], groups: range)])
            == .duplicateDownstream(0, ProxyLab.down1))
        // down1 -> up0 and up0 -> down1 for overlapping groups: a loop.
        #expect(refused([ProxyConfiguration(upstream: ProxyLab.up, downstream: [ProxyLab.down1], groups: range),
                         ProxyConfiguration(upstream: ProxyLab.down1, downstream: [ProxyLab.up],
                                            groups: [try GroupPrefix(parsing: "239.1.0.0/16")])])
            == .proxyLoop(upstreamOf: 0, downstreamOf: 1, ProxyLab.up))
        #expect(refused([ProxyConfiguration(upstream: ProxyLab.up, downstream: [ProxyLab.down1], groups: range),
                         ProxyConfiguration(upstream: ProxyLab.down1, downstream: [ProxyLab.up],
                                            groups: [try GroupPrefix(parsing: "238.0.0.0/8")])]) == nil)
        #expect(throws: ProxyError.groupPrefixHostBits("239.1.0.0/8", base: GroupPrefix(base: .v4(IPv4Address(239, 0, 0, 0)), length: 8))) {
            try GroupPrefix(parsing: "239.1.0.0/8")
        }
        #expect(throws: ProxyError.groupsLinkScoped("224.0.0.0/4")) { try GroupPrefix(parsing: "224.0.0.0/4") }
        #expect(throws: ProxyError.groupsNotMulticast("10.0.0.0/8")) { try GroupPrefix(parsing: "10.0.0.0/8") }
        #expect(throws: ProxyError.groupsLinkScoped("ff02::/16")) { try GroupPrefix(parsing: "ff02::/16") }
        #expect(try GroupPrefix(parsing: "ff3e::/16").description == "ff3e::/16")
        #expect(try GroupPrefix(parsing: "239.1.1.1").length == 32)
    }

    @Test func aRuleSendingIntoTheUpstreamRangeIsALoop() throws {
        var lab = try ProxyLab()
        #expect(throws: RuleError.outputFeedsProxy(try EndpointSyntax.parseOutput("up0:239.9.9.9:5000"), proxy: 0, upstream: ProxyLab.up)) {
            try lab.plane.addRule(spec("eth5:239.1.1.1:5000", ["up0:239.9.9.9:5000"]), now: lab.now)
        }
        try lab.plane.addRule(spec("eth5:239.1.1.1:5000", ["up0:238.9.9.9:5000"]), now: lab.now)
        #expect(throws: ProxyError.self) {
            try lab.plane.replaceProxies([ProxyConfiguration(upstream: ProxyLab.up, downstream: [ProxyLab.down1],
                                                             groups: [try GroupPrefix(parsing: "238.0.0.0/8")])], now: lab.now)
        }
    }

    @Test func aReloadChecksNewRulesAgainstNewProxiesAndKeepsJoinsThatStay() throws {
        var lab = try ProxyLab()
        lab.report([GroupRecord(.changeToExclude, group: Self.group)], on: ProxyLab.down1, from: Self.host1)
        #expect(lab.held == [Self.anySource()])
        let proxy = ProxyConfiguration(upstream: ProxyLab.up, downstream: [ProxyLab.down1, ProxyLab.down2],
                                       groups: [try GroupPrefix(parsing: "239.1.0.0/16")])
        // Into 239.9.9.9 on up0: a loop with the current proxy (239.0.0.0/8), fine with the new one.
        let rule = spec("eth5:239.1.1.1:5000", ["up0:239.9.9.9:5000"])
        #expect(throws: RuleError.self) { try lab.plane.replaceRules([rule], now: lab.now) }
        try lab.plane.replaceRules([rule], proxies: [proxy], now: lab.now)
        lab.drain()
        #expect(lab.plane.rules.count == 1 && lab.plane.proxies.configurations == [proxy])
        #expect(lab.held == [Self.anySource()] && lab.leaves.isEmpty, "239.1.1.1 is still proxied: its join stays")
        // All or nothing: a bad pair changes neither.
        #expect(throws: ControlPlane.ConfigurationError.self) {
            try lab.plane.replaceRules([spec("eth5:239.1.1.1:5000", ["up0:239.1.2.3:5000"])], proxies: [proxy], now: lab.now)
        }
        #expect(lab.plane.rules.rules.values.first?.outputs.first?.destination == .v4(IPv4Address(239, 9, 9, 9)))
    }

    @Test func listenerTrackingStoppingOnADownstreamEndsItsJoins() throws {
        var lab = try ProxyLab()
        lab.report([GroupRecord(.changeToExclude, group: Self.group)], on: ProxyLab.down1, from: Self.host1)
        lab.report([GroupRecord(.allowNewSources, group: Self.group, sources: [Self.s1])], on: ProxyLab.down2, from: Self.host2)
        #expect(lab.held == [Self.anySource()])
        lab.handle(.listener(.stop(ProxyLab.down1, .ipv4)))
        #expect(lab.held == [Self.from(Self.s1)], "down2's INCLUDE {s1} is what is left")
        lab.handle(.listener(.stop(ProxyLab.down2, .ipv4)))
        #expect(lab.held.isEmpty)
    }
}
