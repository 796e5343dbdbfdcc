import Foundation
import PcapFile
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Wire truth end to end, at the daemon's defaults: frame readers check what is on the links
/// datagram by datagram, a second mcrelay reading AF_PACKET relays the first one's output, and
/// the simulator's egress for the recorded input equals the live egress frame for frame.
/// A frame reader's check beside the socket receivers: on the captured link, every output
/// stream's datagrams arrived once each, each alone in its own frame of exactly `size` payload
/// bytes (a GSO super-frame or a merged datagram fails it), with valid checksums.
func expectOneDatagramPerFrame(_ capture: FrameCapture, _ streams: [Stream], count: Int, size: Int,
                               sourceLocation: SourceLocation = #_sourceLocation) {
    let outputs = Set(streams.map(\.output))
    let total = outputs.count * count
    let frames = capture.frames(expect: total, timeout: 10).compactMap(CapturedDatagram.init).filter { frame in
        outputs.contains(frame.destination.map(String.init).joined(separator: ".") + ":\(frame.destinationPort)")
    }
    #expect(frames.count == total, "frame reader: \(frames.count) frames for \(total) datagrams", sourceLocation: sourceLocation)
    let wrong = frames.filter { $0.fragment || $0.payload.count != size || $0.udpLength != size + 8 }
    #expect(wrong.isEmpty, "frame reader: \(wrong.count) frames not exactly one \(size)-byte datagram, e.g. \(wrong.prefix(3).map(\.payload.count))",
            sourceLocation: sourceLocation)
    let badHeaders = frames.filter { !$0.headerChecksumValid }.count
    #expect(badHeaders == 0, "frame reader: \(badHeaders) bad IPv4 header checksums", sourceLocation: sourceLocation)
    var seen = Set<String>()
    let duplicates = frames.filter { !seen.insert("\($0.destination) \($0.destinationPort) \(RelayEndToEndTests.sequence($0.payload))").inserted }
    #expect(duplicates.isEmpty, "frame reader: \(duplicates.count) datagrams twice", sourceLocation: sourceLocation)
}

extension RelayEndToEndTests {
    /// The sequence number mcsend/mcstream put in bytes 4..<12 of every payload.
    static func sequence(_ payload: [UInt8]) -> Int {
        payload.count >= 12 ? Int(payload[4..<12].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) : -1
    }

