/// What a rule listens for: UDP to `group:port` arriving on `interface`, optionally only
/// from `source` (source-specific multicast).
///
/// A range input names a group prefix (`eth0:239.0.0.0/8:5000`) and/or any port
/// (`eth0:239.1.1.1:*`, `eth0:[ff3e::]/16:*`). Port 0 is "any port" (no UDP datagram is
/// addressed to port 0 in practice, and `*` is how it is written); `prefixLength` nil is one
/// group, so exact inputs keep their text and therefore their rule ids.
public struct InputSpec: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var interface: InterfaceName
    /// The group, or the base of the prefix when `prefixLength` is set.
    public var group: IPAddress
    /// 0: any port.
    public var port: UInt16
    public var source: IPAddress?
    /// nil: exactly `group`; otherwise `group/prefixLength` (shorter than the full length).
    public var prefixLength: UInt8?

    public init(interface: InterfaceName, group: IPAddress, port: UInt16, source: IPAddress? = nil,
                prefixLength: UInt8? = nil) {
        self.interface = interface
        self.group = group
        self.port = port
        self.source = source
        // A full-length prefix is the group itself: one spelling, one id.
        self.prefixLength = prefixLength == GroupRange.fullLength(group.family) ? nil : prefixLength
    }

    public var isAnyPort: Bool { port == 0 }
    /// A group prefix or any port: matched only when no exact route takes the datagram.
    public var isRange: Bool { prefixLength != nil || port == 0 }
    /// The prefix length, full for one group.
    public var effectivePrefixLength: UInt8 { prefixLength ?? GroupRange.fullLength(group.family) }

    /// Does this input take a datagram to `group:port` (ignoring the source filter)?
    public func covers(group other: IPAddress, port otherPort: UInt16) -> Bool {
        (port == 0 || port == otherPort) && GroupRange.contains(base: group, length: effectivePrefixLength, other)
    }

    /// `IFACE:GROUP:PORT`, with ` from SOURCE` when source-specific; an IPv6 group in brackets
    /// (`eth0:[ff3e::1]:5000`). IPv4 text is exactly what it was before IPv6, so rule ids
    /// (derived from this text) are unchanged.
    public init(interface: InterfaceName, group: IPv4Address, port: UInt16, source: IPv4Address? = nil) {
        self.init(interface: interface, group: .v4(group), port: port, source: source.map(IPAddress.v4))
    }

    public var description: String { endpoint + (source.map { " from \($0)" } ?? "") }

    /// `IFACE:GROUP:PORT` alone, as `--in` and the config's "in" take it.
    public var endpoint: String {
        "\(interface):\(group.endpointText)\(prefixLength.map { "/\($0)" } ?? ""):\(port == 0 ? "*" : String(port))"
    }

    public var family: AddressFamily { group.family }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        if lhs.interface != rhs.interface { return lhs.interface < rhs.interface }
        if lhs.group != rhs.group { return lhs.group < rhs.group }
        if lhs.prefixLength != rhs.prefixLength { return (lhs.prefixLength ?? 255) > (rhs.prefixLength ?? 255) }
        if lhs.port != rhs.port { return lhs.port < rhs.port }
        return IPAddress.precedes(lhs.source, rhs.source)
    }
}

/// Where a rule sends a copy: `destination:port` out of `interface` with IP TTL `ttl`.
/// The destination may be a multicast group or a unicast host.
public struct OutputSpec: Hashable, Sendable, CustomStringConvertible, Codable {
    /// Multicast TTL 1 (the kernel's default) dies at the first router, which is the usual
    /// reason a relayed stream "does not arrive"; 64 matches the unicast default.
    public static let defaultTTL: UInt8 = 64

    public var interface: InterfaceName
    public var destination: IPAddress
    public var port: UInt16
    /// The IPv4 TTL or the IPv6 hop limit of what the relay sends.
    public var ttl: UInt8
    /// Carry traffic only while a listener on `interface` wants `destination` (IGMP/MLD
    /// listener state, see `ListenerGates`); the text form's trailing `:listeners` field.
    public var followsListeners: Bool
    /// A proxy's downstream (never written by a user: `ControlPlane` derives these from the
    /// `proxies`): the datagram is routed, not re-originated. It keeps its own group, port and
    /// source address, its TTL / hop limit goes down by one, and it goes out only while the
    /// listeners on `interface` want (its group, its source): the gate is looked up per datagram
    /// (`Forwarder`). `destination` is the base of the proxied range, `port` 0 and `ttl` 0:
    /// they only identify the output.
    public var routed: Bool

