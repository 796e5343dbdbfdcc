import Foundation
import RelayCore

/// Worker processes: plan installs, crashes, restarts, counter checkpoints.
extension Simulation {
    // MARK: - Workers

    func install(_ plan: WorkerPlan, on index: Int) {
        checkpoint(index)
        controlStats.plansInstalled += 1
        var worker = workers[index]
        let previous = worker.core.ingress
        let change: WorkerCore.PlanChange
        switch worker.core.apply(plan, source: frameSource) {
        case let .failure(refusal):
            // The process reports it and keeps its plan; the supervisor never sends such a plan.
            violate(InvariantName.kernelCallsValid, "worker \(index): \(refusal)")
            return
        case let .success(accepted): change = accepted
        }
        // AF_PACKET sockets as the worker process handles them: the slots `WorkerCore` closes
        // lose theirs, carried-over slots keep theirs (same interface and fanout group), the
        // rest open one (again, if an earlier open failed).
        func socket(_ assignment: IngressAssignment) -> PacketSockets.Socket? {
            guard let interface = interfaces.index(of: assignment.interface) else { return nil }
            let fanout = options.driverBugs.contains(.ignoreFanout) ? nil : assignment.fanoutGroup
            return PacketSockets.Socket(worker: index, interface: interface, fanout: fanout)
        }
        for slot in change.closed {
            if let closing = socket(previous[slot]), packetSockets.sockets(of: index).contains(closing) { packetSockets.close(closing) }
        }
        worker.slotOf = Array(repeating: -1, count: interfaces.count)
        let existing = packetSockets.sockets(of: index)
        for assignment in plan.ingress {
            guard let want = socket(assignment) else { continue }
            if !existing.contains(want) {
                guard packetSockets.open(want) else {
                    violate(InvariantName.kernelCallsValid,
                            "worker \(index): PACKET_FANOUT id \(want.fanout ?? 0) is already bound to another interface (EINVAL)")
                    continue
                }
            }
            worker.slotOf[want.interface] = worker.forwarder.ingressSlot(of: interfaces.names[want.interface]) ?? -1
        }
        worker.egressInterface = worker.forwarder.egress.map { interfaces.index(of: $0) ?? -1 }
        worker.routeRef = plan.rules.map { oracle.intern($0.spec) }
        worker.routeTally = Array(repeating: 0, count: plan.rules.count)
        worker.sendFailTally = Array(repeating: 0, count: plan.rules.reduce(0) { $0 + $1.outputs.count })
        worker.baseline = worker.forwarder.statistics()
        worker.epoch = versionEpoch[plan.version] ?? oracle.current
        workers[index] = worker
        syncRegistry()

        guard let extra = channelFate() else { return }
        let at = max(now + Self.channelLatency + extra, workers[index].ackChannelFree)
        workers[index].ackChannelFree = at
        queue.push(.ackDelivered(worker: index, incarnation: worker.incarnation, version: plan.version), at: at)
    }

    /// The source address the model's frames for an output carry (`EgressRecorder`'s facts).
    func frameSource(_ output: OutputSpec) -> IPAddress? {
        guard let interface = interfaces.index(of: output.interface) else { return nil }
        return egress.ports[interface].facts.source(for: output.destination)
    }

    func applyGates(_ delta: GateDelta, on index: Int) {
        let outcome = workers[index].core.applyGates(delta, source: frameSource)
        guard let extra = channelFate() else { return }
        let at = max(now + Self.channelLatency + extra, workers[index].ackChannelFree)
        workers[index].ackChannelFree = at
        queue.push(.gateAckDelivered(worker: index, incarnation: workers[index].incarnation, outcome: outcome), at: at)
    }

