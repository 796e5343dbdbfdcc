import Collections

extension FilterMode: Codable {}

/// What a follow output is gated by: the listeners of one group on one interface.
public struct GateKey: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var interface: InterfaceName
    public var group: IPAddress

    public init(interface: InterfaceName, group: IPAddress) {
        self.interface = interface
        self.group = group
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        lhs.interface != rhs.interface ? lhs.interface < rhs.interface : lhs.group < rhs.group
    }

    public var description: String { "\(interface) \(group)" }
}

/// Which sources the listeners of a group want, as the listener state says (RFC 3376 6.2.1):
/// INCLUDE the listed ones, EXCLUDE all but the listed ones. No listener at all is INCLUDE {}.
/// Workers get the filter rather than an open/closed bit because the gate is decided against
/// the source address the frame will carry, which the worker knows (the egress interface's
/// address for the outputs mcrelay has today; an output that keeps the original source can
/// evaluate the same filter).
public struct GateFilter: Hashable, Sendable, Codable, CustomStringConvertible {
    public var mode: FilterMode
    /// Sorted, so equal filters compare equal and encode alike.
    public var sources: [IPAddress]

    public init(mode: FilterMode, sources: some Sequence<IPAddress>) {
        self.mode = mode
        self.sources = sources.sorted()
    }

    public static let closed = GateFilter(mode: .include, sources: [])
    public static let anySource = GateFilter(mode: .exclude, sources: [])

    public var isClosed: Bool { mode == .include && sources.isEmpty }

    /// Does a frame from `source` pass? nil (the worker does not know the address the frame
    /// will carry yet): passes when the listeners want the group from any source not excluded.
    public func admits(_ source: IPAddress?) -> Bool {
        guard let source else { return mode == .exclude }
        return mode == .include ? sources.contains(source) : !sources.contains(source)
    }

    public var description: String {
        isClosed ? "closed" : "\(mode) {\(sources.map(\.description).joined(separator: ", "))}"
    }
}

public struct GateEntry: Hashable, Sendable, Codable {
    public var key: GateKey
    public var filter: GateFilter

    public init(key: GateKey, filter: GateFilter) {
        self.key = key
        self.filter = filter
    }
}

/// A change to a worker's gate table: the entries that changed after `base`, with their
/// current filters, taking a worker at `base` or later to `version`. Applying it to a worker
/// already past `base` is harmless (every entry carries its current value), so a resend after
/// a lost acknowledgement needs no bookkeeping; a worker behind `base` must not apply it
/// (it would miss changes) and says so (`ControlEvent.workerGatesBehind`).
public struct GateDelta: Hashable, Sendable, Codable, CustomStringConvertible {
    public var worker: WorkerID
    public var base: UInt64
    public var version: UInt64
    public var entries: [GateEntry]

    public init(worker: WorkerID, base: UInt64, version: UInt64, entries: [GateEntry]) {
        self.worker = worker
        self.base = base
        self.version = version
        self.entries = entries
    }

    public var description: String { "gates v\(base)->v\(version) for \(worker) (\(entries.count) entries)" }
}

/// The gate table every worker should hold, and how far each worker has it: the incremental
/// path for listener changes, beside the Dispatcher's whole plans. A change bumps the version
/// and sends each live worker only the entries changed since the version it acknowledged; an
/// unacknowledged worker is sent its delta again after `resendInterval` (which repairs a lost
/// delta, since the resend covers everything since the acknowledged version); a started or
/// restarted worker counts as having nothing and is sent every open entry.
public struct ListenerGates: Sendable {
    public let resendInterval: Duration
    public private(set) var version: UInt64 = 0
    /// Open (non-closed) gates.
    public private(set) var table: [GateKey: GateFilter] = [:]
    /// The version at which each key last changed, closed keys included until every live worker
    /// has acknowledged their closing.
    private var changedAt: [GateKey: UInt64] = [:]
    private var alive: Set<WorkerID> = []
    private var acknowledged: [WorkerID: UInt64] = [:]
    private var lastSent: [WorkerID: Instant] = [:]

