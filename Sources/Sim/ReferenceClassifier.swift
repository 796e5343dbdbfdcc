import RelayCore

/// The oracle's own reading of a frame, written separately from `FrameParser` so that a bug
/// in the core's parser shows up as a disagreement instead of being shared by the check.
/// It answers two questions: would a correct relay forward this frame (a whole, checksummed,
/// multicast UDP datagram arriving on the wire), and which group does the network deliver it
/// by (the switch/NIC filter sees the IPv4 destination even of a frame the relay rejects).
public struct FrameFacts: Sendable, Equatable {
    /// A well-formed multicast UDP datagram a rule may match.
    public var forwardable = false
    public var group: IPAddress = .v4(IPv4Address(0))
    public var port: UInt16 = 0
    public var source: IPAddress = .v4(IPv4Address(0))
    public var payloadOffset: Int32 = 0
    public var payloadLength: Int32 = 0
    /// Multicast destination used for delivery filtering (nil: not filtered, e.g. ARP,
    /// unicast, a header too short to read).
    public var gateGroup: IPAddress?
    public var gateSource: IPAddress = .v4(IPv4Address(0))
    /// 5-tuple hash the kernel's PACKET_FANOUT_HASH would use to pick a socket.
    public var flowHash: UInt32 = 0
}

public enum ReferenceClassifier {
    public static func facts(_ f: UnsafeRawBufferPointer, link: LinkType) -> FrameFacts {
        var facts = FrameFacts()
        func be16(_ o: Int) -> Int { Int(f[o]) << 8 | Int(f[o + 1]) }
        var ip: Int
        switch link {
        case .rawIP:
            ip = 0
        case .ethernet:
            var typeAt = 12
            var tags = 0
            while true {
                guard f.count >= typeAt + 2 else { return facts }
                let type = be16(typeAt)
                if type == 0x8100 || type == 0x88A8 {
                    tags += 1
                    if tags > 2 { return facts }
                    typeAt += 4
                    continue
                }
                guard type == 0x0800 || type == 0x86DD else { return facts }
                if type == 0x86DD { return ipv6Facts(f, at: typeAt + 2) }
                break
            }
            ip = typeAt + 2
        case .linuxCooked:
            guard f.count >= 16, be16(14) == 0x0800 || be16(14) == 0x86DD else { return facts }
            if be16(0) == 4 { return facts }  // PACKET_OUTGOING: our own transmission
            if be16(14) == 0x86DD { return ipv6Facts(f, at: 16) }
            ip = 16
        case .linuxCooked2:
            guard f.count >= 20, be16(0) == 0x0800 || be16(0) == 0x86DD else { return facts }
            if f[10] == 4 { return facts }
            if be16(0) == 0x86DD { return ipv6Facts(f, at: 20) }
            ip = 20
        }
        if link == .rawIP, f.count > 0, f[0] >> 4 == 6 { return ipv6Facts(f, at: 0) }
        guard f.count >= ip + 20, f[ip] >> 4 == 4 else { return facts }
        let destination = UInt32(be16(ip + 16)) << 16 | UInt32(be16(ip + 18))
        let source = UInt32(be16(ip + 12)) << 16 | UInt32(be16(ip + 14))
        if destination >> 28 == 0xE {
            facts.gateGroup = .v4(IPv4Address(destination))
            facts.gateSource = .v4(IPv4Address(source))
        }
        let ihl = Int(f[ip] & 0x0F) * 4
        guard ihl >= 20, f.count >= ip + ihl else { return facts }
        var sum = 0
        for word in stride(from: ip, to: ip + ihl, by: 2) { sum += be16(word) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        guard sum == 0xFFFF else { return facts }
        let total = be16(ip + 2)
        guard total >= ihl + 8, f.count >= ip + total else { return facts }
        guard be16(ip + 6) & 0x3FFF == 0 else { return facts }  // MF or an offset: a fragment
        guard f[ip + 9] == 17, destination >> 28 == 0xE else { return facts }
        let udp = ip + ihl
        let udpLength = be16(udp + 4)
        guard udpLength >= 8, udpLength <= total - ihl else { return facts }
        facts.forwardable = true
        facts.group = .v4(IPv4Address(destination))
        facts.source = .v4(IPv4Address(source))
        facts.port = UInt16(be16(udp + 2))
        facts.payloadOffset = Int32(udp + 8)
        facts.payloadLength = Int32(udpLength - 8)
        var hash = FNV64()
        hash.add(UInt64(source) << 32 | UInt64(destination))
        hash.add(UInt64(be16(udp)) << 16 | UInt64(be16(udp + 2)))
        facts.flowHash = UInt32(truncatingIfNeeded: hash.value ^ (hash.value >> 32))
        return facts
    }

    /// IPv6 (RFC 8200), read byte by byte: the fixed header, then hop-by-hop (only first),
    /// routing and destination-options headers up to eight; a fragment header or anything
    /// but UDP ends it; UDP must fill the payload exactly and carry a checksum.
    static func ipv6Facts(_ f: UnsafeRawBufferPointer, at ip: Int) -> FrameFacts {
        var facts = FrameFacts()
        func be16(_ o: Int) -> Int { Int(f[o]) << 8 | Int(f[o + 1]) }
        func address(_ o: Int) -> IPv6Address { IPv6Address(bytes: (o..<o + 16).map { f[$0] }) }
        guard f.count >= ip + 40, f[ip] >> 4 == 6 else { return facts }
        let destination = address(ip + 24)
        let source = address(ip + 8)
        if f[ip + 24] == 0xFF {
            facts.gateGroup = .v6(destination)
            facts.gateSource = .v6(source)
        }
        let payload = be16(ip + 4)
        guard payload > 0, f.count >= ip + 40 + payload else { return facts }
        let end = ip + 40 + payload
        var next = Int(f[ip + 6])
        var at = ip + 40
        var count = 0
        while next != 17 {
            guard next == 0 || next == 43 || next == 60, next != 0 || count == 0 else { return facts }
            guard at + 8 <= end else { return facts }
            let length = (Int(f[at + 1]) + 1) * 8
            guard at + length <= end else { return facts }
            next = Int(f[at])
            at += length
            count += 1
            guard count <= 8 else { return facts }
        }
        guard f[ip + 24] == 0xFF, at + 8 <= end, be16(at + 4) == end - at, be16(at + 6) != 0 else { return facts }
        facts.forwardable = true
        facts.group = .v6(destination)
        facts.source = .v6(source)
        facts.port = UInt16(be16(at + 2))
        facts.payloadOffset = Int32(at + 8)
        facts.payloadLength = Int32(end - at - 8)
        var hash = FNV64()
        hash.add(source.high ^ source.low ^ destination.high ^ destination.low)
        hash.add(UInt64(be16(at)) << 16 | UInt64(be16(at + 2)))
        facts.flowHash = UInt32(truncatingIfNeeded: hash.value ^ (hash.value >> 32))
        return facts
    }
}
