import Foundation
import RelayCore

/// The control plane and the kernel: scripted operator events, core actions, the supervisor/worker channel.
extension Simulation {
    // MARK: - Control plane and kernel

    func runScripted(_ event: ScriptedEvent) {
        if event.isSegmentEvent {
            runSegmentEvent(event.kind)
        } else if case .joinFail = event.kind {
        } else {
            listenerOracle.lastDisruption = now  // rule, interface and worker changes re-plan the workers
        }
        switch event.kind {
        case .hostJoin, .hostLeave, .hostVersion, .querierStart, .querierStop, .segmentLoss:
            break  // run above
        case let .ruleAdd(spec):
            do {
                try control.addRule(spec, now: instant)
                var specs = oracle.currentSpecs
                if !specs.contains(spec) { specs.append(spec) }
                oracle.setRules(specs)
            } catch { operatorError("rule_add \(spec.input): \(error)") }
        case let .ruleRemove(selector):
            let target = oracle.resolve(selector)
            do {
                try control.removeRule(selector, now: instant)
                if let target { oracle.setRules(oracle.currentSpecs.filter { $0 != target }) }
            } catch { operatorError("rule_remove \(selector): \(error)") }
        case let .configReload(specs):
            do {
                try control.replaceRules(specs, now: instant)
                oracle.setRules(specs)
            } catch { operatorError("config_reload: \(error)") }
        case let .interfaceDown(name):
            let index = interfaces.index(of: name)!
            adminDown[index] = true
            updateInterface(index)
        case let .interfaceUp(name):
            let index = interfaces.index(of: name)!
            adminDown[index] = false
            updateInterface(index)
        case .joinFail:
            return  // registered up front (init): the join it describes may run in the same instant, before it
        case let .workerCrash(worker):
            guard worker < options.workers else {
                operatorError("worker_crash \(worker): there are only \(options.workers) workers")
                return
            }
            crash(worker, fault: false)
        }
        syncRegistry()
        executeActions()
    }

    /// A recorded join failure due for this membership: the live relay's join failed within
    /// 50 ms of now (its timers fire a little late); older than a second, it no longer applies.
    func scriptedJoinFailure(_ key: MembershipKey) -> JoinError? {
        guard var pending = scriptedJoinFailures[key] else { return nil }
        pending.removeAll { $0.at + 1_000_000_000 < now }
        defer { scriptedJoinFailures[key] = pending.isEmpty ? nil : pending }
        guard let first = pending.first, first.at <= now + 50_000_000 else { return nil }
        pending.removeFirst()
        return first.error
    }

    func operatorError(_ message: String) {
        if controlStats.operatorErrors.count < 50 {
            controlStats.operatorErrors.append("\(instant): \(message)")
        }
    }

    func updateInterface(_ index: Int) {
        let up = !adminDown[index] && faultDown[index] == 0
        guard kernel.up[index] != up else { return }
        kernel.setUp(index, up)
        listenerOracle.segments[index].lastDownChange = now
        listenerOracle.lastDisruption = now
        let name = interfaces.names[index]
        control.handle(up ? .interfaceUp(name) : .interfaceDown(name), now: instant)
        executeActions()
    }

    /// Grows the report tallies to cover newly interned rules.
    func syncRegistry() {
        let registry = oracle.registry
        while matchedByRule.count < registry.specs.count {
            let spec = registry.specs[matchedByRule.count]
            matchedByRule.append(0)
            acceptedByRule.append(0)
            registryOutputCounts.append(spec.outputs.count)
            for output in spec.outputs {
                registryFollows.append(output.followsListeners)
                registryOutputs.append((interfaces.index(of: output.interface) ?? -1, output.destination, output.port, output.ttl))
                expectedByOutput.append(0); handedByOutput.append(0); transmittedByOutput.append(0); sendErrorsByOutput.append(0)
            }
        }
    }

