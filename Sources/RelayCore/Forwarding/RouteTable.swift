/// A route table key: (ingress slot, group, port) of one address family, packed so that
/// equality is one or two integer compares.
protocol RouteKey: Equatable, Sendable, Hashable {
    /// A value no real key takes (groups are multicast, so never all zero).
    static var empty: Self { get }
    /// Well-mixed bits for the table's slot.
    var mixed: UInt64 { get }
}

/// IPv4: ingress << 48 | group << 16 | port in one word.
struct RouteKey4: RouteKey {
    var packed: UInt64
    static let empty = RouteKey4(packed: 0)
    @inline(__always) init(packed: UInt64) { self.packed = packed }
    @inline(__always) init(ingress: Int, group: IPv4Address, port: UInt16) {
        packed = UInt64(truncatingIfNeeded: ingress) << 48 | UInt64(group.value) << 16 | UInt64(port)
    }
    // Fibonacci hashing: the top bits of the product are well mixed.
    @inline(__always) var mixed: UInt64 { (packed &* 0x9E37_79B9_7F4A_7C15) >> 32 }
}

/// IPv6: the 128-bit group and ingress << 16 | port. A separate table from IPv4's, so the
/// IPv4 lookup stays a one-word compare.
struct RouteKey6: RouteKey {
    var group: IPv6Address
    var ingressAndPort: UInt64
    static let empty = RouteKey6(group: IPv6Address(high: 0, low: 0), ingressAndPort: 0)
    @inline(__always) init(group: IPv6Address, ingressAndPort: UInt64) {
        self.group = group
        self.ingressAndPort = ingressAndPort
    }
    @inline(__always) init(ingress: Int, group: IPv6Address, port: UInt16) {
        self.group = group
        ingressAndPort = UInt64(truncatingIfNeeded: ingress) << 16 | UInt64(port)
    }
    @inline(__always) var mixed: UInt64 {
        // Groups of one stream set usually differ in the low bits only, so those lead.
        let folded = group.low ^ (group.high &* 0xC2B2_AE3D_27D4_EB4F) ^ (ingressAndPort << 40 | ingressAndPort >> 24)
        return (folded &* 0x9E37_79B9_7F4A_7C15) >> 32
    }
}

/// Open-addressing hash table from a packed (ingress slot, group, port) key to the routes
/// for it. Built once per plan, read per packet: a lookup is a multiply, a mask and a
/// short probe over two flat arrays — no hashing of structs, no allocation.
struct RouteTable<Key: RouteKey, Source: Equatable & Sendable & Hashable>: Sendable {
    /// Routes for one (ingress, group, port): an any-source route and/or source-specific ones.
    struct Entry: Sendable {
        var anySource: Int32 = -1
        var specificStart: Int32 = 0
        var specificCount: Int32 = 0
    }

    struct SpecificRoute: Sendable {
        var source: Source
        var route: Int32
    }

    private var keys: ContiguousArray<Key>
    private var entries: ContiguousArray<Entry>
    private var specific: ContiguousArray<SpecificRoute>
    private let mask: Int

    private static var emptyKey: Key { Key.empty }

    @inline(__always)
    private static func slot(of key: Key, mask: Int) -> Int {
        Int(truncatingIfNeeded: key.mixed) & mask
    }

    /// `routes` lists, per route index, its key and optional source.
    init(routes: [(key: Key, source: Source?, route: Int32)]) {
        var capacity = 8
        while capacity < routes.count * 2 { capacity <<= 1 }
        mask = capacity - 1
        keys = ContiguousArray(repeating: Self.emptyKey, count: capacity)
        entries = ContiguousArray(repeating: Entry(), count: capacity)

        // Group source-specific routes by key so each entry's specifics are contiguous,
        // in route order for determinism.
        var specificByKey: [Key: [SpecificRoute]] = [:]
        var keyOrder: [Key] = []
        for route in routes {
            let slot = Self.findOrInsert(route.key, keys: &keys, mask: mask)
            if let source = route.source {
                if specificByKey[route.key] == nil { keyOrder.append(route.key) }
                specificByKey[route.key, default: []].append(SpecificRoute(source: source, route: route.route))
            } else {
                entries[slot].anySource = route.route
            }
        }
        specific = []
        for key in keyOrder {
            let list = specificByKey[key]!
            let slot = Self.findOrInsert(key, keys: &keys, mask: mask)
            entries[slot].specificStart = Int32(specific.count)
            entries[slot].specificCount = Int32(list.count)
            specific.append(contentsOf: list)
        }
    }

    private static func findOrInsert(_ key: Key, keys: inout ContiguousArray<Key>, mask: Int) -> Int {
        var slot = self.slot(of: key, mask: mask)
        while keys[slot] != emptyKey && keys[slot] != key { slot = (slot + 1) & mask }
        keys[slot] = key
        return slot
    }

    /// The route for a datagram: a source-specific route for its source wins over the
    /// any-source route for the same group and port. -1 when none.
    @inline(__always)
    func route(for key: Key, source: Source) -> Int32 {
        var slot = Self.slot(of: key, mask: mask)
        while true {
            let candidate = keys[slot]
            if candidate == key { break }
            if candidate == Self.emptyKey { return -1 }
            slot = (slot + 1) & mask
        }
        let entry = entries[slot]
        if entry.specificCount > 0 {
            let end = Int(entry.specificStart + entry.specificCount)
            for index in Int(entry.specificStart)..<end where specific[index].source == source {
                return specific[index].route
            }
        }
        return entry.anySource
    }
}
