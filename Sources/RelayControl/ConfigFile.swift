import Foundation
import RelayCore

/// The JSON config file shared by the daemon (`--config`), `config check` and the simulator:
///
///     {"rules": [{"name": "cam1", "in": "eth0:239.1.1.1:5001", "source": "198.18.1.1",
///                 "out": ["eth1:239.10.1.1:6001:16"]}]}
///
/// `name` and `source` are optional; `out` entries are `IFACE:ADDRESS:PORT[:TTL]`. A `"comment"`
/// key (any JSON value, usually a string or an array of strings) is allowed at the top and in
/// each rule and ignored: JSON has no comments, and the packaged example config needs them.
public struct ConfigFile: Sendable, Equatable {
    public var rules: [RuleSpec]
    /// Interfaces where the relay is an IGMP/MLD router (querier and listener tracking).
    public var queriers: [QuerierSetting]
    /// IGMP/MLD proxies (RFC 4605): `{"upstream": "eth0", "downstream": ["eth1"], "groups": ["239.0.0.0/8"]}`.
    public var proxies: [ProxyConfiguration]

    public init(rules: [RuleSpec], queriers: [QuerierSetting] = [], proxies: [ProxyConfiguration] = []) {
        self.rules = rules
        self.queriers = queriers
        self.proxies = proxies
    }

    /// The listener tracking the relay runs: the `queriers` as written, plus one entry with the
    /// RFC defaults for each proxy downstream that has none (a proxy cannot know what its
    /// downstream wants without it), for the families of the proxy's groups.
    public var effectiveQueriers: [QuerierSetting] {
        var settings = queriers
        for proxy in proxies {
            let families = AddressFamily.allCases.filter { family in proxy.groups.contains { $0.family == family } }
            for interface in proxy.downstream {
                if let index = settings.firstIndex(where: { $0.interface == interface }) {
                    if index >= queriers.count {
                        settings[index].families = AddressFamily.allCases.filter {
                            settings[index].families.contains($0) || families.contains($0)
                        }
                    }
                } else {
                    settings.append(QuerierSetting(interface: interface, families: families))
                }
            }
        }
        return settings
    }

