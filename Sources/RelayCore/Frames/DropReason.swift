/// Why a frame was not forwarded. Every frame the core sees is either forwarded or counted
/// under exactly one of these.
public enum DropReason: Int, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// Shorter than the headers it needs or claims.
    case truncated
    /// Not IPv4 (ARP, IPv6, MPLS, LLC, ...).
    case notIPv4
    /// IPv4 version or header length field impossible.
    case badIPv4Header
    /// IPv4 header checksum wrong: corrupted in flight.
    case badChecksum
    /// IPv4 total length or UDP length inconsistent with each other or the frame.
    case badLength
    /// An IP fragment: the relay forwards whole datagrams only.
    case fragment
    /// IPv4 but not UDP.
    case notUDP
    /// UDP to a unicast or broadcast address.
    case notMulticast
    /// A frame this host transmitted (seen by a tap on the egress path): never relayed, or
    /// the relay would loop.
    case ownTransmission
    /// Well-formed multicast UDP that no active rule asks for.
    case noMatchingRule

    /// snake_case names used in reports, JSON and metrics.
    public var description: String {
        switch self {
        case .truncated: "truncated"
        case .notIPv4: "not_ipv4"
        case .badIPv4Header: "bad_ipv4_header"
        case .badChecksum: "bad_checksum"
        case .badLength: "bad_length"
        case .fragment: "fragment"
        case .notUDP: "not_udp"
        case .notMulticast: "not_multicast"
        case .ownTransmission: "own_transmission"
        case .noMatchingRule: "no_matching_rule"
        }
    }

    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = match
    }
}
