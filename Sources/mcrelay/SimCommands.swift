// The simulator's subcommands (issue 3): `sim replay|fuzz|shrink|bench`, and the hidden
// `sim make-traces` that regenerates the checked-in cases under traces/.
import ArgumentParser
import Foundation
import RelayControl
import RelayCore
import Sim

struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Deterministic simulator: replay traces through the relay's core against a model of the kernel.",
        subcommands: [Replay.self, Fuzz.self, Shrink.self, Bench.self, Soak.self, MakeTraces.self])
}

/// Options shared by replay-like commands.
struct SimRunOptions: ParsableArguments {
    @Option(help: "Seed for every random choice (faults, fanout has no randomness).") var seed: UInt64 = 0
    @Option(help: ArgumentHelp(
        "Faults: none, swarm (the seed picks them), or NAME=P,... with NAME in loss, dup, reorder, delay, truncate, corrupt, join, send, ctl_loss, ctl_delay (probabilities) and flap, crash (per second).",
        valueName: "SPEC")) var faults: String = "none"
    @Option(help: "recorded (capture timestamps) or topspeed (1 µs apart).") var timing: String = "recorded"
    @Option(help: "Worker processes.") var workers: Int = 2
    @Option(help: "fanout (PACKET_FANOUT groups) or partition (one worker per interface).") var dispatch: String = "fanout"
    @Option(help: "Groups per helper socket the relay assumes.") var socketLimit: Int = 20
    @Option(help: "net.ipv4.igmp_max_memberships in the kernel model.") var kernelLimit: Int = 20
    @Option(name: .customLong("driver-bug"), help: ArgumentHelp(
        "Play a known driver bug to see the checks catch it: ignore-fanout, report-joins-as-succeeded, open-all-gates, drop-gate-deltas, drop-leaves (repeatable).",
        valueName: "BUG")) var driverBugs: [String] = []

    func apply(to options: inout SimOptions) throws {
        options.seed = seed
        if faults == "swarm" {
            options.swarm = true
        } else {
            options.faults = try FaultSpec.parse(faults)
        }
        guard let timing = Timing(rawValue: timing) else { throw ValidationError("--timing must be recorded or topspeed") }
        options.timing = timing
        guard let dispatch = DispatchMode(rawValue: dispatch) else { throw ValidationError("--dispatch must be fanout or partition") }
        options.dispatch = dispatch
        guard (1...64).contains(workers) else { throw ValidationError("--workers must be 1-64") }
        options.workers = workers
        guard socketLimit > 0, kernelLimit > 0 else { throw ValidationError("socket limits must be positive") }
        options.coreSocketLimit = socketLimit
        options.kernelMembershipLimit = kernelLimit
        for name in driverBugs {
            guard let bug = DriverBug(rawValue: name) else {
                throw ValidationError("--driver-bug \(name): one of " + DriverBug.allCases.map(\.rawValue).joined(separator: ", "))
            }
            options.driverBugs.insert(bug)
        }
    }
}

/// Runs `body`, turning simulator errors into a clear message and exit status 2.
func simMain(_ body: () throws -> Void) throws {
    do { try body() } catch let error as SimError {
        printError(error.description)
        throw ExitCode(2)
    } catch let error as ConfigError {
        printError(error.description)
        throw ExitCode(2)
    }
}

