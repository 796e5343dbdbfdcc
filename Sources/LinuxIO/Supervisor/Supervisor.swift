#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import Logging
import RelayControl
import RelayCore

/// The daemon's control side: one thread, one poll(2) loop over the control socket and its
/// clients, an rtnetlink socket (link events), a self-pipe for signals and one channel per
/// worker process. It owns the single `ControlPlane` and executes its actions: helper
/// sockets and joins here, plans sent to workers over their channels. Timers are the poll
/// timeout (the loop wakes at the earliest deadline of the core, a worker restart, a stats
/// collection or the shutdown). Nothing here runs per packet.
public final class Supervisor {
    let options: SupervisorOptions
    var logger: Logger
    var core: ControlPlane
    let helpers = HelperSocketPool()
    let listener: ControlListener
    let links: LinkMonitor
    let signalFD: Int32
    var workers: [WorkerHandle]
    var clients: [ControlConnection] = []
    var nextClientSerial: UInt64 = 1
    var coreTimer: Instant?
    var statsCollections: [StatsCollection] = []
    var nextStatsRequest: UInt64 = 1
    var shutdown: ShutdownState = .running
    var exitCode: Int32 = 0
    /// sd_notify state (Supervisor+Readiness.swift); reads and clears $NOTIFY_SOCKET.
    let service = ServiceState()
    /// `--metrics`: the Prometheus endpoint (Metrics/Supervisor+Metrics.swift).
    var metrics: MetricsEndpoint?
    /// The flight recorder, running or last stopped (Supervisor+Recorder.swift).
    var flightRecorder: FlightRecorder?
    /// The IGMP/MLD router's taps and interface facts (Supervisor+Listeners.swift).
    let listenerDriver = ListenerDriver()
    /// The config's `queriers` (applied at start and on reload).
    var querierSettings: [QuerierSetting] = []
    /// The config's `proxies` (applied at start and on reload).
    var proxySettings: [ProxyConfiguration] = []
    /// `--data-path xdp` (XDP/XDPDataPath.swift).
    var xdp: XDPDataPath?
    /// `--input-napi threaded`: the inputs' receive work in kernel threads (nil with --data-path xdp).
    var inputNAPI: InputNAPIThreads?

    static let maximumClients = 128

    /// A proxy routes datagrams with the sender's source address, which only frames the relay
    /// builds can carry: the kernel's UDP sockets (`--egress udp`) always write the egress
    /// interface's. Refused at start and on reload rather than forwarding with the wrong source.
    static func proxyEgressProblem(_ proxies: [ProxyConfiguration]) -> String? {
        guard !proxies.isEmpty,
              case .success(.udp) = EgressMode.fromEnvironment(getenv(EgressMode.environmentVariable).map { String(cString: $0) })
        else { return nil }
        return "\"proxies\" need packet egress: with --egress udp the kernel would replace the sender's address that "
            + "proxied datagrams keep (downstream SSM listeners filter on it); run with --egress packet (the default)"
    }

