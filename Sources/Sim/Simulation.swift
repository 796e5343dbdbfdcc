import Collections
import Foundation
import RelayCore

/// The result of one run.
public struct SimResult: Sendable {
    public var report: SimReport
    public var violations: [Violation]
    /// One entry per simulation step when `recordSteps` is on: a hash chain over what ran.
    public var steps: [StepRecord]
    /// State sizes sampled every `SimOptions.sampleInterval` (soak runs only), then once at the end.
    public var samples: [StateSizes] = []
    public var passed: Bool { violations.isEmpty }
}

public struct StepRecord: Sendable, Equatable {
    public var time: UInt64
    public var kind: String
    public var argument: Int
    public var digest: UInt64
}

/// The discrete-event simulator: the supervisor is one `ControlPlane`, each worker one
/// `Forwarder`, and everything between them and the wire — helper sockets, IGMP, AF_PACKET
/// delivery and fanout, send queues, the supervisor/worker channel — is the kernel model.
/// Events run in (time, sequence) order; the trace is merged in without going through the heap.
public final class Simulation {
    enum Event {
        case arrival(frame: Int32, arrival: Int32)
        case script(Int)
        case timer(UInt64)
        case joinDone(JoinTicket, JoinOutcome)
        case planDelivered(Int)
        case ackDelivered(worker: Int, incarnation: Int, version: UInt64)
        case gatesDelivered(Int)
        case gateAckDelivered(worker: Int, incarnation: Int, outcome: Forwarder.GateOutcome)
        case workerCrash(Int, fault: Bool)
        case workerExitNoticed(Int)
        case workerRestart(Int)
        case flapDown(Int, duration: UInt64)
        case flapUp(Int)
        case livenessStart
        case livenessCheck
        case livenessFinish
        /// Soak runs: record the sizes of the core's and the simulator's state.
        case sample
        /// LAN segments (Simulation+Segments.swift): a host's or router's timer, one copy of
        /// an IGMP/MLD frame reaching one station, the deadline for the relay to take over
        /// as querier.
        case hostWake(Int, generation: UInt64)
        case routerWake(Int, generation: UInt64)
        case segmentDelivery(frame: Int, receiver: Segments.Station)
        case takeoverCheck(interface: Int, family: AddressFamily, heardAt: UInt64)
    }

    struct Worker {
        var alive = true
        var incarnation = 0
        /// The plan decisions the worker process takes too (`WorkerCore`), and its Forwarder.
        var core: WorkerCore
        var forwarder: Forwarder {
            get { core.forwarder }
            _modify { yield &core.forwarder }
        }
        var version: UInt64 { core.version }
        /// The operator's rule set the installed plan was made from (empty before any plan):
        /// what this worker may forward is judged against it.
        var epoch = Oracle.Epoch(rules: [])
        var slotOf: [Int]
        var egressInterface: [Int] = []
        var routeRef: [Int] = []
        var delivered: UInt64 = 0
        var routeTally: [UInt64] = []
        var dropTally = [UInt64](repeating: 0, count: DropReason.allCases.count)
        var sendFailTally: [UInt64] = []
        var baseline = ForwardingStatistics()
        var channelFree: UInt64 = 0
        var ackChannelFree: UInt64 = 0
        var restartPending = false

        init(id: Int, interfaces: Int) {
            core = WorkerCore(worker: WorkerID(id))
            slotOf = Array(repeating: -1, count: interfaces)
        }
    }

    /// One-way latency of the supervisor/worker channel. The channel is a SOCK_STREAM
    /// socketpair (unix(7)): bytes arrive in order or not at all, so the model keeps messages
    /// in order, delays hold back the ones behind them, and a lost message (a fault, or the
    /// worker's end closing when it dies) is simply never delivered.
    static let channelLatency: UInt64 = 50_000
    /// setsockopt(IP_ADD_MEMBERSHIP) is synchronous; its result reaches the core on the
    /// driver's next loop turn.
    static let joinLatency: UInt64 = 10_000
    /// A dead worker is noticed through SIGCHLD / EOF on its socketpair: about a millisecond.
    static let exitNoticeDelay: UInt64 = 1_000_000
    static let livenessCheckInterval: UInt64 = 10_000_000

