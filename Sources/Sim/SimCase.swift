import Foundation
import PcapFile
import RelayControl
import RelayCore

/// A replayable case on disk, as `sim fuzz --save` and `sim make-traces` write it and
/// `sim shrink` and the tests read it:
///
///     DIR/case.json      run options (seed, faults, workers, ...) and the trace files
///     DIR/config.json    the daemon's config file
///     DIR/events.jsonl   control-plane events (may be empty)
///     DIR/<iface>.pcap   one Ethernet capture per ingress interface
///     DIR/expected.json  (checked-in cases) the summary a replay must reproduce
public struct SimCase: Sendable {
    public var input: SimInput
    public var options: SimOptions

    public init(input: SimInput, options: SimOptions) {
        self.input = input
        self.options = options
    }

    struct Manifest: Codable {
        var seed: UInt64
        var faults: String
        var swarm: Bool
        var timing: String
        var workers: Int
        var dispatch: String
        var coreSocketLimit: Int
        var kernelMembershipLimit: Int
        var coreSocketLimitIPv6: Int?
        var kernelMembershipLimitIPv6: Int?
        var traces: [String: String]
        var schedule: [String]?
        var driverBugs: [String]?
        var description: String?
        /// Time zero of the case (ns since the Unix epoch) when it is not the first frame:
        /// a recording's events may come before its first frame (`sim replay --save-case`).
        var epochNs: UInt64?
        /// Interface facts the egress frames are built from (absent: simulated ones).
        var interfaces: [InterfaceFacts]?
        var egress: String?

        enum CodingKeys: String, CodingKey {
            case seed, faults, swarm, timing, workers, dispatch, traces, schedule, description, interfaces, egress
            case epochNs = "epoch_ns"
            case driverBugs = "driver_bugs"
            case coreSocketLimit = "core_socket_limit", kernelMembershipLimit = "kernel_membership_limit"
            case coreSocketLimitIPv6 = "core_socket_limit_ipv6", kernelMembershipLimitIPv6 = "kernel_membership_limit_ipv6"
        }
    }

    public static func load(directory: String) throws(SimError) -> SimCase {
        let manifestPath = directory + "/case.json"
        guard let data = FileManager.default.contents(atPath: manifestPath) else {
            throw SimError.input("\(manifestPath): cannot read (is \(directory) a case directory written by `sim fuzz --save`?)")
        }
        let manifest: Manifest
        do { manifest = try JSONDecoder().decode(Manifest.self, from: data) } catch {
            throw SimError.input("\(manifestPath): \(error)")
        }
        var options = SimOptions()
        options.seed = manifest.seed
        options.faults = try FaultSpec.parse(manifest.faults)
        options.swarm = manifest.swarm
        guard let timing = Timing(rawValue: manifest.timing) else { throw SimError.input("\(manifestPath): bad timing") }
        options.timing = timing
        options.workers = manifest.workers
        guard let dispatch = DispatchMode(rawValue: manifest.dispatch) else { throw SimError.input("\(manifestPath): bad dispatch") }
        options.dispatch = dispatch
        options.coreSocketLimit = manifest.coreSocketLimit
        options.kernelMembershipLimit = manifest.kernelMembershipLimit
        options.coreSocketLimitIPv6 = manifest.coreSocketLimitIPv6 ?? SocketLimits.defaultIPv6
        options.kernelMembershipLimitIPv6 = manifest.kernelMembershipLimitIPv6 ?? KernelModel.defaultIPv6MembershipLimit
        for facts in manifest.interfaces ?? [] { options.interfaceFacts[facts.name] = facts }
        if let egress = manifest.egress {
            guard let mode = EgressMode(rawValue: egress) else { throw SimError.input("\(manifestPath): bad egress \"\(egress)\"") }
            options.egressMode = mode
        }
        for name in manifest.driverBugs ?? [] {
            guard let bug = DriverBug(rawValue: name) else { throw SimError.input("\(manifestPath): unknown driver bug \"\(name)\"") }
            options.driverBugs.insert(bug)
        }
        let config: ConfigFile
        do { config = try ConfigFile.load(path: directory + "/config.json") } catch { throw SimError.input(error.description) }
        let eventsPath = directory + "/events.jsonl"
        let events = FileManager.default.fileExists(atPath: eventsPath) ? try EventScript.load(path: eventsPath) : []
        var summary = TraceLoader.LoadSummary()
        let sources = manifest.traces.keys.sorted().map { TraceSource(interface: $0, path: directory + "/" + manifest.traces[$0]!) }
        var store = try TraceLoader.load(sources, summary: &summary)
        if let epoch = manifest.epochNs {
            guard store.frames.isEmpty || epoch <= store.epoch else {
                throw SimError.input("\(manifestPath): epoch_ns \(epoch) is after the first frame (\(store.epoch))")
            }
            store = store.frames.isEmpty ? { var s = store; s.epoch = epoch; return s }() : store.rebased(epoch: epoch)
        }
        return SimCase(input: SimInput(store: store, rules: config.rules, events: events, queriers: config.queriers), options: options)
    }

