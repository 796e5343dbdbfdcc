import RelayCore
import Testing
@testable import Sim

/// `sim soak` (issue 7): a short soak passes, is deterministic, and its bound check really
/// fails on state that keeps growing.
@Suite struct SoakTests {
    @Test(arguments: [UInt64(1), 7])
    func shortSoakPasses(seed: UInt64) throws {
        var options = SoakOptions()
        options.seed = seed
        options.hours = 2
        var hours: [SoakHour] = []
        let outcome = try Soak.run(options) { hours.append($0) }
        #expect(outcome.passed, "\(outcome.violation.map(\.description) ?? "")")
        #expect(outcome.hours == 2)
        #expect(hours.count == 2)
        // The harness itself: traffic flowed, faults were injected, state was sampled.
        for hour in hours {
            #expect((hour.frames ?? 0) > 0)
            #expect((hour.faults ?? 0) > 0)
            #expect(hour.peak.first { $0.name == "memberships" }!.value > 0)
        }
        #expect(outcome.simulatedNanoseconds >= 2 * Soak.hour)
    }

    /// One core through a 3-hour window (churn, flaps, crashes): its state stays bounded and
    /// every hour gets a line.
    @Test func multiHourWindowPasses() throws {
        var options = SoakOptions()
        options.seed = 5
        options.hours = 4
        options.windowHours = 3
        var hours: [SoakHour] = []
        let outcome = try Soak.run(options) { hours.append($0) }
        #expect(outcome.passed, "\(outcome.violation.map(\.description) ?? "")")
        #expect(hours.map(\.hour) == [0, 1, 2, 3])
        #expect(hours.map { $0.frames != nil } == [false, false, true, true])
        #expect(hours.allSatisfy { $0.peak.first { $0.name == "memberships" }!.value > 0 })
        #expect(outcome.simulatedNanoseconds >= 4 * Soak.hour)
    }

    @Test func soakIsDeterministic() throws {
        var options = SoakOptions()
        options.seed = 3
        options.hours = 1
        var first: [String] = []
        var second: [String] = []
        _ = try Soak.run(options) { first.append($0.line) }
        _ = try Soak.run(options) { second.append($0.line) }
        #expect(first == second)
        #expect(!first.isEmpty)
    }

    /// A fake oracle table that grows every sample must trip the bound, with the seed and the
    /// simulated time of the first sample over it.
    @Test func leakingStateFailsTheBound() throws {
        var options = SoakOptions()
        options.seed = 1
        options.hours = 24
        // Slow: within one window it stays under the bound; only time makes it cross.
        options.leakPerSample = 10
        var hoursPassed = 0
        let outcome = try Soak.run(options) { _ in hoursPassed += 1 }
        let violation = try #require(outcome.violation)
        #expect(violation.seed == 1)
        #expect(violation.detail.contains("oracle_overflow"), "\(violation.detail)")
        #expect(hoursPassed >= 1, "the leak should take more than one window to show")
        #expect(violation.timeNanoseconds >= Soak.hour)
        #expect(violation.description.contains("seed 1 at simulated"))
        // Without the leak the same seed passes those hours: the failure is the leak's.
        options.leakPerSample = 0
        options.hours = outcome.hours
        #expect(try Soak.run(options).passed)
    }

    /// One core lives through every window: its plan versions keep counting across windows
    /// (a fresh core per window starts again), and the state after days is no bigger than the
    /// bounds of one window allow.
    @Test func oneCoreOutlivesTheWindows() throws {
        var options = SoakOptions()
        options.seed = 1
        options.hours = 4
        let one = try Soak.run(options)
        #expect(one.passed, "\(one.violation.map(\.description) ?? "")")
        options.freshCorePerWindow = true
        let fresh = try Soak.run(options)
        #expect(fresh.passed, "\(fresh.violation.map(\.description) ?? "")")
        let oneVersion = try #require(one.lastSample).planVersion
        let freshVersion = try #require(fresh.lastSample).planVersion
        #expect(oneVersion > freshVersion, "one core: v\(oneVersion); fresh core per window: v\(freshVersion)")
        // The first window's plans alone are fewer than the whole run's.
        options.freshCorePerWindow = false
        options.hours = 1
        #expect(try #require(Soak.run(options).lastSample).planVersion < oneVersion)
    }

