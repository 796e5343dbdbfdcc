import RelayControl
import RelayCore
import Testing
@testable import Sim

/// LAN segments with simulated IGMP hosts and routers driving the real core (follow outputs,
/// querier election), judged by `ListenerOracle`. The follow output gets a frame every 20 ms;
/// counts of frames sent to it bound when it opened and closed.
@Suite struct ListenerSimTests {
    typealias L = ListenerCases

    func output(_ result: SimResult, _ name: String) -> SimReport.Output? {
        result.report.rules.flatMap(\.outputs).first { $0.output.hasPrefix(name) }
    }

    func run(_ simCase: SimCase) throws -> SimResult {
        let result = try simCase.run()
        #expect(result.passed, "\(result.violations.prefix(3).map(\.description))")
        return result
    }

    @Test func v3JoinOpensAndLeaveClosesWithinTheLastMemberQueryTime() throws {
        // Join at 1 s, leave at 11 s: 500 frames while joined, up to 100 more within LMQT (2 s).
        let result = try run(L.make(events: [L.join(1_000, host: 10), L.leave(11_000, host: 10)], seconds: 30))
        let sent = try #require(output(result, "out0"))
        #expect(sent.transmitted >= 499 && sent.transmitted <= 601, "\(sent.transmitted) frames to the follow output")
        #expect(output(result, "out1")?.transmitted == 1500)
        let segments = try #require(result.report.segments)
        #expect(segments.hostReportsV3 >= 4)  // two state-change copies each for the join and the leave
        #expect(segments.relaySpecificQueries >= 2)  // last member queries after TO_IN {}
        let checks = Dictionary(uniqueKeysWithValues: result.report.invariants.map { ($0.name, $0.checked) })
        #expect(checks[InvariantName.followOutputOpen]! > 0 && checks[InvariantName.followOutputClosed]! > 0)
    }

