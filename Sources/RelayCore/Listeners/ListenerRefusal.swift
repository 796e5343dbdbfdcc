/// Why an IGMP or MLD message, or the frame around it, was not taken in. Every refusal is one
/// of these and counted (`ListenerRefusalCounts`), so malformed or spoofed input shows up in
/// metrics instead of disappearing.
public enum ListenerRefusal: String, Error, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    // Frame and IP layer.
    /// Shorter than its headers or lengths say.
    case truncated
    /// Not IPv4 or IPv6 (another EtherType), or not IGMP / MLD inside (another protocol or
    /// ICMPv6 type): not ours, not an error.
    case notListenerProtocol
    /// An IPv4 header or IPv6 extension header that does not parse (IHL < 5, bad option lengths).
    case badIPHeader
    case badIPChecksum
    /// A fragment: IGMP and MLD messages are never fragmented.
    case fragment
    /// RFC 2113 / RFC 2711 Router Alert absent where the RFCs require it: every IGMPv3 and
    /// every MLD message (v1/v2 IGMP predates the requirement and is accepted without).
    case missingRouterAlert
    /// TTL or hop limit other than 1 (RFC 2236 2, RFC 3376 4, RFC 2710 3, RFC 3810 5): a
    /// message that crossed a router is not from this link.
    case hopLimitNotOne
    /// MLD from a source that is not link-local (RFC 3810 5.1.14, 5.2.13; RFC 2710 3);
    /// reports from :: (a host still doing DAD) are accepted.
    case sourceNotLinkLocal

    // Message layer.
    /// The IGMP checksum, or the ICMPv6 checksum over the pseudo-header, is wrong.
    case badChecksum
    /// An IGMP type or ICMPv6 type this code does not know.
    case unknownType
    /// A length no version of the message has (e.g. an IGMP query of 9 bytes, a v3 query
    /// whose source count runs past the end), or a v1/v2 message of another length.
    case badLength
    /// A report or leave for an address that is not multicast, or a specific query whose
    /// group is not.
    case groupNotMulticast
    /// A v3 group record type outside 1...6.
    case unknownRecordType
    /// A source address in a v3 query or record that is not unicast.
    case badSource

    public var description: String { rawValue }
}

/// Refusals counted by reason.
public struct ListenerRefusalCounts: Hashable, Sendable {
    public private(set) var counts: [ListenerRefusal: UInt64] = [:]

    public init() {}

    public mutating func count(_ reason: ListenerRefusal) { counts[reason, default: 0] += 1 }

    public subscript(_ reason: ListenerRefusal) -> UInt64 { counts[reason, default: 0] }

    public var total: UInt64 { counts.values.reduce(0, +) }
}

/// Bounds-checked big-endian reads over a byte array: every read says whether it fit, so no
/// input can trap a decoder.
struct ListenerBytes {
    let bytes: [UInt8]
    var offset: Int

    init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var remaining: Int { max(bytes.count - offset, 0) }

    mutating func u8() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() -> UInt16? {
        guard remaining >= 2 else { return nil }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    mutating func u32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { offset += 4 }
        return UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16
            | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    mutating func ipv4() -> IPv4Address? { u32().map(IPv4Address.init) }

    mutating func ipv6() -> IPv6Address? {
        guard remaining >= 16 else { return nil }
        defer { offset += 16 }
        return IPv6Address(bytes: bytes[offset..<offset + 16])
    }

    mutating func take(_ count: Int) -> [UInt8]? {
        guard count >= 0, remaining >= count else { return nil }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }
}

extension Array where Element == UInt8 {
    mutating func appendBigEndian(_ value: UInt16) {
        append(UInt8(value >> 8))
        append(UInt8(truncatingIfNeeded: value))
    }

    mutating func appendBigEndian(_ value: UInt32) {
        appendBigEndian(UInt16(value >> 16))
        appendBigEndian(UInt16(truncatingIfNeeded: value))
    }

    mutating func append(_ address: IPAddress) {
        switch address {
        case let .v4(v4): appendBigEndian(v4.value)
        case let .v6(v6): append(contentsOf: v6.bytes)
        }
    }
}

/// The Internet checksum (RFC 1071): IGMP over its message, IPv4 over its header, ICMPv6 over
/// the pseudo-header and message.
enum InternetChecksum {
    static func sum(_ bytes: some Sequence<UInt8>, initial: UInt32 = 0) -> UInt32 {
        var sum = initial
        var high: UInt8? = nil
        for byte in bytes {
            if let h = high {
                sum &+= UInt32(h) << 8 | UInt32(byte)
                high = nil
            } else {
                high = byte
            }
        }
        if let h = high { sum &+= UInt32(h) << 8 }
        return sum
    }

    static func finish(_ sum: UInt32) -> UInt16 {
        var s = sum
        while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
        return ~UInt16(s)
    }

    static func checksum(_ bytes: some Sequence<UInt8>, initial: UInt32 = 0) -> UInt16 {
        finish(sum(bytes, initial: initial))
    }

    /// The IPv6 pseudo-header (RFC 8200 8.1) sum for an upper-layer packet of `length` bytes.
    static func ipv6PseudoHeader(source: IPv6Address, destination: IPv6Address, length: Int, nextHeader: UInt8) -> UInt32 {
        var header: [UInt8] = source.bytes + destination.bytes
        header.appendBigEndian(UInt32(truncatingIfNeeded: length))
        header += [0, 0, 0, nextHeader]
        return sum(header)
    }
}
