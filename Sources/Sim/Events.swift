import Foundation
import RelayControl
import RelayCore

/// A control-plane event at a simulated time: what an operator (rule add/remove, config
/// reload) or the machine (interface down/up, a worker crashing) does during a replay.
///
/// On disk (`--events FILE`), one JSON object per line; `at_ms` counts from the first frame
/// of the traces (fractions allowed, down to nanoseconds):
///
///     {"at_ms": 500, "event": "rule_add", "rule": {"name": "cam2", "in": "eth0:239.1.1.2:5002", "out": ["eth1:239.10.1.2:6002"]}}
///     {"at_ms": 800, "event": "rule_remove", "rule": "cam2"}
///     {"at_ms": 900, "event": "iface_down", "iface": "eth0"}
///     {"at_ms": 950, "event": "iface_up", "iface": "eth0"}
///     {"at_ms": 1000, "event": "worker_crash", "worker": 1}
///     {"at_ms": 1200, "event": "config_reload", "rules": [ ...same objects as the config file... ]}
///     {"at_ms": 1300, "event": "join_fail", "iface": "eth0", "group": "239.1.1.1", "errno": "ENOBUFS"}
///
/// `join_fail` (written by the flight recorder, `mcrelay daemon --record`): the relay's first
/// join of that membership (`source` optional) from `at_ms` - 50 ms on fails with `errno`
/// (ENOBUFS, ENODEV, EADDRINUSE, EADDRNOTAVAIL, another name below or a number) instead of
/// asking the kernel model; one not used within a second is dropped.
///
/// LAN segments with IGMP/MLD hosts and other routers (see `ListenerHost`, `SegmentQuerier`):
///
///     {"at_ms": 0, "event": "host_join", "iface": "out0", "host": "198.18.5.10", "group": "239.10.0.1"}
///     {"at_ms": 0, "event": "host_join", "iface": "out0", "host": "198.18.5.11", "group": "239.10.0.1",
///      "mode": "include", "sources": ["198.19.2.1"], "version": 3}
///     {"at_ms": 900, "event": "host_leave", "iface": "out0", "host": "198.18.5.10", "group": "239.10.0.1"}
///     {"at_ms": 0, "event": "host_version", "iface": "out0", "host": "198.18.5.10", "version": 2}
///     {"at_ms": 0, "event": "querier_start", "iface": "out0", "address": "198.18.0.1", "version": 3, "query_interval_ms": 10000}
///     {"at_ms": 60000, "event": "querier_stop", "iface": "out0", "address": "198.18.0.1"}
///     {"at_ms": 0, "event": "segment_loss", "iface": "out0", "loss": 0.2}
///
/// A host is named by its address on the segment (IPv4, or an IPv6 link-local address for
/// MLD) and exists from its first event, as v3 (IGMPv3 / MLDv2) unless `version` says 2.
/// `host_join` sets the host's filter for the group: `mode` (default: include when `sources`
/// are given, else exclude) and `sources` (default none); `host_leave` is INCLUDE {}.
/// `segment_loss`: each IGMP/MLD frame on the segment is lost for each receiver with that
/// probability (a seeded fault: off in the liveness phase like the others).
///
/// Blank lines and lines starting with `#` are ignored.
public struct ScriptedEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case ruleAdd(RuleSpec)
        case ruleRemove(String)
        case interfaceDown(InterfaceName)
        case interfaceUp(InterfaceName)
        case workerCrash(Int)
        case configReload([RuleSpec])
        case joinFail(MembershipKey, JoinError)
        case hostJoin(HostJoin)
        case hostLeave(InterfaceName, host: IPAddress, group: IPAddress)
        case hostVersion(InterfaceName, host: IPAddress, version: ListenerVersion)
        case querierStart(InterfaceName, address: IPAddress, version: ListenerVersion, queryIntervalMs: Int)
        case querierStop(InterfaceName, address: IPAddress)
        case segmentLoss(InterfaceName, probability: Double)
    }

    /// A host's join (or filter change) of one group.
    public struct HostJoin: Sendable, Equatable {
        public var interface: InterfaceName
        public var host: IPAddress
        public var group: IPAddress
        public var mode: FilterMode
        public var sources: [IPAddress]
        /// nil: the host keeps its version (new hosts are v3).
        public var version: ListenerVersion?

        public init(interface: InterfaceName, host: IPAddress, group: IPAddress, mode: FilterMode,
                    sources: [IPAddress] = [], version: ListenerVersion? = nil) {
            self.interface = interface
            self.host = host
            self.group = group
            self.mode = mode
            self.sources = sources
            self.version = version
        }
    }

    public var at: UInt64
    public var kind: Kind

    public init(at: UInt64, kind: Kind) {
        self.at = at
        self.kind = kind
    }

    public var name: String {
        switch kind {
        case .ruleAdd: "rule_add"
        case .ruleRemove: "rule_remove"
        case .interfaceDown: "iface_down"
        case .interfaceUp: "iface_up"
        case .workerCrash: "worker_crash"
        case .configReload: "config_reload"
        case .joinFail: "join_fail"
        case .hostJoin: "host_join"
        case .hostLeave: "host_leave"
        case .hostVersion: "host_version"
        case .querierStart: "querier_start"
        case .querierStop: "querier_stop"
        case .segmentLoss: "segment_loss"
        }
    }

    /// Whether the event is about a LAN segment's hosts or routers (not the relay's operator).
    public var isSegmentEvent: Bool {
        switch kind {
        case .hostJoin, .hostLeave, .hostVersion, .querierStart, .querierStop, .segmentLoss: true
        default: false
        }
    }

    /// Interfaces the event mentions (they exist in the simulated host).
    public var interfaces: [InterfaceName] {
        switch kind {
        case let .ruleAdd(spec): [spec.input.interface] + spec.outputs.map(\.interface)
        case let .configReload(specs): specs.flatMap { [$0.input.interface] + $0.outputs.map(\.interface) }
        case let .interfaceDown(name), let .interfaceUp(name): [name]
        case let .joinFail(key, _): [key.interface]
        case let .hostJoin(join): [join.interface]
        case let .hostLeave(name, _, _), let .hostVersion(name, _, _), let .querierStart(name, _, _, _),
             let .querierStop(name, _), let .segmentLoss(name, _): [name]
        case .ruleRemove, .workerCrash: []
        }
    }
}

