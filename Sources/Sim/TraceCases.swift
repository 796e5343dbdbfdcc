import Foundation
import RelayCore

/// The small cases checked in under `traces/`, generated deterministically (`mcrelay sim
/// make-traces`) so they can be rebuilt and reviewed; the tests replay them and compare with
/// each case's `expected.json`.
public enum TraceCases {
    public struct Case: Sendable {
        public var name: String
        public var description: String
        public var simCase: SimCase
    }

    static let eth0 = InterfaceName("eth0")!
    static let eth1 = InterfaceName("eth1")!
    static let eth2 = InterfaceName("eth2")!

    static func payload(_ text: String, _ index: Int) -> [UInt8] { Array("\(text) #\(index)".utf8) }

    public static var all: [Case] { [twoStreams, fiftyGroups, fanoutRemap, malformedMix, controlEvents, ipv6Mix, listeners] }

    /// A LAN segment on out0 behind a follow output (`ListenerCases`): a v3 host joins and
    /// leaves, a v2 host joins later, an SSM host asks for another source, a router with a
    /// lower address queries from 20 s to 40 s, and 10 % of the segment's frames are lost.
    public static var listeners: Case {
        typealias L = ListenerCases
        let events = [
            ScriptedEvent(at: 0, kind: .segmentLoss(L.follow, probability: 0.1)),
            L.join(1_000, host: 10),
            L.join(2_000, host: 12, mode: .include, sources: [.v4(IPv4Address(198, 19, 1, 99))]),
            L.leave(15_000, host: 10),
            ScriptedEvent(at: 20_000_000_000, kind: .querierStart(L.follow, address: .v4(IPv4Address(198, 18, 0, 1)),
                                                                  version: .v3, queryIntervalMs: 10_000)),
            L.join(25_000, host: 11, version: .v2),
            ScriptedEvent(at: 40_000_000_000, kind: .querierStop(L.follow, address: .v4(IPv4Address(198, 18, 0, 1)))),
            L.leave(70_000, host: 11),
        ]
        return Case(name: "listeners", description: "a follow output on out0 driven by simulated IGMP hosts (v3 join and leave, "
                        + "a v2 join, an SSM join of another source), a lower-addressed querier from 20 s to 40 s, 10 % segment loss",
                    simCase: L.make(events: events, seconds: 90, frameIntervalMs: 100, seed: 3))
    }

    /// The seed's scenario: two streams on one interface; both must flow.
    public static var twoStreams: Case {
        let rules = [
            RuleSpec(name: "cam1", input: InputSpec(interface: eth0, group: IPv4Address(239, 1, 1, 1), port: 5001),
                     outputs: [OutputSpec(interface: eth1, destination: IPv4Address(239, 10, 1, 1), port: 6001, ttl: 16)]),
            RuleSpec(name: "cam2", input: InputSpec(interface: eth0, group: IPv4Address(239, 1, 1, 2), port: 5002),
                     outputs: [OutputSpec(interface: eth1, destination: IPv4Address(239, 10, 1, 2), port: 6002, ttl: 16)]),
        ]
        var store = FrameStore()
        for index in 0..<200 {
            let stream = index % 2
            store.append(time: UInt64(index) * 1_000_000, interface: eth0, link: .ethernet, bytes: TrafficMaker.datagram(
                interface: 0, source: IPv4Address(198, 18, 1, UInt8(1 + stream)), group: IPv4Address(239, 1, 1, UInt8(1 + stream)),
                port: UInt16(5001 + stream), payload: payload("stream \(stream + 1)", index / 2), id: UInt16(index)))
        }
        return Case(name: "two-streams", description: "two streams on one interface (239.1.1.1:5001 and 239.1.1.2:5002), two workers with fanout: both must flow",
                    simCase: SimCase(input: SimInput(store: store, rules: rules), options: SimOptions()))
    }

