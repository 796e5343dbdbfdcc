import Foundation
import Testing
@testable import Sim

/// Replays every checked-in case from disk and compares with its expected.json, then checks
/// what each case exists to show.
@Suite struct TraceCaseTests {
    static let names = TraceCases.all.map(\.name)

    func replay(_ name: String) throws -> SimResult {
        try SimCase.load(directory: tracePath(name)).run()
    }

    @Test(arguments: names)
    func matchesExpected(_ name: String) throws {
        let result = try replay(name)
        let data = try #require(FileManager.default.contents(atPath: tracePath(name) + "/expected.json"),
                                "traces/\(name)/expected.json is missing (run `mcrelay sim make-traces`)")
        let expected = try JSONDecoder().decode(ExpectedOutcome.self, from: data)
        #expect(ExpectedOutcome(result) == expected)
        #expect(result.passed, "\(result.violations.prefix(3))")
    }

    /// The checked-in files are what the generator makes today (so they can be rebuilt).
    @Test(arguments: names)
    func generatorReproducesCheckedInCase(_ name: String) throws {
        let generated = try #require(TraceCases.all.first { $0.name == name })
        let fromDisk = try replay(name)
        let inMemory = try generated.simCase.run()
        #expect(ExpectedOutcome(inMemory) == ExpectedOutcome(fromDisk))
        #expect(inMemory.report == fromDisk.report)
    }

    @Test func twoStreamsBothFlow() throws {
        let result = try replay("two-streams")
        let outputs = result.report.rules.flatMap(\.outputs)
        #expect(outputs.count == 2)
        for output in outputs {
            #expect(output.expected == 100)
            #expect(output.transmitted == 100, "\(output.output)")
        }
        #expect(result.report.egress["eth1"]?.frames == 200)
    }

    @Test func fiftyGroupsUseThreeHelperSocketsAndAllFlow() throws {
        let result = try replay("fifty-groups")
        #expect(result.passed)
        #expect(result.report.control.helperSocketsAtEnd == 3)
        #expect(result.report.control.kernelRefusedOverLimit == 0)
        for output in result.report.rules.flatMap(\.outputs) { #expect(output.transmitted == 3 && output.expected == 3) }
    }

    /// The kernel model catches a relay that ignores the per-socket limit: with the core told
    /// sockets hold 64 groups, it puts 50 on one socket and the kernel refuses 30 of them.
    @Test func fiftyGroupsFailWhenTheLimitIsIgnored() throws {
        var simCase = try SimCase.load(directory: tracePath("fifty-groups"))
        simCase.options.coreSocketLimit = 64
        let result = try simCase.run()
        #expect(!result.passed)
        #expect(result.violations.contains { $0.invariant == InvariantName.helperSocketLimit })
        #expect(result.report.control.kernelRefusedOverLimit >= 30)
    }

    /// "Fine until the 21st group": a driver that reports ENOBUFS joins as successes leaves 30
    /// groups unjoined; the network never delivers them and liveness fails.
    @Test func fiftyGroupsFailWhenJoinErrorsAreSwallowed() throws {
        var simCase = try SimCase.load(directory: tracePath("fifty-groups"))
        simCase.options.coreSocketLimit = 64
        simCase.options.driverBugs = [.reportJoinsAsSucceeded]
        let result = try simCase.run()
        #expect(result.violations.contains { $0.invariant == InvariantName.liveness })
        let silent = result.report.rules.flatMap(\.outputs).filter { $0.transmitted == 0 }
        #expect(silent.count == 30)
    }

    /// "Duplicates with two workers": without PACKET_FANOUT every worker reads every frame.
    @Test func twoStreamsDuplicateWithoutFanout() throws {
        var simCase = try SimCase.load(directory: tracePath("two-streams"))
        simCase.options.driverBugs = [.ignoreFanout]
        let result = try simCase.run()
        #expect(result.violations.contains { $0.invariant == InvariantName.noDuplicateForward })
    }

    @Test func fanoutRemapSendsEveryCopyWithItsOwnHeader() throws {
        let result = try replay("fanout-remap")
        #expect(result.passed)
        let feed = try #require(result.report.rules.first { $0.name == "feed" })
        let fromB = try #require(result.report.rules.first { $0.name == "feed-from-b" })
        #expect(feed.matched == 80 && fromB.matched == 40)
        for output in feed.outputs { #expect(output.transmitted == 80) }
        #expect(fromB.outputs[0].transmitted == 40)
        #expect(result.report.egress["eth1"]?.frames == 160)
        #expect(result.report.egress["eth2"]?.frames == 200)
    }

    @Test func malformedFramesAreNeverForwarded() throws {
        let result = try replay("malformed-mix")
        #expect(result.passed)
        // 50 valid frames, plus the VLAN-tagged and IP-options ones, which are valid too.
        #expect(result.report.rules[0].outputs[0].transmitted == 60)
        let drops = result.report.drops
        for reason in ["bad_checksum", "truncated", "fragment", "not_udp", "not_ip", "bad_length"] {
            #expect((drops[reason] ?? 0) > 0, "no \(reason) drops")
        }
    }

    @Test func controlEventsAreApplied() throws {
        let result = try replay("control-events")
        #expect(result.passed)
        #expect(result.report.ingress.interfaceDown == 20)
        #expect(result.report.control.reports["worker_lost"] == 1)
        let cam3 = try #require(result.report.rules.first { $0.name == "cam3" })
        #expect(cam3.outputs[0].transmitted > 0)
    }

    /// Egress files are real captures: they read back with libpcap, one frame per transmit,
    /// and each frame parses as the datagram the relay meant to send.
    @Test func egressCapturesReadBack() throws {
        let directory = try temporaryDirectory("egress")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try SimCase.load(directory: tracePath("fanout-remap")).run(outputDirectory: directory)
        var summary = TraceLoader.LoadSummary()
        for interface in ["eth1", "eth2"] {
            let store = try TraceLoader.load([TraceSource(interface: interface, path: directory + "/\(interface).pcap")], summary: &summary)
            #expect(store.frames.count == result.report.egress[interface]?.frames)
            for index in store.frames.indices {
                let facts = store.bytes(index).withUnsafeBytes { ReferenceClassifier.facts($0, link: .ethernet) }
                if store.bytes(index)[30] >= 224 { #expect(facts.forwardable) }
            }
        }
    }
}

/// Shrunk fuzz failures, kept so the bug stays fixed: every case under traces/regressions
/// must pass.
@Suite struct RegressionCaseTests {
    static var names: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: tracePath("regressions"))) ?? []).sorted()
    }

    @Test func thereAreRegressionCases() { #expect(!Self.names.isEmpty) }

    @Test(arguments: names)
    func passes(_ name: String) throws {
        let result = try SimCase.load(directory: tracePath("regressions/" + name)).run()
        #expect(result.passed, "\(name): \(result.violations.prefix(3))")
        #expect(result.report.liveness.converged)
    }
}