    /// Writes the case. Frames are written per interface with their absolute timestamps.
    public func save(directory: String, description: String? = nil) throws(SimError) {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw SimError.output("cannot create \(directory): \(error.localizedDescription)")
        }
        var traces: [String: String] = [:]
        let byInterface = Dictionary(grouping: input.store.frames.indices, by: { input.store.frames[$0].interface })
        for interface in byInterface.keys.sorted() {
            let indices = byInterface[interface]!
            let file = interface.rawValue + ".pcap"
            traces[interface.rawValue] = file
            let link = PcapLinkType(input.store.frames[indices[0]].link)
            do {
                let writer = try PcapWriter(path: directory + "/" + file, linkType: link)
                for index in indices {
                    try writer.write(timestampNanoseconds: input.store.epoch + input.store.frames[index].time,
                                     bytes: input.store.bytes(index))
                }
                try writer.close()
            } catch { throw SimError.output("\(directory)/\(file): \(error)") }
        }
        let manifest = Manifest(
            seed: options.seed, faults: options.faults.description, swarm: options.swarm, timing: options.timing.rawValue,
            workers: options.workers, dispatch: options.dispatch.rawValue, coreSocketLimit: options.coreSocketLimit,
            kernelMembershipLimit: options.kernelMembershipLimit,
            coreSocketLimitIPv6: options.coreSocketLimitIPv6 == SocketLimits.defaultIPv6 ? nil : options.coreSocketLimitIPv6,
            kernelMembershipLimitIPv6: options.kernelMembershipLimitIPv6 == KernelModel.defaultIPv6MembershipLimit ? nil : options.kernelMembershipLimitIPv6,
            traces: traces,
            schedule: options.schedule.isEmpty ? nil : options.schedule.map(\.description),
            driverBugs: options.driverBugs.isEmpty ? nil : options.driverBugs.map(\.rawValue).sorted(), description: description,
            epochNs: input.store.frames.first.map { $0.time == 0 } == true ? nil : input.store.epoch,
            interfaces: options.interfaceFacts.isEmpty ? nil : options.interfaceFacts.keys.sorted().map { options.interfaceFacts[$0]! },
            egress: options.egressMode == .default ? nil : options.egressMode.rawValue)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            try (encoder.encode(manifest) + Data("\n".utf8)).write(to: URL(fileURLWithPath: directory + "/case.json"))
            try (ConfigFile(rules: input.rules, queriers: input.queriers).serialized() + Data("\n".utf8)).write(to: URL(fileURLWithPath: directory + "/config.json"))
            try Data(EventScript.serialize(input.events).utf8).write(to: URL(fileURLWithPath: directory + "/events.jsonl"))
        } catch { throw SimError.output("\(directory): \(error.localizedDescription)") }
    }

    /// The `sim replay` command line that runs this case from `directory`.
    public func replayCommand(directory: String, outDir: String = "OUT") -> String {
        // Time zero before the first frame (a recording): only case.json carries it.
        if let first = input.store.frames.first, first.time != 0 {
            return "mcrelay sim replay --case \(directory) --out-dir \(outDir)"
        }
        let interfaces = Set(input.store.frames.map(\.interface)).sorted()
        var words = ["mcrelay sim replay"]
        for interface in interfaces { words.append("--trace \(interface)=\(directory)/\(interface).pcap") }
        words.append("--config \(directory)/config.json")
        if !input.events.isEmpty { words.append("--events \(directory)/events.jsonl") }
        words.append("--seed \(options.seed)")
        words.append("--faults \(options.swarm ? "swarm" : options.faults.description)")
        if options.timing != .recorded { words.append("--timing \(options.timing.rawValue)") }
        words.append("--workers \(options.workers)")
        if options.dispatch != .fanout { words.append("--dispatch \(options.dispatch.rawValue)") }
        if options.coreSocketLimit != 20 { words.append("--socket-limit \(options.coreSocketLimit)") }
        if options.kernelMembershipLimit != 20 { words.append("--kernel-limit \(options.kernelMembershipLimit)") }
        for bug in options.driverBugs.map(\.rawValue).sorted() { words.append("--driver-bug \(bug)") }
        words.append("--out-dir \(outDir)")
        return words.joined(separator: " ")
    }

    public func run(outputDirectory: String? = nil) throws(SimError) -> SimResult {
        try Simulation(input: input, options: options, outputDirectory: outputDirectory).run()
    }
}

/// What a checked-in case must reproduce: the verdict, per-output counts and each egress
/// capture's content hash.
public struct ExpectedOutcome: Codable, Equatable, Sendable {
    public struct Output: Codable, Equatable, Sendable {
        public var rule: String
        public var output: String
        public var expected: UInt64
        public var transmitted: UInt64
    }

    public var result: String
    public var outputs: [Output]
    public var egress: [String: SimReport.Egress]
    public var drops: [String: UInt64]
    public var violations: [String]

    public init(_ result: SimResult) {
        self.result = result.report.result
        outputs = result.report.rules.flatMap { rule in
            rule.outputs.map { Output(rule: rule.input, output: $0.output, expected: $0.expected, transmitted: $0.transmitted) }
        }
        egress = result.report.egress
        drops = result.report.drops.filter { $0.value != 0 }
        violations = result.violations.map(\.invariant)
    }

    public func json() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return ((try? encoder.encode(self)) ?? Data()) + Data("\n".utf8)
    }
}

/// `--check-determinism`: run twice and name the first step where the runs part.
public enum DeterminismCheck {
    public static func firstDivergence(_ a: SimResult, _ b: SimResult) -> String? {
        let count = min(a.steps.count, b.steps.count)
        for index in 0..<count where a.steps[index] != b.steps[index] {
            let x = a.steps[index], y = b.steps[index]
            return "step \(index): first run \(x.kind)(\(x.argument)) at \(x.time) ns, second run \(y.kind)(\(y.argument)) at \(y.time) ns"
        }
        if a.steps.count != b.steps.count {
            return "the first run took \(a.steps.count) steps, the second \(b.steps.count)"
        }
        if a.report != b.report { return "same steps, but the reports differ" }
        return nil
    }
}
