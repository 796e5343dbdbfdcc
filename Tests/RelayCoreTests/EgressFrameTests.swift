import PropertyBased
@testable import RelayCore
import Testing

/// `EgressFrame`: the per-datagram template path (what the worker and the simulator run) writes
/// the same bytes as the whole-frame builder, and what it writes parses back to the fields it
/// was given, with valid checksums, for any payload.
@Suite struct EgressFrameTests {
    static let mac = MACAddress(0x02, 0x11, 0x22, 0x33, 0x44, 0x55)

    @Test func templatePathEqualsTheWholeFrameBuilderAndParsesBack() async {
        await propertyCheck(
            count: 400,
            input: Gen.uint8().array(of: 0...1500), Gen.uint16(), Gen.uint16(), Gen.uint8(), Gen.uint32()
        ) { payload, sourcePort, destinationPort, ttl, host in
            let source = IPv4Address(198, 18, UInt8(truncatingIfNeeded: host >> 8), UInt8(truncatingIfNeeded: host))
            let group = IPv4Address(0xE000_0000 | (host & 0x0FFF_FFFF) | 0x0100_0000)
            let templated = EgressFrame.templatedBytes(sourceMAC: Self.mac, source: source, destination: group, sourcePort: sourcePort,
                                                       destinationPort: destinationPort, ttl: ttl, payload: payload)
            let whole = EgressFrame.bytes(.init(sourceMAC: Self.mac, source: source, destination: group, sourcePort: sourcePort,
                                                destinationPort: destinationPort, ttl: ttl), payload: payload)
            #expect(templated == whole)
            templated.withUnsafeBytes { bytes in
                guard case let .datagram(datagram) = FrameParser.parse(bytes, link: .ethernet) else {
                    Issue.record("the relay's own frame does not parse: \(FrameParser.parse(bytes, link: .ethernet))")
                    return
                }
                #expect(datagram.source == source && datagram.destination == group && datagram.ttl == ttl)
                #expect(datagram.sourcePort == sourcePort && datagram.destinationPort == destinationPort)
                #expect(Array(bytes[datagram.payloadOffset..<datagram.payloadOffset + datagram.payloadLength]) == payload)
                // Both checksums verify (a valid sum over the header, and over pseudo header + UDP).
                #expect(EgressFrame.checksum(UnsafeRawBufferPointer(rebasing: bytes[14..<34])) == 0)
                let udp = Array(bytes[34...])
                let pseudo = Array(bytes[26..<34]) + [0, 17, bytes[38], bytes[39]] + udp
                #expect(pseudo.withUnsafeBytes { EgressFrame.checksum($0) } == 0, "UDP checksum")
                #expect(bytes[40] != 0 || bytes[41] != 0, "a computed UDP checksum is never sent as 0")
            }
        }
    }

    @Test func headerFieldsAreTheDocumentedOnes() {
        let frame = EgressFrame.bytes(.init(sourceMAC: Self.mac, source: IPv4Address(198, 18, 2, 1),
                                            destination: IPv4Address(239, 129, 2, 3), sourcePort: 4000, destinationPort: 6000, ttl: 7),
                                      payload: [1, 2, 3])
        #expect(Array(frame[0..<6]) == [0x01, 0x00, 0x5E, 0x01, 0x02, 0x03], "multicast MAC: low 23 bits of the group")
        #expect(Array(frame[6..<12]) == Self.mac.array)
        #expect(Array(frame[12..<14]) == [0x08, 0x00])
        #expect(frame[14] == 0x45 && frame[22] == 7 && frame[23] == 17)
        #expect(Array(frame[18..<22]) == [0, 0, 0x40, 0], "identification 0, DF, offset 0")
        #expect(Array(frame[16..<18]) == [0, 31] && Array(frame[38..<40]) == [0, 11], "IPv4 total and UDP lengths")
        #expect(frame.count == 45)
    }

