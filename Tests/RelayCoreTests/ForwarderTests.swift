import MallocInterposerSwift
import PropertyBased
import Testing
@testable import RelayCore

func plan(_ rules: [RuleSpec], ingress: [String] = ["eth0"], worker: Int = 0, version: UInt64 = 1) -> WorkerPlan {
    var book = RuleBook()
    for rule in rules { try! book.add(rule) }
    return WorkerPlan(
        worker: WorkerID(worker), version: version,
        ingress: ingress.map { IngressAssignment(interface: iface($0), fanoutGroup: nil) },
        rules: Array(book.rules.values))
}

@Suite struct ForwarderTests {
    @Test func matchingFrameYieldsOneTransmitPerOutputSharingThePayload() throws {
        var forwarder = Forwarder(plan: plan([
            spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001:16", "eth2:239.20.1.1:7001", "eth1:198.18.5.5:9000:3"]),
        ]))
        let frame = FrameBuilder(payload: Array(0..<200).map { UInt8($0) }).build()
        try frame.withUnsafeBytes { bytes in
            guard case let .forward(forwarding) = forwarder.decide(bytes, link: .ethernet, ingress: 0) else {
                Issue.record("expected forward"); return
            }
            let transmits = Array(forwarder.transmits(for: forwarding))
            #expect(transmits.count == 3)
            #expect(transmits.map(\.destination.v4) == [ip("239.10.1.1"), ip("239.20.1.1"), ip("198.18.5.5")])
            #expect(transmits.map(\.port) == [6001, 7001, 9000])
            #expect(transmits.map(\.ttl) == [16, 64, 3])
            #expect(transmits.map { forwarder.egress[$0.egress] } == [iface("eth1"), iface("eth2"), iface("eth1")])
            for transmit in transmits {
                // A view into the received frame, not a copy.
                #expect(transmit.payload.baseAddress == bytes.baseAddress! + 14 + 28)
                #expect(Array(transmit.payload) == Array(0..<200).map { UInt8($0) })
            }
            _ = try #require(transmits.first)
        }
        let stats = forwarder.statistics()
        #expect(stats.rules[0].accepted == TrafficCounter(packets: 1, bytes: 200))
        #expect(stats.rules[0].outputs.allSatisfy { $0 == OutputCounter(packets: 1, bytes: 200) })
    }

