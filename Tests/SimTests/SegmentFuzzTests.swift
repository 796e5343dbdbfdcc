import Foundation
import RelayCore
import Testing
@testable import Sim

/// `sim fuzz` cases with LAN segments (`FuzzCase.addSegment`): they pass, exercise every
/// listener check, survive a save and load, and a broken gate is found and shrunk.
@Suite struct SegmentFuzzTests {
    @Test func fuzzSegmentsPassAndExerciseTheListenerChecks() throws {
        let count = environmentInt("SIM_SEGMENT_SEEDS", default: 200)
        var withSegments = 0, mld = 0
        var checked: [String: UInt64] = [:]
        var kinds = Set<String>()
        for seed in 1...UInt64(count) {
            let simCase = FuzzCase.generate(seed: seed)
            guard !simCase.input.queriers.isEmpty else { continue }
            withSegments += 1
            if simCase.input.queriers.contains(where: { $0.families == [.ipv6] }) { mld += 1 }
            for event in simCase.input.events where event.isSegmentEvent { kinds.insert(event.name) }
            let result = try simCase.run()
            #expect(result.passed, "seed \(seed): \(result.violations.prefix(3).map(\.description))")
            for invariant in result.report.invariants { checked[invariant.name, default: 0] += invariant.checked }
        }
        #expect(withSegments >= count / 5, "\(withSegments) of \(count) cases have a segment")
        #expect(mld > 0 && mld < withSegments, "\(mld) of \(withSegments) segments run MLD")
        #expect(kinds == ["host_join", "host_leave", "host_version", "querier_start", "querier_stop", "segment_loss"], "\(kinds)")
        for name in [InvariantName.followOutputOpen, InvariantName.followOutputClosed, InvariantName.singleQuerier] {
            #expect((checked[name] ?? 0) > 100, "\(name) checked \(checked[name] ?? 0) times")
        }
    }

    @Test func aSegmentCaseSurvivesSaveAndLoad() throws {
        let seed = try #require((1...UInt64(100)).first { !FuzzCase.generate(seed: $0).input.queriers.isEmpty })
        let simCase = FuzzCase.generate(seed: seed)
        let directory = try temporaryDirectory("segment-case")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try simCase.save(directory: directory)
        let loaded = try SimCase.load(directory: directory)
        #expect(loaded.input.queriers == simCase.input.queriers)
        #expect(loaded.input.events == simCase.input.events)
        #expect(try loaded.run().report == simCase.run().report)
    }

    @Test func fuzzFindsAGateThatNeverClosesAndShrinksIt() throws {
        let outcome = try Fuzzer.run(seed: 1, runs: 100, driverBugs: [.openAllGates])
        let failure = try #require(outcome.failure)
        #expect(failure.result.violations.first?.invariant == InvariantName.followOutputClosed,
                "\(failure.result.violations.prefix(2).map(\.description))")
        let shrunk = try #require(try Shrinker.shrink(failure.simCase, maximumRuns: 300))
        #expect(shrunk.invariant == InvariantName.followOutputClosed)
        #expect(shrunk.result.violations.contains { $0.invariant == InvariantName.followOutputClosed })
        #expect(shrunk.shrunk.input.events.count <= failure.simCase.input.events.count)
        #expect(shrunk.shrunk.input.store.frames.count < failure.simCase.input.store.frames.count)
    }
}

/// How often the oracle notices each deliberately broken gate across fuzz cases with a
/// segment (a mutation score): printed, and each bug must be caught in some of them.
@Suite struct SegmentMutationTests {
    @Test(arguments: [DriverBug.openAllGates, .dropGateDeltas, .dropLeaves])
    func brokenGatesAreCaught(bug: DriverBug) throws {
        let count = environmentInt("SIM_SEGMENT_SEEDS", default: 100)
        var cases = 0, caught = 0
        var invariants: [String: Int] = [:]
        for seed in 1...UInt64(count) {
            var simCase = FuzzCase.generate(seed: seed)
            guard !simCase.input.queriers.isEmpty else { continue }
            cases += 1
            simCase.options.driverBugs = [bug]
            simCase.options.stopAtFirstViolation = true
            let result = try simCase.run()
            if let first = result.violations.first {
                caught += 1
                invariants[first.invariant, default: 0] += 1
            }
        }
        print("segment mutation \(bug.rawValue): caught in \(caught) of \(cases) fuzz cases with a segment (seeds 1-\(count)): \(invariants.sorted { $0.key < $1.key })")
        #expect(caught > 0)
    }
}

/// Fuzz seeds whose segments cover the shapes one by one; each must keep its shape (so a
/// change to the generator that loses it is noticed) and pass.
@Suite struct SegmentSeedTests {
    @Test(arguments: [
        (UInt64(14), "IGMPv3 relay, v2 and SSM hosts, a lower v2 querier, loss"),
        (26, "IGMPv2 relay, v2 and SSM hosts, a version change, loss"),
        (32, "IGMPv2 relay, a lower v3 querier, loss"),
        (38, "MLDv1 relay, a lower MLDv2 querier"),
        (44, "MLDv1 relay, MLDv1 hosts, a version change, a lower querier, loss"),
        (53, "MLDv2 relay, a lower MLDv2 querier, a version change"),
    ])
    func seedPasses(seed: UInt64, shape: String) throws {
        let simCase = FuzzCase.generate(seed: seed)
        let querier = try #require(simCase.input.queriers.first, "seed \(seed) lost its segment (\(shape))")
        #expect(shape.hasPrefix("MLD") == (querier.families == [.ipv6]))
        #expect(shape.contains("IGMPv2 relay") || shape.contains("MLDv1 relay")
                    ? querier.configuration.version == .v2 : querier.configuration.version == .v3)
        let names = Set(simCase.input.events.map(\.name))
        #expect(names.contains("querier_start") == shape.contains("querier"))
        #expect(names.contains("segment_loss") == shape.contains("loss"))
        #expect(names.contains("host_version") == shape.contains("version change"))
        let result = try simCase.run()
        #expect(result.passed, "seed \(seed) (\(shape)): \(result.violations.prefix(3).map(\.description))")
    }
}
