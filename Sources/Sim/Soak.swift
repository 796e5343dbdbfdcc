import Foundation
import RelayCore

/// `sim soak` (issue 7): a long run of simulated time, in one-hour windows generated one at a
/// time from the seed, so memory depends on the window, not on how many hours run.
///
/// One relay core (`ControlPlane`, the workers' `Forwarder`s, the kernel model) lives through
/// the whole run, days if asked. Each window brings rule churn (adds, removes, reloads),
/// interface flaps, worker crashes and restarts, join failures and traffic with bursts, starting
/// from the rules the relay runs; it ends with the fault-free settle (the liveness phase),
/// which must converge and forward every probe. Then the oracle's and the simulator's
/// bookkeeping is compacted (`Simulation.compact()`: what no check can need any more) and the
/// next window is loaded into the same simulation. State sizes — the core's, the kernel
/// model's, the oracle's and the simulator's own — are sampled every simulated minute and must
/// stay under bounds derived from the window's rules and size, never from elapsed time.
/// `freshCorePerWindow` keeps the older mode: a new core (and oracle) per window.
public struct SoakOptions: Sendable {
    public var seed: UInt64 = 0
    public var hours = 24
    /// Valid datagrams per simulated minute outside bursts (a burst minute has ten times more).
    public var framesPerMinute = 20
    /// Simulated hours per window: traffic and churn between two settles (and the unit the
    /// bookkeeping is compacted in; memory grows with the window, not with `hours`).
    public var windowHours = 1
    /// The older mode: a new core and oracle per window, so nothing outlives a window.
    public var freshCorePerWindow = false
    /// Test hook: nothing is ever pruned (no `Simulation.compact()`: the oracle keeps every
    /// arrival record, plan version's rule set and interned rule, the simulator every frame),
    /// to prove the bound check catches bookkeeping that grows with time. Always false outside tests.
    public var skipPruning = false
    /// Test hook: a fake counter that grows by this much per sample, to prove the bound check
    /// catches a leak. Always 0 outside tests.
    public var leakPerSample = 0
    /// Deliberate driver bugs (as in `sim replay --driver-bug`), to show the soak catches them.
    public var driverBugs: Set<DriverBug> = []
    /// Override the seed's pick of workers / dispatch (tests use this to make a bug reachable).
    public var workers: Int?
    public var dispatch: DispatchMode?

    public init() {}
}

/// The bounds one window's state must stay under, from the window's rules and size.
public struct SoakBounds: Sendable, Equatable {
    public var limits: [String: Int]

    /// `maxRules`: the most rules active at once in the window; `specsSeen`: distinct rule
    /// specs the window mentions; `scripted`: scripted events; `frames`: the window's frames;
    /// `frameBytes`: their bytes.
    public static func derive(maxRules: Int, specsSeen: Int, scripted: Int, frames: Int, frameBytes: Int = 0,
                              workers: Int, interfaces: Int, socketLimit: Int) -> SoakBounds {
        // A membership per rule at most (several rules can share one), plus leaves still
        // pending from rules just removed: twice the peak, and some slack.
        let memberships = 2 * maxRules + 8
        let socketsPerInterface = memberships / max(1, socketLimit) + 2
        return SoakBounds(limits: [
            "memberships": memberships,
            "in_flight_joins": memberships,
            "core_sockets": interfaces * socketsPerInterface,
            "kernel_sockets": interfaces * socketsPerInterface,
            "kernel_memberships": memberships,
            // Each worker runs one plan, which holds at most every active rule.
            "routes": workers * maxRules,
            // Scripted events and pre-scheduled flaps/crashes are pushed up front; the rest
            // (timers, joins, plans, acks, delayed frames) scales with rules and workers.
            "event_queue": 2 * scripted + 512 + 16 * (maxRules + 1) * workers,
            "pending_plans": 4 * workers * (scripted + 2),
            // The oracle: the rules the window mentions (those carried in are among them); the
            // rule sets of the current set, of plan versions still installable, of each worker;
            // a record per arrival (trace frames, duplicates, probes) and per overflow send.
            "oracle_rules": specsSeen + 1,
            "oracle_epochs": 1 + workers + 4 * (scripted + 2) * workers + 16,
            "oracle_arrivals": 2 * frames + specsSeen + 16,
            "oracle_overflow": 2 * frames + 16,
            "plan_versions": 4 * (scripted + 2) * workers + 16,
            // The simulator's frame store: trace frames, corrupted/truncated copies, probes; its
            // arena doubles when full, so twice that, plus the first block.
            "sim_frames": 2 * frames + specsSeen + 16,
            "arena_bytes": 4 * frameBytes + 65_536,
        ])
    }