    public static func load(path: String) throws(ConfigError) -> ConfigFile {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ConfigError(location: path, message: "cannot read file: \(error.localizedDescription)")
        }
        return try parse(data, origin: path)
    }

    /// Parses and validates: every rule alone and the set together (duplicates, loops,
    /// names), so a file that loads is one the relay accepts as a whole.
    public static func parse(_ data: Data, origin: String = "config") throws(ConfigError) -> ConfigFile {
        if let problem = JSONSyntax.firstProblem(in: data) {
            throw ConfigError(location: "\(origin): line \(problem.line), column \(problem.column)", message: problem.message)
        }
        let raw: RawFile
        do {
            raw = try JSONDecoder().decode(RawFile.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw ConfigError(location: origin + where_(context.codingPath), message: "missing \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, context) {
            throw ConfigError(location: origin + where_(context.codingPath), message: context.debugDescription)
        } catch let DecodingError.valueNotFound(_, context) {
            throw ConfigError(location: origin + where_(context.codingPath), message: "missing value")
        } catch let DecodingError.dataCorrupted(context) {
            let detail = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            throw ConfigError(location: origin + where_(context.codingPath),
                              message: detail.map { "not valid JSON: \($0)" } ?? context.debugDescription)
        } catch {
            throw ConfigError(location: origin, message: "not valid JSON: \(error)")
        }
        var specs: [RuleSpec] = []
        for (index, rule) in raw.rules.enumerated() {
            let location = "\(origin): rules[\(index)]" + (rule.name.map { " (\($0))" } ?? "")
            do {
                let source = try rule.source.map { text throws(EndpointSyntaxError) in try EndpointSyntax.parseAddress(text) }
                let input = try EndpointSyntax.parseInput(rule.in, source: source)
                let outputs = try rule.out.map { text throws(EndpointSyntaxError) in try EndpointSyntax.parseOutput(text) }
                specs.append(RuleSpec(name: rule.name, input: input, outputs: outputs))
            } catch {
                throw ConfigError(location: location, message: error.description)
            }
        }
        var queriers: [QuerierSetting] = []
        for (index, raw) in (raw.queriers ?? []).enumerated() {
            let location = "\(origin): queriers[\(index)]"
            let setting: QuerierSetting
            do { setting = try raw.setting() } catch { throw ConfigError(location: location, message: error.message) }
            if queriers.contains(where: { $0.interface == setting.interface }) {
                throw ConfigError(location: location, message: "interface \(setting.interface) is listed twice")
            }
            queriers.append(setting)
        }
        for (index, spec) in specs.enumerated() {
            if let problem = QuerierSetting.followProblem(spec, queriers: queriers) {
                throw ConfigError(location: "\(origin): rules[\(index)]" + (spec.name.map { " (\($0))" } ?? ""),
                                  message: problem)
            }
        }
        var book = RuleBook()
        for (index, spec) in specs.enumerated() {
            do { try book.add(spec) } catch {
                throw ConfigError(location: "\(origin): rules[\(index)]" + (spec.name.map { " (\($0))" } ?? ""),
                                  message: error.description)
            }
        }
        var proxies: [ProxyConfiguration] = []
        for (index, raw) in (raw.proxies ?? []).enumerated() {
            let location = "\(origin): proxies[\(index)]"
            let proxy: ProxyConfiguration
            do { proxy = try raw.configuration() } catch { throw ConfigError(location: location, message: error.message) }
            // A downstream listed in `queriers` must track the families the proxy's groups need.
            for interface in proxy.downstream {
                guard let setting = queriers.first(where: { $0.interface == interface }) else { continue }
                for group in proxy.groups where !setting.families.contains(group.family) {
                    throw ConfigError(location: location, message: "downstream \(interface) has a queriers entry without "
                        + "\(group.family), which group \(group) needs (add it to that entry's families)")
                }
            }
            proxies.append(proxy)
        }
        do {
            try ProxyConfiguration.validate(proxies)
            try ProxyConfiguration.check(proxies, against: book.rules.values)
        } catch {
            throw ConfigError(location: "\(origin): proxies", message: error.description)
        }
        return ConfigFile(rules: specs, queriers: queriers, proxies: proxies)
    }

    /// Canonical JSON (sorted keys, outputs with explicit TTL) that parses back to an equal file.
    public func serialized() -> Data {
        var raw = RawFile(rules: rules.map { spec in
            RawRule(name: spec.name,
                    in: spec.input.endpoint,
                    source: spec.input.source?.description,
                    out: spec.outputs.map(\.description))
        })
        raw.queriers = queriers.isEmpty ? nil : queriers.map(RawQuerier.init)
        raw.proxies = proxies.isEmpty ? nil : proxies.map(RawProxy.init)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(raw)) ?? Data("{\"rules\":[]}".utf8)
    }

    struct RawFile: Codable {
        var rules: [RawRule]
        var queriers: [RawQuerier]?
        var proxies: [RawProxy]?

        init(rules: [RawRule]) { self.rules = rules }

        init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(in: decoder, allowed: ["rules", "queriers", "proxies"], ignored: ["comment"])
            let container = try decoder.container(keyedBy: CodingKeys.self)
            rules = try container.decodeIfPresent([RawRule].self, forKey: .rules) ?? []
            queriers = try container.decodeIfPresent([RawQuerier].self, forKey: .queriers)
            proxies = try container.decodeIfPresent([RawProxy].self, forKey: .proxies)
        }
    }

    struct RawRule: Codable {
        var name: String?
        var `in`: String
        var source: String?
        var out: [String]

        init(name: String?, in input: String, source: String?, out: [String]) {
            (self.name, self.in, self.source, self.out) = (name, input, source, out)
        }

        init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(in: decoder, allowed: ["name", "in", "source", "out"], ignored: ["comment"])
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decodeIfPresent(String.self, forKey: .name)
            self.in = try container.decode(String.self, forKey: .in)
            source = try container.decodeIfPresent(String.self, forKey: .source)
            out = try container.decode([String].self, forKey: .out)
        }
    }

    private static func where_(_ path: [any CodingKey]) -> String {
        guard !path.isEmpty else { return "" }
        return ": " + path.map { key in
            key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)"
        }.joined().trimmingPrefix(".")
    }
}

