import Foundation
import LinuxIO
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// The daemon as a systemd service: readiness notification (sd_notify) and `--user`.
extension RelayEndToEndTests {
    /// mcsend.py in the sender namespace with its socket set up, sending as soon as `go` exists.
    func armedSender(_ lab: Lab, _ stream: Stream, count: Int, source: String = Lab.senderAddress, go: String,
                     name: String) throws -> ChildProcess {
        try ChildProcess(lab.exec(lab.sender, ["python3", E2E.scripts + "/mcsend.py", "--source", source,
                                               "--stream", "\(stream.input):\(stream.id)", "--count", String(count),
                                               "--rate", "2000", "--size", "200", "--ttl", "4", "--start-file", go]),
                         outputDirectory: lab.directory, name: name)
    }

    func finishSender(_ sender: ChildProcess, count: Int) throws {
        guard let result = sender.wait(timeout: .seconds(20)) else { throw HarnessError("sender did not finish") }
        guard result.status == 0 else { throw HarnessError("sender failed: \(result)") }
        let summary = try JSONDecoder().decode(SendSummary.self, from: Data(result.stdout.utf8))
        guard summary.errors == 0, summary.sent.values.allSatisfy({ $0.sent == count }) else {
            throw HarnessError("sender did not send \(count) without errors: \(result.stdout)")
        }
    }

    @Test("sd_notify: READY=1 only once the rules forward, RELOADING=1/READY=1 on SIGHUP, STOPPING=1 on SIGTERM, watchdog pings")
    func readinessNotification() throws {
        let lab = try Lab("ntfy")
        defer { lab.down() }
        let notify = try NotifyListener(path: lab.directory + "/notify.sock")
        let config = lab.directory + "/rules.json"
        let ruleA = #"{"name": "a", "in": "rin0:239.1.1.1:5001", "out": ["rout0:239.10.1.1:6001"]}"#
        let ruleB = #"{"name": "b", "in": "rin0:239.1.1.2:5002", "out": ["rout1:239.10.1.2:6002"]}"#
        try Data(#"{"rules": [\#(ruleA)]}"#.utf8).write(to: URL(fileURLWithPath: config))
        let streamA = Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)
        let streamB = Stream(input: "239.1.1.2:5002", output: "239.10.1.2:6002", id: 2)
        let count = 200

        // Receiver and sender are in place before the daemon starts; the sender goes within a
        // millisecond of READY=1, so every one of its packets tests the claim "ready = forwarding".
        let receiverA = try Receiver(lab, streams: [streamA], expect: count, size: 200, name: "recvA")
        let goA = lab.directory + "/go-a"
        let senderA = try armedSender(lab, streamA, count: count, go: goA, name: "sendA")
        defer { senderA.terminate() }

        let control = lab.directory + "/run/mcrelay/control.sock"
        let daemon = try ChildProcess(lab.exec(lab.relay, ["env", "NOTIFY_SOCKET=\(notify.path)", "WATCHDOG_USEC=2000000",
                                                           E2E.binary, "daemon", "--config", config, "--control", control,
                                                           "--workers", "2"]),
                                      outputDirectory: lab.directory, name: "daemon")
        defer { daemon.terminate() }
        let started = ContinuousClock.now

        guard let ready = notify.wait(timeout: .seconds(20), { $0.has("READY=1") }) else {
            throw HarnessError("no READY=1 within 20 s; got \(notify.messages)\nstderr:\n\(daemon.stderr.suffix(3000))")
        }
        FileManager.default.createFile(atPath: goA, contents: nil)
        #expect(ready.message.value("STATUS")?.hasPrefix("Forwarding 1 rule; 2 of 2 workers on the current plan; 1 group joined") == true,
                "STATUS with READY=1: \(ready.message)")
        try finishSender(senderA, count: count)
        expectDelivered(try receiverA.finish(), [streamA], count: count)

