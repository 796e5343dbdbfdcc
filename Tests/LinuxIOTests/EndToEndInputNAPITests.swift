import Foundation
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `--input-napi` and `--worker-nice` at the daemon's defaults (InputNAPIThreads.swift,
/// WorkerPriority.swift): while the daemon runs, its input veth's NAPI is threaded (with GRO on,
/// which a veth needs for NAPI; which frames take that thread on a veth is not checked here:
/// BENCHMARKS.md, "The packet path's receive work on veth"), its worker runs at nice -10, the
/// receive thread the kernel made for rin0 at nice 19 (InputNAPIThreadPriority.swift), and
/// datagrams still arrive one per frame; after SIGTERM the input is as it was. With
/// `--input-napi kernel` nothing is changed. (Whether this prevents receive livelock is a
/// benchmark, BENCHMARKS.md "Receive livelock", not a timed test.)
extension RelayEndToEndTests {
    /// rin0's `threaded` and GRO, as the kernel reports them.
    func receiveSetting(_ lab: Lab) throws -> (threaded: String, gro: String) {
        let threaded = try lab.must(lab.relay, ["cat", "/sys/class/net/rin0/threaded"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let features = try lab.must(lab.relay, ["ethtool", "-k", "rin0"]).stdout
        let gro = features.split(separator: "\n").first { $0.hasPrefix("generic-receive-offload:") }
            .map { $0.split(separator: " ").dropFirst().first.map(String.init) ?? "?" } ?? "missing"
        return (threaded, gro)
    }

    /// The nice value of a process (field 19 of /proc/PID/stat, after the command in parentheses).
    static func niceValue(_ pid: Int32) -> Int? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 16 ? Int(fields[16]) : nil  // fields[0] is field 3 (state)
    }

    /// A lab whose rin0 starts at the veth defaults (checked: otherwise the test proves nothing),
    /// the daemon `start` makes, rin0 checked threaded with GRO on while `body` runs, then SIGTERM
    /// (exit 0) and rin0 checked back as it was. Returns the daemon's exit (its log is stderr).
    @discardableResult
    func withThreadedInput(_ tag: String, start: (Lab) throws -> RelayDaemon,
                           _ body: (Lab, RelayDaemon) throws -> Void) throws -> CommandResult {
        let lab = try Lab(tag)
        defer { lab.down() }
        let before = try receiveSetting(lab)
        #expect(before.threaded == "0" && before.gro == "off", "lab's rin0 before the daemon: threaded \(before.threaded), GRO \(before.gro)")
        let daemon = try start(lab)
        defer { daemon.kill() }
        try daemon.waitSettled()
        let during = try receiveSetting(lab)
        #expect(during.threaded == "1" && during.gro == "on", "rin0 while the daemon runs: threaded \(during.threaded), GRO \(during.gro)")
        try body(lab, daemon)
        let stopped = try daemon.stop()
        #expect(stopped.status == 0, "daemon exit after SIGTERM: \(stopped)")
        let after = try receiveSetting(lab)
        #expect(after.threaded == before.threaded && after.gro == before.gro,
                "rin0 after the daemon stopped: threaded \(after.threaded), GRO \(after.gro); before: \(before.threaded), \(before.gro); log: \(stopped.stderr.suffix(1500))")
        return stopped
    }

    /// `count` datagrams of `stream` sent at 1000 pps, every one received exactly once.
    func relayOne(_ lab: Lab, _ stream: Stream, count: Int, size: Int) throws {
        let receiver = try Receiver(lab, streams: [stream], expect: count, size: size)
        try send(lab, streams: [stream], count: count, rate: 1000, size: size)
        expectDelivered(try receiver.finish(), [stream], count: count)
    }

