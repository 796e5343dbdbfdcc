import Collections
import Foundation
import Testing
@testable import RelayCore

private let out1 = iface("out1")
private let g = IPAddress.v4(ip("239.9.1.1"))
private let gateKey = GateKey(interface: out1, group: g)

private func delta(base: UInt64, version: UInt64, _ entries: [(GateKey, GateFilter)]) -> GateDelta {
    GateDelta(worker: WorkerID(0), base: base, version: version, entries: entries.map { GateEntry(key: $0.0, filter: $0.1) })
}

private func sends(_ actions: Deque<ControlAction>) -> [GateDelta] {
    actions.compactMap { if case let .sendGates(delta) = $0 { delta } else { nil } }
}

@Suite struct FollowOutputSyntaxTests {
    @Test func trailingListenersFieldWithAndWithoutTTL() throws {
        let withTTL = try EndpointSyntax.parseOutput("eth1:239.1.1.1:5000:16:listeners")
        #expect(withTTL.followsListeners && withTTL.ttl == 16)
        #expect(withTTL.description == "eth1:239.1.1.1:5000:16:listeners")
        let without = try EndpointSyntax.parseOutput("eth1:239.1.1.1:5000:listeners")
        #expect(without.followsListeners && without.ttl == OutputSpec.defaultTTL)
        #expect(try EndpointSyntax.parseOutput(without.description) == without)
        let v6 = try EndpointSyntax.parseOutput("eth1:[ff3e::1]:5000:listeners")
        #expect(v6.followsListeners && v6.description == "eth1:[ff3e::1]:5000:64:listeners")
        #expect(try !EndpointSyntax.parseOutput("eth1:239.1.1.1:5000:8").followsListeners)
    }

    @Test func unicastAndMisplacedFieldsAreRefusedClearly() {
        #expect(throws: EndpointSyntaxError.followsUnicast("eth1:198.18.0.9:5000:listeners")) {
            try EndpointSyntax.parseOutput("eth1:198.18.0.9:5000:listeners")
        }
        #expect(throws: EndpointSyntaxError.self) { try EndpointSyntax.parseOutput("eth1:239.1.1.1:listeners") }
        #expect(throws: EndpointSyntaxError.self) { try EndpointSyntax.parseOutput("eth1:239.1.1.1:5000:listeners:8") }
        #expect(EndpointSyntaxError.followsUnicast("x").description.contains("only a multicast output"))
    }

    @Test func codableKeepsOlderJSONReadable() throws {
        let follow = try EndpointSyntax.parseOutput("eth1:239.1.1.1:5000:listeners")
        let data = try JSONEncoder().encode(follow)
        #expect(try JSONDecoder().decode(OutputSpec.self, from: data) == follow)
        let plain = try EndpointSyntax.parseOutput("eth1:239.1.1.1:5000")
        let plainJSON = String(decoding: try JSONEncoder().encode(plain), as: UTF8.self)
        #expect(!plainJSON.contains("followsListeners"), "a static output encodes as before")
        #expect(try JSONDecoder().decode(OutputSpec.self, from: Data(plainJSON.utf8)) == plain)
    }
}

@Suite struct ForwarderGateTests {
    /// One rule: a static output and a follow output to 239.9.1.1 on out1.
    func forwarder() -> Forwarder {
        Forwarder(plan: plan([spec("eth0:239.1.1.1:5001", ["out2:239.8.1.1:6000", "out1:239.9.1.1:6000:listeners"])]))
    }

    func run(_ forwarder: inout Forwarder) -> [IPAddress] {
        FrameBuilder().build().withUnsafeBytes { bytes in
            guard case let .forward(forwarding) = forwarder.decide(bytes, link: .ethernet, ingress: 0) else { return [] }
            return forwarder.transmits(for: forwarding).map(\.destination)
        }
    }

    @Test func closedGateSuppressesOnlyTheFollowOutput() {
        var f = forwarder()
        #expect(run(&f) == [.v4(ip("239.8.1.1"))])
        let stats = f.statistics().rules[0]
        #expect(stats.outputs[0] == OutputCounter(packets: 1, bytes: 15))
        #expect(stats.outputs[1] == OutputCounter(packets: 0, bytes: 0, suppressed: 1))
        #expect(stats.open == [true, false])
    }

    @Test func anOpenGateSendsAndClosingItStopsAgain() {
        var f = forwarder()
        #expect(f.applyGates(delta(base: 0, version: 1, [(gateKey, .anySource)])) == .current(version: 1))
        #expect(run(&f) == [.v4(ip("239.8.1.1")), .v4(ip("239.9.1.1"))])
        #expect(f.applyGates(delta(base: 1, version: 2, [(gateKey, .closed)])) == .current(version: 2))
        #expect(run(&f) == [.v4(ip("239.8.1.1"))])
        let outputs = f.statistics().rules[0].outputs
        #expect(outputs[1].packets == 1 && outputs[1].suppressed == 1)
        #expect(outputs[0].packets == 2, "the static output is untouched")
    }

