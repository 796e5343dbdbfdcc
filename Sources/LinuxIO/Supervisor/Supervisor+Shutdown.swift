#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl
import RelayCore

/// SIGTERM/SIGINT: leave every group (no more traffic is asked for), collect the workers'
/// final counters, tell the workers to exit (killing any that do not within a few seconds),
/// close everything, print the final counters on stdout and exit 0.
enum ShutdownState {
    case running
    case collectingFinalStatistics
    case stoppingWorkers(deadline: Instant, final: StatsView)
    case finished

    var deadline: Instant? {
        if case let .stoppingWorkers(deadline, _) = self { return deadline }
        return nil
    }
}

extension Supervisor {
    static let workerStopTimeout: Duration = .seconds(3)

    func beginShutdown(now: Instant) {
        serviceStopping()
        stopRecording(reason: "daemon stopped", now: now)
        listener.close()
        // The XDP program stops forwarding with the joins (its counters stay readable).
        xdp?.close()
        let left = helpers.leaveAllAndClose()
        logger.info("left \(left) group membership(s), closed the helper sockets")
        shutdown = .collectingFinalStatistics
        collectStatistics(for: .final, now: now)
    }

    func finalStatisticsCollected(_ view: StatsView, now: Instant) {
        for worker in workers {
            worker.restartAt = nil
            guard worker.isRunning else { continue }
            if worker.ready { try? worker.send(.shutdown) } else { worker.kill(SIGTERM) }
        }
        shutdown = .stoppingWorkers(deadline: now + Self.workerStopTimeout, final: view)
        advanceShutdown(now: now)
    }

    func advanceShutdown(now: Instant) {
        guard case let .stoppingWorkers(deadline, final) = shutdown else { return }
        let running = workers.filter(\.isRunning)
        if !running.isEmpty {
            guard deadline <= now else { return }
            for worker in running {
                logger.warning("\(worker.id) (pid \(worker.pid ?? 0)) did not exit within \(Self.workerStopTimeout); killing it")
                worker.kill()
            }
            for worker in running {
                var status: Int32 = 0
                if let pid = worker.pid { _ = waitpid(pid, &status, 0) }
                worker.exited()
            }
        }
        for client in clients { client.close() }
        clients.removeAll()
        links.close()
        for line in inputNAPI?.restore() ?? [] { logger.info("\(line)") }
        print("mcrelay: final counters")
        print(final.text, terminator: "")
        fflush(nil)
        logger.notice("stopped")
        shutdown = .finished
    }
}