/// A real IPv6 capture (traces/ipv6-recorded): a flight recording of the daemon in the IPv6
/// namespace lab, saved with `sim replay --recording ... --save-case` (see its case.json). The
/// replay must give what the live daemon did, and what expected.json holds.
@Suite struct RecordedIPv6CaseTests {
    @Test func replaysLikeTheLiveDaemon() throws {
        let directory = try temporaryDirectory("ipv6-recorded")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let simCase = try SimCase.load(directory: tracePath("ipv6-recorded"))
        let result = try simCase.run(outputDirectory: directory)
        #expect(result.passed, "\(result.violations.prefix(3))")
        #expect(result.report.liveness.converged)
        let data = try #require(FileManager.default.contents(atPath: tracePath("ipv6-recorded") + "/expected.json"))
        #expect(ExpectedOutcome(result) == (try JSONDecoder().decode(ExpectedOutcome.self, from: data)))
        // Per output, what the live daemon counted.
        let transmitted = Dictionary(uniqueKeysWithValues: result.report.rules.flatMap { rule in rule.outputs.map { ($0.output, $0.transmitted) } })
        #expect(transmitted == ["rout0:[ff3e::10:1]:6000:16": 60, "rout1:239.10.1.1:6001:5": 60, "rout0:[ff05::10:2]:6002:64": 60,
                                "rout0:[ff3e::10:3]:6003:7": 60, "rout1:239.10.1.2:6004:9": 60, "rout1:[ff05::10:4]:6004:3": 30],
                "\(transmitted)")
        #expect(result.report.drops["not_udp"] == 4, "the four MLD reports: \(result.report.drops)")
        // The egress captures: IPv6 frames (33:33 MACs, EtherType 86DD, hop limit per output) where the outputs are IPv6.
        var summary = TraceLoader.LoadSummary()
        for (interface, ipv6, ipv4) in [("rout0", 180, 0), ("rout1", 30, 120)] {
            let store = try TraceLoader.load([TraceSource(interface: interface, path: directory + "/\(interface).pcap")], summary: &summary)
            let frames = store.frames.indices.map { store.bytes($0) }
            let v6 = frames.filter { $0.count > 54 && $0[12] == 0x86 && $0[13] == 0xDD && $0[0] == 0x33 && $0[1] == 0x33 && $0[20] == 17 }
            let v4 = frames.filter { $0.count > 34 && $0[12] == 0x08 && $0[13] == 0x00 }
            #expect(v6.count == ipv6 && v4.count == ipv4, "\(interface): \(v6.count) IPv6 and \(v4.count) IPv4 frames")
            for frame in v6 {
                let facts = frame.withUnsafeBytes { ReferenceClassifier.facts($0, link: .ethernet) }
                #expect(facts.forwardable, "\(interface): an IPv6 egress frame the reference classifier would not forward")
            }
        }
    }
}