    public init(options: SupervisorOptions, logger: Logger) throws(SupervisorStartError) {
        self.options = options
        self.logger = logger
        guard options.workerCount >= 1 else { throw SupervisorStartError("--workers must be at least 1") }

        var specs: [RuleSpec] = []
        if let path = options.configPath {
            do {
                let config = try ConfigFile.load(path: path)
                specs = config.rules
                querierSettings = config.effectiveQueriers
                proxySettings = config.proxies
            } catch {
                throw SupervisorStartError(error.description)
            }
        }
        if let problem = Self.proxyEgressProblem(proxySettings) { throw SupervisorStartError(problem) }
        let limit = Self.kernelMembershipLimit()
        core = ControlPlane(configuration: .init(socketLimit: limit, socketLimitIPv6: Self.kernelIPv6MembershipLimit(),
                                                 workerCount: options.workerCount,
                                                 dispatchMode: options.dispatchMode))
        do {
            try core.replaceRules(specs, now: MonotonicClock.now())
            try core.replaceProxies(proxySettings, now: MonotonicClock.now())
        } catch {
            throw SupervisorStartError("\(options.configPath ?? "config"): \(error)")
        }
        workers = (0..<options.workerCount).map { WorkerHandle(id: WorkerID($0)) }

        do {
            signalFD = try SignalPipe.install()
        } catch { throw SupervisorStartError("cannot install signal handlers: \(error)") }
        do {
            listener = try ControlListener(path: options.controlPath)
        } catch { throw SupervisorStartError("control socket: \(error)") }
        do {
            try Self.checkPacketSockets()
        } catch {
            listener.close()
            throw error
        }
        do {
            links = try LinkMonitor()
        } catch {
            listener.close()
            throw SupervisorStartError("cannot watch network interfaces: \(error)")
        }
        if let object = options.xdpObject {
            do { xdp = try XDPDataPath(objectPath: object, mode: options.xdpMode) } catch {
                listener.close()
                links.close()
                throw error
            }
            logger.info("data path xdp (\(options.xdpMode) mode): loaded \(object)")
        }
        if let address = options.metricsAddress {
            do { metrics = try MetricsEndpoint(address: address, now: MonotonicClock.now()) } catch {
                listener.close()
                links.close()
                throw SupervisorStartError("--metrics \(address): \(error)")
            }
            logger.info("serving Prometheus metrics at http://\(address)/metrics")
        }
        if let directory = options.recordDirectory,
           case let .failure(error) = startRecording(directory: directory, limit: options.recordLimitBytes, now: MonotonicClock.now()) {
            listener.close()
            links.close()
            throw SupervisorStartError("--record: \(error.message)")
        }
        // Before --user drops root: the inputs of the config (the sysfs file is root's), and the
        // workers' right to run at --worker-nice.
        // First what an earlier daemon on this control socket changed and, killed, never restored.
        let journal = openInputNAPIJournal()
        if xdp == nil {
            let inputNAPI = InputNAPIThreads(setting: options.inputNAPI, workers: options.workerCount,
                                             threadNice: options.inputNAPINice, journal: journal)
            self.inputNAPI = inputNAPI
            logInputNAPI(inputNAPI.useAtStart(specs.map(\.input.interface)))
        } else {
            journal?.close()
        }
        if let problem = WorkerPriority.lowerForWorkers(to: options.workerNice) { logger.warning("\(problem)") }
        logger.info("listening on \(options.controlPath) (mode 0660); \(options.workerCount) worker(s), \(options.dispatchMode) dispatch; \(specs.count) rule(s) from config; membership limit \(limit) per helper socket")
    }

