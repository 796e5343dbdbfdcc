import PropertyBased
import Testing
@testable import RelayCore

/// Builds messages from a byte recipe, so generated messages shrink with the recipe.
struct ListenerRecipe {
    var bytes: [UInt8]
    var index = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func next() -> UInt8 {
        defer { index += 1 }
        return index < bytes.count ? bytes[index] : 0
    }

    mutating func next16() -> UInt16 { UInt16(next()) << 8 | UInt16(next()) }

    mutating func group(_ family: AddressFamily) -> IPAddress {
        family == .ipv4 ? .v4(IPv4Address(239, 1, next(), next()))
            : .v6(IPv6Address(0xFF3E, 0, 0, 0, 0, 0, 0x8000, UInt16(next())))
    }

    mutating func source(_ family: AddressFamily) -> IPAddress {
        family == .ipv4 ? .v4(IPv4Address(198, 18, next(), next() | 1))
            : .v6(IPv6Address(0x2001, 0xDB8, 0, 0, 0, 0, 0, UInt16(next()) + 1))
    }

    mutating func sources(_ family: AddressFamily) -> [IPAddress] { (0..<Int(next() % 4)).map { _ in source(family) } }

    mutating func message(_ family: AddressFamily) -> ListenerMessage {
        let v3Code = family == .ipv4 ? UInt16(next()) : next16()
        switch next() % (family == .ipv4 ? 7 : 6) {
        case 0:
            let group: IPAddress? = next() % 2 == 0 ? nil : self.group(family)
            return .query(ListenerQuery(version: .v3, group: group, maxResponseCode: v3Code,
                                        suppressRouterSideProcessing: next() % 2 == 0, robustness: next() % 8,
                                        queryIntervalCode: next(), sources: group == nil ? [] : sources(family)))
        case 1:
            let group: IPAddress? = next() % 2 == 0 ? nil : self.group(family)
            let code = family == .ipv4 ? UInt16(next() | 1) : next16()
            return .query(ListenerQuery(version: .v2, group: group, maxResponseCode: code))
        case 2: return .report(.v2, group: group(family))
        case 3: return .leave(group: group(family))
        case 4, 5:
            let records = (0..<Int(next() % 4)).map { _ in
                GroupRecord(GroupRecordType(rawValue: next() % 6 + 1)!, group: group(family), sources: sources(family),
                            auxiliaryData: next() % 4 == 0 ? [1, 2, 3, 4] : [])
            }
            return .v3Report(records)
        default: return next() % 2 == 0 ? .report(.v1, group: group(family)) : .query(ListenerQuery(version: .v1, maxResponseCode: 0))
        }
    }
}

@Suite struct ListenerCodecTests {
    static let linkLocal = IPv6Address("fe80::1")!
    static let allNodes = IPv6Address("ff02::1")!
    static let mac = MACAddress(0x02, 0, 0, 0, 0, 0x01)

    // MARK: exponential codes (RFC 3376 4.1.1, 4.1.7; RFC 3810 5.1.3)

    @Test func eightBitCodesRoundTrip() {
        for code in 0...255 {
            #expect(ExponentialCode.encode8(ExponentialCode.decode8(UInt8(code))) == UInt8(code))
        }
        #expect(ExponentialCode.decode8(0x7F) == 127)
        #expect(ExponentialCode.decode8(0x80) == 128)
        #expect(ExponentialCode.decode8(0xFF) == 31744)
        #expect(ExponentialCode.encode8(125) == 125)
        #expect(ExponentialCode.encode8(1_000_000) == 0xFF)
    }

    @Test func sixteenBitCodesRoundTrip() {
        for code in 0...65535 {
            #expect(ExponentialCode.encode16(ExponentialCode.decode16(UInt16(code))) == UInt16(code))
        }
        #expect(ExponentialCode.decode16(0x8000) == 32768)
        #expect(ExponentialCode.decode16(0xFFFF) == 8_387_584)
    }