    @Test("default --input-napi threaded: rin0's NAPI threaded with GRO on while the daemon runs, worker at nice -10, rin0's receive thread at nice 19, one datagram per frame; restored after SIGTERM")
    func inputNAPIThreaded() throws {
        let stopped = try withThreadedInput("napi", start: { lab in
            let daemon = try RelayDaemon(lab, workers: 1)
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
            return daemon
        }) { lab, daemon in
            let pids = try daemon.stats().workers.compactMap(\.pid)
            #expect(pids.count == 1, "worker pids: \(pids)")
            for pid in pids {
                let nice = Self.niceValue(pid)
                #expect(nice.map { $0 <= -10 } == true, "worker \(pid) runs at nice \(nice.map(String.init) ?? "unknown"), want -10 or lower")
            }
            // The thread the daemon names in its log is rin0's (the kernel's own name for it) and
            // runs at nice 19, as the kernel reports it.
            let log = daemon.process.stderr
            let named = log.firstMatch(of: /rin0: receive work moved to a kernel thread[^\n]*its receive thread \(pid (\d+)\) at nice 19/)
            let thread = named.flatMap { Int32($0.1) }
            #expect(thread != nil, "the daemon's log names rin0's receive thread at nice 19: \(log.suffix(1500))")
            if let thread {
                let comm = (try? String(contentsOfFile: "/proc/\(thread)/comm", encoding: .utf8)) ?? ""
                #expect(comm.hasPrefix("napi/rin0-"), "pid \(thread) is \(comm), not rin0's NAPI thread")
                #expect(Self.niceValue(thread) == 19, "rin0's receive thread \(thread) runs at nice \(Self.niceValue(thread).map(String.init) ?? "unknown"), want 19")
            }
            try expectForwardedOnTheWire(lab, daemon, Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1), rate: 1000)
        }
        #expect(stopped.stderr.contains("rin0: receive work moved to a kernel thread") && stopped.stderr.contains("rin0: receive work back in softirq"),
                "the daemon's log says what it changed and restored: \(stopped.stderr.suffix(1500))")
    }

    @Test("--input-napi kernel: rin0 left as it is, datagrams forwarded")
    func inputNAPIKernel() throws {
        try withRelay("napik", daemonArguments: ["--input-napi", "kernel"]) { lab, daemon in
            try daemon.addRule("rin0:239.1.1.2:5002", ["rout0:239.10.1.2:6002"])
            try daemon.waitSettled()
            let during = try receiveSetting(lab)
            #expect(during.threaded == "0" && during.gro == "off", "rin0 under --input-napi kernel: threaded \(during.threaded), GRO \(during.gro)")
            try relayOne(lab, Stream(input: "239.1.1.2:5002", output: "239.10.1.2:6002", id: 2), count: 300, size: 100)
            expectCounted(try daemon.stats(), inputs: ["239.1.1.2:5002"], packets: 300)
        }
    }

    @Test("--user nobody: the config's input is threaded before the privilege drop, forwards, and is restored at exit by the unprivileged daemon")
    func inputNAPIUnderUser() throws {
        let stopped = try withThreadedInput("napiu", start: { lab in
            let config = lab.directory + "/napi-user.json"
            try #"{"rules": [{"in": "rin0:239.1.1.3:5003", "out": ["rout0:239.10.1.3:6003"]}]}"#.write(toFile: config, atomically: true, encoding: .utf8)
            return try RelayDaemon(lab, workers: 1, config: config, extraArguments: ["--user", "nobody"])
        }) { lab, _ in
            try relayOne(lab, Stream(input: "239.1.1.3:5003", output: "239.10.1.3:6003", id: 3), count: 300, size: 100)
        }
        #expect(stopped.stderr.contains("dropped privileges: running as user nobody"), "no privilege drop logged: \(stopped.stderr.suffix(1500))")
    }

    /// A setting the daemon changed for an input is its own only while a rule reads the input:
    /// with the input's last rule removed it goes back, and a rule on it again threads it again.
    /// Under `--user nobody`, where only the file kept open since the start can do either.
    @Test("--user nobody: the input's last rule removed gives rin0 its setting back while the daemon runs; a rule on it again threads it again and forwards")
    func inputNAPIFollowsTheRules() throws {
        let stopped = try withThreadedInput("napir", start: { lab in
            let config = lab.directory + "/napi-rules.json"
            try #"{"rules": [{"name": "cam", "in": "rin0:239.1.1.4:5004", "out": ["rout0:239.10.1.4:6004"]}]}"#.write(toFile: config, atomically: true, encoding: .utf8)
            return try RelayDaemon(lab, workers: 1, config: config, extraArguments: ["--user", "nobody"])
        }) { lab, daemon in
            /// Waits (up to 5 s) for rin0 to read `threaded` and `gro`.
            func expectReceiveSetting(_ threaded: String, _ gro: String, _ when: String) throws {
                var seen = (threaded: "?", gro: "?")
                let reached = try waitUntil(timeout: .seconds(5)) {
                    seen = try receiveSetting(lab)
                    return seen.threaded == threaded && seen.gro == gro
                }
                #expect(reached, "rin0 \(when): threaded \(seen.threaded), GRO \(seen.gro); want \(threaded) and \(gro)")
            }
            try daemon.removeRule("cam")
            try daemon.waitSettled()
            try expectReceiveSetting("0", "off", "with no rule on it (as before the daemon)")
            try daemon.addRule("rin0:239.1.1.4:5004", ["rout0:239.10.1.4:6004"], name: "cam2")
            try daemon.waitSettled()
            try expectReceiveSetting("1", "on", "with a rule on it again")
            try relayOne(lab, Stream(input: "239.1.1.4:5004", output: "239.10.1.4:6004", id: 4), count: 300, size: 100)
        }
        #expect(stopped.stderr.contains("rin0: no rule reads it any more: receive work back in softirq")
                    && stopped.stderr.contains("rin0: a rule reads it again: receive work back in a kernel thread"),
                "the daemon's log says what it gave back and took again: \(stopped.stderr.suffix(1500))")
    }

    /// SIGKILL gives the daemon no chance to restore rin0, and a daemon started after it would
    /// find rin0 threaded and take that for the host's own setting. The journal beside the
    /// control socket lets the next daemon on that socket undo it first (InputNAPIJournal).
    @Test("after SIGKILL rin0 stays threaded with GRO on; the next daemon on the same control socket undoes it at start, threads it again for its own rule and restores it at SIGTERM")
    func inputNAPIAfterKill() throws {
        let lab = try Lab("napik9")
        defer { lab.down() }
        let before = try receiveSetting(lab)
        #expect(before.threaded == "0" && before.gro == "off", "lab's rin0 before the daemon: threaded \(before.threaded), GRO \(before.gro)")
        let index = try lab.must(lab.relay, ["cat", "/sys/class/net/rin0/ifindex"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        let first = try RelayDaemon(lab, workers: 1)
        defer { first.kill() }
        try first.addRule("rin0:239.1.1.9:5009", ["rout0:239.10.1.9:6009"])
        try first.waitSettled()
        let workers = try first.stats().workers.compactMap(\.pid)
        #expect(workers.count == 1, "the first daemon's worker pids: \(workers)")
        let journalPath = first.control + ".input-napi"
        let journal = (try? String(contentsOfFile: journalPath, encoding: .utf8)) ?? "(unreadable)"
        #expect(journal == "mcrelay input-napi journal 1\nrin0 \(index) gro=on\n", "the journal while the first daemon runs: \(journal.debugDescription)")
        first.process.signal(SIGKILL)
        let killed = first.process.wait(timeout: .seconds(5))
        #expect(killed?.status == 128 + SIGKILL, "the first daemon's end: \(killed.map(\.description) ?? "still running")")
        // the workers follow their supervisor (they read nothing once it is gone)
        let workersGone = waitUntil(timeout: .seconds(5)) { workers.allSatisfy { Glibc.kill($0, 0) != 0 } }
        #expect(workersGone, "the first daemon's workers \(workers) outlived it")
        let left = try receiveSetting(lab)
        #expect(left.threaded == "1" && left.gro == "on", "rin0 after SIGKILL (else this test proves nothing): threaded \(left.threaded), GRO \(left.gro)")

        let second = try RelayDaemon(lab, workers: 1)
        defer { second.kill() }
        try second.waitSettled()
        let undone = try receiveSetting(lab)
        #expect(undone.threaded == "0" && undone.gro == "off", "rin0 under the second daemon with no rule: threaded \(undone.threaded), GRO \(undone.gro); log: \(second.process.stderr.suffix(1500))")
        try second.addRule("rin0:239.1.1.9:5009", ["rout0:239.10.1.9:6009"])
        try second.waitSettled()
        let threaded = try receiveSetting(lab)
        #expect(threaded.threaded == "1" && threaded.gro == "on", "rin0 with the second daemon's rule: threaded \(threaded.threaded), GRO \(threaded.gro)")
        try relayOne(lab, Stream(input: "239.1.1.9:5009", output: "239.10.1.9:6009", id: 9), count: 300, size: 100)
        let stopped = try second.stop()
        #expect(stopped.status == 0, "second daemon's exit after SIGTERM: \(stopped)")
        let after = try receiveSetting(lab)
        #expect(after.threaded == "0" && after.gro == "off", "rin0 after the second daemon stopped: threaded \(after.threaded), GRO \(after.gro); log: \(stopped.stderr.suffix(1500))")
        #expect(stopped.stderr.contains("rin0: an earlier daemon on this control socket changed its receive setting and did not restore it (killed?): receive work back in softirq, GRO off"),
                "the second daemon's log says what it undid: \(stopped.stderr.suffix(1500))")
        #expect(!FileManager.default.fileExists(atPath: journalPath), "the journal is removed once everything is restored")
    }
}
