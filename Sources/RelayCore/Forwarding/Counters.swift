/// Packets and bytes a rule accepted.
public struct TrafficCounter: Sendable, Equatable, Codable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    public init(packets: UInt64 = 0, bytes: UInt64 = 0) {
        self.packets = packets
        self.bytes = bytes
    }
}

/// Per output: what was handed to the driver to send, and how many of those sends failed.
public struct OutputCounter: Sendable, Equatable, Codable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    public var sendErrors: UInt64 = 0
    public init(packets: UInt64 = 0, bytes: UInt64 = 0, sendErrors: UInt64 = 0) {
        self.packets = packets
        self.bytes = bytes
        self.sendErrors = sendErrors
    }
}

/// Drops per reason, indexed by `DropReason.rawValue`.
public struct DropCounters: Sendable, Equatable {
    private var counts: InlineArray<10, UInt64> = .init(repeating: 0)

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

    public static func + (lhs: Self, rhs: Self) -> Self {
        var sum = lhs
        for reason in DropReason.allCases { sum[reason] &+= rhs[reason] }
        return sum
    }
}

/// A snapshot of one rule's counters, off the hot path (allocates).
public struct RuleStatistics: Sendable, Equatable {
    public var rule: Rule
    public var accepted: TrafficCounter
    public var outputs: [OutputCounter]
}

public struct ForwardingStatistics: Sendable, Equatable {
    public var rules: [RuleStatistics]
    public var drops: DropCounters

    public init(rules: [RuleStatistics] = [], drops: DropCounters = DropCounters()) {
        self.rules = rules
        self.drops = drops
    }

    /// Sums statistics from several workers, rule by rule (matched by id and outputs).
    public static func merged(_ parts: [ForwardingStatistics]) -> ForwardingStatistics {
        var order: [RuleID] = []
        var byID: [RuleID: RuleStatistics] = [:]
        var drops = DropCounters()
        for part in parts {
            drops = drops + part.drops
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
                }
                byID[stats.rule.id] = existing
            }
        }
        return ForwardingStatistics(rules: order.map { byID[$0]! }, drops: drops)
    }
}
