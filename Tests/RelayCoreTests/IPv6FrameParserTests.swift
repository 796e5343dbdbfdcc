import Testing
@testable import RelayCore

@Suite struct IPv6FrameParserTests {
    @Test(arguments: [LinkType.ethernet, .linuxCooked, .linuxCooked2, .rawIP])
    func parsesIPv6MulticastUDPOnEveryLinkType(link: LinkType) throws {
        let builder = FrameBuilder6(link: link, hopLimit: 7)
        guard case let .datagram(datagram) = parse(builder.build(), link: link) else {
            Issue.record("expected a datagram: \(parse(builder.build(), link: link))"); return
        }
        #expect(datagram.source == .v6(builder.source))
        #expect(datagram.destination == .v6(builder.destination))
        #expect(datagram.sourcePort == 40000 && datagram.destinationPort == 5001)
        #expect(datagram.ttl == 7)
        #expect(datagram.ipOffset == builder.ipOffset)
        #expect(datagram.payloadOffset == builder.ipOffset + 48)
        #expect(datagram.payloadLength == builder.payload.count)
    }

    @Test func walksHopByHopRoutingAndDestinationOptions() {
        let chains: [[FrameBuilder6.Extension]] = [
            [.init(type: 0)],                                       // MLD-style Router Alert header
            [.init(type: 0), .init(type: 60, units: 1)],
            [.init(type: 0), .init(type: 43, units: 2), .init(type: 60)],
            Array(repeating: .init(type: 60), count: FrameParser.maximumExtensionHeaders),
        ]
        for chain in chains {
            let builder = FrameBuilder6(vlanTags: 1, extensions: chain)
            guard case let .datagram(datagram) = parse(builder.build()) else {
                Issue.record("chain \(chain.map(\.type)): \(parse(builder.build()))"); continue
            }
            #expect(datagram.payloadOffset == builder.payloadOffset, "chain \(chain.map(\.type))")
            #expect(datagram.payloadLength == builder.payload.count)
        }
    }

    @Test func eachIPv6DropReasonIsNamed() {
        let good = FrameBuilder6()
        #expect(parse(FrameBuilder6(extensions: [.init(type: 44)]).build()) == .dropped(.fragment))
        #expect(parse(FrameBuilder6(extensions: [.init(type: 60), .init(type: 44)]).build()) == .dropped(.fragment))
        #expect(parse(FrameBuilder6(upperProtocol: 58).build()) == .dropped(.notUDP))  // ICMPv6 (MLD)
        #expect(parse(FrameBuilder6(upperProtocol: 50).build()) == .dropped(.notUDP))  // ESP
        #expect(parse(FrameBuilder6(upperProtocol: 59).build()) == .dropped(.notUDP))  // No Next Header
        #expect(parse(FrameBuilder6(extensions: [.init(type: 60), .init(type: 0)]).build()) == .dropped(.badIPv6Header))
        let tooMany = Array(repeating: FrameBuilder6.Extension(type: 60), count: FrameParser.maximumExtensionHeaders + 1)
        #expect(parse(FrameBuilder6(extensions: tooMany).build()) == .dropped(.badIPv6Header))
        #expect(parse(FrameBuilder6(zeroChecksum: true).build()) == .dropped(.zeroUDPChecksum))
        #expect(parse(FrameBuilder6(destination: IPv6Address("2001:db8::1")!).build()) == .dropped(.notMulticast))
        // Payload length 0 (a jumbogram), longer than the frame, shorter than UDP claims.
        #expect(parse(FrameBuilder6(payloadLengthDelta: -(8 + good.payload.count)).build()) == .dropped(.badLength))
        #expect(parse(FrameBuilder6(payloadLengthDelta: 1).build()) == .dropped(.truncated))
        #expect(parse(FrameBuilder6(payloadLengthDelta: -1).build()) == .dropped(.badLength))
        // An extension header running past the payload.
        let longHeader = FrameBuilder6(extensions: [.init(type: 60, units: 1)])
        let cut = -(16 + 8 + longHeader.payload.count) + 8  // the payload ends inside the 16-byte header
        #expect(parse(FrameBuilder6(extensions: [.init(type: 60, units: 1)], payloadLengthDelta: cut).build()) == .dropped(.badLength))
        let frame = good.build()
        #expect(parse(Array(frame.prefix(14 + 39))) == .dropped(.truncated))
        #expect(parse(Array(frame.dropLast())) == .dropped(.truncated))
        var wrongVersion = frame
        wrongVersion[14] = 0x40
        #expect(parse(wrongVersion) == .dropped(.notIP))
    }

    @Test func ethernetPaddingAfterTheIPv6PayloadIsNotAnError() {
        guard case let .datagram(datagram) = parse(FrameBuilder6(payload: [1, 2], etherPadding: 20).build()) else {
            Issue.record("padded"); return
        }
        #expect(datagram.payloadLength == 2)
    }

    @Test func rawIPDispatchesOnTheVersionNibble() {
        #expect(parse(FrameBuilder(link: .rawIP).build(), link: .rawIP) != .dropped(.notIP))
        if case .datagram = parse(FrameBuilder6(link: .rawIP).build(), link: .rawIP) {} else { Issue.record("raw IPv6") }
        #expect(parse([0x50] + [UInt8](repeating: 0, count: 40), link: .rawIP) == .dropped(.notIP))
        #expect(parse([], link: .rawIP) == .dropped(.truncated))
    }
}
