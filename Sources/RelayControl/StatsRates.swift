import Foundation
import RelayCore

// Rates for `mcrelay stats --watch`: the daemon only reports cumulative counters, so the client
// takes two replies and divides the counter deltas by the time between them, measured on the
// client's own monotonic clock (the caller passes the elapsed seconds; this code reads no clock).
//
// A rate is nil ("unknown", printed as "-") when there is nothing honest to divide:
//   - no earlier sample (the first refresh, or a rule/output that just appeared),
//   - a counter that went down (the daemon restarted, or a worker restarted and its counts were
//     lost): the delta is unknowable, and a negative rate would be nonsense,
//   - an elapsed time that is not positive.
// Rules are matched by id, outputs by their `out` text within the rule, never by position.

public struct OutputRateView: Codable, Equatable, Sendable {
    public var out: String
    public var packets: UInt64
    public var bytes: UInt64
    public var sendErrors: UInt64
    /// Packets per second over the last interval.
    public var pps: Double?
    /// UDP payload megabits (10^6 bits) per second over the last interval.
    public var mbps: Double?
    public var sendErrorsPerSecond: Double?

    enum CodingKeys: String, CodingKey {
        case out, packets, bytes, pps, mbps
        case sendErrors = "send_errors", sendErrorsPerSecond = "send_errors_per_s"
    }
}

public struct RuleRateView: Codable, Equatable, Sendable {
    public var id: String
    public var name: String?
    public var `in`: String
    public var source: String?
    public var packets: UInt64
    public var bytes: UInt64
    public var pps: Double?
    public var mbps: Double?
    public var outputs: [OutputRateView]
}

public struct StatsRates: Codable, Equatable, Sendable {
    /// Seconds between the two replies the rates come from (nil: first sample).
    public var intervalSeconds: Double?
    public var rules: [RuleRateView]
    /// Cumulative drops per reason, as in `StatsView`.
    public var drops: DropCounters
    public var ingressQueueDrops: UInt64
    /// All drops (every reason plus ingress queue) per second over the last interval.
    public var dropsPerSecond: Double?
    public var planVersion: UInt64
    public var workersAlive: Int
    public var workers: Int

    enum CodingKeys: String, CodingKey {
        case rules, drops, workers
        case intervalSeconds = "interval_s", ingressQueueDrops = "ingress_queue_drops"
        case dropsPerSecond = "drops_per_s", planVersion = "plan_version", workersAlive = "workers_alive"
    }

