import CLinuxNet
import CXDP
import Glibc
import RelayControl
import RelayCore

/// `mcrelay daemon --data-path xdp`: bpf/mcrelay_xdp.o attached to the rule inputs, its maps
/// kept in step with the plans the supervisor sends its workers (the same `WorkerPlan`s, turned
/// into map bytes by RelayCore's `XDPTables`), its counters merged into the daemon's.
///
/// What the program does not forward (rules `XDPTables` refuses, inputs the driver would not
/// attach to, frames of any other shape) it passes to the kernel, where the workers' AF_PACKET
/// sockets see them exactly as with `--data-path packet`. Helper sockets, joins and workers
/// are unchanged. The program is attached through BPF links: the kernel detaches it when the
/// daemon's last descriptor of a link closes, on exit, SIGTERM, SIGKILL or crash alike.
public final class XDPDataPath {
    /// Where the Debian package installs the object (`--xdp-object` and $MCRELAY_XDP_OBJECT
    /// come first).
    public static let installedObjectPath = "/usr/lib/mcrelay/mcrelay_xdp.o"

    public static func objectPath(option: String?) -> String {
        if let option, !option.isEmpty { return option }
        if let path = getenv("MCRELAY_XDP_OBJECT").map({ String(cString: $0) }), !path.isEmpty { return path }
        return installedObjectPath
    }

    /// How often interface facts are re-read (addresses, MTU, a re-created device), as the
    /// workers re-read their output interfaces.
    static let refreshInterval: Duration = .seconds(1)

    private struct Installed {
        var plan: WorkerPlan
        var facts: [InterfaceName: InterfaceFacts]
        var tables: XDPTables
        var generation: Int
        var unavailableOutputs: [InterfaceName: String] = [:]
        var recording = false
    }

    /// `--xdp-mode`: native runs the program in the driver and redirects with the output
    /// driver's ndo_xdp_xmit; generic runs it on the kernel's socket buffers after the driver
    /// (any device; slower) and redirects through the ordinary transmit path.
    public enum Mode: String, Sendable, CustomStringConvertible {
        case native, generic
        public var description: String { rawValue }
    }

    /// Output devices that would drop what the program redirects into them now: their XDP
    /// features lack ndo-xmit. A veth has it only while its peer has GRO or an XDP program
    /// (drivers/net/veth.c, veth_set_xdp_features); the kernel's netdev family says so from
    /// the relay's side of the link. Unknown (kernel before 6.3): assumed able.
    static func outputsWithoutRedirects(_ plan: WorkerPlan, _ facts: [InterfaceName: InterfaceFacts]) -> [InterfaceName: String] {
        var result: [InterfaceName: String] = [:]
        for name in Set(plan.rules.flatMap { $0.outputs.map(\.interface) }) where facts[name]?.hardwareType == InterfaceFacts.ethernet {
            guard let device = facts[name] else { continue }
            var features: UInt64 = 0
            guard cxdp_xdp_features(UInt32(bitPattern: device.index), &features) == 0 else { continue }
            guard features & UInt64(CXDP_XDP_ACT_NDO_XMIT) == 0 else { continue }
            result[name] = device.driver == "veth"
                ? "its XDP features lack ndo-xmit (a veth takes redirected frames only while its peer has GRO on or an XDP program)"
                : "its XDP features lack ndo-xmit (the driver does not take redirected frames)"
        }
        return result
    }

    let objectPath: String
    let mode: Mode
    private let program: XDPProgram
    private var plans: [WorkerID: WorkerPlan] = [:]
    private var installed: Installed?
    /// Inputs with the ingress program attached: the device index and the link's descriptor.
    private var links: [InterfaceName: (index: Int32, fd: Int32)] = [:]
    /// Inputs the kernel would not attach to, with why (they stay on the packet path).
    private(set) var attachFailures: [InterfaceName: String] = [:]
    /// Counters of plans no longer installed, carried as `Forwarder.install` carries its own:
    /// a rule's accepted count while its id stays in the plan, an output's while that output
    /// stays in its rule.
    private struct OutputKey: Hashable { var rule: RuleID; var output: OutputSpec }
    private var retiredAccepted: [RuleID: TrafficCounter] = [:]
    private var retiredOutputs: [OutputKey: OutputCounter] = [:]
    private(set) var nextRefresh: Instant?
    /// Problems worth a log line, taken by the supervisor after each call.
    private(set) var problems: [String] = []

    init(objectPath: String, mode: Mode = .native) throws(SupervisorStartError) {
        self.objectPath = objectPath
        self.mode = mode
        do { program = try XDPProgram(path: objectPath) } catch {
            throw SupervisorStartError("--data-path xdp: \(error)")
        }
    }

