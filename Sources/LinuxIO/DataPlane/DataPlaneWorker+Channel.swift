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
                case let .statisticsRequest(requestID):
                    collectKernelDrops()
                    var statistics = forwarder.statistics()
                    statistics.ingressQueueDrops = kernelDrops
                    guard channel.send(.statistics(requestID: requestID, statistics)) else { return .channelClosed }
                case .shutdown:
                    return .shutdown
                case let .recordStart(assignment):
                    startRecording(assignment)
                case .recordStop:
                    stopRecording()
                }
            }
            return closed ? .channelClosed : nil
        }
    }

    func report(_ problem: String) {
        _ = channel.send(.problem(problem))
    }

    /// Switches to a plan: inputs still assigned keep their sockets (and fanout membership,
    /// so their flows stay where they are); egress sockets still needed stay open.
    func install(_ plan: WorkerPlan) {
        guard plan.worker == worker else {
            report("refused a plan for \(plan.worker) (this is \(worker))")
            return
        }
        let interfaces = plan.ingress.map(\.interface)
        guard Set(interfaces).count == interfaces.count else {
            report("refused plan \(plan.version): an input interface is listed twice in \(interfaces)")
            return
        }
        flush()
        forwarder.install(plan)
        recorder?.assign(interfaces: plan.ingress.map(\.interface.rawValue))
        var next: [Input] = []
        var carried = Set<Int>()
        for assignment in plan.ingress {
            if let old = inputs.indices.first(where: { !carried.contains($0) && inputs[$0].assignment == assignment }) {
                carried.insert(old)
                next.append(inputs[old])
            } else {
                next.append(Input(assignment: assignment))
            }
        }
        for index in inputs.indices where !carried.contains(index) { closeInput(index) }
        inputs = next
        pollDirty = true
        let now = DataPlaneClock.milliseconds()
        for problem in pool.install(plan, now: now) { report(problem) }
        retryInputs(now: now)
        if needsSubmit, let uring {
            _ = uring.submit()
            needsSubmit = false
        }
        _ = channel.send(.installed(version: plan.version))
    }
}
