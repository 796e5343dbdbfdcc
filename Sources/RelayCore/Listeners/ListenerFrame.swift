/// IGMP and MLD at the frame level: finds the message inside an Ethernet frame (optionally
/// 802.1Q / 802.1ad tagged) and checks the IP-layer rules of the RFCs; and builds complete
/// frames for what the router sends.
public enum ListenerFrame {
    /// A message taken from a frame, with what the IP layer said about it.
    public struct Received: Hashable, Sendable {
        public var message: ListenerMessage
        public var source: IPAddress
        public var destination: IPAddress
        public var hopLimit: UInt8
        public var routerAlert: Bool
        public var sourceMAC: MACAddress
        /// The innermost VLAN ID when the frame was tagged.
        public var vlan: UInt16?

        public init(message: ListenerMessage, source: IPAddress, destination: IPAddress, hopLimit: UInt8 = 1,
                    routerAlert: Bool = true, sourceMAC: MACAddress = MACAddress(0, 0, 0, 0, 0, 0), vlan: UInt16? = nil) {
            self.message = message
            self.source = source
            self.destination = destination
            self.hopLimit = hopLimit
            self.routerAlert = routerAlert
            self.sourceMAC = sourceMAC
            self.vlan = vlan
        }

        public var family: AddressFamily { source.family }
    }

    static let etherTypeIPv4: UInt16 = 0x0800
    static let etherTypeIPv6: UInt16 = 0x86DD
    static let etherTypeVLAN: UInt16 = 0x8100
    static let etherTypeQinQ: UInt16 = 0x88A8
    static let protocolIGMP: UInt8 = 2
    static let nextHeaderHopByHop: UInt8 = 0
    /// RFC 2113: type 148 (copied, class 0, number 20), length 4, value 0 ("examine packet").
    static let ipv4RouterAlert: [UInt8] = [0x94, 0x04, 0x00, 0x00]
    /// RFC 2711: option type 5, length 2, value 0 (MLD).
    static let ipv6RouterAlertType: UInt8 = 5

    public static func extract(_ frame: UnsafeRawBufferPointer) -> Result<Received, ListenerRefusal> {
        extract(Array(frame))
    }

    public static func extract(_ frame: [UInt8]) -> Result<Received, ListenerRefusal> {
        var reader = ListenerBytes(frame)
        guard let mac = reader.take(6), let sourceMAC = reader.take(6).flatMap(MACAddress.init),
              var etherType = reader.u16() else { return .failure(.truncated) }
        _ = mac
        var vlan: UInt16?
        for _ in 0..<2 where etherType == etherTypeVLAN || etherType == etherTypeQinQ {
            guard let tag = reader.u16(), let inner = reader.u16() else { return .failure(.truncated) }
            vlan = tag & 0x0FFF
            etherType = inner
        }
        let received: Result<Received, ListenerRefusal>
        switch etherType {
        case etherTypeIPv4: received = extractIPv4(frame, at: reader.offset, sourceMAC: sourceMAC)
        case etherTypeIPv6: received = extractIPv6(frame, at: reader.offset, sourceMAC: sourceMAC)
        default: return .failure(.notListenerProtocol)
        }
        return received.map { var r = $0; r.vlan = vlan; return r }
    }

