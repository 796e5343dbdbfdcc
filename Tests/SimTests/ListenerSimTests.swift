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
