/// How a frame's bytes begin.
public enum LinkType: Sendable, Hashable {
    /// Ethernet II, with up to two inline 802.1Q/802.1ad tags (as pcaps carry them).
    case ethernet
    /// Linux cooked capture v1 (`DLT_LINUX_SLL`, 16-byte header), from `tcpdump -i any`.
    case linuxCooked
    /// Linux cooked capture v2 (`DLT_LINUX_SLL2`, 20-byte header with the interface index).
    case linuxCooked2
    /// No link header: the IP header comes first (an AF_PACKET `SOCK_DGRAM` socket, DLT_RAW);
    /// its version nibble says IPv4 or IPv6.
    case rawIP
}

/// A well-formed multicast UDP datagram found inside a frame. Offsets index the frame the
/// parser was given; the payload is never copied.
public struct UDPDatagram: Sendable, Equatable {
    public var source: IPAddress
    public var destination: IPAddress
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    /// The IPv4 TTL or the IPv6 hop limit.
    public var ttl: UInt8
    /// Byte offset of the IP header within the frame.
    public var ipOffset: Int
    public var payloadOffset: Int
    public var payloadLength: Int
}

public enum ParseOutcome: Sendable, Equatable {
    case datagram(UDPDatagram)
    case dropped(DropReason)
}

/// Classifies raw frame bytes. Every read is preceded by a length check against the
/// buffer, so no byte sequence can make it read out of bounds or trap.
public enum FrameParser {
    static let etherTypeIPv4: UInt16 = 0x0800
    static let etherTypeIPv6: UInt16 = 0x86DD
    static let etherTypeVLAN: UInt16 = 0x8100
    static let etherTypeQinQ: UInt16 = 0x88A8
    static let packetTypeOutgoing: UInt16 = 4  // PACKET_OUTGOING in sll_pkttype
    static let protocolUDP: UInt8 = 17

    @inline(__always)
    static func u16(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    @inline(__always)
    static func u32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(u16(bytes, offset)) << 16 | UInt32(u16(bytes, offset + 2))
    }

    public static func parse(_ frame: UnsafeRawBufferPointer, link: LinkType) -> ParseOutcome {
        let ipOffset: Int
        let etherType: UInt16
        switch link {
        case .rawIP:
            guard frame.count > 0 else { return .dropped(.truncated) }
            return frame[0] >> 4 == 6 ? parseIPv6(frame, at: 0) : parseIPv4(frame, at: 0)
        case .ethernet:
            var offset = 12
            guard frame.count >= offset + 2 else { return .dropped(.truncated) }
            var type = u16(frame, offset)
            var tags = 0
            while type == etherTypeVLAN || type == etherTypeQinQ {
                tags += 1
                guard tags <= 2 else { return .dropped(.notIP) }
                offset += 4
                guard frame.count >= offset + 2 else { return .dropped(.truncated) }
                type = u16(frame, offset)
            }
            etherType = type
            ipOffset = offset + 2
        case .linuxCooked:
            guard frame.count >= 16 else { return .dropped(.truncated) }
            if u16(frame, 0) == packetTypeOutgoing { return .dropped(.ownTransmission) }
            etherType = u16(frame, 14)
            ipOffset = 16
        case .linuxCooked2:
            guard frame.count >= 20 else { return .dropped(.truncated) }
            if UInt16(frame[10]) == packetTypeOutgoing { return .dropped(.ownTransmission) }
            etherType = u16(frame, 0)
            ipOffset = 20
        }
        if etherType == etherTypeIPv4 { return parseIPv4(frame, at: ipOffset) }
        if etherType == etherTypeIPv6 { return parseIPv6(frame, at: ipOffset) }
        return .dropped(.notIP)
    }

    static func parseIPv4(_ frame: UnsafeRawBufferPointer, at ip: Int) -> ParseOutcome {
        guard frame.count >= ip + 20 else {
            if frame.count > ip, frame[ip] >> 4 != 4 { return .dropped(.notIP) }
            return .dropped(.truncated)
        }
        let versionAndLength = frame[ip]
        guard versionAndLength >> 4 == 4 else { return .dropped(.notIP) }
        let headerLength = Int(versionAndLength & 0x0F) * 4
        guard headerLength >= 20 else { return .dropped(.badIPv4Header) }
        guard frame.count >= ip + headerLength else { return .dropped(.truncated) }
        guard headerChecksumIsValid(frame, at: ip, length: headerLength) else { return .dropped(.badChecksum) }

        let totalLength = Int(u16(frame, ip + 2))
        guard totalLength >= headerLength else { return .dropped(.badLength) }
        // Ethernet pads short frames, so more bytes than the total length is normal; fewer is not.
        guard frame.count >= ip + totalLength else { return .dropped(.truncated) }

        let flagsAndOffset = u16(frame, ip + 6)
        let moreFragments = flagsAndOffset & 0x2000 != 0
        let fragmentOffset = flagsAndOffset & 0x1FFF
        guard !moreFragments, fragmentOffset == 0 else { return .dropped(.fragment) }
        guard frame[ip + 9] == protocolUDP else { return .dropped(.notUDP) }

        let destination = IPv4Address(u32(frame, ip + 16))
        guard destination.isMulticast else { return .dropped(.notMulticast) }

        let udp = ip + headerLength
        guard totalLength - headerLength >= 8 else { return .dropped(.badLength) }
        let udpLength = Int(u16(frame, udp + 4))
        guard udpLength >= 8, udpLength <= totalLength - headerLength else { return .dropped(.badLength) }

        return .datagram(UDPDatagram(
            source: .v4(IPv4Address(u32(frame, ip + 12))),
            destination: .v4(destination),
            sourcePort: u16(frame, udp),
            destinationPort: u16(frame, udp + 2),
            ttl: frame[ip + 8],
            ipOffset: ip,
            payloadOffset: udp + 8,
            payloadLength: udpLength - 8))
    }

    /// RFC 1071 ones'-complement sum over the header; a valid header sums to 0xFFFF.
    /// Callers guarantee `ip + length <= frame.count`.
    /// Sums 32-bit words (the ones'-complement sum is the same at any word size once folded),
    /// a quarter of the loads of a byte-pair loop on the per-packet path.
    static func headerChecksumIsValid(_ frame: UnsafeRawBufferPointer, at ip: Int, length: Int) -> Bool {
        var sum: UInt64 = 0
        var offset = ip
        let end = ip + length  // a multiple of 4 from ip: length is IHL * 4
        while offset < end {
            sum &+= UInt64(UInt32(bigEndian: frame.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            offset += 4
        }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return sum == 0xFFFF
    }

    /// The checksum to store in an IPv4 header whose checksum field is zero. Used by drivers
    /// and the simulator that build frames.
    public static func ipv4HeaderChecksum(_ header: UnsafeRawBufferPointer) -> UInt16 {
        var sum: UInt32 = 0
        var offset = 0
        while offset + 1 < header.count {
            sum &+= UInt32(u16(header, offset))
            offset += 2
        }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