    /// Encoding rounds down, never by more than one mantissa step (1/16 or 1/4096).
    @Test func encodingRoundsDownByLessThanOneStep() async {
        await propertyCheck(count: 2000, input: Gen.int(in: 0...40000), Gen.int(in: 0...9_000_000)) { small, large in
            let v8 = ExponentialCode.decode8(ExponentialCode.encode8(small))
            #expect(v8 <= small && (small > 31744 || small - v8 <= max(small / 16, 0)))
            let v16 = ExponentialCode.decode16(ExponentialCode.encode16(large))
            #expect(v16 <= large && (large > 8_387_584 || large - v16 <= large / 4096))
        }
    }

    // MARK: known bytes, written by hand from the RFC layouts (checksums computed by hand)

    @Test func igmpVectors() {
        let group = IPAddress.v4(IPv4Address(239, 1, 1, 1))
        let vectors: [([UInt8], ListenerMessage)] = [
            // RFC 2236 2: type 0x16, max resp 0, checksum, group.
            ([0x16, 0x00, 0xF9, 0xFC, 0xEF, 0x01, 0x01, 0x01], .report(.v2, group: group)),
            ([0x17, 0x00, 0xF8, 0xFC, 0xEF, 0x01, 0x01, 0x01], .leave(group: group)),
            // RFC 3376 4.1: general query, Max Resp Code 100 (10 s), QRV 2, QQIC 125, no sources.
            ([0x11, 0x64, 0xEC, 0x1E, 0, 0, 0, 0, 0x02, 0x7D, 0, 0],
             .query(ListenerQuery(version: .v3, maxResponseCode: 100, robustness: 2, queryIntervalCode: 125))),
            // RFC 3376 4.2: one record, CHANGE_TO_EXCLUDE_MODE {} for 239.1.1.1.
            ([0x22, 0x00, 0xE9, 0xFB, 0, 0, 0, 1, 0x04, 0x00, 0, 0, 0xEF, 0x01, 0x01, 0x01],
             .v3Report([GroupRecord(.changeToExclude, group: group)])),
        ]
        for (bytes, message) in vectors {
            #expect(IGMPCodec.decode(bytes) == .success(message))
            #expect(IGMPCodec.encode(message) == bytes)
        }
    }

    @Test func mldVector() {
        // RFC 3810 5.1: general query from fe80::1 to ff02::1, Max Resp Code 10000 ms, QRV 2,
        // QQIC 125; checksum over the pseudo-header computed by hand.
        let bytes: [UInt8] = [0x82, 0x00, 0x56, 0x96, 0x27, 0x10, 0, 0] + Array(repeating: 0, count: 16) + [0x02, 0x7D, 0, 0]
        let message = ListenerMessage.query(ListenerQuery(version: .v3, maxResponseCode: 10000, robustness: 2, queryIntervalCode: 125))
        #expect(MLDCodec.decode(bytes, source: Self.linkLocal, destination: Self.allNodes) == .success(message))
        #expect(MLDCodec.encode(message, source: Self.linkLocal, destination: Self.allNodes) == bytes)
        // The pseudo-header counts: the same bytes from another source fail.
        #expect(MLDCodec.decode(bytes, source: IPv6Address("fe80::2")!, destination: Self.allNodes) == .failure(.badChecksum))
        if case let .query(query) = message {
            #expect(query.maxResponseTime(.ipv6) == .seconds(10))
            #expect(query.queryInterval == .seconds(125))
        }
    }

