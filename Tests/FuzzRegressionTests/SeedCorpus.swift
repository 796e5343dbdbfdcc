import Foundation
import FuzzChecks
import PcapFile
@testable import RelayCore
import Testing

/// Writes the seed corpora in `Fuzz/corpus/` (committed). Off by default; regenerate with
///
///     FUZZ_WRITE_SEEDS=1 swift test --scratch-path ... --filter SeedCorpus
///
/// Seeds are the real captures in `traces/real/` split into frames, hand-built frames of every
/// link type that do and do not match a rule, small capture files (valid, truncated, lying
/// headers) and valid and invalid config files.
@Suite struct SeedCorpus {
    static let enabled = ProcessInfo.processInfo.environment["FUZZ_WRITE_SEEDS"] == "1"
    static let repository = FuzzRegressionTests.fuzzRoot.deletingLastPathComponent()

    @Test(.enabled(if: SeedCorpus.enabled)) func writeSeeds() throws {
        try write("frame", frameSeeds())
        try write("pcap", pcapSeeds())
        try write("config", configSeeds())
        try write("control", controlSeeds())
        try write("events", eventSeeds())
        try write("linkcounters", linkCounterSeeds())
    }

    // MARK: rtnetlink link counters (4 bytes of asked ifindex, then the kernel's answer)

    func linkCounterSeeds() -> [(String, [UInt8])] {
        func asked(_ index: Int32, _ answer: [UInt8]) -> [UInt8] { NetlinkBytes.le32(UInt32(bitPattern: index)) + answer }
        let counters = LinkCounters.Receive(packets: 1_000_000, bytes: 64_000_000, errors: 1, dropped: 2, overruns: 3, fifo: 4, missed: 5)
        let rin0 = LinkCounters.record(ifindex: 7, name: "rin0", counters, sequence: 1)
        let other = LinkCounters.record(ifindex: 3, name: "eth0", counters, sequence: 1)
        func error(_ code: Int32) -> [UInt8] {
            NetlinkBytes.header(length: 36, type: 2, flags: 0, sequence: 1) + NetlinkBytes.le32(UInt32(bitPattern: code))
                + LinkCounters.request(ifindex: 7, sequence: 1)
        }
        // IFLA_STATS64 cut to 15 counters, one short of rx_missed_errors
        var short = rin0
        short.replaceSubrange((rin0.count - 25 * 8 - 4)..., with: NetlinkBytes.attribute(23, [UInt8](repeating: 0, count: 15 * 8)))
        short.replaceSubrange(0..<4, with: NetlinkBytes.le32(UInt32(short.count)))
        return [
            ("rin0", asked(7, rin0)),
            ("other-device", asked(7, other)),
            ("other-then-asked", asked(7, other + rin0)),
            ("enodev", asked(7, error(-19))),
            ("ack-only", asked(7, error(0))),
            ("error-code-int32-min", asked(7, error(Int32.min))),
            ("stats64-short", asked(7, short)),
            ("truncated", asked(7, Array(rin0.prefix(40)))),
            ("empty", asked(7, [])),
            ("zero-counters", asked(7, LinkCounters.record(ifindex: 7, name: "rin0", .init(), sequence: 1))),
            ("rin0-then-done", asked(7, rin0 + NAPIThreadDump.doneMessage(sequence: 1))),
            ("max-counters", asked(-1, LinkCounters.record(ifindex: -1, name: "x", .init(packets: .max, bytes: .max, errors: .max,
                dropped: .max, overruns: .max, fifo: .max, missed: .max), sequence: 1))),
        ]
    }

    // MARK: simulator events files

