import RelayCore

/// An independent, deliberately plain model of what the data plane must do, written from
/// the rules in FrameParser's and RouteTable's documentation rather than from their code:
/// byte-array indexing instead of unsafe loads, a 16-bit checksum instead of the 32-bit
/// word sum, a linear scan over the rules instead of the hash table. The fuzz checks compare
/// the real parser and Forwarder against it.
enum ReferenceModel {
    /// The outcome FrameParser must produce. Drop reasons are checked in the parser's
    /// documented order: link header, IPv4 header, checksum, lengths, fragment, protocol,
    /// destination, UDP length.
    /// UDPDatagram's fields (its initializer is internal to RelayCore).
    struct Datagram: Equatable, CustomStringConvertible {
        var source: IPAddress
        var destination: IPAddress
        var sourcePort: UInt16
        var destinationPort: UInt16
        var ttl: UInt8
        var ipOffset: Int
        var payloadOffset: Int
        var payloadLength: Int

        init(source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16,
             ttl: UInt8, ipOffset: Int, payloadOffset: Int, payloadLength: Int) {
            (self.source, self.destination, self.sourcePort, self.destinationPort) = (source, destination, sourcePort, destinationPort)
            (self.ttl, self.ipOffset, self.payloadOffset, self.payloadLength) = (ttl, ipOffset, payloadOffset, payloadLength)
        }

        init(_ d: UDPDatagram) {
            self.init(source: d.source, destination: d.destination, sourcePort: d.sourcePort,
                      destinationPort: d.destinationPort, ttl: d.ttl, ipOffset: d.ipOffset,
                      payloadOffset: d.payloadOffset, payloadLength: d.payloadLength)
        }

        var description: String {
            "\(source):\(sourcePort) -> \(destination):\(destinationPort) ttl \(ttl) ip@\(ipOffset) payload@\(payloadOffset)+\(payloadLength)"
        }
    }

    enum Outcome: Equatable {
        case datagram(Datagram)
        case dropped(DropReason)

        init(_ outcome: ParseOutcome) {
            switch outcome {
            case let .datagram(d): self = .datagram(Datagram(d))
            case let .dropped(reason): self = .dropped(reason)
            }
        }
    }

    static func parse(_ frame: [UInt8], link: LinkType) -> Outcome {
        func be16(_ at: Int) -> Int { Int(frame[at]) << 8 | Int(frame[at + 1]) }
        let ip: Int
        var type = 0x0800
        switch link {
        case .rawIP:
            ip = 0
            if frame.count > 0 && frame[0] >> 4 == 6 { type = 0x86DD }
        case .ethernet:
            var typeAt = 12
            var tagsSeen = 0
            while true {
                if frame.count < typeAt + 2 { return .dropped(.truncated) }
                let type = be16(typeAt)
                if type != 0x8100 && type != 0x88A8 { break }
                if tagsSeen == 2 { return .dropped(.notIP) }  // a third tag: not supported
                tagsSeen += 1
                typeAt += 4
            }
            type = be16(typeAt)
            ip = typeAt + 2
        case .linuxCooked:
            if frame.count < 16 { return .dropped(.truncated) }
            if be16(0) == 4 { return .dropped(.ownTransmission) }
            type = be16(14)
            ip = 16
        case .linuxCooked2:
            if frame.count < 20 { return .dropped(.truncated) }
            if frame[10] == 4 { return .dropped(.ownTransmission) }
            type = be16(0)
            ip = 20
        }
        if type == 0x86DD { return parseIPv6(frame, at: ip) }
        if type != 0x0800 { return .dropped(.notIP) }

        let available = frame.count - ip
        if available < 20 {
            if available > 0 && frame[ip] >> 4 != 4 { return .dropped(.notIP) }
            return .dropped(.truncated)
        }
        if frame[ip] >> 4 != 4 { return .dropped(.notIP) }
        let ihl = Int(frame[ip] & 0x0F) * 4
        if ihl < 20 { return .dropped(.badIPv4Header) }
        if available < ihl { return .dropped(.truncated) }
        var sum: UInt32 = 0
        for word in stride(from: ip, to: ip + ihl, by: 2) { sum += UInt32(be16(word)) }
        while sum > 0xFFFF { sum = (sum >> 16) + (sum & 0xFFFF) }
        if sum != 0xFFFF { return .dropped(.badChecksum) }
        let totalLength = be16(ip + 2)
        if totalLength < ihl { return .dropped(.badLength) }
        if available < totalLength { return .dropped(.truncated) }
        let flags = be16(ip + 6)
        if flags & 0x2000 != 0 || flags & 0x1FFF != 0 { return .dropped(.fragment) }
        if frame[ip + 9] != 17 { return .dropped(.notUDP) }
        let destination = IPAddress.v4(IPv4Address(frame[ip + 16], frame[ip + 17], frame[ip + 18], frame[ip + 19]))
        if frame[ip + 16] < 224 || frame[ip + 16] > 239 { return .dropped(.notMulticast) }
        let udp = ip + ihl
        if totalLength - ihl < 8 { return .dropped(.badLength) }
        let udpLength = be16(udp + 4)
        if udpLength < 8 || udpLength > totalLength - ihl { return .dropped(.badLength) }
        return .datagram(Datagram(
            source: .v4(IPv4Address(frame[ip + 12], frame[ip + 13], frame[ip + 14], frame[ip + 15])),
            destination: destination,
            sourcePort: UInt16(be16(udp)),
            destinationPort: UInt16(be16(udp + 2)),
            ttl: frame[ip + 8],
            ipOffset: ip,
            payloadOffset: udp + 8,
            payloadLength: udpLength - 8))
    }

