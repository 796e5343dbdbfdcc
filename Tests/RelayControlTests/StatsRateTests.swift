import Foundation
import RelayControl
import RelayCore
import Testing

/// `StatsRates.compute`: rates from two cumulative replies, as `mcrelay stats --watch` shows them.
@Suite("stats --watch rates")
struct StatsRateTests {
    func output(_ out: String, packets: UInt64, bytes: UInt64, errors: UInt64 = 0) -> OutputStatsView {
        OutputStatsView(out: out, packets: packets, bytes: bytes, sendErrors: errors)
    }

    func rule(_ id: String, packets: UInt64, bytes: UInt64, outputs: [OutputStatsView]) throws -> RuleStatsView {
        // RuleStatsView has no memberwise init; build it the way the client receives it: from JSON.
        let json: [String: Any] = [
            "id": id, "in": "rin0:239.1.1.1:5001", "packets": packets, "bytes": bytes,
            "outputs": outputs.map { ["out": $0.out, "packets": $0.packets, "bytes": $0.bytes, "send_errors": $0.sendErrors] },
        ]
        return try JSONDecoder().decode(RuleStatsView.self, from: JSONSerialization.data(withJSONObject: json))
    }

    func stats(_ rules: [RuleStatsView], ingressQueueDrops: UInt64 = 0, noRule: UInt64 = 0) -> StatsView {
        var drops = DropCounters()
        drops[.noMatchingRule] = noRule
        var view = StatsView(rules: rules, drops: drops, workers: [], planVersion: 1, joined: [], outstanding: [],
                             helperSockets: [], interfacesUp: [])
        view.ingressQueueDrops = ingressQueueDrops
        return view
    }

    @Test("deltas over the elapsed time: pps and payload Mbit/s, per rule and per output")
    func deltas() throws {
        let before = stats([try rule("aaaaaaaaaaaa", packets: 100, bytes: 100_000,
                                     outputs: [output("rout0:239.10.1.1:6001:64", packets: 100, bytes: 100_000, errors: 1)])],
                           noRule: 5)
        let after = stats([try rule("aaaaaaaaaaaa", packets: 600, bytes: 350_000,
                                    outputs: [output("rout0:239.10.1.1:6001:64", packets: 590, bytes: 345_000, errors: 3)])],
                          ingressQueueDrops: 2, noRule: 9)
        let rates = StatsRates.compute(previous: before, current: after, elapsedSeconds: 2)
        #expect(rates.intervalSeconds == 2)
        let r = try #require(rates.rules.first)
        #expect(r.pps == 250)
        #expect(r.mbps == 1.0)  // 250,000 bytes in 2 s = 1,000,000 bit/s
        #expect(r.packets == 600)
        let o = try #require(r.outputs.first)
        #expect(o.pps == 245)
        #expect(o.mbps == 0.98)
        #expect(o.sendErrorsPerSecond == 1)
        #expect(rates.dropsPerSecond == 3)  // (9 + 2) - 5 over 2 s
    }

    @Test("first sample and non-positive elapsed time: rates unknown, totals shown")
    func firstSample() throws {
        let now = stats([try rule("aaaaaaaaaaaa", packets: 10, bytes: 1000, outputs: [output("o", packets: 10, bytes: 1000)])])
        for rates in [StatsRates.compute(previous: nil, current: now, elapsedSeconds: 1),
                      StatsRates.compute(previous: now, current: now, elapsedSeconds: 0)] {
            #expect(rates.rules[0].pps == nil && rates.rules[0].mbps == nil && rates.rules[0].outputs[0].pps == nil)
            #expect(rates.rules[0].packets == 10)
            #expect(rates.dropsPerSecond == nil)
        }
        // In JSON an unknown rate is an explicit null (same keys on every line), and decodes back.
        let first = StatsRates.compute(previous: nil, current: now, elapsedSeconds: 1)
        let line = ControlProtocol.encodeLine(first)
        let json = String(decoding: line, as: UTF8.self)
        #expect(json.contains(#""pps":null"#) && json.contains(#""interval_s":null"#) && json.contains(#""drops_per_s":null"#), "\(json)")
        #expect(try JSONDecoder().decode(StatsRates.self, from: Data(line)) == first)
    }