/// A misspelt key ("ouput") must not silently drop what it was meant to configure. `ignored`
/// keys are accepted and skipped (not listed in the error, which names what configures something).
func rejectUnknownKeys(in decoder: any Decoder, allowed: [String], ignored: [String] = []) throws {
    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
    let container = try decoder.container(keyedBy: AnyKey.self)
    if let unknown = container.allKeys.map(\.stringValue).sorted().first(where: { !allowed.contains($0) && !ignored.contains($0) }) {
        throw DecodingError.dataCorrupted(.init(
            codingPath: decoder.codingPath,
            debugDescription: "unknown key \"\(unknown)\" (expected \(allowed.joined(separator: ", ")))"))
    }
}

/// A config problem: where (file, rule index and name) and what.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public var location: String
    public var message: String
    public var description: String { "\(location): \(message)" }
}

/// One interface where the relay runs the router side of IGMP and/or MLD (config `queriers`):
///
///     {"interface": "rout0", "families": ["ipv4", "ipv6"], "version": 3, "querier": true,
///      "robustness": 2, "query_interval": 125, "query_response_interval": 10,
///      "last_member_query_interval": 1}
///
/// Everything but `interface` is optional, with the RFCs' defaults (RFC 3376 8, RFC 3810 9);
/// intervals are seconds (fractions allowed). `version` 3 is IGMPv3 / MLDv2, 2 is IGMPv2 /
/// MLDv1. `"querier": false` tracks listeners without ever querying.
public struct QuerierSetting: Sendable, Hashable {
    public var interface: InterfaceName
    public var families: [AddressFamily]
    public var configuration: ListenerConfiguration

    public init(interface: InterfaceName, families: [AddressFamily] = AddressFamily.allCases,
                configuration: ListenerConfiguration = ListenerConfiguration()) {
        self.interface = interface
        self.families = families
        self.configuration = configuration
    }
}

extension QuerierSetting {
    /// Why a rule's follow outputs could never open with these queriers, or nil: listener
    /// state exists only on interfaces (and families) listed under "queriers" (also with
    /// `"querier": false`, where another router queries and mcrelay only listens).
    public static func followProblem(_ spec: RuleSpec, queriers: [QuerierSetting]) -> String? {
        for output in spec.outputs where output.followsListeners {
            let tracked = queriers.contains { $0.interface == output.interface && $0.families.contains(output.family) }
            if !tracked {
                let protocolName = output.family == .ipv4 ? "IGMP" : "MLD"
                return "output \(output) follows listeners, but \(output.interface) has no \(protocolName) listener tracking "
                    + "(add {\"interface\": \"\(output.interface)\", \"families\": [\"\(output.family)\"]} to \"queriers\"; "
                    + "\"querier\": false tracks listeners without querying), so it would never send"
            }
        }
        return nil
    }
}

struct QuerierSettingError: Error { var message: String }

struct RawQuerier: Codable {
    var interface: String
    var families: [String]?
    var version: Int?
    var querier: Bool?
    var robustness: Int?
    var queryInterval: Double?
    var queryResponseInterval: Double?
    var lastMemberQueryInterval: Double?

    enum CodingKeys: String, CodingKey {
        case interface, families, version, querier, robustness
        case queryInterval = "query_interval", queryResponseInterval = "query_response_interval"
        case lastMemberQueryInterval = "last_member_query_interval"
    }

