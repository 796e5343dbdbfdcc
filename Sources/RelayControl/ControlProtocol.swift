import Foundation
import RelayCore

// The control protocol between `mcrelay rule|stats` (or any client, e.g. `socat`) and the
// daemon, over a Unix stream socket: one JSON object per line each way, one reply per request,
// in order. Requests are at most `ControlProtocol.maximumRequestSize` bytes (newline included);
// a longer line gets an error reply and the connection is closed. A line that is not a valid
// request gets `{"ok":false,"error":"..."}` and the connection stays open.
//
//   {"op":"add","rule":{"in":"rin0:239.1.1.1:5001","out":["rout0:239.10.1.1:6001:8"],"name":"cam1"}}
//   {"op":"remove","selector":"cam1"}          (a rule id or a name)
//   {"op":"list"}
//   {"op":"stats"}
//   {"op":"reload"}                            (re-read the daemon's --config file)
//   {"op":"record_start","path":"/var/tmp/rec","limit":268435456}   (flight recorder; limit optional)
//   {"op":"record_stop"}   {"op":"record_status"}

public enum ControlProtocol {
    public static let maximumRequestSize = 64 * 1024
    public static let defaultSocketPath = "/run/mcrelay/control.sock"

    /// Encodes one message as a line: compact JSON with sorted keys (deterministic), then "\n".
    public static func encodeLine(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data(#"{"ok":false,"error":"internal: reply could not be encoded"}"#.utf8)
        return Array(data) + [UInt8(ascii: "\n")]
    }

    /// Decodes a request line, with a message that says what is wrong with it.
    public static func decodeRequest(_ line: some Collection<UInt8>) -> Result<ControlRequest, ControlProtocolError> {
        do {
            return .success(try JSONDecoder().decode(ControlRequest.self, from: Data(line)))
        } catch let DecodingError.dataCorrupted(context) where context.codingPath.isEmpty {
            return .failure(ControlProtocolError("request is not valid JSON"))
        } catch let DecodingError.keyNotFound(key, context) {
            return .failure(ControlProtocolError("request is missing \"\(path(context.codingPath + [key]))\""))
        } catch let DecodingError.typeMismatch(_, context) {
            return .failure(ControlProtocolError("request field \"\(path(context.codingPath))\": \(context.debugDescription)"))
        } catch let DecodingError.valueNotFound(_, context) {
            return .failure(ControlProtocolError("request field \"\(path(context.codingPath))\" is null"))
        } catch let DecodingError.dataCorrupted(context) {
            return .failure(ControlProtocolError("request field \"\(path(context.codingPath))\": \(context.debugDescription)"))
        } catch {
            return .failure(ControlProtocolError("request is not valid: \(error)"))
        }
    }

    public static func decodeReply(_ line: some Collection<UInt8>) throws(ControlProtocolError) -> ControlReply {
        do { return try JSONDecoder().decode(ControlReply.self, from: Data(line)) } catch {
            throw ControlProtocolError("the daemon's reply is not valid: \(error)")
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingPrefix(".").description
    }
}

public struct ControlProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum ControlOperation: String, Codable, Sendable, CaseIterable {
    case add, remove, list, stats, reload
    case recordStart = "record_start", recordStop = "record_stop", recordStatus = "record_status"
    /// The IGMP/MLD router's interfaces and groups (`mcrelay igmp`).
    case listeners

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let operation = ControlOperation(rawValue: text) else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath,
                debugDescription: "unknown op \"\(text)\"; one of " + Self.allCases.map(\.rawValue).joined(separator: ", ")))
        }
        self = operation
    }
}

/// A rule in the same text form as the config file and the CLI.
public struct RuleText: Codable, Equatable, Sendable {
    public var name: String?
    public var `in`: String
    public var source: String?
    public var out: [String]

    public init(name: String? = nil, in input: String, source: String? = nil, out: [String]) {
        self.name = name
        self.in = input
        self.source = source
        self.out = out
    }

    public init(_ spec: RuleSpec) {
        self.init(name: spec.name,
                  in: spec.input.endpoint,
                  source: spec.input.source?.description,
                  out: spec.outputs.map(\.description))
    }