    // The simulation is single-threaded and never holds two accesses to one property at
    // once, so dynamic exclusivity checks (about a tenth of the per-packet time) are off.
    let options: SimOptions
    let faultSpec: FaultSpec
    let interfaces: InterfaceTable
    /// The loaded window's scripted events (the whole run's, outside soaks).
    var events: [ScriptedEvent]
    var arena: Arena
    @exclusivity(unchecked) var frameOffset: [Int] = []
    @exclusivity(unchecked) var frameLength: [Int] = []
    @exclusivity(unchecked) var frameInterface: [Int] = []
    @exclusivity(unchecked) var frameLink: [LinkType] = []
    @exclusivity(unchecked) var facts: [FrameFacts] = []
    /// Arrival time of each trace frame of the loaded window, from `traceStart`.
    @exclusivity(unchecked) var arrivalTime: [UInt64] = []
    /// The loaded window's trace frames are frames traceStart..<traceEnd; the next to arrive
    /// is `cursor`, as arrival `cursor + traceArrivalDelta` (outside soaks: all of the trace,
    /// arrival = frame).
    @exclusivity(unchecked) var traceStart = 0
    @exclusivity(unchecked) var traceEnd: Int
    @exclusivity(unchecked) var cursor = 0
    @exclusivity(unchecked) var traceArrivalDelta = 0
    let epochBase: UInt64

    @exclusivity(unchecked) var queue = EventQueue<Event>()
    @exclusivity(unchecked) var now: UInt64 = 0
    @exclusivity(unchecked) var control: ControlPlane
    @exclusivity(unchecked) var kernel: KernelModel
    @exclusivity(unchecked) var packetSockets: PacketSockets
    @exclusivity(unchecked) var workers: [Worker] = []
    @exclusivity(unchecked) var injector: FaultInjector
    @exclusivity(unchecked) var oracle: Oracle
    @exclusivity(unchecked) var listenerOracle: ListenerOracle
    @exclusivity(unchecked) var segments: Segments
    let egress: EgressRecorder
    @exclusivity(unchecked) var registryOutputs: [(interface: Int, destination: IPAddress, port: UInt16, ttl: UInt8)] = []
    @exclusivity(unchecked) var registryOutputCounts: [Int] = []
    /// Per registry output: whether it follows listeners (judged by `listenerOracle`).
    @exclusivity(unchecked) var registryFollows: [Bool] = []
    /// The newest gate version the core sent (plans and deltas): what converged workers hold.
    @exclusivity(unchecked) var latestGateVersion: UInt64 = 0

    @exclusivity(unchecked) var timerGeneration: UInt64 = 0
    @exclusivity(unchecked) var pendingPlans: [Int: (worker: Int, incarnation: Int, plan: WorkerPlan)] = [:]
    @exclusivity(unchecked) var pendingGates: [Int: (worker: Int, incarnation: Int, delta: GateDelta)] = [:]
    @exclusivity(unchecked) var nextMessage = 0
    /// The rule set each plan version was made from, while a plan of that version can still be
    /// installed: the latest version (the core may send it again) and versions in flight.
    @exclusivity(unchecked) var versionEpoch: [UInt64: Oracle.Epoch] = [:]
    @exclusivity(unchecked) var latestPlanVersion: UInt64 = 0
    @exclusivity(unchecked) var adminDown: [Bool]
    @exclusivity(unchecked) var faultDown: [Int]

    // Per arrival: the rule (registry index) and outputs (bit mask) already transmitted.
    @exclusivity(unchecked) var arrivalRule: [Int32] = []
    @exclusivity(unchecked) var arrivalMask: [UInt64] = []
    @exclusivity(unchecked) var arrivalOverflow: Set<DuplicateKey> = []