    @Test("chain: sender -> mcrelay -> veth -> a second mcrelay reading AF_PACKET -> receiver, every datagram in its own frame, byte-exact",
          arguments: [1, 2, 50, 500])
    func chain(streams count: Int) throws {
        // Datagrams per stream and per-stream rates: 4,000 pps in all for 1 and 2 streams (runs of
        // same-size datagrams in one receive batch, what GSO would merge), 2,500 and 5,000 for 50 and 500.
        let perStream = [1: 2000, 2: 1000, 50: 40][count] ?? 8
        let size = 1316
        let streams = (0..<count).map { Stream(input: "239.1.\(3 + $0 / 200).\($0 % 200 + 1):5001",
                                               output: "239.20.\(3 + $0 / 200).\($0 % 200 + 1):7001", id: $0 + 1) }
        func hop(_ stream: Stream) -> String { stream.input.replacingOccurrences(of: "239.1.", with: "239.10.") }
        // Both relays' rules from config files (500 `rule add` calls would take minutes).
        func configFile(_ path: String, _ rules: [(input: String, output: String)]) throws -> String {
            let lines = rules.map { #"{"in": "\#($0.input)", "out": ["\#($0.output)"]}"# }
            try Data(#"{"rules": [\#(lines.joined(separator: ",\n"))]}"#.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
        let firstRules: (Lab) throws -> String = { lab in
            try configFile(lab.directory + "/relay1.json", streams.map { ("rin0:\($0.input)", "rout0:\(hop($0)):8") })
        }
        try withRelay("chn\(count)", config: firstRules) { lab, daemon in
            // A fourth namespace behind the receiver namespace: the second relay (in the receiver
            // namespace) sends on c2a, the final receiver listens on its peer c2b there. (Not both
            // ends in one namespace: the kernel drops a datagram whose source is its own address.)
            let final = lab.prefix + "-fin"
            _ = try run(["ip", "netns", "add", final], in: lab.directory, timeout: .seconds(10))
            defer { _ = try? run(["ip", "netns", "del", final], in: lab.directory, timeout: .seconds(10)) }
            try lab.must(lab.receiver, ["ip", "link", "add", "c2a", "type", "veth", "peer", "name", "c2b", "netns", final])
            try lab.must(lab.receiver, ["ip", "addr", "add", "198.18.9.1/24", "dev", "c2a"])
            try lab.must(lab.receiver, ["ip", "link", "set", "c2a", "up"])
            for step in [["ip", "addr", "add", "198.18.9.2/24", "dev", "c2b"], ["ip", "link", "set", "c2b", "up"], ["ip", "link", "set", "lo", "up"]] {
                try lab.must(final, step)
            }
            try daemon.waitSettled(timeout: .seconds(30))
            let secondRules = try configFile(lab.directory + "/relay2.json", streams.map { ("rcv0:\(hop($0))", "c2a:\($0.output):5") })
            let second = try SecondRelay(lab, name: "relay2", config: secondRules)
            defer { second.stop() }
            try second.waitJoined(count, timeout: count > 100 ? 30 : 10)
            let firstHop = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
            defer { firstHop.close() }
            let secondHop = try FrameCapture(namespace: final, interface: "c2b")
            defer { secondHop.close() }
            let receiver = try Receiver(lab, namespace: final, address: "198.18.9.2", streams: streams, expect: perStream, size: size,
                                        duration: 60, idle: 4, name: "final-recv")
            let sent = try send(lab, streams: streams, count: perStream, rate: [1: 4000, 2: 2000, 50: 50][count] ?? 10, size: size)
            #expect(sent.errors == 0, "sender errors")
            expectDelivered(try receiver.finish(timeout: .seconds(90)), streams, count: perStream, ttl: 5)

            let total = count * perStream
            let one = firstHop.frames(expect: total, timeout: 10).compactMap(CapturedDatagram.init).filter { $0.destination[0] == 239 && $0.destination[1] == 10 }
            let two = secondHop.frames(expect: total, timeout: 10).compactMap(CapturedDatagram.init).filter { $0.destination[0] == 239 && $0.destination[1] == 20 }
            for (hop, frames) in [("rcv0 (first relay's output)", one), ("c2b (second relay's output)", two)] {
                #expect(frames.count == total, "\(hop): \(frames.count) frames for \(total) datagrams")
                let wrong = frames.filter { $0.payload.count != size || $0.udpLength != size + 8 || $0.fragment }
                #expect(wrong.isEmpty, "\(hop): \(wrong.count) frames not exactly one \(size)-byte datagram, e.g. \(wrong.prefix(3).map(\.payload.count))")
                #expect(frames.allSatisfy { $0.udpChecksumValid && $0.headerChecksumValid }, "\(hop): checksums")
            }
            // Byte-exact through both relays, per stream and sequence; the sender's source port kept.
            var firstPayloads: [String: [UInt8]] = [:]
            // Keyed by the group's last two octets (the hop remaps only the first two) and the sequence.
            func key(_ frame: CapturedDatagram) -> String { "\(frame.destination[2]).\(frame.destination[3]) \(Self.sequence(frame.payload))" }
            for frame in one { firstPayloads[key(frame)] = frame.payload }
            let mismatched = two.filter { firstPayloads[key($0)] != $0.payload }
            #expect(mismatched.isEmpty, "\(mismatched.count) datagrams changed between the hops")
            #expect(Set(one.map(\.sourcePort)) == Set(two.map(\.sourcePort)), "source ports kept across the second relay")
            #expect(two.allSatisfy { $0.source == [198, 18, 9, 1] && $0.ttl == 5 }, "second hop: c2a's address, the output's TTL")
            let accepted = try second.stats().rules.reduce(UInt64(0)) { $0 + $1.packets }
            #expect(accepted == UInt64(total), "the second relay accepted \(accepted) of \(total) (a merged frame would be one datagram)")
            let drops = try second.stats().drops
            #expect(drops.total == 0, "drops at the second relay: \(drops.nonZero)")
        }
    }

    @Test("fidelity: the simulator's egress for a live recording equals the live egress frame for frame")
    func simulatorEgressEqualsTheWire() throws {
        let recordings = try E2E.temporaryDirectory("fidelity")
        defer { try? FileManager.default.removeItem(atPath: recordings) }
        let recording = recordings + "/run"
        let s1 = Stream(input: "239.1.5.1:5001", output: "239.10.5.1:6001", id: 1)
        let s2 = Stream(input: "239.1.5.2:5002", output: "239.10.5.2:6002", id: 2)
        let n = 400
        var live: [[UInt8]] = []
        try withRelay("fid", daemonArguments: ["--record", recording]) { lab, daemon in
            try daemon.addRule("rin0:\(s1.input)", ["rout0:\(s1.output):9", "rout1:239.30.5.1:7001"])
            try daemon.addRule("rin0:\(s2.input)", ["rout0:\(s2.output):3"])
            try daemon.waitSettled()
            let capture = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
            defer { capture.close() }
            let receiver = try Receiver(lab, streams: [s1, s2], expect: n, size: 300)
            try send(lab, streams: [s1, s2], count: n, rate: 1000, size: 300)
            expectDelivered(try receiver.finish(), [s1, s2], count: n)
            live = capture.frames(expect: 2 * n).filter { $0.count >= 24 && $0[12] == 0x08 && $0[13] == 0 && $0[23] == 17 }
            let stopped = try daemon.cli(["record", "stop"])
            #expect(stopped.status == 0, "\(stopped)")
        }
        #expect(live.count == 2 * n, "live frames on rcv0: \(live.count) of \(2 * n)")
        let out = recordings + "/replay"
        let replay = try run([E2E.binary, "sim", "replay", "--recording", recording, "--out-dir", out], in: recordings, timeout: .seconds(60))
        #expect(replay.status == 0, "\(replay)")
        var simulated: [[UInt8]] = []
        let reader = try PcapReader(path: out + "/rout0.pcap")
        while let record = try reader.next() { simulated.append(record.bytes) }
        #expect(simulated.count == live.count, "simulated frames on rout0: \(simulated.count), live: \(live.count)")
        // Per output, in order. (Across outputs the wire order differs by design: a worker sends a
        // receive batch's transmits grouped by output, one sendmmsg per socket; the simulator
        // writes them as they are decided.)
        func byOutput(_ frames: [[UInt8]]) -> [[UInt8]] {
            let keyed = frames.map { frame in (Array(frame[30..<34]) + Array(frame[36..<38]), frame) }
            let keys = Array(Set(keyed.map(\.0))).sorted { $0.lexicographicallyPrecedes($1) }
            return keys.flatMap { key in keyed.filter { $0.0 == key }.map(\.1) }
        }
        // Field by field first (a readable failure), then every byte.
        for (index, (wire, model)) in zip(byOutput(live), byOutput(simulated)).enumerated() {
            guard let w = CapturedDatagram(wire), let m = CapturedDatagram(model) else {
                Issue.record("frame \(index) is not an IPv4/UDP frame (live \(wire.count) bytes, simulated \(model.count))")
                break
            }
            let fields = { (d: CapturedDatagram) in
                "\(d.destinationMAC) \(d.sourceMAC) \(d.source) \(d.destination) \(d.sourcePort) \(d.destinationPort) ttl \(d.ttl) df \(d.dontFragment) id \(d.identification) udp \(d.udpLength)"
            }
            if fields(w) != fields(m) || w.payload != m.payload || wire != model {
                Issue.record("frame \(index) differs:\n live      \(fields(w)) payload \(w.payload.count)\n simulated \(fields(m)) payload \(m.payload.count)")
                break
            }
        }
    }
}

extension RelayEndToEndTests {
    @Test("a reload that replaces a rule's outputs shows the new outputs at zero; an output kept keeps its count")
    func countersFollowOutputsAcrossAReload() throws {
        var path = ""
        func write(_ outputs: [String]) throws {
            let list = outputs.map { "\"\($0)\"" }.joined(separator: ", ")
            try Data(#"{"rules": [{"name": "a", "in": "rin0:239.1.6.1:5001", "out": [\#(list)]}]}"#.utf8).write(to: URL(fileURLWithPath: path))
        }
        let config: (Lab) throws -> String = { lab in
            path = lab.directory + "/rules.json"
            try write(["rout0:239.10.6.1:6001:64", "rout0:239.10.6.2:6002:64"])
            return path
        }
        try withRelay("ctr", config: config) { lab, daemon in
            try daemon.waitSettled()
            let streams = [Stream(input: "239.1.6.1:5001", output: "239.10.6.1:6001", id: 1)]
            let receiver = try Receiver(lab, streams: streams, expect: 200, size: 100)
            try send(lab, streams: streams, count: 200, rate: 1000, size: 100)
            expectDelivered(try receiver.finish(), streams, count: 200)
            func outputs() throws -> [String: UInt64] {
                Dictionary(uniqueKeysWithValues: try daemon.stats().rules.flatMap(\.outputs).map { ($0.out, $0.packets) })
            }
            #expect(try outputs() == ["rout0:239.10.6.1:6001:64": 200, "rout0:239.10.6.2:6002:64": 200])
            // [A, B] -> [B, C]: B keeps its 200 at its new position, C is new (0), A is gone.
            try write(["rout0:239.10.6.2:6002:64", "rout1:239.10.6.3:6003:64"])
            daemon.process.signal(SIGHUP)
            #expect(try waitUntil(timeout: .seconds(5)) { try outputs().keys.contains("rout1:239.10.6.3:6003:64") })
            try daemon.waitSettled()
            #expect(try outputs() == ["rout1:239.10.6.3:6003:64": 0, "rout0:239.10.6.2:6002:64": 200])
            // [B, C] -> [D, E]: nothing kept, so nothing carried (before, the old counts showed under D and E).
            try write(["rout1:239.10.6.4:6004:64", "rout1:239.10.6.5:6005:64"])
            daemon.process.signal(SIGHUP)
            #expect(try waitUntil(timeout: .seconds(5)) { try outputs().keys.contains("rout1:239.10.6.5:6005:64") })
            try daemon.waitSettled()
            #expect(try outputs() == ["rout1:239.10.6.4:6004:64": 0, "rout1:239.10.6.5:6005:64": 0])
            #expect(try daemon.stats().rules.first?.packets == 200, "the rule (its input) keeps what it accepted")
        }
    }

    @Test("stats and doctor say which egress path each output interface and output takes, and why")
    func egressDecisionsAreShown() throws {
        try withRelay("egs") { lab, daemon in
            try daemon.addRule("rin0:239.1.7.1:5001", ["rout0:239.10.7.1:6001", "rout1:198.18.3.2:6002"])
            try daemon.waitSettled()
            var stats = try daemon.stats()
            _ = try waitUntil(timeout: .seconds(5)) { stats = try daemon.stats(); return stats.egress.count == 2 }
            let rout0 = stats.egress.first { $0.interface == "rout0" }
            #expect(rout0?.path == "packet" && rout0?.segmentation == false, "\(stats.egress)")
            #expect(rout0?.segmentationReason.contains("veth") == true, "\(String(describing: rout0))")
            let paths = stats.rules.first?.outputs.map { $0.path ?? "?" }
            #expect(paths == ["packet", "udp"], "multicast on the packet path, unicast on the kernel's: \(String(describing: paths))")
            let text = try daemon.cli(["stats"]).stdout
            #expect(text.contains("egress rout0: multicast packet") && text.contains("UDP GSO off"), "\(text)")
            let doctor = try run(lab.exec(lab.relay, [E2E.binary, "doctor", "--out", "rout0"]), in: lab.directory, timeout: .seconds(20))
            #expect(doctor.stdout.contains("egress: multicast packet") && doctor.stdout.contains("UDP GSO off"), "\(doctor)")
        }
    }
}

/// Another `mcrelay daemon` in the lab's receiver namespace (the second relay of a chain).
final class SecondRelay {
    let lab: Lab
    let control: String
    let process: ChildProcess

    init(_ lab: Lab, name: String, config: String) throws {
        self.lab = lab
        control = lab.directory + "/\(name)/control.sock"
        process = try ChildProcess(lab.exec(lab.receiver, [E2E.binary, "daemon", "--control", control, "--workers", "1", "--config", config]),
                                   outputDirectory: lab.directory, name: name)
        guard waitUntil(timeout: .seconds(15), { !process.isRunning || (try? stats()) != nil }), process.isRunning else {
            process.terminate()
            throw HarnessError("\(name) did not come up:\n\(process.stderr.suffix(3000))")
        }
    }

    func cli(_ arguments: [String]) throws -> CommandResult {
        try run([E2E.binary] + arguments + ["--control", control], in: lab.directory, timeout: .seconds(20))
    }

    func stats() throws -> StatsView {
        let result = try cli(["stats", "--json"])
        guard result.status == 0 else { throw HarnessError("second relay: stats failed: \(result)") }
        return try JSONDecoder().decode(StatsView.self, from: Data(result.stdout.utf8))
    }

    func waitJoined(_ groups: Int, timeout: Int = 10) throws {
        var last: StatsView?
        let done = try waitUntil(timeout: .seconds(timeout)) {
            last = try stats()
            return last!.joined.count == groups && last!.outstanding.isEmpty && last!.workers.allSatisfy { $0.planVersion == last!.planVersion }
        }
        guard done else { throw HarnessError("second relay did not join \(groups) groups: \(String(describing: last))") }
    }

    func stop() {
        process.signal(SIGTERM)
        if process.wait(timeout: .seconds(10)) == nil { process.terminate() }
    }
}

extension RelayEndToEndTests {
    /// `count` datagrams of `size` bytes on `stream` at `rate`: every one delivered once with TTL
    /// `ttl` (a receiver socket), on rcv0 one datagram per frame (a frame reader), and the daemon's
    /// counters equal to what was sent.
    func expectForwardedOnTheWire(_ lab: Lab, _ daemon: RelayDaemon, _ stream: Stream, count: Int = 1000, rate: Double,
                                  size: Int = 200, ttl: Int = 64) throws {
        let frames = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
        defer { frames.close() }
        let receiver = try Receiver(lab, streams: [stream], expect: count, size: size)
        try send(lab, streams: [stream], count: count, rate: rate, size: size)
        expectDelivered(try receiver.finish(), [stream], count: count, ttl: ttl)
        expectOneDatagramPerFrame(frames, [stream], count: count, size: size)
        expectCounted(try daemon.stats(), inputs: [stream.input], packets: UInt64(count))
    }
}
