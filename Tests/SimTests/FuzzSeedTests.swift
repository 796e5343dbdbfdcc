import Testing
@testable import Sim

/// A fixed set of fuzz seeds on every change, so each change is checked under faults.
/// SIM_FUZZ_SEEDS raises (or lowers) the count; SIM_FUZZ_FIRST moves the window.
@Suite struct FuzzSeedTests {
    @Test func fixedSeedsPass() throws {
        let count = environmentInt("SIM_FUZZ_SEEDS", default: 500)
        let first = UInt64(environmentInt("SIM_FUZZ_FIRST", default: 1))
        let outcome = try Fuzzer.run(seed: first, runs: count)
        if let failure = outcome.failure {
            Issue.record("""
                fuzz seed \(failure.seed) fails (swarm faults \(failure.result.report.run.faults)):
                \(failure.result.violations.prefix(5).map(\.description).joined(separator: "\n"))
                reproduce: mcrelay sim fuzz --seed \(failure.seed) --runs 1 --save /tmp/case
                """)
        }
        #expect(outcome.runs == count)
    }
}