    /// The first field over its bound, as a message.
    public func check(_ sizes: StateSizes) -> String? {
        if sizes.socketsOverLimit > 0 { return "helper socket over its limit: \(sizes.overLimitDetail ?? "\(sizes.socketsOverLimit) socket(s)")" }
        for (name, value) in sizes.fields {
            if let limit = limits[name], value > limit { return "\(name) = \(value), over its bound \(limit)" }
        }
        return nil
    }
}

public struct SoakHour: Sendable {
    public var hour: Int
    public var activeRules: Int
    /// Per field, the largest value sampled during the hour.
    public var peak: [(name: String, value: Int)]
    /// Window totals, on the line of the window's last hour only (nil on the others).
    public var frames: Int?
    public var faults: Int?
    public var convergedAfterMs: Double?

    public var line: String {
        guard let frames, let faults else {
            return "hour \(hour): rules \(activeRules); peak " + peak.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
        }
        return "hour \(hour): rules \(activeRules), frames \(frames), faults \(faults), settle "
            + (convergedAfterMs.map { String(format: "%.1f ms", $0) } ?? "n/a") + "; peak "
            + peak.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
    }
}

public struct SoakViolation: Sendable, CustomStringConvertible {
    public var seed: UInt64
    /// Simulated time from the start of the soak.
    public var timeNanoseconds: UInt64
    public var detail: String
    public var description: String {
        String(format: "seed %llu at simulated %.3f s (hour %d): ", seed, Double(timeNanoseconds) / 1e9,
               Int(timeNanoseconds / Soak.hour)) + detail
    }
}

public struct SoakOutcome: Sendable {
    public var hours: Int
    public var simulatedNanoseconds: UInt64
    public var violation: SoakViolation?
    /// The first state sample of the run and the last one (after the last settle).
    public var firstSample: StateSizes?
    public var lastSample: StateSizes?
    public var passed: Bool { violation == nil }
}

public enum Soak {
    public static let hour: UInt64 = 3_600_000_000_000
    static let minute: UInt64 = 60_000_000_000

    /// What the seed picks for the whole soak: workers, dispatch, and the membership limit
    /// (sometimes lowered, so a few groups already need a pool of helper sockets).
    public static func setup(_ soak: SoakOptions) -> (workers: Int, dispatch: DispatchMode, membershipLimit: Int) {
        var rng = SimRandom.stream(seed: soak.seed, label: "soak-setup")
        let workers = 1 + rng.below(3)
        let dispatch: DispatchMode = rng.chance(0.8) ? .fanout : .partition
        let membershipLimit = rng.chance(0.3) ? 2 + rng.below(4) : KernelModel.defaultMembershipLimit
        return (soak.workers ?? workers, soak.dispatch ?? dispatch, membershipLimit)
    }

    /// What every soak window's simulator shares: the seed-picked relay shape, a sample per
    /// simulated minute, a stop at the first violation.
    static func simOptions(_ soak: SoakOptions, seed: UInt64) -> SimOptions {
        let (workers, dispatch, membershipLimit) = setup(soak)
        var options = SimOptions()
        options.seed = seed
        options.workers = workers
        options.dispatch = dispatch
        options.kernelMembershipLimit = membershipLimit
        options.coreSocketLimit = membershipLimit
        options.sampleInterval = minute
        options.stopAtFirstViolation = true
        options.driverBugs = soak.driverBugs
        return options
    }

    public static func run(_ soak: SoakOptions, progress: (SoakHour) -> Void = { _ in }) throws(SimError) -> SoakOutcome {
        guard soak.hours >= 1 else { throw SimError.usage("--hours must be at least 1") }
        guard soak.framesPerMinute >= 1 else { throw SimError.usage("frames per minute must be positive") }
        guard soak.windowHours >= 1 else { throw SimError.usage("--window-hours must be at least 1") }
        return soak.freshCorePerWindow ? try runFreshCores(soak, progress: progress) : try runOneCore(soak, progress: progress)
    }

