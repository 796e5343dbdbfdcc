import PropertyBased
import Testing
@testable import RelayCore

@Suite struct FrameParserTests {
    @Test(arguments: [LinkType.ethernet, .linuxCooked, .linuxCooked2, .rawIP])
    func parsesMulticastUDPOnEveryLinkType(link: LinkType) throws {
        let builder = FrameBuilder(link: link)
        guard case let .datagram(datagram) = parse(builder.build(), link: link) else {
            Issue.record("expected a datagram"); return
        }
        #expect(datagram.source == builder.source)
        #expect(datagram.destination == builder.destination)
        #expect(datagram.sourcePort == 40000)
        #expect(datagram.destinationPort == 5001)
        #expect(datagram.ipOffset == builder.ipOffset)
        #expect(datagram.payloadOffset == builder.ipOffset + 28)
        #expect(datagram.payloadLength == builder.payload.count)
    }

    @Test func ttlOneFromALocalSenderIsForwardable() {
        guard case let .datagram(datagram) = parse(FrameBuilder(ttl: 1).build()) else {
            Issue.record("TTL 1 must not be dropped"); return
        }
        #expect(datagram.ttl == 1)
    }

    @Test func inlineVLANAndQinQTagsAreSkipped() {
        for tags in 1...2 {
            let builder = FrameBuilder(vlanTags: tags)
            guard case let .datagram(datagram) = parse(builder.build()) else {
                Issue.record("\(tags) tag(s)"); continue
            }
            #expect(datagram.ipOffset == 14 + 4 * tags)
        }
        #expect(parse(FrameBuilder(vlanTags: 3).build()) == .dropped(.notIP))
    }

    @Test func ipOptionsMovePayload() {
        let builder = FrameBuilder(ipOptions: [0x94, 0x04, 0x00, 0x00])  // router alert
        guard case let .datagram(datagram) = parse(builder.build()) else { Issue.record("options"); return }
        #expect(datagram.payloadOffset == 14 + 24 + 8)
    }

    @Test func ethernetPaddingIsNotAnError() {
        let builder = FrameBuilder(payload: [1, 2], etherPadding: 16)
        guard case let .datagram(datagram) = parse(builder.build()) else { Issue.record("padded"); return }
        #expect(datagram.payloadLength == 2)
    }

    @Test func outgoingCookedFramesAreOwnTransmissions() {
        #expect(parse(FrameBuilder(link: .linuxCooked, outgoing: true).build(), link: .linuxCooked) == .dropped(.ownTransmission))
        #expect(parse(FrameBuilder(link: .linuxCooked2, outgoing: true).build(), link: .linuxCooked2) == .dropped(.ownTransmission))
    }

    @Test func eachDropReasonIsNamed() {
        var frame = FrameBuilder().build()
        #expect(parse(Array(frame[0..<10])) == .dropped(.truncated))
        #expect(parse(Array(frame[0..<30])) == .dropped(.truncated))
        #expect(parse(Array(frame.dropLast(3))) == .dropped(.truncated))

        var arp = frame; arp[12] = 0x08; arp[13] = 0x06
        #expect(parse(arp) == .dropped(.notIP))
        var ipv6 = frame; ipv6[12] = 0x86; ipv6[13] = 0xDD
        #expect(parse(ipv6) == .dropped(.notIP))

        var badIHL = frame; badIHL[14] = 0x44
        #expect(parse(badIHL) == .dropped(.badIPv4Header))

        frame[14 + 8] = 7  // change TTL without fixing the checksum
        #expect(parse(frame) == .dropped(.badChecksum))

        #expect(parse(FrameBuilder(protocolNumber: 6).build()) == .dropped(.notUDP))
        #expect(parse(FrameBuilder(destination: ip("198.18.2.2")).build()) == .dropped(.notMulticast))
        #expect(parse(FrameBuilder(flagsAndOffset: 0x2000).build()) == .dropped(.fragment))
        #expect(parse(FrameBuilder(flagsAndOffset: 0x0010).build()) == .dropped(.fragment))

        var udpTooLong = FrameBuilder().build()
        udpTooLong[14 + 20 + 4] = 0xFF
        #expect(parse(udpTooLong) == .dropped(.badLength))
        var udpTooShort = FrameBuilder().build()
        udpTooShort[14 + 20 + 4] = 0; udpTooShort[14 + 20 + 5] = 4
        #expect(parse(udpTooShort) == .dropped(.badLength))
    }

