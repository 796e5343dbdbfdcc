import Foundation
import PcapFile
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The daemon with `--data-path xdp` in the lab (snd0 -> rin0 [relay] rout0/rout1 -> rcv0/rcv1):
/// the XDP program forwards the rules it carries, a rule it refuses beside them keeps working on
/// the packet path, stats count what arrived whichever path carried it, rule changes under
/// traffic switch the maps, and SIGTERM leaves no program attached.
///
/// Test-host setting, not the relay's: GRO on rcv0/rcv1 (the receivers' ends, in another
/// namespace), except where a test says otherwise. A veth takes frames redirected into it by
/// native XDP only while its peer runs NAPI (GRO or an XDP program on the peer); the relay
/// cannot set that from its side, but sees it (the device's xdp-features lack ndo-xmit) and
/// keeps those rules on the packet path, or carries them with `--xdp-mode generic`
/// (`peerWithoutGRO`, `genericMode` below, at the veth defaults: GRO off).
@Suite("XDP data path end to end (root, network namespaces)", .serialized,
       .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
struct EndToEndXDPTests {
    static var object: String {
        ProcessInfo.processInfo.environment["MCRELAY_XDP_OBJECT"].flatMap { $0.isEmpty ? nil : $0 }
            ?? E2E.repositoryRoot + "/.build/bpf/mcrelay_xdp.o"
    }

    /// A lab with GRO on the receivers' veth ends and the daemon on the XDP path; afterwards
    /// SIGTERM must exit 0 and leave rin0 without an XDP program.
    func withXDPRelay(_ tag: String, config: ((Lab) throws -> String)? = nil, arguments: [String] = [], receiverGRO: Bool = true,
                      attachedAtStart: Bool = true, restartsExpected: Bool = false, _ body: (Lab, RelayDaemon) throws -> Void) throws {
        guard FileManager.default.fileExists(atPath: Self.object) else {
            throw HarnessError("no BPF object at \(Self.object): run `make bpf` (it sets MCRELAY_XDP_OBJECT)")
        }
        let lab = try Lab(tag)
        defer { lab.down() }
        if receiverGRO {
            for device in ["rcv0", "rcv1"] { try lab.must(lab.receiver, ["ethtool", "-K", device, "gro", "on"]) }
            print("EndToEndXDPTests: test-host setting: GRO on rcv0/rcv1 (the receivers' veth ends)")
        }
        let daemon = try RelayDaemon(lab, config: config?(lab), extraArguments: ["--data-path", "xdp", "--xdp-object", Self.object] + arguments)
        defer { daemon.kill() }
        #expect(try xdpAttached(lab, "rin0") == attachedAtStart, "rin0 XDP program with the daemon running: expected \(attachedAtStart)")
        try body(lab, daemon)
        let restarts = try daemon.stats().workers.filter { $0.restarts > 0 }
        #expect(restartsExpected || restarts.isEmpty, "workers restarted during the test: \(restarts); see \(lab.directory)/daemon.err")
        let stopped = try daemon.stop()
        #expect(stopped.status == 0, "daemon exit after SIGTERM: \(stopped)")
        #expect(try !xdpAttached(lab, "rin0"), "rin0 still has an XDP program after the daemon stopped")
    }

    func xdpAttached(_ lab: Lab, _ interface: String) throws -> Bool {
        try lab.must(lab.relay, ["ip", "-d", "link", "show", interface]).stdout.contains("prog/xdp")
    }

    /// Round `number` of `count` datagrams of 200 bytes on `stream` (sequence numbers from
    /// number × count): every one delivered once with TTL 8; with `redirected`, rin0's XDP
    /// redirect count must grow by exactly that many.
    func forwardRound(_ lab: Lab, _ stream: Stream, _ number: Int, count: Int, redirected want: Int? = nil) throws {
        let receiver = try Receiver(lab, streams: [stream], expect: count, size: 200, startSeq: number * count, name: "recv\(number)")
        let redirectedBefore = try redirected(lab)
        try send(lab, streams: [stream], count: count, rate: 2000, size: 200, startSeq: number * count)
        expectDelivered(try receiver.finish(), [stream], count: count, ttl: 8)
        if let want {
            let carried = try redirected(lab) - redirectedBefore
            #expect(carried == want, "round \(number): rin0 redirected \(carried) of \(count) by XDP, want \(want)")
        }
    }

    /// rin0's veth counter of frames its XDP program redirected (ethtool -S: rx_queue_0_xdp_redirect).
    func redirected(_ lab: Lab) throws -> Int {
        let text = try lab.must(lab.relay, ["ethtool", "-S", "rin0"]).stdout
        guard let line = text.split(separator: "\n").first(where: { $0.contains("rx_queue_0_xdp_redirect:") }),
              let value = Int(line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces))
        else { throw HarnessError("no rx_queue_0_xdp_redirect in ethtool -S rin0: \(text)") }
        return value
    }

    /// What the kernel says `interface` (in the relay's namespace) received: `ip -s -j link`.
    func receivedFrames(_ lab: Lab, _ interface: String) throws -> UInt64 {
        let text = try lab.must(lab.relay, ["ip", "-s", "-j", "link", "show", interface]).stdout
        guard let links = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]],
              let stats = links.first?["stats64"] as? [String: Any], let rx = stats["rx"] as? [String: Any],
              let packets = (rx["packets"] as? NSNumber)?.uint64Value
        else { throw HarnessError("no stats64.rx.packets in `ip -s -j link show \(interface)`: \(text)") }
        return packets
    }

    static func configFile(_ lab: Lab, _ rules: [(input: String, outputs: [String])]) throws -> String {
        let lines = rules.map { rule in #"{"in": "\#(rule.input)", "out": [\#(rule.outputs.map { "\"\($0)\"" }.joined(separator: ", "))]}"# }
        let path = lab.directory + "/rules.json"
        try Data(#"{"rules": [\#(lines.joined(separator: ",\n"))]}"#.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("one stream and a fan-out to 2 outputs with remap by XDP, byte-exact, one datagram per frame; a refused rule beside them on the packet path; stats equal arrivals")
    func streamsFanOutAndAFallback() throws {
        let fan0 = Stream(input: "239.1.7.1:5001", output: "239.20.7.1:6001", id: 1)
        let fan1 = Stream(input: "239.1.7.1:5001", output: "239.21.7.1:6002", id: 1)
        let single = Stream(input: "239.1.7.2:5002", output: "239.22.7.2:6003", id: 2)
        // Two outputs on rout0: one devmap pass sends one copy per device, so XDPTables refuses it.
        let refused0 = Stream(input: "239.1.7.3:5003", output: "239.23.7.3:6004", id: 3)
        let refused1 = Stream(input: "239.1.7.3:5003", output: "239.23.7.4:6005", id: 3)
        let config: (Lab) throws -> String = { lab in
            try Self.configFile(lab, [("rin0:\(fan0.input)", ["rout0:\(fan0.output):8", "rout1:\(fan1.output):9"]),
                                      ("rin0:\(single.input)", ["rout0:\(single.output):7"]),
                                      ("rin0:\(refused0.input)", ["rout0:\(refused0.output):6", "rout0:\(refused1.output):6"])])
        }
        try withXDPRelay("xdp1", config: config, arguments: ["--metrics", MetricsEndToEndTests.address]) { lab, daemon in
            try daemon.waitSettled()
            let paths = try #require(try daemon.stats().dataPath, "stats --json has no data_path with --data-path xdp")
            let byName = Dictionary(uniqueKeysWithValues: try daemon.stats().rules.map { ($0.in, $0.id) })
            let path = Dictionary(uniqueKeysWithValues: paths.rules.map { ($0.name, $0) })
            #expect(path[byName["rin0:\(fan0.input)"]!]?.path == "xdp", "fan-out rule: \(paths.lines)")
            #expect(path[byName["rin0:\(single.input)"]!]?.path == "xdp", "single rule: \(paths.lines)")
            let fallback = path[byName["rin0:\(refused0.input)"]!]
            #expect(fallback?.path == "packet" && fallback?.reason?.contains("two outputs on rout0") == true, "refused rule: \(paths.lines)")
            #expect(paths.inputs.map(\.name) == ["rin0"] && paths.inputs.first?.path == "xdp", "inputs: \(paths.lines)")
            let text = try daemon.cli(["stats"]).stdout
            #expect(text.contains("data path xdp") && text.contains("two outputs on rout0"), "mcrelay stats text: \(text)")

            let count = 2000, size = 1316
            let capture0 = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
            defer { capture0.close() }
            let capture1 = try FrameCapture(namespace: lab.receiver, interface: "rcv1")
            defer { capture1.close() }
            let receiver0 = try Receiver(lab, streams: [fan0, single, refused0, refused1], expect: count, size: size, name: "recv0")
            let receiver1 = try Receiver(lab, address: Lab.receiverAddress1, streams: [fan1], expect: count, size: size, name: "recv1")
            let redirectedBefore = try redirected(lab)
            let kernelBefore = try receivedFrames(lab, "rin0")
            let deviceBefore = try #require(try daemon.stats().inputDevices?.first { $0.interface == "rin0" }, "stats --json: no input_devices entry for rin0")
            try send(lab, streams: [fan0, single, refused0], count: count, rate: 2000, size: size)
            let arrived0 = try receiver0.finish(), arrived1 = try receiver1.finish()
            expectDelivered(arrived0, [fan0, single, refused0, refused1], count: count)
            expectDelivered(arrived1, [fan1], count: count)
            #expect(arrived0.received[fan0.output]?.ttl_min == 8 && arrived1.received[fan1.output]?.ttl_min == 9
                    && arrived0.received[single.output]?.ttl_min == 7 && arrived0.received[refused0.output]?.ttl_min == 6, "TTLs")
            // The XDP program carried the two XDP rules' frames (and only those): rin0's own count.
            let carried = try redirected(lab) - redirectedBefore
            #expect(carried == 2 * count, "rin0 rx_queue_0_xdp_redirect grew by \(carried), expected \(2 * count) (fan-out and single stream)")
            print("EndToEndXDPTests: \(count) datagrams of \(size) bytes per stream; XDP redirected \(carried) at rin0; arrived: "
                  + ([fan0, single, refused0, refused1].map { "\($0.output) \(arrived0.received[$0.output]?.received ?? -1)" }
                     + ["\(fan1.output) \(arrived1.received[fan1.output]?.received ?? -1)"]).joined(separator: ", "))

            // The wire: every datagram alone in its frame of exactly `size` bytes, checksums the
            // receiver's kernel would accept, the output interface's addresses.
            expectOneDatagramPerFrame(capture0, [fan0, single, refused0, refused1], count: count, size: size)
            expectOneDatagramPerFrame(capture1, [fan1], count: count, size: size)
            let frames0 = capture0.frames(expect: 0, timeout: 1).compactMap(CapturedDatagram.init).filter { $0.destination[0] == 239 }
            #expect(frames0.allSatisfy { $0.udpChecksumValid && $0.source == [198, 18, 2, 1] }, "rcv0: UDP checksums and rout0's address")

            // Stats count what arrived, whichever path carried it.
            let stats = try daemon.stats()
            for rule in stats.rules {
                #expect(rule.packets == UInt64(count), "\(rule.in): \(rule.packets) packets counted, \(count) sent")
                for output in rule.outputs {
                    #expect(output.packets == UInt64(count) && output.sendErrors == 0, "\(output.out): \(output.packets) packets")
                }
            }
            #expect(stats.drops.total == 0, "drops: \(stats.drops.nonZero)")
            // rin0's own receive counters, which stats reads from the kernel: the frames the XDP
            // program took never reached a worker, yet the device counted every one, and lost none.
            // Bracketed by `ip -s link` before and after (other frames, IGMP or MLD, may add a few).
            let device = try #require(stats.inputDevices?.first { $0.interface == "rin0" }, "stats --json: no input_devices entry for rin0")
            let kernelAfter = try receivedFrames(lab, "rin0")
            #expect(device.problem == nil && kernelBefore <= deviceBefore.received && device.received <= kernelAfter
                    && device.received - deviceBefore.received >= UInt64(3 * count),
                    "rin0 received \(deviceBefore.received) then \(device.received) by stats, \(kernelBefore) then \(kernelAfter) by ip -s link; \(3 * count) sent")
            #expect(device.dropped == 0 && device.missed == 0 && device.overruns == 0 && device.fifo == 0 && device.errors == 0, "rin0: \(device)")
            print("EndToEndXDPTests: rin0's own counters by stats: \(deviceBefore.received) then \(device.received) received "
                  + "(ip -s link: \(kernelBefore) before, \(kernelAfter) after), lost at the device: none")
            let statsText = try daemon.cli(["stats"]).stdout
            #expect(statsText.contains("input device rin0: ") && statsText.contains("lost at the device: none"), "mcrelay stats text: \(statsText)")
            // The Prometheus endpoint's counters too (refreshed once a second).
            let fanID = byName["rin0:\(fan0.input)"]!
            let fanOutput = #"mcrelay_output_sent_packets_total{rule="\#(fanID)",name="",output="rout1:\#(fan1.output):9"}"#
            let fanRule = #"mcrelay_rule_received_packets_total{rule="\#(fanID)",name=""}"#
            let deviceReceived = #"mcrelay_input_device_received_packets_total{interface="rin0"}"#
            let deviceMissed = #"mcrelay_input_device_lost_packets_total{interface="rin0",counter="missed"}"#
            let scraped = try MetricsEndToEndTests.scrape(lab, until: {
                $0[fanRule] == Double(count) && $0[fanOutput] == Double(count) && ($0[deviceReceived] ?? 0) >= Double(device.received)
            })
            #expect(scraped[fanRule] == Double(count) && scraped[fanOutput] == Double(count),
                    "metrics: \(scraped.filter { $0.key.contains(fanID) })")
            #expect((scraped[deviceReceived] ?? 0) >= Double(device.received) && scraped[deviceMissed] == 0,
                    "metrics: \(scraped.filter { $0.key.contains("input_device") })")
        }
    }

    @Test("a rule added and one removed under traffic: the XDP maps follow, no datagram twice or corrupt, counts equal arrivals; a reload adding an output carries the rule's counts")
    func ruleChangesUnderTraffic() throws {
        let kept = Stream(input: "239.1.8.1:5001", output: "239.20.8.1:6001", id: 1)
        let removed = Stream(input: "239.1.8.2:5002", output: "239.20.8.2:6002", id: 2)
        let added = Stream(input: "239.1.8.3:5003", output: "239.20.8.3:6003", id: 3)
        let config: (Lab) throws -> String = { lab in
            try Self.configFile(lab, [("rin0:\(kept.input)", ["rout0:\(kept.output):8"]),
                                      ("rin0:\(removed.input)", ["rout0:\(removed.output):8", "rout1:239.21.8.2:6002:8"])])
        }
        try withXDPRelay("xdp2", config: config) { lab, daemon in
            try daemon.waitSettled()
            let count = 8000, rate = 2000, size = 200
            let receiver = try Receiver(lab, streams: [kept, removed, added], expect: count, size: size, duration: 30, idle: 3)
            var arguments = ["python3", E2E.scripts + "/mcsend.py", "--source", Lab.senderAddress, "--count", String(count),
                             "--rate", String(rate), "--size", String(size), "--ttl", "4", "--source-port", "41000"]
            for stream in [kept, removed, added] { arguments += ["--stream", "\(stream.input):\(stream.id)"] }
            let sender = try ChildProcess(lab.exec(lab.sender, arguments), outputDirectory: lab.directory, name: "send")
            defer { sender.terminate() }
            usleep(1_000_000)
            let addedID = try daemon.addRule("rin0:\(added.input)", ["rout0:\(added.output):8"])
            usleep(1_000_000)
            try daemon.removeRule(try daemon.stats().rules.first { $0.in == "rin0:\(removed.input)" }!.id)
            guard let sent = sender.wait(timeout: .seconds(30)), sent.status == 0 else { throw HarnessError("sender failed: \(sender.stderr)") }
            let arrived = try receiver.finish()
            for stream in [kept, removed, added] {
                let got = arrived.received[stream.output]
                #expect(got?.duplicates == 0 && got?.corrupt == 0, "\(stream.output): \(String(describing: got))")
            }
            #expect(arrived.received[kept.output]?.received == count, "the kept rule lost datagrams across the changes: \(String(describing: arrived.received[kept.output]))")
            let addedGot = arrived.received[added.output]?.received ?? 0
            let removedGot = arrived.received[removed.output]?.received ?? 0
            #expect(addedGot > 0 && addedGot < count, "added rule: \(addedGot) of \(count) (it started mid-stream)")
            #expect(removedGot > 0 && removedGot < count, "removed rule: \(removedGot) of \(count) (it stopped mid-stream)")
            let stats = try daemon.stats()
            #expect(!stats.rules.contains { $0.in == "rin0:\(removed.input)" }, "removed rule still listed")
            let addedStats = try #require(stats.rules.first { $0.id == addedID })
            #expect(addedStats.packets == UInt64(addedGot) && addedStats.outputs.first?.packets == UInt64(addedGot),
                    "added rule counted \(addedStats.packets), \(addedGot) arrived")
            let keptStats = try #require(stats.rules.first { $0.in == "rin0:\(kept.input)" })
            #expect(keptStats.packets == UInt64(count), "kept rule counted \(keptStats.packets) across two plan changes, \(count) sent")
            #expect(stats.dataPath?.rules.first { $0.name == addedID }?.path == "xdp", "added rule's path: \(stats.dataPath?.lines ?? [])")
            // A reload that gives the kept rule a second output: its count and its first
            // output's carry over into the new plan's maps, the new output starts at zero.
            _ = try Self.configFile(lab, [("rin0:\(kept.input)", ["rout0:\(kept.output):8", "rout1:239.21.8.1:6011:8"])])
            daemon.process.signal(SIGHUP)
            #expect(try waitUntil(timeout: .seconds(5)) { try daemon.stats().rules.first { $0.in == "rin0:\(kept.input)" }?.outputs.count == 2 })
            let reloaded = try #require(try daemon.stats().rules.first { $0.in == "rin0:\(kept.input)" })
            #expect(reloaded.packets == UInt64(count) && reloaded.outputs.map(\.packets) == [UInt64(count), 0],
                    "after the reload: \(reloaded.packets) accepted, outputs \(reloaded.outputs.map(\.packets))")
            print("EndToEndXDPTests: under traffic (\(count) per stream at \(rate) pps): kept \(arrived.received[kept.output]?.received ?? -1), added \(addedGot), removed \(removedGot)")
        }
    }

    @Test("an input whose driver has no native XDP (macvlan) stays on the packet path, reported with the reason, and forwards")
    func inputWithoutNativeXDP() throws {
        let stream = Stream(input: "239.1.9.1:5001", output: "239.20.9.1:6001", id: 1)
        // A rule on rin0 too, so the program runs on rin0 beside mv0.
        let config: (Lab) throws -> String = { lab in try Self.configFile(lab, [("rin0:239.1.9.9:5009", ["rout0:239.20.9.9:6009:8"])]) }
        try withXDPRelay("xdp3", config: config) { lab, daemon in
            // mv0 on rin0 gets a copy of rin0's multicast; the program on rin0 has no rule for
            // the group and passes the frames to the kernel, which hands them to mv0.
            try lab.must(lab.relay, ["ip", "link", "add", "mv0", "link", "rin0", "type", "macvlan", "mode", "bridge"])
            try lab.must(lab.relay, ["ip", "addr", "add", "198.18.1.3/24", "dev", "mv0"])
            try lab.must(lab.relay, ["ip", "link", "set", "mv0", "up"])
            let id = try daemon.addRule("mv0:\(stream.input)", ["rout0:\(stream.output):8"])
            try daemon.waitSettled()
            let paths = try #require(try daemon.stats().dataPath)
            let rule = paths.rules.first { $0.name == id }
            #expect(rule?.path == "packet" && rule?.reason?.contains("native XDP attach failed") == true, "\(paths.lines)")
            let input = paths.inputs.first { $0.name == "mv0" }
            #expect(input?.path == "packet" && input?.reason?.contains("native XDP attach failed") == true, "\(paths.lines)")
            #expect(try !xdpAttached(lab, "mv0"), "mv0 has an XDP program")
            #expect(daemon.process.stderr.contains("mv0: native XDP attach failed"), "no log line for the failed attach")
            let count = 1000
            let receiver = try Receiver(lab, streams: [stream], expect: count, size: 200)
            try send(lab, streams: [stream], count: count, rate: 2000, size: 200)
            expectDelivered(try receiver.finish(), [stream], count: count, ttl: 8)
            let stats = try #require(try daemon.stats().rules.first { $0.id == id })
            #expect(stats.packets == UInt64(count) && stats.outputs.first?.packets == UInt64(count), "counted \(stats.packets)")
            print("EndToEndXDPTests: macvlan input: \(input?.reason ?? "-"); \(count) sent, \(stats.packets) counted")
        }
    }

    @Test("receivers' veth ends at the defaults (GRO off): the rule stays on the packet path, reported, and forwards; GRO on there moves it to XDP")
    func peerWithoutGRO() throws {
        let stream = Stream(input: "239.1.10.1:5001", output: "239.20.10.1:6001", id: 1)
        let config: (Lab) throws -> String = { lab in try Self.configFile(lab, [("rin0:\(stream.input)", ["rout0:\(stream.output):8"])]) }
        try withXDPRelay("xdp4", config: config, receiverGRO: false, attachedAtStart: false) { lab, daemon in
            try daemon.waitSettled()
            let before = try #require(try daemon.stats().dataPath)
            #expect(before.rules.first?.path == "packet" && before.rules.first?.reason?.contains("lack ndo-xmit") == true, "\(before.lines)")
            #expect(before.warnings.contains { $0.contains("rout0 cannot take XDP redirects") }, "\(before.lines)")
            let count = 500
            var receiver = try Receiver(lab, streams: [stream], expect: count, size: 200)
            try send(lab, streams: [stream], count: count, rate: 2000, size: 200)
            expectDelivered(try receiver.finish(), [stream], count: count)

            // Test-host setting: GRO on rcv0 now; the daemon sees rout0 take redirects (its 1 s refresh).
            try lab.must(lab.receiver, ["ethtool", "-K", "rcv0", "gro", "on"])
            let moved = try waitUntil(timeout: .seconds(5)) { try daemon.stats().dataPath?.rules.first?.path == "xdp" }
            let after = try daemon.stats().dataPath?.lines ?? []
            #expect(moved, "rule still on the packet path after GRO on rcv0: \(after)")
            #expect(try xdpAttached(lab, "rin0"), "rin0 has no XDP program once its rule is carried")
            let redirectedBefore = try redirected(lab)
            receiver = try Receiver(lab, streams: [stream], expect: count, size: 200, startSeq: count)
            try send(lab, streams: [stream], count: count, rate: 2000, size: 200, startSeq: count)
            expectDelivered(try receiver.finish(), [stream], count: count)
            let carried = try redirected(lab) - redirectedBefore
            #expect(carried == count, "XDP redirected \(carried) of \(count) once GRO was on")
            let stats = try #require(try daemon.stats().rules.first)
            #expect(stats.packets == UInt64(2 * count) && stats.outputs.first?.packets == UInt64(2 * count),
                    "counted \(stats.packets) across the move from the packet path to XDP, \(2 * count) sent")
            print("EndToEndXDPTests: GRO off at rcv0: \(count) via the packet path; GRO on: \(carried) redirected by XDP; counted \(stats.packets)")
        }
    }

    @Test("--xdp-mode generic: rin0 in generic XDP mode, the rule reported on the XDP path, and it forwards to a veth whose peer has GRO off (the veth default)")
    func genericMode() throws {
        let stream = Stream(input: "239.1.11.1:5001", output: "239.20.11.1:6001", id: 1)
        let config: (Lab) throws -> String = { lab in try Self.configFile(lab, [("rin0:\(stream.input)", ["rout0:\(stream.output):8"])]) }
        try withXDPRelay("xdp5", config: config, arguments: ["--xdp-mode", "generic"], receiverGRO: false) { lab, daemon in
            try daemon.waitSettled()
            let paths = try #require(try daemon.stats().dataPath)
            #expect(paths.mode == "xdp generic" && paths.rules.first?.path == "xdp", "\(paths.lines)")
            #expect(try lab.must(lab.relay, ["ip", "link", "show", "rin0"]).stdout.contains("xdpgeneric"), "rin0 not in generic XDP mode")
            let count = 1000
            let receiver = try Receiver(lab, streams: [stream], expect: count, size: 200)
            try send(lab, streams: [stream], count: count, rate: 2000, size: 200)
            expectDelivered(try receiver.finish(), [stream], count: count, ttl: 8)
            let stats = try #require(try daemon.stats().rules.first)
            #expect(stats.packets == UInt64(count) && stats.outputs.first?.packets == UInt64(count), "counted \(stats.packets)")
        }
    }

    @Test("the worker killed and the output interface flapped: XDP forwarding goes on, counts survive the worker's restart")
    func workerKillAndInterfaceFlap() throws {
        let stream = Stream(input: "239.1.12.1:5001", output: "239.20.12.1:6001", id: 1)
        let config: (Lab) throws -> String = { lab in try Self.configFile(lab, [("rin0:\(stream.input)", ["rout0:\(stream.output):8"])]) }
        try withXDPRelay("xdp6", config: config, restartsExpected: true) { lab, daemon in
            try daemon.waitSettled()
            let count = 500
            func round(_ number: Int) throws { try forwardRound(lab, stream, number, count: count) }
            try round(0)
            let pid = try #require(try daemon.stats().workers.first?.pid)
            Glibc.kill(pid, SIGKILL)
            let restarted = try waitUntil(timeout: .seconds(10)) {
                let workers = try daemon.stats().workers
                return workers.first?.restarts == 1 && workers.first?.alive == true && workers.first?.pid != pid
            }
            let workers = try daemon.stats().workers
            #expect(restarted, "worker not restarted: \(workers)")
            try daemon.waitSettled()
            #expect(try xdpAttached(lab, "rin0"), "rin0 lost its XDP program with the worker")
            try round(1)
            try lab.must(lab.relay, ["ip", "link", "set", "rout0", "down"])
            try lab.must(lab.relay, ["ip", "link", "set", "rout0", "up"])
            try lab.waitForCarrier(lab.relay, "rout0")
            try daemon.waitSettled()
            let redirectedBefore = try redirected(lab)
            try round(2)
            #expect(try redirected(lab) - redirectedBefore == count, "XDP did not carry the round after the flap")
            let stats = try #require(try daemon.stats().rules.first)
            #expect(stats.packets == UInt64(3 * count) && stats.outputs.first?.packets == UInt64(3 * count),
                    "counted \(stats.packets) over three rounds of \(count) (a worker restart and a flap between them)")
            #expect(try daemon.stats().dataPath?.rules.first?.path == "xdp")
        }
    }

    /// A container runtime or a VM manager re-creates its veth on restart: same name, new
    /// ifindex. The program's BPF link went with the old device, so the daemon must attach to
    /// the new one (and fill the rule keys, which hold the ifindex) when it appears.
    @Test("the input re-created under the daemon (veth deleted and added again, a new ifindex): the program attaches to the new rin0 and XDP carries the stream again")
    func inputRecreated() throws {
        let stream = Stream(input: "239.1.14.1:5001", output: "239.20.14.1:6001", id: 1)
        let config: (Lab) throws -> String = { lab in try Self.configFile(lab, [("rin0:\(stream.input)", ["rout0:\(stream.output):8"])]) }
        try withXDPRelay("xdp8", config: config) { lab, daemon in
            try daemon.waitSettled()
            let count = 500
            func round(_ number: Int) throws { try forwardRound(lab, stream, number, count: count, redirected: count) }
            try round(0)
            let before = try lab.must(lab.relay, ["cat", "/sys/class/net/rin0/ifindex"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            try lab.must(lab.sender, ["ip", "link", "del", "snd0"])  // takes its peer rin0 with it
            let gone = try waitUntil(timeout: .seconds(5)) {
                try run(lab.exec(lab.relay, ["ip", "link", "show", "rin0"]), in: lab.directory, timeout: .seconds(10)).status != 0
            }
            #expect(gone, "rin0 still there after its peer was deleted")
            try lab.must(lab.sender, ["ip", "link", "add", "snd0", "type", "veth", "peer", "name", "rin0", "netns", lab.relay])
            try lab.must(lab.sender, ["ip", "addr", "add", "198.18.1.1/24", "dev", "snd0"])
            try lab.must(lab.relay, ["ip", "addr", "add", "198.18.1.2/24", "dev", "rin0"])
            try lab.must(lab.sender, ["ip", "link", "set", "snd0", "up"])
            try lab.must(lab.relay, ["ip", "link", "set", "rin0", "up"])
            try lab.must(lab.sender, ["ip", "route", "replace", "239.0.0.0/8", "dev", "snd0"])
            try lab.waitForCarrier(lab.sender, "snd0")
            try lab.waitForCarrier(lab.relay, "rin0")
            let after = try lab.must(lab.relay, ["cat", "/sys/class/net/rin0/ifindex"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(after != before, "the re-created rin0 kept ifindex \(before): the test would not show a re-attach")
            let attached = try waitUntil(timeout: .seconds(10)) { try xdpAttached(lab, "rin0") }
            #expect(attached, "the daemon did not attach its program to the re-created rin0 (ifindex \(after)); see \(lab.directory)/daemon.err")
            try daemon.waitSettled()
            try round(1)
            let stats = try #require(try daemon.stats().rules.first)
            #expect(stats.packets == UInt64(2 * count) && stats.outputs.first?.packets == UInt64(2 * count),
                    "counted \(stats.packets) over two rounds of \(count), the input re-created between them")
            #expect(try daemon.stats().dataPath?.rules.first?.path == "xdp")
            print("EndToEndXDPTests: rin0 re-created (ifindex \(before) -> \(after)): attached again, \(count) of \(count) redirected before and after")
        }
    }

    /// The flight recorder reads the workers' frames; a frame the program redirected never
    /// reaches a worker. So while a recording runs every rule is on the packet path (stats say
    /// why), the recording holds every frame sent and replays to them, and the program carries
    /// the rules again when it stops.
    @Test("recording under --data-path xdp: the rules move to the packet path while the flight recorder records (reported with the reason), the recording holds and replays every frame, and XDP carries again after `record stop`")
    func recordingMovesRulesToThePacketPath() throws {
        let stream = Stream(input: "239.1.15.1:5001", output: "239.20.15.1:6001", id: 1)
        let config: (Lab) throws -> String = { lab in try Self.configFile(lab, [("rin0:\(stream.input)", ["rout0:\(stream.output):8"])]) }
        try withXDPRelay("xdp9", config: config) { lab, daemon in
            try daemon.waitSettled()
            let count = 500
            func round(_ number: Int, redirected want: Int) throws { try forwardRound(lab, stream, number, count: count, redirected: want) }
            func rulePath() throws -> (path: String, reason: String) {
                let entry = try daemon.stats().dataPath?.rules.first
                return (entry?.path ?? "none", entry?.reason ?? "")
            }
            try round(0, redirected: count)
            let recording = lab.directory + "/xdp-recording"
            let started = try daemon.cli(["record", "start", recording])
            #expect(started.status == 0, "\(started)")
            let moved = try waitUntil(timeout: .seconds(5)) { try rulePath().path == "packet" && !xdpAttached(lab, "rin0") }
            let during = try rulePath(), attachedDuring = try xdpAttached(lab, "rin0")
            #expect(moved && during.reason.contains("flight recorder"), "while recording: rule on \(during.path) (\(during.reason)), rin0 attached \(attachedDuring)")
            try round(1, redirected: 0)
            let recorded = try waitUntil(timeout: .seconds(5)) {
                let status = try daemon.cli(["record", "status", "--json"])
                guard status.status == 0 else { return false }
                return try JSONDecoder().decode(RecordingView.self, from: Data(status.stdout.utf8)).frames == UInt64(count)
            }
            let recordStatus = try daemon.cli(["record", "status"]).stdout
            #expect(recorded, "the recording does not hold the \(count) frames sent while it ran: \(recordStatus)")
            let stopped = try daemon.cli(["record", "stop"])
            #expect(stopped.status == 0, "\(stopped)")
            let back = try waitUntil(timeout: .seconds(5)) { try rulePath().path == "xdp" && xdpAttached(lab, "rin0") }
            let after = try rulePath(), attachedAfter = try xdpAttached(lab, "rin0")
            #expect(back, "after `record stop`: rule on \(after.path) (\(after.reason)), rin0 attached \(attachedAfter)")
            try daemon.waitSettled()
            try round(2, redirected: count)
            let stats = try #require(try daemon.stats().rules.first)
            #expect(stats.packets == UInt64(3 * count) && stats.outputs.first?.packets == UInt64(3 * count),
                    "counted \(stats.packets) over three rounds of \(count) (XDP, packet path while recording, XDP)")
            #expect(daemon.process.stderr.contains("every rule on the packet path while recording"), "the log does not say why the rules moved")
            // The recording replays to the frames the relay sent while it ran.
            let out = lab.directory + "/xdp-replay"
            let replay = try run([E2E.binary, "sim", "replay", "--recording", recording, "--out-dir", out], in: lab.directory, timeout: .seconds(60))
            #expect(replay.status == 0, "\(replay)")
            var replayed = 0
            let reader = try PcapReader(path: out + "/rout0.pcap")
            while try reader.next() != nil { replayed += 1 }
            #expect(replayed == count, "the replay sent \(replayed) frames on rout0, the relay \(count) while recording")
            print("EndToEndXDPTests: recording under xdp: \(count) by XDP, \(count) on the packet path while recording (all recorded, \(replayed) replayed), \(count) by XDP after")
        }
    }

    @Test("--user nobody with --data-path xdp: after the drop, a rule added attaches the program, fills the maps and the devmap, and forwards by XDP")
    func privilegeDrop() throws {
        let stream = Stream(input: "239.1.13.1:5001", output: "239.20.13.1:6001", id: 1)
        let fan = Stream(input: "239.1.13.2:5002", output: "239.21.13.2:6002", id: 2)
        // No rules at start: everything XDP does happens after the daemon dropped to nobody
        // with CAP_NET_RAW and CAP_NET_ADMIN only.
        try withXDPRelay("xdp7", arguments: ["--user", "nobody"], attachedAtStart: false) { lab, daemon in
            #expect(daemon.process.stderr.contains("dropped privileges: running as user nobody"), "no privilege drop logged")
            try daemon.addRule("rin0:\(stream.input)", ["rout0:\(stream.output):8"])
            try daemon.addRule("rin0:\(fan.input)", ["rout1:\(fan.output):8"])
            try daemon.waitSettled()
            let paths = try #require(try daemon.stats().dataPath)
            #expect(paths.rules.allSatisfy { $0.path == "xdp" } && paths.rules.count == 2, "\(paths.lines)")
            #expect(try xdpAttached(lab, "rin0"), "rin0 not attached after the drop")
            let count = 500
            let receiver0 = try Receiver(lab, streams: [stream], expect: count, size: 200, name: "recv0")
            let receiver1 = try Receiver(lab, address: Lab.receiverAddress1, streams: [fan], expect: count, size: 200, name: "recv1")
            let redirectedBefore = try redirected(lab)
            try send(lab, streams: [stream, fan], count: count, rate: 2000, size: 200)
            expectDelivered(try receiver0.finish(), [stream], count: count, ttl: 8)
            expectDelivered(try receiver1.finish(), [fan], count: count, ttl: 8)
            #expect(try redirected(lab) - redirectedBefore == 2 * count, "not all redirected by XDP")
        }
    }
}

extension EndToEndXDPTests {
    /// RelayEndToEndTests.malformedFrames on the XDP path: the injector's five kinds of broken
    /// frame (50 each) go to the group of a rule the program carries. The program must pass
    /// them to the kernel (it forwards only frames Forwarder would), where the workers' packet
    /// path counts each by its reason; the good stream beside them is redirected by XDP, every
    /// datagram once, and nothing else reaches the output.
    @Test("malformed frames to an XDP-carried group: the program passes them, the packet path counts each by reason, none forwarded; the good stream all by XDP")
    func malformedFrames() throws {
        let stream = Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)
        let config: (Lab) throws -> String = { lab in try Self.configFile(lab, [("rin0:\(stream.input)", ["rout0:\(stream.output)"])]) }
        try withXDPRelay("xdpj", config: config) { lab, daemon in
            try daemon.waitSettled()
            let paths = try #require(try daemon.stats().dataPath, "stats --json has no data_path with --data-path xdp")
            #expect(paths.rules.first?.path == "xdp", "the rule's path: \(paths.lines)")
            let capture = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
            defer { capture.close() }
            let count = 500, size = 200
            let receiver = try Receiver(lab, streams: [stream], expect: count, size: size)
            let redirectedBefore = try redirected(lab)
            let injected = try lab.must(lab.sender, ["python3", "-c", RelayEndToEndTests.malformedFrameInjector, "snd0", "50"])
            #expect(injected.stdout.contains("sent 250"), "injector: \(injected)")
            try send(lab, streams: [stream], count: count, rate: 500, size: size)
            expectDelivered(try receiver.finish(), [stream], count: count)
            let carried = try redirected(lab) - redirectedBefore
            #expect(carried == count, "rin0 rx_queue_0_xdp_redirect grew by \(carried): \(count) good datagrams sent beside 250 malformed")
            expectOneDatagramPerFrame(capture, [stream], count: count, size: size)
            let stats = try daemon.stats()
            for reason in ["bad_checksum", "truncated", "fragment", "bad_length", "bad_ipv4_header"] {
                let counted = stats.drops.nonZero.first { $0.reason.description == reason }?.count ?? 0
                #expect(counted == 50, "\(reason): the packet path counted \(counted) of 50 injected")
            }
            #expect(stats.rules.first?.packets == UInt64(count) && stats.rules.first?.outputs.first?.packets == UInt64(count),
                    "counted: \(stats.rules.map { "\($0.in) \($0.packets)" })")
            print("EndToEndXDPTests: 250 malformed injected, dropped by reason on the packet path: "
                  + stats.drops.nonZero.map { "\($0.reason) \($0.count)" }.joined(separator: ", ")
                  + "; good stream \(count) sent, XDP redirected \(carried)")
        }
    }
}