    // Report tallies, by registry rule / registry output.
    @exclusivity(unchecked) var matchedByRule: [UInt64] = []
    @exclusivity(unchecked) var acceptedByRule: [UInt64] = []
    @exclusivity(unchecked) var expectedByOutput: [UInt64] = []
    @exclusivity(unchecked) var handedByOutput: [UInt64] = []
    @exclusivity(unchecked) var transmittedByOutput: [UInt64] = []
    @exclusivity(unchecked) var sendErrorsByOutput: [UInt64] = []
    @exclusivity(unchecked) var drops = [UInt64](repeating: 0, count: DropReason.allCases.count)
    @exclusivity(unchecked) var ingress = SimReport.Ingress()
    @exclusivity(unchecked) var controlStats = SimReport.Control()
    @exclusivity(unchecked) var faultCounts = FaultCounts()

    @exclusivity(unchecked) var violations: [Violation] = []
    @exclusivity(unchecked) var invariantChecks: [String: UInt64] = [:]
    @exclusivity(unchecked) var forwardChecks: UInt64 = 0
    @exclusivity(unchecked) var sendChecks: UInt64 = 0
    @exclusivity(unchecked) var invariantViolations: [String: UInt64] = [:]
    @exclusivity(unchecked) var reportedSockets: Set<HelperSocketID> = []

    @exclusivity(unchecked) var steps: [StepRecord] = []
    @exclusivity(unchecked) var stepDigest = FNV64()
    @exclusivity(unchecked) var stepCount: UInt64 = 0

    // Liveness.
    @exclusivity(unchecked) var trafficEnd: UInt64 = 0
    @exclusivity(unchecked) var livenessStarted: UInt64?
    @exclusivity(unchecked) var livenessDeadline: UInt64 = .max
    @exclusivity(unchecked) var convergedAt: UInt64?
    @exclusivity(unchecked) var probes: [(arrival: Int, rule: Int)] = []
    /// Arrivals from here on are liveness probes: checked like traffic, but kept out of the
    /// egress captures and the per-rule counts, which describe the user's traffic only.
    @exclusivity(unchecked) var firstProbeArrival = Int.max
    @exclusivity(unchecked) var probeAccepted: [Int: UInt64] = [:]
    @exclusivity(unchecked) var livenessDetail: String?
    @exclusivity(unchecked) var finished = false
    /// Soak (`options.continuous`): the loaded window's settle is over.
    @exclusivity(unchecked) var windowDone = false
    @exclusivity(unchecked) var windowIndex = 0
    @exclusivity(unchecked) var samples: [StateSizes] = []
    /// `join_fail` events (recordings): failures waiting for the relay's next join of their membership.
    @exclusivity(unchecked) var scriptedJoinFailures: [MembershipKey: [(at: UInt64, error: JoinError)]] = [:]