    public init(resendInterval: Duration = .milliseconds(250)) {
        self.resendInterval = resendInterval
    }

    public func filter(for key: GateKey) -> GateFilter { table[key] ?? .closed }

    /// The table in key order (what a full plan carries).
    public var entries: [GateEntry] { table.keys.sorted().map { GateEntry(key: $0, filter: table[$0]!) } }

    public func acknowledgedVersion(of worker: WorkerID) -> UInt64? { acknowledged[worker] }

    public var nextDeadline: Instant? {
        alive.compactMap { worker -> Instant? in
            guard acknowledged[worker] ?? 0 != version, let sent = lastSent[worker] else { return nil }
            return sent + resendInterval
        }.min()
    }

    /// Sets the filters of some keys; sends deltas when anything changed.
    public mutating func set(_ changes: some Sequence<GateEntry>, now: Instant, actions: inout Deque<ControlAction>) {
        var changed = false
        for change in changes where filter(for: change.key) != change.filter {
            if !changed { version += 1 }
            changed = true
            table[change.key] = change.filter.isClosed ? nil : change.filter
            changedAt[change.key] = version
        }
        guard changed else { return }
        for worker in alive.sorted() { send(to: worker, now: now, actions: &actions) }
    }

    /// Makes the table exactly `wanted` (closing every key not in it).
    public mutating func replace(with wanted: [GateKey: GateFilter], now: Instant, actions: inout Deque<ControlAction>) {
        let closing = table.keys.filter { wanted[$0] == nil }.map { GateEntry(key: $0, filter: .closed) }
        let setting = wanted.map { GateEntry(key: $0.key, filter: $0.value) }
        set((closing + setting).sorted { $0.key < $1.key }, now: now, actions: &actions)
    }

    public mutating func workerStarted(_ worker: WorkerID, now: Instant, actions: inout Deque<ControlAction>) {
        alive.insert(worker)
        acknowledged[worker] = 0
        if version > 0 { send(to: worker, now: now, actions: &actions) }
    }

    public mutating func workerExited(_ worker: WorkerID) {
        alive.remove(worker)
        acknowledged[worker] = nil
        lastSent[worker] = nil
        prune()
    }

    public mutating func acknowledged(_ worker: WorkerID, version: UInt64) {
        guard alive.contains(worker), version <= self.version else { return }
        acknowledged[worker] = max(acknowledged[worker] ?? 0, version)
        prune()
    }

    /// The worker refused a delta because it holds only `version` (it restarted, or a plan
    /// reset it): send it everything since then, now.
    public mutating func behind(_ worker: WorkerID, version: UInt64, now: Instant, actions: inout Deque<ControlAction>) {
        guard alive.contains(worker), version <= self.version else { return }
        acknowledged[worker] = version
        send(to: worker, now: now, actions: &actions)
    }

    public mutating func timerFired(now: Instant, actions: inout Deque<ControlAction>) {
        for worker in alive.sorted() where acknowledged[worker] ?? 0 != version {
            if let sent = lastSent[worker], sent + resendInterval > now { continue }
            send(to: worker, now: now, actions: &actions)
        }
    }

    /// The delta that takes `worker` from what it acknowledged to the current version.
    public func delta(for worker: WorkerID) -> GateDelta {
        let base = acknowledged[worker] ?? 0
        let keys = changedAt.filter { $0.value > base }.keys.sorted()
        return GateDelta(worker: worker, base: base, version: version,
                         entries: keys.map { GateEntry(key: $0, filter: filter(for: $0)) })
    }

    private mutating func send(to worker: WorkerID, now: Instant, actions: inout Deque<ControlAction>) {
        lastSent[worker] = now
        actions.append(.sendGates(delta(for: worker)))
    }

    /// Forgets closed keys every live worker has acknowledged: a worker that starts later gets
    /// base 0 and needs only the open ones.
    private mutating func prune() {
        let floor = alive.map { acknowledged[$0] ?? 0 }.min() ?? version
        for (key, at) in changedAt where at <= floor && table[key] == nil { changedAt[key] = nil }
    }
}