    /// The IGMPv2 general queries in traces/real/tcpreplay-test.pcap (frames as tcpdump -xx
    /// prints them; no Router Alert, which v2 did not require). The first of them carries a
    /// bad IP header checksum (tcpdump: "bad cksum 2fb4 (->2eb4)"), the second the right one.
    @Test func igmpV2QueryFromTheRealTrace() {
        func frame(_ checksumHigh: UInt8) -> [UInt8] {
            [0x01, 0x00, 0x5E, 0x00, 0x00, 0x01, 0x00, 0x22, 0x33, 0x44, 0x55, 0x66, 0x08, 0x00, 0x45, 0x00,
             0x00, 0x1C, 0x65, 0x51, 0x00, 0x00, 0x01, 0x02, checksumHigh, 0xB4, 0xEB, 0xF7, 0x59, 0xE2, 0xE0, 0x00,
             0x00, 0x01, 0x11, 0x64, 0xEE, 0x9B, 0x00, 0x00, 0x00, 0x00] + Array(repeating: 0, count: 18)
        }
        #expect(ListenerFrame.extract(frame(0x2F)) == .failure(.badIPChecksum))
        let frame = frame(0x2E)
        guard case let .success(received) = ListenerFrame.extract(frame) else {
            Issue.record("\(ListenerFrame.extract(frame))"); return
        }
        #expect(received.message == .query(ListenerQuery(version: .v2, maxResponseCode: 100)))
        #expect(received.source == .v4(IPv4Address(235, 247, 89, 226)))
        #expect(received.destination == .v4(IPv4Address(224, 0, 0, 1)))
        #expect(!received.routerAlert && received.hopLimit == 1)
        #expect(received.sourceMAC == MACAddress(0x00, 0x22, 0x33, 0x44, 0x55, 0x66))
        if case let .query(query) = received.message { #expect(query.maxResponseTime(.ipv4) == .seconds(10)) }
    }

    // MARK: frames built

    @Test func ipv4QueryFrameLayout() {
        let query = ListenerMessage.query(ListenerQuery(version: .v3, maxResponseCode: 100, robustness: 2, queryIntervalCode: 125))
        let frame = ListenerFrame.build(query, sourceMAC: Self.mac, source: .v4(IPv4Address(10, 0, 0, 1)))
        #expect(Array(frame[0..<6]) == [0x01, 0x00, 0x5E, 0x00, 0x00, 0x01])
        #expect(Array(frame[6..<14]) == [0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00])
        #expect(frame[14] == 0x46 && frame[22] == 1 && frame[23] == 2)  // IHL 6, TTL 1, IGMP
        #expect(Array(frame[34..<38]) == [0x94, 0x04, 0x00, 0x00])  // RFC 2113 Router Alert
        #expect(Array(frame[38...]) == [0x11, 0x64, 0xEC, 0x1E, 0, 0, 0, 0, 0x02, 0x7D, 0, 0])
        #expect(InternetChecksum.checksum(frame[14..<38]) == 0)
        #expect(frame.count == 50)
    }

    @Test func ipv6QueryFrameLayout() {
        let query = ListenerMessage.query(ListenerQuery(version: .v3, maxResponseCode: 10000, robustness: 2, queryIntervalCode: 125))
        let frame = ListenerFrame.build(query, sourceMAC: Self.mac, source: .v6(Self.linkLocal))
        #expect(Array(frame[0..<6]) == [0x33, 0x33, 0, 0, 0, 1])
        #expect(Array(frame[12..<14]) == [0x86, 0xDD])
        #expect(frame[14] == 0x60 && frame[20] == 0 && frame[21] == 1)  // next header hop-by-hop, hop limit 1
        #expect(Array(frame[18..<20]) == [0, 36])
        #expect(Array(frame[54..<62]) == [58, 0, 5, 2, 0, 0, 1, 0])  // RFC 2711 Router Alert (MLD), PadN
        #expect(Array(frame[62...]) == [0x82, 0x00, 0x56, 0x96, 0x27, 0x10, 0, 0] + Array(repeating: 0, count: 16) + [0x02, 0x7D, 0, 0])
    }

    @Test func multicastMACs() {
        #expect(ListenerFrame.multicastMAC(.v4(IPv4Address(239, 129, 2, 3))) == MACAddress(0x01, 0x00, 0x5E, 0x01, 0x02, 0x03))
        #expect(ListenerFrame.multicastMAC(.v6(IPv6Address("ff3e::8000:1234")!)) == MACAddress(0x33, 0x33, 0x80, 0x00, 0x12, 0x34))
    }

    // MARK: round trips

    @Test func messagesRoundTripThroughCodecsAndFrames() async {
        await propertyCheck(count: 1000, input: Gen.uint8().array(of: 0...80), Gen.bool) { recipe, v6 in
            var r = ListenerRecipe(recipe)
            let family: AddressFamily = v6 ? .ipv6 : .ipv4
            let message = r.message(family)
            let source: IPAddress = v6 ? .v6(Self.linkLocal) : .v4(IPv4Address(10, 0, 0, 9))
            let destination = message.destination(family)
            switch (source, destination) {
            case let (.v6(s), .v6(d)):
                #expect(MLDCodec.decode(MLDCodec.encode(message, source: s, destination: d), source: s, destination: d) == .success(message))
            default:
                #expect(IGMPCodec.decode(IGMPCodec.encode(message)) == .success(message))
            }
            var frame = ListenerFrame.build(message, sourceMAC: Self.mac, source: source)
            let expected = ListenerFrame.Received(message: message, source: source, destination: destination, hopLimit: 1,
                                                  routerAlert: true, sourceMAC: Self.mac)
            #expect(ListenerFrame.extract(frame) == .success(expected))
            // Tagged (802.1Q, VLAN 42) and padded to 64 bytes: the same message.
            frame.insert(contentsOf: [0x81, 0x00, 0x00, 0x2A], at: 12)
            frame += Array(repeating: 0, count: max(0, 64 - frame.count))
            var tagged = expected
            tagged.vlan = 42
            #expect(ListenerFrame.extract(frame) == .success(tagged))
        }
    }

    // MARK: refusals

    static func v4Frame(_ message: ListenerMessage, ttl: UInt8 = 1, routerAlert: Bool = true,
                        fragment: UInt16 = 0, proto: UInt8 = 2) -> [UInt8] {
        let payload = IGMPCodec.encode(message)
        var header: [UInt8] = [routerAlert ? 0x46 : 0x45, 0xC0]
        header.appendBigEndian(UInt16((routerAlert ? 24 : 20) + payload.count))
        header += [0, 0]
        header.appendBigEndian(fragment)
        header += [ttl, proto, 0, 0, 10, 0, 0, 1]
        header.appendBigEndian(message.destination(.ipv4).v4!.value)
        if routerAlert { header += [0x94, 0x04, 0, 0] }
        let checksum = InternetChecksum.checksum(header)
        header[10] = UInt8(checksum >> 8)
        header[11] = UInt8(truncatingIfNeeded: checksum)
        return [1, 0, 0x5E, 0, 0, 1] + Self.mac.array + [0x08, 0x00] + header + payload
    }

    static func v6Frame(_ message: ListenerMessage, source: IPv6Address = linkLocal, hopLimit: UInt8 = 1,
                        routerAlert: Bool = true) -> [UInt8] {
        var frame = ListenerFrame.build(message, sourceMAC: mac, source: .v6(source))
        frame[21] = hopLimit
        if !routerAlert { frame[56] = 1 }  // the option becomes a PadN of the same length
        return frame
    }

    @Test func refusalsHaveReasons() {
        let group = IPAddress.v4(IPv4Address(239, 1, 1, 1))
        let v3Report = ListenerMessage.v3Report([GroupRecord(.changeToExclude, group: group)])
        func refusal(_ frame: [UInt8]) -> ListenerRefusal? {
            if case let .failure(reason) = ListenerFrame.extract(frame) { return reason }
            return nil
        }
        #expect(IGMPCodec.decode([0x16, 0x00, 0xF9, 0xFD, 0xEF, 0x01, 0x01, 0x01]) == .failure(.badChecksum))
        #expect(IGMPCodec.decode([0x16, 0x00, 0xF9]) == .failure(.truncated))
        #expect(IGMPCodec.decode(IGMPCodec.encode(.report(.v2, group: .v4(IPv4Address(10, 1, 1, 1))))) == .failure(.groupNotMulticast))
        var unknown: [UInt8] = [0x30, 0, 0, 0, 0xEF, 1, 1, 1]
        let c = InternetChecksum.checksum(unknown)
        unknown[2] = UInt8(c >> 8); unknown[3] = UInt8(c & 0xFF)
        #expect(IGMPCodec.decode(unknown) == .failure(.unknownType))
        var nine: [UInt8] = [0x11, 0x64, 0, 0, 0, 0, 0, 0, 0, 0]
        let c9 = InternetChecksum.checksum(nine)
        nine[2] = UInt8(c9 >> 8); nine[3] = UInt8(c9 & 0xFF)
        #expect(IGMPCodec.decode(nine) == .failure(.badLength))  // RFC 3376 7.1: 9-11 bytes
        var badRecord = IGMPCodec.encode(v3Report)
        badRecord[8] = 7; badRecord[2] = 0; badRecord[3] = 0
        let c7 = InternetChecksum.checksum(badRecord)
        badRecord[2] = UInt8(c7 >> 8); badRecord[3] = UInt8(c7 & 0xFF)
        #expect(IGMPCodec.decode(badRecord) == .failure(.unknownRecordType))

        #expect(refusal(Self.v4Frame(v3Report)) == nil)
        #expect(refusal(Self.v4Frame(v3Report, routerAlert: false)) == .missingRouterAlert)
        #expect(refusal(Self.v4Frame(.report(.v2, group: group), routerAlert: false)) == nil)
        #expect(refusal(Self.v4Frame(v3Report, ttl: 2)) == .hopLimitNotOne)
        #expect(refusal(Self.v4Frame(v3Report, fragment: 0x2000)) == .fragment)
        #expect(refusal(Self.v4Frame(v3Report, proto: 17)) == .notListenerProtocol)
        var badIP = Self.v4Frame(v3Report)
        badIP[24] ^= 1
        #expect(refusal(badIP) == .badIPChecksum)
        #expect(refusal(Array(Self.v4Frame(v3Report).dropLast())) == .truncated)

        let mld = ListenerMessage.report(.v2, group: .v6(IPv6Address("ff3e::1")!))
        #expect(refusal(Self.v6Frame(mld)) == nil)
        #expect(refusal(Self.v6Frame(mld, source: IPv6Address(high: 0, low: 0))) == nil)  // RFC 3810 5.2.13: :: is fine for reports
        #expect(refusal(Self.v6Frame(mld, source: IPv6Address("2001:db8::1")!)) == .sourceNotLinkLocal)
        #expect(refusal(Self.v6Frame(.query(ListenerQuery(version: .v3, maxResponseCode: 1000)), source: IPv6Address(high: 0, low: 0)))
                == .sourceNotLinkLocal)
        #expect(refusal(Self.v6Frame(mld, hopLimit: 255)) == .hopLimitNotOne)
        #expect(refusal(Self.v6Frame(mld, routerAlert: false)) == .missingRouterAlert)
        var corrupted = Self.v6Frame(mld)
        corrupted[corrupted.count - 1] ^= 0x40
        #expect(refusal(corrupted) == .badChecksum)
        #expect(refusal([0, 1, 2]) == .truncated)
        #expect(refusal(Array(repeating: 0, count: 60)) == .notListenerProtocol)
    }

