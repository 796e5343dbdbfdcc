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

/// Frame bytes in one block of memory that only grows (mutated copies and probes are
/// appended); the per-packet path hands the core a pointer into it.
final class Arena {
    private(set) var base: UnsafeMutableRawPointer
    private(set) var count = 0
    private var capacity: Int

    init(_ bytes: [UInt8]) {
        capacity = max(bytes.count * 2, 4096)
        base = .allocate(byteCount: capacity, alignment: 16)
        bytes.withUnsafeBytes { if let source = $0.baseAddress { base.copyMemory(from: source, byteCount: $0.count) } }
        count = bytes.count
    }

    deinit { base.deallocate() }

    func append(_ bytes: UnsafeRawBufferPointer) -> Int {
        if count + bytes.count > capacity {
            let newCapacity = max(capacity * 2, count + bytes.count)
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
            fresh.copyMemory(from: base, byteCount: count)
            base.deallocate()
            base = fresh
            capacity = newCapacity
        }
        if let source = bytes.baseAddress { (base + count).copyMemory(from: source, byteCount: bytes.count) }
        count += bytes.count
        return count - bytes.count
    }

    @inline(__always) func buffer(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + offset, count: length)
    }
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
    }

    struct Worker {
        var alive = true
        var incarnation = 0
        var forwarder: Forwarder
        var version: UInt64 = 0
        var epoch = 0
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
            forwarder = Forwarder(plan: .idle(WorkerID(id)))
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
    let events: [ScriptedEvent]
    private let arena: Arena
    @exclusivity(unchecked) private var frameOffset: [Int] = []
    @exclusivity(unchecked) private var frameLength: [Int] = []
    @exclusivity(unchecked) private var frameInterface: [Int] = []
    @exclusivity(unchecked) private var frameLink: [LinkType] = []
    @exclusivity(unchecked) private var facts: [FrameFacts] = []
    @exclusivity(unchecked) private var arrivalTime: [UInt64] = []
    private let traceFrameCount: Int
    private let epochBase: UInt64

    @exclusivity(unchecked) private var queue = EventQueue<Event>()
    @exclusivity(unchecked) private var now: UInt64 = 0
    @exclusivity(unchecked) private var control: ControlPlane
    @exclusivity(unchecked) private var kernel: KernelModel
    @exclusivity(unchecked) private var packetSockets: PacketSockets
    @exclusivity(unchecked) private var workers: [Worker] = []
    @exclusivity(unchecked) private var injector: FaultInjector
    @exclusivity(unchecked) private var oracle: Oracle
    private let egress: EgressRecorder
    @exclusivity(unchecked) private var registryOutputs: [(interface: Int, destination: UInt32, port: UInt16, ttl: UInt8)] = []
    @exclusivity(unchecked) private var registryOutputCounts: [Int] = []

    @exclusivity(unchecked) private var timerGeneration: UInt64 = 0
    @exclusivity(unchecked) private var pendingPlans: [Int: (worker: Int, incarnation: Int, plan: WorkerPlan)] = [:]
    @exclusivity(unchecked) private var nextMessage = 0
    @exclusivity(unchecked) private var versionEpoch: [UInt64: Int] = [:]
    @exclusivity(unchecked) private var latestPlanVersion: UInt64 = 0
    @exclusivity(unchecked) private var adminDown: [Bool]
    @exclusivity(unchecked) private var faultDown: [Int]

    // Per arrival: the rule (registry index) and outputs (bit mask) already transmitted.
    @exclusivity(unchecked) private var arrivalRule: [Int32] = []
    @exclusivity(unchecked) private var arrivalMask: [UInt64] = []
    @exclusivity(unchecked) private var arrivalOverflow: Set<[UInt64]> = []

    // Report tallies, by registry rule / registry output.
    @exclusivity(unchecked) private var matchedByRule: [UInt64] = []
    @exclusivity(unchecked) private var acceptedByRule: [UInt64] = []
    @exclusivity(unchecked) private var expectedByOutput: [UInt64] = []
    @exclusivity(unchecked) private var handedByOutput: [UInt64] = []
    @exclusivity(unchecked) private var transmittedByOutput: [UInt64] = []
    @exclusivity(unchecked) private var sendErrorsByOutput: [UInt64] = []
    @exclusivity(unchecked) private var drops = [UInt64](repeating: 0, count: DropReason.allCases.count)
    @exclusivity(unchecked) private var ingress = SimReport.Ingress()
    @exclusivity(unchecked) private var controlStats = SimReport.Control()
    @exclusivity(unchecked) private var faultCounts = FaultCounts()

    @exclusivity(unchecked) private var violations: [Violation] = []
    @exclusivity(unchecked) private var invariantChecks: [String: UInt64] = [:]
    @exclusivity(unchecked) private var forwardChecks: UInt64 = 0
    @exclusivity(unchecked) private var sendChecks: UInt64 = 0
    @exclusivity(unchecked) private var invariantViolations: [String: UInt64] = [:]
    @exclusivity(unchecked) private var reportedSockets: Set<HelperSocketID> = []

    @exclusivity(unchecked) private var steps: [StepRecord] = []
    @exclusivity(unchecked) private var stepDigest = FNV64()
    @exclusivity(unchecked) private var stepCount: UInt64 = 0

    // Liveness.
    @exclusivity(unchecked) private var trafficEnd: UInt64 = 0
    @exclusivity(unchecked) private var livenessStarted: UInt64?
    @exclusivity(unchecked) private var livenessDeadline: UInt64 = .max
    @exclusivity(unchecked) private var convergedAt: UInt64?
    @exclusivity(unchecked) private var probes: [(arrival: Int, rule: Int)] = []
    /// Arrivals from here on are liveness probes: checked like traffic, but kept out of the
    /// egress captures and the per-rule counts, which describe the user's traffic only.
    @exclusivity(unchecked) private var firstProbeArrival = Int.max
    @exclusivity(unchecked) private var probeAccepted: [Int: UInt64] = [:]
    @exclusivity(unchecked) private var livenessDetail: String?
    @exclusivity(unchecked) private var finished = false
    @exclusivity(unchecked) private var samples: [StateSizes] = []
    /// `join_fail` events (recordings): failures waiting for the relay's next join of their membership.
    @exclusivity(unchecked) private var scriptedJoinFailures: [MembershipKey: [(at: UInt64, error: JoinError)]] = [:]

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
        traceFrameCount = input.store.frames.count
        epochBase = input.store.epoch >= options.warmup ? input.store.epoch - options.warmup : 0
        control = ControlPlane(configuration: .init(
            socketLimit: options.coreSocketLimit, workerCount: options.workers, dispatchMode: options.dispatch))
        kernel = KernelModel(interfaces: interfaces, membershipLimit: options.kernelMembershipLimit)
        packetSockets = PacketSockets(interfaceCount: interfaces.count)
        injector = FaultInjector(spec: faultSpec, schedule: options.schedule, seed: options.seed)
        oracle = Oracle(interfaces: interfaces)
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
        egress = try EgressRecorder(interfaces: interfaces, directory: outputDirectory, egress: egressNames)

        var lastName: InterfaceName?
        var lastIndex = 0
        frameOffset.reserveCapacity(traceFrameCount)
        frameLength.reserveCapacity(traceFrameCount)
        frameInterface.reserveCapacity(traceFrameCount)
        frameLink.reserveCapacity(traceFrameCount)
        facts.reserveCapacity(traceFrameCount)
        arrivalTime.reserveCapacity(traceFrameCount)
        for (index, frame) in input.store.frames.enumerated() {
            frameOffset.append(frame.offset)
            frameLength.append(Int(frame.length))
            if frame.interface != lastName {
                lastName = frame.interface
                lastIndex = interfaces.index(of: frame.interface)!
            }
            frameInterface.append(lastIndex)
            frameLink.append(frame.link)
            facts.append(ReferenceClassifier.facts(arena.buffer(frame.offset, Int(frame.length)), link: frame.link))
            let offset = options.timing == .recorded ? frame.time : UInt64(index) * 1_000
            arrivalTime.append(options.warmup + offset)
        }
        arrivalRule = Array(repeating: -1, count: traceFrameCount)
        arrivalMask = Array(repeating: 0, count: traceFrameCount)
        ingress.traceFrames = traceFrameCount
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
        scheduleTimedFaults(input: input)
        queue.push(.livenessStart, at: trafficEnd)
        // Only soak runs sample; other runs push nothing, so their event order is unchanged.
        if options.sampleInterval > 0 { queue.push(.sample, at: options.warmup + options.sampleInterval) }

        // Boot: interfaces up, workers started, the config's rules.
        for name in interfaces.names { control.handle(.interfaceUp(name), now: Instant(nanoseconds: 0)) }
        for worker in 0..<options.workers { control.handle(.workerStarted(WorkerID(worker)), now: .zero) }
        do { try control.replaceRules(input.rules, now: .zero) } catch {
            throw SimError.input("config: the relay refuses the rules: \(error)")
        }
        oracle.setRules(input.rules)
        syncRegistry()
        executeActions()
    }

    private func scheduleTimedFaults(input: SimInput) {
        var rng = SimRandom.stream(seed: options.seed, label: "timed")
        let span = Double(trafficEnd - options.warmup) / 1e9
        if faultSpec.flapsPerSecond > 0, interfaces.count > 0 {
            var t = 0.0
            while true {
                t += -log(max(rng.unit(), 1e-12)) / faultSpec.flapsPerSecond
                guard t < span else { break }
                let interface = rng.below(interfaces.count)
                let duration = UInt64(1_000_000 + rng.below(500_000_000))
                queue.push(.flapDown(interface, duration: duration), at: options.warmup + UInt64(t * 1e9))
            }
        }
        if faultSpec.crashesPerSecond > 0 {
            var t = 0.0
            while true {
                t += -log(max(rng.unit(), 1e-12)) / faultSpec.crashesPerSecond
                guard t < span else { break }
                queue.push(.workerCrash(rng.below(options.workers), fault: true), at: options.warmup + UInt64(t * 1e9))
            }
        }
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
        var cursor = 0
        while !finished {
            let frameTime = cursor < traceFrameCount ? arrivalTime[cursor] : UInt64.max
            if let eventTime = queue.peekTime, eventTime <= frameTime {
                let entry = queue.pop()!
                now = entry.time
                try handle(entry.payload)
            } else if cursor < traceFrameCount {
                now = frameTime
                try ingressArrival(frame: cursor, arrival: cursor, faulted: false)
                cursor += 1
            } else {
                break
            }
            if options.stopAtFirstViolation, !violations.isEmpty { break }
            if let target = options.stopAtInvariant, invariantViolations[target] != nil { break }
        }
        for worker in workers.indices where workers[worker].alive { checkpoint(worker) }
        try egress.close()
        if options.sampleInterval > 0 { samples.append(stateSizes()) }
        return SimResult(report: makeReport(), violations: violations, steps: steps, samples: samples)
    }

    @inline(__always)
    private func step(_ kind: String, _ argument: Int) {
        stepCount &+= 1
        if options.verbose, kind != "frame" { print("\(instant) \(kind) \(argument)") }
        guard options.recordSteps else { return }
        stepDigest.add(now)
        stepDigest.add(UInt64(bitPattern: Int64(argument)))
        for byte in kind.utf8 { stepDigest.add(byte) }
        for port in egress.ports { stepDigest.add(port.hash.value) }
        steps.append(StepRecord(time: now, kind: kind, argument: argument, digest: stepDigest.value))
    }

    private func handle(_ event: Event) throws(SimError) {
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
        case let .workerCrash(worker, fault):
            if fault && !injector.enabled { return }
            step("crash", worker)
            crash(worker, fault: fault)
        case let .workerExitNoticed(worker):
            step("exit", worker)
            control.handle(.workerExited(WorkerID(worker)), now: instant)
            executeActions()
        case let .workerRestart(worker):
            step("restart", worker)
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
        }
    }

    private var instant: Instant { Instant(nanoseconds: now) }

    // MARK: - Control plane and kernel

    private func runScripted(_ event: ScriptedEvent) {
        switch event.kind {
        case let .ruleAdd(spec):
            do {
                try control.addRule(spec, now: instant)
                var specs = oracle.currentSpecs
                if !specs.contains(spec) { specs.append(spec) }
                oracle.setRules(specs)
            } catch { operatorError("rule_add \(spec.input): \(error)") }
        case let .ruleRemove(selector):
            let target = oracle.resolve(selector)
            do {
                try control.removeRule(selector, now: instant)
                if let target { oracle.setRules(oracle.currentSpecs.filter { $0 != target }) }
            } catch { operatorError("rule_remove \(selector): \(error)") }
        case let .configReload(specs):
            do {
                try control.replaceRules(specs, now: instant)
                oracle.setRules(specs)
            } catch { operatorError("config_reload: \(error)") }
        case let .interfaceDown(name):
            let index = interfaces.index(of: name)!
            adminDown[index] = true
            updateInterface(index)
        case let .interfaceUp(name):
            let index = interfaces.index(of: name)!
            adminDown[index] = false
            updateInterface(index)
        case .joinFail:
            return  // registered up front (init): the join it describes may run in the same instant, before it
        case let .workerCrash(worker):
            guard worker < options.workers else {
                operatorError("worker_crash \(worker): there are only \(options.workers) workers")
                return
            }
            crash(worker, fault: false)
        }
        syncRegistry()
        executeActions()
    }

    /// A recorded join failure due for this membership: the live relay's join failed within
    /// 50 ms of now (its timers fire a little late); older than a second, it no longer applies.
    private func scriptedJoinFailure(_ key: MembershipKey) -> JoinError? {
        guard var pending = scriptedJoinFailures[key] else { return nil }
        pending.removeAll { $0.at + 1_000_000_000 < now }
        defer { scriptedJoinFailures[key] = pending.isEmpty ? nil : pending }
        guard let first = pending.first, first.at <= now + 50_000_000 else { return nil }
        pending.removeFirst()
        return first.error
    }

    private func operatorError(_ message: String) {
        if controlStats.operatorErrors.count < 50 {
            controlStats.operatorErrors.append("\(instant): \(message)")
        }
    }

    private func updateInterface(_ index: Int) {
        let up = !adminDown[index] && faultDown[index] == 0
        guard kernel.up[index] != up else { return }
        kernel.setUp(index, up)
        let name = interfaces.names[index]
        control.handle(up ? .interfaceUp(name) : .interfaceDown(name), now: instant)
        executeActions()
    }

    /// Grows the report tallies to cover newly interned rules.
    private func syncRegistry() {
        let registry = oracle.registry
        while matchedByRule.count < registry.specs.count {
            let spec = registry.specs[matchedByRule.count]
            matchedByRule.append(0)
            acceptedByRule.append(0)
            registryOutputCounts.append(spec.outputs.count)
            for output in spec.outputs {
                registryOutputs.append((interfaces.index(of: output.interface) ?? -1, output.destination.value, output.port, output.ttl))
                expectedByOutput.append(0); handedByOutput.append(0); transmittedByOutput.append(0); sendErrorsByOutput.append(0)
            }
        }
    }

    private func executeActions() {
        var changedSockets = false
        while let action = control.poll() {
            if options.verbose { print("\(instant)   core: \(action)") }
            switch action {
            case .openHelperSocket, .closeHelperSocket, .join, .leave: count(InvariantName.kernelCallsValid)
            default: break
            }
            switch action {
            case let .openHelperSocket(id):
                changedSockets = true
                do { try kernel.openHelperSocket(id) } catch {
                    violate(InvariantName.kernelCallsValid, "opened helper socket \(id) twice")
                }
            case let .closeHelperSocket(id):
                do { try kernel.closeHelperSocket(id) } catch {
                    violate(InvariantName.kernelCallsValid, "closed helper socket \(id), which is not open")
                }
            case let .join(request):
                changedSockets = true
                controlStats.joins += 1
                var outcome: JoinOutcome
                if let error = scriptedJoinFailure(request.membership) {
                    outcome = .failed(error)
                } else if let error = injector.joinFault() {
                    faultCounts.joinsFailed += 1
                    outcome = .failed(error)
                } else {
                    outcome = kernel.join(request)
                }
                if options.driverBugs.contains(.reportJoinsAsSucceeded) { outcome = .joined }
                if case let .failed(error) = outcome { controlStats.joinErrors[error.description, default: 0] += 1 }
                queue.push(.joinDone(request.ticket, outcome), at: now + Self.joinLatency)
            case let .leave(request):
                if !kernel.leave(request) {
                    violate(InvariantName.kernelCallsValid, "left \(request.membership) on \(request.socket), which does not hold it")
                }
            case let .sendPlan(plan):
                controlStats.plansSent += 1
                if versionEpoch[plan.version] == nil { versionEpoch[plan.version] = oracle.currentIndex }
                latestPlanVersion = max(latestPlanVersion, plan.version)
                sendPlan(plan)
            case let .setTimer(at):
                timerGeneration += 1
                if let at { queue.push(.timer(timerGeneration), at: max(at.nanoseconds, now)) }
            case let .report(report):
                let kind: String
                switch report {
                case .joinFailed: kind = "join_failed"
                case .joinRecovered: kind = "join_recovered"
                case .socketCapacityLearned: kind = "socket_capacity_learned"
                case .workerLost: kind = "worker_lost"
                case .workerCurrent: kind = "worker_current"
                }
                controlStats.reports[kind, default: 0] += 1
            }
        }
        if changedSockets { checkSocketLimit() }
    }

    /// The core must never place more groups on a helper socket than the kernel allows.
    private func checkSocketLimit() {
        count(InvariantName.helperSocketLimit)
        for usage in control.membership.socketUsage where usage.groups > options.kernelMembershipLimit {
            guard reportedSockets.insert(usage.socket).inserted else { continue }
            violate(InvariantName.helperSocketLimit,
                    "helper socket \(usage.socket) given \(usage.groups) groups; the kernel allows \(options.kernelMembershipLimit) per socket")
        }
    }

    /// What the supervisor/worker channel does to one message: nil when it is lost, else the
    /// extra delay. Draws from the fault injector exactly once per message.
    private func channelFate() -> UInt64? {
        switch injector.controlFate() {
        case .lose:
            faultCounts.controlMessagesLost += 1
            return nil
        case let .delay(amount):
            faultCounts.controlMessagesDelayed += 1
            return amount
        case .deliver:
            return 0
        }
    }

    private func sendPlan(_ plan: WorkerPlan) {
        let worker = plan.worker.rawValue
        guard worker < workers.count, workers[worker].alive else { return }
        guard let extra = channelFate() else { return }
        // A stream socket keeps order: a delayed message holds back the ones behind it.
        let at = max(now + Self.channelLatency + extra, workers[worker].channelFree)
        workers[worker].channelFree = at
        nextMessage += 1
        pendingPlans[nextMessage] = (worker, workers[worker].incarnation, plan)
        queue.push(.planDelivered(nextMessage), at: at)
    }

    // MARK: - Workers

    private func install(_ plan: WorkerPlan, on index: Int) {
        checkpoint(index)
        controlStats.plansInstalled += 1
        var worker = workers[index]
        worker.forwarder.install(plan)
        // Reconcile AF_PACKET sockets: keep the ones whose (interface, fanout) is unchanged.
        var wanted: [(interface: Int, fanout: UInt16?)] = []
        for assignment in plan.ingress {
            guard let interface = interfaces.index(of: assignment.interface) else { continue }
            let fanout = options.driverBugs.contains(.ignoreFanout) ? nil : assignment.fanoutGroup
            wanted.append((interface, fanout))
        }
        for socket in packetSockets.sockets(of: index)
        where !wanted.contains(where: { $0.interface == socket.interface && $0.fanout == socket.fanout }) {
            packetSockets.close(socket)
        }
        worker.slotOf = Array(repeating: -1, count: interfaces.count)
        let existing = packetSockets.sockets(of: index)
        for want in wanted {
            let socket = PacketSockets.Socket(worker: index, interface: want.interface, fanout: want.fanout)
            if !existing.contains(socket) {
                guard packetSockets.open(socket) else {
                    violate(InvariantName.kernelCallsValid,
                            "worker \(index): PACKET_FANOUT id \(want.fanout ?? 0) is already bound to another interface (EINVAL)")
                    continue
                }
            }
            worker.slotOf[want.interface] = worker.forwarder.ingressSlot(of: interfaces.names[want.interface]) ?? -1
        }
        worker.egressInterface = worker.forwarder.egress.map { interfaces.index(of: $0) ?? -1 }
        worker.routeRef = plan.rules.map { oracle.intern($0.spec) }
        worker.routeTally = Array(repeating: 0, count: plan.rules.count)
        worker.sendFailTally = Array(repeating: 0, count: plan.rules.reduce(0) { $0 + $1.outputs.count })
        worker.baseline = worker.forwarder.statistics()
        worker.version = plan.version
        worker.epoch = versionEpoch[plan.version] ?? oracle.currentIndex
        workers[index] = worker
        syncRegistry()

        guard let extra = channelFate() else { return }
        let at = max(now + Self.channelLatency + extra, workers[index].ackChannelFree)
        workers[index].ackChannelFree = at
        queue.push(.ackDelivered(worker: index, incarnation: worker.incarnation, version: plan.version), at: at)
    }

    private func crash(_ index: Int, fault: Bool) {
        guard workers[index].alive else { return }
        if fault { faultCounts.workerCrashes += 1 }
        checkpoint(index)
        workers[index].alive = false
        // The process is gone: its sockets close (leaving their fanout groups).
        for socket in packetSockets.sockets(of: index) { packetSockets.close(socket) }
        workers[index].restartPending = true
        queue.push(.workerExitNoticed(index), at: now + Self.exitNoticeDelay)
        queue.push(.workerRestart(index), at: now + max(options.restartDelay, Self.exitNoticeDelay + 1))
    }

    private func restart(_ index: Int) {
        guard !workers[index].alive else { return }
        let incarnation = workers[index].incarnation + 1
        var fresh = Worker(id: index, interfaces: interfaces.count)
        fresh.incarnation = incarnation
        fresh.baseline = fresh.forwarder.statistics()
        fresh.channelFree = now
        fresh.ackChannelFree = now
        workers[index] = fresh
        control.handle(.workerStarted(WorkerID(index)), now: instant)
        executeActions()
    }

    /// Compares a worker's counters with what the simulator saw it do since the last
    /// checkpoint, then folds them into the report.
    private func checkpoint(_ index: Int) {
        var worker = workers[index]
        let stats = worker.forwarder.statistics()
        let base = worker.baseline
        count(InvariantName.countersAddUp)
        var problems: [String] = []
        var acceptedTotal: UInt64 = 0
        var handle = 0
        for (r, ruleStats) in stats.rules.enumerated() {
            let before = r < base.rules.count ? base.rules[r] : nil
            let accepted = ruleStats.accepted.packets &- (before?.accepted.packets ?? 0)
            acceptedTotal &+= accepted
            if accepted != worker.routeTally[r] {
                problems.append("rule \(ruleStats.rule.id) counted \(accepted) accepted, forwarded \(worker.routeTally[r])")
            }
            let ref = worker.routeRef[r]
            acceptedByRule[ref] &+= accepted
            for (o, output) in ruleStats.outputs.enumerated() {
                let handed = output.packets &- (before?.outputs[o].packets ?? 0)
                let errors = output.sendErrors &- (before?.outputs[o].sendErrors ?? 0)
                if handed != accepted { problems.append("rule \(ruleStats.rule.id) output \(o): \(handed) handed to the driver, \(accepted) accepted") }
                if errors != worker.sendFailTally[handle] {
                    problems.append("rule \(ruleStats.rule.id) output \(o): \(errors) send errors counted, \(worker.sendFailTally[handle]) reported")
                }
                let slot = oracle.registry.outputBase[ref] + o
                handedByOutput[slot] &+= handed
                sendErrorsByOutput[slot] &+= errors
                handle += 1
            }
        }
        var dropTotal: UInt64 = 0
        for reason in DropReason.allCases {
            let delta = stats.drops[reason] &- base.drops[reason]
            if delta != worker.dropTally[reason.rawValue] {
                problems.append("\(reason): counted \(delta), decided \(worker.dropTally[reason.rawValue])")
            }
            drops[reason.rawValue] &+= delta
            dropTotal &+= delta
        }
        if acceptedTotal &+ dropTotal != worker.delivered {
            problems.append("\(worker.delivered) frames delivered but \(acceptedTotal) accepted + \(dropTotal) dropped")
        }
        if !problems.isEmpty {
            violate(InvariantName.countersAddUp, "worker \(index): " + problems.prefix(3).joined(separator: "; "))
        }
        worker.baseline = stats
        worker.delivered = 0
        for r in worker.routeTally.indices { worker.routeTally[r] = 0 }
        for h in worker.sendFailTally.indices { worker.sendFailTally[h] = 0 }
        for d in worker.dropTally.indices { worker.dropTally[d] = 0 }
        workers[index] = worker
    }

    // MARK: - The packet path

    private func newArrival() -> Int {
        arrivalRule.append(-1)
        arrivalMask.append(0)
        return arrivalRule.count - 1
    }

    private func addFrame(bytes: UnsafeRawBufferPointer, interface: Int, link: LinkType) -> Int {
        let offset = arena.append(bytes)
        frameOffset.append(offset)
        frameLength.append(bytes.count)
        frameInterface.append(interface)
        frameLink.append(link)
        facts.append(ReferenceClassifier.facts(arena.buffer(offset, bytes.count), link: link))
        return frameOffset.count - 1
    }

    private func ingressArrival(frame: Int, arrival: Int, faulted: Bool) throws(SimError) {
        var frame = frame
        if !faulted && injector.ingressActive {
            switch injector.ingressFate(frame: frame, length: frameLength[frame]) {
            case .deliver: break
            case .drop:
                faultCounts.ingressLost += 1
                return
            case let .duplicate(gap):
                faultCounts.ingressDuplicated += 1
                queue.push(.arrival(frame: Int32(frame), arrival: Int32(newArrival())), at: now + gap)
            case let .delay(amount, reorder):
                if reorder { faultCounts.ingressReordered += 1 } else { faultCounts.ingressDelayed += 1 }
                queue.push(.arrival(frame: Int32(frame), arrival: Int32(arrival)), at: now + amount)
                return
            case let .truncate(keep):
                faultCounts.truncated += 1
                let bytes = arena.buffer(frameOffset[frame], min(keep, frameLength[frame]))
                let copy = [UInt8](bytes)
                frame = copy.withUnsafeBytes { addFrame(bytes: $0, interface: frameInterface[frame], link: frameLink[frame]) }
            case let .corrupt(byte, mask):
                faultCounts.corrupted += 1
                var copy = [UInt8](arena.buffer(frameOffset[frame], frameLength[frame]))
                if byte < copy.count { copy[byte] ^= mask }
                frame = copy.withUnsafeBytes { addFrame(bytes: $0, interface: frameInterface[frame], link: frameLink[frame]) }
            }
        }
        if options.recordSteps { step("frame", frame) } else { stepCount &+= 1 }
        ingress.arrived += 1
        let interface = frameInterface[frame]
        let fx = facts[frame]
        if fx.forwardable && arrival < firstProbeArrival {
            let rule = oracle.current.match(interface: interface, group: fx.group, port: fx.port, source: fx.source)
            if rule >= 0 {
                let ref = Int(rule)
                matchedByRule[ref] &+= 1
                let base = oracle.registry.outputBase[ref]
                for o in 0..<registryOutputCounts[ref] { expectedByOutput[base + o] &+= 1 }
            }
        }
        guard kernel.up[interface] else {
            ingress.interfaceDown += 1
            return
        }
        guard kernel.admits(interface: interface, group: fx.gateGroup, source: fx.gateSource) else {
            ingress.notJoined += 1
            return
        }
        let receivers = packetSockets.receivers[interface]
        if receivers.isEmpty {
            ingress.noReader += 1
            return
        }
        for receiver in receivers {
            switch receiver {
            case let .solo(worker):
                try deliver(frame: frame, arrival: arrival, interface: interface, to: worker)
            case let .fanout(members):
                // fanout_demux_hash: reciprocal_scale(hash, num_members).
                let member = members[Int((UInt64(fx.flowHash) &* UInt64(members.count)) >> 32)]
                try deliver(frame: frame, arrival: arrival, interface: interface, to: member)
            }
        }
    }

    @inline(__always)
    private func deliver(frame: Int, arrival: Int, interface: Int, to index: Int) throws(SimError) {
        ingress.copiesToWorkers += 1
        let slot = workers[index].slotOf[interface]
        workers[index].delivered &+= 1
        let bytes = arena.buffer(frameOffset[frame], frameLength[frame])
        switch workers[index].forwarder.decide(bytes, link: frameLink[frame], ingress: slot) {
        case let .drop(reason):
            workers[index].dropTally[reason.rawValue] &+= 1
        case let .forward(forwarding):
            let route = Int(forwarding.route.index)
            workers[index].routeTally[route] &+= 1
            if arrival >= firstProbeArrival { probeAccepted[workers[index].routeRef[route], default: 0] += 1 }
            try forward(forwarding, frame: frame, arrival: arrival, interface: interface, worker: index, bytes: bytes)
        }
    }

    private func forward(_ forwarding: Forwarding, frame: Int, arrival: Int, interface: Int, worker index: Int,
                         bytes: UnsafeRawBufferPointer) throws(SimError) {
        let fx = facts[frame]
        forwardChecks &+= 1  // no_forward_without_rule and correct_destination, once per forward
        guard fx.forwardable else {
            violate(InvariantName.noForwardWithoutRule,
                    "worker \(index) forwarded frame \(frame) on \(interfaces.names[interface]), which is not a whole multicast UDP datagram")
            return
        }
        let epoch = oracle.epochs[workers[index].epoch]
        let expected = epoch.match(interface: interface, group: fx.group, port: fx.port, source: fx.source)
        guard expected >= 0 else {
            violate(InvariantName.noForwardWithoutRule,
                    "worker \(index) (plan v\(workers[index].version)) forwarded \(IPv4Address(fx.source)) -> \(IPv4Address(fx.group)):\(fx.port) on \(interfaces.names[interface]); no rule matches it")
            return
        }
        let ref = Int(expected)
        if forwarding.payload.baseAddress != bytes.baseAddress.map({ $0 + Int(fx.payloadOffset) })
            || forwarding.payload.count != Int(fx.payloadLength) {
            violate(InvariantName.correctDestination, "frame \(frame): payload is not the datagram's payload")
            return
        }
        let base = oracle.registry.outputBase[ref]
        let outputCount = registryOutputCounts[ref]
        var spec: RuleSpec { oracle.registry.specs[ref] }  // for messages only: copying it costs
        let batch = workers[index].forwarder.transmits(for: forwarding)
        for position in 0..<batch.count {
            let transmit = batch[position]
            let egressInterface = workers[index].egressInterface[transmit.egress]
            var o = position < outputCount ? position : -1
            if o >= 0 {
                let want = registryOutputs[base + o]
                if want.interface != egressInterface || want.destination != transmit.destination.value
                    || want.port != transmit.port || want.ttl != transmit.ttl { o = -1 }
            }
            if o < 0 {
                o = (0..<outputCount).first { candidate in
                    let want = registryOutputs[base + candidate]
                    return want.interface == egressInterface && want.destination == transmit.destination.value
                        && want.port == transmit.port && want.ttl == transmit.ttl
                } ?? -1
            }
            guard o >= 0 else {
                violate(InvariantName.correctDestination,
                        "frame \(frame) sent to \(interfaces.names[max(0, egressInterface)]):\(transmit.destination):\(transmit.port) ttl \(transmit.ttl), not an output of rule \(RuleID(deriving: spec.input))")
                continue
            }
            // The send.
            var failure: Int32?
            if injector.sendActive, let errno = injector.sendFault() {
                faultCounts.sendsFailed += 1
                failure = errno
            } else if case let .failed(errno) = kernel.send(interface: egressInterface,
                                                            frameLength: FrameBuilder.headersLength + transmit.payload.count, now: now) {
                failure = errno
            }
            if failure != nil {
                workers[index].forwarder.recordSendFailures(transmit.output)
                workers[index].sendFailTally[Int(transmit.output.index)] &+= 1
                continue
            }
            sendChecks &+= 1
            if arrivalRule[arrival] == -1 || arrivalRule[arrival] == Int32(ref) {
                arrivalRule[arrival] = Int32(ref)
                let bit: UInt64 = 1 << UInt64(o)
                if arrivalMask[arrival] & bit != 0 {
                    violate(InvariantName.noDuplicateForward,
                            "frame \(frame) (arrival \(arrival)) sent twice to \(spec.outputs[o]) (second copy by worker \(index))")
                    continue
                }
                arrivalMask[arrival] |= bit
            } else {
                let key: [UInt64] = [UInt64(arrival), UInt64(egressInterface), UInt64(transmit.destination.value), UInt64(transmit.port)]
                let first = registryOutputs[oracle.registry.outputBase[Int(arrivalRule[arrival])]...]
                let clash = first.prefix(oracle.registry.specs[Int(arrivalRule[arrival])].outputs.count).enumerated().contains { k, w in
                    arrivalMask[arrival] & (1 << UInt64(k)) != 0 && w.interface == egressInterface
                        && w.destination == transmit.destination.value && w.port == transmit.port
                }
                if clash || !arrivalOverflow.insert(key).inserted {
                    violate(InvariantName.noDuplicateForward, "frame \(frame) (arrival \(arrival)) sent twice to \(spec.outputs[o])")
                    continue
                }
            }
            guard arrival < firstProbeArrival else { continue }
            transmittedByOutput[base + o] &+= 1
            try egress.record(interface: egressInterface, time: epochBase &+ now, destination: transmit.destination,
                              port: transmit.port, ttl: transmit.ttl, payload: transmit.payload)
        }
    }

    // MARK: - Invariant bookkeeping

    @inline(__always)
    private func count(_ invariant: String) {
        invariantChecks[invariant, default: 0] &+= 1
    }

    private func violate(_ invariant: String, _ detail: String) {
        invariantViolations[invariant, default: 0] += 1
        if violations.count < 100 { violations.append(Violation(invariant: invariant, timeNanoseconds: now, detail: detail)) }
    }

    // MARK: - Liveness

    private func startLiveness() {
        livenessStarted = now
        livenessDeadline = now + options.livenessBound
        injector.enabled = false
        for index in faultDown.indices where faultDown[index] > 0 {
            faultDown[index] = 0
            updateInterface(index)
        }
        checkConvergence()
    }

    /// Converged: the kernel holds exactly the memberships the operator's rules need on the
    /// interfaces that are up, every worker is alive and runs exactly those rules, and every
    /// frame on a used input interface reaches exactly one socket.
    private func convergenceGap() -> String? {
        let specs = oracle.currentSpecs
        let needed = Oracle.neededMemberships(specs) { kernel.up[interfaces.index(of: $0)!] }
        let joined = kernel.joinedMemberships
        if needed != joined {
            let missing = needed.subtracting(joined).sorted().prefix(3).map(\.description)
            let extra = joined.subtracting(needed).sorted().prefix(3).map(\.description)
            return "memberships differ from what the rules need: missing [\(missing.joined(separator: ", "))]"
                + " (\(needed.subtracting(joined).count) in all), extra [\(extra.joined(separator: ", "))]"
                + " (\(joined.subtracting(needed).count) in all)"
        }
        let wanted = Set(specs)
        for (index, worker) in workers.enumerated() {
            guard worker.alive else { return "worker \(index) is not running" }
            // Quiescent: the newest plan the supervisor sent is the one installed, so no plan
            // still in flight can change what the worker reads.
            if worker.version != latestPlanVersion || pendingPlans.values.contains(where: { $0.worker == index }) {
                return "worker \(index) runs plan v\(worker.version); the supervisor's latest is v\(latestPlanVersion)"
            }
            if Set(worker.forwarder.plan.rules.map(\.spec)) != wanted {
                return "worker \(index) runs plan v\(worker.version) with \(worker.forwarder.plan.rules.count) rules, not the \(specs.count) configured"
            }
        }
        let inputs = Set(specs.map(\.input.interface)).sorted()
        for name in inputs {
            let index = interfaces.index(of: name)!
            guard kernel.up[index] else { continue }
            let copies = packetSockets.copies(on: index)
            if copies != 1 { return "\(name): each frame reaches \(copies) sockets, not 1" }
        }
        return nil
    }

    private func checkConvergence() {
        guard convergedAt == nil, let started = livenessStarted else { return }
        if let gap = convergenceGap() {
            livenessDetail = gap
            if now >= livenessDeadline {
                count(InvariantName.liveness)
                violate(InvariantName.liveness,
                        "not converged \(Double(options.livenessBound) / 1e6) ms after faults stopped: \(gap)")
                finished = true
                return
            }
            // Every 10 ms for the first second, then every 100 ms: a relay that has not
            // converged by then is waiting on backoff timers, and checks are not free.
            let interval = now - started < 1_000_000_000 ? Self.livenessCheckInterval : 10 * Self.livenessCheckInterval
            queue.push(.livenessCheck, at: min(now + interval, max(livenessDeadline, now)))
            return
        }
        step("converged", 0)
        convergedAt = now
        livenessDetail = nil
        sendProbes()
    }

    /// One synthetic datagram per rule whose input is up: each must come out on every output
    /// whose interface is up, exactly once.
    private func sendProbes() {
        let specs = oracle.currentSpecs
        var at = now + 1_000
        firstProbeArrival = arrivalRule.count
        for (number, spec) in specs.enumerated() {
            guard let interface = interfaces.index(of: spec.input.interface), kernel.up[interface] else { continue }
            var source = spec.input.source ?? IPv4Address(198, 18, 0, 2)
            if spec.input.source == nil {
                while specs.contains(where: { $0.input.interface == spec.input.interface && $0.input.group == spec.input.group
                    && $0.input.port == spec.input.port && $0.input.source == source }) {
                    source = IPv4Address(source.value + 1)
                }
            }
            let payload = Array("mcrelay-sim liveness probe \(number)".utf8)
            let bytes = FrameBuilder.build(.init(
                sourceMAC: FrameBuilder.syntheticMAC(interfaceIndex: interface, host: 0xAA), source: source,
                destination: spec.input.group, sourcePort: 40000, destinationPort: spec.input.port, ttl: 8), payload: payload)
            let frame = bytes.withUnsafeBytes { addFrame(bytes: $0, interface: interface, link: .ethernet) }
            let arrival = newArrival()
            probes.append((arrival, oracle.intern(spec)))
            queue.push(.arrival(frame: Int32(frame), arrival: Int32(arrival)), at: at)
            at += 1_000
        }
        ingress.probes = probes.count
        syncRegistry()
        queue.push(.livenessFinish, at: at + 10_000_000)
    }

    private func probeForwarded(_ probe: (arrival: Int, rule: Int)) -> Bool {
        let spec = oracle.registry.specs[probe.rule]
        var required: UInt64 = 0
        for (o, output) in spec.outputs.enumerated() where kernel.up[interfaces.index(of: output.interface)!] {
            required |= 1 << UInt64(o)
        }
        return arrivalRule[probe.arrival] == Int32(probe.rule) ? arrivalMask[probe.arrival] & required == required : required == 0
    }

    private func finishLiveness() {
        count(InvariantName.liveness)
        for probe in probes where !probeForwarded(probe) {
            let spec = oracle.registry.specs[probe.rule]
            violate(InvariantName.liveness, "after convergence, a probe for rule \(RuleID(deriving: spec.input)) (\(spec.input)) "
                + "was not forwarded to every output (\(spec.outputs.map(\.description).joined(separator: ", ")))")
        }
        finished = true
    }

    // MARK: - Soak sampling

    private func stateSizes() -> StateSizes {
        stateSizesImpl(control: control, kernel: kernel, workers: workers, queueCount: queue.count,
                       pendingPlans: pendingPlans.count, oracle: oracle, arrivals: arrivalRule.count,
                       overflow: arrivalOverflow.count, versionEpochs: versionEpoch.count, now: now)
    }

    // MARK: - Report

    private func makeReport() -> SimReport {
        var invariantChecks = self.invariantChecks
        let registry = oracle.registry
        var rules: [SimReport.RuleEntry] = []
        for (ref, spec) in registry.specs.enumerated() {
            let base = registry.outputBase[ref]
            rules.append(SimReport.RuleEntry(
                id: RuleID(deriving: spec.input).description, name: spec.name, input: spec.input.description,
                matched: matchedByRule[ref], accepted: acceptedByRule[ref] &- (probeAccepted[ref] ?? 0),
                outputs: spec.outputs.enumerated().map { o, output in
                    SimReport.Output(output: output.description, expected: expectedByOutput[base + o],
                                     handedToDriver: handedByOutput[base + o] &- (probeAccepted[ref] ?? 0), transmitted: transmittedByOutput[base + o],
                                     sendErrors: sendErrorsByOutput[base + o])
                }))
        }
        var dropMap: [String: UInt64] = [:]
        for reason in DropReason.allCases { dropMap[reason.description] = drops[reason.rawValue] }
        invariantChecks[InvariantName.noForwardWithoutRule, default: 0] &+= forwardChecks
        invariantChecks[InvariantName.correctDestination, default: 0] &+= forwardChecks
        invariantChecks[InvariantName.noDuplicateForward, default: 0] &+= sendChecks
        let invariants = InvariantName.all.map { name in
            SimReport.Invariant(name: name, checked: invariantChecks[name] ?? 0, violations: invariantViolations[name] ?? 0,
                                first: violations.first { $0.invariant == name }?.description)
        }
        var egressMap: [String: SimReport.Egress] = [:]
        for index in egress.used {
            let port = egress.ports[index]
            egressMap[port.name.rawValue] = .init(frames: port.frames, bytes: port.bytes, hash: port.hash.hex)
        }
        var controlReport = controlStats
        controlReport.kernelRefusedOverLimit = kernel.refusedOverLimit
        controlReport.helperSocketsAtEnd = kernel.helperSockets.count
        let liveness = SimReport.Liveness(
            converged: convergedAt != nil,
            convergedAfterMs: convergedAt.map { Double($0 - (livenessStarted ?? $0)) / 1e6 },
            boundMs: Double(options.livenessBound) / 1e6,
            probesSent: probes.count, probesForwarded: probes.filter(probeForwarded).count,
            detail: convergedAt == nil ? (livenessDetail ?? "the run stopped before the liveness phase") : nil)
        return SimReport(
            result: violations.isEmpty ? "pass" : "fail",
            run: .init(seed: options.seed, faults: faultSpec.description, swarm: options.swarm,
                       timing: options.timing.rawValue, workers: options.workers, dispatch: options.dispatch.rawValue,
                       coreSocketLimit: options.coreSocketLimit, kernelMembershipLimit: options.kernelMembershipLimit,
                       simulatedNanoseconds: now, steps: stepCount),
            ingress: ingress, rules: rules, drops: dropMap, faultsInjected: faultCounts, invariants: invariants,
            liveness: liveness, control: controlReport, egress: egressMap)
    }
}

