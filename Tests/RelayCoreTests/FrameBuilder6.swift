@testable import RelayCore

/// Builds IPv6 frames for tests, independently of `EgressFrame` (byte by byte from RFC 8200 and
/// RFC 768), with extension headers before UDP and one field at a time to break.
struct FrameBuilder6 {
    /// An extension header: its type (0 hop-by-hop, 43 routing, 44 fragment, 60 destination
    /// options, ...) and its length in 8-byte units beyond the first 8.
    struct Extension {
        var type: UInt8
        var units: UInt8 = 0
    }

    var link: LinkType = .ethernet
    var vlanTags = 0
    var source = IPv6Address("2001:db8:1::10")!
    var destination = IPv6Address("ff3e::8000:1")!
    var sourcePort: UInt16 = 40000
    var destinationPort: UInt16 = 5001
    var hopLimit: UInt8 = 1
    var payload: [UInt8] = Array("hello ipv6 multicast".utf8)
    var extensions: [Extension] = []
    /// The next header after the extensions (17: UDP).
    var upperProtocol: UInt8 = 17
    var zeroChecksum = false
    /// Added to the payload length field (to break it).
    var payloadLengthDelta = 0
    var etherPadding = 0

    func build() -> [UInt8] {
        var frame: [UInt8] = []
        switch link {
        case .ethernet:
            let low = destination.bytes.suffix(4)
            frame += [0x33, 0x33] + low + [0x02, 0, 0, 0, 0, 1]
            for _ in 0..<vlanTags { frame += [0x81, 0x00, 0x00, 0x07] }
            frame += [0x86, 0xDD]
        case .linuxCooked:
            frame += be16(2) + be16(1) + be16(6) + [2, 0, 0, 0, 0, 1, 0, 0] + [0x86, 0xDD]
        case .linuxCooked2:
            frame += [0x86, 0xDD, 0, 0] + [0, 0, 0, 3] + be16(1) + [2, 6] + [2, 0, 0, 0, 0, 1, 0, 0]
        case .rawIP:
            break
        }
        var chain: [UInt8] = []
        for (index, ext) in extensions.enumerated() {
            let next = index + 1 < extensions.count ? extensions[index + 1].type : upperProtocol
            var header = [next, ext.units] + [UInt8](repeating: 0, count: 6 + 8 * Int(ext.units))
            if ext.type == 0 || ext.type == 60 { header[2] = 1; header[3] = UInt8(4 + 8 * Int(ext.units)) }  // PadN
            chain += header
        }
        let udpLength = 8 + payload.count
        var udp = be16(sourcePort) + be16(destinationPort) + be16(UInt16(udpLength)) + [0, 0] + payload
        if !zeroChecksum {
            var pseudo = source.bytes + destination.bytes + be32(UInt32(udpLength)) + [0, 0, 0, 17] + udp
            if pseudo.count % 2 == 1 { pseudo.append(0) }
            var sum: UInt32 = 0
            for index in stride(from: 0, to: pseudo.count, by: 2) { sum += UInt32(pseudo[index]) << 8 | UInt32(pseudo[index + 1]) }
            while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
            var check = ~UInt16(sum)
            if check == 0 { check = 0xFFFF }
            udp[6] = UInt8(check >> 8)
            udp[7] = UInt8(check & 0xFF)
        }
        let first = extensions.first?.type ?? upperProtocol
        let payloadLength = UInt16(truncatingIfNeeded: chain.count + udp.count + payloadLengthDelta)
        frame += [0x60, 0, 0, 0] + be16(payloadLength) + [first, hopLimit] + source.bytes + destination.bytes
        frame += chain + udp
        frame += [UInt8](repeating: 0, count: etherPadding)
        return frame
    }

    var ipOffset: Int {
        switch link {
        case .ethernet: 14 + 4 * vlanTags
        case .linuxCooked: 16
        case .linuxCooked2: 20
        case .rawIP: 0
        }
    }

    var payloadOffset: Int { ipOffset + 40 + extensions.reduce(0) { $0 + 8 + 8 * Int($1.units) } + 8 }
}
