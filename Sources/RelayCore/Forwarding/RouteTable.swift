/// Open-addressing hash table from a packed (ingress slot, group, port) key to the routes
/// for it. Built once per plan, read per packet: a lookup is a multiply, a mask and a
/// short probe over two flat arrays — no hashing of structs, no allocation.
struct RouteTable: Sendable {
    /// Routes for one (ingress, group, port): an any-source route and/or source-specific ones.
    struct Entry: Sendable {
        var anySource: Int32 = -1
        var specificStart: Int32 = 0
        var specificCount: Int32 = 0
    }

    struct SpecificRoute: Sendable {
        var source: UInt32
        var route: Int32
    }

    private var keys: ContiguousArray<UInt64>
    private var entries: ContiguousArray<Entry>
    private var specific: ContiguousArray<SpecificRoute>
    private let mask: Int

    /// Key 0 never occurs: groups are multicast, so the group bits are never all zero.
    private static let emptyKey: UInt64 = 0

    @inline(__always)
    static func key(ingress: Int, group: IPv4Address, port: UInt16) -> UInt64 {
        UInt64(truncatingIfNeeded: ingress) << 48 | UInt64(group.value) << 16 | UInt64(port)
    }

    @inline(__always)
    private static func slot(of key: UInt64, mask: Int) -> Int {
        // Fibonacci hashing: the top bits of the product are well mixed.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// `routes` lists, per route index, its key and optional source.
    init(routes: [(key: UInt64, source: IPv4Address?)]) {
        var capacity = 8
        while capacity < routes.count * 2 { capacity <<= 1 }
        mask = capacity - 1
        keys = ContiguousArray(repeating: Self.emptyKey, count: capacity)
        entries = ContiguousArray(repeating: Entry(), count: capacity)

        // Group source-specific routes by key so each entry's specifics are contiguous,
        // in route order for determinism.
        var specificByKey: [UInt64: [SpecificRoute]] = [:]
        var keyOrder: [UInt64] = []
        for (index, route) in routes.enumerated() {
            let slot = Self.findOrInsert(route.key, keys: &keys, mask: mask)
            if let source = route.source {
                if specificByKey[route.key] == nil { keyOrder.append(route.key) }
                specificByKey[route.key, default: []].append(SpecificRoute(source: source.value, route: Int32(index)))
            } else {
                entries[slot].anySource = Int32(index)
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

    private static func findOrInsert(_ key: UInt64, keys: inout ContiguousArray<UInt64>, mask: Int) -> Int {
        var slot = self.slot(of: key, mask: mask)
        while keys[slot] != emptyKey && keys[slot] != key { slot = (slot + 1) & mask }
        keys[slot] = key
        return slot
    }

    /// The route for a datagram: a source-specific route for its source wins over the
    /// any-source route for the same group and port. -1 when none.
    @inline(__always)
    func route(for key: UInt64, source: IPv4Address) -> Int32 {
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
            for index in Int(entry.specificStart)..<end where specific[index].source == source.value {
                return specific[index].route
            }
        }
        return entry.anySource
    }
}
