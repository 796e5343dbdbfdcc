import Collections

/// How workers share input interfaces so that no frame is forwarded twice.
public enum DispatchMode: String, Hashable, Sendable, Codable, CaseIterable {
    /// Every worker reads every input interface through one PACKET_FANOUT group per
    /// interface (hash mode keeps a flow on one worker, so its packets stay in order); the
    /// kernel hands each frame to exactly one socket of the group.
    case fanout
    /// Each input interface is read by exactly one worker; no fanout. For kernels or
    /// interfaces where fanout is unavailable.
    case partition
}

/// Keeps every live worker on the current plan. A plan change bumps the version and is
/// sent to every worker; a worker that has not acknowledged the current version is sent it
/// again after `resendInterval` (the channel may lose messages); a restarted worker is sent
/// the whole current plan, so it comes back with exactly the current rules.
public struct Dispatcher: Sendable {
    public let workerCount: Int
    public let mode: DispatchMode
    public let fanoutBase: UInt16
    public let resendInterval: Duration

    public private(set) var version: UInt64 = 0
    private(set) var alive: Set<WorkerID> = []
    private var acknowledged: [WorkerID: UInt64] = [:]
    private var lastSent: [WorkerID: Instant] = [:]
    /// Fanout ids must not change while sockets use them: each input interface keeps the
    /// ordinal it was first given.
    private var fanoutOrdinals: OrderedSet<InterfaceName> = []
    private var rules: [Rule] = []
    private var ingress: [InterfaceName] = []
    /// Partition mode: who reads each interface. Sticky — an interface moves only when its
    /// owner is dead, because handing it over from a live worker would let both read it
    /// (and forward its frames twice) until the old owner acknowledged the change.
    private var owners: [InterfaceName: WorkerID] = [:]
    /// The listener gates of follow outputs, delivered as deltas beside the plans and carried
    /// whole by every plan.
    public private(set) var gates: ListenerGates

    public init(workerCount: Int, mode: DispatchMode = .fanout, fanoutBase: UInt16 = 0x4D43,
                resendInterval: Duration = .milliseconds(250)) {
        precondition(workerCount > 0, "at least one worker")
        self.workerCount = workerCount
        self.mode = mode
        self.fanoutBase = fanoutBase
        self.resendInterval = resendInterval
        gates = ListenerGates(resendInterval: resendInterval)
    }

    public var workers: [WorkerID] { (0..<workerCount).map(WorkerID.init) }
    public var liveWorkers: [WorkerID] { alive.sorted() }

    /// Workers that are alive and have acknowledged the current version.
    public var currentWorkers: [WorkerID] { alive.filter { acknowledged[$0] == version }.sorted() }

    public var nextDeadline: Instant? {
        [planDeadline, gates.nextDeadline].compactMap { $0 }.min()
    }

    private var planDeadline: Instant? {
        alive.compactMap { worker -> Instant? in
            guard acknowledged[worker] != version, let sent = lastSent[worker] else { return nil }
            return sent + resendInterval
        }.min()
    }

    /// The plan a worker should be running now.
    public func plan(for worker: WorkerID) -> WorkerPlan {
        let assigned: [IngressAssignment]
        switch mode {
        case .fanout:
            assigned = ingress.map { IngressAssignment(interface: $0, fanoutGroup: fanoutGroup(for: $0)) }
        case .partition:
            assigned = ingress.filter { owners[$0] == worker }.map { IngressAssignment(interface: $0, fanoutGroup: nil) }
        }
        return WorkerPlan(worker: worker, version: version, ingress: assigned, rules: rules,
                          gateVersion: gates.version, gates: gates.entries)
    }

    public func fanoutGroup(for interface: InterfaceName) -> UInt16? {
        fanoutOrdinals.firstIndex(of: interface).map { fanoutBase &+ UInt16(truncatingIfNeeded: $0) }
    }

    // MARK: - Inputs

    /// New rules or a new set of readable input interfaces (sorted, up, used by some rule).
    public mutating func update(rules: [Rule], ingress: [InterfaceName], now: Instant, actions: inout Deque<ControlAction>) {
        guard rules != self.rules || ingress != self.ingress else { return }
        self.rules = rules
        self.ingress = ingress
        for interface in ingress { fanoutOrdinals.append(interface) }
        if mode == .partition { _ = assignOrphans() }
        publish(now: now, actions: &actions)
    }