    public init(interface: InterfaceName, destination: IPAddress, port: UInt16, ttl: UInt8 = OutputSpec.defaultTTL,
                followsListeners: Bool = false) {
        self.interface = interface
        self.destination = destination
        self.port = port
        self.ttl = ttl
        self.followsListeners = followsListeners
        self.routed = false
    }

    /// A proxy's routed output on downstream `interface` for the range starting at `base`.
    public static func routed(interface: InterfaceName, range base: IPAddress) -> OutputSpec {
        var output = OutputSpec(interface: interface, destination: base, port: 0, ttl: 0)
        output.routed = true
        return output
    }

    public init(interface: InterfaceName, destination: IPv4Address, port: UInt16, ttl: UInt8 = OutputSpec.defaultTTL,
                followsListeners: Bool = false) {
        self.init(interface: interface, destination: .v4(destination), port: port, ttl: ttl,
                  followsListeners: followsListeners)
    }

    public var family: AddressFamily { destination.family }

    /// `IFACE:ADDRESS:PORT:TTL[:listeners]`, the same syntax the CLI and config file accept
    /// (IPv6 in brackets).
    public var description: String {
        if routed { return "\(interface):routed" }
        return "\(interface):\(destination.endpointText):\(port):\(ttl)" + (followsListeners ? ":\(EndpointSyntax.listenersField)" : "")
    }

    private enum CodingKeys: String, CodingKey { case interface, destination, port, ttl, followsListeners, routed }

    // The flag is absent from what older versions wrote (saved state, recordings): absent is false.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        interface = try container.decode(InterfaceName.self, forKey: .interface)
        destination = try container.decode(IPAddress.self, forKey: .destination)
        port = try container.decode(UInt16.self, forKey: .port)
        ttl = try container.decode(UInt8.self, forKey: .ttl)
        followsListeners = try container.decodeIfPresent(Bool.self, forKey: .followsListeners) ?? false
        routed = try container.decodeIfPresent(Bool.self, forKey: .routed) ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(interface, forKey: .interface)
        try container.encode(destination, forKey: .destination)
        try container.encode(port, forKey: .port)
        try container.encode(ttl, forKey: .ttl)
        if followsListeners { try container.encode(true, forKey: .followsListeners) }
        if routed { try container.encode(true, forKey: .routed) }
    }
}

/// Parsing of the `IFACE:ADDRESS:PORT[:TTL]` endpoint syntax shared by the CLI and the config
/// file. An IPv6 address is written in brackets (`eth0:[ff3e::8000:1]:5000`), as in URLs
/// (RFC 3986), because its colons would otherwise be read as field separators.
public enum EndpointSyntax {
    public static func parseInput(_ text: String, source: IPAddress? = nil) throws(EndpointSyntaxError) -> InputSpec {
        let fields = try split(text)
        guard fields.count == 3 else { throw .wrongFieldCount(text, expected: "IFACE:GROUP[/PREFIX]:PORT|*") }
        var groupField = fields[1]
        var prefixLength: UInt8?
        if let slash = groupField.lastIndex(of: "/") {
            let lengthText = groupField[groupField.index(after: slash)...]
            groupField = groupField[..<slash]
            guard let length = UInt8(lengthText) else { throw .badPrefix(text, String(fields[1])) }
            prefixLength = length
        }
        let group = try address(groupField, in: text)
        if let length = prefixLength {
            guard length <= GroupRange.fullLength(group.family) else { throw .badPrefix(text, String(fields[1])) }
            guard GroupRange.truncated(group, to: length) == group else {
                throw .prefixHostBits(text, String(fields[1]), base: GroupRange.truncated(group, to: length))
            }
        }
        let portField = fields[2]
        let inputPort: UInt16
        if portField == "*" {
            inputPort = 0
        } else {
            inputPort = try port(portField, in: text)
            guard inputPort != 0 else { throw .inputPortZero(text) }
        }
        return InputSpec(interface: try interface(fields[0], in: text), group: group, port: inputPort,
                         source: source, prefixLength: prefixLength)
    }

    /// The trailing output field that makes an output follow listeners.
    public static let listenersField = "listeners"