    deinit { close() }

    func takeProblems() -> [String] {
        defer { problems = [] }
        return problems
    }

    /// A worker's new plan: the maps follow it.
    func planSent(_ plan: WorkerPlan, now: Instant) {
        plans[plan.worker] = plan
        reinstall(now: now)
    }

    /// Re-reads the interfaces' facts when due (or `force`, on a link change) and reinstalls
    /// when they changed.
    func refresh(now: Instant, force: Bool = false) {
        guard force || (nextRefresh.map { $0 <= now } ?? true) else { return }
        guard let installed else { nextRefresh = now + Self.refreshInterval; return }
        let facts = Self.readFacts(for: installed.plan)
        // A veth's peer gaining or losing GRO changes what it takes, with no link event here.
        if facts != installed.facts || (mode == .native && Self.outputsWithoutRedirects(installed.plan, facts) != installed.unavailableOutputs) {
            reinstall(now: now)
        } else {
            nextRefresh = now + Self.refreshInterval
        }
    }

    /// While the flight recorder records, every rule is on the packet path: the recorder reads
    /// the workers' frames, and a frame the program redirected never reaches a worker, so a
    /// recording made beside the program would miss every frame it carried (and replay
    /// without them). The program attaches again when the recording ends.
    static let recordingReason = "the flight recorder is recording (it reads frames on the packet path)"

    /// The flight recorder started (`true`) or stopped.
    func setRecording(_ on: Bool, now: Instant) {
        guard recording != on else { return }
        recording = on
        reinstall(now: now)
    }
    private var recording = false

    /// Detaches the program from every input (closes the links); nothing attaches again.
    func close() {
        for (_, link) in links { Glibc.close(link.fd) }
        links = [:]
        closed = true
    }
    private var closed = false

    /// Whether the program forwards this rule now (its output counters are the program's).
    func carries(_ rule: RuleID) -> Bool {
        guard !closed, let installed else { return false }
        return installed.tables.carried.contains { installed.plan.rules[$0].id == rule }
            && links[installed.plan.rules.first { $0.id == rule }!.input.interface] != nil
    }

    // MARK: - Installing a plan

    /// Every worker's rules as one plan (workers read disjoint inputs or share them through
    /// fanout; the program has one set of maps for the host).
    static func merged(_ plans: [WorkerID: WorkerPlan]) -> WorkerPlan {
        var ingress: [IngressAssignment] = []
        var rules: [Rule] = []
        var seenInputs = Set<InterfaceName>(), seenRules = Set<RuleID>()
        for worker in plans.keys.sorted(by: { $0.rawValue < $1.rawValue }) {
            let plan = plans[worker]!
            for assignment in plan.ingress where seenInputs.insert(assignment.interface).inserted { ingress.append(assignment) }
            for rule in plan.rules where seenRules.insert(rule.id).inserted { rules.append(rule) }
        }
        return WorkerPlan(worker: WorkerID(0), version: plans.values.map(\.version).max() ?? 0, ingress: ingress, rules: rules)
    }