    @Test func includeFiltersAreJudgedAgainstTheSourceTheFrameWillCarry() {
        var f = forwarder()
        let mine = IPAddress.v4(ip("198.19.1.1"))
        let include = GateFilter(mode: .include, sources: [mine])
        _ = f.applyGates(delta(base: 0, version: 1, [(gateKey, include)])) { _ in mine }
        #expect(run(&f).count == 2, "INCLUDE {relay's address}: open")
        _ = f.applyGates(delta(base: 1, version: 2, [(gateKey, GateFilter(mode: .include, sources: [IPAddress.v4(ip("198.18.1.1"))]))])) { _ in mine }
        #expect(run(&f).count == 1, "INCLUDE {the original sender}: the relay's frames do not carry that source")
        _ = f.applyGates(delta(base: 2, version: 3, [(gateKey, GateFilter(mode: .exclude, sources: [mine]))])) { _ in mine }
        #expect(run(&f).count == 1, "EXCLUDE {relay's address}: closed")
    }

    @Test func staleAndTooNewDeltasChangeNothing() {
        var f = forwarder()
        _ = f.applyGates(delta(base: 0, version: 2, [(gateKey, .anySource)]))
        #expect(f.applyGates(delta(base: 0, version: 1, [(gateKey, .closed)])) == .current(version: 2), "older: ignored")
        #expect(run(&f).count == 2)
        #expect(f.applyGates(delta(base: 5, version: 6, [(gateKey, .closed)])) == .behind(version: 2), "after a gap: refused")
        #expect(run(&f).count == 2)
    }

    @Test func aPlanCarriesTheGatesAndAnOlderPlanDoesNotReopen() {
        var f = forwarder()
        var next = plan([spec("eth0:239.1.1.1:5001", ["out2:239.8.1.1:6000", "out1:239.9.1.1:6000:listeners"])], version: 2)
        next.gateVersion = 1
        next.gates = [GateEntry(key: gateKey, filter: .anySource)]
        f.install(next)
        #expect(run(&f).count == 2, "the plan's gates open it")
        _ = f.applyGates(delta(base: 1, version: 2, [(gateKey, .closed)]))
        f.install(next)  // resent: gate v1 < v2
        #expect(run(&f).count == 1, "a resent plan with older gates keeps the newer closing")
        #expect(f.statistics().rules[0].outputs[1].packets == 1, "counters carry over installs")
    }
}

@Suite struct ListenerGatesTests {
    let start = Instant.zero

    @Test func changesGoOutAsDeltasOfOnlyWhatChanged() {
        var gates = ListenerGates()
        var actions: Deque<ControlAction> = []
        gates.workerStarted(WorkerID(0), now: start, actions: &actions)
        #expect(actions.isEmpty, "nothing to send yet")
        let other = GateKey(interface: out1, group: .v4(ip("239.9.1.2")))
        gates.set([GateEntry(key: gateKey, filter: .anySource), GateEntry(key: other, filter: .anySource)], now: start, actions: &actions)
        gates.acknowledged(WorkerID(0), version: 1)
        actions.removeAll()
        gates.set([GateEntry(key: other, filter: .closed)], now: start, actions: &actions)
        let sent = sends(actions)
        #expect(sent == [GateDelta(worker: WorkerID(0), base: 1, version: 2, entries: [GateEntry(key: other, filter: .closed)])])
        actions.removeAll()
        gates.set([GateEntry(key: gateKey, filter: .anySource)], now: start, actions: &actions)
        #expect(actions.isEmpty, "no change, no message")
    }

    @Test func aLostDeltaIsRepairedByTheResendWhichCoversEverythingSinceTheAck() {
        var gates = ListenerGates(resendInterval: .milliseconds(250))
        var actions: Deque<ControlAction> = []
        gates.workerStarted(WorkerID(0), now: start, actions: &actions)
        gates.set([GateEntry(key: gateKey, filter: .anySource)], now: start, actions: &actions)  // lost
        let other = GateKey(interface: out1, group: .v4(ip("239.9.1.2")))
        gates.set([GateEntry(key: other, filter: .anySource)], now: start + .milliseconds(10), actions: &actions)  // lost too
        #expect(gates.nextDeadline == start + .milliseconds(260))
        actions.removeAll()
        gates.timerFired(now: start + .milliseconds(100), actions: &actions)
        #expect(actions.isEmpty, "not due yet")
        gates.timerFired(now: start + .milliseconds(260), actions: &actions)
        let resent = sends(actions)
        #expect(resent.count == 1)
        #expect(resent.first?.base == 0 && resent.first?.version == 2 && resent.first?.entries.count == 2)

        var f = Forwarder(plan: plan([spec("eth0:239.1.1.1:5001", ["out1:239.9.1.1:6000:listeners", "out1:239.9.1.2:6000:listeners"])]))
        #expect(f.applyGates(resent[0]) == .current(version: 2))
        #expect(f.statistics().rules[0].open == [true, true])
        gates.acknowledged(WorkerID(0), version: 2)
        #expect(gates.nextDeadline == nil, "acknowledged: no more resends")
    }

