/// What a rule listens for: UDP to `group:port` arriving on `interface`, optionally only
/// from `source` (source-specific multicast).
public struct InputSpec: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var interface: InterfaceName
    public var group: IPv4Address
    public var port: UInt16
    public var source: IPv4Address?

    public init(interface: InterfaceName, group: IPv4Address, port: UInt16, source: IPv4Address? = nil) {
        self.interface = interface
        self.group = group
        self.port = port
        self.source = source
    }

    /// `IFACE:GROUP:PORT`, with ` from SOURCE` when source-specific.
    public var description: String {
        "\(interface):\(group):\(port)" + (source.map { " from \($0)" } ?? "")
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.interface, lhs.group, lhs.port, lhs.source?.value ?? 0)
            < (rhs.interface, rhs.group, rhs.port, rhs.source?.value ?? 0)
    }
}

/// Where a rule sends a copy: `destination:port` out of `interface` with IP TTL `ttl`.
/// The destination may be a multicast group or a unicast host.
public struct OutputSpec: Hashable, Sendable, CustomStringConvertible, Codable {
    /// Multicast TTL 1 (the kernel's default) dies at the first router, which is the usual
    /// reason a relayed stream "does not arrive"; 64 matches the unicast default.
    public static let defaultTTL: UInt8 = 64

    public var interface: InterfaceName
    public var destination: IPv4Address
    public var port: UInt16
    public var ttl: UInt8

    public init(interface: InterfaceName, destination: IPv4Address, port: UInt16, ttl: UInt8 = OutputSpec.defaultTTL) {
        self.interface = interface
        self.destination = destination
        self.port = port
        self.ttl = ttl
    }

    /// `IFACE:ADDRESS:PORT:TTL`, the same syntax the CLI and config file accept.
    public var description: String { "\(interface):\(destination):\(port):\(ttl)" }
}

/// Parsing of the `IFACE:ADDRESS:PORT[:TTL]` endpoint syntax shared by the CLI and the config file.
public enum EndpointSyntax {
    public static func parseInput(_ text: String, source: IPv4Address? = nil) throws(EndpointSyntaxError) -> InputSpec {
        let fields = text.split(separator: ":", omittingEmptySubsequences: false)
        guard fields.count == 3 else { throw .wrongFieldCount(text, expected: "IFACE:GROUP:PORT") }
        return InputSpec(
            interface: try interface(fields[0], in: text),
            group: try address(fields[1], in: text),
            port: try port(fields[2], in: text),
            source: source)
    }

    public static func parseOutput(_ text: String) throws(EndpointSyntaxError) -> OutputSpec {
        let fields = text.split(separator: ":", omittingEmptySubsequences: false)
        guard fields.count == 3 || fields.count == 4 else {
            throw .wrongFieldCount(text, expected: "IFACE:ADDRESS:PORT[:TTL]")
        }
        var ttl = OutputSpec.defaultTTL
        if fields.count == 4 {
            guard let value = UInt8(fields[3]), value > 0 else { throw .badTTL(text, String(fields[3])) }
            ttl = value
        }
        return OutputSpec(
            interface: try interface(fields[0], in: text),
            destination: try address(fields[1], in: text),
            port: try port(fields[2], in: text),
            ttl: ttl)
    }

    public static func parseAddress(_ text: String) throws(EndpointSyntaxError) -> IPv4Address {
        guard let value = IPv4Address(text) else { throw .badAddress(text, text) }
        return value
    }

    private static func interface(_ field: Substring, in text: String) throws(EndpointSyntaxError) -> InterfaceName {
        guard let name = InterfaceName(field) else { throw .badInterface(text, String(field)) }
        return name
    }

    private static func address(_ field: Substring, in text: String) throws(EndpointSyntaxError) -> IPv4Address {
        guard let value = IPv4Address(field) else { throw .badAddress(text, String(field)) }
        return value
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

    public var description: String {
        switch self {
        case let .wrongFieldCount(text, expected): "\"\(text)\": expected \(expected)"
        case let .badInterface(text, field): "\"\(text)\": \"\(field)\" is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
        case let .badAddress(text, field): "\"\(text)\": \"\(field)\" is not an IPv4 address (dotted quad)"
        case let .badPort(text, field): "\"\(text)\": \"\(field)\" is not a port number (0-65535)"
        case let .badTTL(text, field): "\"\(text)\": TTL \"\(field)\" must be 1-255"
        }
    }
}