    func crash(_ index: Int, fault: Bool) {
        guard workers[index].alive else { return }
        if fault { faultCounts.workerCrashes += 1 }
        checkpoint(index)
        workers[index].alive = false
        // The process is gone: its sockets close (leaving their fanout groups).
        for socket in packetSockets.sockets(of: index) { packetSockets.close(socket) }
        workers[index].restartPending = true
        queue.push(.workerExitNoticed(index), at: now + Self.exitNoticeDelay)
        queue.push(.workerRestart(index), at: now + max(options.restartDelay, Self.exitNoticeDelay + 1))
    }

    func restart(_ index: Int) {
        guard !workers[index].alive else { return }
        let incarnation = workers[index].incarnation + 1
        var fresh = Worker(id: index, interfaces: interfaces.count)
        fresh.incarnation = incarnation
        fresh.baseline = fresh.forwarder.statistics()
        fresh.channelFree = now
        fresh.ackChannelFree = now
        workers[index] = fresh
        control.handle(.workerStarted(WorkerID(index)), now: instant)
        executeActions()
    }

    /// Compares a worker's counters with what the simulator saw it do since the last
    /// checkpoint, then folds them into the report.
    func checkpoint(_ index: Int) {
        var worker = workers[index]
        let stats = worker.forwarder.statistics()
        let base = worker.baseline
        count(InvariantName.countersAddUp)
        var problems: [String] = []
        var acceptedTotal: UInt64 = 0
        var handle = 0
        for (r, ruleStats) in stats.rules.enumerated() {
            let before = r < base.rules.count ? base.rules[r] : nil
            let accepted = ruleStats.accepted.packets &- (before?.accepted.packets ?? 0)
            acceptedTotal &+= accepted
            if accepted != worker.routeTally[r] {
                problems.append("rule \(ruleStats.rule.id) counted \(accepted) accepted, forwarded \(worker.routeTally[r])")
            }
            let ref = worker.routeRef[r]
            acceptedByRule[ref] &+= accepted
            for (o, output) in ruleStats.outputs.enumerated() {
                let handed = output.packets &- (before?.outputs[o].packets ?? 0)
                let errors = output.sendErrors &- (before?.outputs[o].sendErrors ?? 0)
                // A follow output's closed gate holds datagrams back ("suppressed"): each
                // accepted datagram is handed to the driver or held back, never both.
                let suppressed = output.suppressed &- (before?.outputs[o].suppressed ?? 0)
                if handed &+ suppressed != accepted {
                    problems.append("rule \(ruleStats.rule.id) output \(o): \(handed) handed to the driver + \(suppressed) held back by its gate, \(accepted) accepted")
                }
                if errors != worker.sendFailTally[handle] {
                    problems.append("rule \(ruleStats.rule.id) output \(o): \(errors) send errors counted, \(worker.sendFailTally[handle]) reported")
                }
                let slot = oracle.registry.outputBase[ref] + o
                handedByOutput[slot] &+= handed
                sendErrorsByOutput[slot] &+= errors
                handle += 1
            }
        }
        var dropTotal: UInt64 = 0
        for reason in DropReason.allCases {
            let delta = stats.drops[reason] &- base.drops[reason]
            if delta != worker.dropTally[reason.rawValue] {
                problems.append("\(reason): counted \(delta), decided \(worker.dropTally[reason.rawValue])")
            }
            drops[reason.rawValue] &+= delta
            dropTotal &+= delta
        }
        if acceptedTotal &+ dropTotal != worker.delivered {
            problems.append("\(worker.delivered) frames delivered but \(acceptedTotal) accepted + \(dropTotal) dropped")
        }
        if !problems.isEmpty {
            violate(InvariantName.countersAddUp, "worker \(index): " + problems.prefix(3).joined(separator: "; "))
        }
        worker.baseline = stats
        worker.delivered = 0
        for r in worker.routeTally.indices { worker.routeTally[r] = 0 }
        for h in worker.sendFailTally.indices { worker.sendFailTally[h] = 0 }
        for d in worker.dropTally.indices { worker.dropTally[d] = 0 }
        workers[index] = worker
    }
}
