import Foundation
import Testing

/// The `mcrelay sim` commands as a user runs them, in separate processes: this is also what
/// catches hash-seed-dependent output (Swift seeds Dictionary hashing per process, so two
/// runs inside one test process could never disagree on Dictionary order).
@Suite(.serialized) struct CommandLineTests {
    /// `swift test` builds the executable next to the test bundle.
    static let binary: String = {
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = runner.deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("mcrelay").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return ""
    }()

    struct Run { var status: Int32; var output: String }

    func mcrelay(_ arguments: [String]) throws -> Run {
        try #require(!Self.binary.isEmpty, "mcrelay executable not found next to \(CommandLine.arguments[0])")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    func replayArguments(_ out: String) -> [String] {
        ["sim", "replay", "--trace", "eth0=" + tracePath("control-events/eth0.pcap"),
         "--config", tracePath("control-events/config.json"), "--events", tracePath("control-events/events.jsonl"),
         "--faults", "swarm", "--seed", "5", "--out-dir", out]
    }

    @Test func replayIsByteIdenticalAcrossProcesses() throws {
        let one = try temporaryDirectory("cli-1"), two = try temporaryDirectory("cli-2")
        defer { try? FileManager.default.removeItem(atPath: one); try? FileManager.default.removeItem(atPath: two) }
        let first = try mcrelay(replayArguments(one) + ["--check-determinism"])
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output.hasPrefix("swarm faults for seed 5: "))
        #expect(first.output.contains("determinism: two runs identical"))
        let second = try mcrelay(replayArguments(two))
        #expect(second.status == 0, "\(second.output)")
        for file in ["report.json", "eth1.pcap", "eth2.pcap"] {
            let a = FileManager.default.contents(atPath: one + "/" + file)
            #expect(a != nil && a == FileManager.default.contents(atPath: two + "/" + file), "\(file) differs between processes")
        }
    }

    @Test func badInputExitsTwoWithAMessage() throws {
        let run = try mcrelay(["sim", "replay", "--trace", "eth0=/nonexistent.pcap", "--config", tracePath("two-streams/config.json"), "--out-dir", "/tmp/unused"])
        #expect(run.status == 2)
        #expect(run.output.contains("/nonexistent.pcap: no such file"), "\(run.output)")
        let faults = try mcrelay(["sim", "replay", "--trace", "eth0=" + tracePath("two-streams/eth0.pcap"), "--config", tracePath("two-streams/config.json"),
                                  "--faults", "loss=7", "--out-dir", "/tmp/unused"])
        #expect(faults.status == 2)
        #expect(faults.output.contains("loss must be a probability"), "\(faults.output)")
    }

    @Test func fuzzFindsADriverBugSavesAndShrinksIt() throws {
        let directory = try temporaryDirectory("cli-fuzz")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let clean = try mcrelay(["sim", "fuzz", "--seed", "1", "--runs", "30"])
        #expect(clean.status == 0, "\(clean.output)")
        let found = try mcrelay(["sim", "fuzz", "--seed", "1", "--runs", "100", "--driver-bug", "ignore-fanout", "--save", directory + "/case"])
        #expect(found.status == 1)
        #expect(found.output.contains("reproduce: mcrelay sim fuzz --seed "), "\(found.output)")
        let shrunk = try mcrelay(["sim", "shrink", directory + "/case"])
        #expect(shrunk.status == 0, "\(shrunk.output)")
        #expect(shrunk.output.contains("still fails no_duplicate_forward"), "\(shrunk.output)")
        #expect(FileManager.default.fileExists(atPath: directory + "/case/shrunk/case.json"))
    }

    @Test func soakPassesWritesItsReportAndFailsOnABug() throws {
        let directory = try temporaryDirectory("cli-soak")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let clean = try mcrelay(["sim", "soak", "--seed", "1", "--hours", "2", "--report", directory + "/soak.txt"])
        #expect(clean.status == 0, "\(clean.output)")
        #expect(clean.output.contains("hour 1: rules"), "\(clean.output)")
        #expect(clean.output.contains("simulated hours per wall-clock minute"), "\(clean.output)")
        #expect(clean.output.contains("result: pass"), "\(clean.output)")
        let written = (try? String(contentsOfFile: directory + "/soak.txt", encoding: .utf8)) ?? ""
        #expect(written.contains("result: pass"), "\(written)")
        // Seed 1 runs three workers in one fanout group: ignoring fanout duplicates frames.
        let bug = try mcrelay(["sim", "soak", "--seed", "1", "--hours", "2", "--driver-bug", "ignore-fanout"])
        #expect(bug.status == 1, "\(bug.output)")
        #expect(bug.output.contains("violation: seed 1 at simulated"), "\(bug.output)")
        #expect(bug.output.contains("result: fail"), "\(bug.output)")
        let bad = try mcrelay(["sim", "soak", "--hours", "0"])
        #expect(bad.status == 2, "\(bad.output)")
    }
}