    /// Rates of `current` relative to `previous`, taken `elapsedSeconds` apart (client clock).
    public static func compute(previous: StatsView?, current: StatsView, elapsedSeconds: Double) -> StatsRates {
        let seconds: Double? = previous != nil && elapsedSeconds > 0 ? elapsedSeconds : nil
        func rate(_ now: UInt64, _ before: UInt64?, scale: Double = 1) -> Double? {
            guard let seconds, let before, now >= before else { return nil }
            return Double(now - before) * scale / seconds
        }
        let earlierRules = Dictionary((previous?.rules ?? []).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let rules = current.rules.map { rule -> RuleRateView in
            let before = earlierRules[rule.id]
            let earlierOutputs = Dictionary((before?.outputs ?? []).map { ($0.out, $0) }, uniquingKeysWith: { first, _ in first })
            let outputs = rule.outputs.map { output -> OutputRateView in
                let old = earlierOutputs[output.out]
                return OutputRateView(
                    out: output.out, packets: output.packets, bytes: output.bytes, sendErrors: output.sendErrors,
                    pps: rate(output.packets, old?.packets), mbps: rate(output.bytes, old?.bytes, scale: 8e-6),
                    sendErrorsPerSecond: rate(output.sendErrors, old?.sendErrors))
            }
            return RuleRateView(id: rule.id, name: rule.name, in: rule.in, source: rule.source,
                                packets: rule.packets, bytes: rule.bytes,
                                pps: rate(rule.packets, before?.packets), mbps: rate(rule.bytes, before?.bytes, scale: 8e-6),
                                outputs: outputs)
        }
        let totalDrops = current.drops.total &+ current.ingressQueueDrops
        let earlierDrops = previous.map { $0.drops.total &+ $0.ingressQueueDrops }
        return StatsRates(intervalSeconds: seconds, rules: rules, drops: current.drops,
                          ingressQueueDrops: current.ingressQueueDrops, dropsPerSecond: rate(totalDrops, earlierDrops),
                          planVersion: current.planVersion, workersAlive: current.workers.filter(\.alive).count,
                          workers: current.workers.count)
    }
}

// MARK: - The `stats --watch` table

extension StatsRates {
    /// A fixed-width table, one line per rule and one per output, then drops and workers.
    public var table: String {
        var rows: [[String]] = [["RULE", "NAME", "IN / OUT", "PPS", "MBIT/S", "PACKETS", "SEND ERR"]]
        for rule in rules {
            rows.append([rule.id, rule.name ?? "-", rule.in + (rule.source.map { " from \($0)" } ?? ""),
                         Self.format(rule.pps, digits: 1), Self.format(rule.mbps, digits: 3), String(rule.packets), ""])
            for output in rule.outputs {
                rows.append(["", "", "-> " + output.out, Self.format(output.pps, digits: 1), Self.format(output.mbps, digits: 3),
                             String(output.packets), String(output.sendErrors)])
            }
        }
        // Left-align the text columns, right-align the numbers.
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        var lines = rows.map { row in
            row.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                return column < 3 ? cell + pad : pad + cell
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }
        if rules.isEmpty { lines.append("no rules") }
        let reasons = drops.nonZero.map { "\($0.reason)=\($0.count)" }
            + (ingressQueueDrops > 0 ? ["ingress_queue=\(ingressQueueDrops)"] : [])
        lines.append("drops: " + (reasons.isEmpty ? "none" : reasons.joined(separator: " "))
                     + " (\(Self.format(dropsPerSecond, digits: 1))/s)")
        lines.append("workers: \(workersAlive)/\(workers) alive, plan v\(planVersion); interval "
                     + (intervalSeconds.map { Self.fixed($0, digits: 2) + " s" } ?? "- (first sample)"))
        return lines.joined(separator: "\n") + "\n"
    }

    /// "-" for unknown; fixed decimals otherwise (no locale: deterministic).
    static func format(_ value: Double?, digits: Int) -> String {
        value.map { fixed($0, digits: digits) } ?? "-"
    }

    static func fixed(_ value: Double, digits: Int) -> String {
        String(format: "%.\(digits)f", value)
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var text = self
        while text.last == " " { text.removeLast() }
        return text
    }
}

// MARK: - JSON: unknown rates are an explicit null, so every line of `stats --watch --json` has the same keys

extension OutputRateView {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(out, forKey: .out)
        try container.encode(packets, forKey: .packets)
        try container.encode(bytes, forKey: .bytes)
        try container.encode(sendErrors, forKey: .sendErrors)
        try container.encode(pps, forKey: .pps)
        try container.encode(mbps, forKey: .mbps)
        try container.encode(sendErrorsPerSecond, forKey: .sendErrorsPerSecond)
    }
}

extension RuleRateView {
    enum CodingKeys: String, CodingKey { case id, name, `in`, source, packets, bytes, pps, mbps, outputs }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encodeIfPresent(name, forKey: .name)
        try container.encode(self.in, forKey: .in)
        try container.encodeIfPresent(source, forKey: .source)
        try container.encode(packets, forKey: .packets)
        try container.encode(bytes, forKey: .bytes)
        try container.encode(pps, forKey: .pps)
        try container.encode(mbps, forKey: .mbps)
        try container.encode(outputs, forKey: .outputs)
    }
}

extension StatsRates {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(intervalSeconds, forKey: .intervalSeconds)
        try container.encode(rules, forKey: .rules)
        try container.encode(drops, forKey: .drops)
        try container.encode(ingressQueueDrops, forKey: .ingressQueueDrops)
        try container.encode(dropsPerSecond, forKey: .dropsPerSecond)
        try container.encode(planVersion, forKey: .planVersion)
        try container.encode(workersAlive, forKey: .workersAlive)
        try container.encode(workers, forKey: .workers)
    }
}