    @Test func v2HostsSuppressEachOthersReports() throws {
        // Two v2 hosts joined for 50 s: each general query gets about one report on the wire.
        let result = try run(L.make(events: [
            L.join(1_000, host: 10, version: .v2), L.join(1_500, host: 11, version: .v2),
            L.leave(40_000, host: 10), L.leave(45_000, host: 11),
        ], seconds: 60, configuration: L.configuration(version: .v2)))
        let segments = try #require(result.report.segments)
        // Unsolicited: 2 reports (the repeats are suppressed or sent); then one per query at most twice.
        #expect(segments.hostReportsV2 < 2 * segments.relayGeneralQueries + 4,
                "\(segments.hostReportsV2) v2 reports for \(segments.relayGeneralQueries) general queries")
        #expect(segments.hostReportsV2 >= segments.relayGeneralQueries - 2)
        let sent = try #require(output(result, "out0"))
        // Open from 1 s to at least 45 s (44 s of 20 ms frames), closed by 45 s + GMI.
        #expect(sent.transmitted >= 2190, "\(sent.transmitted)")
    }

    @Test func ssmIncludeOfAnotherSourceNeverOpens() throws {
        let wrong = IPAddress.v4(IPv4Address(198, 19, 1, 99))
        let result = try run(L.make(events: [L.join(1_000, host: 10, mode: .include, sources: [wrong])], seconds: 20))
        #expect(output(result, "out0")?.transmitted == 0)
        #expect(output(result, "out1")?.transmitted == 1000)
        let right = try run(L.make(events: [L.join(1_000, host: 10, mode: .include, sources: [L.relaySource])], seconds: 20))
        #expect((output(right, "out0")?.transmitted ?? 0) >= 949)
    }

    @Test func relayYieldsToALowerQuerierAndTakesOverWhenItGoesSilent() throws {
        let router = IPAddress.v4(IPv4Address(198, 18, 0, 1))  // below the relay's 198.19.1.1
        let result = try run(L.make(events: [
            ScriptedEvent(at: 0, kind: .querierStart(L.follow, address: router, version: .v3, queryIntervalMs: 10_000)),
            L.join(1_000, host: 10),
            ScriptedEvent(at: 30_000_000_000, kind: .querierStop(L.follow, address: router)),
        ], seconds: 80, frameIntervalMs: 100))
        let segments = try #require(result.report.segments)
        #expect(segments.routerQueries >= 3)
        // Startup queries before the router's first arrives, then none until it has been quiet
        // for OQPI (its last query at 23.5 s + 21 s); from then every 10 s to the end (~81 s).
        #expect(segments.relayGeneralQueries >= 4 && segments.relayGeneralQueries <= 8, "\(segments.relayGeneralQueries)")
        let checks = Dictionary(uniqueKeysWithValues: result.report.invariants.map { ($0.name, $0.checked) })
        #expect(checks[InvariantName.singleQuerier]! >= 4)
        // The host kept the output open throughout: the router's queries drew its reports.
        #expect((output(result, "out0")?.transmitted ?? 0) >= 780)
    }

    @Test func asNonQuerierTheRelayClosesOnTheOtherQueriersLastMemberQueries() throws {
        // The router (lower address) is querier; the host's TO_IN {} draws its two Q(G), which
        // lower the relay's timer to LMQT (RFC 3376 6.6.1): closed ~2 s after the leave, not
        // a GMI (22 s) after the last report.
        let router = IPAddress.v4(IPv4Address(198, 18, 0, 1))
        let result = try run(L.make(events: [
            ScriptedEvent(at: 0, kind: .querierStart(L.follow, address: router, version: .v3, queryIntervalMs: 10_000)),
            L.join(1_000, host: 10), L.leave(11_000, host: 10),
        ], seconds: 40))
        let sent = try #require(output(result, "out0"))
        #expect(sent.transmitted >= 499 && sent.transmitted <= 601, "\(sent.transmitted) frames to the follow output")
        let segments = try #require(result.report.segments)
        #expect(segments.relaySpecificQueries == 0)  // the relay is not the querier: it sends none
        #expect(segments.routerQueries >= 5)  // general queries and the two last member queries
    }

    @Test func lossOnTheSegmentKeepsTheBounds() throws {
        var events = [ScriptedEvent(at: 0, kind: .segmentLoss(L.follow, probability: 0.3))]
        for host in UInt8(10)...12 {
            events.append(L.join(Int(host) * 700, host: host, version: host == 12 ? .v2 : nil))
            events.append(L.leave(20_000 + Int(host) * 3_000, host: host))
        }
        let result = try run(L.make(events: events, seconds: 60, seed: 7))
        let segments = try #require(result.report.segments)
        #expect(segments.framesLost > 0)
    }

    @Test(arguments: [
        (DriverBug.openAllGates, InvariantName.followOutputClosed),
        (DriverBug.dropGateDeltas, InvariantName.followOutputOpen),
        (DriverBug.dropLeaves, InvariantName.followOutputClosed),
    ])
    func theOracleCatchesABrokenGate(bug: DriverBug, invariant: String) throws {
        var simCase = L.make(events: [L.join(1_000, host: 10), L.leave(11_000, host: 10)], seconds: 30)
        simCase.options.driverBugs = [bug]
        let result = try simCase.run()
        #expect(result.violations.contains { $0.invariant == invariant },
                "\(bug): \(result.violations.prefix(3).map(\.description))")
    }

    @Test func sameSeedSameRunWithHosts() throws {
        var simCase = L.make(events: [
            ScriptedEvent(at: 0, kind: .segmentLoss(L.follow, probability: 0.2)),
            L.join(1_000, host: 10), L.join(1_200, host: 11, version: .v2), L.leave(9_000, host: 10),
        ], seconds: 15, seed: 99)
        simCase.options.recordSteps = true
        let first = try simCase.run(), second = try simCase.run()
        #expect(DeterminismCheck.firstDivergence(first, second) == nil)
        #expect(first.steps.contains { $0.kind == "host" } && first.steps.contains { $0.kind == "igmp_rx" })
    }
}

