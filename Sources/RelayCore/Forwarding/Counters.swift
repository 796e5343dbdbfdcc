/// Packets and bytes a rule accepted.
public struct TrafficCounter: Sendable, Equatable, Codable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    public init(packets: UInt64 = 0, bytes: UInt64 = 0) {
        self.packets = packets
        self.bytes = bytes
    }
}

/// Per output: what was handed to the driver to send, how many of those sends failed, and
/// (a follow output) how many datagrams it did not send because no listener wanted them.
public struct OutputCounter: Sendable, Equatable, Codable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    public var sendErrors: UInt64 = 0
    /// "suppressed: no listener": datagrams of the rule this output's closed gate held back.
    public var suppressed: UInt64 = 0
    public init(packets: UInt64 = 0, bytes: UInt64 = 0, sendErrors: UInt64 = 0, suppressed: UInt64 = 0) {
        self.packets = packets
        self.bytes = bytes
        self.sendErrors = sendErrors
        self.suppressed = suppressed
    }

    private enum CodingKeys: String, CodingKey { case packets, bytes, sendErrors, suppressed }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        packets = try container.decode(UInt64.self, forKey: .packets)
        bytes = try container.decode(UInt64.self, forKey: .bytes)
        sendErrors = try container.decode(UInt64.self, forKey: .sendErrors)
        suppressed = try container.decodeIfPresent(UInt64.self, forKey: .suppressed) ?? 0
    }
}

/// Drops per reason, indexed by `DropReason.rawValue`.
public struct DropCounters: Sendable, Equatable {
    private var counts: InlineArray<13, UInt64> = .init(repeating: 0)

    public init() {}

    @inline(__always)
    public mutating func record(_ reason: DropReason) { counts[reason.rawValue] &+= 1 }

    public subscript(reason: DropReason) -> UInt64 {
        get { counts[reason.rawValue] }
        set { counts[reason.rawValue] = newValue }
    }

    public var total: UInt64 { DropReason.allCases.reduce(0) { $0 &+ counts[$1.rawValue] } }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        DropReason.allCases.allSatisfy { lhs[$0] == rhs[$0] }
    }

    public var nonZero: [(reason: DropReason, count: UInt64)] {
        DropReason.allCases.compactMap { self[$0] == 0 ? nil : ($0, self[$0]) }
    }

    public static func + (lhs: Self, rhs: Self) -> Self {
        var sum = lhs
        for reason in DropReason.allCases { sum[reason] &+= rhs[reason] }
        return sum
    }
}

/// A snapshot of one rule's counters, off the hot path (allocates).
public struct RuleStatistics: Sendable, Equatable, Codable {
    public var rule: Rule
    public var accepted: TrafficCounter
    public var outputs: [OutputCounter]
    /// Per output: may it send now (false: a follow output whose gate is closed). nil from
    /// a worker that predates gates.
    public var open: [Bool]?

    public init(rule: Rule, accepted: TrafficCounter, outputs: [OutputCounter], open: [Bool]? = nil) {
        self.rule = rule
        self.accepted = accepted
        self.outputs = outputs
        self.open = open
    }
}

public struct ForwardingStatistics: Sendable, Equatable, Codable {
    public var rules: [RuleStatistics]
    public var drops: DropCounters
    /// Frames the kernel dropped before the Forwarder saw them (the ingress socket's receive
    /// queue was full). The core cannot see these; the driver fills the count in.
    public var ingressQueueDrops: UInt64 = 0
    /// The worker's egress decision per output interface (the driver fills it in; nil from a
    /// driver that has none).
    public var egress: [InterfaceEgress]?

    public init(rules: [RuleStatistics] = [], drops: DropCounters = DropCounters()) {
        self.rules = rules
        self.drops = drops
    }

    /// Sums statistics from several workers, rule by rule (matched by id and outputs).
    public static func merged(_ parts: [ForwardingStatistics]) -> ForwardingStatistics {
        var order: [RuleID] = []
        var byID: [RuleID: RuleStatistics] = [:]
        var drops = DropCounters()
        var queueDrops: UInt64 = 0
        var egress: [InterfaceName: InterfaceEgress] = [:]
        for part in parts {
            drops = drops + part.drops
            queueDrops &+= part.ingressQueueDrops
            // Workers decide alike from the same facts; the first to report an interface stands.
            for decision in part.egress ?? [] where egress[decision.interface] == nil { egress[decision.interface] = decision }
            for stats in part.rules {
                guard var existing = byID[stats.rule.id], existing.rule == stats.rule else {
                    if byID[stats.rule.id] == nil { order.append(stats.rule.id) }
                    byID[stats.rule.id] = stats
                    continue
                }
                existing.accepted.packets &+= stats.accepted.packets
                existing.accepted.bytes &+= stats.accepted.bytes
                for index in existing.outputs.indices {
                    existing.outputs[index].packets &+= stats.outputs[index].packets
                    existing.outputs[index].bytes &+= stats.outputs[index].bytes
                    existing.outputs[index].sendErrors &+= stats.outputs[index].sendErrors
                    existing.outputs[index].suppressed &+= stats.outputs[index].suppressed
                }
                // Workers hold the same gates; one that opened first (its delta arrived) shows it open.
                if let open = stats.open {
                    existing.open = existing.open.map { zip($0, open).map { $0 || $1 } } ?? open
                }
                byID[stats.rule.id] = existing
            }
        }
        var merged = ForwardingStatistics(rules: order.map { byID[$0]! }, drops: drops)
        merged.ingressQueueDrops = queueDrops
        if parts.contains(where: { $0.egress != nil }) { merged.egress = egress.keys.sorted().map { egress[$0]! } }
        return merged
    }
}

/// Encoded as `{"reason": count}` with every reason present, in declaration order.
extension DropCounters: Codable {
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: Key.self)
        for key in container.allKeys {
            guard let reason = DropReason(name: key.stringValue) else {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: container, debugDescription: "unknown drop reason \"\(key.stringValue)\"")
            }
            self[reason] = try container.decode(UInt64.self, forKey: key)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        for reason in DropReason.allCases { try container.encode(self[reason], forKey: Key(stringValue: reason.description)) }
    }
}
