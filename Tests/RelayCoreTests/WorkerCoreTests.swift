@testable import RelayCore
import Testing

/// Counters follow outputs across plans; `WorkerCore` decides plans for both drivers.
@Suite struct OutputCounterIdentityTests {
    func forward(_ forwarder: inout Forwarder, count: Int) {
        let frame = FrameBuilder().build()
        for _ in 0..<count { _ = frame.withUnsafeBytes { forwarder.decide($0, link: .ethernet, ingress: 0) } }
    }

    @Test func replacedOutputsStartAtZeroAndKeptOnesKeepTheirCountsWhereverTheyMove() {
        var forwarder = Forwarder(plan: plan([spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001", "eth1:239.10.1.2:6002"])]))
        forward(&forwarder, count: 5)
        // [A, B] -> [C, D]: the same rule id (same input), none of its outputs kept.
        forwarder.install(plan([spec("eth0:239.1.1.1:5001", ["eth2:239.20.1.1:7001", "eth2:239.20.1.2:7002"])], version: 2))
        #expect(forwarder.statistics().rules[0].outputs.map(\.packets) == [0, 0], "C and D never sent anything")
        #expect(forwarder.statistics().rules[0].accepted.packets == 5, "the rule (its input) accepted 5")
        forward(&forwarder, count: 2)
        // [C, D] -> [E, C]: C keeps its 2 at its new position, E starts at 0, D is gone.
        forwarder.install(plan([spec("eth0:239.1.1.1:5001", ["eth3:239.30.1.1:8001", "eth2:239.20.1.1:7001"])], version: 3))
        #expect(forwarder.statistics().rules[0].outputs.map(\.packets) == [0, 2])
        // A TTL change is another output.
        forwarder.install(plan([spec("eth0:239.1.1.1:5001", ["eth3:239.30.1.1:8001", "eth2:239.20.1.1:7001:9"])], version: 4))
        #expect(forwarder.statistics().rules[0].outputs.map(\.packets) == [0, 0])
    }
}

@Suite struct WorkerCoreTests {
    static func assignment(_ name: String, _ fanout: UInt16?) -> IngressAssignment {
        IngressAssignment(interface: InterfaceName(name)!, fanoutGroup: fanout)
    }

    @Test func refusesPlansForOtherWorkersAndDuplicateInputsAndKeepsItsPlan() {
        var core = WorkerCore(worker: WorkerID(1))
        let good = WorkerPlan(worker: WorkerID(1), version: 3, ingress: [Self.assignment("eth0", 7)], rules: [])
        #expect((try? core.apply(good).get())?.carried == [nil])
        let other = WorkerPlan(worker: WorkerID(2), version: 4, ingress: [], rules: [])
        #expect(core.apply(other).failureText == "refused a plan for worker 2 (this is worker 1)")
        let twice = WorkerPlan(worker: WorkerID(1), version: 5, ingress: [Self.assignment("eth0", 7), Self.assignment("eth0", nil)], rules: [])
        #expect(core.apply(twice).failureText?.hasPrefix("refused plan 5: an input interface is listed twice") == true)
        #expect(core.version == 3 && core.ingress == good.ingress && core.refusals == 2 && core.installs == 1)
    }

    @Test func socketsCarryOverOnlyForTheSameInterfaceAndFanoutGroup() throws {
        var core = WorkerCore(worker: WorkerID(0))
        _ = core.apply(WorkerPlan(worker: WorkerID(0), version: 1,
                                  ingress: [Self.assignment("eth0", 1), Self.assignment("eth1", nil), Self.assignment("eth2", 2)], rules: []))
        let change = try core.apply(WorkerPlan(worker: WorkerID(0), version: 2,
                                               ingress: [Self.assignment("eth2", 2), Self.assignment("eth0", 9), Self.assignment("eth3", nil)],
                                               rules: [])).get()
        #expect(change.carried == [2, nil, nil], "eth2 keeps its socket; eth0 changed fanout group; eth3 is new")
        #expect(change.closed == [0, 1])
        // The same plan again (a resync) keeps everything.
        let again = try core.apply(WorkerPlan(worker: WorkerID(0), version: 2, ingress: core.ingress, rules: [])).get()
        #expect(again.carried == [0, 1, 2] && again.closed.isEmpty)
    }
}

extension Result where Failure == WorkerCore.Refusal {
    var failureText: String? {
        if case let .failure(refusal) = self { return refusal.description }
        return nil
    }
}
