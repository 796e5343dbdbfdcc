import Foundation
import Testing
@testable import Sim

@Suite struct DeterminismTests {
    @Test func fuzzCasesRunIdenticallyTwice() throws {
        for seed in UInt64(1)...20 {
            var simCase = FuzzCase.generate(seed: seed)
            simCase.options.recordSteps = true
            let first = try simCase.run()
            let second = try simCase.run()
            #expect(DeterminismCheck.firstDivergence(first, second) == nil, "seed \(seed)")
            #expect(!first.steps.isEmpty)
        }
    }

    /// The check itself notices a difference (it is not vacuous).
    @Test func divergenceIsReported() throws {
        var a = FuzzCase.generate(seed: 7)
        a.options.recordSteps = true
        a.options.swarm = false
        a.options.faults = try FaultSpec.parse("loss=0.2")
        var b = a
        b.options.seed = 8
        let divergence = DeterminismCheck.firstDivergence(try a.run(), try b.run())
        #expect(divergence?.hasPrefix("step ") == true, "\(divergence ?? "none")")
    }

    /// Same inputs and seed: byte-identical report and egress captures.
    @Test func outputFilesAreByteIdentical() throws {
        let one = try temporaryDirectory("det-1"), two = try temporaryDirectory("det-2")
        defer { try? FileManager.default.removeItem(atPath: one); try? FileManager.default.removeItem(atPath: two) }
        var simCase = try SimCase.load(directory: tracePath("control-events"))
        simCase.options.swarm = true
        simCase.options.seed = 42
        for directory in [one, two] {
            let result = try simCase.run(outputDirectory: directory)
            try result.report.json().write(to: URL(fileURLWithPath: directory + "/report.json"))
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: one).sorted()
        #expect(files == ["eth1.pcap", "eth2.pcap", "report.json"])
        for file in files {
            #expect(FileManager.default.contents(atPath: one + "/" + file) == FileManager.default.contents(atPath: two + "/" + file), "\(file)")
        }
    }

    /// A saved fuzz case replays exactly like the in-memory run that found it: the printed
    /// reproduction command is honest.
    @Test func savedFuzzCaseReplaysIdentically() throws {
        let directory = try temporaryDirectory("saved")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for seed in UInt64(1)...10 {
            let generated = FuzzCase.generate(seed: seed)
            try generated.save(directory: directory)
            let loaded = try SimCase.load(directory: directory)
            #expect(loaded.options == generated.options, "seed \(seed)")
            #expect(try loaded.run().report == (try generated.run().report), "seed \(seed)")
        }
    }
}