    @Test("a counter that went down (restart) gives no rate, never a negative one")
    func counterReset() throws {
        let before = stats([try rule("aaaaaaaaaaaa", packets: 1000, bytes: 9000, outputs: [output("o", packets: 1000, bytes: 9000)])],
                           noRule: 50)
        let after = stats([try rule("aaaaaaaaaaaa", packets: 20, bytes: 9500, outputs: [output("o", packets: 20, bytes: 180)])])
        let rates = StatsRates.compute(previous: before, current: after, elapsedSeconds: 1)
        #expect(rates.rules[0].pps == nil)
        #expect(rates.rules[0].mbps == 0.004)  // bytes still went up: that delta is fine
        #expect(rates.rules[0].outputs[0].pps == nil && rates.rules[0].outputs[0].mbps == nil)
        #expect(rates.dropsPerSecond == nil)
        let json = String(decoding: ControlProtocol.encodeLine(rates), as: UTF8.self)
        #expect(!json.contains("-"), "no negative number in \(json)")
    }

    @Test("rules appearing and disappearing are matched by id, outputs by text, not by position")
    func rulesComeAndGo() throws {
        let before = stats([
            try rule("aaaaaaaaaaaa", packets: 100, bytes: 100, outputs: [output("x", packets: 100, bytes: 100), output("y", packets: 7, bytes: 7)]),
            try rule("bbbbbbbbbbbb", packets: 50, bytes: 50, outputs: [output("x", packets: 50, bytes: 50)]),
        ])
        let after = stats([
            try rule("cccccccccccc", packets: 30, bytes: 30, outputs: [output("x", packets: 30, bytes: 30)]),
            try rule("aaaaaaaaaaaa", packets: 110, bytes: 110, outputs: [output("y", packets: 9, bytes: 9), output("z", packets: 4, bytes: 4)]),
        ])
        let rates = StatsRates.compute(previous: before, current: after, elapsedSeconds: 1)
        #expect(rates.rules.map(\.id) == ["cccccccccccc", "aaaaaaaaaaaa"])  // the daemon's order
        #expect(rates.rules[0].pps == nil, "a new rule has no baseline")
        #expect(rates.rules[1].pps == 10)
        #expect(rates.rules[1].outputs.map(\.out) == ["y", "z"])
        #expect(rates.rules[1].outputs[0].pps == 2)
        #expect(rates.rules[1].outputs[1].pps == nil, "a new output has no baseline")
    }

    @Test("the table: one line per rule and output, aligned, unknown rates as -, drops by reason")
    func table() throws {
        let before = stats([try rule("aaaaaaaaaaaa", packets: 0, bytes: 0, outputs: [output("rout0:239.10.1.1:6001:64", packets: 0, bytes: 0)])])
        let after = stats([try rule("aaaaaaaaaaaa", packets: 500, bytes: 100_000, outputs: [output("rout0:239.10.1.1:6001:64", packets: 500, bytes: 100_000)])],
                          ingressQueueDrops: 3, noRule: 4)
        let text = StatsRates.compute(previous: before, current: after, elapsedSeconds: 1).table
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0].hasPrefix("RULE"))
        #expect(lines[1].contains("aaaaaaaaaaaa") && lines[1].contains("500.0") && lines[1].contains("0.800"))
        #expect(lines[2].contains("-> rout0:239.10.1.1:6001:64"))
        #expect(lines[0].count == lines[2].count, "numeric columns are right-aligned to the same width:\n\(text)")
        #expect(text.contains("drops: no_matching_rule=4 ingress_queue=3 (7.0/s)"), "\(text)")
        #expect(text.hasSuffix("\n"))
        let first = StatsRates.compute(previous: nil, current: after, elapsedSeconds: 1).table
        #expect(first.contains("first sample"))
    }
}
