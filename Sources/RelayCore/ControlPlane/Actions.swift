public struct JoinRequest: Hashable, Sendable, CustomStringConvertible {
    public var ticket: JoinTicket
    public var socket: HelperSocketID
    public var membership: MembershipKey
    public var description: String { "\(ticket) \(membership) via \(socket)" }
}

public struct LeaveRequest: Hashable, Sendable, CustomStringConvertible {
    public var socket: HelperSocketID
    public var membership: MembershipKey
    public var description: String { "leave \(membership) via \(socket)" }
}

/// What the control plane asks its driver to do. The driver executes each action and feeds
/// results back as `ControlEvent`s.
public enum ControlAction: Hashable, Sendable, CustomStringConvertible {
    /// Open an unbound UDP socket for joining groups on this interface.
    case openHelperSocket(HelperSocketID)
    /// Close it (which also drops whatever it still holds).
    case closeHelperSocket(HelperSocketID)
    /// IP_ADD_MEMBERSHIP (or IP_ADD_SOURCE_MEMBERSHIP); answer with `.joinCompleted`.
    case join(JoinRequest)
    /// IP_DROP_MEMBERSHIP (or IP_DROP_SOURCE_MEMBERSHIP); no answer needed.
    case leave(LeaveRequest)
    /// Deliver this plan to its worker; the worker answers with `.workerAcknowledged`.
    case sendPlan(WorkerPlan)
    /// Deliver this gate change to its worker; it answers `.workerGatesAcknowledged` (or
    /// `.workerGatesBehind` when it holds less than the delta's base).
    case sendGates(GateDelta)
    /// Call back with `.timerFired` at this instant (replacing any earlier timer); nil cancels.
    case setTimer(Instant?)
    /// Something an operator should know.
    case report(Report)
    /// The IGMP/MLD router asks for this (send a query; listeners or the querier changed).
    case listener(ListenerAction)

    public var description: String {
        switch self {
        case let .openHelperSocket(socket): "open helper socket \(socket)"
        case let .closeHelperSocket(socket): "close helper socket \(socket)"
        case let .join(request): "join \(request)"
        case let .leave(request): request.description
        case let .sendPlan(plan): "send plan v\(plan.version) to \(plan.worker) (\(plan.ingress.count) inputs, \(plan.rules.count) rules)"
        case let .sendGates(delta): "send \(delta)"
        case let .setTimer(instant): instant.map { "set timer \($0)" } ?? "cancel timer"
        case let .report(report): "report: \(report)"
        case let .listener(action): "listener: \(action)"
        }
    }
}

/// Events worth an operator's attention, emitted as `.report` actions.
public enum Report: Hashable, Sendable, CustomStringConvertible {
    case joinFailed(MembershipKey, socket: HelperSocketID, error: JoinError, failures: Int, retryAt: Instant)
    case joinRecovered(MembershipKey, socket: HelperSocketID, afterFailures: Int)
    case socketCapacityLearned(HelperSocketID, capacity: Int)
    case workerLost(WorkerID)
    case workerCurrent(WorkerID, version: UInt64)

    public var description: String {
        switch self {
        case let .joinFailed(key, socket, error, failures, retryAt):
            "join \(key) via \(socket) failed: \(error) (failure \(failures)); retrying at \(retryAt)"
        case let .joinRecovered(key, socket, failures):
            "join \(key) via \(socket) succeeded after \(failures) failure(s)"
        case let .socketCapacityLearned(socket, capacity):
            "helper socket \(socket) holds at most \(capacity) groups (kernel refused more); using another socket"
        case let .workerLost(worker):
            "\(worker) exited"
        case let .workerCurrent(worker, version):
            "\(worker) runs plan v\(version)"
        }
    }
}

/// Inputs to the control plane besides rule changes.
public enum ControlEvent: Hashable, Sendable {
    case interfaceUp(InterfaceName)
    case interfaceDown(InterfaceName)
    case joinCompleted(JoinTicket, JoinOutcome)
    case timerFired
    case workerStarted(WorkerID)
    case workerExited(WorkerID)
    case workerAcknowledged(WorkerID, version: UInt64)
    /// The worker applied gate deltas up to `version`.
    case workerGatesAcknowledged(WorkerID, version: UInt64)
    /// The worker refused a gate delta: it holds gates only up to `version`.
    case workerGatesBehind(WorkerID, version: UInt64)
    /// For the IGMP/MLD router (`Listeners`): interfaces starting and stopping, frames, addresses.
    case listener(ListenerEvent)
}

/// What became of a join, as the driver reports it.
public enum JoinOutcome: Hashable, Sendable {
    case joined
    case failed(JoinError)
}