// MARK: - State sizes (soak)

/// How big the core's and the simulator's state is at one instant: what `sim soak` watches
/// to prove memory does not grow with simulated time.
public struct StateSizes: Sendable, Equatable {
    public var timeNanoseconds: UInt64 = 0
    public var activeRules = 0
    /// The core's membership table: joined plus outstanding (joins in flight or backing off).
    public var membershipEntries = 0
    public var inFlightJoins = 0
    /// Helper sockets the core uses, and how many hold more groups than their capacity.
    public var coreHelperSockets = 0
    public var socketsOverLimit = 0
    public var overLimitDetail: String?
    public var maxGroupsPerSocket = 0
    public var kernelHelperSockets = 0
    public var kernelMemberships = 0
    /// Rules installed across all workers' forwarders.
    public var forwarderRoutes = 0
    public var eventQueue = 0
    public var pendingPlans = 0
    /// The oracle's bookkeeping: interned rules, rule-set epochs, per-arrival records.
    public var oracleRules = 0
    public var oracleEpochs = 0
    public var oracleArrivals = 0
    public var oracleOverflow = 0
    public var versionEpochs = 0

    public init() {}

    /// Named values, in a fixed order, for printing and bound checks.
    public var fields: [(name: String, value: Int)] {
        [("memberships", membershipEntries), ("in_flight_joins", inFlightJoins), ("core_sockets", coreHelperSockets),
         ("kernel_sockets", kernelHelperSockets), ("kernel_memberships", kernelMemberships), ("routes", forwarderRoutes),
         ("event_queue", eventQueue), ("pending_plans", pendingPlans), ("oracle_rules", oracleRules),
         ("oracle_epochs", oracleEpochs), ("oracle_arrivals", oracleArrivals), ("oracle_overflow", oracleOverflow),
         ("plan_versions", versionEpochs)]
    }
}