    func executeActions() {
        var changedSockets = false
        while let action = control.poll() {
            if options.verbose { print("\(instant)   core: \(action)") }
            switch action {
            case .openHelperSocket, .closeHelperSocket, .join, .leave: count(InvariantName.kernelCallsValid)
            default: break
            }
            switch action {
            case let .listener(action):
                // Queries go onto the segment as frames; listener and querier changes are the
                // core's own view, which the oracle does not take.
                if case let .send(transmit) = action { relaySend(transmit) }
            case let .openHelperSocket(id):
                changedSockets = true
                do { try kernel.openHelperSocket(id) } catch {
                    violate(InvariantName.kernelCallsValid, "opened helper socket \(id) twice")
                }
            case let .closeHelperSocket(id):
                do { try kernel.closeHelperSocket(id) } catch {
                    violate(InvariantName.kernelCallsValid, "closed helper socket \(id), which is not open")
                }
            case let .join(request):
                changedSockets = true
                controlStats.joins += 1
                var outcome: JoinOutcome
                if let error = scriptedJoinFailure(request.membership) {
                    outcome = .failed(error)
                } else if let error = injector.joinFault() {
                    faultCounts.joinsFailed += 1
                    outcome = .failed(error)
                } else {
                    outcome = kernel.join(request)
                }
                if options.driverBugs.contains(.reportJoinsAsSucceeded) { outcome = .joined }
                if case let .failed(error) = outcome { controlStats.joinErrors[error.description, default: 0] += 1 }
                queue.push(.joinDone(request.ticket, outcome), at: now + Self.joinLatency)
            case let .leave(request):
                if !kernel.leave(request) {
                    violate(InvariantName.kernelCallsValid, "left \(request.membership) on \(request.socket), which does not hold it")
                }
            case let .sendPlan(plan):
                controlStats.plansSent += 1
                if versionEpoch[plan.version] == nil {
                    // The dispatcher only ever sends its current version. An older one with no
                    // record was pruned as no longer installable (soak): sending it again would
                    // go back in time, and judging it against today's rules would hide that.
                    if plan.version < latestPlanVersion {
                        violate(InvariantName.kernelCallsValid,
                                "the core sent plan v\(plan.version) to worker \(plan.worker.rawValue) after v\(latestPlanVersion)")
                    }
                    versionEpoch[plan.version] = oracle.current
                }
                latestPlanVersion = max(latestPlanVersion, plan.version)
                latestGateVersion = max(latestGateVersion, plan.gateVersion)
                sendPlan(plan)
            case let .sendGates(delta):
                latestGateVersion = max(latestGateVersion, delta.version)
                if options.driverBugs.contains(.dropGateDeltas) { break }
                var sent = delta
                if options.driverBugs.contains(.openAllGates) {
                    for index in sent.entries.indices { sent.entries[index].filter = GateFilter(mode: .exclude, sources: []) }
                }
                sendGates(sent)
            case let .setTimer(at):
                timerGeneration += 1
                if let at { queue.push(.timer(timerGeneration), at: max(at.nanoseconds, now)) }
            case let .report(report):
                let kind: String
                switch report {
                case .joinFailed: kind = "join_failed"
                case .joinRecovered: kind = "join_recovered"
                case .socketCapacityLearned: kind = "socket_capacity_learned"
                case .workerLost: kind = "worker_lost"
                case .workerCurrent: kind = "worker_current"
                }
                controlStats.reports[kind, default: 0] += 1
            }
        }
        if changedSockets { checkSocketLimit() }
    }

    /// The core must never place more groups on a helper socket than the kernel allows.
    func checkSocketLimit() {
        count(InvariantName.helperSocketLimit)
        for usage in control.membership.socketUsage {
            let limit = usage.socket.family == .ipv4 ? options.kernelMembershipLimit : options.kernelMembershipLimitIPv6
            guard usage.groups > limit, reportedSockets.insert(usage.socket).inserted else { continue }
            violate(InvariantName.helperSocketLimit,
                    "helper socket \(usage.socket) given \(usage.groups) groups; the kernel allows \(limit) per socket")
        }
    }

    /// What the supervisor/worker channel does to one message: nil when it is lost, else the
    /// extra delay. Draws from the fault injector exactly once per message.
    func channelFate() -> UInt64? {
        switch injector.controlFate() {
        case .lose:
            faultCounts.controlMessagesLost += 1
            return nil
        case let .delay(amount):
            faultCounts.controlMessagesDelayed += 1
            return amount
        case .deliver:
            return 0
        }
    }

    func sendPlan(_ plan: WorkerPlan) {
        guard let (worker, message, at) = scheduleChannelMessage(to: plan.worker) else { return }
        pendingPlans[message] = (worker, workers[worker].incarnation, plan)
        queue.push(.planDelivered(message), at: at)
    }

    /// Gate deltas share the plans' channel (and its order, loss and delay).
    func sendGates(_ delta: GateDelta) {
        guard let (worker, message, at) = scheduleChannelMessage(to: delta.worker) else { return }
        pendingGates[message] = (worker, workers[worker].incarnation, delta)
        queue.push(.gatesDelivered(message), at: at)
    }

    /// When a message on the supervisor-to-worker channel arrives, and its number; nil when the
    /// worker is dead or the channel loses the message.
    private func scheduleChannelMessage(to id: WorkerID) -> (worker: Int, message: Int, at: UInt64)? {
        let worker = id.rawValue
        guard worker < workers.count, workers[worker].alive else { return nil }
        guard let extra = channelFate() else { return nil }
        // A stream socket keeps order: a delayed message holds back the ones behind it.
        let at = max(now + Self.channelLatency + extra, workers[worker].channelFree)
        workers[worker].channelFree = at
        nextMessage += 1
        return (worker, nextMessage, at)
    }
}
