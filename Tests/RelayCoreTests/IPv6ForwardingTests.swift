import Testing
@testable import RelayCore

@Suite struct IPv6ForwardingTests {
    static let mac = MACAddress(0x02, 0, 0, 0, 0, 0x21)

    @Test func mixedFamiliesOnOneInterfaceRouteApart() throws {
        let rules = [
            spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001:16"]),
            spec("eth0:[ff3e::8000:1]:5001", ["eth1:[ff3e::10:1]:6001:9", "eth1:239.10.1.2:6001:4"]),
            spec("eth0:[ff3e::8000:1]:5001", ["eth1:[ff05::20:1]:7001:3"], source: "[2001:db8:1::99]"),
            spec("eth0:[ff3e::8000:2]:5001", ["eth1:[2001:db8:2::5]:9000"]),
        ]
        var forwarder = Forwarder(plan: plan(rules))
        func outputs(_ frame: [UInt8]) -> [String] {
            frame.withUnsafeBytes { bytes in
                guard case let .forward(f) = forwarder.decide(bytes, link: .ethernet, ingress: 0) else { return [] }
                return forwarder.transmits(for: f).map { "\($0.destination.endpointText):\($0.port):\($0.ttl)" }
            }
        }
        #expect(outputs(FrameBuilder().build()) == ["239.10.1.1:6001:16"])
        #expect(outputs(FrameBuilder6().build()) == ["[ff3e::10:1]:6001:9", "239.10.1.2:6001:4"])
        #expect(outputs(FrameBuilder6(source: IPv6Address("2001:db8:1::99")!).build()) == ["[ff05::20:1]:7001:3"],
                "the source-specific rule wins for its source")
        #expect(outputs(FrameBuilder6(destination: IPv6Address("ff3e::8000:2")!).build()) == ["[2001:db8:2::5]:9000:64"])
        #expect(outputs(FrameBuilder6(destination: IPv6Address("ff3e::8000:3")!).build()) == [])
        #expect(outputs(FrameBuilder6(destinationPort: 5002).build()) == [])
        // An IPv4 group whose 32 bits equal an IPv6 group's low bits is another group.
        #expect(outputs(FrameBuilder(destination: IPv4Address(0xEF00_0001)).build()) == [])
        #expect(forwarder.drops[.noMatchingRule] == 3)
        let statistics = forwarder.statistics()
        #expect(statistics.rules.map(\.accepted.packets) == [1, 1, 1, 1])
    }

    @Test func ipv6FramesFromTemplatesMatchWholeFramesAndVerify() throws {
        let source = IPAddress("2001:db8:2::1")!
        for (group, payloadCount) in [("ff3e::10:1", 0), ("ff05::1:2", 1), ("ff3e::8000:ffff", 1316), ("ff3e::1", 7)] {
            let destination = IPAddress(group)!
            let payload = (0..<payloadCount).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let templated = EgressFrame.templatedBytes(sourceMAC: Self.mac, source: source, destination: destination, sourcePort: 40123,
                                                       destinationPort: 6001, ttl: 9, payload: payload)
            let whole = EgressFrame.bytes(.init(sourceMAC: Self.mac, source: source, destination: destination, sourcePort: 40123,
                                                destinationPort: 6001, ttl: 9), payload: payload)
            #expect(templated == whole, "\(group) with \(payloadCount) bytes")
            #expect(whole.count == 62 + payloadCount)
            #expect(Array(whole[0..<6]) == MACAddress.multicast(destination.v6!).array)
            #expect(whole[12] == 0x86 && whole[13] == 0xDD && whole[14] == 0x60 && whole[21] == 9)
            // The builder in these tests, written from the RFCs, makes the same bytes.
            let reference = FrameBuilder6(source: source.v6!, destination: destination.v6!, sourcePort: 40123, destinationPort: 6001,
                                          hopLimit: 9, payload: payload).build()
            #expect(Array(whole[12...]) == Array(reference[12...]), "same IPv6 and UDP bytes as the reference builder")
            whole.withUnsafeBytes { bytes in
                guard case let .datagram(datagram) = FrameParser.parse(bytes, link: .ethernet) else {
                    Issue.record("the relay's own IPv6 frame does not parse"); return
                }
                #expect(datagram.source == source && datagram.destination == destination && datagram.ttl == 9)
                #expect(datagram.payloadLength == payloadCount)
            }
        }
        #expect(EgressFrame.headerLength(for: .ipv6) == EgressFrame.ipv6HeaderBytes)
        #expect(EgressFrame.maximumHeaderBytes >= EgressFrame.ipv6HeaderBytes)
    }
}
