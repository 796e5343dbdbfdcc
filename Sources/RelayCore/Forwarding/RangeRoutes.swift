/// Routes of prefix inputs (`eth0:239.0.0.0/8:*`), matched only after the exact tables
/// missed. Kept as flat arrays sorted most specific first — longer prefix, then a port
/// before any port, then a source before any source — so the first match is the winner;
/// the RuleBook refuses overlapping inputs that are not nested, so "first" is well defined.
/// A scan, not a trie: range inputs are few (one per proxy or range rule), and a lookup
/// touches only these arrays and allocates nothing.
struct RangeRoutes: Sendable {
    struct Entry4: Sendable {
        var ingress: Int
        var base: UInt32
        var mask: UInt32
        var length: UInt8
        var port: UInt16
        var source: UInt32
        var hasSource: Bool
        var route: Int32
    }

    struct Entry6: Sendable {
        var ingress: Int
        var base: IPv6Address
        var mask: IPv6Address
        var length: UInt8
        var port: UInt16
        var source: IPv6Address
        var hasSource: Bool
        var route: Int32
    }

    private var entries4: ContiguousArray<Entry4> = []
    private var entries6: ContiguousArray<Entry6> = []
    /// An exact group with any port exists, so a miss is tried again under port 0.
    private(set) var hasAnyPort4 = false
    private(set) var hasAnyPort6 = false

    var isEmpty4: Bool { entries4.isEmpty }
    var isEmpty6: Bool { entries6.isEmpty }

    mutating func noteAnyPort(_ family: AddressFamily) {
        if family == .ipv4 { hasAnyPort4 = true } else { hasAnyPort6 = true }
    }

    mutating func append(_ input: InputSpec, ingress: Int, route: Int32) {
        let length = input.effectivePrefixLength
        switch input.group {
        case let .v4(group):
            entries4.append(Entry4(ingress: ingress, base: group.value, mask: GroupRange.mask4(length), length: length,
                                   port: input.port, source: input.source?.v4?.value ?? 0,
                                   hasSource: input.source != nil, route: route))
        case let .v6(group):
            let mask = GroupRange.mask6(length)
            entries6.append(Entry6(ingress: ingress, base: group, mask: IPv6Address(high: mask.high, low: mask.low),
                                   length: length, port: input.port, source: input.source?.v6 ?? IPv6Address(high: 0, low: 0),
                                   hasSource: input.source != nil, route: route))
        }
    }

    /// Most specific first; ties keep rule order, so the plan decides, never hashing.
    mutating func seal() {
        func precedes(_ a: (UInt8, UInt16, Bool, Int32), _ b: (UInt8, UInt16, Bool, Int32)) -> Bool {
            if a.0 != b.0 { return a.0 > b.0 }
            if (a.1 == 0) != (b.1 == 0) { return a.1 != 0 }
            if a.2 != b.2 { return a.2 }
            return a.3 < b.3
        }
        entries4.sort { precedes(($0.length, $0.port, $0.hasSource, $0.route), ($1.length, $1.port, $1.hasSource, $1.route)) }
        entries6.sort { precedes(($0.length, $0.port, $0.hasSource, $0.route), ($1.length, $1.port, $1.hasSource, $1.route)) }
    }

    @inline(__always)
    func route(ingress: Int, group: IPv4Address, port: UInt16, source: IPv4Address) -> Int32 {
        for entry in entries4 where entry.ingress == ingress && group.value & entry.mask == entry.base
            && (entry.port == 0 || entry.port == port) && (!entry.hasSource || entry.source == source.value) {
            return entry.route
        }
        return -1
    }

    @inline(__always)
    func route(ingress: Int, group: IPv6Address, port: UInt16, source: IPv6Address) -> Int32 {
        for entry in entries6 where entry.ingress == ingress
            && group.high & entry.mask.high == entry.base.high && group.low & entry.mask.low == entry.base.low
            && (entry.port == 0 || entry.port == port) && (!entry.hasSource || entry.source == source) {
            return entry.route
        }
        return -1
    }
}