    public mutating func workerStarted(_ worker: WorkerID, now: Instant, actions: inout Deque<ControlAction>) {
        guard worker.rawValue < workerCount else { return }
        alive.insert(worker)
        acknowledged[worker] = nil
        if mode == .partition, assignOrphans() {
            publish(now: now, actions: &actions)
        } else {
            send(to: worker, now: now, actions: &actions)
        }
        // After the plan, which already carries the table: the delta makes sure of it.
        gates.workerStarted(worker, now: now, actions: &actions)
    }

    /// New filters for some gates (listener changes): deltas, not plans.
    public mutating func setGates(_ changes: some Sequence<GateEntry>, now: Instant, actions: inout Deque<ControlAction>) {
        gates.set(changes, now: now, actions: &actions)
    }

    /// The whole gate table (after a rule change: the followed keys may differ).
    public mutating func replaceGates(_ wanted: [GateKey: GateFilter], now: Instant, actions: inout Deque<ControlAction>) {
        gates.replace(with: wanted, now: now, actions: &actions)
    }

    public mutating func gatesAcknowledged(_ worker: WorkerID, version: UInt64) {
        gates.acknowledged(worker, version: version)
    }

    public mutating func gatesBehind(_ worker: WorkerID, version: UInt64, now: Instant, actions: inout Deque<ControlAction>) {
        gates.behind(worker, version: version, now: now, actions: &actions)
    }

    public mutating func workerExited(_ worker: WorkerID, now: Instant, actions: inout Deque<ControlAction>) {
        guard alive.remove(worker) != nil else { return }
        acknowledged[worker] = nil
        lastSent[worker] = nil
        gates.workerExited(worker)
        actions.append(.report(.workerLost(worker)))
        if mode == .partition, assignOrphans() { publish(now: now, actions: &actions) }
    }

    public mutating func acknowledged(_ worker: WorkerID, version: UInt64, now: Instant, actions: inout Deque<ControlAction>) {
        guard alive.contains(worker), version <= self.version else { return }
        let previous = acknowledged[worker] ?? 0
        acknowledged[worker] = max(previous, version)
        if version == self.version, previous != version {
            actions.append(.report(.workerCurrent(worker, version: version)))
        }
    }

    public mutating func timerFired(now: Instant, actions: inout Deque<ControlAction>) {
        for worker in liveWorkers where acknowledged[worker] != version {
            if let sent = lastSent[worker], sent + resendInterval > now { continue }
            send(to: worker, now: now, actions: &actions)
        }
        gates.timerFired(now: now, actions: &actions)
    }

    /// Gives interfaces without a live owner to the live worker with the fewest; returns
    /// whether any ownership changed.
    private mutating func assignOrphans() -> Bool {
        var changed = false
        // An interface that leaves `ingress` (down, or no rule uses it) keeps its live owner:
        // that worker may not have applied the plan without it yet, so giving the interface
        // to another worker when it comes back would let both read it (found by sim fuzz
        // seed 52410: partition mode, interface down/up, a lost plan -> duplicates).
        for interface in owners.keys.sorted() where !ingress.contains(interface) && !alive.contains(owners[interface]!) {
            owners[interface] = nil
            changed = true
        }
        let live = liveWorkers
        guard !live.isEmpty else { return changed }
        for interface in ingress {
            if let owner = owners[interface], alive.contains(owner) { continue }
            var load: [WorkerID: Int] = [:]
            for owner in owners.values { load[owner, default: 0] += 1 }
            owners[interface] = live.min { (load[$0] ?? 0, $0) < (load[$1] ?? 0, $1) }
            changed = true
        }
        return changed
    }

    private mutating func publish(now: Instant, actions: inout Deque<ControlAction>) {
        version += 1
        for worker in liveWorkers { send(to: worker, now: now, actions: &actions) }
    }

    private mutating func send(to worker: WorkerID, now: Instant, actions: inout Deque<ControlAction>) {
        lastSent[worker] = now
        actions.append(.sendPlan(plan(for: worker)))
    }
}