    public init(input: SimInput, options: SimOptions, outputDirectory: String? = nil) throws(SimError) {
        guard options.workers >= 1, options.workers <= 64 else { throw SimError.usage("--workers must be 1-64") }
        guard options.coreSocketLimit >= 1, options.kernelMembershipLimit >= 1 else {
            throw SimError.usage("socket limits must be positive")
        }
        self.options = options
        faultSpec = options.effectiveFaults
        interfaces = input.interfaces
        events = input.events
        arena = Arena(input.store.arena)
        let traceFrameCount = input.store.frames.count
        traceEnd = traceFrameCount
        epochBase = input.store.epoch >= options.warmup ? input.store.epoch - options.warmup : 0
        control = ControlPlane(configuration: .init(
            socketLimit: options.coreSocketLimit, socketLimitIPv6: options.coreSocketLimitIPv6,
            workerCount: options.workers, dispatchMode: options.dispatch))
        kernel = KernelModel(interfaces: interfaces, membershipLimit: options.kernelMembershipLimit,
                             membershipLimitIPv6: options.kernelMembershipLimitIPv6)
        packetSockets = PacketSockets(interfaceCount: interfaces.count)
        injector = FaultInjector(spec: faultSpec, schedule: options.schedule, seed: options.seed)
        oracle = Oracle(interfaces: interfaces)
        listenerOracle = ListenerOracle(interfaceCount: interfaces.count, faults: faultSpec, channelLatency: Self.channelLatency)
        segments = Segments(interfaceCount: interfaces.count, seed: options.seed)
        adminDown = Array(repeating: false, count: interfaces.count)
        faultDown = Array(repeating: 0, count: interfaces.count)

        var egressNames = Set<Int>()
        for rule in input.rules { for o in rule.outputs { egressNames.insert(interfaces.index(of: o.interface)!) } }
        for event in input.events {
            switch event.kind {
            case let .ruleAdd(spec): for o in spec.outputs { egressNames.insert(interfaces.index(of: o.interface)!) }
            case let .configReload(specs):
                for spec in specs { for o in spec.outputs { egressNames.insert(interfaces.index(of: o.interface)!) } }
            default: break
            }
        }
        egress = try EgressRecorder(interfaces: interfaces, directory: outputDirectory, egress: egressNames,
                                     facts: options.interfaceFacts, mode: options.egressMode)

        frameOffset.reserveCapacity(traceFrameCount)
        frameLength.reserveCapacity(traceFrameCount)
        frameInterface.reserveCapacity(traceFrameCount)
        frameLink.reserveCapacity(traceFrameCount)
        facts.reserveCapacity(traceFrameCount)
        arrivalTime.reserveCapacity(traceFrameCount)
        appendTraceFrames(input.store, arenaBase: 0, start: options.warmup)
        workers = (0..<options.workers).map { Worker(id: $0, interfaces: interfaces.count) }

        // Scripted events, timed faults, and the start of the liveness phase.
        var end = arrivalTime.last ?? options.warmup
        for (index, event) in events.enumerated() {
            let at = options.warmup + event.at
            end = max(end, at)
            queue.push(.script(index), at: at)
            if case let .joinFail(key, error) = event.kind { scriptedJoinFailures[key, default: []].append((at, error)) }
        }
        trafficEnd = end + 10_000_000
        scheduleTimedFaults(from: options.warmup)
        scheduleListedFaults()
        queue.push(.livenessStart, at: trafficEnd)
        // Only soak runs sample; other runs push nothing, so their event order is unchanged.
        if options.sampleInterval > 0 { queue.push(.sample, at: options.warmup + options.sampleInterval) }

        // Boot: interfaces up, workers started, the config's rules.
        for name in interfaces.names { control.handle(.interfaceUp(name), now: Instant(nanoseconds: 0)) }
        for worker in 0..<options.workers { control.handle(.workerStarted(WorkerID(worker)), now: .zero) }
        startListeners(input.queriers)
        do { try control.replaceRules(input.rules, now: .zero) } catch {
            throw SimError.input("config: the relay refuses the rules: \(error)")
        }
        oracle.setRules(input.rules)
        syncRegistry()
        executeActions()
    }

    /// Random flaps and crashes from `start` to the end of traffic (a soak draws each window's
    /// from its own stream; the first window's are those of a plain run).
    func scheduleTimedFaults(from start: UInt64) {
        var rng = windowIndex == 0 ? SimRandom.stream(seed: options.seed, label: "timed")
            : SimRandom.stream(seed: options.seed &+ UInt64(windowIndex), label: "timed-window")
        let span = Double(trafficEnd - start) / 1e9
        if faultSpec.flapsPerSecond > 0, interfaces.count > 0 {
            var t = 0.0
            while true {
                t += -log(max(rng.unit(), 1e-12)) / faultSpec.flapsPerSecond
                guard t < span else { break }
                let interface = rng.below(interfaces.count)
                let duration = UInt64(1_000_000 + rng.below(500_000_000))
                queue.push(.flapDown(interface, duration: duration), at: start + UInt64(t * 1e9))
            }
        }
        if faultSpec.crashesPerSecond > 0 {
            var t = 0.0
            while true {
                t += -log(max(rng.unit(), 1e-12)) / faultSpec.crashesPerSecond
                guard t < span else { break }
                queue.push(.workerCrash(rng.below(options.workers), fault: true), at: start + UInt64(t * 1e9))
            }
        }
    }

