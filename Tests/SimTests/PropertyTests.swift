import PropertyBased
import Testing
@testable import Sim

/// Fault schedules generated as values: when one breaks an invariant, PropertyBased shrinks
/// the schedule (fewer faults, smaller numbers) and prints a seed that replays it.
@Suite struct PropertyTests {
    /// (kind, frame/ordinal, time or amount, duration) -> one fault.
    static let fault = zip(Gen.int(in: 0...9), Gen.int(in: 0...299), Gen.int(in: 0...1500), Gen.int(in: 1...400))
        .map { (t: (Int, Int, Int, Int)) -> ScheduledFault in
            switch t.0 {
            case 0: .dropFrame(t.1)
            case 1: .duplicateFrame(t.1)
            case 2: .delayFrame(t.1, microseconds: t.2 * 10)
            case 3: .truncateFrame(t.1, keep: t.2 % 80)
            case 4: .corruptFrame(t.1, byte: t.2 % 70)
            case 5: .failJoin(t.1 % 8)
            case 6: .failSend(t.1)
            case 7: .loseControl(t.1 % 12)
            case 8: .flap(interface: t.1, atMs: t.2, forMs: t.3)
            default: .crash(worker: t.1, atMs: t.2)
            }
        }
    static let schedule = fault.array(of: 0...10)
    static let runs = environmentInt("SIM_PROPERTY_RUNS", default: 100)

    @Test func twoStreamsSurviveAnyFaultSchedule() async throws {
        let base = try SimCase.load(directory: tracePath("two-streams"))
        await propertyCheck(count: Self.runs, input: Self.schedule) { schedule in
            var simCase = base
            simCase.options.schedule = schedule
            let result = try simCase.run()
            #expect(result.passed, "schedule \(schedule): \(result.violations.prefix(3))")
        }
    }

    @Test func controlEventsSurviveAnyFaultSchedule() async throws {
        let base = try SimCase.load(directory: tracePath("control-events"))
        await propertyCheck(count: Self.runs, input: Self.schedule) { schedule in
            var simCase = base
            simCase.options.schedule = schedule
            let result = try simCase.run()
            #expect(result.passed, "schedule \(schedule): \(result.violations.prefix(3))")
        }
    }

    /// Join failures anywhere in the 50-group case: the relay must still end with exactly the
    /// 50 memberships, spread over sockets within the limit.
    @Test func fiftyGroupsConvergeDespiteJoinFailures() async throws {
        let base = try SimCase.load(directory: tracePath("fifty-groups"))
        await propertyCheck(count: Self.runs / 2, input: Gen.int(in: 0...80).array(of: 0...15)) { failures in
            var simCase = base
            simCase.options.schedule = failures.map { .failJoin($0) }
            let result = try simCase.run()
            #expect(result.passed, "failed joins \(failures): \(result.violations.prefix(3))")
            #expect(result.report.liveness.converged)
        }
    }
}