    func eventSeeds() -> [(String, [UInt8])] {
        let rule = #"{"name": "cam2", "in": "eth0:239.1.1.2:5002", "out": ["eth1:239.10.1.2:6002"]}"#
        let files: [(String, String)] = [
            ("every-kind", """
                # one of each
                {"at_ms": 500, "event": "rule_add", "rule": \(rule)}
                {"at_ms": 800, "event": "rule_remove", "rule": "cam2"}
                {"at_ms": 900, "event": "iface_down", "iface": "eth0"}
                {"at_ms": 950, "event": "iface_up", "iface": "eth0"}
                {"at_ms": 1000, "event": "worker_crash", "worker": 1}
                {"at_ms": 1200, "event": "config_reload", "rules": [\(rule)]}

                """),
            ("fractional-ms", #"{"at_ms": 0.000001, "event": "iface_up", "iface": "eth0"}"#),
            ("out-of-order", "{\"at_ms\": 9, \"event\": \"iface_up\", \"iface\": \"a\"}\n{\"at_ms\": 3, \"event\": \"iface_down\", \"iface\": \"a\"}\n"),
            ("same-time", "{\"at_ms\": 5, \"event\": \"iface_down\", \"iface\": \"a\"}\n{\"at_ms\": 5, \"event\": \"iface_up\", \"iface\": \"a\"}\n"),
            ("empty-reload", #"{"at_ms": 1, "event": "config_reload", "rules": []}"#),
            ("blank-and-comments", "\n# nothing\n   \n"),
            ("negative-time", #"{"at_ms": -1, "event": "iface_up", "iface": "eth0"}"#),
            ("unknown-event", #"{"at_ms": 1, "event": "reboot"}"#),
            ("bad-rule", #"{"at_ms": 1, "event": "rule_add", "rule": {"in": "eth0:10.0.0.1:5", "out": []}}"#),
            ("bad-iface", #"{"at_ms": 1, "event": "iface_down", "iface": "a/b"}"#),
            ("worker-negative", #"{"at_ms": 1, "event": "worker_crash", "worker": -2}"#),
            ("missing-at", #"{"event": "iface_up", "iface": "eth0"}"#),
            ("not-json", "at 5ms: iface_up eth0"),
            ("array-line", "[1, 2]"),
            // As the flight recorder writes them (mcrelay daemon --record).
            ("join-fail", """
                {"at_ms":4.329631,"event":"iface_up","iface":"rin0"}
                {"at_ms":78.558197,"event":"rule_add","rule":{"in":"rin0:239.1.1.1:5001","name":"cam1","out":["rout0:239.10.1.1:6001:64"]}}
                {"at_ms":78.558197,"event":"join_fail","iface":"rin0","group":"239.1.1.1","errno":"ENOBUFS"}
                {"at_ms":90,"event":"join_fail","iface":"rin0","group":"239.1.1.1","source":"198.18.1.1","errno":22}

                """),
        ]
        return files.map { ($0.0, Array($0.1.utf8)) }
    }

    func write(_ target: String, _ seeds: [(String, [UInt8])]) throws {
        let folder = FuzzRegressionTests.fuzzRoot.appendingPathComponent("corpus/\(target)")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var seen = Set<[UInt8]>()
        for (name, bytes) in seeds where seen.insert(bytes).inserted {
            try Data(bytes).write(to: folder.appendingPathComponent(name))
        }
    }

    // MARK: frames

    func realFrames() throws -> [(String, PcapLinkType, [UInt8])] {
        var frames: [(String, PcapLinkType, [UInt8])] = []
        for file in ["tcpreplay-test", "tcpreplay-fragroute"] {
            let path = Self.repository.appendingPathComponent("traces/real/\(file).pcap").path
            let (link, records) = try PcapReader.readAll(path: path)
            // Distinct shapes only: one frame per (EtherType/VLAN, IP protocol, length bucket).
            var shapes = Set<[UInt8]>()
            for (index, record) in records.enumerated() {
                let b = record.bytes
                let shape = Array(b[12..<min(b.count, 24)]) + [UInt8(min(b.count / 256, 255))]
                guard shapes.insert(shape).inserted, b.count <= 600 else { continue }
                frames.append(("\(file)-\(index)", link, b))
            }
        }
        return frames
    }

    func frameSeeds() throws -> [(String, [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        for (name, _, bytes) in try realFrames().prefix(30) {
            seeds.append(("real-\(name)", FrameFuzzInput.encode(link: .ethernet, ingress: 0, rules: [], frame: bytes)))
        }
        let group = IPv4Address(239, 1, 1, 1)
        let source = IPv4Address(198, 18, 1, 1)
        let any = FrameFuzzInput.RuleSeed(interface: 0, group: group, port: 5001, outputs: 2)
        let specific = FrameFuzzInput.RuleSeed(interface: 0, group: group, port: 5001, source: source, outputs: 4)
        let otherSource = FrameFuzzInput.RuleSeed(interface: 0, group: group, port: 5001, source: IPv4Address(198, 18, 9, 9))
        let elsewhere = FrameFuzzInput.RuleSeed(interface: 3, group: group, port: 5001, outputs: 3)
        let otherPort = FrameFuzzInput.RuleSeed(interface: 1, group: group, port: 5002)
        for link in FrameFuzzInput.links {
            let name = "\(link)"
            func seed(_ label: String, rules: [FrameFuzzInput.RuleSeed], ingress: Int = 0, _ frame: SeedFrame) {
                var frame = frame
                frame.link = link
                seeds.append(("\(name)-\(label)", FrameFuzzInput.encode(link: link, ingress: ingress, rules: rules, frame: frame.build())))
            }
            seed("any-source", rules: [any], SeedFrame())
            seed("specific-wins", rules: [any, specific, otherSource], SeedFrame())
            seed("other-source", rules: [otherSource, otherPort], SeedFrame())
            seed("not-read-here", rules: [elsewhere], SeedFrame())
            seed("other-ingress", rules: [any, otherPort], ingress: 1, SeedFrame())
            seed("no-rule", rules: [], SeedFrame())
            seed("ip-options", rules: [any], SeedFrame(ipOptions: [1, 1, 1, 0]))
            seed("empty-payload", rules: [any], SeedFrame(payload: []))
            seed("fragment", rules: [any], SeedFrame(flagsAndOffset: 0x2000))
            seed("tcp", rules: [any], SeedFrame(protocolNumber: 6))
            seed("unicast", rules: [any], SeedFrame(destination: IPv4Address(198, 18, 2, 2)))
            seed("bad-checksum", rules: [any], SeedFrame(corruptChecksum: true))
            seed("udp-length-lies", rules: [any], SeedFrame(udpLengthDelta: 5))
            seed("padded", rules: [any], SeedFrame(padding: 18))
            seed("cut-short", rules: [any], SeedFrame(cut: 3))
            seed("link-header-only", rules: [any], SeedFrame(cut: 40))
            seed("one-output", rules: [FrameFuzzInput.RuleSeed(interface: 2, group: group, port: 5001)], ingress: 2, SeedFrame())
            // Range inputs: /8 any port (code 4), /16 port 5001 (code 12), the exact group any port.
            let wide = FrameFuzzInput.RuleSeed(interface: 0, group: IPv4Address(239, 0, 0, 0), port: 0, rangeCode: 4)
            let narrow = FrameFuzzInput.RuleSeed(interface: 0, group: IPv4Address(239, 1, 0, 0), port: 5001, outputs: 2, rangeCode: 12)
            let anyPort = FrameFuzzInput.RuleSeed(interface: 0, group: group, port: 0, outputs: 3)
            seed("range-longest-prefix", rules: [wide, narrow], SeedFrame())
            seed("range-any-port-exact", rules: [wide, narrow, anyPort], SeedFrame())
            seed("range-exact-wins", rules: [wide, narrow, anyPort, specific], SeedFrame())
            seed("three-outputs", rules: [FrameFuzzInput.RuleSeed(interface: 1, group: group, port: 5001, source: source, outputs: 3)], ingress: 1, SeedFrame())
        }
        seeds.append(("ethernet-vlan", FrameFuzzInput.encode(link: .ethernet, ingress: 0, rules: [any], frame: SeedFrame(vlanTags: [0x8100]).build())))
        seeds.append(("ethernet-qinq", FrameFuzzInput.encode(link: .ethernet, ingress: 0, rules: [any], frame: SeedFrame(vlanTags: [0x88A8, 0x8100]).build())))
        seeds.append(("ethernet-three-tags", FrameFuzzInput.encode(link: .ethernet, ingress: 0, rules: [any], frame: SeedFrame(vlanTags: [0x88A8, 0x8100, 0x8100]).build())))
        seeds.append(("sll-outgoing", FrameFuzzInput.encode(link: .linuxCooked, ingress: 0, rules: [any], frame: SeedFrame(link: .linuxCooked, outgoing: true).build())))
        seeds.append(("sll2-outgoing", FrameFuzzInput.encode(link: .linuxCooked2, ingress: 0, rules: [any], frame: SeedFrame(link: .linuxCooked2, outgoing: true).build())))
        seeds += ipv6FrameSeeds()
        return seeds
    }

    /// IPv6 frames (the relay's own builder, then one field changed) against IPv6 rules.
    func ipv6FrameSeeds() -> [(String, [UInt8])] {
        let groupBits: UInt32 = 0x8000_0001, sourceBits: UInt32 = 0x10
        let group = FrameFuzzInput.RuleSeed.ipv6Group(groupBits), source = FrameFuzzInput.RuleSeed.ipv6Source(sourceBits)
        let any = FrameFuzzInput.RuleSeed(interface: 0, group: IPv4Address(groupBits), port: 5001, outputs: 2, ipv6: true, ipv6Outputs: true)
        let specific = FrameFuzzInput.RuleSeed(interface: 0, group: IPv4Address(groupBits), port: 5001, source: IPv4Address(sourceBits),
                                               outputs: 4, ipv6: true)
        let v4 = FrameFuzzInput.RuleSeed(interface: 0, group: IPv4Address(239, 1, 1, 1), port: 5001)
        func frame(_ change: (inout [UInt8]) -> Void = { _ in }, extensionHeader: UInt8? = nil) -> [UInt8] {
            var bytes = EgressFrame.bytes(.init(sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), source: .v6(source), destination: .v6(group),
                                                sourcePort: 40000, destinationPort: 5001, ttl: 5), payload: Array("seed payload".utf8))
            if let type = extensionHeader {
                // An 8-byte extension header (PadN) between the IPv6 header and UDP.
                bytes.insert(contentsOf: [17, 0, 1, 4, 0, 0, 0, 0], at: 54)
                bytes[20] = type
                let length = Int(bytes[18]) << 8 | Int(bytes[19]) + 8
                bytes[18] = UInt8(length >> 8); bytes[19] = UInt8(length & 0xFF)
            }
            change(&bytes)
            return bytes
        }
        func seed(_ label: String, rules: [FrameFuzzInput.RuleSeed], _ bytes: [UInt8]) -> (String, [UInt8]) {
            ("ipv6-\(label)", FrameFuzzInput.encode(link: .ethernet, ingress: 0, rules: rules, frame: bytes))
        }
        return [
            seed("any-source", rules: [any], frame()),
            seed("specific-wins", rules: [any, specific], frame()),
            seed("beside-ipv4", rules: [v4, any], frame()),
            seed("hop-by-hop", rules: [any], frame(extensionHeader: 0)),
            seed("destination-options", rules: [any], frame(extensionHeader: 60)),
            seed("fragment", rules: [any], frame(extensionHeader: 44)),
            seed("hop-by-hop-not-first", rules: [any], frame({ $0[54] = 0 }, extensionHeader: 60)),
            seed("icmpv6", rules: [any], frame { $0[20] = 58 }),
            seed("zero-checksum", rules: [any], frame { $0[60] = 0; $0[61] = 0 }),
            seed("jumbo-length", rules: [any], frame { $0[18] = 0; $0[19] = 0 }),
            seed("cut-short", rules: [any], Array(frame().dropLast(3))),
            seed("unicast", rules: [any], frame { $0[38] = 0x20 }),
            seed("version-4", rules: [any], frame { $0[14] = 0x45 }),
            seed("no-rule", rules: [v4], frame()),
        ]
    }

    // MARK: capture files

    func pcapSeeds() throws -> [(String, [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        let fragroute = try [UInt8](Data(contentsOf: Self.repository.appendingPathComponent("traces/real/tcpreplay-fragroute.pcap")))
        seeds.append(("real-fragroute", fragroute))
        // The first records of the larger capture (microsecond magic, Ethernet, VLAN, IPv6, ...).
        let test = try [UInt8](Data(contentsOf: Self.repository.appendingPathComponent("traces/real/tcpreplay-test.pcap")))
        seeds.append(("real-test-head", recordsPrefix(test, records: 12)))

        for link in [PcapLinkType.ethernet, .linuxCooked, .linuxCooked2, .rawIP] {
            let frameLink: LinkType = switch link {
            case .ethernet: .ethernet
            case .linuxCooked: .linuxCooked
            case .linuxCooked2: .linuxCooked2
            case .rawIP: .rawIP
            }
            let frames = [SeedFrame(link: frameLink), SeedFrame(link: frameLink, payload: []),
                          SeedFrame(link: frameLink, flagsAndOffset: 0x2000)].map { $0.build() }
            let file = try writtenCapture(link: link, frames: frames)
            seeds.append(("nano-\(link.dlt)", file))
            seeds.append(("truncated-record-\(link.dlt)", Array(file.dropLast(3))))
        }
        let ethernet = try writtenCapture(link: .ethernet, frames: [SeedFrame().build(), SeedFrame(padding: 18).build()])
        seeds.append(("truncated-file-header", Array(ethernet.prefix(20))))
        seeds.append(("header-only", Array(ethernet.prefix(24))))
        seeds.append(("truncated-record-header", Array(ethernet.prefix(24 + 10))))
        seeds.append(("micro-magic", withMagic(ethernet, [0xD4, 0xC3, 0xB2, 0xA1])))
        seeds.append(("big-endian", byteSwapped(ethernet)))
        seeds.append(("caplen-beyond-snaplen", patched(ethernet, at: 16, le32: 40)))  // snaplen 40
        seeds.append(("caplen-lies-huge", patched(ethernet, at: 24 + 8, le32: 0x7FFF_FFFF)))
        seeds.append(("origlen-less-than-caplen", patched(ethernet, at: 24 + 12, le32: 1)))
        seeds.append(("nanoseconds-too-big", patched(ethernet, at: 24 + 4, le32: 1_500_000_000)))
        seeds.append(("unsupported-linktype", patched(ethernet, at: 20, le32: 147)))
        seeds.append(("linktype-raw-228", patched(try writtenCapture(link: .rawIP, frames: [SeedFrame(link: .rawIP).build()]), at: 20, le32: 228)))
        seeds.append(("snaplen-zero", patched(ethernet, at: 16, le32: 0)))
        seeds.append(("not-a-capture", Array("{\"rules\": []}\n".utf8)))
        seeds.append(("pcapng", minimalPcapng(frame: SeedFrame().build())))
        return seeds
    }

    func writtenCapture(link: PcapLinkType, frames: [[UInt8]]) throws -> [UInt8] {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-seed-\(getpid()).pcap").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let writer = try PcapWriter(path: path, linkType: link)
        for (index, frame) in frames.enumerated() {
            try writer.write(timestampNanoseconds: 1_700_000_000_000_000_000 + UInt64(index) * 1_000_123, bytes: frame)
        }
        try writer.close()
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// A little-endian classic capture cut after `records` records.
    func recordsPrefix(_ file: [UInt8], records: Int) -> [UInt8] {
        var offset = 24
        for _ in 0..<records where offset + 16 <= file.count {
            offset += 16 + Int(le32(file, offset + 8))
        }
        return Array(file.prefix(offset))
    }

    func le32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }

    func patched(_ file: [UInt8], at offset: Int, le32 value: UInt32) -> [UInt8] {
        var copy = file
        for index in 0..<4 { copy[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
        return copy
    }

    func withMagic(_ file: [UInt8], _ magic: [UInt8]) -> [UInt8] {
        var copy = file
        copy.replaceSubrange(0..<4, with: magic)
        return copy
    }

    /// The same capture written big-endian: every header field swapped, frame bytes as is.
    func byteSwapped(_ file: [UInt8]) -> [UInt8] {
        var copy = file
        func swap(_ at: Int, _ width: Int) { copy[at..<(at + width)].reverse() }
        swap(0, 4); swap(4, 2); swap(6, 2); swap(8, 4); swap(12, 4); swap(16, 4); swap(20, 4)
        var offset = 24
        while offset + 16 <= file.count {
            let caplen = Int(le32(file, offset + 8))
            for field in 0..<4 { swap(offset + 4 * field, 4) }
            offset += 16 + caplen
        }
        return copy
    }

    /// Section header, one Ethernet interface, one enhanced packet block.
    func minimalPcapng(frame: [UInt8]) -> [UInt8] {
        func u32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        func u16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
        var out: [UInt8] = []
        out += u32(0x0A0D0D0A) + u32(28) + u32(0x1A2B3C4D) + u16(1) + u16(0) + u32(0xFFFF_FFFF) + u32(0xFFFF_FFFF) + u32(28)
        out += u32(1) + u32(20) + u16(1) + u16(0) + u32(65535) + u32(20)
        let padded = frame + [UInt8](repeating: 0, count: (4 - frame.count % 4) % 4)
        let length = UInt32(32 + padded.count)
        out += u32(6) + u32(length) + u32(0) + u32(0x5F00) + u32(0x1234) + u32(UInt32(frame.count)) + u32(UInt32(frame.count))
        out += padded + u32(length)
        return out
    }

    // MARK: control protocol lines

    func controlSeeds() -> [(String, [UInt8])] {
        let lines: [(String, String)] = [
            ("add", #"{"op":"add","rule":{"in":"rin0:239.1.1.1:5001","out":["rout0:239.10.1.1:6001:8"],"name":"cam1"}}"#),
            ("add-source", #"{"op":"add","rule":{"in":"rin0:239.1.1.1:5001","source":"198.18.1.1","out":["rout0:239.10.1.1:6001","rout1:198.18.2.2:7000:1"]}}"#),
            ("add-bad-endpoint", #"{"op":"add","rule":{"in":"rin0:239.1.1:5001","out":["rout0:239.10.1.1:6001:0"]}}"#),
            ("add-no-rule", #"{"op":"add"}"#),
            ("remove", #"{"op":"remove","selector":"cam1"}"#),
            ("remove-id", #"{"op":"remove","selector":"0123456789ab"}"#),
            ("list", #"{"op":"list"}"#),
            ("stats", #"{"op":"stats"}"#),
            ("reload", "{\"op\":\"reload\"}\n"),
            ("unknown-op", #"{"op":"shutdown"}"#),
            ("op-wrong-type", #"{"op":7}"#),
            ("op-null", #"{"op":null}"#),
            ("not-json", "add rin0:239.1.1.1:5001"),
            ("empty", ""),
            ("escaped-newline", #"{"op":"remove","selector":"a\nb"}"#),
            ("reply-failure", #"{"ok":false,"error":"no rule with id or name \"x\""}"#),
            ("reply-add", #"{"added":true,"ok":true,"rule":{"id":"0123456789ab","in":"rin0:239.1.1.1:5001","joined":true,"name":"cam1","out":["rout0:239.10.1.1:6001:8"]}}"#),
            ("reply-list", #"{"ok":true,"rules":[{"id":"0123456789ab","in":"rin0:239.1.1.1:5001","source":"198.18.1.1","out":["rout0:239.10.1.1:6001:64"]}]}"#),
            ("reply-reload", #"{"ok":true,"reload":{"added":1,"removed":2,"unchanged":3}}"#),
            ("reply-stats", #"{"ok":true,"stats":{"drops":{"bad_checksum":0,"bad_ipv4_header":0,"bad_length":0,"fragment":2,"no_matching_rule":5,"not_ip":1,"not_multicast":0,"not_udp":0,"own_transmission":0,"truncated":0},"helper_sockets":[{"capacity":20,"groups":1,"socket":"eth0#0"}],"interfaces_up":["rin0","rout0"],"joined":["239.1.1.1 on rin0"],"outstanding":[],"plan_version":3,"rules":[{"bytes":1200,"id":"0123456789ab","in":"rin0:239.1.1.1:5001","name":"cam1","outputs":[{"bytes":1200,"out":"rout0:239.10.1.1:6001:8","packets":10,"send_errors":1}],"packets":10}],"workers":[{"alive":true,"answered":true,"id":0,"pid":1234,"plan_version":3,"restarts":0}]}}"#),
            ("reply-unknown-drop", #"{"ok":true,"stats":{"drops":{"cosmic_rays":1}}}"#),
        ]
        return lines.map { ($0.0, Array($0.1.utf8)) }
    }

    // MARK: config files

    func configSeeds() -> [(String, [UInt8])] {
        let texts: [(String, String)] = [
            ("one-rule", #"{"rules": [{"name": "cam1", "in": "eth0:239.1.1.1:5001", "source": "198.18.1.1", "out": ["eth1:239.10.1.1:6001:16"]}]}"#),
            ("two-rules", #"{"rules": [{"in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001", "eth2:198.18.3.3:7000:1"]}, {"name": "b.2_x-y", "in": "eth0:239.1.1.2:5001", "out": ["eth1:239.10.1.2:6001:255"]}]}"#),
            ("empty-rules", #"{"rules": []}"#),
            ("same-group-two-sources", #"{"rules": [{"in": "eth0:239.1.1.1:5001", "source": "198.18.1.1", "out": ["eth1:239.10.1.1:6001"]}, {"in": "eth0:239.1.1.1:5001", "source": "198.18.1.2", "out": ["eth1:239.10.1.1:6002"]}, {"in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6003"]}]}"#),
            ("idempotent-duplicate", #"{"rules": [{"in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001"]}, {"in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("unicode-interface", #"{"rules": [{"in": "ét\u00e9:239.1.1.1:5001", "out": ["e\u0301th1:239.10.1.1:6001"]}]}"#),
            ("extra-keys", #"{"version": 2, "rules": [{"in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001"], "comment": "x"}]}"#),
            ("canonical-pretty", "{\n  \"rules\" : [\n    {\n      \"in\" : \"eth0:239.1.1.1:5001\",\n      \"name\" : \"a\",\n      \"out\" : [\n        \"eth1:239.10.1.1:6001:64\"\n      ]\n    }\n  ]\n}"),
            ("conflicting-duplicate", #"{"rules": [{"in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001"]}, {"in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6002"]}]}"#),
            ("loop-self", #"{"rules": [{"in": "eth0:239.1.1.1:5001", "out": ["eth0:239.1.1.1:5001"]}]}"#),
            ("loop-two-rules", #"{"rules": [{"in": "eth0:239.1.1.1:5001", "out": ["eth1:239.2.2.2:5002"]}, {"in": "eth1:239.2.2.2:5002", "out": ["eth2:239.3.3.3:5003"]}]}"#),
            ("name-in-use", #"{"rules": [{"name": "a", "in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001"]}, {"name": "a", "in": "eth0:239.1.1.2:5001", "out": ["eth1:239.10.1.2:6001"]}]}"#),
            ("bad-name", #"{"rules": [{"name": "0123456789ab", "in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("unicast-input", #"{"rules": [{"in": "eth0:198.18.1.1:5001", "out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("link-local-input", #"{"rules": [{"in": "eth0:224.0.0.5:5001", "out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("port-zero", #"{"rules": [{"in": "eth0:239.1.1.1:0", "out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("ttl-zero", #"{"rules": [{"in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001:0"]}]}"#),
            ("source-multicast", #"{"rules": [{"in": "eth0:239.1.1.1:5001", "source": "239.9.9.9", "out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("no-outputs", #"{"rules": [{"in": "eth0:239.1.1.1:5001", "out": []}]}"#),
            ("leading-zero", #"{"rules": [{"in": "eth0:239.01.1.1:5001", "out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("long-interface", #"{"rules": [{"in": "abcdefghijklmnop:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("missing-in", #"{"rules": [{"out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("wrong-type", #"{"rules": [{"in": 5, "out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("null-name", #"{"rules": [{"name": null, "in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("range-inputs", #"{"rules": [{"in": "eth0:239.0.0.0/8:*", "out": ["eth1:239.10.1.1:6001"]}, {"in": "eth0:[ff3e::]/16:5000", "out": ["eth1:[ff3e::10:1]:6001"]}, {"in": "eth0:239.1.1.1:*", "out": ["eth2:239.10.1.2:6001"]}]}"#),
            ("range-host-bits", #"{"rules": [{"in": "eth0:239.1.0.0/8:*", "out": ["eth1:239.10.1.1:6001"]}]}"#),
            ("range-loop", #"{"rules": [{"in": "eth0:239.0.0.0/8:*", "out": ["eth0:239.10.1.1:6001"]}]}"#),
            ("proxy", #"{"proxies": [{"upstream": "eth0", "downstream": ["eth1", "eth2"], "groups": ["239.0.0.0/8", "ff3e::/16"]}], "queriers": [{"interface": "eth2", "families": ["ipv4", "ipv6"]}]}"#),
            ("proxy-loop", #"{"proxies": [{"upstream": "eth0", "downstream": ["eth1"], "groups": ["239.0.0.0/8"]}, {"upstream": "eth1", "downstream": ["eth0"], "groups": ["239.1.0.0/16"]}]}"#),
            ("proxy-rule-loop", #"{"rules": [{"in": "eth5:239.1.1.1:5001", "out": ["eth0:239.2.2.2:6001"]}], "proxies": [{"upstream": "eth0", "downstream": ["eth1"], "groups": ["239.0.0.0/8"]}]}"#),
            ("not-json", "rules: [in: eth0]"),
            ("truncated-json", #"{"rules": [{"in": "eth0:239.1.1.1:5001", "out": ["#),
            ("top-level-array", "[]"),
            ("empty", ""),
            ("escapes", #"{"rules": [{"name": "a\u0000", "in": "eth0\/x:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001"]}]}"#),
        ]
        var seeds = texts.map { ($0.0, Array($0.1.utf8)) }
        // A larger valid file: many outputs and rules.
        let outs = (1...64).map { "\"eth1:239.20.0.\($0):6000:\($0)\"" }.joined(separator: ",")
        let rules = (1...8).map { "{\"in\": \"eth0:239.1.2.\($0):5000\", \"out\": [\(outs.replacingOccurrences(of: "239.20.0", with: "239.20.\($0)"))]}" }
        seeds.append(("many-outputs", Array("{\"rules\": [\(rules.joined(separator: ","))]}".utf8)))
        return seeds
    }
}

/// A UDP datagram in a frame of any link type, with knobs to break one thing at a time.
struct SeedFrame {
    var link: LinkType = .ethernet
    var vlanTags: [UInt16] = []
    var source = IPv4Address(198, 18, 1, 1)
    var destination = IPv4Address(239, 1, 1, 1)
    var destinationPort: UInt16 = 5001
    var payload: [UInt8] = Array("seed payload".utf8)
    var ipOptions: [UInt8] = []
    var protocolNumber: UInt8 = 17
    var flagsAndOffset: UInt16 = 0x4000
    var outgoing = false
    var corruptChecksum = false
    var udpLengthDelta = 0
    var padding = 0
    /// Bytes removed from the end (a frame cut short in capture).
    var cut = 0

    func build() -> [UInt8] {
        func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
        func be32(_ v: UInt32) -> [UInt8] { be16(UInt16(v >> 16)) + be16(UInt16(v & 0xFFFF)) }
        var frame: [UInt8] = []
        switch link {
        case .ethernet:
            frame += [0x01, 0x00, 0x5E, 0x01, 0x01, 0x01, 0x02, 0, 0, 0, 0, 1]
            for tag in vlanTags { frame += be16(tag) + [0x00, 0x07] }
            frame += [0x08, 0x00]
        case .linuxCooked:
            frame += be16(outgoing ? 4 : 2) + be16(1) + be16(6) + [2, 0, 0, 0, 0, 1, 0, 0] + [0x08, 0x00]
        case .linuxCooked2:
            frame += [0x08, 0x00, 0, 0] + [0, 0, 0, 3] + be16(1) + [outgoing ? 4 : 2, 6] + [2, 0, 0, 0, 0, 1, 0, 0]
        case .rawIP:
            break
        }
        let headerLength = 20 + ipOptions.count
        let udpLength = 8 + payload.count
        var ip: [UInt8] = [UInt8(0x40 | headerLength / 4), 0] + be16(UInt16(headerLength + udpLength))
        ip += [0x12, 0x34] + be16(flagsAndOffset) + [16, protocolNumber, 0, 0]
        ip += be32(source.value) + be32(destination.value) + ipOptions
        var checksum = ip.withUnsafeBytes { FrameParser.ipv4HeaderChecksum($0) }
        if corruptChecksum { checksum ^= 0x0101 }
        ip[10] = UInt8(checksum >> 8)
        ip[11] = UInt8(checksum & 0xFF)
        frame += ip
        frame += be16(40000) + be16(destinationPort) + be16(UInt16(udpLength + udpLengthDelta)) + [0, 0]
        return Array((frame + payload + [UInt8](repeating: 0, count: padding)).dropLast(cut))
    }
}
