import FuzzChecks
import PropertyBased
@testable import RelayCore
import Testing

/// `EgressFrame.checksumCarry`: a relayed copy's UDP checksum is carried on from the received
/// one (RFC 1624), for every family pair (remap across families included). A datagram whose
/// checksum verifies leaves with exactly the bytes a checksum summed over its payload gives; one
/// corrupted on the way to the relay leaves with a checksum that still fails at the receiver;
/// IPv4 without a checksum and a checksum left to offload get one summed from the payload.
/// Checksums are checked with FuzzChecks' `udpChecksumVerifies` and `partialPseudoSum`, the
/// egress fuzz target's own.
@Suite struct ChecksumCarryTests {
    static let sender = MACAddress(0x02, 0, 0, 0, 0, 0x10)
    static let relay = MACAddress(0x02, 0x11, 0x22, 0x33, 0x44, 0x55)

    /// A unicast source and a multicast group of one family, from a number.
    static func endpoints(v6: Bool, _ host: UInt32) -> (source: IPAddress, group: IPAddress) {
        if v6 {
            return (.v6(IPv6Address(high: 0x2001_0db8_0000_0000 | UInt64(host >> 16), low: UInt64(host) << 8 | 1)),
                    .v6(IPv6Address(high: 0xFF3E_0000_0000_0000, low: UInt64(host))))
        }
        return (.v4(IPv4Address(198, 18, UInt8(truncatingIfNeeded: host >> 8), UInt8(truncatingIfNeeded: host))),
                .v4(IPv4Address(0xE100_0000 | (host & 0x00FF_FFFF))))
    }

    /// A sender's frame with a valid UDP checksum.
    static func sent(v6: Bool, host: UInt32, sourcePort: UInt16, payload: [UInt8]) -> [UInt8] {
        let (source, group) = endpoints(v6: v6, host)
        return EgressFrame.bytes(.init(sourceMAC: sender, source: source, destination: group, sourcePort: sourcePort,
                                       destinationPort: 5001, ttl: 9), payload: payload)
    }

    /// The copy the relay sends for `frame` to an output of family `v6` (the worker's per-datagram
    /// path with the received datagram's carry), and the same copy with the checksum summed from
    /// the payload (the reference). nil: the frame does not parse.
    static func relayed(_ frame: [UInt8], v6: Bool, host: UInt32) -> (copy: [UInt8], summed: [UInt8])? {
        frame.withUnsafeBytes { bytes -> ([UInt8], [UInt8])? in
            guard case let .datagram(datagram) = FrameParser.parse(bytes, link: .ethernet) else { return nil }
            let payload = UnsafeRawBufferPointer(rebasing: bytes[datagram.payloadOffset..<datagram.payloadOffset + datagram.payloadLength])
            let carry = EgressFrame.checksumCarry(frame: bytes, datagram: datagram)
            let (source, group) = endpoints(v6: v6, host &+ 0x0101)
            func copy(_ carry: UInt16?) -> [UInt8] {
                EgressFrame.templatedBytes(sourceMAC: relay, source: source, destination: group, sourcePort: datagram.sourcePort,
                                           destinationPort: 6001, ttl: 7, payload: Array(payload), checksumCarry: carry)
            }
            return (copy(carry), copy(nil))
        }
    }

    /// The UDP checksum field's offset in an untagged frame.
    static func field(_ frame: [UInt8]) -> Int { frame[12] == 0x86 ? 60 : 40 }

    static func setField(_ frame: inout [UInt8], _ value: UInt16) {
        let at = field(frame)
        (frame[at], frame[at + 1]) = (UInt8(value >> 8), UInt8(value & 0xFF))
    }

    @Test func aValidChecksumGivesTheBytesOfOneSummedOverThePayload() async {
        await propertyCheck(
            count: 500, input: Gen.uint8().array(of: 0...1500), Gen.uint16(), Gen.uint32(), Gen.bool(), Gen.bool()
        ) { payload, sourcePort, host, v6In, v6Out in
            let frame = Self.sent(v6: v6In, host: host, sourcePort: sourcePort, payload: payload)
            #expect(udpChecksumVerifies(frame), "the sender's frame")
            guard let (copy, summed) = Self.relayed(frame, v6: v6Out, host: host) else {
                Issue.record("the sender's frame does not parse")
                return
            }
            #expect(copy == summed)
            #expect(udpChecksumVerifies(copy))
        }
    }

    @Test func aDatagramCorruptedOnTheWayStillFailsAtTheReceiver() async {
        await propertyCheck(
            count: 500, input: Gen.uint8().array(of: 1...1500), Gen.uint32(), Gen.uint32(), Gen.bool(), Gen.bool()
        ) { payload, where_, host, v6In, v6Out in
            var frame = Self.sent(v6: v6In, host: host, sourcePort: 40000, payload: payload)
            // A field that looks like an offload's partial sum is summed from the payload, by design.
            let at = Self.field(frame)
            guard UInt16(frame[at]) << 8 | UInt16(frame[at + 1]) != partialPseudoSum(frame) else { return }
            let payloadStart = v6In ? 62 : 42
            let flipped = payloadStart + Int(where_ % UInt32(payload.count))
            frame[flipped] ^= UInt8(truncatingIfNeeded: where_ >> 24) | 1  // any nonzero change of one byte
            #expect(!udpChecksumVerifies(frame), "the corrupted frame fails before the relay")
            guard let (copy, summed) = Self.relayed(frame, v6: v6Out, host: host) else {
                Issue.record("the corrupted frame does not parse")
                return
            }
            #expect(!udpChecksumVerifies(copy), "the copy of a corrupted datagram fails too")
            #expect(udpChecksumVerifies(summed), "(a checksum summed over the payload would have hidden it)")
        }
    }

    @Test func aWrongChecksumFieldStaysWrong() {
        for v6In in [false, true] {
            for v6Out in [false, true] {
                var frame = Self.sent(v6: v6In, host: 77, sourcePort: 40000, payload: Array("market data".utf8))
                let at = Self.field(frame)
                frame[at] ^= 0x5A
                let (copy, _) = Self.relayed(frame, v6: v6Out, host: 77)!
                #expect(!udpChecksumVerifies(copy), "in v6 \(v6In), out v6 \(v6Out)")
            }
        }
    }

    @Test func noChecksumAndAnOffloadedOneAreSummedFromThePayload() {
        for v6Out in [false, true] {
            for v6In in [false, true] {
                for length in [0, 1, 2, 3, 17, 1316] {
                    let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
                    var frame = Self.sent(v6: v6In, host: 300, sourcePort: 1234, payload: payload)
                    let reference = Self.relayed(frame, v6: v6Out, host: 300)!.summed
                    Self.setField(&frame, partialPseudoSum(frame))
                    #expect(Self.relayed(frame, v6: v6Out, host: 300)!.copy == reference, "partial, \(length) bytes")
                    guard !v6In else { continue }  // IPv6 without a checksum is dropped (zero_udp_checksum)
                    Self.setField(&frame, 0)
                    #expect(Self.relayed(frame, v6: v6Out, host: 300)!.copy == reference, "none, \(length) bytes")
                }
            }
        }
    }
}