    /// IPv6 beside IPv4 on one interface: 30 IPv6 groups (two helper sockets at a limit of 20
    /// assumed by the core here), a source-specific IPv6 rule that wins for its source, an IPv6
    /// input fanned out to IPv6 and IPv4 outputs, an IPv4 stream to an IPv6 output, and IPv6
    /// frames the relay must drop (fragment header, ICMPv6, zero UDP checksum, hop-by-hop
    /// after another header, link-scoped group).
    public static var ipv6Mix: Case {
        func v6(_ text: String) -> IPAddress { .v6(IPv6Address(text)!) }
        var rules: [RuleSpec] = [
            RuleSpec(name: "feed6", input: InputSpec(interface: eth0, group: v6("ff3e::8000:1"), port: 5001),
                     outputs: [OutputSpec(interface: eth1, destination: v6("ff3e::10:1"), port: 6001, ttl: 9),
                               OutputSpec(interface: eth2, destination: .v4(IPv4Address(239, 10, 6, 1)), port: 6001, ttl: 16)]),
            RuleSpec(name: "feed6-ssm", input: InputSpec(interface: eth0, group: v6("ff3e::8000:1"), port: 5001, source: v6("2001:db8:1::2")),
                     outputs: [OutputSpec(interface: eth1, destination: v6("ff05::20:1"), port: 7001, ttl: 3)]),
            RuleSpec(name: "v4-to-v6", input: InputSpec(interface: eth0, group: .v4(IPv4Address(239, 1, 1, 1)), port: 5001),
                     outputs: [OutputSpec(interface: eth1, destination: v6("ff3e::40:1"), port: 6001, ttl: 8)]),
        ]
        for group in 0..<30 {
            rules.append(RuleSpec(name: "g6-\(group + 1)", input: InputSpec(interface: eth0, group: v6("ff3e::2:\(String(group + 1, radix: 16))"), port: 5000),
                                  outputs: [OutputSpec(interface: eth1, destination: v6("ff3e::20:\(String(group + 1, radix: 16))"), port: 6000, ttl: 8)]))
        }
        var store = FrameStore()
        var time: UInt64 = 0
        func add(_ bytes: [UInt8]) {
            store.append(time: time, interface: eth0, link: .ethernet, bytes: bytes)
            time += 400_000
        }
        for index in 0..<60 {
            let source = index % 3 == 2 ? v6("2001:db8:1::2") : v6("2001:db8:1::1")
            add(TrafficMaker.datagram(interface: 0, source: source, group: v6("ff3e::8000:1"), port: 5001,
                                      payload: payload("feed6 from \(source)", index), sourcePort: UInt16(41000 + index % 4)))
            add(TrafficMaker.datagram(interface: 0, source: IPv4Address(198, 18, 1, 1), group: IPv4Address(239, 1, 1, 1), port: 5001,
                                      payload: payload("v4 feed", index), id: UInt16(index)))
            let group = index % 30
            add(TrafficMaker.datagram(interface: 0, source: v6("2001:db8:1::3"), group: v6("ff3e::2:\(String(group + 1, radix: 16))"), port: 5000,
                                      payload: payload("group6 \(group + 1)", index / 30)))
        }
        // What must not pass: each kind five times.
        let good = TrafficMaker.datagram(interface: 0, source: v6("2001:db8:1::1"), group: v6("ff3e::8000:1"), port: 5001,
                                         payload: payload("bad", 0))
        func withExtension(_ type: UInt8, _ frame: [UInt8]) -> [UInt8] {
            var bytes = frame
            bytes.insert(contentsOf: [bytes[20], 0, 1, 4, 0, 0, 0, 0], at: 54)
            bytes[20] = type
            let length = (Int(bytes[18]) << 8 | Int(bytes[19])) + 8
            bytes[18] = UInt8(length >> 8); bytes[19] = UInt8(length & 0xFF)
            return bytes
        }
        for _ in 0..<5 {
            add(withExtension(44, good))                          // fragment
            var icmp = good; icmp[20] = 58; add(icmp)            // ICMPv6
            var zero = good; zero[60] = 0; zero[61] = 0; add(zero)  // zero UDP checksum
            add(withExtension(60, withExtension(0, good)))        // hop-by-hop after destination options
            add(TrafficMaker.datagram(interface: 0, source: v6("fe80::1"), group: v6("ff02::fb"), port: 5353, payload: payload("mdns", 0)))
        }
        var options = SimOptions()
        options.workers = 2
        // The IPv6 limits as low as IPv4's, so 30 groups need two IPv6 helper sockets.
        options.coreSocketLimitIPv6 = 20
        options.kernelMembershipLimitIPv6 = 20
        return Case(name: "ipv6-mix", description: "IPv6 beside IPv4 on eth0: 30 IPv6 groups on two IPv6 helper sockets (IPv6 limits set to 20 in case.json), an IPv6 feed fanned out to IPv6 and IPv4 outputs with a source-specific rule winning for its source, IPv4 into IPv6, and IPv6 frames that must be dropped (fragment, ICMPv6, zero checksum, misplaced hop-by-hop, link-scoped group)",
                    simCase: SimCase(input: SimInput(store: store, rules: rules), options: options))
    }

