import RelayCore
import Testing
@testable import Sim

/// `Simulation.compact()` between soak windows: it forgets only what no check can need. The
/// soak's own fault mix never leaves a frame in flight across a settle, so these tests plant one.
@Suite struct SoakCompactionTests {
    static let in0 = InterfaceName("in0")!
    static let out0 = InterfaceName("out0")!
    static let ruleA = RuleSpec(name: "a", input: InputSpec(interface: in0, group: IPv4Address(239, 1, 1, 1), port: 5000),
                                outputs: [OutputSpec(interface: out0, destination: IPv4Address(239, 10, 1, 1), port: 6000)])
    static let ruleC = RuleSpec(name: "c", input: InputSpec(interface: in0, group: IPv4Address(239, 1, 1, 3), port: 5000),
                                outputs: [OutputSpec(interface: out0, destination: IPv4Address(239, 10, 1, 3), port: 6000)])

    /// Frames to rule A's group at the given times (ms from the window's start).
    static func window(rules: [RuleSpec], framesAtMs: [UInt64], events: [ScriptedEvent] = []) -> SimInput {
        var store = FrameStore()
        for (n, ms) in framesAtMs.enumerated() {
            let bytes = TrafficMaker.datagram(interface: 0, source: IPv4Address(198, 18, 1, 1), group: IPv4Address(239, 1, 1, 1),
                                              port: 5000, payload: Array(repeating: UInt8(n), count: 16), id: UInt16(n))
            store.append(time: ms * 1_000_000, interface: in0, link: .ethernet, bytes: bytes)
        }
        return SimInput(store: store, rules: rules, events: events)
    }

    static func transmittedA(_ sim: Simulation) -> UInt64 {
        sim.makeReport().rules.first { $0.name == "a" }?.outputs.first?.transmitted ?? 0
    }

    /// A frame delayed past the window's settle survives compaction (renumbered, queue entry
    /// included) and is checked and forwarded exactly once in the next window; a rule removed in
    /// the first window and referred to by nothing is dropped from the registry.
    @Test func anArrivalInFlightSurvivesCompactionAndARetiredRuleGoes() throws {
        var options = SimOptions()
        options.workers = 1
        options.continuous = true
        // Frame 9 (sent at 9 ms) arrives 2 s later: long after the first window's settle.
        options.schedule = [.delayFrame(9, microseconds: 2_000_000)]
        let first = Self.window(rules: [Self.ruleA, Self.ruleC], framesAtMs: Array(0..<10),
                                events: [ScriptedEvent(at: 50_000_000, kind: .ruleRemove("c"))])
        let sim = try Simulation(input: first, options: options)
        let one = try sim.runWindow()
        #expect(one.violations.isEmpty, "\(one.violations)")
        #expect(one.liveness.converged && one.liveness.probesForwarded == one.liveness.probesSent)
        #expect(Self.transmittedA(sim) == 9, "frame 9 is still in flight")
        #expect(sim.oracle.registry.specs.count == 2)

        sim.compact()
        // Frames and arrival records are dropped up to the one in flight: it and the probe
        // after it stay (renumbered from 0); rule C is gone.
        #expect(sim.frameOffset.count == 2)
        #expect(sim.arrivalRule.count == 2)
        #expect(sim.oracle.registry.specs == [Self.ruleA])
        var queued: [(Int32, Int32)] = []
        sim.queue.forEachPayload { if case let .arrival(frame, arrival) = $0 { queued.append((frame, arrival)) } }
        #expect(queued.count == 1 && queued[0] == (0, 0))

        // The next window runs past the delayed frame's arrival.
        try sim.load(window: Self.window(rules: [Self.ruleA], framesAtMs: [0, 1_000, 2_500, 3_000]), at: one.endNanoseconds + 1_000_000)
        let two = try sim.runWindow()
        #expect(two.violations.isEmpty, "\(two.violations)")
        #expect(two.liveness.converged && two.liveness.probesForwarded == two.liveness.probesSent)
        #expect(two.countersProblem == nil)
        #expect(Self.transmittedA(sim) == 9 + 1 + 4, "the delayed frame and the second window's four, once each")
        sim.compact()
        #expect(sim.frameOffset.count == 0 && sim.arrivalRule.isEmpty)
    }

    /// The same frame delayed past the settle, but with the plan version that made it
    /// forwardable long gone: forwarding it after compaction must still be judged strictly.
    /// Here the rule is removed in the next window before the frame lands, so the relay must
    /// not forward it, and does not.
    @Test func anArrivalInFlightIsJudgedByTheRulesWhenItLands() throws {
        var options = SimOptions()
        options.workers = 2
        options.continuous = true
        options.schedule = [.delayFrame(4, microseconds: 2_000_000)]
        let sim = try Simulation(input: Self.window(rules: [Self.ruleA], framesAtMs: Array(0..<5)), options: options)
        let one = try sim.runWindow()
        #expect(one.violations.isEmpty, "\(one.violations)")
        sim.compact()
        try sim.load(window: Self.window(rules: [Self.ruleA], framesAtMs: [3_000],
                                         events: [ScriptedEvent(at: 100_000_000, kind: .ruleRemove("a"))]),
                     at: one.endNanoseconds + 1_000_000)
        let two = try sim.runWindow()
        #expect(two.violations.isEmpty, "\(two.violations)")
        #expect(Self.transmittedA(sim) == 4, "neither the late frame nor the one after the remove is forwarded")
    }
}