    /// Parses the endpoints; the error names the field that is wrong.
    public func spec() throws(ControlProtocolError) -> RuleSpec {
        do {
            let source = try source.map { text throws(EndpointSyntaxError) in try EndpointSyntax.parseAddress(text) }
            let input = try EndpointSyntax.parseInput(self.in, source: source)
            let outputs = try out.map { text throws(EndpointSyntaxError) in try EndpointSyntax.parseOutput(text) }
            return RuleSpec(name: name, input: input, outputs: outputs)
        } catch {
            throw ControlProtocolError(error.description)
        }
    }
}

public struct ControlRequest: Codable, Equatable, Sendable {
    public var op: ControlOperation
    /// `add`: the rule.
    public var rule: RuleText?
    /// `remove`: a rule id (12 hex digits) or name.
    public var selector: String?
    /// `record_start`: the recording directory and its size limit in bytes.
    public var path: String?
    public var limit: UInt64?

    public init(op: ControlOperation, rule: RuleText? = nil, selector: String? = nil, path: String? = nil, limit: UInt64? = nil) {
        self.op = op
        self.rule = rule
        self.selector = selector
        self.path = path
        self.limit = limit
    }
}

/// A rule as the daemon reports it.
public struct RuleView: Codable, Equatable, Sendable {
    public var id: String
    public var name: String?
    public var `in`: String
    public var source: String?
    public var out: [String]
    /// Memberships of this rule's input group that the kernel has confirmed / still outstanding.
    public var joined: Bool?

    public init(_ rule: Rule, joined: Bool? = nil) {
        let text = RuleText(rule.spec)
        id = rule.id.description
        name = rule.name
        self.in = text.in
        source = text.source
        out = text.out
        self.joined = joined
    }
}

public struct OutputStatsView: Codable, Equatable, Sendable {
    public var out: String
    public var packets: UInt64
    public var bytes: UInt64
    public var sendErrors: UInt64
    /// How its datagrams leave: "packet" (frames the relay builds), "udp" or "udp+gso" (the
    /// kernel's UDP path, with GSO where the interface allows it); nil before a worker said.
    public var path: String?
    /// Present for a follow output only: whether a worker's gate lets it send now, and the
    /// datagrams its closed gate held back ("suppressed: no listener").
    public var open: Bool?
    public var suppressed: UInt64?

    enum CodingKeys: String, CodingKey {
        case out, packets, bytes, path, open, sendErrors = "send_errors", suppressed = "suppressed_no_listener"
    }

    public init(out: String, packets: UInt64, bytes: UInt64, sendErrors: UInt64) {
        self.out = out
        self.packets = packets
        self.bytes = bytes
        self.sendErrors = sendErrors
    }
}

public struct RuleStatsView: Codable, Equatable, Sendable {
    public var id: String
    public var name: String?
    /// `IFACE:GROUP:PORT`, as in `RuleView`.
    public var `in`: String
    public var source: String?
    public var packets: UInt64
    public var bytes: UInt64
    public var outputs: [OutputStatsView]
    /// A route a proxy derived (its outputs are the proxy's downstreams), not a rule of the
    /// operator's: it is idle by design while no downstream listener wants anything.
    public var proxyRoute: Bool { outputs.contains { $0.out.hasSuffix(":routed") } }

    public init(_ stats: RuleStatistics) {
        id = stats.rule.id.description
        name = stats.rule.name
        let text = RuleText(stats.rule.spec)
        self.in = text.in
        source = text.source
        packets = stats.accepted.packets
        bytes = stats.accepted.bytes
        outputs = stats.rule.outputs.indices.map { index in
            let spec = stats.rule.outputs[index]
            let counter = stats.outputs[index]
            var view = OutputStatsView(out: spec.description, packets: counter.packets, bytes: counter.bytes,
                                       sendErrors: counter.sendErrors)
            if spec.followsListeners {
                view.open = stats.open?[index] ?? false
                view.suppressed = counter.suppressed
            }
            // A proxy's downstream: no one gate (it is per group and source), but what it held back.
            if spec.routed { view.suppressed = counter.suppressed }
            return view
        }
    }
}

