import Foundation
import RelayControl
import RelayCore

/// Fuzz target `egress`: the bytes the relay puts on the wire, and the interface facts it
/// builds them from.
///
/// The first byte chooses: even, the rest is a recording manifest's interface list (JSON, as
/// `manifest.json` and `case.json` carry it): it decodes or is refused with a message (never
/// traps); what decodes gets an egress decision for every mode and setting (never traps) and
/// encodes back to the same facts. Odd, the rest is read as a MAC, addresses, ports, a TTL and
/// a payload (IPv4 when bit 1 is clear, IPv6 when set): the template path (what the worker and the simulator run) writes exactly the
/// whole-frame builder's bytes, which parse back to those fields with valid checksums; relayed
/// again, its checksum carried on gives the same bytes, and a corrupted payload still fails
/// (`checkChecksumCarry`).
/// Returns the number of facts decoded or 1 for a frame (nil: refused), for tests of the seeds.
@discardableResult
public func checkEgress(_ input: UnsafeRawBufferPointer) -> Int? {
    guard let selector = input.first else { return nil }
    let rest = UnsafeRawBufferPointer(rebasing: input[1...])
    if selector & 1 == 0 { return checkFacts(rest) }
    return selector & 2 == 0 ? checkFrameBytes(rest) : checkIPv6FrameBytes(rest)
}

/// The IPv6 twin of `checkFrameBytes` (selector bit 1): addresses of 16 bytes each, the group
/// forced into ff00::/8; the UDP checksum (mandatory) verifies over the IPv6 pseudo header.
func checkIPv6FrameBytes(_ input: UnsafeRawBufferPointer) -> Int? {
    var reader = ByteReader(input)
    let mac = MACAddress(reader.u8(), reader.u8(), reader.u8(), reader.u8(), reader.u8(), reader.u8())
    let source = IPv6Address(high: UInt64(reader.u32()) << 32 | UInt64(reader.u32()), low: UInt64(reader.u32()) << 32 | UInt64(reader.u32()))
    let destination = IPv6Address(high: 0xFF00_0000_0000_0000 | (UInt64(reader.u32()) << 32 | UInt64(reader.u32())) & 0x00FF_FFFF_FFFF_FFFF,
                                  low: UInt64(reader.u32()) << 32 | UInt64(reader.u32()))
    let sourcePort = reader.u16(), destinationPort = reader.u16(), hopLimit = reader.u8()
    let payload = [UInt8](reader.rest.prefix(9000))
    let whole = EgressFrame.bytes(.init(sourceMAC: mac, source: .v6(source), destination: .v6(destination), sourcePort: sourcePort,
                                        destinationPort: destinationPort, ttl: hopLimit), payload: payload)
    let templated = EgressFrame.templatedBytes(sourceMAC: mac, source: .v6(source), destination: .v6(destination),
                                               sourcePort: sourcePort, destinationPort: destinationPort, ttl: hopLimit, payload: payload)
    require(templated == whole, "the IPv6 template path differs from the whole-frame builder")
    require(whole.count == EgressFrame.ipv6HeaderBytes + payload.count, "62 header bytes")
    whole.withUnsafeBytes { bytes in
        guard case let .datagram(datagram) = FrameParser.parse(bytes, link: .ethernet) else {
            fuzzFailure("the relay's own IPv6 frame does not parse: \(FrameParser.parse(bytes, link: .ethernet))")
        }
        require(datagram.source == .v6(source) && datagram.destination == .v6(destination) && datagram.ttl == hopLimit
                && datagram.sourcePort == sourcePort && datagram.destinationPort == destinationPort
                && datagram.payloadLength == payload.count, "the IPv6 frame parses back to its fields")
        let udp = Array(bytes[54...])
        let length = udp.count
        let pseudo = Array(bytes[22..<54]) + [0, 0, UInt8(length >> 8), UInt8(length & 0xFF), 0, 0, 0, 17] + udp
        require(pseudo.withUnsafeBytes { EgressFrame.checksum($0) } == 0, "the IPv6 UDP checksum verifies")
        require(bytes[60] != 0 || bytes[61] != 0, "never a zero UDP checksum over IPv6")
    }
    checkChecksumCarry(whole, payload: payload, corrupt: sourcePort)
    return 1
}

func checkFacts(_ input: UnsafeRawBufferPointer) -> Int? {
    let interfaces: [RecordingManifest.Interface]
    do { interfaces = try JSONDecoder().decode([RecordingManifest.Interface].self, from: Data(input)) } catch {
        require(!"\(error)".isEmpty, "facts refusal has a message")
        return nil
    }
    for interface in interfaces {
        guard let facts = interface.facts else { continue }
        for mode in EgressMode.allCases {
            for setting in SegmentationSetting.allCases {
                let decision = EgressPolicy.decide(facts.name, facts: facts, mode: mode, segmentation: setting)
                require(!decision.pathReason.isEmpty && !decision.segmentationReason.isEmpty, "a decision says why")
                require(mode == .packet || decision.path == .udp, "--egress udp never takes the packet path")
            }
        }
        guard let encoded = try? JSONEncoder().encode(facts),
              let again = try? JSONDecoder().decode(InterfaceFacts.self, from: encoded) else {
            fuzzFailure("decoded facts do not encode and decode again: \(facts)")
        }
        require(again == facts, "facts round trip: \(facts) -> \(again)")
    }
    return interfaces.count
}

func checkFrameBytes(_ input: UnsafeRawBufferPointer) -> Int? {
    var reader = ByteReader(input)
    let mac = MACAddress(reader.u8(), reader.u8(), reader.u8(), reader.u8(), reader.u8(), reader.u8())
    let source = IPv4Address(reader.u32())
    let destination = IPv4Address(0xE000_0000 | (reader.u32() & 0x0FFF_FFFF))
    let sourcePort = reader.u16(), destinationPort = reader.u16(), ttl = reader.u8()
    let payload = [UInt8](reader.rest.prefix(9000))
    let whole = EgressFrame.bytes(.init(sourceMAC: mac, source: source, destination: destination, sourcePort: sourcePort,
                                        destinationPort: destinationPort, ttl: ttl), payload: payload)
    let templated = EgressFrame.templatedBytes(sourceMAC: mac, source: source, destination: destination, sourcePort: sourcePort,
                                               destinationPort: destinationPort, ttl: ttl, payload: payload)
    require(templated == whole, "the template path differs from the whole-frame builder")
    whole.withUnsafeBytes { bytes in
        guard case let .datagram(datagram) = FrameParser.parse(bytes, link: .ethernet) else {
            fuzzFailure("the relay's own frame does not parse: \(FrameParser.parse(bytes, link: .ethernet))")
        }
        require(datagram.source == .v4(source) && datagram.destination == .v4(destination) && datagram.ttl == ttl
                && datagram.sourcePort == sourcePort && datagram.destinationPort == destinationPort
                && datagram.payloadLength == payload.count, "the frame parses back to its fields")
        let udp = Array(bytes[34...])
        let pseudo = Array(bytes[26..<34]) + [0, 17, bytes[38], bytes[39]] + udp
        require(pseudo.withUnsafeBytes { EgressFrame.checksum($0) } == 0, "the UDP checksum verifies")
    }
    checkChecksumCarry(whole, payload: payload, corrupt: sourcePort)
    return 1
}
