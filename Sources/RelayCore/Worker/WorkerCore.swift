/// What a worker decides about the plans it is sent, whoever runs it: the worker process
/// (`DataPlaneWorker`) and the simulator's workers both hold one and do what it says, so the
/// simulator exercises the decisions that run in production; only opening and closing sockets
/// is left to the driver.
///
/// It refuses a plan meant for another worker or one that lists an input interface twice
/// (the driver reports the refusal and keeps forwarding with the plan it has), accepts the
/// same version again (the supervisor resends the current plan to resync a worker it is
/// unsure of), and on every accepted plan tells which ingress sockets carry over (same
/// interface and fanout group: their flows stay where they are), which open and which close.
public struct WorkerCore: Sendable {
    public let worker: WorkerID
    /// The data plane; drivers call `decide`/`transmits` on it per frame.
    public var forwarder: Forwarder
    /// The ingress assignments of the installed plan: slot `i` is `ingress[i]`.
    public private(set) var ingress: [IngressAssignment] = []
    public private(set) var version: UInt64 = 0
    /// Plans installed and refused since the start (diagnostics).
    public private(set) var installs = 0
    public private(set) var refusals = 0

    public init(worker: WorkerID) {
        self.worker = worker
        forwarder = Forwarder(plan: .idle(worker))
    }

    /// What the driver must do for an accepted plan.
    public struct PlanChange: Equatable, Sendable {
        public var version: UInt64
        /// Per ingress slot of the new plan: the slot whose socket it keeps, or nil (open one).
        public var carried: [Int?]
        /// Slots of the previous plan whose sockets close, ascending.
        public var closed: [Int]
        /// The output interfaces, in the Forwarder's egress-slot order.
        public var egress: [InterfaceName]
    }

    public enum Refusal: Error, Equatable, Sendable, CustomStringConvertible {
        case otherWorker(plan: WorkerID, this: WorkerID)
        case duplicateInput(version: UInt64, interfaces: [InterfaceName])

        public var description: String {
            switch self {
            case let .otherWorker(plan, this): "refused a plan for \(plan) (this is \(this))"
            case let .duplicateInput(version, interfaces):
                "refused plan \(version): an input interface is listed twice in \(interfaces)"
            }
        }
    }

    /// Applies a listener gate delta (see `Forwarder.applyGates`); the driver answers the
    /// supervisor with what it returns. A delta for another worker changes nothing.
    public mutating func applyGates(_ delta: GateDelta, source: (OutputSpec) -> IPAddress? = { _ in nil }) -> Forwarder.GateOutcome {
        guard delta.worker == worker else { return .current(version: forwarder.gateVersion) }
        return forwarder.applyGates(delta, source: source)
    }

    public mutating func apply(_ plan: WorkerPlan, source: (OutputSpec) -> IPAddress? = { _ in nil }) -> Result<PlanChange, Refusal> {
        guard plan.worker == worker else {
            refusals += 1
            return .failure(.otherWorker(plan: plan.worker, this: worker))
        }
        let interfaces = plan.ingress.map(\.interface)
        guard Set(interfaces).count == interfaces.count else {
            refusals += 1
            return .failure(.duplicateInput(version: plan.version, interfaces: interfaces))
        }
        var carried: [Int?] = []
        var kept = Set<Int>()
        for assignment in plan.ingress {
            let old = ingress.indices.first { !kept.contains($0) && ingress[$0] == assignment }
            if let old { kept.insert(old) }
            carried.append(old)
        }
        let closed = ingress.indices.filter { !kept.contains($0) }
        forwarder.install(plan)
        forwarder.refreshFrameSources(source)
        ingress = plan.ingress
        version = plan.version
        installs += 1
        return .success(PlanChange(version: plan.version, carried: carried, closed: closed, egress: forwarder.egress))
    }
}