    @Test func vlanTaggedFramesParseToTheSameDatagram() {
        var fields = EgressFrame.Fields(sourceMAC: Self.mac, source: IPv4Address(198, 18, 1, 1),
                                        destination: IPv4Address(239, 1, 1, 1), sourcePort: 1, destinationPort: 5001, ttl: 1)
        let plain = EgressFrame.bytes(fields, payload: Array("abc".utf8))
        fields.vlan = 7
        let tagged = EgressFrame.bytes(fields, payload: Array("abc".utf8))
        #expect(tagged.count == plain.count + 4)
        #expect(Array(tagged[0..<12]) == Array(plain[0..<12]) && Array(tagged[12..<16]) == [0x81, 0x00, 0x00, 0x07])
        #expect(Array(tagged[16...]) == Array(plain[12...]))
    }

    @Test func segmentationRunsFollowTheKernelsRules() {
        var run = SegmentationRun(first: 700)
        let same = [run.admit(700), run.admit(700)]
        let longer = run.admit(701)
        let shorter = run.admit(300)
        let afterClose = run.admit(300)
        #expect(same == [true, true])
        #expect(!longer, "a longer datagram cannot follow")
        #expect(shorter && run.closed, "a shorter one closes the run")
        #expect(!afterClose && run.count == 4)
        var long = SegmentationRun(first: 100)
        while long.admit(100) {}
        #expect(long.count == SegmentationRun.maximumSegments)
        var big = SegmentationRun(first: 9000)
        while big.admit(9000) {}
        #expect(big.payloadBytes <= SegmentationRun.maximumBytes && big.count == 7)
    }
}

/// `EgressPolicy`: the decisions from interface facts.
@Suite struct EgressPolicyTests {
    static func facts(_ driver: String, physical: Bool = false, uso: Bool = true, ipv4: IPv4Address? = IPv4Address(198, 18, 2, 1),
                      hardwareType: UInt16 = 1) -> InterfaceFacts {
        InterfaceFacts(name: InterfaceName("out0")!, index: 3, hardwareType: hardwareType,
                       mac: hardwareType == 1 ? MACAddress(2, 0, 0, 0, 0, 1) : nil, ipv4: ipv4, mtu: 1500,
                       driver: driver, physical: physical, udpSegmentationOffload: uso)
    }

    @Test func autoSegmentsOnlyWhereTheDeviceSplitsBeforeTheWire() {
        #expect(!EgressPolicy.segmentation(Self.facts("veth"), setting: .auto).0, "veth passes super-frames on")
        #expect(!EgressPolicy.segmentation(Self.facts("bridge"), setting: .auto).0)
        #expect(EgressPolicy.segmentation(Self.facts("veth", uso: false), setting: .auto).0, "the kernel segments before it")
        #expect(EgressPolicy.segmentation(Self.facts("ixgbe", physical: true), setting: .auto).0)
        #expect(!EgressPolicy.segmentation(nil, setting: .auto).0)
        #expect(EgressPolicy.segmentation(Self.facts("veth"), setting: .on).0, "asked for explicitly")
        #expect(!EgressPolicy.segmentation(Self.facts("ixgbe", physical: true), setting: .off).0)
        #expect(EgressPolicy.segmentation(Self.facts("veth"), setting: .auto).1.contains("veth"), "the reason names the driver")
    }

    @Test func packetPathNeedsEthernetAndAnAddress() {
        #expect(EgressPolicy.path(Self.facts("veth"), mode: .packet).0 == .packet)
        #expect(EgressPolicy.path(Self.facts("veth"), mode: .udp) == (.udp, "--egress udp"))
        #expect(EgressPolicy.path(Self.facts("veth", ipv4: nil), mode: .packet) == (.udp, "no IPv4 address"))
        #expect(EgressPolicy.path(Self.facts("tun", hardwareType: 65534), mode: .packet).0 == .udp)
        #expect(EgressPolicy.path(nil, mode: .packet) == (.udp, "interface not found"))
    }

    @Test func factsRoundTripThroughJSONText() throws {
        let facts = Self.facts("veth")
        #expect(MACAddress("02:00:00:00:00:01") == facts.mac)
        #expect(facts.mac?.description == "02:00:00:00:00:01")
        #expect(MACAddress("02:00:00:00:00") == nil && MACAddress("02:00:00:00:00:0g") == nil)
    }
}
