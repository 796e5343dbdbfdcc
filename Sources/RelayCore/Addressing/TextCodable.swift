/// A value written in JSON as its text form ("239.1.1.1", "eth0", "d7d5e849ed3b"), so
/// config files, control messages and reports read the way operators type them.
public protocol TextCodable: Codable, LosslessStringConvertible {
    /// What the text must look like, for the error when it does not ("an IPv4 address").
    static var textKind: String { get }
}

extension TextCodable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(text) else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath, debugDescription: "not \(Self.textKind): \"\(text)\""))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
