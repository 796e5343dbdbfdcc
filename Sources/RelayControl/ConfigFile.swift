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

    public init(rules: [RuleSpec]) { self.rules = rules }

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
        var book = RuleBook()
        for (index, spec) in specs.enumerated() {
            do { try book.add(spec) } catch {
                throw ConfigError(location: "\(origin): rules[\(index)]" + (spec.name.map { " (\($0))" } ?? ""),
                                  message: error.description)
            }
        }
        return ConfigFile(rules: specs)
    }

    /// Canonical JSON (sorted keys, outputs with explicit TTL) that parses back to an equal file.
    public func serialized() -> Data {
        let raw = RawFile(rules: rules.map { spec in
            RawRule(name: spec.name,
                    in: spec.input.endpoint,
                    source: spec.input.source?.description,
                    out: spec.outputs.map(\.description))
        })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(raw)) ?? Data("{\"rules\":[]}".utf8)
    }

    struct RawFile: Codable {
        var rules: [RawRule]

        init(rules: [RawRule]) { self.rules = rules }

        init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(in: decoder, allowed: ["rules"], ignored: ["comment"])
            let container = try decoder.container(keyedBy: CodingKeys.self)
            rules = try container.decode([RawRule].self, forKey: .rules)
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