        // The workers must not inherit $NOTIFY_SOCKET (only the main process notifies).
        let stats = try JSONDecoder().decode(StatsView.self, from: Data(try run(
            [E2E.binary, "stats", "--json", "--control", control], in: lab.directory).stdout.utf8))
        for worker in stats.workers {
            guard let pid = worker.pid else { Issue.record("worker \(worker.id) has no pid"); continue }
            let environment = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))) ?? Data()
            #expect(!environment.isEmpty, "cannot read the environment of worker pid \(pid)")
            #expect(!String(decoding: environment, as: UTF8.self).contains("NOTIFY_SOCKET"), "worker pid \(pid) inherited NOTIFY_SOCKET")
        }

        // SIGHUP with a second rule: RELOADING=1 (with the monotonic time), then READY=1 once
        // the new rule forwards.
        let receiverB = try Receiver(lab, address: Lab.receiverAddress1, streams: [streamB], expect: count, size: 200, name: "recvB")
        let goB = lab.directory + "/go-b"
        let senderB = try armedSender(lab, streamB, count: count, go: goB, name: "sendB")
        defer { senderB.terminate() }
        try Data(#"{"rules": [\#(ruleA), \#(ruleB)]}"#.utf8).write(to: URL(fileURLWithPath: config))
        let before = ServiceNotifier.monotonicMicroseconds()
        daemon.signal(SIGHUP)
        guard let reloading = notify.wait(after: ready.index, timeout: .seconds(10), { $0.has("RELOADING=1") }) else {
            throw HarnessError("no RELOADING=1 after SIGHUP; got \(notify.messages)")
        }
        let stamp = reloading.message.value("MONOTONIC_USEC").flatMap { UInt64($0) }
        #expect(stamp.map { $0 >= before && $0 <= ServiceNotifier.monotonicMicroseconds() } == true,
                "MONOTONIC_USEC \(String(describing: stamp)) not between the SIGHUP (\(before)) and now")
        guard let reloaded = notify.wait(after: reloading.index, timeout: .seconds(15), { $0.has("READY=1") }) else {
            throw HarnessError("no READY=1 after RELOADING=1; got \(notify.messages)\nstderr:\n\(daemon.stderr.suffix(3000))")
        }
        FileManager.default.createFile(atPath: goB, contents: nil)
        #expect(reloaded.message.value("STATUS")?.hasPrefix("Forwarding 2 rules; 2 of 2 workers") == true, "\(reloaded.message)")
        try finishSender(senderB, count: count)
        expectDelivered(try receiverB.finish(), [streamB], count: count)

        // SIGTERM: STOPPING=1, then a clean exit.
        daemon.signal(SIGTERM)
        let stopping = notify.wait(after: reloaded.index, timeout: .seconds(10)) { $0.has("STOPPING=1") }
        #expect(stopping != nil, "no STOPPING=1 after SIGTERM; got \(notify.messages)")
        guard let exit = daemon.wait(timeout: .seconds(15)) else { throw HarnessError("daemon did not exit after SIGTERM") }
        #expect(exit.status == 0, "daemon exit: \(exit)")
        let elapsed = ContinuousClock.now - started
        notify.drain()

        // Only the main process ever notified, READY=1 came once per start/reload, and nothing
        // but STATUS/WATCHDOG came between the phases.
        #expect(notify.messages.allSatisfy { $0.pid == daemon.pid }, "messages from other pids: \(notify.messages.filter { $0.pid != daemon.pid })")
        #expect(notify.messages.filter { $0.has("READY=1") }.count == 2, "READY=1 count: \(notify.messages)")
        #expect(notify.messages.firstIndex { $0.has("READY=1") } == ready.index)
        // Watchdog: WATCHDOG_USEC=2 s asks for a ping at least every 2 s; the daemon pings every
        // second (half the interval, as for the packaged unit's WatchdogSec=20s). 2 s rather than
        // the unit's 20 s keeps the test short; 1 s was tried and a loaded 2-core machine (CI, or
        // builds beside the tests) delayed one ping's arrival here to 1.03 s, and the gaps below
        // are measured when this test reads each message, so they include its own delays.
        let pings = notify.messages.filter { $0.has("WATCHDOG=1") }.map(\.at)
        // One at start, then one per second of life (less one for timing slack).
        let lifeMilliseconds = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        let expectedPings = max(1, Int(lifeMilliseconds / 1000) - 1)
        #expect(pings.count >= expectedPings, "\(pings.count) WATCHDOG=1 in \(elapsed): at \(pings.map { $0 - started })")
        let gaps = zip(pings.dropFirst(), pings).map { $0 - $1 }
        #expect(gaps.allSatisfy { $0 < .seconds(2) }, "a watchdog gap reached the 2 s limit: \(gaps.max() ?? .zero)")
    }

    @Test("--user nobody: supervisor and workers run unprivileged with exactly CAP_NET_RAW CAP_NET_ADMIN, and still do everything")
    func privilegeDrop() throws {
        guard let nobody = getpwnam("nobody") else { throw HarnessError("no user nobody on this host") }
        let uid = nobody.pointee.pw_uid
        let gid = nobody.pointee.pw_gid
        var controlPath = ""
        try withRelay("priv", workers: 2, restartsExpected: true, daemonArguments: ["--user", "nobody"]) { lab, daemon in
            #expect(daemon.process.stderr.contains("dropped privileges: running as user nobody (uid \(uid))"), "\(daemon.process.stderr.suffix(2000))")
            #expect(daemon.process.stderr.contains("with only CAP_NET_RAW CAP_NET_ADMIN"))
            controlPath = daemon.control

            // The control socket belongs to the user and its group, mode 0660.
            var info = stat()
            #expect(stat(daemon.control, &info) == 0 && info.st_uid == uid && info.st_gid == gid && info.st_mode & 0o777 == 0o660,
                    "control socket owner \(info.st_uid):\(info.st_gid) mode \(String(info.st_mode & 0o777, radix: 8))")

            let stream = Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)
            try daemon.addRule("rin0:\(stream.input)", ["rout0:\(stream.output)"])
            try daemon.waitSettled()
            try expectUnprivileged(daemon, uid: uid, gid: gid)
            try deliver(lab, [stream], source: Lab.senderAddress, startSeq: 0, name: "first")

            // A new input interface after the drop: the worker opens a new AF_PACKET socket and
            // the supervisor joins on it, both unprivileged.
            try lab.must(lab.sender, ["ip", "link", "add", "snd1", "type", "veth", "peer", "name", "rin1", "netns", lab.relay])
            try lab.must(lab.sender, ["ip", "addr", "add", "198.18.4.1/24", "dev", "snd1"])
            try lab.must(lab.relay, ["ip", "addr", "add", "198.18.4.2/24", "dev", "rin1"])
            try lab.must(lab.sender, ["ip", "link", "set", "snd1", "up"])
            try lab.must(lab.relay, ["ip", "link", "set", "rin1", "up"])
            let up = try waitUntil(timeout: .seconds(5)) {
                try lab.must(lab.sender, ["cat", "/sys/class/net/snd1/operstate"]).stdout.hasPrefix("up")
                    && lab.must(lab.relay, ["cat", "/sys/class/net/rin1/operstate"]).stdout.hasPrefix("up")
            }
            guard up else { throw HarnessError("snd1/rin1 did not come up") }
            let second = Stream(input: "239.1.4.1:5004", output: "239.10.4.1:6004", id: 4)
            try daemon.addRule("rin1:\(second.input)", ["rout0:\(second.output)"])
            try daemon.waitSettled()
            #expect(try lab.memberships(lab.relay, interface: "rin1").contains("239.1.4.1"), "no join on rin1")
            try deliver(lab, [second], source: "198.18.4.1", startSeq: 0, name: "newinput")

            // A worker killed with SIGKILL comes back as nobody with the same capabilities and forwards.
            let before = try daemon.stats()
            guard let victim = before.workers.first?.pid else { throw HarnessError("no worker pid in \(before)") }
            kill(victim, SIGKILL)
            let restarted = try waitUntil(timeout: .seconds(10)) {
                let stats = try daemon.stats()
                return stats.workers.allSatisfy { $0.alive && $0.planVersion == stats.planVersion }
                    && stats.workers.first?.pid != victim && stats.workers.first?.restarts == 1
            }
            guard restarted else { throw HarnessError("worker 0 did not come back: \(try daemon.stats())") }
            try expectUnprivileged(daemon, uid: uid, gid: gid)
            try deliver(lab, [stream], source: Lab.senderAddress, startSeq: 1000, name: "afterkill1")
            try deliver(lab, [second], source: "198.18.4.1", startSeq: 1000, name: "afterkill2")
        }
        // The unprivileged daemon removed its socket on the way out (it owns the directory it made).
        #expect(!controlPath.isEmpty && !FileManager.default.fileExists(atPath: controlPath), "control socket left behind: \(controlPath)")
    }

    @Test("started unprivileged with ambient CAP_NET_RAW CAP_NET_ADMIN (the systemd unit's way): says so, forwards, restarts workers")
    func ambientCapabilitiesLikeTheUnit() throws {
        let lab = try Lab("amb")
        defer { lab.down() }
        // What the unit's RuntimeDirectory= does: the socket's directory belongs to the user.
        let runtime = lab.directory + "/run/mcrelay"
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
        guard chown(runtime, 65534, 65534) == 0 else { throw HarnessError("chown \(runtime) failed") }
        let daemon = try RelayDaemon(lab, workers: 2, launcher: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                                                 "--inh-caps=+net_raw,+net_admin", "--ambient-caps=+net_raw,+net_admin"])
        defer { daemon.kill() }
        #expect(daemon.process.stderr.contains("running as uid 65534 gid 65534 with CAP_NET_RAW CAP_NET_ADMIN"), "\(daemon.process.stderr.suffix(2000))")
        #expect(!daemon.process.stderr.contains("running as root"))
        let stream = Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)
        try daemon.addRule("rin0:\(stream.input)", ["rout0:\(stream.output)"])
        try daemon.waitSettled()
        try expectUnprivileged(daemon, uid: 65534, gid: 65534, bounding: false)
        try deliver(lab, [stream], source: Lab.senderAddress, startSeq: 0, name: "amb")
        guard let victim = try daemon.stats().workers.last?.pid else { throw HarnessError("no worker pid") }
        kill(victim, SIGKILL)
        let restarted = try waitUntil(timeout: .seconds(10)) {
            let stats = try daemon.stats()
            return stats.workers.allSatisfy { $0.alive && $0.planVersion == stats.planVersion } && stats.workers.last?.pid != victim
        }
        #expect(restarted, "worker 1 did not come back")
        try deliver(lab, [stream], source: Lab.senderAddress, startSeq: 1000, name: "amb2")
        let stopped = try daemon.stop()
        #expect(stopped.status == 0, "\(stopped)")
    }

    /// Sends 300 datagrams per stream from `source` and requires all of them at the receiver.
    private func deliver(_ lab: Lab, _ streams: [Stream], source: String, startSeq: Int, name: String) throws {
        let receiver = try Receiver(lab, streams: streams, expect: 300, size: 200, startSeq: startSeq, name: "recv-\(name)")
        var arguments = ["python3", E2E.scripts + "/mcsend.py", "--source", source, "--count", "300", "--rate", "1000",
                         "--size", "200", "--ttl", "4", "--start-seq", String(startSeq)]
        for stream in streams { arguments += ["--stream", "\(stream.input):\(stream.id)"] }
        let sent = try run(lab.exec(lab.sender, arguments), in: lab.directory, timeout: .seconds(20))
        guard sent.status == 0 else { throw HarnessError("sender failed: \(sent)") }
        expectDelivered(try receiver.finish(), streams, count: 300)
    }

    /// Every thread of the supervisor and of each worker runs as uid/gid; the main threads hold
    /// exactly CAP_NET_RAW CAP_NET_ADMIN in every set, with no_new_privs; no thread holds more.
    /// `bounding`: also the bounding set and no_new_privs (what --user sets; setpriv leaves them).
    private func expectUnprivileged(_ daemon: RelayDaemon, uid: uid_t, gid: gid_t, bounding: Bool = true,
                                    sourceLocation: SourceLocation = #_sourceLocation) throws {
        let kept = "0000000000003000"
        let workers = try daemon.stats().workers.compactMap(\.pid)
        #expect(workers.count == 2, "worker pids: \(workers)", sourceLocation: sourceLocation)
        for pid in [daemon.process.pid] + workers {
            let main = try processStatus("/proc/\(pid)/status")
            for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] + (bounding ? ["CapBnd"] : []) {
                #expect(main[set] == kept, "pid \(pid) \(set) = \(main[set] ?? "?"), expected \(kept)", sourceLocation: sourceLocation)
            }
            #expect(!bounding || main["NoNewPrivs"] == "1", "pid \(pid) NoNewPrivs = \(main["NoNewPrivs"] ?? "?")", sourceLocation: sourceLocation)
            let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
            #expect(!threads.isEmpty, sourceLocation: sourceLocation)
            for thread in threads {
                guard let status = try? processStatus("/proc/\(pid)/task/\(thread)/status") else { continue }
                #expect(status["Uid"] == Array(repeating: String(uid), count: 4).joined(separator: " "),
                        "pid \(pid) thread \(thread) Uid \(status["Uid"] ?? "?")", sourceLocation: sourceLocation)
                #expect(status["Gid"] == Array(repeating: String(gid), count: 4).joined(separator: " "),
                        "pid \(pid) thread \(thread) Gid \(status["Gid"] ?? "?")", sourceLocation: sourceLocation)
                for set in ["CapEff", "CapPrm"] {
                    let mask = status[set].flatMap { UInt64($0, radix: 16) } ?? .max
                    #expect(mask & ~0x3000 == 0, "pid \(pid) thread \(thread) \(set) = \(status[set] ?? "?")", sourceLocation: sourceLocation)
                }
            }
        }
    }

    /// /proc/PID/status as key -> value (whitespace collapsed).
    private func processStatus(_ path: String) throws -> [String: String] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        return fields
    }

    @Test("--user and --group refusals: unknown user or group, root, --group alone, not started as root")
    func privilegeRefusals() throws {
        let directory = try E2E.temporaryDirectory("usr")
        let control = directory + "/control.sock"
        func daemon(_ arguments: [String], prefix: [String] = []) throws -> CommandResult {
            try run(prefix + [E2E.binary, "daemon", "--control", control, "--workers", "1"] + arguments, in: directory, timeout: .seconds(20))
        }
        let cases: [([String], [String], String)] = [
            (["--user", "mcrelay-no-such-user"], [], "--user mcrelay-no-such-user: no such user"),
            (["--user", "nobody", "--group", "mcrelay-no-such-group"], [], "--group mcrelay-no-such-group: no such group"),
            (["--user", "root"], [], "that is root (uid 0)"),
            (["--group", "nogroup"], [], "--group needs --user"),
            (["--user", "nobody"], ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], "not root, so it cannot switch users"),
        ]
        for (arguments, prefix, expected) in cases {
            let result = try daemon(arguments, prefix: prefix)
            #expect(result.status == 1, "\(result)")
            #expect(result.stderr.contains(expected), "expected \"\(expected)\": \(result)")
            #expect(!result.stderr.contains("Fatal error") && !FileManager.default.fileExists(atPath: control), "\(result)")
        }
    }
}