    func scheduleListedFaults() {
        for fault in options.schedule {
            switch fault {
            case let .flap(interface, atMs, forMs) where interfaces.count > 0:
                queue.push(.flapDown(abs(interface) % interfaces.count, duration: UInt64(max(1, forMs)) * 1_000_000),
                           at: options.warmup + UInt64(max(0, atMs)) * 1_000_000)
            case let .crash(worker, atMs):
                queue.push(.workerCrash(abs(worker) % options.workers, fault: true),
                           at: options.warmup + UInt64(max(0, atMs)) * 1_000_000)
            default: break
            }
        }
    }

    // MARK: - Running

    public func run() throws(SimError) -> SimResult {
        try advance()
        for worker in workers.indices where workers[worker].alive { checkpoint(worker) }
        try egress.close()
        if options.sampleInterval > 0 { samples.append(stateSizes()) }
        return SimResult(report: makeReport(), violations: violations, steps: steps, samples: samples)
    }

    /// Runs events and trace frames in time order until the run finishes (in a soak: until
    /// the loaded window's settle is over), or stops at a violation when asked to.
    func advance() throws(SimError) {
        while !finished && !windowDone {
            let frameTime = cursor < traceEnd ? arrivalTime[cursor - traceStart] : UInt64.max
            if let eventTime = queue.peekTime, eventTime <= frameTime {
                let entry = queue.pop()!
                now = entry.time
                try handle(entry.payload)
            } else if cursor < traceEnd {
                now = frameTime
                try ingressArrival(frame: cursor, arrival: cursor + traceArrivalDelta, faulted: false)
                cursor += 1
            } else {
                break
            }
            if options.stopAtFirstViolation, !violations.isEmpty { break }
            if let target = options.stopAtInvariant, invariantViolations[target] != nil { break }
        }
    }

    @inline(__always)
    func step(_ kind: String, _ argument: Int) {
        stepCount &+= 1
        if options.verbose, kind != "frame" { print("\(instant) \(kind) \(argument)") }
        guard options.recordSteps else { return }
        stepDigest.add(now)
        stepDigest.add(UInt64(bitPattern: Int64(argument)))
        for byte in kind.utf8 { stepDigest.add(byte) }
        for port in egress.ports { stepDigest.add(port.hash.value) }
        steps.append(StepRecord(time: now, kind: kind, argument: argument, digest: stepDigest.value))
    }