func printSummary(_ result: SimResult) {
    let report = result.report
    print("frames: \(report.ingress.traceFrames) in trace, \(report.ingress.arrived) arrived, "
        + "\(report.ingress.notJoined) filtered (group not joined), \(report.ingress.interfaceDown) on a down interface")
    for rule in report.rules {
        for output in rule.outputs {
            print("  \(rule.name ?? rule.id) \(rule.input) -> \(output.output): \(output.transmitted) sent of \(output.expected) matched"
                + (output.sendErrors > 0 ? ", \(output.sendErrors) send errors" : ""))
        }
    }
    let drops = report.drops.filter { $0.value > 0 }.sorted { $0.key < $1.key }
    if !drops.isEmpty { print("drops: " + drops.map { "\($0.key)=\($0.value)" }.joined(separator: " ")) }
    if report.faultsInjected.total > 0 {
        let data = (try? JSONEncoder().encode(report.faultsInjected)).flatMap {
            try? JSONSerialization.jsonObject(with: $0) as? [String: Int]
        } ?? [:]
        print("faults injected: " + data.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
    }
    if let segments = report.segments {
        print("segments: \(segments.hosts) hosts, \(segments.routers) other routers; hosts sent \(segments.hostReportsV3) v3 and "
            + "\(segments.hostReportsV2) v2 reports, \(segments.hostLeaves) leaves; the relay sent \(segments.relayGeneralQueries) general "
            + "and \(segments.relaySpecificQueries) specific queries; \(segments.framesLost) frame copies lost")
    }
    let liveness = report.liveness
    print("liveness: " + (liveness.converged
        ? "converged \(liveness.convergedAfterMs ?? 0) ms after faults stopped; \(liveness.probesForwarded)/\(liveness.probesSent) probes forwarded"
        : "NOT converged: \(liveness.detail ?? "")"))
    for invariant in report.invariants {
        print("  \(invariant.violations == 0 ? "ok  " : "FAIL") \(invariant.name) (\(invariant.checked) checks, \(invariant.violations) violations)")
    }
    for violation in result.violations.prefix(10) { print("violation: \(violation)") }
    print("result: \(report.result)")
}

extension SimCommand {
    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay pcap traces through the relay's core and write what it would transmit.",
            discussion: """
                Writes DIR/<egress iface>.pcap and DIR/report.json. Exit status: 0 when every invariant \
                holds, 1 when one is broken, 2 for bad input.
                """)

        @Option(name: .customLong("trace"), help: ArgumentHelp("IFACE=FILE.pcap (repeatable); any=FILE for `tcpdump -i any` captures.", valueName: "IFACE=FILE"))
        var traces: [String] = []
        @Option(name: .customLong("iface-map"), help: ArgumentHelp("INDEX=NAME for frames of an any= capture.", valueName: "INDEX=NAME"))
        var interfaceMap: [String] = []
        @Option(help: "The daemon's JSON config file.") var config: String?
        @Option(help: "JSON lines of control-plane events.") var events: String?
        @Option(help: ArgumentHelp("A flight recording (`mcrelay daemon --record DIR`): its rules, events and frames; workers, dispatch and limits from its manifest.", valueName: "DIR"))
        var recording: String?
        @Option(name: .customLong("case"), help: ArgumentHelp("A case directory (case.json, as `sim fuzz --save`, `sim shrink` and --save-case write): its traces, config, events and options.", valueName: "DIR"))
        var caseDirectory: String?
        @Option(name: .customLong("save-case"), help: ArgumentHelp("With --recording: also write it as a case directory (case.json, config, events, pcaps, expected.json) for traces/.", valueName: "DIR"))
        var saveCase: String?
        @Option(name: .customLong("out-dir"), help: "Directory for the egress captures and report.json.") var outDir: String
        @Flag(help: "Run twice and report the first divergence.") var checkDeterminism = false
        @Flag(help: "Print every control-plane step and core action as the run goes.") var verbose = false
        @OptionGroup var common: SimRunOptions

        func run() throws {
            try simMain {
                if let recording {
                    try replayRecording(recording)
                    return
                }
                if let caseDirectory {
                    guard traces.isEmpty, config == nil, events == nil, interfaceMap.isEmpty, saveCase == nil else {
                        throw SimError.usage("--case brings its own traces, config, events and options: drop the others")
                    }
                    let loaded = try SimCase.load(directory: caseDirectory)
                    try run(input: loaded.input, options: loaded.options)
                    return
                }
                guard let configPath = config else { throw SimError.usage("sim replay needs --config FILE (or --recording DIR)") }
                if saveCase != nil { throw SimError.usage("--save-case works with --recording") }
                if traces.isEmpty { print("note: no --trace given: a control-plane-only run (events, faults, liveness probes)") }
                var options = SimOptions()
                try common.apply(to: &options)
                if options.swarm { print("swarm faults for seed \(options.seed): \(options.effectiveFaults)") }
                let sources = try traces.map { text throws(SimError) in try TraceSource.parse(text) }
                let map = try TraceLoader.parseInterfaceMap(interfaceMap)
                var summary = TraceLoader.LoadSummary()
                let store = try TraceLoader.load(sources, interfaceMap: map, summary: &summary)
                for (index, count) in summary.unmappedFrames.sorted(by: { $0.key < $1.key }) {
                    print("warning: \(count) frame(s) from interface index \(index) skipped: no --iface-map \(index)=NAME")
                }
                let config = try ConfigFile.load(path: configPath)
                let scripted = try events.map { path throws(SimError) in try EventScript.load(path: path) } ?? []
                let input = SimInput(store: store, rules: config.rules, events: scripted, queriers: config.queriers)
                try run(input: input, options: options)
            }
        }

        /// Runs one input: report, summary, the determinism check; exit 1 when a check fails.
        @discardableResult
        func run(input: SimInput, options given: SimOptions) throws -> SimResult {
            var options = given
            do { try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true) } catch {
                throw SimError.output("cannot create \(outDir): \(error.localizedDescription)")
            }
            options.recordSteps = checkDeterminism
            options.verbose = verbose
            let result = try Simulation(input: input, options: options, outputDirectory: outDir).run()
            do { try result.report.json().write(to: URL(fileURLWithPath: outDir + "/report.json")) } catch {
                throw SimError.output("\(outDir)/report.json: \(error.localizedDescription)")
            }
            printSummary(result)
            if checkDeterminism {
                options.verbose = false
                let second = try Simulation(input: input, options: options).run()
                if let divergence = DeterminismCheck.firstDivergence(result, second) {
                    print("determinism: DIVERGED at \(divergence)")
                    throw ExitCode(1)
                }
                print("determinism: two runs identical (\(result.steps.count) steps, same egress hashes and report)")
            }
            print("wrote \(outDir)/report.json and " + result.report.egress.keys.sorted().map { "\(outDir)/\($0).pcap" }.joined(separator: ", "))
            if !result.passed { throw ExitCode(1) }
            return result
        }
    }

    struct Fuzz: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Random rules, traffic, events and faults per seed; stops at the first failure.")

        @Option(help: "First seed; run i uses seed + i.") var seed: UInt64 = 1
        @Option(help: "Number of seeds to run.") var runs: Int = 100
        @Option(help: "Write the failing case here, ready for `sim replay` and `sim shrink`.") var save: String?
        @Option(help: "Multiply the traffic per case.") var scale: Int = 1
        @Flag(help: "Also run each case twice and compare.") var checkDeterminism = false
        @Option(name: .customLong("driver-bug"), help: ArgumentHelp(
            "Play a known driver bug (ignore-fanout, report-joins-as-succeeded, open-all-gates, drop-gate-deltas, drop-leaves) to watch fuzzing find it.", valueName: "BUG"))
        var driverBugs: [String] = []

        func run() throws {
            try simMain {
                guard runs > 0, scale > 0 else { throw SimError.usage("--runs and --scale must be positive") }
                var bugs = Set<DriverBug>()
                for name in driverBugs {
                    guard let bug = DriverBug(rawValue: name) else { throw SimError.usage("--driver-bug \(name): unknown") }
                    bugs.insert(bug)
                }
                let clock = ContinuousClock()
                let started = clock.now
                var divergence: (UInt64, String)?
                let outcome = try Fuzzer.run(seed: seed, runs: runs, scale: scale, driverBugs: bugs) { caseSeed, result in
                    if runs == 1 { print("seed \(caseSeed): swarm faults \(result.report.run.faults)") }
                    let done = caseSeed &- seed &+ 1
                    if done % 10_000 == 0, done < UInt64(runs) { print("fuzz: \(done) seeds passed so far") }
                    guard checkDeterminism, divergence == nil else { return }
                    var again = FuzzCase.generate(seed: caseSeed, scale: scale)
                    again.options.recordSteps = true
                    again.options.driverBugs = bugs
                    let first = again
                    if let a = try? first.run(), let b = try? again.run(), let d = DeterminismCheck.firstDivergence(a, b) {
                        divergence = (caseSeed, d)
                    }
                }
                let seconds = Double((clock.now - started).components.attoseconds) / 1e18 + Double((clock.now - started).components.seconds)
                if let (caseSeed, text) = divergence {
                    print("determinism: seed \(caseSeed) diverged at \(text)")
                    throw ExitCode(1)
                }
                guard let failure = outcome.failure else {
                    print("fuzz: \(outcome.runs) seeds from \(seed) passed (\(String(format: "%.0f", Double(outcome.runs) / max(seconds, 1e-9) * 60)) seeds/minute)")
                    return
                }
                print("fuzz: seed \(failure.seed) FAILED after \(outcome.runs) run(s); swarm faults: \(failure.result.report.run.faults)")
                for violation in failure.result.violations.prefix(5) { print("violation: \(violation)") }
                print("reproduce: mcrelay sim fuzz --seed \(failure.seed) --runs 1" + (scale != 1 ? " --scale \(scale)" : "")
                    + bugs.map(\.rawValue).sorted().map { " --driver-bug \($0)" }.joined())
                if let save {
                    try failure.simCase.save(directory: save, description: "sim fuzz seed \(failure.seed)")
                    print("saved the case to \(save); replay: \(failure.simCase.replayCommand(directory: save))")
                    print("shrink: mcrelay sim shrink \(save)")
                }
                throw ExitCode(1)
            }
        }
    }

    struct Shrink: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cut a failing case (from `sim fuzz --save`) down while it still fails; writes DIR/shrunk.")

        @Argument(help: "The case directory.") var directory: String
        @Option(help: "Give up after this many runs.") var maxRuns: Int = 2000

        func run() throws {
            try simMain {
                let original = try SimCase.load(directory: directory)
                guard let outcome = try Shrinker.shrink(original, maximumRuns: maxRuns, log: { print("shrink: \($0)") }) else {
                    print("shrink: \(directory) does not fail; nothing to shrink")
                    throw ExitCode(1)
                }
                let target = directory + "/shrunk"
                try outcome.shrunk.save(directory: target, description: "shrunk from \(directory): fails \(outcome.invariant)")
                print("shrink: still fails \(outcome.invariant) after \(outcome.runs) runs")
                print("  frames \(original.input.store.frames.count) -> \(outcome.shrunk.input.store.frames.count), "
                    + "events \(original.input.events.count) -> \(outcome.shrunk.input.events.count), "
                    + "rules \(original.input.rules.count) -> \(outcome.shrunk.input.rules.count), "
                    + "workers \(original.options.workers) -> \(outcome.shrunk.options.workers)")
                for violation in outcome.result.violations.prefix(3) { print("violation: \(violation)") }
                print("replay: \(outcome.shrunk.replayCommand(directory: target))")
            }
        }
    }

    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay throughput (simulated packets per second) and fuzz seeds per minute.")

        @Option(help: "Frames in the synthetic replay.") var packets: Int = 1_000_000
        @Option(help: "Fuzz seeds to time (0 skips).") var fuzzSeeds: Int = 50
        @Option(help: "Also write egress pcaps to this directory (default: hash only).") var outDir: String?
        @Option(help: "Also write the figures as JSON to this file (for `make bench`'s summary table).") var json: String?

        func run() throws {
            try simMain {
                guard packets > 0 else { throw SimError.usage("--packets must be positive") }
                let clock = ContinuousClock()
                let simCase = Sim.Bench.replayCase(packets: packets)
                func seconds(_ duration: Duration) -> Double {
                    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
                }
                let loadStart = clock.now
                let simulation = try Simulation(input: simCase.input, options: simCase.options, outputDirectory: outDir)
                let loaded = clock.now
                let result = try simulation.run()
                let runSeconds = seconds(clock.now - loaded)
                let sent = result.report.egress.values.reduce(0) { $0 + $1.frames }
                print("replay: \(packets) packets (4 streams, 2 outputs each, 2 workers, invariants on) -> \(sent) egress frames")
                print("  setup (classify frames, build state): \(String(format: "%.3f", seconds(loaded - loadStart))) s")
                print("  run: \(String(format: "%.3f", runSeconds)) s = \(String(format: "%.0f", Double(packets) / runSeconds)) simulated packets/s"
                    + " (\(String(format: "%.0f", Double(packets) / (runSeconds + seconds(loaded - loadStart)))) including setup); result \(result.report.result)")
                var figures: [String: Double] = [
                    "replay_packets": Double(packets), "replay_setup_s": seconds(loaded - loadStart),
                    "replay_run_s": runSeconds, "replay_pps": Double(packets) / runSeconds,
                    "replay_failed": result.report.passed ? 0 : 1,
                ]
                if fuzzSeeds > 0 {
                    let fuzzStart = clock.now
                    let outcome = try Fuzzer.run(seed: 1, runs: fuzzSeeds)
                    let fuzzSeconds = seconds(clock.now - fuzzStart)
                    print("fuzz: \(outcome.runs) seeds in \(String(format: "%.2f", fuzzSeconds)) s: "
                        + "\(String(format: "%.0f", Double(outcome.runs) / fuzzSeconds * 60)) seeds/minute"
                        + (outcome.failure.map { " (seed \($0.seed) failed)" } ?? ""))
                    figures["fuzz_seeds"] = Double(outcome.runs)
                    figures["fuzz_seeds_per_minute"] = Double(outcome.runs) / fuzzSeconds * 60
                    figures["fuzz_failed"] = outcome.failure == nil ? 0 : 1
                }
                if let json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
                    try encoder.encode(figures).write(to: URL(fileURLWithPath: json))
                }
            }
        }
    }

    struct Soak: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A long deterministic run of simulated time with churn and faults, checking state stays bounded.",
            discussion: """
                One relay core for the whole run, fed hour-long windows generated one at a time from the seed: \
                rule adds/removes/reloads, interface flaps, worker crashes, join failures, traffic bursts; each \
                ends with a fault-free settle that must converge, after which the oracle's and the simulator's \
                bookkeeping is pruned to what can still matter. State sizes (core, kernel model, oracle, \
                simulator) are sampled every simulated minute against bounds from the window's rules and size, \
                never from elapsed time. Exit status 1 on the first violation (with the seed and simulated time).
                """)

        @Option(help: "Seed for everything the soak generates.") var seed: UInt64 = 0
        @Option(help: "Simulated hours.") var hours: Int = 24
        @Option(help: "Valid datagrams per simulated minute outside bursts.") var framesPerMinute: Int = 20
        @Option(help: "Simulated hours per window (traffic between two settles; memory grows with this, not --hours).")
        var windowHours: Int = 1
        @Flag(help: "A new relay core (and oracle) per window instead of one for the whole run.")
        var freshCorePerWindow = false
        @Option(help: "Also write the per-hour lines and the summary to this file.") var report: String?
        @Option(name: .customLong("driver-bug"), help: ArgumentHelp(
            "Play a known driver bug (ignore-fanout, report-joins-as-succeeded) to see the soak catch it.", valueName: "BUG"))
        var driverBugs: [String] = []

        func run() throws {
            try simMain {
                var options = SoakOptions()
                options.seed = seed
                options.hours = hours
                options.framesPerMinute = framesPerMinute
                options.windowHours = windowHours
                options.freshCorePerWindow = freshCorePerWindow
                for name in driverBugs {
                    guard let bug = DriverBug(rawValue: name) else { throw SimError.usage("--driver-bug \(name): unknown") }
                    options.driverBugs.insert(bug)
                }
                var lines: [String] = []
                func emit(_ line: String) { print(line); lines.append(line) }
                let setup = Sim.Soak.setup(options)
                emit("soak: seed \(seed), \(hours) simulated hours, \(setup.workers) worker(s), \(setup.dispatch.rawValue) dispatch, "
                    + "igmp_max_memberships \(setup.membershipLimit), \(framesPerMinute) frames/minute (x10 in bursts), \(windowHours)-hour windows, "
                    + (freshCorePerWindow ? "a new core per window" : "one core for the whole run"))
                let rssAtStart = residentKilobytes()
                let clock = ContinuousClock()
                let started = clock.now
                let outcome = try Sim.Soak.run(options) { emit($0.line) }
                let elapsed = clock.now - started
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                let simulatedHours = Double(outcome.simulatedNanoseconds) / Double(Sim.Soak.hour)
                emit(String(format: "soak: seed %llu, %.2f simulated hours (%d hours checked, windows of %d h) in %.1f s wall clock = %.1f simulated hours per wall-clock minute",
                            seed, simulatedHours, outcome.hours, windowHours, seconds, simulatedHours / max(seconds, 1e-9) * 60))
                if let first = outcome.firstSample, let last = outcome.lastSample {
                    func line(_ sizes: StateSizes) -> String { sizes.fields.map { "\($0.name)=\($0.value)" }.joined(separator: " ") }
                    emit(String(format: "state at start (simulated %.1f min): ", Double(first.timeNanoseconds) / 6e10) + line(first))
                    emit(String(format: "state at end   (simulated %.1f h):   ", Double(last.timeNanoseconds) / 3.6e12) + line(last))
                }
                // Not part of the deterministic lines above: the process's own memory.
                if let start = rssAtStart, let end = residentKilobytes() {
                    emit("process RSS: \(start) kB after setup, \(end) kB at the end")
                }
                if let violation = outcome.violation { emit("violation: \(violation)") }
                emit("result: \(outcome.passed ? "pass" : "fail")")
                if let report {
                    do { try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: report)) } catch {
                        throw SimError.output("\(report): \(error.localizedDescription)")
                    }
                }
                if !outcome.passed { throw ExitCode(1) }
            }
        }
    }

    struct MakeTraces: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "make-traces", abstract: "Regenerate the checked-in cases under traces/.", shouldDisplay: false)

        @Option(help: "Where to write the cases.") var root: String = "traces"

        func run() throws {
            try simMain {
                for line in try TraceCases.write(to: root) { print(line) }
            }
        }
    }
}

/// VmRSS of this process in kB, from /proc/self/status (nil where that is unreadable).
private func residentKilobytes() -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }
    return nil
}
