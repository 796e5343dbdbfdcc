#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl
import RelayCore

/// `mcrelay daemon --metrics ADDRESS:PORT`: the supervisor's side of the Prometheus endpoint.
///
/// Refresh on a timer, serve the last snapshot: every `refreshInterval` (1 s) the supervisor
/// asks the workers for their counters exactly as `mcrelay stats` does, and a scrape is
/// answered at once from the registry. Chosen over "collect on each scrape" because
///   - a scrape never waits on the workers (or on a worker that is restarting, up to the 2 s
///     collection timeout), and its cost does not depend on how often or how many clients scrape;
///   - the worker load is fixed (one small message per worker per second) whoever connects;
///   - counters stay monotonic across a worker crash with at most 1 s of that worker's counts
///     lost (`WorkerCounterLedger`), where a 15 s scrape interval would lose up to 15 s.
/// The price is staleness of at most about one second, below any scrape interval in use.
final class MetricsEndpoint {
    let server: MetricsHTTPServer
    let metrics = RelayMetrics()
    var ledger = WorkerCounterLedger()
    /// Joins the kernel refused (each `joinFailed` report of the core).
    var joinFailures: UInt64 = 0
    var nextRefresh: Instant
    var collecting = false

    static let refreshInterval: Duration = .seconds(1)
    /// The version `mcrelay_build_info` reports.
    static let version = MCRelayVersion.current

    init(address: MetricsAddress, now: Instant) throws(SystemError) {
        server = try MetricsHTTPServer(address: address)
        nextRefresh = now
    }
}

extension Supervisor {
    func metricsPollEntries(now: Instant) -> [(fd: Int32, events: Int16, token: UInt64)] {
        metrics?.server.pollEntries(now: now) ?? []
    }

    func metricsReady(token: UInt64, revents: Int16, now: Instant) {
        guard let metrics else { return }
        metrics.server.handle(token: token, revents: revents, now: now) { metrics.metrics.exposition() }
    }

    var metricsDeadlines: [Instant] {
        guard let metrics else { return [] }
        var deadlines: [Instant] = []
        if let deadline = metrics.server.nextDeadline { deadlines.append(deadline) }
        if case .running = shutdown, !metrics.collecting { deadlines.append(metrics.nextRefresh) }
        return deadlines
    }

    /// Enforces the HTTP time limits and starts a refresh when one is due (never two at once).
    func metricsTick(now: Instant) {
        guard let metrics else { return }
        metrics.server.expire(now: now)
        guard case .running = shutdown, !metrics.collecting, metrics.nextRefresh <= now else { return }
        metrics.collecting = true
        metrics.nextRefresh = now + MetricsEndpoint.refreshInterval
        collectStatistics(for: .metrics, now: now)
    }

    func metricsCollected(_ collection: StatsCollection, now: Instant) {
        guard let metrics else { return }
        metrics.collecting = false
        // With the proxies' routes, whose downstream outputs count forwarded and suppressed datagrams.
        let rules = Array(core.rules.rules.values) + core.proxyRoutes
        for (worker, statistics) in collection.parts.sorted(by: { $0.key < $1.key }) {
            metrics.ledger.record(worker, pid: collection.pids[worker] ?? -1, statistics, rules: rules)
        }
        metrics.ledger.prune(rules: rules)
        let view = statsView(metrics.ledger.totals)
        let control = MetricsSnapshot.ControlState(
            ruleInputs: rules.map(\.input.interface), joined: core.membership.joined, outstanding: core.membership.outstanding,
            helperSockets: core.membership.socketUsage.map(\.socket), joinFailures: metrics.joinFailures,
            version: MetricsEndpoint.version,
            listeners: core.listeners.interfaceStatus, listenerRefusals: core.listeners.refusals)
        metrics.metrics.update(MetricsSnapshot(stats: view, control: control, httpResponses: metrics.server.responses))
    }

    func countJoinFailure(_ report: Report) {
        if case .joinFailed = report { metrics?.joinFailures += 1 }
    }
}
