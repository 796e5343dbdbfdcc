/// Why a frame was not forwarded. Every frame the core sees is either forwarded or counted
/// under exactly one of these.
public enum DropReason: Int, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// Shorter than the headers it needs or claims.
    case truncated
    /// Neither IPv4 nor IPv6 (ARP, MPLS, LLC, a third VLAN tag, ...), or a version field that
    /// contradicts the EtherType.
    case notIP
    /// IPv4 version or header length field impossible.
    case badIPv4Header
    /// IPv4 header checksum wrong: corrupted in flight.
    case badChecksum
    /// IPv4 total length, IPv6 payload length or UDP length inconsistent with each other or
    /// the frame.
    case badLength
    /// An IP fragment (IPv4 MF/offset, an IPv6 fragment header): the relay forwards whole
    /// datagrams only.
    case fragment
    /// IP but not UDP (for IPv6: after the extension headers; ESP and AH count here).
    case notUDP
    /// UDP to a unicast or broadcast address.
    case notMulticast
    /// A frame this host transmitted (seen by a tap on the egress path): never relayed, or
    /// the relay would loop.
    case ownTransmission
    /// Well-formed multicast UDP that no active rule asks for.
    case noMatchingRule
    /// An IPv6 extension header chain the relay does not walk: hop-by-hop options anywhere
    /// but first (RFC 8200 4.1), or more than `FrameParser.maximumExtensionHeaders` headers.
    case badIPv6Header
    /// UDP over IPv6 with checksum 0, which RFC 8200 8.1 says receivers must discard (only
    /// tunnel protocols under RFC 6935 may send it, and the relay is not one).
    case zeroUDPChecksum
    /// A proxy would route a datagram whose TTL / hop limit is 1 or 0: after the decrement
    /// it could not be sent on (RFC 1812 5.3.1, RFC 8200 3), so a router drops it.
    case ttlExceeded

    /// snake_case names used in reports, JSON and metrics.
    public var description: String {
        switch self {
        case .truncated: "truncated"
        case .notIP: "not_ip"
        case .badIPv4Header: "bad_ipv4_header"
        case .badChecksum: "bad_checksum"
        case .badLength: "bad_length"
        case .fragment: "fragment"
        case .notUDP: "not_udp"
        case .notMulticast: "not_multicast"
        case .ownTransmission: "own_transmission"
        case .noMatchingRule: "no_matching_rule"
        case .badIPv6Header: "bad_ipv6_header"
        case .zeroUDPChecksum: "zero_udp_checksum"
        case .ttlExceeded: "ttl_exceeded"
        }
    }

    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = match
    }
}