extension RuleStatsView {
    /// A rule no worker has counted yet.
    public init(unused rule: Rule) {
        id = rule.id.description
        name = rule.name
        let text = RuleText(rule.spec)
        self.in = text.in
        source = text.source
        packets = 0
        bytes = 0
        outputs = rule.outputs.map { output in
            var view = OutputStatsView(out: output.description, packets: 0, bytes: 0, sendErrors: 0)
            if output.followsListeners {
                view.open = false
                view.suppressed = 0
            }
            if output.routed { view.suppressed = 0 }
            return view
        }
    }
}

/// One output interface's egress decision (`InterfaceEgress`), as `mcrelay stats` shows it.
public struct EgressView: Codable, Equatable, Sendable {
    public var interface: String
    public var path: String
    public var pathReason: String
    /// IPv6 outputs' path (absent in replies from before IPv6: the IPv4 one).
    public var ipv6Path: String?
    public var ipv6PathReason: String?
    public var segmentation: Bool
    public var segmentationReason: String

    enum CodingKeys: String, CodingKey {
        case interface, path, segmentation, pathReason = "path_reason", segmentationReason = "segmentation_reason"
        case ipv6Path = "ipv6_path", ipv6PathReason = "ipv6_path_reason"
    }

    public init(_ egress: InterfaceEgress) {
        interface = egress.interface.rawValue
        path = egress.path.rawValue
        pathReason = egress.pathReason
        ipv6Path = egress.ipv6Path.rawValue
        ipv6PathReason = egress.ipv6PathReason
        segmentation = egress.segmentation
        segmentationReason = egress.segmentationReason
    }

    /// The path of one output on this interface.
    public func path(multicast: Bool, family: AddressFamily = .ipv4) -> String {
        let udp = segmentation ? "udp+gso" : "udp"
        let chosen = family == .ipv4 ? path : (ipv6Path ?? path)
        return multicast && chosen == EgressPath.packet.rawValue ? chosen : udp
    }

    public var text: String {
        let v6Path = ipv6Path ?? path, v6Reason = ipv6PathReason ?? pathReason
        let ipv6 = v6Path == path && v6Reason == pathReason ? "" : ", IPv6 \(v6Path) (\(v6Reason))"
        return "\(interface): multicast \(path) (\(pathReason))\(ipv6); UDP GSO \(segmentation ? "on" : "off") (\(segmentationReason))"
    }
}

public struct WorkerView: Codable, Equatable, Sendable {
    public var id: Int
    public var pid: Int32?
    public var alive: Bool
    /// The plan version this worker acknowledged (nil: none yet).
    public var planVersion: UInt64?
    public var restarts: Int
    /// Whether its counters are part of this reply (a worker that did not answer in time is not).
    public var answered: Bool

    enum CodingKeys: String, CodingKey {
        case id, pid, alive, restarts, answered, planVersion = "plan_version"
    }

    public init(id: Int, pid: Int32?, alive: Bool, planVersion: UInt64?, restarts: Int, answered: Bool) {
        self.id = id
        self.pid = pid
        self.alive = alive
        self.planVersion = planVersion
        self.restarts = restarts
        self.answered = answered
    }
}

public struct HelperSocketView: Codable, Equatable, Sendable {
    public var socket: String
    public var groups: Int
    public var capacity: Int
    public init(socket: String, groups: Int, capacity: Int) {
        self.socket = socket
        self.groups = groups
        self.capacity = capacity
    }
}

/// An input interface's own receive counters, as the kernel keeps them for the device since it
/// was created (`LinkCounters`): what it received, and what it lost before any relay saw it.
public struct InputDeviceView: Codable, Equatable, Sendable {
    public var interface: String
    public var received: UInt64 = 0
    public var dropped: UInt64 = 0
    public var missed: UInt64 = 0
    public var overruns: UInt64 = 0
    public var fifo: UInt64 = 0
    public var errors: UInt64 = 0
    /// Why the counters could not be read (the device is gone, ...); the counters are then 0.
    public var problem: String?

    enum CodingKeys: String, CodingKey {
        case interface, problem
        case received = "rx_packets", dropped = "rx_dropped", missed = "rx_missed_errors"
        case overruns = "rx_over_errors", fifo = "rx_fifo_errors", errors = "rx_errors"
    }