public enum EventScript {
    public static func load(path: String) throws(SimError) -> [ScriptedEvent] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw SimError.input("--events \(path): cannot read file: \(error.localizedDescription)")
        }
        return try parse(String(decoding: data, as: UTF8.self), origin: path)
    }

    public static func parse(_ text: String, origin: String = "events") throws(SimError) -> [ScriptedEvent] {
        var events: [ScriptedEvent] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let location = "\(origin):\(number + 1)"
            events.append(try parseLine(trimmed, location: location))
        }
        // Stable: events at the same time run in file order.
        return events.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element)
    }

    static func parseLine(_ line: String, location: String) throws(SimError) -> ScriptedEvent {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw SimError.input("\(location): not a JSON object")
        }
        guard let atValue = object["at_ms"] as? NSNumber, atValue.doubleValue >= 0, atValue.doubleValue.isFinite else {
            throw SimError.input("\(location): missing or negative \"at_ms\" (milliseconds after the first frame)")
        }
        // A year of simulated time is plenty; anything past it (5e111) would not fit in
        // nanoseconds and must be refused, not trap (found by the events fuzz target).
        let maximumMilliseconds = 365.0 * 24 * 3600 * 1000
        guard atValue.doubleValue <= maximumMilliseconds else {
            throw SimError.input("\(location): \"at_ms\" \(atValue) is beyond one year of simulated time")
        }
        let at = UInt64((atValue.doubleValue * 1_000_000).rounded())
        guard let event = object["event"] as? String else {
            throw SimError.input("\(location): missing \"event\" (rule_add, rule_remove, iface_down, iface_up, worker_crash, config_reload, join_fail, host_join, host_leave, host_version, querier_start, querier_stop, segment_loss)")
        }
        func interface() throws(SimError) -> InterfaceName {
            guard let text = object["iface"] as? String, let name = InterfaceName(text) else {
                throw SimError.input("\(location): \(event) needs \"iface\": a valid interface name")
            }
            return name
        }
        func rules(_ array: [Any]) throws(SimError) -> [RuleSpec] {
            // Events change rules, not the queriers (those come from the case's config): a
            // follow output is checked against listener tracking there, at run time.
            var tracked = Set<String>()
            for case let rule as [String: Any] in array {
                for case let text as String in rule["out"] as? [Any] ?? [] {
                    if let output = try? EndpointSyntax.parseOutput(text), output.followsListeners { tracked.insert(output.interface.rawValue) }
                }
            }
            let queriers = tracked.sorted().map { ["interface": $0] }
            guard let data = try? JSONSerialization.data(withJSONObject: ["rules": array, "queriers": queriers]) else {
                throw SimError.input("\(location): rules are not valid JSON")
            }
            do { return try ConfigFile.parse(data, origin: location).rules } catch {
                throw SimError.input(error.description)
            }
        }
        switch event {
        case "rule_add":
            guard let rule = object["rule"] as? [String: Any] else {
                throw SimError.input("\(location): rule_add needs \"rule\": {\"in\": ..., \"out\": [...]}")
            }
            return ScriptedEvent(at: at, kind: .ruleAdd(try rules([rule])[0]))
        case "rule_remove":
            guard let selector = object["rule"] as? String, !selector.isEmpty else {
                throw SimError.input("\(location): rule_remove needs \"rule\": a rule name or id")
            }
            return ScriptedEvent(at: at, kind: .ruleRemove(selector))
        case "iface_down": return ScriptedEvent(at: at, kind: .interfaceDown(try interface()))
        case "iface_up": return ScriptedEvent(at: at, kind: .interfaceUp(try interface()))
        case "worker_crash":
            guard let worker = object["worker"] as? Int, worker >= 0 else {
                throw SimError.input("\(location): worker_crash needs \"worker\": a worker number (0-based)")
            }
            return ScriptedEvent(at: at, kind: .workerCrash(worker))
        case "config_reload":
            guard let array = object["rules"] as? [Any] else {
                throw SimError.input("\(location): config_reload needs \"rules\": [...] as in the config file")
            }
            return ScriptedEvent(at: at, kind: .configReload(try rules(array)))
        case "join_fail":
            let name = try interface()
            guard let groupText = object["group"] as? String, let group = try? EndpointSyntax.parseAddress(groupText), group.isMulticast else {
                throw SimError.input("\(location): join_fail needs \"group\": a multicast IPv4 or IPv6 address")
            }
            var source: IPAddress?
            if let value = object["source"] {
                guard let text = value as? String, let address = try? EndpointSyntax.parseAddress(text) else {
                    throw SimError.input("\(location): join_fail \"source\" must be an IPv4 or IPv6 address")
                }
                source = address
            }
            guard let error = JoinErrorName.parse(object["errno"]) else {
                throw SimError.input("\(location): join_fail needs \"errno\": a name (\(JoinErrorName.names.map(\.name).joined(separator: ", "))) or a positive number")
            }
            return ScriptedEvent(at: at, kind: .joinFail(MembershipKey(interface: name, group: group, source: source), error))
        case "host_join", "host_leave", "host_version", "querier_start", "querier_stop", "segment_loss":
            return ScriptedEvent(at: at, kind: try parseSegmentEvent(event, object, interface: try interface(), location: location))
        default:
            throw SimError.input("\(location): unknown event \"\(event)\" (rule_add, rule_remove, iface_down, iface_up, worker_crash, config_reload, join_fail, host_join, host_leave, host_version, querier_start, querier_stop, segment_loss)")
        }
    }

    /// JSON lines that `parse` reads back to the same events (keys sorted, one event a line).
    public static func serialize(_ events: [ScriptedEvent]) -> String {
        events.map { event in
            var object: [String: Any] = ["event": event.name]
            switch event.kind {
            case let .ruleAdd(spec): object["rule"] = ruleObjects([spec])[0]
            case let .ruleRemove(selector): object["rule"] = selector
            case let .interfaceDown(name), let .interfaceUp(name): object["iface"] = name.rawValue
            case let .workerCrash(worker): object["worker"] = worker
            case let .configReload(specs): object["rules"] = ruleObjects(specs)
            case .hostJoin, .hostLeave, .hostVersion, .querierStart, .querierStop, .segmentLoss:
                serializeSegmentEvent(event.kind, into: &object)
            case let .joinFail(key, error):
                object["iface"] = key.interface.rawValue
                object["group"] = key.group.description
                if let source = key.source { object["source"] = source.description }
                object["errno"] = JoinErrorName.serialize(error)
            }
            let body = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
                .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            // at_ms first, printed exactly (nanoseconds survive the round trip).
            return "{\"at_ms\":\(formatMilliseconds(event.at)),\(body.dropFirst())"
        }.joined(separator: "\n") + (events.isEmpty ? "" : "\n")
    }

    static func ruleObjects(_ specs: [RuleSpec]) -> [Any] {
        let data = ConfigFile(rules: specs).serialized()
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        return object?["rules"] as? [Any] ?? []
    }

    public static func formatMilliseconds(_ nanoseconds: UInt64) -> String {
        let whole = nanoseconds / 1_000_000
        let fraction = nanoseconds % 1_000_000
        guard fraction != 0 else { return "\(whole)" }
        var digits = String(fraction).leftPadded(6)
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }
}

