/// The upstream joins of every proxy (RFC 4605 4.1), derived from the downstream listener
/// state one group at a time: on `.listenersChanged(d, G)` only (upstream, G) is worked out
/// again, so listener churn costs per change, not per group.
///
/// For one upstream U and group G the proxies with upstream U that cover G are merged (their
/// downstream interfaces together): when any downstream record for G is EXCLUDE, the relay
/// joins G on U from any source; otherwise it joins (S, G) on U for the union of the INCLUDE
/// sources; with no record it joins nothing. (RFC 4605 merges EXCLUDE lists into one EXCLUDE
/// report; the host kernel sends what the relay's helper sockets ask, and a socket join is
/// any-source or per source, so an EXCLUDE downstream becomes EXCLUDE {} upstream: the
/// traffic of excluded sources still arrives upstream and is filtered per downstream.)
public struct Proxies: Sendable {
    public struct Key: Hashable, Comparable, Sendable {
        public var upstream: InterfaceName
        public var group: IPAddress
        public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.upstream, lhs.group) < (rhs.upstream, rhs.group) }
    }

    /// What is joined upstream for one group, and why (for `mcrelay igmp proxy`).
    public struct Join: Hashable, Sendable {
        /// nil sources: any source, because `excludeOn` have EXCLUDE listeners.
        public var sources: Set<IPAddress>?
        public var excludeOn: [InterfaceName]
        public var includeOn: [InterfaceName]

        public func memberships(_ key: Key) -> Set<MembershipKey> {
            guard let sources else { return [MembershipKey(interface: key.upstream, group: key.group)] }
            return Set(sources.map { MembershipKey(interface: key.upstream, group: key.group, source: $0) })
        }
    }

    /// A change in what the proxies need joined.
    public struct Delta: Equatable, Sendable {
        public var added: Set<MembershipKey> = []
        public var removed: Set<MembershipKey> = []
        public var isEmpty: Bool { added.isEmpty && removed.isEmpty }
    }

    public private(set) var configurations: [ProxyConfiguration] = []
    public private(set) var joins: [Key: Join] = [:]
    /// Every membership the proxies need: the union of `joins`.
    public private(set) var needed: Set<MembershipKey> = []

    public init() {}

    /// Replaces the proxies (config load) and derives their joins from what the listeners
    /// know now: the one full pass, over the listener records, not over every group of a range.
    public mutating func replace(_ configurations: [ProxyConfiguration], listeners: Listeners) throws(ProxyError) -> Delta {
        try ProxyConfiguration.validate(configurations)
        let before = needed
        self.configurations = configurations
        joins = [:]
        needed = []
        var keys = Set<Key>()
        for status in listeners.groupStatus {
            for proxy in configurations where proxy.downstream.contains(status.interface) && proxy.covers(status.group) {
                keys.insert(Key(upstream: proxy.upstream, group: status.group))
            }
        }
        for key in keys.sorted() { _ = rederive(key, listeners: listeners) }
        return Delta(added: needed.subtracting(before), removed: before.subtracting(needed))
    }

    /// Who wants `group` on downstream `interface` changed: work out again the joins of
    /// every upstream whose proxy covers it there.
    public mutating func listenersChanged(interface: InterfaceName, group: IPAddress, listeners: Listeners) -> Delta {
        var delta = Delta()
        var upstreams = Set<InterfaceName>()
        for proxy in configurations where proxy.downstream.contains(interface) && proxy.covers(group) {
            upstreams.insert(proxy.upstream)
        }
        for upstream in upstreams.sorted() {
            let change = rederive(Key(upstream: upstream, group: group), listeners: listeners)
            delta.added.formUnion(change.added)
            delta.removed.formUnion(change.removed)
        }
        delta.removed.subtract(delta.added)
        return delta
    }

    /// The join for one (upstream, group) from the current listener records.
    public func derive(_ key: Key, listeners: Listeners) -> Join? {
        var excludeOn: [InterfaceName] = []
        var includeOn: [InterfaceName] = []
        var sources = Set<IPAddress>()
        var downstream = Set<InterfaceName>()
        for proxy in configurations where proxy.upstream == key.upstream && proxy.covers(key.group) {
            downstream.formUnion(proxy.downstream)
        }
        for interface in downstream.sorted() {
            guard let record = listeners.interfaces[Listeners.Key(interface, key.group.family)]?.groups[key.group] else { continue }
            if record.mode == .exclude {
                excludeOn.append(interface)
            } else if !record.requested.isEmpty {
                includeOn.append(interface)
                sources.formUnion(record.requested.keys)
            }
        }
        if !excludeOn.isEmpty { return Join(sources: nil, excludeOn: excludeOn, includeOn: includeOn) }
        if !sources.isEmpty { return Join(sources: sources, excludeOn: [], includeOn: includeOn) }
        return nil
    }

    private mutating func rederive(_ key: Key, listeners: Listeners) -> Delta {
        let old = joins[key].map { $0.memberships(key) } ?? []
        let join = derive(key, listeners: listeners)
        joins[key] = join
        let new = join.map { $0.memberships(key) } ?? []
        // Two proxies never share a (upstream, group) key's memberships with another key, so
        // the key's own old and new sets are the whole change.
        needed.subtract(old.subtracting(new))
        needed.formUnion(new)
        return Delta(added: new.subtracting(old), removed: old.subtracting(new))
    }
}

extension Proxies {
    /// The routes that forward the proxied traffic (RFC 4605 4.2): per upstream and per prefix
    /// of a proxy's `groups`, a range input `upstream:prefix:*` whose routed outputs are the
    /// downstream interfaces of every proxy of that upstream covering the whole prefix (so a
    /// longer prefix, which wins the lookup, still reaches the downstreams of a shorter one).
    ///
    /// Rules the user wrote keep priority: a rule with the very same input replaces the proxy's
    /// route, and a more specific rule (a group, a port, a source) wins the datagrams it matches
    /// as the most specific input always does; the proxy does not forward those.
    public static func routes(for configurations: [ProxyConfiguration], besides rules: some Sequence<Rule>) -> [Rule] {
        let taken = Set(rules.map(\.input))
        var prefixes: [InterfaceName: Set<GroupPrefix>] = [:]
        for proxy in configurations { prefixes[proxy.upstream, default: []].formUnion(proxy.groups) }
        var routes: [Rule] = []
        for upstream in prefixes.keys.sorted() {
            for prefix in prefixes[upstream]!.sorted() {
                let input = InputSpec(interface: upstream, group: prefix.base, port: 0, prefixLength: prefix.length)
                guard !taken.contains(input) else { continue }
                var downstream: [InterfaceName] = []
                for proxy in configurations where proxy.upstream == upstream
                    && proxy.groups.contains(where: { $0.length <= prefix.length && $0.contains(prefix.base) }) {
                    for interface in proxy.downstream where !downstream.contains(interface) { downstream.append(interface) }
                }
                routes.append(Rule(id: RuleID(proxying: input), name: "proxy", input: input,
                                   outputs: downstream.map { OutputSpec.routed(interface: $0, range: prefix.base) }))
            }
        }
        return routes
    }

    /// Does a proxy forward `key.group` to downstream `key.interface`? Then the workers need
    /// its gate.
    public func routes(_ key: GateKey) -> Bool {
        configurations.contains { $0.downstream.contains(key.interface) && $0.covers(key.group) }
    }
}

extension RuleID {
    /// A proxy route's id: from its input like a rule's, salted so it never equals the id a
    /// user rule with that input would get.
    init(proxying input: InputSpec) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in ("proxy " + input.description).utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        self.init(rawValue: hash)
    }
}