    /// The planted non-pruning hook: with compaction off, the oracle's and the simulator's
    /// bookkeeping grows window after window and the bound check must catch it, naming an
    /// oracle field, after the first window (within one window it fits).
    @Test func unprunedOracleFailsTheBound() throws {
        var options = SoakOptions()
        options.seed = 1
        options.hours = 24
        options.skipPruning = true
        var hoursPassed = 0
        let outcome = try Soak.run(options) { _ in hoursPassed += 1 }
        let violation = try #require(outcome.violation, "24 hours without pruning passed the bound check")
        #expect(violation.detail.hasPrefix("state bound: oracle_"), "\(violation.detail)")
        #expect(hoursPassed >= 1, "the growth should take more than one window to show")
        #expect(violation.timeNanoseconds >= Soak.hour)
        // With pruning the same hours pass, and the oracle's tables end no bigger than they started
        // plus one window's worth: they do not grow with time.
        options.skipPruning = false
        options.hours = outcome.hours
        let pruned = try Soak.run(options)
        #expect(pruned.passed, "\(pruned.violation.map(\.description) ?? "")")
    }

    /// Over many windows the oracle's and the simulator's tables stay within one window's
    /// worth: the largest value of each in the last hours is no bigger than a multiple of the
    /// first hours' (they depend on the window's traffic and rules, not on elapsed time).
    @Test func oracleStaysFlatOverAWeekOfWindows() throws {
        var options = SoakOptions()
        options.seed = 4
        options.hours = 48
        options.framesPerMinute = 5
        var hours: [SoakHour] = []
        let outcome = try Soak.run(options) { hours.append($0) }
        #expect(outcome.passed, "\(outcome.violation.map(\.description) ?? "")")
        #expect(hours.count == 48)
        func peak(_ name: String, _ range: Range<Int>) -> Int {
            hours[range].map { $0.peak.first { $0.name == name }!.value }.max() ?? 0
        }
        for name in ["oracle_rules", "oracle_arrivals", "oracle_epochs", "plan_versions", "sim_frames", "arena_bytes"] {
            let early = peak(name, 0..<12)
            let late = peak(name, 36..<48)
            #expect(late <= 2 * early + 64, "\(name): peak \(early) in the first 12 hours, \(late) in the last 12")
        }
    }

    /// The harness itself: a soak with a known driver bug must fail, naming the invariant.
    @Test func driverBugFailsTheSoak() throws {
        var options = SoakOptions()
        options.seed = 2
        options.hours = 2
        options.driverBugs = [.ignoreFanout]
        // The bug only shows with two workers sharing a fanout group.
        options.workers = 2
        options.dispatch = .fanout
        let outcome = try Soak.run(options)
        let violation = try #require(outcome.violation)
        #expect(violation.detail.contains("invariant"), "\(violation.detail)")
    }

    @Test func boundCheckNamesTheField() {
        let bounds = SoakBounds.derive(maxRules: 4, specsSeen: 6, scripted: 10, frames: 100, workers: 2,
                                       interfaces: 4, socketLimit: 20)
        var sizes = StateSizes()
        sizes.membershipEntries = 4
        #expect(bounds.check(sizes) == nil)
        sizes.membershipEntries = 1_000
        #expect(bounds.check(sizes)?.hasPrefix("memberships = 1000") == true)
        sizes.membershipEntries = 4
        sizes.socketsOverLimit = 1
        sizes.overLimitDetail = "core in0#0 holds 21 groups, limit 20"
        #expect(bounds.check(sizes)?.contains("in0#0") == true)
    }

    @Test func rejectsZeroHours() {
        var options = SoakOptions()
        options.hours = 0
        #expect(throws: SimError.self) { _ = try Soak.run(options) }
    }
}