    public init(interface: String, received: UInt64 = 0, dropped: UInt64 = 0, missed: UInt64 = 0,
                overruns: UInt64 = 0, fifo: UInt64 = 0, errors: UInt64 = 0, problem: String? = nil) {
        self.interface = interface
        self.received = received
        self.dropped = dropped
        self.missed = missed
        self.overruns = overruns
        self.fifo = fifo
        self.errors = errors
        self.problem = problem
    }

    /// The counters of frames lost at the device, by the names `mcrelay stats`, the metrics'
    /// `counter` label and `mcrelay doctor` use; `errors` (bad frames) last.
    public var losses: [(counter: String, frames: UInt64)] {
        [("dropped", dropped), ("missed", missed), ("overruns", overruns), ("fifo", fifo), ("errors", errors)]
    }

    /// `input device IF: N frames received, lost at the device: none | dropped=.. missed=..`
    public var text: String {
        if let problem { return "input device \(interface): counters not read (\(problem))" }
        let lost = losses.filter { $0.frames > 0 }.map { "\($0.counter)=\($0.frames)" }
        return "input device \(interface): \(received) frames received, lost at the device: " + (lost.isEmpty ? "none" : lost.joined(separator: " "))
    }
}

public struct StatsView: Codable, Equatable, Sendable {
    public var rules: [RuleStatsView]
    public var drops: DropCounters
    /// Frames the kernel dropped before a worker read them (receive queue full).
    public var ingressQueueDrops: UInt64 = 0
    public var workers: [WorkerView]
    public var planVersion: UInt64
    /// Memberships the kernel confirmed, as "GROUP on IFACE[ from SOURCE]".
    public var joined: [String]
    /// Memberships needed on an interface that is up but not joined (yet).
    public var outstanding: [String]
    public var helperSockets: [HelperSocketView]
    public var interfacesUp: [String]
    /// The flight recorder, when one runs or ran.
    public var recording: RecordingView?
    /// Egress decisions per output interface (from the workers).
    public var egress: [EgressView] = []
    /// `--data-path xdp`: which path each rule and input uses and why (nil: the packet path only).
    public var dataPath: DataPathView?
    /// Each input interface's own receive counters (nil from a daemon that does not read them).
    public var inputDevices: [InputDeviceView]?

    enum CodingKeys: String, CodingKey {
        case rules, drops, workers, joined, outstanding, recording, egress
        case dataPath = "data_path", inputDevices = "input_devices"
        case ingressQueueDrops = "ingress_queue_drops"
        case planVersion = "plan_version", helperSockets = "helper_sockets", interfacesUp = "interfaces_up"
    }

    public init(rules: [RuleStatsView], drops: DropCounters, workers: [WorkerView], planVersion: UInt64,
                joined: [String], outstanding: [String], helperSockets: [HelperSocketView], interfacesUp: [String]) {
        self.rules = rules
        self.drops = drops
        self.workers = workers
        self.planVersion = planVersion
        self.joined = joined
        self.outstanding = outstanding
        self.helperSockets = helperSockets
        self.interfacesUp = interfacesUp
    }
}

/// `mcrelay daemon --data-path xdp`: the XDP program's reach. A rule or input on "packet" is
/// handled by the workers' AF_PACKET path, `reason` says why.
public struct DataPathView: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
        /// A rule id or an interface name.
        public var name: String
        /// "xdp" or "packet".
        public var path: String
        public var reason: String?
        public init(name: String, path: String, reason: String? = nil) {
            self.name = name
            self.path = path
            self.reason = reason
        }
    }

    public var mode: String
    /// The BPF object loaded.
    public var object: String
    public var rules: [Entry] = []
    public var inputs: [Entry] = []
    public var warnings: [String] = []

    public init(mode: String, object: String) {
        self.mode = mode
        self.object = object
    }

    /// Lines of `mcrelay stats` and `mcrelay doctor`.
    public var lines: [String] {
        var lines = ["data path \(mode) (\(object))"]
        for rule in rules { lines.append("  rule \(rule.name): \(rule.path)" + (rule.reason.map { " (\($0))" } ?? "")) }
        for input in inputs { lines.append("  input \(input.name): \(input.path)" + (input.reason.map { " (\($0))" } ?? "")) }
        for warning in warnings { lines.append("  warning: \(warning)") }
        return lines
    }
}