    @Test func inconsistentIPTotalLengthIsBadLength() {
        var builder = FrameBuilder()
        builder.payload = []
        var frame = builder.build()
        // total length 24 < header 20 + udp 8: rewrite and fix checksum
        frame[14 + 2] = 0; frame[14 + 3] = 24
        frame[14 + 10] = 0; frame[14 + 11] = 0
        let checksum = frame[14..<34].withUnsafeBytes { FrameParser.ipv4HeaderChecksum($0) }
        frame[14 + 10] = UInt8(checksum >> 8); frame[14 + 11] = UInt8(checksum & 0xFF)
        #expect(parse(frame) == .dropped(.badLength))
    }

    /// Arbitrary bytes on every link type: never a trap (the debug build checks every
    /// buffer access), and a datagram returned is what its bytes say (`expectDatagramMatchesBytes`).
    @Test("arbitrary bytes on every link type never trap; a datagram returned is what its bytes say")
    func arbitraryBytesNeverTrap() async {
        let links: [LinkType] = [.ethernet, .linuxCooked, .linuxCooked2, .rawIP]
        await propertyCheck(count: 3000, input: Gen.uint8().array(of: 0...90), Gen.int(in: 0...3)) { bytes, linkIndex in
            expectDatagramMatchesBytes(bytes, link: links[linkIndex])
        }
    }

    /// Valid frames with random single-byte corruptions exercise the deep paths.
    @Test("corrupted and cut valid frames never trap; a datagram returned is what its bytes say")
    func corruptedValidFramesNeverTrap() async {
        await propertyCheck(count: 3000, input: Gen.int(in: 0...80), Gen.uint8(), Gen.int(in: 0...60), Gen.int(in: 0...2)) {
            position, value, cut, tags in
            var frame = FrameBuilder(vlanTags: tags, payload: Array(repeating: 0xAB, count: 20)).build()
            frame[position % frame.count] = value
            frame.removeLast(min(cut, frame.count))
            expectDatagramMatchesBytes(frame, link: .ethernet)
        }
    }

    /// A datagram the parser returns is what the bytes say at the offsets it reports: the IPv4
    /// header where the link type puts it (Ethernet: after 0-2 VLAN tags; cooked: 16 or 20
    /// bytes; raw: 0), version 4, protocol UDP, the addresses, ports and TTL read from there,
    /// the payload right after the UDP header and exactly as long as the UDP length says.
    private func expectDatagramMatchesBytes(_ bytes: [UInt8], link: LinkType) {
        guard case let .datagram(datagram) = parse(bytes, link: link) else { return }
        let ip = datagram.ipOffset
        let linkOffsets: [Int] = switch link {
        case .ethernet: [14, 18, 22]
        case .linuxCooked: [16]
        case .linuxCooked2: [20]
        case .rawIP: [0]
        }
        #expect(linkOffsets.contains(ip), "IPv4 header at \(ip) on \(link)")
        guard linkOffsets.contains(ip), bytes.count >= ip + 20 else {
            Issue.record("IPv4 header at \(ip) does not fit in \(bytes.count) bytes")
            return
        }
        func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }
        func address(_ at: Int) -> IPv4Address { IPv4Address(UInt32(u16(at)) << 16 | UInt32(u16(at + 2))) }
        let headerLength = Int(bytes[ip] & 0x0F) * 4
        #expect(bytes[ip] >> 4 == 4, "version nibble \(bytes[ip] >> 4)")
        #expect(bytes[ip + 9] == 17, "protocol \(bytes[ip + 9])")
        #expect(datagram.ttl == bytes[ip + 8])
        #expect(datagram.source == address(ip + 12))
        #expect(datagram.destination == address(ip + 16))
        #expect(datagram.destination.isMulticast)
        let udp = ip + headerLength
        #expect(datagram.payloadOffset == udp + 8, "payload at \(datagram.payloadOffset), UDP header at \(udp)")
        guard bytes.count >= udp + 8 else {
            Issue.record("UDP header at \(udp) does not fit in \(bytes.count) bytes")
            return
        }
        #expect(datagram.sourcePort == u16(udp))
        #expect(datagram.destinationPort == u16(udp + 2))
        #expect(datagram.payloadLength == Int(u16(udp + 4)) - 8, "payload \(datagram.payloadLength) bytes, UDP length \(u16(udp + 4))")
        #expect(Int(u16(udp + 4)) <= Int(u16(ip + 2)) - headerLength, "UDP length past the IPv4 total length")
        #expect(u16(ip + 6) & 0x3FFF == 0, "a fragment was returned as a datagram")
        #expect(datagram.payloadOffset + datagram.payloadLength <= bytes.count)
    }
}
