import Foundation
import LinuxIO
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// The flight recorder end to end: a live run recorded with `--record`, then replayed by the
/// simulator, which must forward exactly what the receiver counted, per stream.
extension RelayEndToEndTests {
    @Test("flight recorder: a recorded live run replays in the simulator to the receiver's per-stream counts; size bounds hold")
    func flightRecorderReplaysTheLiveRun() throws {
        let recordings = try E2E.temporaryDirectory("recordings")
        let recording = recordings + "/run"
        let small = recordings + "/small"
        let limit: UInt64 = 4 << 20, smallLimit: UInt64 = 64 << 10
        let n = 300
        let s1 = Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)
        let s2 = Stream(input: "239.1.1.2:5002", output: "239.10.1.2:6002", id: 2)
        var live: [String: Int] = [:]

        try withRelay("rec", workers: 2, daemonArguments: ["--record", recording, "--record-limit", "4M"]) { lab, daemon in
            try daemon.addRule("rin0:\(s1.input)", ["rout0:\(s1.output)"], name: "cam1")
            try daemon.waitSettled()
            let receiver = try Receiver(lab, streams: [s1, s2], expect: 3 * n, size: 200, duration: 90, idle: 4)
            // Three phases on both streams; the rule changes fall between them, once every worker
            // runs the new plan. (A frame read within the plan's ~1 ms trip from supervisor to
            // worker could go either way in the replay; the quiet gaps keep the comparison exact.)
            try send(lab, streams: [s1, s2], count: n, rate: 500, size: 200)
            try daemon.addRule("rin0:\(s2.input)", ["rout0:\(s2.output)"], name: "cam2")
            try daemon.waitSettled()
            try send(lab, streams: [s1, s2], count: n, rate: 500, size: 200, startSeq: n)
            try daemon.removeRule("cam1")
            try daemon.waitSettled()
            try send(lab, streams: [s1, s2], count: n, rate: 500, size: 200, startSeq: 2 * n)
            let summary = try receiver.finish(timeout: .seconds(120))
            for stream in [s1, s2] {
                live[stream.output] = summary.received[stream.output]?.received ?? -1
                #expect(summary.received[stream.output]?.duplicates == 0)
            }
            #expect(live[s1.output] == 2 * n && live[s2.output] == 2 * n, "live run: \(live)")

            // Every frame sent reached a worker and the recording (6 n), nothing was lost.
            let status = try decodeRecording(daemon.cli(["record", "status", "--json"]))
            #expect(status.active && status.directory == recording && status.framesLost == 0, "\(status)")
            let allRecorded = try waitUntil(timeout: .seconds(5)) {
                try decodeRecording(daemon.cli(["record", "status", "--json"])).frames == UInt64(6 * n)
            }
            let recorded = try decodeRecording(daemon.cli(["record", "status", "--json"]))
            #expect(allRecorded, "recorded frames: \(recorded), sent \(6 * n)")
            let stopped = try daemon.cli(["record", "stop"])
            #expect(stopped.status == 0 && stopped.stdout.contains("recording stopped"), "\(stopped)")
            #expect(try daemon.cli(["record", "stop"]).stderr.contains("not recording"))

            // A second, small recording from the control command: it fills up and stops by itself.
            let started = try daemon.cli(["record", "start", small, "--limit", "64K"])
            #expect(started.status == 0, "\(started)")
            try send(lab, streams: [s2], count: 600, rate: 1000, size: 200, startSeq: 5000)
            // It stops by itself: normally at the limit; on a starved host a worker may use up its
            // room before the supervisor's next grant reaches it, which also ends the recording
            // (and says so).
            let reasons = ["limit reached", "filled its room before more was granted"]
            let full = try waitUntil(timeout: .seconds(10)) {
                let reason = try decodeRecording(daemon.cli(["record", "status", "--json"])).stopReason ?? ""
                return reasons.contains { reason.contains($0) }
            }
            let smallStatus = try daemon.cli(["record", "status"]).stdout
            #expect(full, "the 64K recording did not stop by itself: \(smallStatus)")
            let shown = try daemon.stats().recording?.stopReason ?? ""
            #expect(reasons.contains { shown.contains($0) }, "stats shows why the recording stopped: \(shown)")
            #expect(daemon.process.stderr.contains("warning") && daemon.process.stderr.contains("\(small) stopped ("), "the log says so")
        }

        // The size bounds hold on disk.
        #expect(directoryBytes(recording) <= limit, "\(recording): \(directoryBytes(recording)) bytes")
        #expect(directoryBytes(small) <= smallLimit, "\(small): \(directoryBytes(small)) bytes > \(smallLimit)")

