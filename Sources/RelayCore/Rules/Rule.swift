/// A rule's identity, derived from its input alone (FNV-1a over the input's canonical text,
/// 48 bits), so the same input always gets the same id across restarts, reloads, the daemon
/// and the simulator.
public struct RuleID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue & 0xFFFF_FFFF_FFFF }

    public init(deriving input: InputSpec) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in input.description.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        self.init(rawValue: hash)
    }

    /// Twelve lowercase hex digits.
    public init?(_ text: some StringProtocol) { self.init(parsing: text) }

    init?(parsing text: some StringProtocol) {
        guard text.utf8.count == 12, let value = UInt64(text, radix: 16) else { return nil }
        self.init(rawValue: value)
    }

    public var description: String { String(rawValue, radix: 16).leftPadded(to: 12) }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

extension RuleID: TextCodable {
    public static let textKind = "a rule id (12 hex digits)"
    public init?(_ text: String) { self.init(parsing: text) }
}

/// What a user asks for, before validation.
public struct RuleSpec: Hashable, Sendable, Codable {
    public var name: String?
    public var input: InputSpec
    public var outputs: [OutputSpec]

    public init(name: String? = nil, input: InputSpec, outputs: [OutputSpec]) {
        self.name = name
        self.input = input
        self.outputs = outputs
    }
}

/// A validated rule, as held by the `RuleBook`.
public struct Rule: Hashable, Sendable, CustomStringConvertible, Codable {
    public let id: RuleID
    public let name: String?
    public let input: InputSpec
    public let outputs: [OutputSpec]

    public var spec: RuleSpec { RuleSpec(name: name, input: input, outputs: outputs) }

    public var description: String {
        "\(id)\(name.map { " (\($0))" } ?? ""): \(input) -> " + outputs.map(\.description).joined(separator: ", ")
    }
}

/// Why a rule was refused. Every case names the offending field so the message can be
/// shown to an operator as is.
public enum RuleError: Error, Equatable, Sendable, CustomStringConvertible {
    case inputNotMulticast(IPAddress)
    case inputLocalNetworkControl(IPAddress)
    case inputRangeNotMulticast(InputSpec)
    case inputRangeLinkScoped(InputSpec)
    case inputRangeHostBits(InputSpec)
    case sourceNotUnicast(IPAddress)
    case sourceFamilyMismatch(IPAddress, group: IPAddress)
    case noOutputs
    case tooManyOutputs(Int, limit: Int)
    case outputPortZero(OutputSpec)
    case outputDestinationInvalid(OutputSpec)
    case outputTTLZero(OutputSpec)
    case duplicateOutput(OutputSpec)
    case outputFeedsInput(OutputSpec, RuleID)
    case inputFedByOutput(InputSpec, RuleID)
    case conflictingInput(InputSpec, existing: RuleID)
    case nameInUse(String, existing: RuleID)
    case badName(String)
    case idCollision(RuleID, existing: InputSpec)
    case noSuchRule(String)
    case outputFeedsProxy(OutputSpec, proxy: Int, upstream: InterfaceName)

    public var description: String {
        switch self {
        case let .inputNotMulticast(group):
            "input group \(group) is not a multicast address (224.0.0.0/4 or ff00::/8)"
        case let .inputLocalNetworkControl(group):
            group.family == .ipv4
                ? "input group \(group) is in 224.0.0.0/24 (link-local control traffic such as IGMP and OSPF); it cannot be relayed"
                : "input group \(group) has interface- or link-local scope (ff01::/16, ff02::/16); it must not leave its link"
        case let .inputRangeNotMulticast(input):
            "input \(input): the range must lie within multicast (224.0.0.0/4, at least /4; ff00::/8, at least /8)"
        case let .inputRangeLinkScoped(input):
            "input \(input): the range includes link-scoped groups (224.0.0.0/24; IPv6 scopes 0-2, so at least /16 and outside ff00::/16, ff01::/16, ff02::/16), which are never relayed"
        case let .inputRangeHostBits(input):
            "input \(input): bits are set past the prefix length"
        case let .sourceNotUnicast(source):
            "source \(source) is not a unicast address"
        case let .sourceFamilyMismatch(source, group):
            "source \(source) and group \(group) are of different address families"
        case .noOutputs:
            "a rule needs at least one output"
        case let .tooManyOutputs(count, limit):
            "\(count) outputs; at most \(limit) per rule"
        case let .outputPortZero(output):
            "output \(output): port must be 1-65535"
        case let .outputDestinationInvalid(output):
            "output \(output): destination must be a unicast address or a multicast group outside 224.0.0.0/24, ff01::/16 and ff02::/16"
        case let .outputTTLZero(output):
            "output \(output): TTL must be 1-255"
        case let .duplicateOutput(output):
            "output \(output) is listed twice"
        case let .outputFeedsInput(output, rule):
            "output \(output) would feed straight back into the input of rule \(rule) (a forwarding loop)"
        case let .inputFedByOutput(input, rule):
            "input \(input) is an output of rule \(rule) (a forwarding loop)"
        case let .conflictingInput(input, existing):
            "input \(input) already belongs to rule \(existing) with different outputs; remove it first or replace it"
        case let .nameInUse(name, existing):
            "name \"\(name)\" is already used by rule \(existing)"
        case let .badName(name):
            "name \"\(name)\" must be 1-64 characters of letters, digits, '-', '_' or '.', and not look like a rule id"
        case let .idCollision(id, existing):
            "rule id \(id) is already taken by input \(existing)"
        case let .outputFeedsProxy(output, proxy, upstream):
            "output \(output) sends into the groups proxies[\(proxy)] takes on its upstream \(upstream) (a forwarding loop)"
        case let .noSuchRule(selector):
            "no rule with id or name \"\(selector)\""
        }
    }
}
