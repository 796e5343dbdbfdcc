import RelayCore

/// Keeps the exported counters monotonic across worker restarts.
///
/// A worker counts in its own memory; when it dies and is restarted, the new process starts
/// from zero and the plain sum over workers (what `mcrelay stats` shows) goes down. The ledger
/// remembers each worker's last answer per incarnation (process id): when an answer comes from
/// a new incarnation, the previous incarnation's last counters are retired into a per-worker
/// base that is added from then on. What is lost is only what the dead process counted after
/// its last answer (at most one refresh interval, 1 s). A worker that did not answer this
/// round (dead, or slow) contributes its last answer, so the sum never dips meanwhile.
///
/// Retired counters are kept only for rules that still exist unchanged (same id, same outputs),
/// so removed rules do not accumulate here forever.
public struct WorkerCounterLedger: Sendable {
    private var latest: [WorkerID: (pid: Int32, statistics: ForwardingStatistics)] = [:]
    private var retired: [WorkerID: ForwardingStatistics] = [:]

    public init() {}

    /// One worker's answer, from the process `pid`.
    public mutating func record(_ worker: WorkerID, pid: Int32, _ statistics: ForwardingStatistics, rules: [Rule]) {
        if let previous = latest[worker], previous.pid != pid {
            let base = retired[worker].map { [$0] } ?? []
            retired[worker] = Self.keeping(ForwardingStatistics.merged(base + [previous.statistics]), rules: rules)
        }
        latest[worker] = (pid, statistics)
    }

    /// Drops retired counters of rules that no longer exist (or changed their outputs).
    public mutating func prune(rules: [Rule]) {
        for worker in retired.keys { retired[worker] = Self.keeping(retired[worker]!, rules: rules) }
    }

    /// Per worker: retired incarnations plus the latest answer, in the shape `statsView` takes.
    public var totals: [WorkerID: ForwardingStatistics] {
        var result: [WorkerID: ForwardingStatistics] = [:]
        for worker in Set(latest.keys).union(retired.keys) {
            var parts: [ForwardingStatistics] = []
            // The latest answer first: if a rule changed shape, its current form wins the merge.
            if let current = latest[worker] { parts.append(current.statistics) }
            if let base = retired[worker] { parts.append(base) }
            result[worker] = ForwardingStatistics.merged(parts)
        }
        return result
    }

    static func keeping(_ statistics: ForwardingStatistics, rules: [Rule]) -> ForwardingStatistics {
        let current = Set(rules)
        var kept = statistics
        kept.rules = statistics.rules.filter { current.contains($0.rule) }
        return kept
    }
}
