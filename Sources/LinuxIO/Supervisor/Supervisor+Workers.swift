#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl
import RelayCore

extension Supervisor {
    func start(_ worker: WorkerHandle, now: Instant) {
        do {
            try worker.spawn(executable: options.workerExecutable, now: now)
            if worker.restarts > 0 || worker.consecutiveFailures > 0 {
                logger.notice("restarted \(worker.id) as pid \(worker.pid ?? 0)")
            } else {
                logger.info("started \(worker.id) as pid \(worker.pid ?? 0)")
            }
        } catch {
            logger.error("cannot start \(worker.id): \(error)")
            worker.scheduleRestart(now: now)
        }
    }

    func sendPlan(_ plan: WorkerPlan) {
        guard plan.worker.rawValue < workers.count else { return }
        // The XDP maps follow every plan, whether or not its worker is up to take it.
        if let xdp, case .running = shutdown {
            xdp.planSent(plan, now: MonotonicClock.now())
            for problem in xdp.takeProblems() { logger.warning("\(problem)") }
        }
        if case .running = shutdown { useInputs(plan.ingress.map(\.interface), by: plan.worker) }
        let worker = workers[plan.worker.rawValue]
        guard worker.ready else { return }
        do { try worker.send(.install(plan)) } catch {
            logger.error("cannot encode plan v\(plan.version) for \(worker.id): \(error)")
        }
    }

    /// `--input-napi threaded`: the receive work of the inputs a worker's plan reads in kernel
    /// threads (where not yet), and the setting back on inputs no worker reads any more.
    func useInputs(_ interfaces: [InterfaceName], by worker: WorkerID) {
        guard let inputNAPI else { return }
        logInputNAPI(inputNAPI.use(interfaces, by: worker))
    }

    func logInputNAPI(_ lines: [(notice: Bool, line: String)]) {
        for (notice, line) in lines {
            if notice { logger.notice("\(line)") } else { logger.info("\(line)") }
        }
        if let problem = inputNAPI?.journalProblem {
            logger.warning("input receive settings journal: \(problem) (a daemon killed now would leave them changed)")
            inputNAPI?.journalProblem = nil
        }
    }

    /// The journal of the inputs' receive settings (`InputNAPIJournal`, beside the control
    /// socket), after undoing what an earlier daemon left in it; nil (logged) if it cannot be
    /// opened: then a daemon killed later leaves its changes in place, as before the journal.
    func openInputNAPIJournal() -> InputNAPIJournalFile? {
        let path = InputNAPIJournalFile.path(forControl: options.controlPath)
        switch InputNAPIJournalFile.open(path: path) {
        case let .failure(error):
            logger.warning("input receive settings journal: \(error) (a daemon killed later would leave its changes in place)")
            return nil
        case let .success((file, leftover)):
            switch InputNAPIJournal.decode(leftover) {
            case let .success(journal):
                for line in InputNAPIThreads.undoLeftovers(journal) { logger.notice("\(line)") }
            case let .failure(problem):
                logger.warning("\(path): not a journal this daemon wrote (\(problem.message)): nothing undone from it; replaced")
            }
            return file
        }
    }

    func refreshDataPath(now: Instant, force: Bool = false) {
        guard let xdp else { return }
        xdp.refresh(now: now, force: force)
        for problem in xdp.takeProblems() { logger.warning("\(problem)") }
    }

    func sendGates(_ delta: GateDelta) {
        guard delta.worker.rawValue < workers.count else { return }
        let worker = workers[delta.worker.rawValue]
        guard worker.ready else { return }
        do { try worker.send(.gates(delta)) } catch {
            logger.error("cannot encode \(delta): \(error)")
        }
    }

    func workerReady(_ worker: WorkerHandle, revents: Int16, now: Instant) {
        if revents & Int16(POLLOUT) != 0, !worker.flush() {
            channelBroken(worker, "writing to \(worker.id) failed: \(SystemError.message(for: errno))")
            return
        }
        guard revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 else { return }
        switch worker.receive() {
        case let .messages(messages):
            for message in messages { handle(message, from: worker, now: now) }
        case let .broken(reason):
            channelBroken(worker, reason)
        }
    }

    private func handle(_ message: WorkerMessage, from worker: WorkerHandle, now: Instant) {
        switch message {
        case let .ready(id, pid):
            guard id == worker.id, !worker.ready else {
                channelBroken(worker, "\(worker.id) sent an unexpected ready(\(id), pid \(pid))")
                return
            }
            worker.ready = true
            logger.info("\(worker.id) ready (pid \(pid))")
            recordingWorkerReady(worker)  // before its first plan, so it records from its first frame
            core.handle(.workerStarted(worker.id), now: now)
            apply(now: now)
        case let .installed(version):
            worker.acknowledgedVersion = max(worker.acknowledgedVersion ?? 0, version)
            core.handle(.workerAcknowledged(worker.id, version: version), now: now)
            apply(now: now)
        case let .gates(version):
            core.handle(.workerGatesAcknowledged(worker.id, version: version), now: now)
            apply(now: now)
        case let .gatesBehind(version):
            core.handle(.workerGatesBehind(worker.id, version: version), now: now)
            apply(now: now)
        case let .statistics(requestID, statistics):
            deliverStatistics(requestID, from: worker.id, statistics, now: now)
        case let .problem(text):
            logger.warning("\(worker.id): \(text)")
        case let .recordStatus(status):
            recordingStatus(status, from: worker, now: now)
        }
    }

    /// The channel cannot be trusted any more: kill the worker; reaping it restarts it.
    func channelBroken(_ worker: WorkerHandle, _ reason: String) {
        if case .running = shutdown { logger.error("\(reason); killing \(worker.id)") }
        worker.closeChannel()
        worker.kill()
    }

    func reapWorkers(now: Instant) {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { break }
            guard let worker = workers.first(where: { $0.pid == pid }) else { continue }
            let wasReady = worker.ready
            worker.exited()
            if wasReady {
                if case .running = shutdown {
                    recordEvent("worker_crash", now: now, [("worker", String(worker.id.rawValue))])
                }
                core.handle(.workerExited(worker.id), now: now)
                apply(now: now)
            }
            dropFromStatsCollections(worker.id, now: now)
            if case .running = shutdown {
                logger.error("\(worker.id) (pid \(pid)) \(describeExit(status)); restarting it")
                worker.restarts += 1
                worker.scheduleRestart(now: now)
            } else {
                logger.info("\(worker.id) (pid \(pid)) \(describeExit(status))")
            }
        }
    }
}