    public static func parseOutput(_ text: String) throws(EndpointSyntaxError) -> OutputSpec {
        var fields = try split(text)
        let follows = fields.count > 3 && fields.last == Substring(listenersField)
        if follows { fields.removeLast() }
        guard fields.count == 3 || fields.count == 4 else {
            throw .wrongFieldCount(text, expected: "IFACE:ADDRESS:PORT[:TTL][:listeners]")
        }
        var ttl = OutputSpec.defaultTTL
        if fields.count == 4 {
            guard let value = UInt8(fields[3]), value > 0 else { throw .badTTL(text, String(fields[3])) }
            ttl = value
        }
        let destination = try address(fields[1], in: text)
        // Listener state exists only for groups: a unicast output would never open.
        if follows, !destination.isMulticast { throw .followsUnicast(text) }
        return OutputSpec(
            interface: try interface(fields[0], in: text),
            destination: destination,
            port: try port(fields[2], in: text),
            ttl: ttl,
            followsListeners: follows)
    }

    /// A lone address (`--source`, config `source`): bare or, for IPv6, bracketed.
    public static func parseAddress(_ text: String) throws(EndpointSyntaxError) -> IPAddress {
        guard let value = IPAddress(text) else { throw .badAddress(text, text) }
        return value
    }

    /// Splits at ':' outside brackets; a bracketed field keeps its brackets.
    private static func split(_ text: String) throws(EndpointSyntaxError) -> [Substring] {
        var fields: [Substring] = []
        var start = text.startIndex
        var index = text.startIndex
        var inBrackets = false
        while index < text.endIndex {
            let character = text[index]
            if character == "[" {
                guard !inBrackets, index == start else { throw .badBrackets(text) }
                inBrackets = true
            } else if character == "]" {
                guard inBrackets else { throw .badBrackets(text) }
                inBrackets = false
                let next = text.index(after: index)
                // "/" only for a prefix length after an IPv6 group ("[ff3e::]/16").
                guard next == text.endIndex || text[next] == ":" || text[next] == "/" else { throw .badBrackets(text) }
            } else if character == ":", !inBrackets {
                fields.append(text[start..<index])
                start = text.index(after: index)
            }
            index = text.index(after: index)
        }
        guard !inBrackets else { throw .badBrackets(text) }
        fields.append(text[start..<text.endIndex])
        return fields
    }

    private static func interface(_ field: Substring, in text: String) throws(EndpointSyntaxError) -> InterfaceName {
        guard let name = InterfaceName(field) else { throw .badInterface(text, String(field)) }
        return name
    }

    /// IPv4 bare, IPv6 only in brackets.
    private static func address(_ field: Substring, in text: String) throws(EndpointSyntaxError) -> IPAddress {
        if field.hasPrefix("[") {
            guard let value = IPv6Address(field.dropFirst().dropLast()) else { throw .badAddress(text, String(field)) }
            return .v6(value)
        }
        guard let value = IPv4Address(field) else { throw .badAddress(text, String(field)) }
        return .v4(value)
    }

    private static func port(_ field: Substring, in text: String) throws(EndpointSyntaxError) -> UInt16 {
        guard let value = UInt16(field) else { throw .badPort(text, String(field)) }
        return value
    }
}

public enum EndpointSyntaxError: Error, Equatable, Sendable, CustomStringConvertible {
    case wrongFieldCount(String, expected: String)
    case badInterface(String, String)
    case badAddress(String, String)
    case badPort(String, String)
    case badTTL(String, String)
    case badBrackets(String)
    case badPrefix(String, String)
    case prefixHostBits(String, String, base: IPAddress)
    case inputPortZero(String)
    case followsUnicast(String)

    public var description: String {
        switch self {
        case let .wrongFieldCount(text, expected): "\"\(text)\": expected \(expected)"
        case let .badInterface(text, field): "\"\(text)\": \"\(field)\" is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
        case let .badAddress(text, field): "\"\(text)\": \"\(field)\" is not an IPv4 address (dotted quad) or a bracketed IPv6 address ([ff3e::1])"
        case let .badPort(text, field): "\"\(text)\": \"\(field)\" is not a port number (0-65535)"
        case let .badTTL(text, field): "\"\(text)\": TTL \"\(field)\" must be 1-255"
        case let .badBrackets(text): "\"\(text)\": brackets must enclose a whole address field, as in eth0:[ff3e::1]:5000"
        case let .badPrefix(text, field): "\"\(text)\": \"\(field)\" has no valid prefix length (0-32 for IPv4, 0-128 for IPv6)"
        case let .prefixHostBits(text, field, base): "\"\(text)\": \"\(field)\" has bits set past its prefix length; the prefix starts at \(base.endpointText)"
        case let .inputPortZero(text): "\"\(text)\": port 0 is not a port a datagram is sent to; write * for any port"
        case let .followsUnicast(text):
            "\"\(text)\": only a multicast output can follow listeners (listeners report groups, not hosts)"
        }
    }
}