    @Test func aWorkerBehindIsSentEverythingSinceWhatItHas() {
        var gates = ListenerGates()
        var actions: Deque<ControlAction> = []
        gates.workerStarted(WorkerID(0), now: start, actions: &actions)
        gates.set([GateEntry(key: gateKey, filter: .anySource)], now: start, actions: &actions)
        gates.acknowledged(WorkerID(0), version: 1)
        actions.removeAll()
        gates.behind(WorkerID(0), version: 0, now: start, actions: &actions)
        #expect(sends(actions).map(\.base) == [0])
        #expect(sends(actions).first?.entries == [GateEntry(key: gateKey, filter: .anySource)])
    }

    @Test func closedKeysAreForgottenOnceEveryWorkerHasThem() {
        var gates = ListenerGates()
        var actions: Deque<ControlAction> = []
        gates.workerStarted(WorkerID(0), now: start, actions: &actions)
        gates.set([GateEntry(key: gateKey, filter: .anySource)], now: start, actions: &actions)
        gates.set([GateEntry(key: gateKey, filter: .closed)], now: start, actions: &actions)
        gates.acknowledged(WorkerID(0), version: 2)
        actions.removeAll()
        gates.workerStarted(WorkerID(1), now: start, actions: &actions)
        #expect(sends(actions).first?.entries == [], "a new worker needs no tombstones")
    }
}

@Suite struct ControlPlaneGateTests {
    static let report = ListenerMessage.v3Report([GroupRecord(.changeToExclude, group: g)])
    static let leave = ListenerMessage.v3Report([GroupRecord(.changeToInclude, group: g)])

    func received(_ message: ListenerMessage) -> ControlEvent {
        .listener(.received(out1, ListenerFrame.Received(message: message, source: .v4(ip("198.19.1.7")),
                                                         destination: .v4(ip("224.0.0.22")))))
    }

    @Test func aJoinOpensAtOnceAndALeaveClosesAfterTheLastMemberQueries() throws {
        var h = Harness(workers: 2)
        for worker in 0..<2 { h.plane.handle(.workerStarted(WorkerID(worker)), now: h.now) }
        h.up("in0")
        h.plane.handle(.listener(.start(out1, .ipv4, address: .v4(ip("198.19.1.1")), configuration: ListenerConfiguration())), now: h.now)
        try h.add(spec("in0:239.1.1.1:5000", ["out1:239.9.1.1:5000:listeners", "out2:239.8.1.1:5000"]))
        #expect(h.plane.followedGates == [gateKey])
        #expect(h.plans.last?.gates == [], "nobody listens yet")
        let plansBefore = h.plans.count

        h.plane.handle(received(Self.report), now: h.now)
        let joined = h.plane.drain()
        let deltas = joined.compactMap { if case let .sendGates(d) = $0 { d } else { nil } }
        #expect(deltas.map(\.worker) == [WorkerID(0), WorkerID(1)], "one delta per worker, at once")
        #expect(deltas.allSatisfy { $0.entries == [GateEntry(key: gateKey, filter: .anySource)] })
        #expect(!joined.contains { if case .sendPlan = $0 { true } else { false } }, "no plan re-encoding")
        #expect(h.plans.count == plansBefore)
        #expect(h.plane.dispatcher.plan(for: WorkerID(0)).gates == [GateEntry(key: gateKey, filter: .anySource)])

        // The leave: the group goes after the last member queries (2 x 1 s by default), not before.
        h.plane.handle(received(Self.leave), now: h.now)
        _ = h.plane.drain()
        #expect(h.plane.dispatcher.gates.filter(for: gateKey) == .anySource, "still open while the router asks")
        var t = h.now
        var closedAt: Instant?
        for _ in 0..<40 {
            t = t + .milliseconds(100)
            h.plane.handle(.timerFired, now: t)
            _ = h.plane.drain()
            if h.plane.dispatcher.gates.filter(for: gateKey).isClosed { closedAt = t; break }
        }
        let closed = try #require(closedAt)
        let took = closed.duration(since: h.now)
        #expect(took <= .milliseconds(2100) && took >= .milliseconds(1900), "closed after \(took)")
    }

    @Test func followOutputsWithoutListenerTrackingAreRefusedByTheConfig() throws {
        let spec = spec("in0:239.1.1.1:5000", ["out1:239.9.1.1:5000:listeners"])
        // The check lives in RelayControl (it knows the "queriers"); here only its input shape.
        #expect(spec.outputs[0].followsListeners)
    }
}