    /// Workers read with AF_PACKET, which needs CAP_NET_RAW: say so now, not as a worker
    /// problem after start.
    static func checkPacketSockets() throws(SupervisorStartError) {
        let fd = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            let code = errno
            let hint = code == EPERM || code == EACCES ? " (run as root or with CAP_NET_RAW)" : ""
            throw SupervisorStartError("cannot open AF_PACKET sockets for the workers: \(SystemError.message(for: code))\(hint)")
        }
        Descriptors.close(fd)
    }

    /// `net.ipv4.igmp_max_memberships` of this namespace (20 if unreadable). The core also
    /// learns the real limit from ENOBUFS; starting from the sysctl just avoids the first failure.
    static func kernelMembershipLimit() -> Int {
        guard let text = Descriptors.readSmallFile("/proc/sys/net/ipv4/igmp_max_memberships"),
              let value = Int(text.filter { !$0.isWhitespace }), value > 0
        else { return 20 }
        return value
    }

    /// IPv6 memberships per helper socket: derived from `net.core.optmem_max` of this namespace
    /// (`SocketLimits.ipv6(optmemMax:)`; the default if unreadable).
    static func kernelIPv6MembershipLimit() -> Int {
        guard let text = Descriptors.readSmallFile("/proc/sys/net/core/optmem_max"),
              let value = Int(text.filter { !$0.isWhitespace }), value > 0
        else { return SocketLimits.defaultIPv6 }
        return SocketLimits.ipv6(optmemMax: value)
    }

    /// Runs until SIGTERM/SIGINT and the orderly shutdown after it; returns the exit status.
    public func run() -> Int32 {
        let now = MonotonicClock.now()
        for worker in workers { start(worker, now: now) }
        apply(now: now)
        configureListeners(now: now)
        while true {
            if case .finished = shutdown { break }
            pollOnce()
        }
        metrics?.server.close()
        listenerDriver.closeAll()
        xdp?.close()
        return exitCode
    }

    // MARK: - The loop

    private enum Source { case signals, listener, links, worker(Int), client(Int), metrics(UInt64), tap(InterfaceName) }

    private func pollOnce() {
        var fds: [pollfd] = []
        var sources: [Source] = []
        func watch(_ fd: Int32, _ events: Int32, _ source: Source) {
            fds.append(pollfd(fd: fd, events: Int16(events), revents: 0))
            sources.append(source)
        }
        watch(signalFD, POLLIN, .signals)
        if case .running = shutdown { watch(listener.fd, POLLIN, .listener) }
        watch(links.fd, POLLIN, .links)
        for (index, worker) in workers.enumerated() where worker.channel >= 0 {
            watch(worker.channel, POLLIN | (worker.wantsWrite ? POLLOUT : 0), .worker(index))
        }
        for (index, client) in clients.enumerated() {
            let reading = !client.closing && !client.hasPendingLines
            watch(client.fd, (reading ? POLLIN : 0) | (client.wantsWrite ? POLLOUT : 0), .client(index))
        }
        for entry in metricsPollEntries(now: MonotonicClock.now()) { watch(entry.fd, Int32(entry.events), .metrics(entry.token)) }
        if case .running = shutdown {
            for tap in listenerDriver.pollable { watch(tap.fd, POLLIN, .tap(tap.interface)) }
        }

        let timeout = pollTimeout(now: MonotonicClock.now())
        let ready = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeout) }
        if ready < 0 && errno != EINTR {
            logger.critical("poll failed: \(SystemError.message(for: errno))")
            exitCode = 1
            shutdown = .finished
            return
        }
        let now = MonotonicClock.now()
        if ready > 0 {
            for (pollfd, source) in zip(fds, sources) where pollfd.revents != 0 {
                switch source {
                case .signals: handleSignals(now: now)
                case .listener: acceptClients()
                case .links: handleLinkEvents(now: now)
                case let .worker(index): workerReady(workers[index], revents: pollfd.revents, now: now)
                case let .client(index): clientReady(clients[index], revents: pollfd.revents, now: now)
                case let .metrics(token): metricsReady(token: token, revents: pollfd.revents, now: now)
                case let .tap(interface): listenerFramesReady(interface, now: now)
                }
            }
        }
        handleDeadlines(now: MonotonicClock.now())
        updateService(now: MonotonicClock.now())
        serveClients(now: MonotonicClock.now())
        clients.removeAll { client in
            guard client.finished else { return false }
            client.close()
            return true
        }
    }

    private func pollTimeout(now: Instant) -> Int32 {
        var deadlines: [Instant] = []
        if let coreTimer { deadlines.append(coreTimer) }
        for worker in workers {
            if let restart = worker.restartAt { deadlines.append(restart) }
            if worker.isRunning, !worker.ready, let spawned = worker.spawnedAt { deadlines.append(spawned + WorkerHandle.readyTimeout) }
        }
        deadlines.append(contentsOf: statsCollections.map(\.deadline))
        if let deadline = shutdown.deadline { deadlines.append(deadline) }
        if let watchdog = service.watchdogDue { deadlines.append(watchdog) }
        if case .running = shutdown, let refresh = listenerDriver.nextRefresh { deadlines.append(refresh) }
        deadlines.append(contentsOf: metricsDeadlines)
        if case .running = shutdown, let refresh = xdp?.nextRefresh { deadlines.append(refresh) }
        guard let earliest = deadlines.min() else { return -1 }
        let wait = earliest.duration(since: now)
        let (seconds, attoseconds) = wait.components
        // Round up, so the loop does not spin just before a deadline.
        return Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }

    private func handleDeadlines(now: Instant) {
        if let timer = coreTimer, timer <= now, case .running = shutdown {
            coreTimer = nil
            core.handle(.timerFired, now: now)
            apply(now: now)
        }
        for worker in workers {
            if let restart = worker.restartAt, restart <= now, case .running = shutdown {
                start(worker, now: now)
            }
            if worker.isRunning, !worker.ready, let spawned = worker.spawnedAt, spawned + WorkerHandle.readyTimeout <= now {
                logger.error("\(worker.id) (pid \(worker.pid ?? 0)) did not report ready within \(WorkerHandle.readyTimeout); killing it")
                worker.kill()
                worker.spawnedAt = now  // do not repeat the kill every loop while it dies
            }
        }
        if case .running = shutdown, let refresh = listenerDriver.nextRefresh, refresh <= now { refreshListeners(now: now) }
        if case .running = shutdown { refreshDataPath(now: now) }
        completeStatsCollections(now: now)
        metricsTick(now: now)
        advanceShutdown(now: now)
    }

    // MARK: - Signals and links

    private func handleSignals(now: Instant) {
        for signal in SignalPipe.drain() {
            switch signal {
            case SIGCHLD: reapWorkers(now: now)
            case SIGTERM, SIGINT:
                if case .running = shutdown {
                    logger.notice("\(signal == SIGTERM ? "SIGTERM" : "SIGINT"): shutting down")
                    beginShutdown(now: now)
                }
            case SIGHUP: reloadOnSignal(now: now)
            default: break
            }
        }
    }

    private func handleLinkEvents(now: Instant) {
        let changes = links.receive()
        guard case .running = shutdown else { return }  // the groups are left already
        for change in changes {
            switch change {
            case let .up(interface):
                logger.info("interface \(interface) is up")
                recordEvent("iface_up", now: now, [("iface", FlightRecorder.json(interface.rawValue))])
                core.handle(.interfaceUp(interface), now: now)
                if let inputNAPI { logInputNAPI(inputNAPI.interfaceUp(interface)) }
                // Workers retry what waits for it now (a re-created output's sockets, an input
                // that failed to open), not when their 500 ms / 1 s timers come round.
                for worker in workers where worker.ready { try? worker.send(.linkUp(interface)) }
            case let .down(interface):
                logger.info("interface \(interface) is down or gone")
                recordEvent("iface_down", now: now, [("iface", FlightRecorder.json(interface.rawValue))])
                core.handle(.interfaceDown(interface), now: now)
            }
            apply(now: now)
        }
        if !changes.isEmpty {
            refreshListeners(now: now)
            refreshDataPath(now: now, force: true)
        }
    }

    // MARK: - Executing the core's actions

    /// Executes every pending action. Joins are synchronous system calls, so their results go
    /// straight back into the core (which may queue more actions, executed in the same pass).
    func apply(now: Instant) {
        while let action = core.poll() {
            switch action {
            case let .openHelperSocket(id):
                do { try helpers.open(id) } catch { logger.error("\(error)") }
            case let .closeHelperSocket(id):
                helpers.close(id)
            case let .join(request):
                let outcome = helpers.join(request)
                if case let .failed(error) = outcome {
                    logger.debug("join \(request.membership) via \(request.socket) failed: \(error)")
                    recordJoinFailure(request.membership, error, now: now)
                }
                core.handle(.joinCompleted(request.ticket, outcome), now: now)
            case let .leave(request):
                helpers.leave(request)
            case let .sendPlan(plan):
                // debug lines the listener-churn benchmark counts (plans vs gate deltas sent)
                logger.debug("\(action)")
                sendPlan(plan)
            case let .sendGates(delta):
                logger.debug("\(action)")
                sendGates(delta)
            case let .setTimer(instant):
                coreTimer = instant
            case let .report(report):
                countJoinFailure(report)
                log(report)
            case let .listener(action):
                execute(action)
            }
        }
    }

    private func log(_ report: Report) {
        switch report {
        case .workerLost:
            if case .running = shutdown { logger.warning("\(report)") } else { logger.debug("\(report)") }
        case .joinFailed: logger.warning("\(report)")
        case .joinRecovered, .socketCapacityLearned: logger.notice("\(report)")
        case .workerCurrent: logger.debug("\(report)")
        }
    }
}