    /// One core for the whole run. Simulated time starts after the relay's warm-up; a window
    /// starts when the one before has settled, and never less than its hours after that one.
    static func runOneCore(_ soak: SoakOptions, progress: (SoakHour) -> Void) throws(SimError) -> SoakOutcome {
        var generator = SoakWindowGenerator(seed: soak.seed)
        var options = simOptions(soak, seed: soak.seed)
        options.continuous = true
        var simulation: Simulation?
        var windowStart = options.warmup
        var leak = 0
        var index = 0
        var firstHour = 0
        var firstSample: StateSizes?
        var lastSample: StateSizes?
        while firstHour < soak.hours {
            let windowHours = min(soak.windowHours, soak.hours - firstHour)
            defer { index += 1; firstHour += windowHours }
            var window = generator.next(hour: index, framesPerMinute: soak.framesPerMinute, minutes: 60 * windowHours)
            let sim: Simulation
            if let simulation {
                sim = simulation
                try sim.load(window: window.input, at: windowStart)
            } else {
                window.input.declaredInterfaces = SoakWindowGenerator.inputs + SoakWindowGenerator.outputs
                options.faults = window.faults
                sim = try Simulation(input: window.input, options: options)
                simulation = sim
            }
            let result = try sim.runWindow()
            let start = windowStart
            func fail(_ at: UInt64, _ detail: String) -> SoakOutcome {
                let offset = at - min(at, start)
                return SoakOutcome(hours: firstHour + min(Int(offset / hour), windowHours - 1) + 1,
                                   simulatedNanoseconds: at - min(at, options.warmup),
                                   violation: SoakViolation(seed: soak.seed, timeNanoseconds: at - min(at, options.warmup), detail: detail),
                                   firstSample: firstSample, lastSample: lastSample)
            }
            if let first = result.violations.first {
                return fail(first.timeNanoseconds, "invariant \(first.invariant): \(first.detail)")
            }
            let bounds = SoakBounds.derive(
                maxRules: window.maxRules, specsSeen: window.specsSeen, scripted: window.input.events.count,
                frames: window.input.store.frames.count, frameBytes: window.input.store.arena.count, workers: options.workers,
                interfaces: SoakWindowGenerator.inputs.count + SoakWindowGenerator.outputs.count, socketLimit: options.coreSocketLimit)
            var hours = WindowHours(count: windowHours, start: start)
            for var sample in result.samples {
                leak += soak.leakPerSample
                sample.oracleOverflow += leak
                if firstSample == nil { firstSample = sample }
                lastSample = sample
                if let problem = bounds.check(sample) { return fail(sample.timeNanoseconds, "state bound: " + problem) }
                hours.add(sample)
            }
            if let problem = result.countersProblem { return fail(result.endNanoseconds, problem) }
            guard result.liveness.converged, result.liveness.probesForwarded == result.liveness.probesSent else {
                return fail(result.endNanoseconds, "settle after the window did not converge: \(result.liveness.detail ?? "probes lost")")
            }
            hours.report(firstHour: firstHour, frames: result.frames, faults: result.faults,
                         convergedAfterMs: result.liveness.convergedAfterMs, to: progress)
            if !soak.skipPruning { sim.compact() }
            windowStart = max(result.endNanoseconds + 1_000_000, windowStart + UInt64(windowHours) * hour)
            generator.carry(rules: window.finalRules)
        }
        return SoakOutcome(hours: soak.hours, simulatedNanoseconds: windowStart - options.warmup, violation: nil,
                           firstSample: firstSample, lastSample: lastSample)
    }