    /// 50 groups on one interface: more than one helper socket's worth (limit 20).
    public static var fiftyGroups: Case {
        var rules: [RuleSpec] = []
        var store = FrameStore()
        for group in 0..<50 {
            rules.append(RuleSpec(name: "g\(group + 1)", input: InputSpec(interface: eth0, group: IPv4Address(239, 2, 0, UInt8(group + 1)), port: 5000),
                                  outputs: [OutputSpec(interface: eth1, destination: IPv4Address(239, 20, 0, UInt8(group + 1)), port: 6000, ttl: 8)]))
        }
        for index in 0..<150 {
            let group = index % 50
            store.append(time: UInt64(index) * 2_000_000, interface: eth0, link: .ethernet, bytes: TrafficMaker.datagram(
                interface: 0, source: IPv4Address(198, 18, 1, 1), group: IPv4Address(239, 2, 0, UInt8(group + 1)), port: 5000,
                payload: payload("group \(group + 1)", index / 50), id: UInt16(index)))
        }
        return Case(name: "fifty-groups", description: "50 groups on eth0: needs 3 helper sockets under the kernel's 20-per-socket limit; every group must flow",
                    simCase: SimCase(input: SimInput(store: store, rules: rules), options: SimOptions()))
    }

    /// One input copied to four outputs on two interfaces with new groups, ports and TTLs,
    /// plus a source-specific rule that takes precedence for its source.
    public static var fanoutRemap: Case {
        let group = IPv4Address(239, 1, 1, 1)
        let rules = [
            RuleSpec(name: "feed", input: InputSpec(interface: eth0, group: group, port: 5001),
                     outputs: [OutputSpec(interface: eth1, destination: IPv4Address(239, 10, 1, 1), port: 6001, ttl: 1),
                               OutputSpec(interface: eth1, destination: IPv4Address(239, 10, 1, 2), port: 6002, ttl: 16),
                               OutputSpec(interface: eth2, destination: IPv4Address(239, 20, 1, 1), port: 7001, ttl: 64),
                               OutputSpec(interface: eth2, destination: IPv4Address(198, 18, 3, 10), port: 7002, ttl: 5)]),
            RuleSpec(name: "feed-from-b", input: InputSpec(interface: eth0, group: group, port: 5001, source: IPv4Address(198, 18, 1, 2)),
                     outputs: [OutputSpec(interface: eth2, destination: IPv4Address(239, 30, 1, 1), port: 8001, ttl: 3)]),
        ]
        var store = FrameStore()
        for index in 0..<120 {
            let source = index % 3 == 2 ? IPv4Address(198, 18, 1, 2) : IPv4Address(198, 18, 1, 1)
            store.append(time: UInt64(index) * 500_000, interface: eth0, link: .ethernet, bytes: TrafficMaker.datagram(
                interface: 0, source: source, group: group, port: 5001, payload: payload("feed from \(source)", index),
                sourcePort: UInt16(40000 + index % 5), id: UInt16(index)))
        }
        var options = SimOptions()
        options.workers = 3
        return Case(name: "fanout-remap", description: "one input to four outputs (remapped group, port, TTL; one unicast) and a source-specific rule, three workers",
                    simCase: SimCase(input: SimInput(store: store, rules: rules), options: options))
    }