        // The replay forwards exactly what the receiver counted, per stream, twice the same.
        let out = recordings + "/replay"
        let replay = try run([E2E.binary, "sim", "replay", "--recording", recording, "--out-dir", out, "--check-determinism"],
                             in: recordings, timeout: .seconds(120))
        #expect(replay.status == 0, "\(replay)")
        #expect(replay.stdout.contains("determinism: two runs identical"), "\(replay.stdout)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as? [String: Any]
        let ingress = report?["ingress"] as? [String: Any]
        #expect(ingress?["trace_frames"] as? Int == 6 * n, "frames in the recording: \(String(describing: ingress))")
        var simulated: [String: Int] = [:]
        for rule in report?["rules"] as? [[String: Any]] ?? [] {
            for output in rule["outputs"] as? [[String: Any]] ?? [] {
                guard let text = output["output"] as? String, let count = output["transmitted"] as? Int else { continue }
                for stream in [s1, s2] where text.hasPrefix("rout0:\(stream.output):") { simulated[stream.output, default: 0] += count }
            }
        }
        #expect(simulated == live, "simulator \(simulated) vs receivers \(live)")

        // The cut-short recording loads and replays up to its cut.
        let smallReplay = try run([E2E.binary, "sim", "replay", "--recording", small, "--out-dir", recordings + "/replay-small"],
                                  in: recordings, timeout: .seconds(60))
        #expect(smallReplay.status == 0 && smallReplay.stdout.contains("cut short"), "\(smallReplay)")
    }
}

extension RelayEndToEndTests {
    @Test("flight recorder: a rule on an interface that appears later replays the same (the interface is recorded as down until it comes)")
    func flightRecorderLateInterface() throws {
        let recordings = try E2E.temporaryDirectory("recordings-late")
        let recording = recordings + "/run"
        let stream = Stream(input: "239.1.4.1:5004", output: "239.10.4.1:6004", id: 4)
        var received = -1
        try withRelay("reclt", daemonArguments: ["--record", recording]) { lab, daemon in
            try daemon.addRule("late0:\(stream.input)", ["rout0:\(stream.output)"], name: "late")
            try lab.must(lab.sender, ["ip", "link", "add", "snd1", "type", "veth", "peer", "name", "late0", "netns", lab.relay])
            try lab.must(lab.sender, ["ip", "addr", "add", "198.18.4.1/24", "dev", "snd1"])
            try lab.must(lab.relay, ["ip", "addr", "add", "198.18.4.2/24", "dev", "late0"])
            try lab.must(lab.sender, ["ip", "link", "set", "snd1", "up"])
            try lab.must(lab.relay, ["ip", "link", "set", "late0", "up"])
            #expect(try waitUntil(timeout: .seconds(10)) { try daemon.stats().joined.count == 1 }, "late0 was not joined")
            try daemon.waitSettled()
            try lab.waitForCarrier(lab.sender, "snd1")
            let receiver = try Receiver(lab, streams: [stream], expect: 300, size: 200)
            let sent = try run(lab.exec(lab.sender, ["python3", E2E.scripts + "/mcsend.py", "--source", "198.18.4.1", "--count", "300",
                                                     "--rate", "500", "--size", "200", "--ttl", "4", "--stream", "239.1.4.1:5004:4"]),
                               in: lab.directory, timeout: .seconds(20))
            #expect(sent.status == 0, "sender: \(sent)")
            received = try receiver.finish().received[stream.output]?.received ?? -1
            #expect(received == 300)
        }
        let events = try String(contentsOfFile: recording + "/events.jsonl", encoding: .utf8)
        #expect(events.contains(#""event":"iface_down","iface":"late0""#) && events.contains(#""event":"iface_up","iface":"late0""#), "\(events)")
        let out = recordings + "/replay"
        let replay = try run([E2E.binary, "sim", "replay", "--recording", recording, "--out-dir", out], in: recordings, timeout: .seconds(60))
        #expect(replay.status == 0, "\(replay)")
        #expect(replay.stdout.contains("late late0:239.1.4.1:5004 -> rout0:239.10.4.1:6004:64: \(received) sent of \(received) matched"), "\(replay.stdout)")
    }
}

private func decodeRecording(_ result: CommandResult) throws -> RecordingView {
    guard result.status == 0 else { throw HarnessError("record status failed: \(result)") }
    return try JSONDecoder().decode(RecordingView.self, from: Data(result.stdout.utf8))
}

private func directoryBytes(_ path: String) -> UInt64 {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    return names.reduce(0) { total, name in
        total + (((try? FileManager.default.attributesOfItem(atPath: path + "/" + name))?[.size] as? NSNumber)?.uint64Value ?? 0)
    }
}