    /// IPv6 as RFC 8200 and FrameParser's documentation put it: version, payload length (0 is
    /// a jumbogram, refused), the frame holds it, then up to `FrameParser.maximumExtensionHeaders`
    /// extension headers (hop-by-hop only first) before UDP; a fragment header, or any other
    /// next header, ends the walk; then the destination; UDP fills the rest exactly and has a
    /// non-zero checksum.
    static func parseIPv6(_ frame: [UInt8], at ip: Int) -> Outcome {
        func be16(_ at: Int) -> Int { Int(frame[at]) << 8 | Int(frame[at + 1]) }
        let available = frame.count - ip
        if available < 40 {
            if available > 0 && frame[ip] >> 4 != 6 { return .dropped(.notIP) }
            return .dropped(.truncated)
        }
        if frame[ip] >> 4 != 6 { return .dropped(.notIP) }
        let payload = be16(ip + 4)
        if payload == 0 { return .dropped(.badLength) }
        if available < 40 + payload { return .dropped(.truncated) }
        let end = ip + 40 + payload
        var next = frame[ip + 6]
        var at = ip + 40
        var headers = 0
        while next != 17 {
            if next == 44 { return .dropped(.fragment) }
            if next != 0 && next != 43 && next != 60 { return .dropped(.notUDP) }
            if next == 0 && headers > 0 { return .dropped(.badIPv6Header) }
            if end - at < 8 { return .dropped(.badLength) }
            let length = 8 * (Int(frame[at + 1]) + 1)
            if end - at < length { return .dropped(.badLength) }
            next = frame[at]
            at += length
            headers += 1
            if headers > FrameParser.maximumExtensionHeaders { return .dropped(.badIPv6Header) }
        }
        if frame[ip + 24] != 0xFF { return .dropped(.notMulticast) }
        if end - at < 8 { return .dropped(.badLength) }
        if be16(at + 4) != end - at { return .dropped(.badLength) }
        if be16(at + 6) == 0 { return .dropped(.zeroUDPChecksum) }
        return .datagram(Datagram(
            source: .v6(IPv6Address(bytes: frame[(ip + 8)..<(ip + 24)])),
            destination: .v6(IPv6Address(bytes: frame[(ip + 24)..<(ip + 40)])),
            sourcePort: UInt16(be16(at)), destinationPort: UInt16(be16(at + 2)), ttl: frame[ip + 7],
            ipOffset: ip, payloadOffset: at + 8, payloadLength: end - at - 8))
    }

    /// The rule that must receive a datagram arriving on `interface`: among rules listening
    /// there for its group and port, the one for its source if any, else the any-source one.
    /// Every rule that takes the datagram, then the most specific one: the longest prefix
    /// (an exact group is the full length), then a port over any port, then a source over any
    /// source. Ties cannot happen in a valid book (equal inputs are one rule).
    static func rule(for datagram: Datagram, on interface: InterfaceName, in rules: [Rule]) -> Rule? {
        let candidates = rules.filter { rule in
            let input = rule.input
            let full = datagram.destination.family == .ipv4 ? 32 : 128
            let length = input.prefixLength.map(Int.init) ?? full
            return input.interface == interface && input.group.family == datagram.destination.family
                && leadingBitsEqual(input.group, datagram.destination, length)
                && (input.port == 0 || input.port == datagram.destinationPort)
                && (input.source == nil || input.source == datagram.source)
        }
        func rank(_ rule: Rule) -> (Int, Int, Int) {
            (Int(rule.input.prefixLength ?? 255), rule.input.port == 0 ? 0 : 1, rule.input.source == nil ? 0 : 1)
        }
        return candidates.max { rank($0) < rank($1) }
    }

    /// Bit by bit, over the address bytes: deliberately not the core's mask arithmetic.
    static func leadingBitsEqual(_ a: IPAddress, _ b: IPAddress, _ bits: Int) -> Bool {
        func bytes(_ address: IPAddress) -> [UInt8] {
            switch address {
            case let .v4(v4): (0..<4).map { UInt8(truncatingIfNeeded: v4.value >> (24 - 8 * $0)) }
            case let .v6(v6): v6.bytes
            }
        }
        let (x, y) = (bytes(a), bytes(b))
        for bit in 0..<bits where (x[bit / 8] >> (7 - bit % 8)) & 1 != (y[bit / 8] >> (7 - bit % 8)) & 1 { return false }
        return true
    }
}