    /// Every malformed kind between valid frames: only the valid ones may come out.
    public static var malformedMix: Case {
        let group = IPv4Address(239, 1, 1, 1)
        let rules = [RuleSpec(name: "cam1", input: InputSpec(interface: eth0, group: group, port: 5001),
                              outputs: [OutputSpec(interface: eth1, destination: IPv4Address(239, 10, 1, 1), port: 6001, ttl: 16)])]
        var store = FrameStore()
        var index = 0
        for round in 0..<5 {
            for kind in TrafficMaker.Malformation.allCases {
                let valid = TrafficMaker.datagram(interface: 0, source: IPv4Address(198, 18, 1, 1), group: group, port: 5001,
                                                  payload: payload("valid", index), id: UInt16(index))
                store.append(time: UInt64(index) * 1_000_000, interface: eth0, link: .ethernet, bytes: valid)
                index += 1
                let bad = TrafficMaker.malformed(kind, interface: 0, group: group, port: 5001, payload: payload("bad \(round)", index))
                store.append(time: UInt64(index) * 1_000_000, interface: eth0, link: .ethernet, bytes: bad)
                index += 1
            }
        }
        return Case(name: "malformed-mix", description: "valid frames interleaved with bad checksums, truncation, fragments, TCP, IPv6, VLAN tags, unicast, IP options, bad UDP lengths and runts",
                    simCase: SimCase(input: SimInput(store: store, rules: rules), options: SimOptions()))
    }

    /// Control-plane events during traffic: a rule added and removed, an interface flap, a
    /// worker crash and a config reload.
    public static var controlEvents: Case {
        let cam1 = RuleSpec(name: "cam1", input: InputSpec(interface: eth0, group: IPv4Address(239, 1, 1, 1), port: 5001),
                            outputs: [OutputSpec(interface: eth1, destination: IPv4Address(239, 10, 1, 1), port: 6001, ttl: 16)])
        let cam2 = RuleSpec(name: "cam2", input: InputSpec(interface: eth0, group: IPv4Address(239, 1, 1, 2), port: 5002),
                            outputs: [OutputSpec(interface: eth1, destination: IPv4Address(239, 10, 1, 2), port: 6002, ttl: 16)])
        let cam3 = RuleSpec(name: "cam3", input: InputSpec(interface: eth0, group: IPv4Address(239, 1, 1, 3), port: 5003),
                            outputs: [OutputSpec(interface: eth2, destination: IPv4Address(239, 10, 1, 3), port: 6003, ttl: 16)])
        var store = FrameStore()
        for index in 0..<300 {
            let stream = index % 3
            store.append(time: UInt64(index) * 5_000_000, interface: eth0, link: .ethernet, bytes: TrafficMaker.datagram(
                interface: 0, source: IPv4Address(198, 18, 1, 1), group: IPv4Address(239, 1, 1, UInt8(1 + stream)),
                port: UInt16(5001 + stream), payload: payload("stream \(stream + 1)", index / 3), id: UInt16(index)))
        }
        let ms: UInt64 = 1_000_000
        let events = [
            ScriptedEvent(at: 200 * ms, kind: .ruleAdd(cam2)),
            ScriptedEvent(at: 500 * ms, kind: .interfaceDown(eth0)),
            ScriptedEvent(at: 600 * ms, kind: .interfaceUp(eth0)),
            ScriptedEvent(at: 800 * ms, kind: .workerCrash(1)),
            ScriptedEvent(at: 1000 * ms, kind: .ruleRemove("cam1")),
            ScriptedEvent(at: 1200 * ms, kind: .configReload([cam2, cam3])),
        ]
        return Case(name: "control-events", description: "rule add, interface down/up, worker crash, rule remove and config reload during three streams",
                    simCase: SimCase(input: SimInput(store: store, rules: [cam1], events: events), options: SimOptions()))
    }

    /// Writes every case (inputs, then the replay's expected outcome) under `root`.
    public static func write(to root: String) throws(SimError) -> [String] {
        var lines: [String] = []
        for item in all {
            let directory = root + "/" + item.name
            try item.simCase.save(directory: directory, description: item.description)
            // Replay from disk, exactly as the tests will.
            let loaded = try SimCase.load(directory: directory)
            let result = try loaded.run()
            do {
                try ExpectedOutcome(result).json().write(to: URL(fileURLWithPath: directory + "/expected.json"))
            } catch { throw SimError.output("\(directory)/expected.json: \(error.localizedDescription)") }
            lines.append("\(item.name): \(result.report.result), \(result.report.ingress.traceFrames) frames, "
                + result.report.egress.keys.sorted().map { "\($0) \(result.report.egress[$0]!.frames)" }.joined(separator: ", "))
        }
        return lines
    }
}
