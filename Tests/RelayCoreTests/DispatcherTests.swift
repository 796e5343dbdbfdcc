import Collections
import Testing
@testable import RelayCore

@Suite struct DispatcherTests {
    func plans(_ actions: [ControlAction]) -> [WorkerPlan] {
        actions.compactMap { if case let .sendPlan(plan) = $0 { plan } else { nil } }
    }

    @Test func fanoutGivesEveryWorkerEveryInputWithAStableFanoutGroup() throws {
        var h = Harness(workers: 3)
        for worker in 0..<3 { h.plane.handle(.workerStarted(WorkerID(worker)), now: h.now) }
        h.up("in0"); h.up("in1")
        try h.add(spec("in1:239.1.1.1:5000", ["out0:239.2.1.1:5000"]))
        try h.add(spec("in0:239.1.1.2:5000", ["out0:239.2.1.2:5000"]))
        let latest = h.plans.suffix(3)
        #expect(latest.map(\.worker) == [WorkerID(0), WorkerID(1), WorkerID(2)])
        for plan in latest {
            #expect(plan.ingress.map(\.interface) == [iface("in0"), iface("in1")])
            #expect(plan.rules.count == 2)
        }
        let groups = latest.map { $0.ingress.map(\.fanoutGroup) }
        #expect(Set(groups).count == 1, "all workers join the same fanout group per interface")
        #expect(groups[0][0] != groups[0][1], "each interface has its own fanout group")

        // The fanout id of an interface survives plan changes.
        let in1Group = h.plane.dispatcher.fanoutGroup(for: iface("in1"))
        h.down("in0")
        #expect(h.plane.dispatcher.fanoutGroup(for: iface("in1")) == in1Group)
    }

    @Test func partitionNeverGivesOneInterfaceToTwoLiveWorkers() throws {
        var h = Harness(workers: 2)
        h.plane = ControlPlane(configuration: .init(workerCount: 2, dispatchMode: .partition))
        h.plane.handle(.workerStarted(WorkerID(0)), now: h.now)
        h.up("in0"); h.up("in1"); h.up("in2")
        for (index, name) in ["in0", "in1", "in2"].enumerated() {
            try h.plane.addRule(spec("\(name):239.1.1.\(index + 1):5000", ["out0:239.2.1.\(index + 1):5000"]), now: h.now)
        }
        _ = h.plane.drain()
        #expect(h.plane.dispatcher.plan(for: WorkerID(0)).ingress.count == 3)

        // A second worker starting takes nothing from the live first one (no double reading).
        h.plane.handle(.workerStarted(WorkerID(1)), now: h.now)
        #expect(h.plane.dispatcher.plan(for: WorkerID(1)).ingress.isEmpty)

        // Worker 0 dies: its interfaces move to worker 1.
        h.plane.handle(.workerExited(WorkerID(0)), now: h.now)
        #expect(h.plane.dispatcher.plan(for: WorkerID(1)).ingress.count == 3)
        h.plane.handle(.workerStarted(WorkerID(0)), now: h.now)
        let owned = [0, 1].map { h.plane.dispatcher.plan(for: WorkerID($0)).ingress.map(\.interface) }
        #expect(Set(owned[0]).isDisjoint(with: owned[1]))
        #expect(owned[0].count + owned[1].count == 3)
    }

    @Test func unacknowledgedPlansAreResentAndRestartedWorkersResync() throws {
        var h = Harness(workers: 2)
        h.plane.handle(.workerStarted(WorkerID(0)), now: h.now)
        h.plane.handle(.workerStarted(WorkerID(1)), now: h.now)
        h.up("in0")
        try h.plane.addRule(spec("in0:239.1.1.1:5000", ["out0:239.2.1.1:5000"]), now: h.now)
        let version = h.plane.dispatcher.version
        _ = h.plane.drain()
        h.plane.handle(.workerAcknowledged(WorkerID(0), version: version), now: h.now)  // worker 1's copy was lost
        #expect(h.plane.dispatcher.currentWorkers == [WorkerID(0)])
        let deadline = try #require(h.plane.nextDeadline)
        h.plane.handle(.timerFired, now: deadline)
        let resent = plans(h.plane.drain())
        #expect(resent.map(\.worker) == [WorkerID(1)])
        #expect(resent.first?.version == version)
        h.plane.handle(.workerAcknowledged(WorkerID(1), version: version), now: deadline)
        #expect(h.plane.dispatcher.currentWorkers == [WorkerID(0), WorkerID(1)])
        #expect(h.plane.nextDeadline == nil)

        // A crashed worker comes back to exactly the current rules.
        h.plane.handle(.workerExited(WorkerID(1)), now: deadline)
        h.plane.handle(.workerStarted(WorkerID(1)), now: deadline)
        let resync = plans(h.plane.drain())
        #expect(resync.count == 1)
        #expect(resync.first?.rules == Array(h.plane.rules.rules.values))
        #expect(resync.first?.version == h.plane.dispatcher.version)
    }

    @Test func controlPlaneArmsAndCancelsItsTimer() throws {
        var plane = ControlPlane()
        plane.handle(.workerStarted(WorkerID(0)), now: .zero)
        plane.handle(.interfaceUp(iface("in0")), now: .zero)
        try plane.addRule(spec("in0:239.1.1.1:5000", ["out0:239.2.1.1:5000"]), now: .zero)
        let actions = plane.drain()
        let timers = actions.compactMap { if case let .setTimer(at) = $0 { at } else { nil } }
        #expect(timers.last == Instant.zero + .milliseconds(250), "plan resend timer")
        let plan = try #require(actions.compactMap { if case let .sendPlan(p) = $0 { p } else { nil } }.last)
        plane.handle(.workerAcknowledged(WorkerID(0), version: plan.version), now: .zero)
        let ticket = try #require(actions.compactMap { if case let .join(r) = $0 { r.ticket } else { nil } }.first)
        plane.handle(.joinCompleted(ticket, .joined), now: .zero)
        #expect(plane.drain().contains(.setTimer(nil)))
    }
}