    static func extractIPv4(_ frame: [UInt8], at start: Int, sourceMAC: MACAddress) -> Result<Received, ListenerRefusal> {
        var reader = ListenerBytes(frame, offset: start)
        guard reader.remaining >= 20 else { return .failure(.truncated) }
        let versionIHL = reader.u8()!
        guard versionIHL >> 4 == 4 else { return .failure(.badIPHeader) }
        let headerLength = Int(versionIHL & 0x0F) * 4
        guard headerLength >= 20 else { return .failure(.badIPHeader) }
        _ = reader.u8()
        let totalLength = Int(reader.u16()!)
        _ = reader.u16()
        let fragment = reader.u16()!
        let ttl = reader.u8()!
        let proto = reader.u8()!
        _ = reader.u16()
        let source = reader.ipv4()!, destination = reader.ipv4()!
        guard totalLength >= headerLength else { return .failure(.badIPHeader) }
        // Ethernet pads short frames: what counts is the IP total length, not the frame's.
        guard frame.count - start >= totalLength else { return .failure(.truncated) }
        // Other protocols are not ours whatever their header says; only IGMP is counted as bad.
        guard proto == protocolIGMP else { return .failure(.notListenerProtocol) }
        guard InternetChecksum.checksum(frame[start..<start + headerLength]) == 0 else { return .failure(.badIPChecksum) }
        guard fragment & 0x3FFF == 0 else { return .failure(.fragment) }
        guard let routerAlert = ipv4RouterAlert(in: Array(frame[start + 20..<start + headerLength])) else {
            return .failure(.badIPHeader)
        }
        let payload = Array(frame[start + headerLength..<start + totalLength])
        let message: ListenerMessage
        switch IGMPCodec.decode(payload) {
        case let .success(decoded): message = decoded
        case let .failure(reason): return .failure(reason)
        }
        // RFC 3376 9.1/9.2: v3 messages without Router Alert are ignored; v1/v2 predate it.
        if !routerAlert, message.version == .v3 { return .failure(.missingRouterAlert) }
        guard ttl == 1 else { return .failure(.hopLimitNotOne) }
        return .success(Received(message: message, source: .v4(source), destination: .v4(destination), hopLimit: ttl,
                                 routerAlert: routerAlert, sourceMAC: sourceMAC))
    }

    /// Whether the options hold a Router Alert; nil when they do not parse.
    static func ipv4RouterAlert(in options: [UInt8]) -> Bool? {
        var index = 0
        var found = false
        while index < options.count {
            let type = options[index]
            if type == 0 { break }  // end of option list
            if type == 1 { index += 1; continue }  // no-operation
            guard index + 1 < options.count else { return nil }
            let length = Int(options[index + 1])
            guard length >= 2, index + length <= options.count else { return nil }
            if type == 0x94, length == 4 { found = true }
            index += length
        }
        return found
    }

    static func extractIPv6(_ frame: [UInt8], at start: Int, sourceMAC: MACAddress) -> Result<Received, ListenerRefusal> {
        var reader = ListenerBytes(frame, offset: start)
        guard reader.remaining >= 40 else { return .failure(.truncated) }
        guard reader.u8()! >> 4 == 6 else { return .failure(.badIPHeader) }
        _ = reader.u8(); _ = reader.u16()
        let payloadLength = Int(reader.u16()!)
        var nextHeader = reader.u8()!
        let hopLimit = reader.u8()!
        let source = reader.ipv6()!, destination = reader.ipv6()!
        guard frame.count - start - 40 >= payloadLength else { return .failure(.truncated) }
        let end = start + 40 + payloadLength
        var offset = start + 40
        var routerAlert = false
        if nextHeader == nextHeaderHopByHop {
            guard end - offset >= 8 else { return .failure(.truncated) }
            let length = 8 * (Int(frame[offset + 1]) + 1)
            guard end - offset >= length else { return .failure(.truncated) }
            switch ipv6RouterAlert(in: Array(frame[offset + 2..<offset + length])) {
            case nil: return .failure(.badIPHeader)
            case let found?: routerAlert = found
            }
            nextHeader = frame[offset]
            offset += length
        }
        // Fragments (44) and other extension headers before ICMPv6 are not MLD as sent.
        if nextHeader == 44 { return .failure(.fragment) }
        guard nextHeader == MLDCodec.nextHeaderICMPv6 else { return .failure(.notListenerProtocol) }
        guard offset < end else { return .failure(.truncated) }
        guard MLDCodec.isMLDType(frame[offset]) else { return .failure(.notListenerProtocol) }
        let message: ListenerMessage
        switch MLDCodec.decode(Array(frame[offset..<end]), source: source, destination: destination) {
        case let .success(decoded): message = decoded
        case let .failure(reason): return .failure(reason)
        }
        guard routerAlert else { return .failure(.missingRouterAlert) }
        guard hopLimit == 1 else { return .failure(.hopLimitNotOne) }
        // RFC 3810 5.1.14: queries from a non-link-local source are dropped; 5.2.13: reports
        // too, except from :: (a host before it has a link-local address).
        if case .query = message {
            guard source.isLinkLocalUnicast else { return .failure(.sourceNotLinkLocal) }
        } else {
            guard source.isLinkLocalUnicast || source.isUnspecified else { return .failure(.sourceNotLinkLocal) }
        }
        return .success(Received(message: message, source: .v6(source), destination: .v6(destination),
                                 hopLimit: hopLimit, routerAlert: routerAlert, sourceMAC: sourceMAC))
    }