extension Simulation {
    fileprivate func stateSizesImpl(
        control: ControlPlane, kernel: KernelModel, workers: [Worker], queueCount: Int, pendingPlans: Int,
        oracle: Oracle, arrivals: Int, overflow: Int, versionEpochs: Int, now: UInt64
    ) -> StateSizes {
        var sizes = StateSizes()
        sizes.timeNanoseconds = now
        sizes.activeRules = oracle.current.rules.count
        let outstanding = control.membership.outstanding.count
        sizes.membershipEntries = control.membership.joined.count + outstanding
        sizes.inFlightJoins = outstanding
        let usage = control.membership.socketUsage
        sizes.coreHelperSockets = usage.count
        // The limit is the configured one (and the kernel's): a capacity the core learned from
        // an ENOBUFS may sit below what a socket already holds, and that is not a breach.
        let limit = control.membership.socketLimit
        var over = usage.filter { $0.groups > limit }.map { "core \($0.socket) holds \($0.groups) groups, limit \(limit)" }
        for id in kernel.helperSockets.keys.sorted() where kernel.helperSockets[id]!.groups.count > kernel.membershipLimit {
            over.append("kernel \(id) holds \(kernel.helperSockets[id]!.groups.count) groups, limit \(kernel.membershipLimit)")
        }
        sizes.socketsOverLimit = over.count
        sizes.overLimitDetail = over.isEmpty ? nil : over.joined(separator: "; ")
        sizes.maxGroupsPerSocket = usage.map(\.groups).max() ?? 0
        sizes.kernelHelperSockets = kernel.helperSockets.count
        sizes.kernelMemberships = kernel.joinedMemberships.count
        sizes.forwarderRoutes = workers.reduce(0) { $0 + ($1.alive ? $1.forwarder.plan.rules.count : 0) }
        sizes.eventQueue = queueCount
        sizes.pendingPlans = pendingPlans
        sizes.oracleRules = oracle.registry.specs.count
        sizes.oracleEpochs = oracle.epochs.count
        sizes.oracleArrivals = arrivals
        sizes.oracleOverflow = overflow
        sizes.versionEpochs = versionEpochs
        return sizes
    }
}