    func handle(_ event: Event) throws(SimError) {
        switch event {
        case let .arrival(frame, arrival):
            try ingressArrival(frame: Int(frame), arrival: Int(arrival), faulted: true)
        case let .script(index):
            step("script", index)
            runScripted(events[index])
        case let .timer(generation):
            guard generation == timerGeneration else { return }
            step("timer", 0)
            control.handle(.timerFired, now: instant)
            executeActions()
        case let .joinDone(ticket, outcome):
            step("join_done", Int(ticket.rawValue))
            control.handle(.joinCompleted(ticket, outcome), now: instant)
            executeActions()
        case let .planDelivered(message):
            step("plan", message)
            guard let delivery = pendingPlans.removeValue(forKey: message) else { return }
            guard workers[delivery.worker].alive, workers[delivery.worker].incarnation == delivery.incarnation else { return }
            install(delivery.plan, on: delivery.worker)
        case let .ackDelivered(worker, incarnation, version):
            step("ack", worker)
            guard workers[worker].alive, workers[worker].incarnation == incarnation else { return }
            control.handle(.workerAcknowledged(WorkerID(worker), version: version), now: instant)
            executeActions()
        case let .gatesDelivered(message):
            step("gates", message)
            guard let delivery = pendingGates.removeValue(forKey: message) else { return }
            guard workers[delivery.worker].alive, workers[delivery.worker].incarnation == delivery.incarnation else { return }
            applyGates(delivery.delta, on: delivery.worker)
        case let .gateAckDelivered(worker, incarnation, outcome):
            step("gate_ack", worker)
            guard workers[worker].alive, workers[worker].incarnation == incarnation else { return }
            switch outcome {
            case let .current(version): control.handle(.workerGatesAcknowledged(WorkerID(worker), version: version), now: instant)
            case let .behind(version): control.handle(.workerGatesBehind(WorkerID(worker), version: version), now: instant)
            }
            executeActions()
        case let .workerCrash(worker, fault):
            if fault && !injector.enabled { return }
            step("crash", worker)
            listenerOracle.lastDisruption = now
            crash(worker, fault: fault)
        case let .workerExitNoticed(worker):
            step("exit", worker)
            control.handle(.workerExited(WorkerID(worker)), now: instant)
            executeActions()
        case let .workerRestart(worker):
            step("restart", worker)
            listenerOracle.lastDisruption = now
            restart(worker)
        case let .flapDown(interface, duration):
            guard injector.enabled else { return }
            step("flap_down", interface)
            faultCounts.interfaceFlaps += 1
            faultDown[interface] += 1
            updateInterface(interface)
            queue.push(.flapUp(interface), at: now + duration)
        case let .flapUp(interface):
            guard faultDown[interface] > 0 else { return }
            step("flap_up", interface)
            faultDown[interface] -= 1
            updateInterface(interface)
        case .livenessStart:
            step("liveness_start", 0)
            startLiveness()
        case .livenessCheck:
            checkConvergence()
        case .livenessFinish:
            step("liveness_finish", 0)
            finishLiveness()
        case .sample:
            samples.append(stateSizes())
            let next = now + options.sampleInterval
            if next < trafficEnd { queue.push(.sample, at: next) }
        case let .hostWake(host, generation):
            hostWake(host, generation: generation)
        case let .routerWake(router, generation):
            routerWake(router, generation: generation)
        case let .segmentDelivery(frame, receiver):
            segmentDelivery(frame: frame, receiver: receiver)
        case let .takeoverCheck(interface, family, heardAt):
            takeoverCheck(interface: interface, family: family, heardAt: heardAt)
        }
    }

    var instant: Instant { Instant(nanoseconds: now) }
}

extension Simulation {
    /// Adds a trace's frames to the frame tables (the first trace at start, each soak window's
    /// after the ones in use): offsets into the arena from `arenaBase`, arrivals from `start`.
    func appendTraceFrames(_ store: FrameStore, arenaBase: Int, start: UInt64) {
        var lastName: InterfaceName?
        var lastIndex = 0
        for (index, frame) in store.frames.enumerated() {
            frameOffset.append(arenaBase + frame.offset)
            frameLength.append(Int(frame.length))
            if frame.interface != lastName {
                lastName = frame.interface
                lastIndex = interfaces.index(of: frame.interface)!
            }
            frameInterface.append(lastIndex)
            frameLink.append(frame.link)
            facts.append(ReferenceClassifier.facts(arena.buffer(arenaBase + frame.offset, Int(frame.length)), link: frame.link))
            arrivalTime.append(start + (options.timing == .recorded ? frame.time : UInt64(index) * 1_000))
        }
        arrivalRule.append(contentsOf: repeatElement(-1, count: store.frames.count))
        arrivalMask.append(contentsOf: repeatElement(0, count: store.frames.count))
        ingress.traceFrames += store.frames.count
    }
}

/// One copy of one arrival to one destination: what `no_duplicate_forward` tracks past the
/// 64 outputs an arrival's bit mask covers.
struct DuplicateKey: Hashable {
    var arrival: Int
    var interface: Int
    var destination: IPAddress
    var port: UInt16
}

extension IPAddress {
    /// The next address of the family (wrapping), for making distinct simulated sources.
    var successor: IPAddress {
        switch self {
        case let .v4(address): .v4(IPv4Address(address.value &+ 1))
        case let .v6(address): .v6(IPv6Address(high: address.low == .max ? address.high &+ 1 : address.high, low: address.low &+ 1))
        }
    }
}
