import Foundation
import LinuxIO
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// Changes while the relay runs: rules, interfaces, workers, config reloads.
extension RelayEndToEndTests {
    @Test("rules added and removed while other streams flow: no loss on those")
    func rulesChangeWhileFlowing() throws {
        try withRelay("churn", workers: 2) { lab, daemon in
            let steady = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1),
                          Stream(input: "239.1.1.2:5002", output: "239.10.1.2:6002", id: 2)]
            for stream in steady { try daemon.addRule("rin0:\(stream.input)", ["rout0:\(stream.output)"]) }
            try daemon.waitSettled()
            let receiver = try Receiver(lab, streams: steady, expect: 2000, size: 200)
            var arguments = ["python3", E2E.scripts + "/mcsend.py", "--source", Lab.senderAddress, "--count", "2000",
                             "--rate", "500", "--size", "200", "--ttl", "4"]
            for stream in steady { arguments += ["--stream", "\(stream.input):\(stream.id)"] }
            let sender = try ChildProcess(lab.exec(lab.sender, arguments), outputDirectory: lab.directory, name: "sender")
            defer { sender.terminate() }
            // About four seconds of traffic; change unrelated rules on the same input and output
            // interfaces (and a new output interface) the whole time.
            var round = 0
            while sender.isRunning && round < 40 {
                let name = "churn\(round)"
                try daemon.addRule("rin0:239.1.9.\(round % 200 + 1):5009", ["rout1:239.19.9.\(round % 200 + 1):6009"], name: name)
                if round % 2 == 1 { try daemon.removeRule("churn\(round - 1)") }
                round += 1
            }
            #expect(round >= 10, "only \(round) rule changes happened while traffic flowed")
            guard let sent = sender.wait(timeout: .seconds(30)) else { throw HarnessError("sender did not finish") }
            #expect(sent.status == 0, "sender: \(sent)")
            expectDelivered(try receiver.finish(), steady, count: 2000)
            expectCounted(try daemon.stats(), inputs: steady.map(\.input), packets: 2000)
        }
    }

    @Test("an input interface taken down and up gets its joins and forwarding back")
    func interfaceDownAndUp() throws {
        try withRelay("flap") { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
            try daemon.waitSettled()
            let streams = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)]
            let before = try Receiver(lab, streams: streams, expect: 300, size: 200, name: "before")
            try send(lab, streams: streams, count: 300, rate: 500, size: 200)
            expectDelivered(try before.finish(), streams, count: 300)

            try lab.must(lab.relay, ["ip", "link", "set", "rin0", "down"])
            let wentDown = try waitUntil(timeout: .seconds(10)) {
                let stats = try daemon.stats()
                return !stats.interfacesUp.contains("rin0") && stats.joined.isEmpty
            }
            #expect(wentDown, "the daemon did not notice rin0 going down")
            try lab.must(lab.relay, ["ip", "link", "set", "rin0", "up"])
            let cameBack = try waitUntil(timeout: .seconds(10)) {
                let stats = try daemon.stats()
                return stats.interfacesUp.contains("rin0") && stats.joined.count == 1
                    && stats.workers.allSatisfy { $0.planVersion == stats.planVersion }
            }
            #expect(cameBack, "rin0 did not get its join back")
            #expect(try lab.memberships(lab.relay, interface: "rin0").contains("239.1.1.1"))
            // The sender's side of the veth needs its carrier back too.
            try lab.waitForCarrier(lab.sender, "snd0")
            let after = try Receiver(lab, streams: streams, expect: 500, size: 200, startSeq: 1000, name: "after")
            try send(lab, streams: streams, count: 500, rate: 500, size: 200, startSeq: 1000)
            expectDelivered(try after.finish(), streams, count: 500)
            expectCounted(try daemon.stats(), inputs: ["239.1.1.1:5001"], packets: 800)
        }
    }

    @Test("an output interface taken down and up carries traffic again")
    func outputInterfaceDownAndUp() throws {
        try withRelay("oflap") { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
            try daemon.waitSettled()
            let streams = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)]
            try lab.must(lab.relay, ["ip", "link", "set", "rout0", "down"])
            #expect(try waitUntil(timeout: .seconds(10)) { !(try daemon.stats().interfacesUp.contains("rout0")) },
                    "the daemon did not notice rout0 going down within 10 s")
            try lab.must(lab.relay, ["ip", "link", "set", "rout0", "up"])
            #expect(try waitUntil(timeout: .seconds(10)) { try daemon.stats().interfacesUp.contains("rout0") },
                    "the daemon did not see rout0 up again within 10 s")
            try lab.waitForCarrier(lab.receiver, "rcv0")
            let receiver = try Receiver(lab, streams: streams, expect: 400, size: 200)
            try send(lab, streams: streams, count: 400, rate: 400, size: 200)
            expectDelivered(try receiver.finish(), streams, count: 400)
            expectCounted(try daemon.stats(), inputs: ["239.1.1.1:5001"], packets: 400)
        }
    }

    @Test("an input interface created after the daemon started is picked up")
    func interfaceAppearsLater() throws {
        try withRelay("late") { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
            try daemon.addRule("late0:239.1.4.1:5004", ["rout0:239.10.4.1:6004"])
            try daemon.waitSettled()
            #expect(try daemon.stats().joined.count == 1)
            try lab.must(lab.sender, ["ip", "link", "add", "snd1", "type", "veth", "peer", "name", "late0", "netns", lab.relay])
            try lab.must(lab.sender, ["ip", "addr", "add", "198.18.4.1/24", "dev", "snd1"])
            try lab.must(lab.relay, ["ip", "addr", "add", "198.18.4.2/24", "dev", "late0"])
            try lab.must(lab.sender, ["ip", "link", "set", "snd1", "up"])
            try lab.must(lab.relay, ["ip", "link", "set", "late0", "up"])
            let joined = try waitUntil(timeout: .seconds(10)) {
                let stats = try daemon.stats()
                return stats.joined.count == 2 && stats.workers.allSatisfy { $0.planVersion == stats.planVersion }
            }
            #expect(joined, "late0 was not joined")
            try lab.waitForCarrier(lab.sender, "snd1")
            let streams = [Stream(input: "239.1.4.1:5004", output: "239.10.4.1:6004", id: 4)]
            let receiver = try Receiver(lab, streams: streams, expect: 400, size: 200)
            var arguments = ["python3", E2E.scripts + "/mcsend.py", "--source", "198.18.4.1", "--count", "400",
                             "--rate", "400", "--size", "200", "--stream", "239.1.4.1:5004:4"]
            arguments += ["--ttl", "4"]
            let sent = try run(lab.exec(lab.sender, arguments), in: lab.directory, timeout: .seconds(20))
            #expect(sent.status == 0, "sender: \(sent)")
            expectDelivered(try receiver.finish(), streams, count: 400)
            expectCounted(try daemon.stats(), inputs: ["239.1.4.1:5004"], packets: 400)
        }
    }

    /// Which worker carried which stream is the kernel's flow hash (seeded per boot, over the
    /// addresses and ports), so the test learns it from the daemon's counters: `mcrelay stats`
    /// sums the live workers' counts, and a killed worker's counts die with it. A first burst of
    /// `warmup` datagrams per stream, more than the 1200 sent while the worker dies and from the
    /// same source port (the same flows), leaves every rule at `warmup`; at the end a stream the
    /// survivor carried all along still counts at least `warmup`, one the killed worker carried
    /// counts at most the 1200 of the second burst. PACKET_FANOUT moves only the dead worker's
    /// flows, so every stream of the survivor must arrive complete.
    @Test("a worker killed under traffic is restarted and resynced; every stream the surviving worker carried arrives complete")
    func workerKilledAndRestarted() throws {
        try withRelay("kill", workers: 2, restartsExpected: true) { lab, daemon in
            let streams = Self.streams(16, inputGroup: { "239.1.5.\($0 + 1):\(5000 + $0)" }, outputGroup: { "239.15.5.\($0 + 1):\(6000 + $0)" })
            for stream in streams { try daemon.addRule("rin0:\(stream.input)", ["rout0:\(stream.output)"]) }
            try daemon.waitSettled()
            let before = try daemon.stats()
            guard let victim = before.workers.first(where: { $0.id == 1 }), let pid = victim.pid else {
                throw HarnessError("no worker 1 in \(before.workers)")
            }
            func counted(_ stats: StatsView) -> [UInt64] {
                streams.map { stream in stats.rules.first { $0.in.hasSuffix(stream.input) }?.packets ?? 0 }
            }

            // Warm-up: both workers count their streams' datagrams.
            let warmup = 1500, during = 1200
            let sourcePort = 40_555
            try send(lab, streams: streams, count: warmup, rate: 600, size: 200, startSeq: 100_000, sourcePort: sourcePort)
            var warm: [UInt64] = []
            let warmedUp = try waitUntil(timeout: .seconds(15)) {
                warm = counted(try daemon.stats())
                return warm.allSatisfy { $0 >= UInt64(warmup) }
            }
            try #require(warmedUp && warm.allSatisfy { $0 == UInt64(warmup) },
                         "the warm-up burst was not counted \(warmup) times per stream: \(warm)")

            // Traffic while the worker dies.
            let receiver = try Receiver(lab, streams: streams, expect: during, size: 200, name: "during")
            var arguments = ["python3", E2E.scripts + "/mcsend.py", "--source", Lab.senderAddress, "--count", String(during),
                             "--rate", "300", "--size", "200", "--ttl", "4", "--source-port", String(sourcePort)]
            for stream in streams { arguments += ["--stream", "\(stream.input):\(stream.id)"] }
            let sender = try ChildProcess(lab.exec(lab.sender, arguments), outputDirectory: lab.directory, name: "sender")
            defer { sender.terminate() }
            // Kill once a quarter of the second burst has been relayed on every stream.
            var flowing: [UInt64] = []
            let underTraffic = try waitUntil(timeout: .seconds(15)) {
                flowing = counted(try daemon.stats())
                return flowing.allSatisfy { $0 >= UInt64(warmup + during / 4) } || !sender.isRunning
            }
            try #require(underTraffic && sender.isRunning,
                         "the second burst did not reach the relay while the sender ran (counted per stream: \(flowing))")
            #expect(kill(pid, SIGKILL) == 0)
            let restarted = try waitUntil(timeout: .seconds(10)) {
                let stats = try daemon.stats()
                guard let worker = stats.workers.first(where: { $0.id == 1 }) else { return false }
                return worker.alive && worker.pid != pid && worker.restarts == 1 && worker.planVersion == stats.planVersion
            }
            #expect(restarted, "worker 1 was not restarted with the current plan")
            guard let sent = sender.wait(timeout: .seconds(30)) else { throw HarnessError("sender did not finish") }
            #expect(sent.status == 0, "sender: \(sent)")
            let summary = try receiver.finish()
            let final = counted(try daemon.stats())
            #expect(try daemon.stats().workers.first { $0.id == 0 }?.restarts == 0)

            let survivors = streams.indices.filter { final[$0] >= UInt64(warmup) }
            let killed = streams.indices.filter { final[$0] < UInt64(warmup) }
            print("worker kill: the surviving worker carried \(survivors.count) streams, the killed one \(killed.count)")
            #expect(!survivors.isEmpty && !killed.isEmpty,
                    "each worker must have carried a stream, or the kill tested nothing: counted per stream \(final)")
            for index in survivors {
                let stream = streams[index]
                let got = summary.received[stream.output]
                #expect(got?.received == during && got?.duplicates == 0 && got?.corrupt == 0,
                        "\(stream.input) (carried by the surviving worker) -> \(stream.output): \(String(describing: got))")
                #expect(final[index] == UInt64(warmup + during),
                        "\(stream.input) (surviving worker): counted \(final[index]), sent \(warmup + during)")
            }
            for index in killed {
                let got = summary.received[streams[index].output]
                #expect(got?.duplicates == 0 && got?.corrupt == 0, "\(streams[index].output) (killed worker): \(String(describing: got))")
            }

            // After the restart every stream is whole again.
            let after = try Receiver(lab, streams: streams, expect: 300, size: 200, startSeq: 5000, name: "after")
            try send(lab, streams: streams, count: 300, rate: 300, size: 200, startSeq: 5000)
            expectDelivered(try after.finish(), streams, count: 300)
        }
    }

    @Test("SIGHUP re-reads the config: changes applied, a broken file keeps the current rules")
    func reloadOnSIGHUP() throws {
        var path = ""
        let config: (Lab) throws -> String = { lab in
            path = lab.directory + "/rules.json"
            try Data(#"{"rules": [{"name": "a", "in": "rin0:239.1.1.1:5001", "out": ["rout0:239.10.1.1:6001"]}]}"#.utf8)
                .write(to: URL(fileURLWithPath: path))
            return path
        }
        try withRelay("hup", config: config) { lab, daemon in
            func names() throws -> [String] {
                let list = try daemon.cli(["rule", "list", "--json"])
                return try JSONDecoder().decode([RuleView].self, from: Data(list.stdout.utf8)).compactMap(\.name)
            }
            #expect(try names() == ["a"])
            try Data((#"{"rules": [{"name": "a", "in": "rin0:239.1.1.1:5001", "out": ["rout0:239.10.1.1:6001"]}, "#
                     + #"{"name": "b", "in": "rin0:239.1.1.2:5002", "out": ["rout1:239.10.1.2:6002"]}]}"#).utf8)
                .write(to: URL(fileURLWithPath: path))
            daemon.process.signal(SIGHUP)
            #expect(try waitUntil(timeout: .seconds(5)) { try names() == ["a", "b"] })
            try Data(#"{"rules": [{"name": "c", "in": "rin0:239.1.1.3:5003", "out": []}]}"#.utf8).write(to: URL(fileURLWithPath: path))
            daemon.process.signal(SIGHUP)
            #expect(try waitUntil(timeout: .seconds(5)) { daemon.process.stderr.contains("keeping the current rules") })
            #expect(try names() == ["a", "b"])
            #expect(daemon.process.isRunning)
        }
    }
}
