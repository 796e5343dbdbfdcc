/// An IPv6 address held as two host-order 64-bit halves, so comparisons, prefix tests and
/// hashing are integer operations and the type is trivially copyable on the hot path.
public struct IPv6Address: Hashable, Comparable, Sendable, TextCodable {
    public static let textKind = "an IPv6 address (RFC 4291 text, no zone)"

    /// Bits 0-63 (the first eight bytes on the wire).
    public var high: UInt64
    /// Bits 64-127.
    public var low: UInt64

    @inlinable public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// From eight 16-bit groups, as written in text.
    public init(_ g0: UInt16, _ g1: UInt16, _ g2: UInt16, _ g3: UInt16,
                _ g4: UInt16, _ g5: UInt16, _ g6: UInt16, _ g7: UInt16) {
        high = UInt64(g0) << 48 | UInt64(g1) << 32 | UInt64(g2) << 16 | UInt64(g3)
        low = UInt64(g4) << 48 | UInt64(g5) << 32 | UInt64(g6) << 16 | UInt64(g7)
    }

    /// RFC 4291 section 2.2 text: eight groups of 1-4 hex digits, one "::" for a run of zero
    /// groups, an optional dotted quad as the last 32 bits. Zones ("%eth0") are refused: a rule
    /// names its interface in its own field, and a zone there would be a second, conflicting one.
    public init?(_ text: String) { self.init(parsing: text) }

    public init?(_ text: some StringProtocol) { self.init(parsing: text) }

    init?(parsing text: some StringProtocol) {
        let bytes = Array(text.utf8)
        guard bytes.count >= 2, bytes.count <= 45 else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawGap = false
        var index = 0
        if bytes.starts(with: [UInt8(ascii: ":"), UInt8(ascii: ":")]) {
            sawGap = true
            index = 2
            if index == bytes.count { self.init(high: 0, low: 0); return }
        } else if bytes[0] == UInt8(ascii: ":") {
            return nil
        }
        while index < bytes.count {
            // One field: hex digits, or a dotted quad when it is the last field.
            var end = index
            while end < bytes.count, bytes[end] != UInt8(ascii: ":") { end += 1 }
            let field = bytes[index..<end]
            guard !field.isEmpty else { return nil }
            if field.contains(UInt8(ascii: ".")) {
                guard end == bytes.count,
                      let v4 = IPv4Address(String(decoding: field, as: UTF8.self)) else { return nil }
                let groups = [UInt16(v4.value >> 16), UInt16(truncatingIfNeeded: v4.value)]
                if sawGap { tail += groups } else { head += groups }
            } else {
                guard field.count <= 4 else { return nil }
                var value: UInt16 = 0
                for byte in field {
                    guard let digit = Self.hexValue(byte) else { return nil }
                    value = value << 4 | UInt16(digit)
                }
                if sawGap { tail.append(value) } else { head.append(value) }
            }
            index = end
            guard index < bytes.count else { break }
            // At a ':'. "::" opens the gap (once); a trailing single ':' is an error.
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: ":") {
                guard !sawGap else { return nil }
                sawGap = true
                index += 1
                if index == bytes.count { break }
            } else if index == bytes.count {
                return nil
            }
        }
        let count = head.count + tail.count
        if sawGap {
            guard count <= 7 else { return nil }
        } else {
            guard count == 8 else { return nil }
        }
        let groups = head + Array(repeating: 0, count: 8 - count) + tail
        self.init(groups[0], groups[1], groups[2], groups[3], groups[4], groups[5], groups[6], groups[7])
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The 16 bytes in network order.
    public var bytes: [UInt8] {
        (0..<16).map { index in
            let half = index < 8 ? high : low
            return UInt8(truncatingIfNeeded: half >> (56 - 8 * UInt64(index % 8)))
        }
    }

    public init(bytes: some Collection<UInt8>) {
        precondition(bytes.count == 16, "an IPv6 address is 16 bytes")
        var high: UInt64 = 0, low: UInt64 = 0
        for (index, byte) in bytes.enumerated() {
            if index < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
        }
        self.init(high: high, low: low)
    }

    public var groups: [UInt16] {
        (0..<8).map { index in
            let half = index < 4 ? high : low
            return UInt16(truncatingIfNeeded: half >> (48 - 16 * UInt64(index % 4)))
        }
    }

    /// ff00::/8.
    @inlinable public var isMulticast: Bool { high >> 56 == 0xFF }
    @inlinable public var isUnspecified: Bool { high == 0 && low == 0 }
    @inlinable public var isLoopback: Bool { high == 0 && low == 1 }
    /// fe80::/10.
    @inlinable public var isLinkLocalUnicast: Bool { high >> 54 == 0x3FA }
    /// ::ffff:0:0/96: an IPv4 address in IPv6 clothing; never valid on the wire as a source
    /// or destination of an IPv6 datagram (RFC 4291 2.5.5.2 is for sockets, not packets).
    @inlinable public var isIPv4Mapped: Bool { high == 0 && low >> 32 == 0xFFFF }
    /// A usable unicast source or destination.
    @inlinable public var isUnicast: Bool { !isMulticast && !isUnspecified && !isLoopback && !isIPv4Mapped }

    /// The 4-bit scope of a multicast address (RFC 4291 2.7): 1 interface-local, 2 link-local,
    /// 4 admin-local, 5 site-local, 8 organization-local, 14 global.
    @inlinable public var multicastScope: UInt8 { UInt8(truncatingIfNeeded: high >> 48) & 0x0F }

    /// RFC 5952 text: lowercase, no leading zeros, the longest run of two or more zero groups
    /// (the first of equals) as "::".
    public var description: String {
        let groups = self.groups
        var bestStart = -1, bestLength = 0
        var runStart = -1
        for index in 0...8 {
            if index < 8, groups[index] == 0 {
                if runStart < 0 { runStart = index }
            } else if runStart >= 0 {
                if index - runStart > bestLength { bestStart = runStart; bestLength = index - runStart }
                runStart = -1
            }
        }
        if bestLength < 2 { bestStart = -1 }
        var text = ""
        var index = 0
        while index < 8 {
            if index == bestStart {
                text += "::"
                index += bestLength
                continue
            }
            if !text.isEmpty, !text.hasSuffix(":") { text += ":" }
            text += String(groups[index], radix: 16)
            index += 1
        }
        return text
    }

    @inlinable public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.high, lhs.low) < (rhs.high, rhs.low) }
}
