/// A Linux network interface name, validated the way the kernel validates it
/// (`dev_valid_name`): 1 to 15 bytes, not "." or "..", no '/', ':' or whitespace.
/// ':' is refused too because it separates fields in rule endpoints.
public struct InterfaceName: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public let rawValue: String

    public static let maximumLength = 15  // IFNAMSIZ - 1

    public init?(_ text: some StringProtocol) {
        let name = String(text)
        guard !name.isEmpty, name.utf8.count <= Self.maximumLength, name != ".", name != ".."
        else { return nil }
        for byte in name.utf8 {
            if byte == UInt8(ascii: "/") || byte == UInt8(ascii: ":") || byte <= 0x20 || byte == 0x7F {
                return nil
            }
        }
        rawValue = name
    }

    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let name = InterfaceName(text) else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath, debugDescription: "not a valid interface name: \"\(text)\""))
        }
        self = name
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