    @Test func nonMatchingFramesAreCountedAndYieldNothing() {
        var forwarder = Forwarder(plan: plan([spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"])], ingress: ["eth0", "eth9"]))
        let cases: [(FrameBuilder, Int)] = [
            (FrameBuilder(destinationPort: 5002), 0),             // other port
            (FrameBuilder(destination: ip("239.1.1.2")), 0),      // other group
            (FrameBuilder(), 1),                                   // other interface
        ]
        for (builder, ingress) in cases {
            let decision = builder.build().withUnsafeBytes { forwarder.decide($0, link: .ethernet, ingress: ingress) }
            guard case .drop(.noMatchingRule) = decision else { Issue.record("\(builder) on \(ingress)"); continue }
        }
        #expect(forwarder.drops[.noMatchingRule] == 3)
        #expect(forwarder.statistics().rules[0].accepted.packets == 0)
    }

    @Test func sourceSpecificRuleWinsOverAnySource() {
        var forwarder = Forwarder(plan: plan([
            spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"]),
            spec("eth0:239.1.1.1:5001", ["eth1:239.99.1.1:6001"], source: "198.18.1.7"),
        ]))
        func destination(from source: String) -> IPv4Address? {
            FrameBuilder(source: ip(source)).build().withUnsafeBytes { bytes in
                guard case let .forward(f) = forwarder.decide(bytes, link: .ethernet, ingress: 0) else { return nil }
                return forwarder.transmits(for: f).first?.destination.v4
            }
        }
        #expect(destination(from: "198.18.1.7") == ip("239.99.1.1"))
        #expect(destination(from: "198.18.1.8") == ip("239.10.1.1"))
    }

    @Test func installCarriesCountersForUnchangedRules() {
        let keep = spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"])
        var forwarder = Forwarder(plan: plan([keep]))
        let frame = FrameBuilder().build()
        for _ in 0..<5 { _ = frame.withUnsafeBytes { forwarder.decide($0, link: .ethernet, ingress: 0) } }
        forwarder.install(plan([spec("eth0:239.1.1.9:5001", ["eth1:239.10.1.9:6001"]), keep], version: 2))
        let stats = forwarder.statistics()
        #expect(stats.rules.map(\.accepted.packets) == [0, 5])
        forwarder.recordSendFailures(OutputHandle(index: 1), count: 2)
        #expect(forwarder.statistics().rules[1].outputs[0].sendErrors == 2)
        #expect(forwarder.locate(OutputHandle(index: 1))?.rule.input.group == ip("239.1.1.1"))
    }

    /// Property: a frame matching a rule yields exactly one transmit per output with identical
    /// payload bytes; any other frame yields none; every frame is counted exactly once.
    @Test func forwardingProperty() async {
        let rules = [
            spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001", "eth2:239.10.1.1:6001"]),
            spec("eth0:239.1.1.2:5002", ["eth1:239.10.1.2:6002"]),
            spec("eth1:239.1.1.1:5001", ["eth0:239.30.1.1:6001", "eth2:198.18.9.9:1", "eth2:239.30.1.1:6001"]),
        ]
        let expected: [String: Int] = ["0 239.1.1.1 5001": 2, "0 239.1.1.2 5002": 1, "1 239.1.1.1 5001": 3]
        await propertyCheck(
            count: 500,
            input: Gen.int(in: 0...1), Gen.int(in: 1...3), Gen.int(in: 5000...5003), Gen.uint8().array(of: 0...64), Gen.int(in: 0...2)
        ) { ingress, groupLow, port, payload, tags in
            var forwarder = Forwarder(plan: plan(rules, ingress: ["eth0", "eth1"]))
            let builder = FrameBuilder(vlanTags: tags, destination: IPv4Address(239, 1, 1, UInt8(groupLow)),
                                       destinationPort: UInt16(port), payload: payload)
            let frame = builder.build()
            let want = expected["\(ingress) 239.1.1.\(groupLow) \(port)"] ?? 0
            frame.withUnsafeBytes { bytes in
                switch forwarder.decide(bytes, link: .ethernet, ingress: ingress) {
                case let .forward(forwarding):
                    let transmits = forwarder.transmits(for: forwarding)
                    #expect(transmits.count == want)
                    for transmit in transmits { #expect(Array(transmit.payload) == payload) }
                case .drop(let reason):
                    #expect(want == 0)
                    #expect(reason == .noMatchingRule)
                }
            }
            let stats = forwarder.statistics()
            #expect(stats.drops.total + stats.rules.reduce(0) { $0 + $1.accepted.packets } == 1)
        }
    }
}

/// The per-packet path must not touch the heap. The interposer counts every malloc in this
/// thread while hooked; the test first proves the counter works by counting a known allocation.
///
/// Only optimized builds are meaningful: a debug build runs generic iteration unspecialized,
/// which boxes. `make test` therefore runs this suite a second time with `-c release`.
@Suite(.serialized) struct HotPathAllocationTests {
    /// Proves the counter works by counting a known allocation, or the test would prove nothing.
    /// Returns the count so far, which the measured section's count is taken from.
    static func requireCountingInterposer() throws -> Int {
        MallocInterposerSwift.initialize()
        MallocInterposerSwift.hook()
        let probe = [UInt8](repeating: 7, count: Int.random(in: 100...200))  // must be counted
        MallocInterposerSwift.unhook()
        let probeCount = MallocInterposerSwift.getStatistics().mallocCount
        try #require(probeCount >= 1, "the allocation counter is not active (interposer not loaded), so this test would prove nothing")
        #expect(probe.count >= 100)
        return probeCount
    }

    @Test(.enabled(if: !_isDebugAssertConfiguration(),
                   "allocation counts are only meaningful in optimized builds; `make test` runs this test with -c release"))
    func decideAndTransmitsAllocateNothing() throws {
        let probeCount = try Self.requireCountingInterposer()

        // Fan-out 8 plus two follow outputs, one open and one closed: the gate is a bit per output.
        var rules = [spec("eth0:239.1.1.1:5001", (1...8).map { "eth1:239.10.1.\($0):6001:\($0)" }
                          + ["eth1:239.30.1.1:6001:listeners", "eth1:239.30.1.2:6001:listeners"])]
        for index in 2...100 { rules.append(spec("eth0:239.1.2.\(index):5001", ["eth1:239.11.1.\(index):6001"])) }
        // IPv6 rules beside them: their frames take the IPv6 table and the IPv6 header template.
        for index in 1...20 { rules.append(spec("eth0:[ff3e::8000:\(index)]:5001", ["eth1:[ff3e::10:\(index)]:6001:9"])) }
        rules.append(spec("eth0:[ff3e::8000:1]:5001", ["eth1:[ff05::1]:6001:3"], source: "2001:db8:1::99"))
        // Range inputs (rules 121-123): reached only after the exact tables miss.
        rules.append(spec("eth0:239.2.0.0/16:*", ["eth1:239.12.0.1:6001"]))
        rules.append(spec("eth0:239.1.3.3:*", ["eth1:239.12.0.2:6001"]))
        rules.append(spec("eth0:[ff3e::9000:0]/112:*", ["eth1:[ff3e::12:1]:6001"]))
        var forwarder = Forwarder(plan: plan(rules))
        _ = forwarder.applyGates(GateDelta(worker: WorkerID(0), base: 0, version: 1, entries: [
            GateEntry(key: GateKey(interface: iface("eth1"), group: .v4(ip("239.30.1.1"))), filter: .anySource)]))
        let frames = [FrameBuilder().build(), FrameBuilder(destination: ip("239.1.2.50")).build(),
                      FrameBuilder(destinationPort: 1).build(), FrameBuilder(protocolNumber: 6).build(),
                      FrameBuilder6().build(), FrameBuilder6(extensions: [.init(type: 0)]).build(),
                      FrameBuilder6(source: IPv6Address("2001:db8:1::99")!).build(), FrameBuilder6(upperProtocol: 58).build()]
        let rangeFrames = [FrameBuilder(destination: ip("239.2.7.7"), destinationPort: 1234).build(),
                           FrameBuilder(destination: ip("239.1.3.3"), destinationPort: 999).build(),
                           FrameBuilder6(destination: IPv6Address("ff3e::9000:42")!).build(),
                           FrameBuilder(destination: ip("239.3.0.1")).build()]
        var checksum = 0
        // The egress header of every transmit too, as the worker writes it (template per output).
        let template = UnsafeMutableRawPointer.allocate(byteCount: EgressFrame.templateBytes, alignment: 16)
        let template6 = UnsafeMutableRawPointer.allocate(byteCount: EgressFrame.templateBytes, alignment: 16)
        let header = UnsafeMutableRawPointer.allocate(byteCount: EgressFrame.maximumHeaderBytes, alignment: 16)
        defer { template.deallocate(); template6.deallocate(); header.deallocate() }
        EgressFrame.writeTemplate(template, sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), source: ip("198.18.2.1"),
                                  destination: ip("239.10.1.1"), destinationPort: 6001, ttl: 8)
        EgressFrame.writeTemplate(template6, sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), source: IPAddress("2001:db8:2::1")!,
                                  destination: IPAddress("ff3e::10:1")!, destinationPort: 6001, ttl: 9)
        MallocInterposerSwift.hook()
        for round in 0..<10_000 {
            frames[round % frames.count].withUnsafeBytes { bytes in
                if case let .forward(forwarding) = forwarder.decide(bytes, link: .ethernet, ingress: 0) {
                    for transmit in forwarder.transmits(for: forwarding) {
                        let family = transmit.destination.family == .ipv4 ? template : template6
                        EgressFrame.writeHeader(header, template: UnsafeRawPointer(family), sourcePort: transmit.sourcePort,
                                                payloadCount: transmit.payload.count, checksumCarry: transmit.checksumCarry)
                        checksum &+= Int(transmit.ttl) + transmit.payload.count + Int(header.load(fromByteOffset: 40, as: UInt8.self))
                    }
                }
            }
            rangeFrames[round % rangeFrames.count].withUnsafeBytes { bytes in
                if case let .forward(forwarding) = forwarder.decide(bytes, link: .ethernet, ingress: 0) {
                    for transmit in forwarder.transmits(for: forwarding) { checksum &+= transmit.payload.count }
                }
            }
        }
        MallocInterposerSwift.unhook()
        let during = MallocInterposerSwift.getStatistics().mallocCount - probeCount
        #expect(during == 0, "\(during) heap allocations in 10,000 forwarding decisions (IPv4 and IPv6) and their egress headers")
        #expect(checksum > 0)
        #expect(forwarder.statistics().rules[0].accepted.packets == 1250)
        #expect(forwarder.statistics().rules[0].outputs[8].packets == 1250, "the open follow output sends")
        #expect(forwarder.statistics().rules[0].outputs[9] == OutputCounter(suppressed: 1250), "the closed one does not")
        #expect(forwarder.statistics().rules[100].accepted.packets == 2500, "ff3e::8000:1 any-source, plain and with hop-by-hop")
        #expect(forwarder.statistics().rules[120].accepted.packets == 1250, "ff3e::8000:1 from its source")
        #expect(forwarder.statistics().rules[121...123].map(\.accepted.packets) == [2500, 2500, 2500], "range routes")
    }

    @Test(.enabled(if: !_isDebugAssertConfiguration(),
                   "allocation counts are only meaningful in optimized builds; `make test` runs this test with -c release"))
    func proxyRoutesAndRoutedHeadersAllocateNothing() throws {
        let probeCount = try Self.requireCountingInterposer()

        // A proxy eth0 -> eth1, eth2, eth3 for 239.0.0.0/8 beside an exact rule: the gate of each
        // downstream is looked up per datagram by (downstream, group) and judged on the source.
        let proxy = ProxyConfiguration(upstream: iface("eth0"), downstream: [iface("eth1"), iface("eth2"), iface("eth3")],
                                       groups: [try GroupPrefix(parsing: "239.0.0.0/8")])
        var book = RuleBook()
        try book.add(spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"]))
        let rules = Array(book.rules.values) + Proxies.routes(for: [proxy], besides: book.rules.values)
        let gates = [
            GateEntry(key: GateKey(interface: iface("eth1"), group: .v4(ip("239.5.0.1"))), filter: .anySource),
            GateEntry(key: GateKey(interface: iface("eth2"), group: .v4(ip("239.5.0.1"))),
                      filter: GateFilter(mode: .include, sources: [.v4(ip("198.18.1.1"))])),
            GateEntry(key: GateKey(interface: iface("eth3"), group: .v4(ip("239.5.0.2"))),
                      filter: GateFilter(mode: .exclude, sources: [.v4(ip("198.18.1.1"))])),
        ]
        var forwarder = Forwarder(plan: WorkerPlan(worker: WorkerID(0), version: 1,
                                                   ingress: [IngressAssignment(interface: iface("eth0"), fanoutGroup: nil)],
                                                   rules: rules, gateVersion: 1, gates: gates))
        let frames = [FrameBuilder(destination: ip("239.5.0.1"), ttl: 9).build(),
                      FrameBuilder(source: ip("198.18.1.2"), destination: ip("239.5.0.1"), ttl: 9).build(),
                      FrameBuilder(destination: ip("239.5.0.2"), ttl: 9).build(),
                      FrameBuilder(source: ip("198.18.1.2"), destination: ip("239.5.0.2"), ttl: 9, ipOptions: [0x94, 4, 0, 0]).build(),
                      FrameBuilder(destination: ip("239.5.0.1"), ttl: 1).build(),
                      FrameBuilder().build()]
        let template = UnsafeMutableRawPointer.allocate(byteCount: EgressFrame.templateBytes, alignment: 16)
        let header = UnsafeMutableRawPointer.allocate(byteCount: EgressFrame.maximumRoutedHeaderBytes, alignment: 16)
        defer { template.deallocate(); header.deallocate() }
        EgressFrame.writeRoutedTemplate(template, sourceMAC: MACAddress(2, 0, 0, 0, 0, 1))
        var checksum = 0
        MallocInterposerSwift.hook()
        for round in 0..<12_000 {
            frames[round % frames.count].withUnsafeBytes { bytes in
                if case let .forward(forwarding) = forwarder.decide(bytes, link: .ethernet, ingress: 0) {
                    for transmit in forwarder.transmits(for: forwarding) where transmit.routed {
                        checksum &+= EgressFrame.writeRoutedHeader(header, template: UnsafeRawPointer(template), headers: transmit.headers,
                                                                   payload: transmit.payload)
                            + Int(header.load(fromByteOffset: 22, as: UInt8.self))
                    }
                }
            }
        }
        MallocInterposerSwift.unhook()
        let during = MallocInterposerSwift.getStatistics().mallocCount - probeCount
        #expect(during == 0, "\(during) heap allocations in 12,000 decisions on a proxy route and their routed headers")
        #expect(checksum > 0)
        let outputs = forwarder.statistics().rules[1].outputs
        // Per 6 rounds: 239.5.0.1 from .1.1 -> eth1, eth2; from .1.2 -> eth1; 239.5.0.2 from .1.1 -> none; from .1.2 -> eth3.
        #expect(outputs.map(\.packets) == [4000, 2000, 2000])
        #expect(outputs.map(\.suppressed) == [4000, 6000, 6000])
        #expect(forwarder.drops[.ttlExceeded] == 2000)
    }
}