    init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allNames, ignored: ["comment"])
        let container = try decoder.container(keyedBy: CodingKeys.self)
        interface = try container.decode(String.self, forKey: .interface)
        families = try container.decodeIfPresent([String].self, forKey: .families)
        version = try container.decodeIfPresent(Int.self, forKey: .version)
        querier = try container.decodeIfPresent(Bool.self, forKey: .querier)
        robustness = try container.decodeIfPresent(Int.self, forKey: .robustness)
        queryInterval = try container.decodeIfPresent(Double.self, forKey: .queryInterval)
        queryResponseInterval = try container.decodeIfPresent(Double.self, forKey: .queryResponseInterval)
        lastMemberQueryInterval = try container.decodeIfPresent(Double.self, forKey: .lastMemberQueryInterval)
    }

    init(_ setting: QuerierSetting) {
        let c = setting.configuration
        interface = setting.interface.rawValue
        families = setting.families.map(\.rawValue)
        version = c.version == .v3 ? 3 : 2
        querier = c.querierEnabled
        robustness = c.robustness
        queryInterval = Self.seconds(c.queryInterval)
        queryResponseInterval = Self.seconds(c.queryResponseInterval)
        lastMemberQueryInterval = Self.seconds(c.lastMemberQueryInterval)
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    func setting() throws(QuerierSettingError) -> QuerierSetting {
        guard let name = InterfaceName(interface) else {
            throw QuerierSettingError(message: "\"\(interface)\" is not a valid interface name")
        }
        var parsedFamilies: [AddressFamily] = []
        for text in families ?? ["ipv4", "ipv6"] {
            guard let family = AddressFamily(rawValue: text) else {
                throw QuerierSettingError(message: "families: \"\(text)\" is not ipv4 or ipv6")
            }
            if !parsedFamilies.contains(family) { parsedFamilies.append(family) }
        }
        guard !parsedFamilies.isEmpty else { throw QuerierSettingError(message: "families: name ipv4, ipv6 or both") }
        let listenerVersion: ListenerVersion
        switch version ?? 3 {
        case 3: listenerVersion = .v3
        case 2: listenerVersion = .v2
        default: throw QuerierSettingError(message: "version \(version!) is not 2 (IGMPv2 / MLDv1) or 3 (IGMPv3 / MLDv2)")
        }
        if let robustness, !(1...7).contains(robustness) {
            throw QuerierSettingError(message: "robustness \(robustness) must be 1-7 (the QRV field holds 3 bits)")
        }
        func interval(_ value: Double?, _ name: String, range: ClosedRange<Double>, default fallback: Double) throws(QuerierSettingError) -> Duration {
            let value = value ?? fallback
            guard range.contains(value) else {
                throw QuerierSettingError(message: "\(name) \(value) must be \(range.lowerBound)-\(range.upperBound) seconds")
            }
            return .milliseconds(Int64((value * 1000).rounded()))
        }
        let queryInterval = try interval(self.queryInterval, "query_interval", range: 1...31744, default: 125)
        let response = try interval(queryResponseInterval, "query_response_interval", range: 0.1...3174.4, default: 10)
        guard response < queryInterval else {
            throw QuerierSettingError(message: "query_response_interval must be shorter than query_interval (RFC 3376 8.3)")
        }
        let lastMember = try interval(lastMemberQueryInterval, "last_member_query_interval", range: 0.1...25.5, default: 1)
        let configuration = ListenerConfiguration(
            version: listenerVersion, querierEnabled: querier ?? true, robustness: robustness ?? 2,
            queryInterval: queryInterval, queryResponseInterval: response, lastMemberQueryInterval: lastMember)
        return QuerierSetting(interface: name, families: parsedFamilies, configuration: configuration)
    }
}

extension RawQuerier.CodingKeys: CaseIterable {
    static var allNames: [String] { allCases.map(\.stringValue) }
}

/// One proxy as the config writes it:
///
///     {"upstream": "eth0", "downstream": ["eth1", "eth2"], "groups": ["239.0.0.0/8", "ff3e::/16"]}
struct RawProxy: Codable {
    var upstream: String
    var downstream: [String]
    var groups: [String]

    init(_ proxy: ProxyConfiguration) {
        upstream = proxy.upstream.rawValue
        downstream = proxy.downstream.map(\.rawValue)
        groups = proxy.groups.map(\.description)
    }

    init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: ["upstream", "downstream", "groups"], ignored: ["comment"])
        let container = try decoder.container(keyedBy: CodingKeys.self)
        upstream = try container.decode(String.self, forKey: .upstream)
        downstream = try container.decode([String].self, forKey: .downstream)
        groups = try container.decode([String].self, forKey: .groups)
    }

    func configuration() throws(QuerierSettingError) -> ProxyConfiguration {
        guard let up = InterfaceName(upstream) else {
            throw QuerierSettingError(message: "upstream: \"\(upstream)\" is not a valid interface name")
        }
        var down: [InterfaceName] = []
        for text in downstream {
            guard let name = InterfaceName(text) else {
                throw QuerierSettingError(message: "downstream: \"\(text)\" is not a valid interface name")
            }
            down.append(name)
        }
        var prefixes: [GroupPrefix] = []
        for text in groups {
            do { prefixes.append(try GroupPrefix(parsing: text)) } catch {
                throw QuerierSettingError(message: "groups: \(error.description)")
            }
        }
        let proxy = ProxyConfiguration(upstream: up, downstream: down, groups: prefixes)
        do { try ProxyConfiguration.validate([proxy]) } catch {
            // The index is the caller's: say the field alone.
            throw QuerierSettingError(message: error.description.replacingOccurrences(of: "proxies[0]: ", with: ""))
        }
        return proxy
    }
}