public struct ControlReply: Codable, Equatable, Sendable {
    public var ok: Bool
    public var error: String?
    /// `add`, `remove`: the rule concerned.
    public var rule: RuleView?
    /// `add`: false when an identical rule already existed (nothing changed).
    public var added: Bool?
    /// `list`.
    public var rules: [RuleView]?
    /// `stats`.
    public var stats: StatsView?
    /// `reload`: what changed.
    public var reload: ReloadView?
    /// `record_*`: the flight recorder's state.
    public var recording: RecordingView?
    /// `listeners`.
    public var listeners: ListenersView?

    public init(ok: Bool, error: String? = nil, rule: RuleView? = nil, added: Bool? = nil, rules: [RuleView]? = nil,
                stats: StatsView? = nil, reload: ReloadView? = nil) {
        self.ok = ok
        self.error = error
        self.rule = rule
        self.added = added
        self.rules = rules
        self.stats = stats
        self.reload = reload
    }

    public static func failure(_ message: String) -> ControlReply { ControlReply(ok: false, error: message) }
}

public struct ReloadView: Codable, Equatable, Sendable {
    public var added: Int
    public var removed: Int
    public var unchanged: Int
    public init(added: Int, removed: Int, unchanged: Int) {
        self.added = added
        self.removed = removed
        self.unchanged = unchanged
    }
}

// MARK: - Text output (`mcrelay rule list`, `mcrelay stats`, the daemon's final counters)

extension RuleView {
    /// `ID  NAME  IN [from SOURCE] -> OUT, OUT  [joined|not joined]`
    public var text: String {
        var line = "\(id)  \(name ?? "-")  \(self.in)"
        if let source { line += " from \(source)" }
        line += " -> " + out.joined(separator: ", ")
        if let joined { line += joined ? "  [joined]" : "  [not joined]" }
        return line
    }
}

extension StatsView {
    public var text: String {
        var lines: [String] = []
        for rule in rules {
            lines.append("rule \(rule.id)\(rule.name.map { " (\($0))" } ?? "") \(rule.in)\(rule.source.map { " from \($0)" } ?? ""): \(rule.packets) packets, \(rule.bytes) bytes")
            for output in rule.outputs {
                lines.append("  -> \(output.out): \(output.packets) packets, \(output.bytes) bytes, \(output.sendErrors) send errors"
                             + (output.path.map { ", \($0)" } ?? "")
                             + (output.open.map { ", follows listeners: \($0 ? "open" : "closed")" } ?? "")
                             + (output.suppressed.map { ", \($0) suppressed: no listener" } ?? ""))
            }
        }
        if rules.isEmpty { lines.append("no rules") }
        let drops = drops.nonZero.map { "\($0.reason)=\($0.count)" }
            + (ingressQueueDrops > 0 ? ["ingress_queue=\(ingressQueueDrops)"] : [])
        lines.append("drops: " + (drops.isEmpty ? "none" : drops.joined(separator: " ")))
        let alive = workers.filter(\.alive).count
        lines.append("workers: \(alive)/\(workers.count) alive, plan v\(planVersion): " + workers.map { worker in
            "\(worker.id)=" + (worker.pid.map { "pid \($0)" } ?? "down") + (worker.planVersion.map { " v\($0)" } ?? "")
                + (worker.restarts > 0 ? " restarts \(worker.restarts)" : "") + (worker.answered || !worker.alive ? "" : " (no answer)")
        }.joined(separator: ", "))
        lines.append("joins: \(joined.count) joined, \(outstanding.count) outstanding; helper sockets: "
            + (helperSockets.isEmpty ? "none" : helperSockets.map { "\($0.socket) \($0.groups)/\($0.capacity)" }.joined(separator: ", ")))
        if !outstanding.isEmpty { lines.append("outstanding: " + outstanding.joined(separator: ", ")) }
        lines.append("interfaces up: " + (interfacesUp.isEmpty ? "none" : interfacesUp.joined(separator: " ")))
        for device in inputDevices ?? [] { lines.append(device.text) }
        for egress in egress { lines.append("egress " + egress.text) }
        if let recording { lines.append(recording.text) }
        if let dataPath { lines += dataPath.lines }
        return lines.joined(separator: "\n") + "\n"
    }
}
