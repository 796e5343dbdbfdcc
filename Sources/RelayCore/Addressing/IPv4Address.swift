/// An IPv4 address held as a host-order integer, so comparisons and prefix tests are
/// plain integer operations and the type is trivially copyable on the hot path.
public struct IPv4Address: Hashable, Comparable, Sendable, TextCodable {
    public static let textKind = "an IPv4 address (dotted quad)"

    public var value: UInt32

    @inlinable public init(_ value: UInt32) { self.value = value }

    @inlinable public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Strict dotted-quad parsing: exactly four decimal octets, no leading zeros beyond "0",
    /// no whitespace. Lenient forms ("1.2.3", "0x7f.1") are refused because they are the
    /// usual source of a rule that silently means something else.
    public init?(_ text: String) { self.init(parsing: text) }

    public init?(_ text: some StringProtocol) { self.init(parsing: text) }

    init?(parsing text: some StringProtocol) {
        var octets: [UInt32] = []
        octets.reserveCapacity(4)
        var current: UInt32 = 0
        var digits = 0
        var leadingZero = false
        for byte in text.utf8 {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, octets.count < 3 else { return nil }
                octets.append(current)
                current = 0; digits = 0; leadingZero = false
                continue
            }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            if digits == 1 && leadingZero { return nil }
            if digits == 0 && byte == UInt8(ascii: "0") { leadingZero = true }
            current = current * 10 + UInt32(byte - UInt8(ascii: "0"))
            digits += 1
            guard digits <= 3, current <= 255 else { return nil }
        }
        guard digits > 0, octets.count == 3 else { return nil }
        octets.append(current)
        value = octets[0] << 24 | octets[1] << 16 | octets[2] << 8 | octets[3]
    }

    /// 224.0.0.0/4.
    @inlinable public var isMulticast: Bool { value >> 28 == 0xE }
    /// 224.0.0.0/24: never routed, carries IGMP and routing protocols; joining is implicit.
    @inlinable public var isLocalNetworkControl: Bool { value >> 8 == 0xE0_00_00 }
    @inlinable public var isUnspecified: Bool { value == 0 }
    @inlinable public var isLimitedBroadcast: Bool { value == .max }
    /// A usable unicast destination or source: not 0/8, not multicast or class E, not broadcast.
    @inlinable public var isUnicast: Bool { value >> 24 != 0 && value >> 28 < 0xE }

    public var octets: (UInt8, UInt8, UInt8, UInt8) {
        (UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16),
         UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value))
    }

    public var description: String {
        let o = octets
        return "\(o.0).\(o.1).\(o.2).\(o.3)"
    }

    @inlinable public static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }
}
