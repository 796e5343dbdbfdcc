#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayCore

/// What the daemon tells systemd (`Type=notify`), and when:
///
/// - `READY=1` once the daemon forwards what its config asks for: the control socket listens
///   (it is bound before the loop starts), the first interface listing from rtnetlink has been
///   read (so the plan knows which input interfaces exist), and every worker has started and
///   acknowledged the current plan, i.e. has its AF_PACKET and egress sockets open for every
///   rule. The joins are made by the supervisor itself, synchronously, before a plan is sent.
///   A packet sent after READY=1 is forwarded. A join that fails (interface missing, limit) is
///   retried in the background and does not hold READY back; a worker that cannot start does:
///   systemd's start timeout then fails the unit.
/// - `RELOADING=1` with `MONOTONIC_USEC=` when SIGHUP arrives, then `READY=1` when the reloaded
///   rules are forwarding (the same condition), or after `reloadReadyTimeout` at the latest so
///   a crashing worker cannot leave the unit "reloading" forever (STATUS= then says so). A
///   config that does not load keeps the current rules and is ready at once.
/// - `STOPPING=1` on SIGTERM/SIGINT, before the groups are left.
/// - `STATUS=` with the rules, workers and joined groups, whenever that text changes.
/// - `WATCHDOG=1` every half `WATCHDOG_USEC` from the poll loop, when systemd asks for it.
///
/// The same moments are logged, so they are visible without systemd too.
final class ServiceState {
    enum Phase: Equatable { case starting, ready, reloading(since: Instant), stopping }

    var phase: Phase = .starting
    let notifier: ServiceNotifier?
    /// Why `$NOTIFY_SOCKET` could not be used; logged once by the loop.
    var setupProblem: SystemError?
    var lastStatus = ""
    var watchdogDue: Instant?

    static let reloadReadyTimeout: Duration = .seconds(10)

    init() {
        switch ServiceNotifier.fromEnvironment() {
        case nil: notifier = nil
        case let .success(notifier)?: self.notifier = notifier
        case let .failure(error)?:
            notifier = nil
            setupProblem = error
        }
        // The first ping goes out with the first loop turn.
        if notifier?.watchdogInterval != nil { watchdogDue = MonotonicClock.now() }
    }
}

extension Supervisor {
    /// Every worker runs the current plan, and the plan was made knowing the interfaces.
    var forwardingCurrentPlan: Bool {
        links.listedOnce && workers.allSatisfy { $0.ready && $0.acknowledgedVersion == core.dispatcher.version }
    }

    var serviceStatus: String {
        let running = workers.filter { $0.ready && $0.acknowledgedVersion == core.dispatcher.version }.count
        let rules = core.rules.count
        let groups = core.membership.joined.count
        return "Forwarding \(rules) rule\(rules == 1 ? "" : "s"); \(running) of \(workers.count) worker\(workers.count == 1 ? "" : "s") on the current plan; \(groups) group\(groups == 1 ? "" : "s") joined"
    }

    /// Called at the end of every loop turn: sends what became true since the last one.
    func updateService(now: Instant) {
        if let problem = service.setupProblem {
            logger.warning("cannot notify systemd: \(problem); running without readiness notification")
            service.setupProblem = nil
        }
        switch service.phase {
        case .starting:
            guard forwardingCurrentPlan else { break }
            announceReady("ready", now: now)
        case let .reloading(since):
            if forwardingCurrentPlan {
                announceReady("reload complete", now: now)
            } else if now >= since + ServiceState.reloadReadyTimeout {
                logger.warning("reload: not every worker runs the new rules after \(ServiceState.reloadReadyTimeout); reporting ready anyway")
                announceReady("reload incomplete", now: now)
            }
        case .ready:
            let status = serviceStatus
            if status != service.lastStatus {
                service.lastStatus = status
                notify(["STATUS=" + status])
            }
        case .stopping:
            break
        }
        if let due = service.watchdogDue, due <= now, let interval = service.notifier?.watchdogInterval {
            notify(["WATCHDOG=1"])
            service.watchdogDue = now + interval / 2
        }
    }

    private func announceReady(_ what: String, now: Instant) {
        service.phase = .ready
        let status = serviceStatus
        service.lastStatus = status
        logger.info("\(what): \(status) (plan v\(core.dispatcher.version))")
        notify(["READY=1", "STATUS=" + status])
    }

    /// SIGHUP: tell systemd a reload is under way, re-read the config; `updateService`
    /// says READY=1 again once the result is forwarding.
    func reloadOnSignal(now: Instant) {
        switch service.phase {
        case .ready, .reloading:
            notify(["RELOADING=1", "MONOTONIC_USEC=\(ServiceNotifier.monotonicMicroseconds())", "STATUS=Reloading the config"])
            reload(now: now, reason: "SIGHUP")
            service.phase = .reloading(since: now)
        case .starting, .stopping:
            // Still starting: the reloaded rules are simply what READY=1 will wait for.
            reload(now: now, reason: "SIGHUP")
        }
    }

    /// SIGTERM/SIGINT, before the orderly shutdown.
    func serviceStopping() {
        service.phase = .stopping
        notify(["STOPPING=1", "STATUS=Stopping: leaving the groups, collecting the final counters"])
    }

    private func notify(_ lines: [String]) {
        guard let notifier = service.notifier else { return }
        if let error = notifier.send(lines) {
            logger.warning("cannot notify systemd: \(error)")
        } else {
            logger.trace("notified systemd: \(lines.joined(separator: " "))")
        }
    }
}
