/// An Ethernet (EUI-48) address.
public struct MACAddress: Hashable, Sendable, TextCodable {
    public static let textKind = "a MAC address (six hex bytes separated by ':')"

    public var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ e: UInt8, _ f: UInt8) {
        bytes = (a, b, c, d, e, f)
    }

    /// From the first six bytes of `array` (nil when it is shorter).
    public init?(_ array: [UInt8]) {
        guard array.count >= 6 else { return nil }
        self.init(array[0], array[1], array[2], array[3], array[4], array[5])
    }

    public init?(_ text: String) { self.init(parsing: text) }

    init?(parsing text: some StringProtocol) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var values: [UInt8] = []
        for part in parts {
            guard part.count == 2, let value = UInt8(part, radix: 16) else { return nil }
            values.append(value)
        }
        self.init(values)
    }

    /// 01:00:5e + the low 23 bits of an IPv4 group (RFC 1112 section 6.4).
    public static func multicast(_ group: IPv4Address) -> MACAddress {
        MACAddress(0x01, 0x00, 0x5E, UInt8((group.value >> 16) & 0x7F), UInt8(truncatingIfNeeded: group.value >> 8),
                   UInt8(truncatingIfNeeded: group.value))
    }

    /// 33:33 + the low 32 bits of an IPv6 group (RFC 2464 section 7).
    public static func multicast(_ group: IPv6Address) -> MACAddress {
        let low = UInt32(truncatingIfNeeded: group.low)
        return MACAddress(0x33, 0x33, UInt8(truncatingIfNeeded: low >> 24), UInt8(truncatingIfNeeded: low >> 16),
                          UInt8(truncatingIfNeeded: low >> 8), UInt8(truncatingIfNeeded: low))
    }

    /// The fe80::/64 address with the modified EUI-64 interface id from this MAC (RFC 4291
    /// appendix A), what Linux assigns by default (addr_gen_mode eui64).
    public var linkLocalIPv6: IPv6Address {
        let b = array
        let id = UInt64(b[0] ^ 0x02) << 56 | UInt64(b[1]) << 48 | UInt64(b[2]) << 40 | 0xFF << 32 | 0xFE << 24
            | UInt64(b[3]) << 16 | UInt64(b[4]) << 8 | UInt64(b[5])
        return IPv6Address(high: 0xFE80_0000_0000_0000, low: id)
    }

    public var array: [UInt8] { [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5] }

    public var description: String {
        array.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: ":")
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.array == rhs.array }
    public func hash(into hasher: inout Hasher) { hasher.combine(array) }
}
