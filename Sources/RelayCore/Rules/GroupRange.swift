/// Prefix arithmetic for range inputs (`eth0:239.0.0.0/8:*`): which groups a prefix covers,
/// whether two prefixes overlap, whether a prefix has host bits set.
public enum GroupRange {
    /// 32 for IPv4, 128 for IPv6.
    @inlinable public static func fullLength(_ family: AddressFamily) -> UInt8 { family == .ipv4 ? 32 : 128 }

    @inlinable public static func mask4(_ length: UInt8) -> UInt32 {
        length == 0 ? 0 : ~UInt32(0) << (32 - UInt32(min(length, 32)))
    }

    @inlinable public static func mask6(_ length: UInt8) -> (high: UInt64, low: UInt64) {
        let length = min(UInt32(length), 128)
        let high: UInt64 = length == 0 ? 0 : (length >= 64 ? ~0 : ~UInt64(0) << (64 - length))
        let low: UInt64 = length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << (128 - length))
        return (high, low)
    }

    /// Does `base/length` contain `address`? (Different families never match.)
    @inlinable public static func contains(base: IPAddress, length: UInt8, _ address: IPAddress) -> Bool {
        switch (base, address) {
        case let (.v4(b), .v4(a)):
            let mask = mask4(length)
            return b.value & mask == a.value & mask
        case let (.v6(b), .v6(a)):
            let mask = mask6(length)
            return b.high & mask.high == a.high & mask.high && b.low & mask.low == a.low & mask.low
        default:
            return false
        }
    }

    /// `address` with its bits past `length` cleared.
    public static func truncated(_ address: IPAddress, to length: UInt8) -> IPAddress {
        switch address {
        case let .v4(a): return .v4(IPv4Address(a.value & mask4(length)))
        case let .v6(a):
            let mask = mask6(length)
            return .v6(IPv6Address(high: a.high & mask.high, low: a.low & mask.low))
        }
    }

    /// Two prefixes overlap iff the shorter contains the other's base.
    public static func overlap(_ a: IPAddress, _ aLength: UInt8, _ b: IPAddress, _ bLength: UInt8) -> Bool {
        guard a.family == b.family else { return false }
        return aLength <= bLength ? contains(base: a, length: aLength, b) : contains(base: b, length: bLength, a)
    }

    /// Does the prefix include a group that must stay on its link (224.0.0.0/24; IPv6 scope
    /// 0, 1 or 2)? IPv6 scope sits in bits 12-15, so a prefix shorter than 16 bits spans
    /// every scope of some flag value.
    public static func includesLinkScoped(base: IPAddress, length: UInt8) -> Bool {
        switch base {
        case .v4:
            return length >= 24 ? base.isLinkScopedGroup : contains(base: base, length: length, .v4(IPv4Address(0xE000_0000)))
        case .v6:
            return length < 16 || base.isLinkScopedGroup
        }
    }

    /// Is the whole prefix multicast (224.0.0.0/4, ff00::/8)?
    public static func isMulticast(base: IPAddress, length: UInt8) -> Bool {
        switch base {
        case .v4: return length >= 4 && base.isMulticast
        case .v6: return length >= 8 && base.isMulticast
        }
    }
}