    /// The older mode: each window is a fresh `Simulation` (core and oracle), the rule set
    /// carried over; the soak's clock counts whole windows (traffic + settle) back to back.
    static func runFreshCores(_ soak: SoakOptions, progress: (SoakHour) -> Void) throws(SimError) -> SoakOutcome {
        let (workers, _, membershipLimit) = setup(soak)
        var firstSample: StateSizes?
        var lastSample: StateSizes?
        var generator = SoakWindowGenerator(seed: soak.seed)
        var clock: UInt64 = 0
        var leak = 0
        var index = 0
        var firstHour = 0
        while firstHour < soak.hours {
            let windowHours = min(soak.windowHours, soak.hours - firstHour)
            defer { index += 1; firstHour += windowHours }
            let window = generator.next(hour: index, framesPerMinute: soak.framesPerMinute, minutes: 60 * windowHours)
            var options = simOptions(soak, seed: soak.seed &+ UInt64(index) &* 0x9E37_79B9)
            options.faults = window.faults
            let result = try Simulation(input: window.input, options: options).run()
            // Window time -> soak time: the window's warm-up (before its first frame) counts as
            // the window's start, so a violation during it never wraps below the soak clock.
            func soakTime(_ at: UInt64) -> UInt64 { clock + (at - min(at, options.warmup)) }
            func fail(_ at: UInt64, _ detail: String) -> SoakOutcome {
                SoakOutcome(hours: firstHour + Int(min(at &- min(at, options.warmup), UInt64(windowHours) * hour - 1) / hour) + 1,
                            simulatedNanoseconds: soakTime(at),
                            violation: SoakViolation(seed: soak.seed, timeNanoseconds: soakTime(at), detail: detail),
                            firstSample: firstSample, lastSample: lastSample)
            }
            if let first = result.violations.first {
                return fail(first.timeNanoseconds, "invariant \(first.invariant): \(first.detail)")
            }
            let bounds = SoakBounds.derive(
                maxRules: window.maxRules, specsSeen: window.specsSeen, scripted: window.input.events.count,
                frames: window.input.store.frames.count, frameBytes: window.input.store.arena.count, workers: workers,
                interfaces: window.input.interfaces.count,
                socketLimit: membershipLimit)
            var hours = WindowHours(count: windowHours, start: options.warmup)
            for var sample in result.samples {
                // The test hook: an oracle table that never forgets, growing across windows.
                leak += soak.leakPerSample
                sample.oracleOverflow += leak
                if firstSample == nil { firstSample = sample }
                lastSample = sample
                if let problem = bounds.check(sample) { return fail(sample.timeNanoseconds, "state bound: " + problem) }
                hours.add(sample)
            }
            if let problem = countersProblem(result.report) { return fail(result.report.run.simulatedNanoseconds, problem) }
            let liveness = result.report.liveness
            guard liveness.converged, liveness.probesForwarded == liveness.probesSent else {
                return fail(result.report.run.simulatedNanoseconds,
                            "settle after the window did not converge: \(liveness.detail ?? "probes lost")")
            }
            hours.report(firstHour: firstHour, frames: result.report.ingress.traceFrames,
                         faults: result.report.faultsInjected.total, convergedAfterMs: liveness.convergedAfterMs, to: progress)
            // A window covers its hours of traffic, plus the settle when that runs past them.
            clock = soakTime(max(result.report.run.simulatedNanoseconds, options.warmup + UInt64(windowHours) * Self.hour))
            generator.carry(rules: window.finalRules)
        }
        return SoakOutcome(hours: soak.hours, simulatedNanoseconds: clock, violation: nil,
                           firstSample: firstSample, lastSample: lastSample)
    }

    /// A window's state samples per hour: the peak of every state size and the rule count at
    /// the hour's last sample (the settle's samples go to the window's last hour).
    struct WindowHours {
        var peaks: [[String: Int]]
        var lastRules: [Int]
        let start: UInt64

        init(count: Int, start: UInt64) {
            peaks = Array(repeating: [:], count: count)
            lastRules = Array(repeating: 0, count: count)
            self.start = start
        }

        mutating func add(_ sample: StateSizes) {
            let h = min(Int((sample.timeNanoseconds &- min(sample.timeNanoseconds, start)) / Soak.hour), peaks.count - 1)
            for (name, value) in sample.fields { peaks[h][name] = max(peaks[h][name] ?? 0, value) }
            lastRules[h] = sample.activeRules
        }

        /// One line per hour; the window's totals go with its last hour.
        func report(firstHour: Int, frames: Int, faults: Int, convergedAfterMs: Double?, to progress: (SoakHour) -> Void) {
            for h in peaks.indices {
                let last = h == peaks.count - 1
                progress(SoakHour(
                    hour: firstHour + h, activeRules: lastRules[h],
                    peak: StateSizes().fields.map { ($0.name, peaks[h][$0.name] ?? 0) },
                    frames: last ? frames : nil, faults: last ? faults : nil,
                    convergedAfterMs: last ? convergedAfterMs : nil))
            }
        }
    }

