import Benchmark
import RelayCore

/// Core micro-benchmarks: forwarding decisions with 1, 100 and 10,000 rules, fan-out 1 to 8,
/// IPv6 and mixed-family decisions beside the IPv4 ones, and membership recomputation with
/// 10,000 groups. Run with `make bench` (release).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal, .instructions],
        maxDuration: .seconds(2), maxIterations: 1_000_000)

    // The harness's own allocations in a measured region (the malloc counter, the iteration
    // bookkeeping): the summary subtracts this from the decide benchmarks' counts.
    Benchmark("harness: empty measured loop", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var sink = 0
        for iteration in benchmark.scaledIterations { sink &+= iteration }
        blackHole(sink)
    }

    for ruleCount in [1, 100, 10_000] {
        let setup = ForwardingSetup(rules: ruleCount, fanout: 1)
        Benchmark("decide rules=\(ruleCount) fanout=1", configuration: .init(scalingFactor: .kilo)) { benchmark in
            var forwarder = setup.forwarder
            // The first mutation copies the shared setup's buffers (copy-on-write): do it before
            // measuring, so the malloc count is the decisions' own (zero), not the harness's.
            var sink = setup.forwardOne(&forwarder, frame: 0)
            benchmark.startMeasurement()
            for iteration in benchmark.scaledIterations {
                sink &+= setup.forwardOne(&forwarder, frame: iteration)
            }
            blackHole(sink)
        }
    }

    // IPv6 beside IPv4 (issue 12: "as fast for IPv4 as today"): 100 IPv6 rules and an IPv6
    // frame, then 100 IPv4 + 100 IPv6 rules on one interface with a frame of each family. The
    // IPv4 row to read them against is "decide rules=100 fanout=1" above, from the same run.
    let mixedCases: [(name: String, rules4: Int, rules6: Int, frames: AddressFamily)] = [
        ("decide rules=100 fanout=1 ipv6", 0, 100, .ipv6),
        ("decide rules=100+100 fanout=1 mixed, ipv4 frame", 100, 100, .ipv4),
        ("decide rules=100+100 fanout=1 mixed, ipv6 frame", 100, 100, .ipv6),
    ]
    for (name, rules4, rules6, family) in mixedCases {
        let setup = ForwardingSetup(rules4: rules4, rules6: rules6, fanout: 1, frames: family)
        Benchmark(name, configuration: .init(scalingFactor: .kilo)) { benchmark in
            var forwarder = setup.forwarder
            var sink = setup.forwardOne(&forwarder, frame: 0)
            benchmark.startMeasurement()
            for iteration in benchmark.scaledIterations {
                sink &+= setup.forwardOne(&forwarder, frame: iteration)
            }
            blackHole(sink)
        }
    }

    // The frames carry a UDP checksum, as the kernel's UDP sockets send them; "no udp checksum":
    // IPv4 without one, whose checksum carry (EgressFrame.checksumCarry) is summed from the
    // 1316-byte payload, once per datagram, in `transmits`.
    let transmitCases = [1, 2, 4, 8].map { ($0, true) } + [(1, false), (8, false)]
    for (fanout, udpChecksum) in transmitCases {
        let setup = ForwardingSetup(rules4: 100, rules6: 0, fanout: fanout, frames: .ipv4, udpChecksum: udpChecksum)
        let name = "decide+transmits rules=100 fanout=\(fanout)" + (udpChecksum ? "" : " no udp checksum")
        Benchmark(name, configuration: .init(scalingFactor: .kilo)) { benchmark in
            var forwarder = setup.forwarder
            // The first mutation copies the shared setup's buffers (copy-on-write): do it before
            // measuring, so the malloc count is the decisions' own (zero), not the harness's.
            var sink = setup.forwardOne(&forwarder, frame: 0)
            benchmark.startMeasurement()
            for iteration in benchmark.scaledIterations {
                sink &+= setup.forwardOne(&forwarder, frame: iteration)
            }
            blackHole(sink)
        }
    }

    // The egress header of one datagram (EgressFrame.writeHeader from an output's template) with
    // the UDP checksum summed over the payload: what a copy of a datagram that came without a
    // checksum costs (IPv4 allows none), and every copy cost before the checksum was carried on.
    for size in [64, 1316] {
        Benchmark("egress header payload=\(size)", configuration: .init(scalingFactor: .kilo)) { benchmark in
            let template = UnsafeMutableRawPointer.allocate(byteCount: EgressFrame.templateBytes, alignment: 16)
            let header = UnsafeMutableRawPointer.allocate(byteCount: EgressFrame.headerBytes, alignment: 16)
            let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
            defer { template.deallocate(); header.deallocate(); payload.deallocate() }
            for index in 0..<size { payload[index] = UInt8(truncatingIfNeeded: index &* 31) }
            EgressFrame.writeTemplate(template, sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), source: IPv4Address(198, 18, 2, 1),
                                      destination: IPv4Address(239, 10, 1, 1), destinationPort: 6001, ttl: 16)
            var sink: UInt64 = 0
            benchmark.startMeasurement()
            for iteration in benchmark.scaledIterations {
                EgressFrame.writeHeader(header, template: UnsafeRawPointer(template), sourcePort: UInt16(truncatingIfNeeded: iteration),
                                        payload: UnsafeRawBufferPointer(payload))
                sink &+= UInt64(header.load(fromByteOffset: 40, as: UInt16.self))
            }
            blackHole(sink)
        }
    }

    // The same header as the worker writes it for a datagram that came with a checksum: the
    // part every copy shares carried on from the received checksum (EgressFrame.checksumCarry,
    // once per datagram, no pass over the payload), then the header from the template.
    for size in [64, 1316] {
        Benchmark("egress header payload=\(size) checksum carried", configuration: .init(scalingFactor: .kilo)) { benchmark in
            // 16 datagrams (source ports 40000-40015, so 16 received checksums) of one payload.
            let payloadBytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let frames = (0..<16).map { index in
                EgressFrame.bytes(.init(sourceMAC: MACAddress(2, 0, 0, 0, 0, 9), source: IPv4Address(198, 18, 1, 1),
                                        destination: IPv4Address(239, 1, 1, 1), sourcePort: UInt16(40000 + index),
                                        destinationPort: 5001, ttl: 9), payload: payloadBytes)
            }
            let datagrams: [UDPDatagram] = frames.map { frame in
                frame.withUnsafeBytes { bytes in
                    guard case let .datagram(datagram) = FrameParser.parse(bytes, link: .ethernet) else { fatalError("frame does not parse") }
                    return datagram
                }
            }
            let template = UnsafeMutableRawPointer.allocate(byteCount: EgressFrame.templateBytes, alignment: 16)
            let header = UnsafeMutableRawPointer.allocate(byteCount: EgressFrame.headerBytes, alignment: 16)
            defer { template.deallocate(); header.deallocate() }
            EgressFrame.writeTemplate(template, sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), source: IPv4Address(198, 18, 2, 1),
                                      destination: IPv4Address(239, 10, 1, 1), destinationPort: 6001, ttl: 16)
            var sink: UInt64 = 0
            benchmark.startMeasurement()
            for iteration in benchmark.scaledIterations {
                let datagram = datagrams[iteration & 15]
                frames[iteration & 15].withUnsafeBytes { frame in
                    let carry = EgressFrame.checksumCarry(frame: frame, datagram: datagram)
                    EgressFrame.writeHeader(header, template: UnsafeRawPointer(template), sourcePort: datagram.sourcePort,
                                            payloadCount: datagram.payloadLength, checksumCarry: carry)
                }
                sink &+= UInt64(header.load(fromByteOffset: 40, as: UInt16.self))
            }
            blackHole(sink)
        }
    }

    // An IGMP/MLD proxy's route (issue 13): one upstream prefix, `fanout` downstreams whose
    // listeners all want the group (the gate is looked up per datagram and output by (downstream,
    // group) and asked about the source), each transmit's routed header written as the worker
    // does (IP header copied, TTL - 1, checksum; the UDP checksum verified over the payload).
    for fanout in [1, 2, 8] {
        let downstream = (1...fanout).map { InterfaceName("eth\($0)")! }
        let group = IPAddress.v4(IPv4Address(239, 5, 0, 1))
        let proxy = ProxyConfiguration(upstream: InterfaceName("eth0")!, downstream: downstream,
                                       groups: [GroupPrefix(base: .v4(IPv4Address(239, 0, 0, 0)), length: 8)])
        let plan = WorkerPlan(worker: WorkerID(0), version: 1, ingress: [IngressAssignment(interface: InterfaceName("eth0")!, fanoutGroup: nil)],
                              rules: Proxies.routes(for: [proxy], besides: []), gateVersion: 1,
                              gates: downstream.map { GateEntry(key: GateKey(interface: $0, group: group), filter: .anySource) })
        let frame = EgressFrame.bytes(.init(sourceMAC: MACAddress(2, 0, 0, 0, 0, 9), source: IPv4Address(198, 18, 1, 1),
                                            destination: IPv4Address(239, 5, 0, 1), sourcePort: 40000, destinationPort: 5001, ttl: 8),
                                      payload: (0..<1316).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        Benchmark("proxy decide+transmits+routed headers payload=1316 fanout=\(fanout)", configuration: .init(scalingFactor: .kilo)) { benchmark in
            var forwarder = Forwarder(plan: plan)
            let template = UnsafeMutableRawPointer.allocate(byteCount: EgressFrame.templateBytes, alignment: 16)
            let header = UnsafeMutableRawPointer.allocate(byteCount: EgressFrame.maximumRoutedHeaderBytes, alignment: 16)
            defer { template.deallocate(); header.deallocate() }
            EgressFrame.writeRoutedTemplate(template, sourceMAC: MACAddress(2, 0, 0, 0, 0, 1))
            var sink = 0
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                frame.withUnsafeBytes { bytes in
                    guard case let .forward(forwarding) = forwarder.decide(bytes, link: .ethernet, ingress: 0) else { return }
                    for transmit in forwarder.transmits(for: forwarding) {
                        sink &+= EgressFrame.writeRoutedHeader(header, template: UnsafeRawPointer(template), headers: transmit.headers,
                                                               payload: transmit.payload)
                    }
                }
            }
            blackHole(sink)
        }
    }

    Benchmark("membership: 10000 groups from scratch, all joins completed",
              configuration: .init(metrics: [.throughput, .wallClock, .mallocCountTotal, .instructions], maxIterations: 20)) { benchmark in
        let specs = membershipRules(count: 10_000)
        benchmark.startMeasurement()
        var plane = ControlPlane()
        plane.handle(.interfaceUp(InterfaceName("in0")!), now: .zero)
        try plane.replaceRules(specs, now: .zero)
        var joins = 0
        while let action = plane.poll() {
            if case let .join(request) = action {
                plane.handle(.joinCompleted(request.ticket, .joined), now: .zero)
                joins += 1
            }
        }
        benchmark.stopMeasurement()
        precondition(joins == 10_000 && plane.membership.joined.count == 10_000, "benchmark did not join every group")
    }

    Benchmark("membership: add 1 rule to 10000", configuration: .init(metrics: [.throughput, .wallClock, .mallocCountTotal, .instructions], maxIterations: 50)) { benchmark in
        var plane = ControlPlane()
        plane.handle(.interfaceUp(InterfaceName("in0")!), now: .zero)
        try plane.replaceRules(membershipRules(count: 10_000), now: .zero)
        _ = plane.drain()
        let extra = RuleSpec(input: InputSpec(interface: InterfaceName("in0")!, group: IPv4Address(239, 3, 0, 1), port: 5000),
                             outputs: [OutputSpec(interface: InterfaceName("out0")!, destination: IPv4Address(239, 4, 0, 1), port: 5000)])
        benchmark.startMeasurement()
        try plane.addRule(extra, now: .zero)
        let actions = plane.drain()
        benchmark.stopMeasurement()
        blackHole(actions)
    }
}

