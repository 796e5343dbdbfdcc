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
    struct Shape: Sendable, CustomStringConvertible {
        var seed: UInt64
        var mld = false
        var relay = ListenerVersion.v3
        var queries = true
        var router = false
        var loss = false
        var versionChange = false
        var description: String {
            "seed \(seed): \(mld ? "MLD" : "IGMP") \(relay) relay\(queries ? "" : " (not querying)")"
                + (router ? ", a lower querier" : "") + (loss ? ", loss" : "") + (versionChange ? ", a host changes version" : "")
        }
    }

    @Test(arguments: [
        Shape(seed: 14, queries: false, loss: true, versionChange: true),
        Shape(seed: 32, relay: .v2, router: true, loss: true),
        Shape(seed: 185, relay: .v2, router: true),  // robustness 1 under a v2 querier (an oracle bug once)
        Shape(seed: 36, mld: true, queries: false, router: true),
        Shape(seed: 44, mld: true, relay: .v2, router: true, loss: true),
        Shape(seed: 53, mld: true, router: true, versionChange: true),
        Shape(seed: 139, router: true, loss: true, versionChange: true),
    ])
    func seedPasses(shape: Shape) throws {
        let simCase = FuzzCase.generate(seed: shape.seed)
        let querier = try #require(simCase.input.queriers.first, "\(shape): no segment any more")
        #expect((querier.families == [.ipv6]) == shape.mld, "\(shape)")
        #expect(querier.configuration.version == shape.relay && querier.configuration.querierEnabled == shape.queries, "\(shape)")
        let names = Set(simCase.input.events.map(\.name))
        #expect(names.contains("querier_start") == shape.router, "\(shape)")
        #expect(names.contains("segment_loss") == shape.loss, "\(shape)")
        #expect(names.contains("host_version") == shape.versionChange, "\(shape)")
        let result = try simCase.run()
        #expect(result.passed, "\(shape): \(result.violations.prefix(3).map(\.description))")
    }
}
