/// A Linux network interface name, validated the way the kernel validates it
/// (`dev_valid_name`): 1 to 15 bytes, not "." or "..", no '/', ':' or whitespace.
/// ':' is refused too because it separates fields in rule endpoints, and so is anything
/// outside printable ASCII: the kernel compares names as bytes, Swift strings compare
/// Unicode canonically, and only for ASCII do the two agree.
public struct InterfaceName: Hashable, Comparable, Sendable, TextCodable {
    public static let textKind = "a valid interface name"

    public let rawValue: String

    public static let maximumLength = 15  // IFNAMSIZ - 1

    public init?(_ text: String) { self.init(parsing: text) }

    public init?(_ text: some StringProtocol) { self.init(parsing: text) }

    init?(parsing text: some StringProtocol) {
        let name = String(text)
        guard !name.isEmpty, name.utf8.count <= Self.maximumLength, name != ".", name != ".."
        else { return nil }
        for byte in name.utf8 {
            if byte == UInt8(ascii: "/") || byte == UInt8(ascii: ":") || byte <= 0x20 || byte >= 0x7F {
                return nil
            }
        }
        rawValue = name
    }

    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}
