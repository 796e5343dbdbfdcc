import Foundation
import Glibc
import CLinuxNet
import LinuxIO
import RelayControl
import RelayCore
import Testing

/// End-to-end tests of one worker's data plane with real sockets and real traffic: the worker
/// runs on a thread inside the relay namespace of a fresh lab, mcsend.py sends from the sender
/// namespace, mcrecv.py verifies every payload byte, sequence and TTL at the receiver.
@Suite("DataPlane forwarding", .serialized,
       .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
struct DataPlaneForwardingTests {
    /// One stream relayed to two interfaces (plus one output back out of the input interface,
    /// which must not loop back in); a second stream with no rule is counted, not forwarded.
    @Test("relays byte-exact to every output and never reads its own frames", arguments: IngressMode.allCases)
    func relaysByteExact(mode: IngressMode) throws {
        let lab = try DataPlaneLab(tag: mode == .uring ? "u" : "r")
        defer { lab.down() }
        let count = 400, size = 300
        let rule = try DataPlaneRules.rule("rin0:239.1.2.3:5000", [
            "rout0:239.9.1.1:6000:7", "rout1:239.9.1.2:6001:3", "rin0:239.9.1.3:6002:2",
        ])
        let plan = WorkerPlan(worker: WorkerID(0), version: 1,
                              ingress: [IngressAssignment(interface: DataPlaneRules.interface("rin0"), fanoutGroup: 0x4D43)],
                              rules: [rule])

        let worker = try WorkerUnderTest(namespace: lab.relay, mode: mode)
        guard case .ready(WorkerID(0), _)? = try worker.next() else { Issue.record("no ready message"); return }
        try worker.install(plan)

        let receiver0 = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver0Address,
                                              streams: ["239.9.1.1:6000:1"], expect: count, size: size)
        let receiver1 = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver1Address,
                                              streams: ["239.9.1.2:6001:1"], expect: count, size: size)
        defer { receiver0.terminate(); receiver1.terminate() }
        let sent = try lab.send(streams: ["239.1.2.3:5000:1", "239.1.2.4:5000:2"], count: count, rate: 2000, size: size)
        #expect(sent["errors"] as? Int == 0)

        for (receiver, key, ttl) in [(receiver0, "239.9.1.1:6000", 7), (receiver1, "239.9.1.2:6001", 3)] {
            let output = try receiver.finish(timeout: 30, check: false)
            let report = try DataPlaneLab.json(output.stdout, from: "mcrecv")
            let stream = try #require((report["received"] as? [String: Any])?[key] as? [String: Any], "mcrecv report: \(output.stdout)")
            #expect(stream["received"] as? Int == count, "\(key): \(stream)")
            #expect(stream["missing"] as? Int == 0, "\(key): \(stream)")
            #expect(stream["corrupt"] as? Int == 0, "\(key): \(stream)")
            #expect(stream["duplicates"] as? Int == 0, "\(key): \(stream)")
            #expect(stream["out_of_order"] as? Int == 0, "\(key): \(stream)")
            #expect(stream["ttl_min"] as? Int == ttl && stream["ttl_max"] as? Int == ttl, "\(key): \(stream)")
            #expect(output.status == 0, "mcrecv: \(output.stderr)")
        }

        let statistics = try worker.statistics()
        let ruleStatistics = try #require(statistics.rules.first)
        #expect(ruleStatistics.accepted.packets == UInt64(count))
        #expect(ruleStatistics.accepted.bytes == UInt64(count * size))
        #expect(ruleStatistics.outputs.map(\.packets) == [UInt64(count), UInt64(count), UInt64(count)])
        #expect(ruleStatistics.outputs.map(\.sendErrors) == [0, 0, 0])
        // Exactly the unmatched stream: had the worker read its own copies sent out of rin0,
        // they would show up here too (239.9.1.3 has no rule).
        #expect(statistics.drops[.noMatchingRule] == UInt64(count))
        #expect(statistics.drops.total == UInt64(count), "\(statistics.drops.nonZero)")
        #expect(worker.problems.isEmpty, "\(worker.problems)")
        #expect(try worker.shutdown() == .shutdown)
    }

    /// Counters survive a plan change that keeps the rule; a rule added later forwards too.
    @Test("a new plan keeps the sockets and counters of unchanged rules", arguments: IngressMode.allCases)
    func planUpdateKeepsCounters(mode: IngressMode) throws {
        let lab = try DataPlaneLab(tag: mode == .uring ? "pu" : "pr")
        defer { lab.down() }
        let count = 200, size = 100
        let first = try DataPlaneRules.rule("rin0:239.1.2.3:5000", ["rout0:239.9.1.1:6000:4"])
        let second = try DataPlaneRules.rule("rin0:239.1.2.4:5000", ["rout0:239.9.1.2:6000:4"])
        let ingress = [IngressAssignment(interface: DataPlaneRules.interface("rin0"), fanoutGroup: nil)]
        let worker = try WorkerUnderTest(namespace: lab.relay, mode: mode)
        _ = try worker.next()
        try worker.install(WorkerPlan(worker: WorkerID(0), version: 1, ingress: ingress, rules: [first]))
        try lab.send(streams: ["239.1.2.3:5000:1"], count: count, rate: 4000, size: size)
        try worker.install(WorkerPlan(worker: WorkerID(0), version: 2, ingress: ingress, rules: [first, second]))

        let receiver = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver0Address,
                                             streams: ["239.9.1.1:6000:1", "239.9.1.2:6000:2"], expect: count, size: size)
        defer { receiver.terminate() }
        try lab.send(streams: ["239.1.2.3:5000:1", "239.1.2.4:5000:2"], count: count, rate: 2000, size: size)
        let output = try receiver.finish(timeout: 30, check: false)
        #expect(output.status == 0, "mcrecv: \(output.stdout) \(output.stderr)")

        let statistics = try worker.statistics()
        #expect(statistics.rules.map(\.rule.id) == [first.id, second.id])
        #expect(statistics.rules.map(\.accepted.packets) == [UInt64(2 * count), UInt64(count)])
        #expect(worker.problems.isEmpty, "\(worker.problems)")
        #expect(try worker.shutdown() == .shutdown)
    }
}
