extension FrameParser {
    /// Extension headers walked before giving up (`badIPv6Header`). Real traffic carries at
    /// most a hop-by-hop header (MLD's Router Alert) and perhaps a destination-options one; a
    /// long chain is an attack on parsers, and bounding it bounds the work per frame.
    public static let maximumExtensionHeaders = 8

    static let nextHeaderHopByHop: UInt8 = 0
    static let nextHeaderRouting: UInt8 = 43
    static let nextHeaderFragment: UInt8 = 44
    static let nextHeaderDestinationOptions: UInt8 = 60

    @inline(__always)
    static func u64(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(u32(bytes, offset)) << 32 | UInt64(u32(bytes, offset + 4))
    }

    /// RFC 8200: a 40-byte fixed header, then extension headers (hop-by-hop, routing,
    /// destination options each 8 + 8n bytes; fragment 8 bytes) chained by Next Header.
    static func parseIPv6(_ frame: UnsafeRawBufferPointer, at ip: Int) -> ParseOutcome {
        guard frame.count >= ip + 40 else {
            if frame.count > ip, frame[ip] >> 4 != 6 { return .dropped(.notIP) }
            return .dropped(.truncated)
        }
        guard frame[ip] >> 4 == 6 else { return .dropped(.notIP) }
        let payloadLength = Int(u16(frame, ip + 4))
        // 0 means a jumbogram (RFC 2675), which needs a hop-by-hop option and a link with an
        // MTU over 64 KiB; no multicast stream uses one.
        guard payloadLength > 0 else { return .dropped(.badLength) }
        let end = ip + 40 + payloadLength
        // Ethernet pads short frames, so more bytes than the payload length is normal.
        guard frame.count >= end else { return .dropped(.truncated) }

        var next = frame[ip + 6]
        var offset = ip + 40
        var walked = 0
        while next != protocolUDP {
            switch next {
            case nextHeaderHopByHop, nextHeaderRouting, nextHeaderDestinationOptions:
                guard next != nextHeaderHopByHop || walked == 0 else { return .dropped(.badIPv6Header) }
                guard end >= offset + 8 else { return .dropped(.badLength) }
                let length = 8 + 8 * Int(frame[offset + 1])
                guard end >= offset + length else { return .dropped(.badLength) }
                next = frame[offset]
                offset += length
            case nextHeaderFragment:
                return .dropped(.fragment)
            default:
                return .dropped(.notUDP)  // ICMPv6 (MLD), ESP, AH, No Next Header, TCP, ...
            }
            walked += 1
            guard walked <= maximumExtensionHeaders else { return .dropped(.badIPv6Header) }
        }

        // The same order of checks as IPv4: fragments and other protocols before the address.
        let destination = IPv6Address(high: u64(frame, ip + 24), low: u64(frame, ip + 32))
        guard destination.isMulticast else { return .dropped(.notMulticast) }
        guard end - offset >= 8 else { return .dropped(.badLength) }
        let udpLength = Int(u16(frame, offset + 4))
        // Nothing may follow the UDP datagram inside the IPv6 payload (no padding there).
        guard udpLength == end - offset else { return .dropped(.badLength) }
        guard u16(frame, offset + 6) != 0 else { return .dropped(.zeroUDPChecksum) }

        return .datagram(UDPDatagram(
            source: .v6(IPv6Address(high: u64(frame, ip + 8), low: u64(frame, ip + 16))),
            destination: .v6(destination),
            sourcePort: u16(frame, offset),
            destinationPort: u16(frame, offset + 2),
            ttl: frame[ip + 7],
            ipOffset: ip,
            payloadOffset: offset + 8,
            payloadLength: udpLength - 8))
    }
}