/// The same segment with MLD: an MLDv2 host (link-local address) and an MLDv1 one.
@Suite struct MLDSegmentTests {
    @Test(arguments: [ListenerVersion.v3, .v2])
    func mldJoinOpensAndDoneCloses(version: ListenerVersion) throws {
        let input = InterfaceName("in0")!, out = InterfaceName("out0")!
        let group = IPAddress.v6(IPv6Address(0xff05, 0, 0, 0, 0, 0, 1, 1))
        let followGroup = IPAddress.v6(IPv6Address(0xff05, 0, 0, 0, 0, 0, 2, 1))
        let rule = RuleSpec(name: "v6", input: InputSpec(interface: input, group: group, port: 5000), outputs: [
            OutputSpec(interface: out, destination: followGroup, port: 6000, ttl: 8, followsListeners: true),
        ])
        var store = FrameStore()
        for index in 0..<1500 {
            let bytes = TrafficMaker.datagram(interface: 0, source: .v6(IPv6Address(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)), group: group,
                                              port: 5000, payload: [UInt8](repeating: 7, count: 80), id: UInt16(index))
            store.append(time: UInt64(index) * 20_000_000, interface: input, link: .ethernet, bytes: bytes)
        }
        let host = IPAddress.v6(IPv6Address(0xfe80, 0, 0, 0, 0, 0, 0, 0x10))
        let events = [
            ScriptedEvent(at: 1_000_000_000, kind: .hostJoin(.init(interface: out, host: host, group: followGroup, mode: .exclude, version: version))),
            ScriptedEvent(at: 11_000_000_000, kind: .hostLeave(out, host: host, group: followGroup)),
        ]
        let queriers = [QuerierSetting(interface: out, families: [.ipv6], configuration: ListenerCases.configuration())]
        let result = try SimCase(input: SimInput(store: store, rules: [rule], events: events, queriers: queriers), options: SimOptions()).run()
        #expect(result.passed, "\(result.violations.prefix(3).map(\.description))")
        let sent = result.report.rules.first?.outputs.first?.transmitted ?? 0
        #expect(sent >= 499 && sent <= 601, "\(sent) frames to the follow output")
        let segments = try #require(result.report.segments)
        #expect(version == .v3 ? segments.hostReportsV3 >= 4 : segments.hostReportsV2 >= 1 && segments.hostLeaves == 1)
        #expect(segments.framesRefused == 0)
    }
}

@Suite struct SegmentEventTests {
    @Test func segmentEventsRoundTrip() throws {
        let text = """
            {"at_ms": 0, "event": "segment_loss", "iface": "out0", "loss": 0.25}
            {"at_ms": 0, "event": "querier_start", "iface": "out0", "address": "198.18.0.1", "version": 2}
            {"at_ms": 1000, "event": "host_join", "iface": "out0", "host": "198.18.5.11", "group": "239.10.0.1", "sources": ["198.19.1.1"]}
            {"at_ms": 1500, "event": "host_version", "iface": "out0", "host": "198.18.5.11", "version": 2}
            {"at_ms": 9000, "event": "host_leave", "iface": "out0", "host": "198.18.5.11", "group": "239.10.0.1"}
            {"at_ms": 30000, "event": "querier_stop", "iface": "out0", "address": "198.18.0.1"}
            """
        let events = try EventScript.parse(text)
        #expect(events.map(\.name) == ["segment_loss", "querier_start", "host_join", "host_version", "host_leave", "querier_stop"])
        guard case let .hostJoin(join) = events[2].kind else { Issue.record("not a join"); return }
        #expect(join.mode == .include && join.sources == [.v4(IPv4Address(198, 19, 1, 1))] && join.version == nil)
        guard case let .querierStart(_, _, version, interval) = events[1].kind else { Issue.record("not a querier"); return }
        #expect(version == .v2 && interval == 125_000)
        #expect(try EventScript.parse(EventScript.serialize(events)) == events)
    }

    @Test(arguments: [
        (#"{"at_ms": 0, "event": "host_join", "iface": "out0", "host": "239.1.1.1", "group": "239.10.0.1"}"#, "is not a unicast address"),
        (#"{"at_ms": 0, "event": "host_join", "iface": "out0", "host": "198.18.5.1", "group": "198.18.0.1"}"#, "is not a ipv4 multicast address"),
        (#"{"at_ms": 0, "event": "host_join", "iface": "out0", "host": "198.18.5.1", "group": "224.0.0.1"}"#, "never reported"),
        (#"{"at_ms": 0, "event": "host_join", "iface": "out0", "host": "2001:db8::1", "group": "ff05::1"}"#, "link-local"),
        (#"{"at_ms": 0, "event": "host_join", "iface": "out0", "host": "198.18.5.1", "group": "239.1.1.1", "mode": "include"}"#, "use host_leave"),
        (#"{"at_ms": 0, "event": "host_version", "iface": "out0", "host": "198.18.5.1", "version": 1}"#, "must be 2"),
        (#"{"at_ms": 0, "event": "segment_loss", "iface": "out0", "loss": 2}"#, "probability 0-1"),
        (#"{"at_ms": 0, "event": "querier_start", "iface": "out0", "address": "198.18.0.1", "query_interval_ms": 5}"#, "1000-3600000"),
    ])
    func badSegmentEventsSayWhatAndWhere(line: String, message: String) {
        #expect(throws: SimError.self) { try EventScript.parse(line, origin: "e.jsonl") }
        do { _ = try EventScript.parse(line, origin: "e.jsonl") } catch {
            #expect(error.description.hasPrefix("e.jsonl:1: ") && error.description.contains(message), "\(error)")
        }
    }
}
