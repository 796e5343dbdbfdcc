import Foundation
import Testing
import RelayCore
@testable import Sim

/// Real captures (traces/real, from tcpreplay's test suite): mixed traffic with 802.1Q, IPv6,
/// IGMP, EIGRP and fragments but no multicast UDP. Nothing may come out, every frame must be
/// accounted for, and nothing may trap.
@Suite struct RealTraceTests {
    static let files = ["tcpreplay-test.pcap", "tcpreplay-fragroute.pcap"]

    @Test(arguments: files)
    func nothingForwardedEverythingCounted(_ file: String) throws {
        let path = tracePath("real/" + file)
        try #require(FileManager.default.fileExists(atPath: path), "\(path) missing")
        var summary = TraceLoader.LoadSummary()
        let store = try TraceLoader.load([TraceSource(interface: "eth0", path: path)], summary: &summary)
        // The capture holds 179 records (capinfos, libpcap and a byte-level walk agree), not the 259 once quoted.
        #expect(store.frames.count == (file == "tcpreplay-test.pcap" ? 179 : 20))
        let rules = [RuleSpec(name: "any", input: InputSpec(interface: InterfaceName("eth0")!, group: IPv4Address(224, 0, 1, 10), port: 5000),
                              outputs: [OutputSpec(interface: InterfaceName("eth1")!, destination: IPv4Address(239, 9, 9, 9), port: 6000)])]
        for workers in [1, 3] {
            var options = SimOptions()
            options.workers = workers
            options.timing = .topspeed
            let result = try Simulation(input: SimInput(store: store, rules: rules), options: options).run()
            #expect(result.passed, "\(result.violations.prefix(3))")
            #expect(result.report.egress["eth1"]?.frames == 0)
            let ingress = result.report.ingress
            let dropped = result.report.drops.values.reduce(0, +)
            // Every trace frame either never reached a socket or was counted under a reason.
            #expect(UInt64(ingress.copiesToWorkers - ingress.probes) == dropped)
            #expect(ingress.arrived - ingress.probes == ingress.notJoined + ingress.copiesToWorkers - ingress.probes
                    + ingress.interfaceDown + ingress.noReader)
        }
    }

    /// The same capture with faults everywhere: corrupted and truncated copies of real frames
    /// must not trap or be forwarded either.
    @Test(arguments: files)
    func survivesFaults(_ file: String) throws {
        var summary = TraceLoader.LoadSummary()
        let store = try TraceLoader.load([TraceSource(interface: "eth0", path: tracePath("real/" + file))], summary: &summary)
        let rules = [RuleSpec(input: InputSpec(interface: InterfaceName("eth0")!, group: IPv4Address(239, 1, 1, 1), port: 5000),
                              outputs: [OutputSpec(interface: InterfaceName("eth1")!, destination: IPv4Address(239, 9, 9, 9), port: 6000)])]
        for seed in UInt64(1)...20 {
            var options = SimOptions()
            options.seed = seed
            options.faults = try FaultSpec.parse("truncate=0.3,corrupt=0.3,dup=0.1,reorder=0.1")
            let result = try Simulation(input: SimInput(store: store, rules: rules), options: options).run()
            #expect(result.passed, "seed \(seed): \(result.violations.prefix(3))")
            #expect(result.report.egress["eth1"]?.frames == 0)
        }
    }

    /// A `tcpdump -i any` capture (Linux cooked v2) replayed with --iface-map.
    @Test func cookedAnyCaptureWithInterfaceMap() throws {
        let directory = try temporaryDirectory("sll2")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Build SLL2 frames: protocol, reserved, ifindex, hatype, pkttype, halen, address.
        func sll2(ifindex: UInt32, pkttype: UInt8, ip: [UInt8]) -> [UInt8] {
            [0x08, 0x00, 0, 0] + [UInt8(ifindex >> 24), UInt8(truncatingIfNeeded: ifindex >> 16), UInt8(truncatingIfNeeded: ifindex >> 8), UInt8(truncatingIfNeeded: ifindex)]
                + [0, 1, pkttype, 6] + [2, 0, 0, 0, 0, 1, 0, 0] + ip
        }
        let datagram = TrafficMaker.datagram(interface: 0, source: IPv4Address(198, 18, 1, 1), group: IPv4Address(239, 1, 1, 1), port: 5001, payload: Array("hello".utf8))
        let ip = Array(datagram[14...])
        let path = directory + "/any.pcap"
        let writer = try PcapWriterShim(path: path)
        try writer.write(0, sll2(ifindex: 3, pkttype: 2, ip: ip))      // multicast in on eth0 (index 3)
        try writer.write(1_000, sll2(ifindex: 4, pkttype: 4, ip: ip))  // our own transmission on eth1: never relayed
        try writer.write(2_000, sll2(ifindex: 9, pkttype: 2, ip: ip))  // unmapped interface
        try writer.close()
        var summary = TraceLoader.LoadSummary()
        let map = try TraceLoader.parseInterfaceMap(["3=eth0", "4=eth1"])
        let store = try TraceLoader.load([TraceSource(interface: "any", path: path)], interfaceMap: map, summary: &summary)
        #expect(store.frames.count == 2)
        #expect(summary.unmappedFrames == [9: 1])
        let rules = [RuleSpec(input: InputSpec(interface: InterfaceName("eth0")!, group: IPv4Address(239, 1, 1, 1), port: 5001),
                              outputs: [OutputSpec(interface: InterfaceName("eth2")!, destination: IPv4Address(239, 9, 9, 9), port: 6000)]),
                     RuleSpec(input: InputSpec(interface: InterfaceName("eth1")!, group: IPv4Address(239, 1, 1, 1), port: 5001),
                              outputs: [OutputSpec(interface: InterfaceName("eth2")!, destination: IPv4Address(239, 9, 9, 8), port: 6000)])]
        let result = try Simulation(input: SimInput(store: store, rules: rules), options: SimOptions()).run()
        #expect(result.passed)
        #expect(result.report.egress["eth2"]?.frames == 1)
        #expect(result.report.drops["own_transmission"] == 1)
        // A cooked v1 capture cannot say which interface a frame came from.
        #expect(throws: SimError.self) {
            try TraceLoader.load([TraceSource(interface: "any", path: tracePath("two-streams/eth0.pcap"))], summary: &summary)
        }
    }
}