    /// Whether hop-by-hop options hold an MLD Router Alert; nil when they do not parse.
    static func ipv6RouterAlert(in options: [UInt8]) -> Bool? {
        var index = 0
        var found = false
        while index < options.count {
            let type = options[index]
            if type == 0 { index += 1; continue }  // Pad1
            guard index + 1 < options.count else { return nil }
            let length = Int(options[index + 1])
            guard index + 2 + length <= options.count else { return nil }
            if type == ipv6RouterAlertType, length == 2, options[index + 2] == 0, options[index + 3] == 0 { found = true }
            index += 2 + length
        }
        return found
    }

    // MARK: - Building

    /// The multicast MAC of a group: 01:00:5e + low 23 bits (RFC 1112 6.4), 33:33 + low 32
    /// bits (RFC 2464 7).
    public static func multicastMAC(_ group: IPAddress) -> MACAddress {
        switch group {
        case let .v4(v4): MACAddress.multicast(v4)
        case let .v6(v6):
            MACAddress(0x33, 0x33, UInt8(truncatingIfNeeded: v6.low >> 24), UInt8(truncatingIfNeeded: v6.low >> 16),
                       UInt8(truncatingIfNeeded: v6.low >> 8), UInt8(truncatingIfNeeded: v6.low))
        }
    }

    /// A complete Ethernet frame carrying `message` from `source` (the interface's IPv4
    /// address, or its IPv6 link-local address) to `destination` (default: where the RFCs
    /// send it): IPv4 with Router Alert and TTL 1, or IPv6 with a hop-by-hop Router Alert and
    /// hop limit 1, checksums filled in. `source` and `destination` must be one family.
    public static func build(_ message: ListenerMessage, sourceMAC: MACAddress, source: IPAddress,
                             destination: IPAddress? = nil) -> [UInt8] {
        let destination = destination ?? message.destination(source.family)
        var frame = multicastMAC(destination).array + sourceMAC.array
        switch (source, destination) {
        case let (.v4(src), .v4(dst)):
            frame.appendBigEndian(etherTypeIPv4)
            let payload = IGMPCodec.encode(message)
            // TOS 0xc0 (internetwork control) as Linux sends IGMP; no DF: it is never fragmented anyway.
            var header: [UInt8] = [0x46, 0xC0]
            header.appendBigEndian(UInt16(24 + payload.count))
            header += [0, 0, 0, 0, 1, protocolIGMP, 0, 0]
            header.appendBigEndian(src.value)
            header.appendBigEndian(dst.value)
            header += ipv4RouterAlert
            let checksum = InternetChecksum.checksum(header)
            header[10] = UInt8(checksum >> 8)
            header[11] = UInt8(truncatingIfNeeded: checksum)
            frame += header + payload
        case let (.v6(src), .v6(dst)):
            frame.appendBigEndian(etherTypeIPv6)
            let payload = MLDCodec.encode(message, source: src, destination: dst)
            var header: [UInt8] = [0x60, 0, 0, 0]
            header.appendBigEndian(UInt16(8 + payload.count))
            header += [nextHeaderHopByHop, 1]
            header += src.bytes + dst.bytes
            // Hop-by-hop: next header ICMPv6, length 0 (8 bytes), Router Alert MLD, PadN of 2.
            header += [MLDCodec.nextHeaderICMPv6, 0, ipv6RouterAlertType, 2, 0, 0, 1, 0]
            frame += header + payload
        default:
            preconditionFailure("source \(source) and destination \(destination) are not one family")
        }
        return frame
    }
}
