/// The address family of a rule, an interface address or a datagram.
public enum AddressFamily: String, Hashable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case ipv4, ipv6
    public var description: String { rawValue }
}

/// An IPv4 or IPv6 address. Rules, joins, routes and reports carry this; code that builds or
/// reads one family's headers takes the family's own type.
public enum IPAddress: Hashable, Comparable, Sendable, TextCodable {
    case v4(IPv4Address)
    case v6(IPv6Address)

    public static let textKind = "an IPv4 address (dotted quad) or an IPv6 address"

    /// A bare address ("239.1.1.1", "ff3e::1") or a bracketed IPv6 one ("[ff3e::1]"), as
    /// `--source` and config fields accept it. Endpoints require the brackets (see
    /// `EndpointSyntax`), because there ':' also separates fields.
    public init?(_ text: String) { self.init(parsing: text) }

    public init?(_ text: some StringProtocol) { self.init(parsing: text) }

    init?(parsing text: some StringProtocol) {
        if let v4 = IPv4Address(text) { self = .v4(v4); return }
        var body = Substring(text)
        if body.hasPrefix("["), body.hasSuffix("]") { body = body.dropFirst().dropLast() }
        guard body.contains(":"), let v6 = IPv6Address(body) else { return nil }
        self = .v6(v6)
    }

    @inlinable public var family: AddressFamily {
        switch self {
        case .v4: .ipv4
        case .v6: .ipv6
        }
    }

    @inlinable public var v4: IPv4Address? {
        if case let .v4(address) = self { return address }
        return nil
    }

    @inlinable public var v6: IPv6Address? {
        if case let .v6(address) = self { return address }
        return nil
    }

    @inlinable public var isMulticast: Bool {
        switch self {
        case let .v4(address): address.isMulticast
        case let .v6(address): address.isMulticast
        }
    }

    @inlinable public var isUnicast: Bool {
        switch self {
        case let .v4(address): address.isUnicast
        case let .v6(address): address.isUnicast
        }
    }

    /// A group whose packets must stay on the link they were sent on: 224.0.0.0/24 (RFC 5771,
    /// never forwarded by routers) or an IPv6 group of interface- or link-local scope
    /// (ff01::/16, ff02::/16, and the reserved scope 0). Relaying one to another link is a
    /// reflector's job and needs the rule to say so.
    @inlinable public var isLinkScopedGroup: Bool {
        switch self {
        case let .v4(address): address.isLocalNetworkControl
        case let .v6(address): address.isMulticast && address.multicastScope <= 2
        }
    }

    /// The text as it appears inside an endpoint: IPv6 in brackets.
    public var endpointText: String {
        switch self {
        case let .v4(address): address.description
        case let .v6(address): "[\(address)]"
        }
    }

    /// The bare text ("239.1.1.1", "ff3e::1").
    public var description: String {
        switch self {
        case let .v4(address): address.description
        case let .v6(address): address.description
        }
    }

    /// Orders optional sources: none (any source) first, then by address.
    public static func precedes(_ lhs: IPAddress?, _ rhs: IPAddress?) -> Bool {
        switch (lhs, rhs) {
        case let (a?, b?): a < b
        case (nil, _?): true
        default: false
        }
    }

    /// IPv4 sorts before IPv6; within a family, numerically.
    public static func < (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case let (.v4(a), .v4(b)): a < b
        case let (.v6(a), .v6(b)): a < b
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }
}
