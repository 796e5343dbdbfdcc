/// A group prefix as a proxy's `groups` take it: `239.0.0.0/8`, `ff3e::/16`, or one group
/// (`239.1.1.1`, a full-length prefix).
public struct GroupPrefix: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var base: IPAddress
    public var length: UInt8

    public init(base: IPAddress, length: UInt8) {
        self.base = base
        self.length = length
    }

    public init(parsing text: String) throws(ProxyError) {
        var addressText = Substring(text)
        var length: UInt8?
        if let slash = text.lastIndex(of: "/") {
            addressText = text[..<slash]
            guard let value = UInt8(text[text.index(after: slash)...]) else { throw .badGroupPrefix(text) }
            length = value
        }
        if addressText.hasPrefix("["), addressText.hasSuffix("]") { addressText = addressText.dropFirst().dropLast() }
        guard let base = IPAddress(addressText) else { throw .badGroupPrefix(text) }
        let full = GroupRange.fullLength(base.family)
        let prefixLength = length ?? full
        guard prefixLength <= full else { throw .badGroupPrefix(text) }
        guard GroupRange.truncated(base, to: prefixLength) == base else {
            throw .groupPrefixHostBits(text, base: GroupPrefix(base: GroupRange.truncated(base, to: prefixLength), length: prefixLength))
        }
        guard GroupRange.isMulticast(base: base, length: prefixLength) else { throw .groupsNotMulticast(text) }
        guard !GroupRange.includesLinkScoped(base: base, length: prefixLength) else { throw .groupsLinkScoped(text) }
        self.init(base: base, length: prefixLength)
    }

    public var family: AddressFamily { base.family }

    public func contains(_ group: IPAddress) -> Bool { GroupRange.contains(base: base, length: length, group) }

    public func overlaps(_ other: GroupPrefix) -> Bool { GroupRange.overlap(base, length, other.base, other.length) }

    public var description: String { length == GroupRange.fullLength(family) ? "\(base)" : "\(base)/\(length)" }

    public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.base, lhs.length) < (rhs.base, rhs.length) }
}

/// One IGMP/MLD proxy (RFC 4605): the relay joins on `upstream` what the listeners on the
/// `downstream` interfaces want within `groups`, and traffic for those groups flows
/// upstream → the downstream interfaces whose listeners want it.
public struct ProxyConfiguration: Hashable, Sendable, CustomStringConvertible {
    public var upstream: InterfaceName
    public var downstream: [InterfaceName]
    public var groups: [GroupPrefix]

    public init(upstream: InterfaceName, downstream: [InterfaceName], groups: [GroupPrefix]) {
        self.upstream = upstream
        self.downstream = downstream
        self.groups = groups
    }

    public func covers(_ group: IPAddress) -> Bool { groups.contains { $0.contains(group) } }

    public var description: String {
        "\(upstream) -> \(downstream.map(\.description).joined(separator: ",")) for \(groups.map(\.description).joined(separator: ","))"
    }

    /// Checks one proxy alone and a set of proxies together. Two proxies may share an
    /// upstream (their downstream listeners are merged); a downstream of one that is the
    /// upstream of another with overlapping groups would carry traffic back up: refused.
    public static func validate(_ proxies: [ProxyConfiguration]) throws(ProxyError) {
        for (index, proxy) in proxies.enumerated() {
            guard !proxy.downstream.isEmpty else { throw .noDownstream(index) }
            guard !proxy.groups.isEmpty else { throw .noGroups(index) }
            guard !proxy.downstream.contains(proxy.upstream) else { throw .upstreamIsDownstream(index, proxy.upstream) }
            var seen = Set<InterfaceName>()
            for interface in proxy.downstream where !seen.insert(interface).inserted {
                throw .duplicateDownstream(index, interface)
            }
        }
        // The proxies of one upstream share routes; a route's downstreams are gated per
        // datagram with one bit each (`Forwarder.maximumRoutedOutputs`).
        for upstream in Set(proxies.map(\.upstream)) {
            let downstream = Set(proxies.filter { $0.upstream == upstream }.flatMap(\.downstream))
            if downstream.count > Forwarder.maximumRoutedOutputs {
                throw .tooManyDownstream(upstream, downstream.count, limit: Forwarder.maximumRoutedOutputs)
            }
        }
        for (index, proxy) in proxies.enumerated() {
            for (otherIndex, other) in proxies.enumerated() where otherIndex != index {
                guard let shared = other.downstream.first(where: { $0 == proxy.upstream }) else { continue }
                if proxy.groups.contains(where: { mine in other.groups.contains { mine.overlaps($0) } }) {
                    throw .proxyLoop(upstreamOf: index, downstreamOf: otherIndex, shared)
                }
            }
        }
    }

    /// A rule output that lands in a proxy's upstream range on the upstream interface is read
    /// back by the proxy: a loop, refused as the RuleBook refuses an output into a range input.
    public static func check(_ proxies: [ProxyConfiguration], against rules: some Sequence<Rule>) throws(ProxyError) {
        for rule in rules {
            for (index, proxy) in proxies.enumerated() {
                for output in rule.outputs where output.interface == proxy.upstream && proxy.covers(output.destination) {
                    throw .ruleFeedsUpstream(index, rule.id, output)
                }
            }
        }
    }
}

public enum ProxyError: Error, Equatable, Sendable, CustomStringConvertible {
    case badGroupPrefix(String)
    case groupPrefixHostBits(String, base: GroupPrefix)
    case groupsNotMulticast(String)
    case groupsLinkScoped(String)
    case noDownstream(Int)
    case noGroups(Int)
    case upstreamIsDownstream(Int, InterfaceName)
    case duplicateDownstream(Int, InterfaceName)
    case proxyLoop(upstreamOf: Int, downstreamOf: Int, InterfaceName)
    case ruleFeedsUpstream(Int, RuleID, OutputSpec)
    case tooManyDownstream(InterfaceName, Int, limit: Int)

    public var description: String {
        switch self {
        case let .badGroupPrefix(text):
            "\"\(text)\" is not a group or prefix (239.0.0.0/8, ff3e::/16, 239.1.1.1)"
        case let .groupPrefixHostBits(text, base):
            "\"\(text)\" has bits set past its prefix length; the prefix is \(base)"
        case let .groupsNotMulticast(text):
            "\"\(text)\" is not within multicast (224.0.0.0/4, ff00::/8)"
        case let .groupsLinkScoped(text):
            "\"\(text)\" includes link-scoped groups (224.0.0.0/24; IPv6 scopes 0-2), which are never proxied"
        case let .noDownstream(index):
            "proxies[\(index)]: \"downstream\" needs at least one interface"
        case let .noGroups(index):
            "proxies[\(index)]: \"groups\" needs at least one group or prefix"
        case let .upstreamIsDownstream(index, interface):
            "proxies[\(index)]: upstream \(interface) is also listed downstream"
        case let .duplicateDownstream(index, interface):
            "proxies[\(index)]: downstream \(interface) is listed twice"
        case let .proxyLoop(up, down, interface):
            "proxies[\(up)]'s upstream \(interface) is a downstream of proxies[\(down)] for overlapping groups (a forwarding loop)"
        case let .tooManyDownstream(upstream, count, limit):
            "the proxies of upstream \(upstream) have \(count) downstream interfaces; at most \(limit)"
        case let .ruleFeedsUpstream(index, rule, output):
            "output \(output) of rule \(rule) sends into the upstream range of proxies[\(index)] (a forwarding loop)"
        }
    }
}