/// `count` single-output rules on one interface, one group each.
func membershipRules(count: Int) -> [RuleSpec] {
    let input = InterfaceName("in0")!
    let output = InterfaceName("out0")!
    var specs: [RuleSpec] = []
    for index in 0..<count {
        let high = UInt8(index / 256)
        let low = UInt8(index % 256)
        let source = InputSpec(interface: input, group: IPv4Address(239, 1, high, low), port: 5000)
        let destination = OutputSpec(interface: output, destination: IPv4Address(239, 2, high, low), port: 5000)
        specs.append(RuleSpec(input: source, outputs: [destination]))
    }
    return specs
}

/// A Forwarder with `rules` rules on one interface, each with `fanout` outputs, and 64
/// distinct matching frames to cycle through (so lookups do not hit one cache line only).
struct ForwardingSetup: @unchecked Sendable {
    let forwarder: Forwarder
    let frames: [[UInt8]]

    init(rules: Int, fanout: Int) {
        self.init(rules4: rules, rules6: 0, fanout: fanout, frames: .ipv4)
    }

    /// `rules4` IPv4 rules (239.1.H.L:5000 -> 239.2.H.L:6000) and `rules6` IPv6 rules
    /// ([ff3e::8000:N]:5000 -> [ff3e::10:N]:6000) on one interface; the 64 frames are of `frames`'s
    /// family and match rules of that family.
    init(rules4: Int, rules6: Int, fanout: Int, frames family: AddressFamily, udpChecksum: Bool = true) {
        var book = RuleBook()
        let input = InterfaceName("in0")!
        for index in 0..<rules4 {
            let group = IPv4Address(239, 1, UInt8(index / 256), UInt8(index % 256))
            let outputs = (0..<fanout).map { out in
                OutputSpec(interface: InterfaceName("out\(out)")!, destination: IPv4Address(239, 2, UInt8(index / 256), UInt8(index % 256)),
                           port: 6000, ttl: 16)
            }
            try! book.add(RuleSpec(input: InputSpec(interface: input, group: group, port: 5000), outputs: outputs))
        }
        for index in 0..<rules6 {
            let outputs = (0..<fanout).map { out in
                OutputSpec(interface: InterfaceName("out\(out)")!, destination: .v6(Self.group6(0x10, index)), port: 6000, ttl: 16)
            }
            try! book.add(RuleSpec(input: InputSpec(interface: input, group: .v6(Self.group6(0x8000, index)), port: 5000), outputs: outputs))
        }
        forwarder = Forwarder(plan: WorkerPlan(worker: WorkerID(0), version: 1,
                                               ingress: [IngressAssignment(interface: input, fanoutGroup: nil)],
                                               rules: Array(book.rules.values)))
        let rules = family == .ipv4 ? rules4 : rules6
        frames = (0..<64).map { index in
            let ruleIndex = index * max(1, rules / 64) % rules
            if family == .ipv6 {
                return Self.frame6(to: Self.group6(0x8000, ruleIndex), port: 5000, payload: 1316)
            }
            return Self.frame(to: IPv4Address(239, 1, UInt8(ruleIndex / 256), UInt8(ruleIndex % 256)), port: 5000, payload: 1316,
                              udpChecksum: udpChecksum)
        }
    }

