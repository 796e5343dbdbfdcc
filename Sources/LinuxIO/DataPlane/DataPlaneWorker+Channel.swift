import Glibc
import CLinuxNet
import RelayControl
import RelayCore

/// The supervisor side of a worker: messages in (plans, statistics requests, shutdown) and
/// problems out.
extension DataPlaneWorker {
    func serviceChannel() -> Exit? {
        switch channel.readAvailable() {
        case let .failed(reason):
            report(reason)
            return .channelFailed(reason)
        case let .messages(messages, closed):
            for message in messages {
                switch message {
                case let .install(plan):
                    install(plan)
                case let .gates(delta):
                    let reply: WorkerMessage = switch core.applyGates(delta, source: pool.frameSource) {
                    case let .current(version): .gates(version: version)
                    case let .behind(version): .gatesBehind(version: version)
                    }
                    guard channel.send(reply) else { return .channelClosed }
                case let .statisticsRequest(requestID):
                    collectKernelDrops()
                    var statistics = forwarder.statistics()
                    statistics.ingressQueueDrops = kernelDrops
                    statistics.egress = pool.interfaceEgress
                    guard channel.send(.statistics(requestID: requestID, statistics)) else { return .channelClosed }
                case .shutdown:
                    return .shutdown
                case let .recordStart(assignment):
                    startRecording(assignment)
                case .recordStop:
                    stopRecording()
                case let .linkUp(interface):
                    linkUp(interface)
                }
            }
            return closed ? .channelClosed : nil
        }
    }

    func report(_ problem: String) {
        _ = channel.send(.problem(problem))
    }

    /// Switches to a plan as `WorkerCore` decides (refusals are reported and change nothing):
    /// inputs still assigned keep their sockets (and fanout membership, so their flows stay
    /// where they are); egress sockets still needed stay open.
    func install(_ plan: WorkerPlan) {
        flush()
        let change: WorkerCore.PlanChange
        switch core.apply(plan, source: pool.frameSource) {
        case let .failure(refusal):
            report(refusal.description)
            return
        case let .success(accepted): change = accepted
        }
        recorder?.assign(interfaces: plan.ingress.map(\.interface.rawValue))
        var next: [Input] = []
        for (slot, assignment) in plan.ingress.enumerated() {
            next.append(change.carried[slot].map { inputs[$0] } ?? Input(assignment: assignment))
        }
        for index in change.closed { closeInput(index) }
        inputs = next
        pollDirty = true
        let now = DataPlaneClock.milliseconds()
        for problem in pool.install(plan, now: now) { report(problem) }
        // The pool has just read the facts of new output interfaces.
        core.forwarder.refreshFrameSources(pool.frameSource)
        retryInputs(now: now)
        if needsSubmit, let uring {
            _ = uring.submit()
            needsSubmit = false
        }
        _ = channel.send(.installed(version: plan.version))
    }
}
