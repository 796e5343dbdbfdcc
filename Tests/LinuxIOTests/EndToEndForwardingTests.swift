import Foundation
import LinuxIO
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// Forwarding: what arrives, how often, with which bytes and TTL.
extension RelayEndToEndTests {
    @Test("one stream, default TTL 64")
    func oneStream() throws {
        try withRelay("one") { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
            try daemon.waitSettled()
            try expectForwardedOnTheWire(lab, daemon, Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1), rate: 500)
        }
    }

    @Test("two streams on one interface (the reference relay's bug)")
    func twoStreams() throws {
        try withRelay("two") { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
            try daemon.addRule("rin0:239.1.1.2:5002", ["rout0:239.10.1.2:6002"])
            try daemon.waitSettled()
            let streams = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1),
                           Stream(input: "239.1.1.2:5002", output: "239.10.1.2:6002", id: 2)]
            let frames = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
            defer { frames.close() }
            let receiver = try Receiver(lab, streams: streams, expect: 1000, size: 300)
            try send(lab, streams: streams, count: 1000, rate: 500, size: 300)
            expectDelivered(try receiver.finish(), streams, count: 1000)
            expectOneDatagramPerFrame(frames, streams, count: 1000, size: 300)
            expectCounted(try daemon.stats(), inputs: streams.map(\.input), packets: 1000)
        }
    }

    @Test("50 streams on one interface, default sysctls (20 groups per socket)")
    func fiftyStreams() throws {
        try withRelay("fifty") { lab, daemon in
            let streams = Self.streams(50, inputGroup: { "239.1.2.\($0 + 1):5000" }, outputGroup: { "239.11.2.\($0 + 1):6000" })
            for (index, stream) in streams.enumerated() {
                try daemon.addRule("rin0:\(stream.input)", ["rout0:\(stream.output)"], name: "s\(index)")
            }
            try daemon.waitSettled()
            let stats = try daemon.stats()
            #expect(stats.joined.count == 50)
            #expect(stats.helperSockets.count == 3, "50 groups need 3 helper sockets of 20: \(stats.helperSockets)")
            let kernel = try lab.memberships(lab.relay, interface: "rin0").filter { $0.hasPrefix("239.1.2.") }
            #expect(kernel.count == 50, "kernel holds \(kernel.count) of 50 groups on rin0")
            let frames = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
            defer { frames.close() }
            let receiver = try Receiver(lab, streams: streams, expect: 300, size: 100)
            try send(lab, streams: streams, count: 300, rate: 100, size: 100)
            expectDelivered(try receiver.finish(), streams, count: 300)
            expectOneDatagramPerFrame(frames, streams, count: 300, size: 100)
            expectCounted(try daemon.stats(), inputs: streams.map(\.input), packets: 300)
        }
    }

    @Test("500 streams on one interface from a config file, default sysctls")
    func fiveHundredStreams() throws {
        let streams = Self.streams(500, inputGroup: { "239.2.\($0 / 200).\($0 % 200 + 1):5000" },
                                   outputGroup: { "239.12.\($0 / 200).\($0 % 200 + 1):6000" })
        let config: (Lab) throws -> String = { lab in
            let rules = streams.map { #"{"in": "rin0:\#($0.input)", "out": ["rout0:\#($0.output)"]}"# }
            let path = lab.directory + "/rules.json"
            try Data(#"{"rules": [\#(rules.joined(separator: ",\n"))]}"#.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
        try withRelay("fivh", config: config) { lab, daemon in
            try daemon.waitSettled(timeout: .seconds(20))
            let stats = try daemon.stats()
            #expect(stats.joined.count == 500)
            #expect(stats.outstanding.isEmpty)
            let kernel = try lab.memberships(lab.relay, interface: "rin0").filter { $0.hasPrefix("239.2.") }
            #expect(kernel.count == 500, "kernel holds \(kernel.count) of 500 groups on rin0")
            let frames = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
            defer { frames.close() }
            let receiver = try Receiver(lab, streams: streams, expect: 20, size: 64, duration: 30)
            try send(lab, streams: streams, count: 20, rate: 10, size: 64)
            expectDelivered(try receiver.finish(), streams, count: 20)
            expectOneDatagramPerFrame(frames, streams, count: 20, size: 64)
            expectCounted(try daemon.stats(), inputs: streams.map(\.input), packets: 20)
        }
    }

    @Test("fan-out to three outputs on two interfaces, TTL per output")
    func fanOut() throws {
        try withRelay("fan") { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001",
                               ["rout0:239.10.1.1:6001", "rout0:239.10.1.2:6002:7", "rout1:239.10.1.3:6003:9"])
            try daemon.waitSettled()
            let first = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)]
            let second = [Stream(input: "239.1.1.1:5001", output: "239.10.1.2:6002", id: 1)]
            let third = [Stream(input: "239.1.1.1:5001", output: "239.10.1.3:6003", id: 1)]
            let r1 = try Receiver(lab, streams: first, expect: 800, size: 400, name: "r1")
            let r2 = try Receiver(lab, streams: second, expect: 800, size: 400, name: "r2")
            let r3 = try Receiver(lab, address: Lab.receiverAddress1, streams: third, expect: 800, size: 400, name: "r3")
            let frames0 = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
            defer { frames0.close() }
            let frames1 = try FrameCapture(namespace: lab.receiver, interface: "rcv1")
            defer { frames1.close() }
            try send(lab, streams: first, count: 800, rate: 400, size: 400)
            expectDelivered(try r1.finish(), first, count: 800, ttl: 64)
            expectDelivered(try r2.finish(), second, count: 800, ttl: 7)
            expectDelivered(try r3.finish(), third, count: 800, ttl: 9)
            expectOneDatagramPerFrame(frames0, first + second, count: 800, size: 400)
            expectOneDatagramPerFrame(frames1, third, count: 800, size: 400)
            expectCounted(try daemon.stats(), inputs: ["239.1.1.1:5001"], packets: 800)
        }
    }

    @Test("remapped group and port, by name")
    func remap() throws {
        try withRelay("remap") { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout1:239.20.2.2:7002:5"], name: "cam1")
            try daemon.waitSettled()
            let list = try daemon.cli(["rule", "list", "--json"])
            #expect(list.status == 0)
            let rules = try JSONDecoder().decode([RuleView].self, from: Data(list.stdout.utf8))
            #expect(rules.map(\.name) == ["cam1"] && rules.first?.out == ["rout1:239.20.2.2:7002:5"])
            let streams = [Stream(input: "239.1.1.1:5001", output: "239.20.2.2:7002", id: 9)]
            let receiver = try Receiver(lab, address: Lab.receiverAddress1, streams: streams, expect: 600, size: 256)
            try send(lab, streams: streams, count: 600, rate: 600, size: 256)
            expectDelivered(try receiver.finish(), streams, count: 600, ttl: 5)
            expectCounted(try daemon.stats(), inputs: ["239.1.1.1:5001"], packets: 600)
        }
    }

    @Test("byte-exact payloads at the smallest and largest unfragmented sizes")
    func byteExact() throws {
        try withRelay("bytes") { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
            try daemon.addRule("rin0:239.1.1.2:5002", ["rout0:239.10.1.2:6002"])
            try daemon.waitSettled()
            let large = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)]
            let small = [Stream(input: "239.1.1.2:5002", output: "239.10.1.2:6002", id: 2)]
            let r1 = try Receiver(lab, streams: large, expect: 500, size: 1472, name: "large")
            let r2 = try Receiver(lab, streams: small, expect: 500, size: 12, name: "small")
            try send(lab, streams: large, count: 500, rate: 500, size: 1472)
            try send(lab, streams: small, count: 500, rate: 500, size: 12)
            let largeSummary = try r1.finish()
            expectDelivered(largeSummary, large, count: 500)
            #expect(largeSummary.received["239.10.1.1:6001"]?.bytes == 500 * 1472)
            expectDelivered(try r2.finish(), small, count: 500)
            let stats = try daemon.stats()
            #expect(stats.rules.first { $0.in.hasSuffix("239.1.1.1:5001") }?.bytes == 500 * 1472)
            #expect(stats.rules.first { $0.in.hasSuffix("239.1.1.2:5002") }?.bytes == 500 * 12)
        }
    }

    @Test("source-specific rules: the named source is relayed, another source is not")
    func sourceSpecific() throws {
        try withRelay("ssm") { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"], source: Lab.senderAddress)
            try daemon.addRule("rin0:239.1.1.2:5002", ["rout0:239.10.1.2:6002"], source: "198.18.1.99")
            try daemon.waitSettled()
            let joined = try daemon.stats().joined
            #expect(joined.contains("239.1.1.1 on rin0 from 198.18.1.1") && joined.contains("239.1.1.2 on rin0 from 198.18.1.99"), "\(joined)")
            let wanted = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)]
            let other = [Stream(input: "239.1.1.2:5002", output: "239.10.1.2:6002", id: 2)]
            let receiver = try Receiver(lab, streams: wanted + other, expect: 300, size: 100, idle: 2)
            try send(lab, streams: wanted + other, count: 300, rate: 300, size: 100)
            let summary = try receiver.finish()
            expectDelivered(summary, wanted, count: 300)
            #expect(summary.received["239.10.1.2:6002"]?.received == 0, "a datagram from another source was relayed")
            let stats = try daemon.stats()
            expectCounted(stats, inputs: ["239.1.1.1:5001"], packets: 300)
            expectCounted(stats, inputs: ["239.1.1.2:5002"], packets: 0)
            let unmatched = stats.drops.nonZero.first { $0.reason.description == "no_matching_rule" }?.count ?? 0
            #expect(unmatched >= 300, "the other source's datagrams should count as no_matching_rule: \(unmatched)")
        }
    }

    @Test("two workers: every datagram exactly once")
    func twoWorkersNoDuplicates() throws {
        try withRelay("dup", workers: 2) { lab, daemon in
            let streams = Self.streams(8, inputGroup: { "239.1.3.\($0 + 1):\(5000 + $0)" }, outputGroup: { "239.13.3.\($0 + 1):\(6000 + $0)" })
            for stream in streams { try daemon.addRule("rin0:\(stream.input)", ["rout0:\(stream.output)"]) }
            try daemon.waitSettled()
            let receiver = try Receiver(lab, streams: streams, expect: 500, size: 200)
            try send(lab, streams: streams, count: 500, rate: 250, size: 200)
            expectDelivered(try receiver.finish(), streams, count: 500)
            let stats = try daemon.stats()
            #expect(stats.workers.count == 2 && stats.workers.allSatisfy { $0.alive && $0.answered })
            expectCounted(stats, inputs: streams.map(\.input), packets: 500)
        }
    }

    @Test("partition dispatch (no fanout): two workers, two input interfaces, every datagram once")
    func partitionDispatch() throws {
        try withRelay("part", workers: 2, daemonArguments: ["--dispatch", "partition"]) { lab, daemon in
            // A second input interface, so each worker owns one.
            try lab.must(lab.sender, ["ip", "link", "add", "snd1", "type", "veth", "peer", "name", "rin1", "netns", lab.relay])
            try lab.must(lab.sender, ["ip", "addr", "add", "198.18.4.1/24", "dev", "snd1"])
            try lab.must(lab.relay, ["ip", "addr", "add", "198.18.4.2/24", "dev", "rin1"])
            try lab.must(lab.sender, ["ip", "link", "set", "snd1", "up"])
            try lab.must(lab.relay, ["ip", "link", "set", "rin1", "up"])
            try lab.waitForCarrier(lab.sender, "snd1")
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
            try daemon.addRule("rin1:239.1.4.1:5004", ["rout0:239.10.4.1:6004"])
            try daemon.waitSettled()
            let first = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)]
            let second = [Stream(input: "239.1.4.1:5004", output: "239.10.4.1:6004", id: 4)]
            let receiver = try Receiver(lab, streams: first + second, expect: 600, size: 200)
            try send(lab, streams: first, count: 600, rate: 600, size: 200)
            let sent = try run(lab.exec(lab.sender, ["python3", E2E.scripts + "/mcsend.py", "--source", "198.18.4.1", "--count", "600",
                                                     "--rate", "600", "--size", "200", "--ttl", "4", "--stream", "239.1.4.1:5004:4"]),
                               in: lab.directory, timeout: .seconds(20))
            #expect(sent.status == 0, "sender: \(sent)")
            expectDelivered(try receiver.finish(), first + second, count: 600)
            expectCounted(try daemon.stats(), inputs: ["239.1.1.1:5001", "239.1.4.1:5004"], packets: 600)
        }
    }
}