    /// Counters that must add up: nothing goes out that the workers did not hand to the driver,
    /// and nothing is handed to the driver that the operator's rules did not match.
    static func countersProblem(_ report: SimReport) -> String? {
        for rule in report.rules {
            for output in rule.outputs where output.transmitted > output.handedToDriver {
                return "counters: \(rule.input) -> \(output.output) transmitted \(output.transmitted) > handed to driver \(output.handedToDriver)"
            }
            if rule.accepted > rule.matched {
                return "counters: \(rule.input) accepted \(rule.accepted) > matched \(rule.matched)"
            }
        }
        return nil
    }
}

/// One window's generated input.
struct SoakWindow {
    var input: SimInput
    var faults: FaultSpec
    var finalRules: [RuleSpec]
    var maxRules: Int
    var specsSeen: Int
}

/// Generates windows one at a time: each from its own random stream (seed, hour), starting
/// from the rules the previous window ended with.
struct SoakWindowGenerator {
    let seed: UInt64
    var rules: [RuleSpec] = []
    var ruleNumber = 0
    static let inputs = ["in0", "in1"].map { InterfaceName($0)! }
    static let outputs = ["out0", "out1"].map { InterfaceName($0)! }
    static let maxActiveRules = 40

    init(seed: UInt64) { self.seed = seed }

    mutating func carry(rules: [RuleSpec]) { self.rules = rules }

    static func validSet(_ candidates: [RuleSpec]) -> [RuleSpec] {
        var book = RuleBook()
        var kept: [RuleSpec] = []
        for spec in candidates where (try? book.add(spec)) != nil { kept.append(spec) }
        return kept
    }

    mutating func next(hour: Int, framesPerMinute: Int, minutes: Int = 60) -> SoakWindow {
        var rng = SimRandom.stream(seed: seed &+ UInt64(hour), label: "soak-window")
        let groups = (0..<8).map { IPv4Address(239, 1, 1, UInt8(1 + $0)) }
        let ports: [UInt16] = [5000, 5001, 5002]
        let sources = [IPv4Address(198, 18, 1, 1), IPv4Address(198, 18, 1, 2)]
        var number = ruleNumber
        func randomRule() -> RuleSpec {
            number += 1
            let input = InputSpec(
                interface: Self.inputs[rng.below(2)], group: groups[rng.below(groups.count)],
                port: ports[rng.below(ports.count)], source: rng.chance(0.25) ? sources[rng.below(2)] : nil)
            let outs = (0..<(1 + rng.below(3))).map { _ in
                OutputSpec(interface: Self.outputs[rng.below(2)], destination: IPv4Address(239, 10, UInt8(rng.below(4)), UInt8(1 + rng.below(9))),
                           port: UInt16(6000 + rng.below(50)), ttl: UInt8(1 + rng.below(64)))
            }
            return RuleSpec(name: "s\(number)", input: input, outputs: outs)
        }
        /// Many groups on one interface: past one helper socket's worth.
        func groupBlock() -> [RuleSpec] {
            (0..<(10 + rng.below(20))).map { g in
                number += 1
                return RuleSpec(name: "s\(number)",
                                input: InputSpec(interface: Self.inputs[0], group: IPv4Address(239, 3, UInt8(hour % 4), UInt8(1 + g)), port: 5000),
                                outputs: [OutputSpec(interface: Self.outputs[rng.below(2)], destination: IPv4Address(239, 30, 0, UInt8(1 + g)), port: 6000, ttl: 8)])
            }
        }
        if rules.isEmpty { rules = Self.validSet((0..<(2 + rng.below(4))).map { _ in randomRule() }) }
        let initial = rules
        var current = rules
        var maxRules = current.count
        var seen = Set(current)

        // Control-plane events: about one a minute, of every kind.
        var events: [ScriptedEvent] = []
        for minute in 0..<minutes where rng.chance(0.6) {
            let at = UInt64(minute) * Soak.minute + UInt64(rng.below(59_000)) * 1_000_000
            switch rng.below(7) {
            case 0, 1:
                let spec = randomRule()
                if current.count < Self.maxActiveRules, Self.validSet(current + [spec]).count == current.count + 1 {
                    current.append(spec)
                    events.append(ScriptedEvent(at: at, kind: .ruleAdd(spec)))
                }
            case 2:
                if !current.isEmpty {
                    let victim = current.remove(at: rng.below(current.count))
                    events.append(ScriptedEvent(at: at, kind: .ruleRemove(victim.name ?? "")))
                }
            case 3:
                let interface = (Self.inputs + Self.outputs)[rng.below(4)]
                events.append(ScriptedEvent(at: at, kind: .interfaceDown(interface)))
                events.append(ScriptedEvent(at: at + UInt64(1 + rng.below(20_000)) * 1_000_000, kind: .interfaceUp(interface)))
            case 4:
                events.append(ScriptedEvent(at: at, kind: .workerCrash(rng.below(4))))
            default:
                var reload = current.filter { _ in rng.chance(0.7) } + [randomRule()]
                if rng.chance(0.2) { reload += groupBlock() }
                reload = Array(Self.validSet(reload).prefix(Self.maxActiveRules))
                current = reload
                events.append(ScriptedEvent(at: at, kind: .configReload(reload)))
            }
            maxRules = max(maxRules, current.count)
            seen.formUnion(current)
        }
        events = events.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element)

