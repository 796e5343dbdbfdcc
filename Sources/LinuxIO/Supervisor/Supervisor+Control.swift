#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl
import RelayCore

/// A `stats` request waiting for the workers' counters.
struct StatsCollection {
    enum Purpose { case client(ControlConnection), final, metrics }
    let requestID: UInt64
    let purpose: Purpose
    var waiting: Set<WorkerID>
    var parts: [WorkerID: ForwardingStatistics] = [:]
    /// The process each part came from (the metrics ledger tells restarts apart by it).
    var pids: [WorkerID: Int32] = [:]
    let deadline: Instant

    static let timeout: Duration = .seconds(2)
}

extension Supervisor {
    func acceptClients() {
        while let fd = listener.accept() {
            let client = ControlConnection(fd: fd, serial: nextClientSerial)
            nextClientSerial += 1
            if clients.count >= Self.maximumClients {
                client.sendAndClose(.failure("too many control connections (\(Self.maximumClients)); try again"))
            }
            clients.append(client)
        }
    }

    func clientReady(_ client: ControlConnection, revents: Int16, now: Instant) {
        if revents & Int16(POLLOUT) != 0 { client.flush() }
        guard revents & Int16(POLLIN | POLLHUP | POLLERR) != 0, !client.closing else { return }
        switch client.receive() {
        case .ok: break
        case .closed: break
        case .tooLong:
            logger.warning("control client \(client.serial): request longer than \(ControlProtocol.maximumRequestSize) bytes; closing")
            client.sendAndClose(.failure("request longer than \(ControlProtocol.maximumRequestSize) bytes; closing the connection"))
        }
    }

    /// Handles queued request lines, one at a time per client, in order.
    func serveClients(now: Instant) {
        for client in clients {
            while !client.awaitingReply, let line = client.nextLine() {
                switch ControlProtocol.decodeRequest(line) {
                case let .failure(error):
                    client.send(.failure(error.message))
                case let .success(request):
                    handle(request, from: client, now: now)
                }
            }
        }
    }

    private func handle(_ request: ControlRequest, from client: ControlConnection, now: Instant) {
        guard case .running = shutdown else {
            client.send(.failure("the daemon is shutting down"))
            return
        }
        switch request.op {
        case .add:
            guard let text = request.rule else { return client.send(.failure("add needs \"rule\": {\"in\": ..., \"out\": [...]}")) }
            do {
                let spec = try text.spec()
                if let problem = QuerierSetting.followProblem(spec, queriers: querierSettings) {
                    return client.send(.failure(problem))
                }
                recordRules("rule_add", [spec], now: now)
                let outcome = try core.addRule(spec, now: now)
                apply(now: now)
                if case let .added(rule) = outcome { logger.notice("rule added: \(rule)") }
                client.send(ControlReply(ok: true, rule: RuleView(outcome.rule), added: outcome == .added(outcome.rule)))
            } catch let error as ControlProtocolError {
                client.send(.failure(error.message))
            } catch {
                client.send(.failure("\(error)"))
            }
        case .remove:
            guard let selector = request.selector, !selector.isEmpty else {
                return client.send(.failure("remove needs \"selector\": a rule id or name"))
            }
            recordEvent("rule_remove", now: now, [("rule", FlightRecorder.json(selector))])
            do {
                let rule = try core.removeRule(selector, now: now)
                apply(now: now)
                logger.notice("rule removed: \(rule)")
                client.send(ControlReply(ok: true, rule: RuleView(rule)))
            } catch {
                client.send(.failure(error.description))
            }
        case .list:
            let joined = Set(core.membership.joined)
            let views = core.rules.rules.values.map { rule in
                RuleView(rule, joined: joined.contains(MembershipKey(interface: rule.input.interface, group: rule.input.group))
                    || joined.contains(MembershipKey(interface: rule.input.interface, group: rule.input.group, source: rule.input.source)))
            }
            client.send(ControlReply(ok: true, rules: views))
        case .stats:
            client.awaitingReply = true
            collectStatistics(for: .client(client), now: now)
        case .reload:
            switch reloadConfig(now: now) {
            case let .success(view): client.send(ControlReply(ok: true, reload: view))
            case let .failure(error): client.send(.failure(error.message))
            }
        case .recordStart, .recordStop, .recordStatus:
            handleRecordRequest(request, from: client, now: now)
        case .listeners:
            var reply = ControlReply(ok: true)
            reply.listeners = listenersView(now: now)
            client.send(reply)
        }
    }

    // MARK: - Config reload (SIGHUP or the `reload` request)

    func reload(now: Instant, reason: String) {
        switch reloadConfig(now: now) {
        case let .success(view):
            logger.notice("\(reason): config reloaded: \(view.added) added, \(view.removed) removed, \(view.unchanged) unchanged")
        case let .failure(error):
            logger.error("\(reason): \(error.message); keeping the current rules")
        }
    }