    // MARK: never trap

    @Test func decodersNeverTrapOnAnyBytes() async {
        await propertyCheck(count: 3000, input: Gen.uint8().array(of: 0...120), Gen.int(in: 0...3)) { bytes, mode in
            var input = bytes
            switch mode {
            case 0: _ = IGMPCodec.decode(input)
            case 1: _ = MLDCodec.decode(input, source: Self.linkLocal, destination: Self.allNodes)
            case 2:
                input = [1, 0, 0x5E, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x08, 0x00] + input
                _ = ListenerFrame.extract(input)
            default:
                input = [0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xDD] + input
                _ = ListenerFrame.extract(input)
            }
        }
    }

    /// Valid frames with one byte changed or cut: refused with a reason or decoded, never a trap,
    /// and whatever decodes re-encodes to a frame that decodes the same.
    @Test func mutatedFramesNeverTrap() async {
        await propertyCheck(count: 2000, input: Gen.uint8().array(of: 0...40), Gen.bool, Gen.int(in: 0...200), Gen.uint8()) {
            recipe, v6, position, value in
            var r = ListenerRecipe(recipe)
            let family: AddressFamily = v6 ? .ipv6 : .ipv4
            let source: IPAddress = v6 ? .v6(Self.linkLocal) : .v4(IPv4Address(10, 0, 0, 9))
            var frame = ListenerFrame.build(r.message(family), sourceMAC: Self.mac, source: source)
            if position < frame.count { frame[position] = value } else { frame = Array(frame.prefix(position % max(frame.count, 1))) }
            if case let .success(received) = ListenerFrame.extract(frame) {
                let again = ListenerFrame.build(received.message, sourceMAC: received.sourceMAC, source: received.source,
                                                destination: received.destination)
                #expect(ListenerFrame.extract(again).map(\.message) == .success(received.message))
            }
        }
    }
}