/// errno names of `join_fail` events, as the daemon's flight recorder writes them (Linux values).
enum JoinErrorName {
    static let names: [(name: String, code: Int32)] = [
        ("ENOBUFS", 105), ("ENODEV", 19), ("EADDRINUSE", 98), ("EADDRNOTAVAIL", 99), ("EPERM", 1), ("ENOENT", 2),
        ("EINTR", 4), ("EBADF", 9), ("EAGAIN", 11), ("ENOMEM", 12), ("EACCES", 13), ("EINVAL", 22), ("ENETDOWN", 100),
        ("ENETUNREACH", 101), ("EHOSTUNREACH", 113),
    ]

    static func error(code: Int32) -> JoinError {
        switch code {
        case 105: .socketFull
        case 19: .noSuchDevice
        case 98: .alreadyMember
        case 99: .notAvailable
        default: .other(errno: code)
        }
    }

    static func parse(_ value: Any?) -> JoinError? {
        if let text = value as? String {
            if let entry = names.first(where: { $0.name == text }) { return error(code: entry.code) }
            guard let code = Int32(text), code > 0 else { return nil }
            return error(code: code)
        }
        guard let number = value as? NSNumber, number.doubleValue == number.doubleValue.rounded(),
              number.doubleValue >= 1, number.doubleValue <= 4095 else { return nil }
        return error(code: Int32(number.doubleValue))
    }

    /// The canonical form: the four the core names by name, any other errno as a number.
    static func serialize(_ error: JoinError) -> Any {
        switch error {
        case .socketFull: "ENOBUFS"
        case .noSuchDevice: "ENODEV"
        case .alreadyMember: "EADDRINUSE"
        case .notAvailable: "EADDRNOTAVAIL"
        case let .other(code): Int(code)
        }
    }
}
