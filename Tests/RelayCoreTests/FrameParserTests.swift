import PropertyBased
import Testing
@testable import RelayCore

@Suite struct FrameParserTests {
    @Test(arguments: [LinkType.ethernet, .linuxCooked, .linuxCooked2, .rawIPv4])
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
        #expect(parse(FrameBuilder(vlanTags: 3).build()) == .dropped(.notIPv4))
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
        #expect(parse(arp) == .dropped(.notIPv4))
        var ipv6 = frame; ipv6[12] = 0x86; ipv6[13] = 0xDD
        #expect(parse(ipv6) == .dropped(.notIPv4))

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
    /// buffer access), and a datagram's offsets always lie inside the buffer.
    @Test func arbitraryBytesNeverTrap() async {
        let links: [LinkType] = [.ethernet, .linuxCooked, .linuxCooked2, .rawIPv4]
        await propertyCheck(count: 3000, input: Gen.uint8().array(of: 0...90), Gen.int(in: 0...3)) { bytes, linkIndex in
            checkBounds(bytes, link: links[linkIndex])
        }
    }

    /// Valid frames with random single-byte corruptions exercise the deep paths.
    @Test func corruptedValidFramesNeverTrap() async {
        await propertyCheck(count: 3000, input: Gen.int(in: 0...80), Gen.uint8(), Gen.int(in: 0...60), Gen.int(in: 0...2)) {
            position, value, cut, tags in
            var frame = FrameBuilder(vlanTags: tags, payload: Array(repeating: 0xAB, count: 20)).build()
            frame[position % frame.count] = value
            frame.removeLast(min(cut, frame.count))
            checkBounds(frame, link: .ethernet)
        }
    }

    private func checkBounds(_ bytes: [UInt8], link: LinkType) {
        if case let .datagram(datagram) = parse(bytes, link: link) {
            #expect(datagram.ipOffset >= 0)
            #expect(datagram.payloadOffset >= datagram.ipOffset + 28)
            #expect(datagram.payloadOffset + datagram.payloadLength <= bytes.count)
            #expect(datagram.destination.isMulticast)
        }
    }
}