    /// ff3e::PREFIX:(index + 1)
    static func group6(_ prefix: UInt16, _ index: Int) -> IPv6Address {
        IPv6Address(0xFF3E, 0, 0, 0, 0, 0, prefix, UInt16(index + 1))
    }

    @inline(__always)
    func forwardOne(_ forwarder: inout Forwarder, frame index: Int) -> Int {
        frames[index & 63].withUnsafeBytes { bytes in
            guard case let .forward(forwarding) = forwarder.decide(bytes, link: .rawIP, ingress: 0) else { return 0 }
            var total = 0
            for transmit in forwarder.transmits(for: forwarding) { total &+= transmit.payload.count &+ Int(transmit.ttl) }
            return total
        }
    }

    /// An IPv6/UDP packet (as an AF_PACKET SOCK_DGRAM socket delivers it: no Ethernet header)
    /// from 2001:db8:1::1, hop limit 64, with its mandatory UDP checksum (EgressFrame builds it).
    static func frame6(to group: IPv6Address, port: UInt16, payload: Int) -> [UInt8] {
        let whole = EgressFrame.bytes(.init(sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), source: .v6(IPv6Address("2001:db8:1::1")!),
                                            destination: .v6(group), sourcePort: 40000, destinationPort: port, ttl: 64),
                                      payload: [UInt8](repeating: 0x47, count: payload))
        return Array(whole.dropFirst(EgressFrame.ethernetHeaderBytes))
    }

    /// An IPv4/UDP packet (as an AF_PACKET SOCK_DGRAM socket delivers it) with a valid header
    /// checksum, and a valid UDP checksum or none (0).
    static func frame(to group: IPv4Address, port: UInt16, payload: Int, udpChecksum: Bool = true) -> [UInt8] {
        let total = 28 + payload
        var bytes: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, 1, 0x40, 0, 1, 17, 0, 0,
                              198, 18, 1, 1, group.octets.0, group.octets.1, group.octets.2, group.octets.3]
        let checksum = bytes.withUnsafeBytes { FrameParser.ipv4HeaderChecksum($0) }
        bytes[10] = UInt8(checksum >> 8)
        bytes[11] = UInt8(checksum & 0xFF)
        bytes += [0x9C, 0x40, UInt8(port >> 8), UInt8(port & 0xFF), UInt8((8 + payload) >> 8), UInt8((8 + payload) & 0xFF), 0, 0]
        bytes += [UInt8](repeating: 0x47, count: payload)
        if udpChecksum {
            let udp = Array(bytes[20...])
            let pseudo = Array(bytes[12..<20]) + [0, 17, UInt8(udp.count >> 8), UInt8(udp.count & 0xFF)]
            let check = (pseudo + udp).withUnsafeBytes { EgressFrame.checksum($0) }  // in memory order
            bytes.withUnsafeMutableBytes { $0.storeBytes(of: check == 0 ? 0xFFFF : check, toByteOffset: 26, as: UInt16.self) }
        }
        return bytes
    }
}