    private func reloadConfig(now: Instant) -> Result<ReloadView, ControlProtocolError> {
        guard let path = options.configPath else {
            return .failure(ControlProtocolError("the daemon was started without --config; nothing to reload"))
        }
        do {
            let config = try ConfigFile.load(path: path)
            recordRules("config_reload", config.rules, now: now)
            if let problem = Self.proxyEgressProblem(config.proxies) { return .failure(ControlProtocolError(problem)) }
            let diff = try core.replaceRules(config.rules, proxies: config.proxies, now: now)
            proxySettings = config.proxies
            apply(now: now)
            if config.effectiveQueriers != querierSettings {
                querierSettings = config.effectiveQueriers
                configureListeners(now: now)
            }
            return .success(ReloadView(added: diff.added.count, removed: diff.removed.count, unchanged: diff.unchanged.count))
        } catch let error as ConfigError {
            return .failure(ControlProtocolError(error.description))
        } catch {
            return .failure(ControlProtocolError("\(path): \(error)"))
        }
    }

    // MARK: - Statistics

    func collectStatistics(for purpose: StatsCollection.Purpose, now: Instant) {
        let requestID = nextStatsRequest
        nextStatsRequest += 1
        var waiting = Set<WorkerID>()
        for worker in workers where worker.ready {
            do {
                try worker.send(.statisticsRequest(requestID: requestID))
                waiting.insert(worker.id)
            } catch {
                logger.error("cannot ask \(worker.id) for statistics: \(error)")
            }
        }
        statsCollections.append(StatsCollection(requestID: requestID, purpose: purpose, waiting: waiting,
                                                deadline: now + StatsCollection.timeout))
        completeStatsCollections(now: now)
    }

    func deliverStatistics(_ requestID: UInt64, from worker: WorkerID, _ statistics: ForwardingStatistics, now: Instant) {
        guard let index = statsCollections.firstIndex(where: { $0.requestID == requestID }),
              statsCollections[index].waiting.remove(worker) != nil
        else { return }
        statsCollections[index].parts[worker] = statistics
        statsCollections[index].pids[worker] = workers.first { $0.id == worker }?.pid
        completeStatsCollections(now: now)
    }

    func dropFromStatsCollections(_ worker: WorkerID, now: Instant) {
        for index in statsCollections.indices { statsCollections[index].waiting.remove(worker) }
        completeStatsCollections(now: now)
    }

    /// Answers every collection that has all its parts or ran out of time.
    func completeStatsCollections(now: Instant) {
        var remaining: [StatsCollection] = []
        for collection in statsCollections {
            guard collection.waiting.isEmpty || collection.deadline <= now else {
                remaining.append(collection)
                continue
            }
            switch collection.purpose {
            case let .client(client):
                client.awaitingReply = false
                client.send(ControlReply(ok: true, stats: statsView(collection.parts)))
            case .final:
                finalStatisticsCollected(statsView(collection.parts), now: now)
            case .metrics:
                // Its own view, through the restart ledger (Metrics/Supervisor+Metrics.swift).
                metricsCollected(collection, now: now)
            }
        }
        statsCollections = remaining
    }

    /// Counters for the current rules (zero for a rule no worker has counted yet), plus the
    /// supervisor's own view: workers, joins, helper sockets.
    func statsView(_ parts: [WorkerID: ForwardingStatistics]) -> StatsView {
        // What the XDP program forwarded never reached a worker: its counters are one more part.
        let merged = ForwardingStatistics.merged(parts.keys.sorted().map { parts[$0]! } + (xdp.map { [$0.statistics()] } ?? []))
        var byID: [RuleID: RuleStatistics] = [:]
        for stats in merged.rules { byID[stats.rule.id] = stats }
        let egress = Dictionary(uniqueKeysWithValues: (merged.egress ?? []).map { ($0.interface, EgressView($0)) })
        // The proxies' routes too: their outputs are the downstreams (forwarded, suppressed).
        let current = Array(core.rules.rules.values) + core.proxyRoutes
        let rules = current.map { rule -> RuleStatsView in
            var view = byID[rule.id].flatMap { $0.rule == rule ? RuleStatsView($0) : nil } ?? RuleStatsView(unused: rule)
            // Each output's path, from its interface's decision (outputs line up with rule.outputs).
            let byXDP = xdp?.carries(rule.id) ?? false
            for (index, output) in rule.outputs.enumerated() {
                view.outputs[index].path = byXDP ? "xdp (the XDP program's devmap egress)"
                    : egress[output.interface]?.path(multicast: output.destination.isMulticast, family: output.family)
            }
            return view
        }
        let workerViews = workers.map { worker in
            WorkerView(id: worker.id.rawValue, pid: worker.pid, alive: worker.ready, planVersion: worker.acknowledgedVersion,
                       restarts: worker.restarts, answered: parts[worker.id] != nil)
        }
        // Once shutting down, every group has been left and the helper sockets closed.
        var running = false
        if case .running = shutdown { running = true }
        var view = StatsView(
            rules: rules, drops: merged.drops, workers: workerViews, planVersion: core.dispatcher.version,
            joined: running ? core.membership.joined.map(\.description) : [],
            outstanding: running ? core.membership.outstanding.map(\.description) : [],
            helperSockets: running ? core.membership.socketUsage.map {
                HelperSocketView(socket: $0.socket.description, groups: $0.groups, capacity: $0.capacity)
            } : [],
            interfacesUp: links.usable)
        view.ingressQueueDrops = merged.ingressQueueDrops
        view.egress = (merged.egress ?? []).map(EgressView.init)
        view.recording = recordingView
        view.dataPath = xdp?.view()
        view.inputDevices = InputDeviceCounters.read(Set(current.map(\.input.interface.description)).sorted())
        return view
    }
}