        // Traffic, a minute at a time, against whichever rules the script has active then.
        var store = FrameStore()
        store.epoch = 1_700_000_000_000_000_000
        var active = initial
        var nextEvent = 0
        var time: UInt64 = 0
        var id = 0
        for minute in 0..<minutes {
            let count = framesPerMinute * (rng.chance(0.05) ? 10 : 1)
            let spacing = Soak.minute / UInt64(count)
            for index in 0..<count {
                time = max(time + 1_000, UInt64(minute) * Soak.minute + UInt64(index) * spacing + UInt64(rng.below(Int(spacing / 2))))
                while nextEvent < events.count, events[nextEvent].at <= time {
                    switch events[nextEvent].kind {
                    case let .ruleAdd(spec): active.append(spec)
                    case let .ruleRemove(name): active.removeAll { $0.name == name }
                    case let .configReload(specs): active = specs
                    default: break
                    }
                    nextEvent += 1
                }
                id += 1
                let payload = (0..<(8 + rng.below(64))).map { UInt8(truncatingIfNeeded: $0 &+ id) }
                let roll = rng.unit()
                if roll < 0.85, !active.isEmpty {
                    let rule = active[rng.below(active.count)]
                    let iface = rule.input.interface == Self.inputs[0] ? 0 : 1
                    let bytes = TrafficMaker.datagram(interface: iface, source: rule.input.source ?? .v4(sources[rng.below(2)]),
                                                      group: rule.input.group, port: rule.input.port, payload: payload,
                                                      id: UInt16(truncatingIfNeeded: id))
                    store.append(time: time, interface: rule.input.interface, link: .ethernet, bytes: bytes)
                } else {
                    let iface = rng.below(2)
                    let kinds = TrafficMaker.Malformation.allCases
                    let bytes = roll < 0.93
                        ? TrafficMaker.datagram(interface: iface, source: sources[0], group: groups[rng.below(groups.count)],
                                                port: 5100, payload: payload)
                        : TrafficMaker.malformed(kinds[rng.below(kinds.count)], interface: iface,
                                                 group: groups[rng.below(groups.count)], port: 5000, payload: payload)
                    store.append(time: time, interface: Self.inputs[iface], link: .ethernet, bytes: bytes)
                }
            }
        }
        ruleNumber = number

        var faults = FaultSpec()
        faults.joinFailure = 0.05
        faults.flapsPerSecond = 1.0 / 600
        faults.crashesPerSecond = 1.0 / 900
        faults.ingressLoss = 0.01
        faults.sendFailure = 0.01
        faults.controlLoss = 0.005
        faults.controlDelay = 0.01
        return SoakWindow(input: SimInput(store: store, rules: initial, events: events), faults: faults,
                          finalRules: current, maxRules: max(maxRules, 1), specsSeen: seen.count)
    }
}