    static func readFacts(for plan: WorkerPlan) -> [InterfaceName: InterfaceFacts] {
        var names = Set(plan.ingress.map(\.interface))
        for rule in plan.rules {
            names.insert(rule.input.interface)
            for output in rule.outputs { names.insert(output.interface) }
        }
        let probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return [:] }
        defer { Glibc.close(probe) }
        var facts: [InterfaceName: InterfaceFacts] = [:]
        for name in names {
            if case let .success(read) = InterfaceFactsReader.read(name, probe: probe) { facts[name] = read }
        }
        return facts
    }

    private func reinstall(now: Instant) {
        nextRefresh = now + Self.refreshInterval
        guard !closed else { return }
        let plan = Self.merged(plans)
        let facts = Self.readFacts(for: plan)
        let unavailableOutputs = mode == .native ? Self.outputsWithoutRedirects(plan, facts) : [:]
        // Several workers get the same rules (fanout): one install per change is enough.
        if let installed, installed.plan.rules == plan.rules, installed.plan.ingress == plan.ingress, installed.facts == facts,
           installed.unavailableOutputs == unavailableOutputs, installed.recording == recording, attachFailures.isEmpty { return }
        let generation = ((installed?.generation ?? 1) + 1) % 2

        // Attach to the inputs of the rules the program can carry; an input the driver
        // refuses leaves its rules to the packet path.
        let previousFailures = attachFailures
        attachFailures = [:]
        let recorded = recording ? Dictionary(plan.rules.map { ($0.input.interface, Self.recordingReason) }, uniquingKeysWith: { first, _ in first }) : [:]
        var tables = XDPTables(plan: plan, facts: facts, generation: generation, unavailableInputs: recorded,
                               unavailableOutputs: unavailableOutputs)
        var wanted = Set(tables.carried.map { plan.rules[$0].input.interface })
        for interface in wanted.sorted(by: { $0.rawValue < $1.rawValue }) {
            let index = facts[interface]!.index
            if let link = links[interface], link.index == index { continue }
            if let stale = links.removeValue(forKey: interface) { Glibc.close(stale.fd) }  // the device was re-created
            let fd = cxdp_link_attach(program.ingress, UInt32(bitPattern: index), mode == .generic ? 1 : 0)
            if fd >= 0 {
                links[interface] = (index, fd)
            } else {
                let why = "\(mode) XDP attach failed: \(SystemError.message(for: -fd))"
                attachFailures[interface] = why
                if previousFailures[interface] != why { problems.append("\(interface): \(why); its rules stay on the packet path") }
            }
        }
        if !attachFailures.isEmpty {
            tables = XDPTables(plan: plan, facts: facts, generation: generation,
                               unavailableInputs: attachFailures.merging(recorded) { failure, _ in failure },
                               unavailableOutputs: unavailableOutputs)
            wanted = Set(tables.carried.map { plan.rules[$0].input.interface })
        }

        do {
            try switchMaps(to: tables, plan: plan, facts: facts, generation: generation)
            installed?.unavailableOutputs = unavailableOutputs
            installed?.recording = recording
        } catch {
            problems.append("XDP map update failed: \(error); detaching the program (every rule on the packet path)")
            close()
            installed = nil
            return
        }
        // Inputs whose rules all left the program: the packet path has them now.
        for (interface, link) in links where !wanted.contains(interface) {
            Glibc.close(link.fd)
            links[interface] = nil
        }
    }

    /// New outputs and zeroed counters beside the old plan's (the other generation's
    /// indices), then each rule entry switched to the new index, then the old entries removed:
    /// a frame finds either the old rule and its templates or the new rule and its own.
    private func switchMaps(to tables: XDPTables, plan: WorkerPlan, facts: [InterfaceName: InterfaceFacts], generation: Int) throws {
        let old = installed
        for entry in tables.outputs {
            try program.zero(program.outputCounters, entry.key, remember: false)
            try program.update(program.outputsMap, entry.key, entry.value, remember: false)
        }
        for entry in tables.rules { try program.zero(program.ruleCounters, Array(entry.value[0..<4]), remember: false) }
        let oldDevices = Set(old?.tables.devices ?? [])
        for device in tables.devices where !oldDevices.contains(device) {
            let result = cxdp_devmap_add(program.devmap, UInt32(bitPattern: device), program.egress, nil)
            guard result == 0 else { throw XDPProgram.Failure.failed("devmap entry for device \(device): \(SystemError.message(for: -result))") }
        }
        for entry in tables.rules { try program.update(program.rulesMap, entry.key, entry.value, remember: false) }
        let newKeys = Set(tables.rules.map(\.key))
        if let old {
            for entry in old.tables.rules where !newKeys.contains(entry.key) { program.delete(program.rulesMap, entry.key) }
            // The old plan's counts, now final, join the retired totals.
            for stats in Self.statistics(of: old, program: program).rules {
                retiredAccepted[stats.rule.id, default: TrafficCounter()].add(stats.accepted)
                for (output, counter) in zip(stats.rule.outputs, stats.outputs) {
                    retiredOutputs[OutputKey(rule: stats.rule.id, output: output), default: OutputCounter()].add(counter)
                }
            }
            for entry in old.tables.outputs {
                program.delete(program.outputsMap, entry.key)
                program.delete(program.outputCounters, entry.key)
            }
            let newDevices = Set(tables.devices)
            for device in old.tables.devices where !newDevices.contains(device) {
                withUnsafeBytes(of: UInt32(bitPattern: device)) { program.delete(program.devmap, Array($0)) }
            }
        }
        // A rule or output that left the plan starts again from zero, as in the Forwarder.
        let ids = Set(plan.rules.map(\.id))
        let outputs = Set(plan.rules.flatMap { rule in rule.outputs.map { OutputKey(rule: rule.id, output: $0) } })
        retiredAccepted = retiredAccepted.filter { ids.contains($0.key) }
        retiredOutputs = retiredOutputs.filter { outputs.contains($0.key) }
        installed = Installed(plan: plan, facts: facts, tables: tables, generation: generation)
    }

    // MARK: - Counters and the path report

    /// The program's counters of one installed plan, per carried rule.
    private static func statistics(of installed: Installed, program: XDPProgram) -> ForwardingStatistics {
        var rules: [RuleStatistics] = []
        for (position, index) in installed.tables.carried.enumerated() {
            let rule = installed.plan.rules[index]
            let accepted = (try? program.accepted(installed.tables.rules[position])) ?? (0, 0)
            let outputs = rule.outputs.map { output -> OutputCounter in
                guard let device = installed.facts[output.interface]?.index else { return OutputCounter() }
                let key = XDPTables.words(XDPTables.ruleIndex(index, generation: installed.generation), UInt32(bitPattern: device))
                let sent = (try? program.sum(program.outputCounters, key)) ?? (0, 0)
                return OutputCounter(packets: sent.0, bytes: sent.1)
            }
            rules.append(RuleStatistics(rule: rule, accepted: TrafficCounter(packets: accepted.0, bytes: accepted.1), outputs: outputs))
        }
        return ForwardingStatistics(rules: rules)
    }

    /// What the program forwarded, per rule and output, since each rule last changed: one
    /// more part for `ForwardingStatistics.merged` beside the workers'.
    func statistics() -> ForwardingStatistics {
        guard let installed else { return ForwardingStatistics() }
        let live = Dictionary(Self.statistics(of: installed, program: program).rules.map { ($0.rule.id, $0) }, uniquingKeysWith: { first, _ in first })
        var rules: [RuleStatistics] = []
        for rule in installed.plan.rules {
            let counted = live[rule.id]
            var accepted = retiredAccepted[rule.id] ?? TrafficCounter()
            if let counted { accepted.add(counted.accepted) }
            let outputs = rule.outputs.enumerated().map { position, output in
                var counter = retiredOutputs[OutputKey(rule: rule.id, output: output)] ?? OutputCounter()
                if let counted { counter.add(counted.outputs[position]) }
                return counter
            }
            guard counted != nil || accepted.packets > 0 || outputs.contains(where: { $0.packets > 0 }) else { continue }
            rules.append(RuleStatistics(rule: rule, accepted: accepted, outputs: outputs))
        }
        return ForwardingStatistics(rules: rules)
    }

    /// Which path each rule and each input interface uses, and why.
    func view() -> DataPathView {
        var view = DataPathView(mode: "xdp \(mode)", object: objectPath)
        if !program.carriesMetadata { view.warnings.append(XDPProgram.metadataRefused) }
        guard let installed else { return view }
        if closed { view.warnings.append("detached: the daemon is stopping (counters as of then)") }
        let fallbacks = Dictionary(installed.tables.fallbacks.map { ($0.rule, $0.reason) }, uniquingKeysWith: { first, _ in first })
        for rule in installed.plan.rules {
            view.rules.append(DataPathView.Entry(name: rule.id.description, path: fallbacks[rule.id] == nil ? "xdp" : "packet",
                                                 reason: fallbacks[rule.id]))
        }
        var inputs: [InterfaceName] = []
        for rule in installed.plan.rules where !inputs.contains(rule.input.interface) { inputs.append(rule.input.interface) }
        for interface in inputs {
            if closed {
                view.inputs.append(.init(name: interface.rawValue, path: "packet", reason: "detached"))
            } else if links[interface] != nil {
                let carried = installed.tables.carried.filter { installed.plan.rules[$0].input.interface == interface }.count
                let total = installed.plan.rules.filter { $0.input.interface == interface }.count
                view.inputs.append(.init(name: interface.rawValue, path: "xdp",
                                         reason: carried == total ? nil : "\(total - carried) of \(total) rules on the packet path"))
            } else {
                view.inputs.append(.init(name: interface.rawValue, path: "packet",
                                         reason: attachFailures[interface]
                                            ?? (recording ? Self.recordingReason : "no rule of this input is carried by the XDP program")))
            }
        }
        // The peer of a veth is another namespace's device: the relay can see (xdp-features)
        // but not set whether it takes redirects.
        for (name, why) in installed.unavailableOutputs.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            view.warnings.append("output \(name) cannot take XDP redirects: \(why); its rules use the packet path"
                                 + (installed.facts[name]?.driver == "veth" ? " (on the peer: ethtool -K PEER gro on, or --xdp-mode generic)" : ""))
        }
        return view
    }
}

extension TrafficCounter {
    mutating func add(_ other: TrafficCounter) {
        packets &+= other.packets
        bytes &+= other.bytes
    }
}

extension OutputCounter {
    mutating func add(_ other: OutputCounter) {
        packets &+= other.packets
        bytes &+= other.bytes
    }
}
