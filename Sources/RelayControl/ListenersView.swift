import RelayCore

/// The IGMP/MLD router's state as `mcrelay igmp interfaces|groups` shows it (op `listeners`).
/// Times are seconds from the daemon's now, so the client needs no clock of the daemon's.
public struct ListenersView: Codable, Equatable, Sendable {
    public struct Interface: Codable, Equatable, Sendable {
        public var interface: String
        public var family: String
        /// "IGMPv3", "MLDv2", ...
        public var version: String
        public var address: String?
        public var isQuerier: Bool
        public var querier: String?
        public var otherQuerierExpiresIn: Double?
        public var nextGeneralQueryIn: Double?
        public var startupQueriesLeft: Int
        public var robustness: Int
        public var queryInterval: Double
        public var groups: Int
        public var generalQueriesSent: UInt64
        public var specificQueriesSent: UInt64
        public var queriesReceived: UInt64
        public var reportsReceived: [String: UInt64]
        public var leavesReceived: UInt64
        public var querierChanges: UInt64

        enum CodingKeys: String, CodingKey {
            case interface, family, version, address, querier, robustness, groups
            case isQuerier = "is_querier", otherQuerierExpiresIn = "other_querier_expires_in"
            case nextGeneralQueryIn = "next_general_query_in", startupQueriesLeft = "startup_queries_left"
            case queryInterval = "query_interval", generalQueriesSent = "general_queries_sent"
            case specificQueriesSent = "specific_queries_sent", queriesReceived = "queries_received"
            case reportsReceived = "reports_received", leavesReceived = "leaves_received", querierChanges = "querier_changes"
        }

        public init(_ status: ListenerInterfaceStatus, now: Instant) {
            interface = status.interface.rawValue
            family = status.family.rawValue
            version = status.version.name(for: status.family)
            address = status.address?.description
            isQuerier = status.isQuerier
            querier = status.querier?.description
            otherQuerierExpiresIn = status.otherQuerierExpiry.map { ListenersView.seconds($0, now) }
            nextGeneralQueryIn = status.nextGeneralQuery.map { ListenersView.seconds($0, now) }
            startupQueriesLeft = status.startupQueriesLeft
            robustness = status.robustness
            queryInterval = ListenersView.seconds(status.queryInterval)
            groups = status.groups
            generalQueriesSent = status.counters.generalQueriesSent
            specificQueriesSent = status.counters.specificQueriesSent
            queriesReceived = status.counters.queriesReceived
            reportsReceived = Dictionary(uniqueKeysWithValues: status.counters.reportsReceived.map {
                ($0.key.name(for: status.family), $0.value)
            })
            leavesReceived = status.counters.leavesReceived
            querierChanges = status.counters.querierChanges
        }
    }

    public struct Group: Codable, Equatable, Sendable {
        public struct Source: Codable, Equatable, Sendable {
            public var address: String
            public var expiresIn: Double?
            public var forwarded: Bool
            enum CodingKeys: String, CodingKey { case address, forwarded, expiresIn = "expires_in" }
        }
        public var interface: String
        public var group: String
        /// "INCLUDE" or "EXCLUDE".
        public var mode: String
        /// The oldest host version heard ("IGMPv2" puts the group in v2 compatibility).
        public var compatibility: String
        public var expiresIn: Double?
        public var sources: [Source]
        public var lastReporter: String?
        public var lastReportAgo: Double?

        enum CodingKeys: String, CodingKey {
            case interface, group, mode, compatibility, sources
            case expiresIn = "expires_in", lastReporter = "last_reporter", lastReportAgo = "last_report_ago"
        }

        public init(_ status: ListenerGroupStatus, now: Instant) {
            interface = status.interface.rawValue
            group = status.group.description
            mode = status.mode.description
            compatibility = status.compatibility.name(for: status.group.family)
            expiresIn = status.expiry.map { ListenersView.seconds($0, now) }
            sources = status.sources.map {
                Source(address: $0.address.description, expiresIn: $0.expiry.map { ListenersView.seconds($0, now) }, forwarded: $0.forwarded)
            }
            lastReporter = status.lastReporter?.description
            lastReportAgo = status.lastReportAt.map { ListenersView.seconds(now, $0) }
        }
    }

    /// One group a proxy joins upstream, and why (`mcrelay igmp proxy`).
    public struct ProxyJoin: Codable, Equatable, Sendable {
        public var upstream: String
        public var group: String
        /// Empty: any source (some downstream listener is EXCLUDE).
        public var sources: [String]
        public var excludeOn: [String]
        public var includeOn: [String]
        /// Every membership of this join is held on a helper socket now.
        public var joined: Bool

        enum CodingKeys: String, CodingKey {
            case upstream, group, sources, joined
            case excludeOn = "exclude_on", includeOn = "include_on"
        }

        public init(_ key: Proxies.Key, _ join: Proxies.Join, held: Set<MembershipKey>) {
            upstream = key.upstream.rawValue
            group = key.group.description
            sources = (join.sources ?? []).sorted().map(\.description)
            excludeOn = join.excludeOn.map(\.rawValue)
            includeOn = join.includeOn.map(\.rawValue)
            joined = join.memberships(key).isSubset(of: held)
        }
    }

    public var interfaces: [Interface]
    public var groups: [Group]
    /// nil from a daemon without proxies support.
    public var proxy: [ProxyJoin]?

    public init(interfaces: [Interface], groups: [Group], proxy: [ProxyJoin]? = nil) {
        self.interfaces = interfaces
        self.groups = groups
        self.proxy = proxy
    }

    /// `mcrelay igmp proxy`: one line per upstream and group.
    public var proxyText: String {
        guard let proxy, !proxy.isEmpty else { return "nothing joined upstream (config \"proxies\")" }
        return proxy.map { entry in
            var line = "\(entry.upstream) \(entry.group) "
            line += entry.sources.isEmpty ? "any source" : "sources " + entry.sources.joined(separator: ",")
            line += entry.joined ? ", joined" : ", joining"
            if !entry.excludeOn.isEmpty { line += "; EXCLUDE listeners on " + entry.excludeOn.joined(separator: ",") }
            if !entry.includeOn.isEmpty { line += "; INCLUDE listeners on " + entry.includeOn.joined(separator: ",") }
            return line
        }.joined(separator: "\n")
    }

    /// The proxies' forwarding, for `mcrelay igmp proxy` below the joins: one line per proxy route
    /// (rule name `proxy` in `mcrelay stats`) with each downstream's forwarded and suppressed
    /// datagrams and send errors, e.g. `forwarding rin0:239.0.0.0/8:* -> rout0 200 forwarded,
    /// 1400 suppressed; rout1 0 forwarded, 1600 suppressed`. Empty without proxy routes.
    public static func proxyForwardingText(_ stats: StatsView) -> String {
        stats.rules.filter { rule in rule.name == "proxy" && rule.outputs.allSatisfy { $0.out.hasSuffix(":routed") } }.map { rule in
            "forwarding \(rule.in) -> " + rule.outputs.map { output in
                "\(output.out.dropLast(":routed".count)) \(output.packets) forwarded, \(output.suppressed ?? 0) suppressed"
                    + (output.sendErrors > 0 ? ", \(output.sendErrors) send errors" : "")
            }.joined(separator: "; ")
        }.joined(separator: "\n")
    }

    static func seconds(_ later: Instant, _ earlier: Instant) -> Double { seconds(later.duration(since: earlier)) }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        // Milliseconds are enough for an operator (and keep the JSON short).
        return ((Double(seconds) + Double(attoseconds) / 1e18) * 1000).rounded() / 1000
    }

    /// `mcrelay igmp interfaces`: one line per interface and family.
    public var interfacesText: String {
        guard !interfaces.isEmpty else { return "no querier interfaces configured (config \"queriers\")" }
        return interfaces.map { entry in
            let role = entry.isQuerier ? "querier" : "non-querier (querier \(entry.querier ?? "unknown"))"
            var line = "\(entry.interface) \(entry.version) \(entry.address ?? "no address"): \(role), \(entry.groups) groups"
            if let next = entry.nextGeneralQueryIn { line += ", next query in \(next) s" }
            if let expiry = entry.otherQuerierExpiresIn { line += ", other querier expires in \(expiry) s" }
            line += "; queries sent \(entry.generalQueriesSent) general, \(entry.specificQueriesSent) specific; received \(entry.queriesReceived) queries, "
            line += entry.reportsReceived.keys.sorted().map { "\(entry.reportsReceived[$0]!) \($0) reports" }.joined(separator: ", ")
            line += entry.reportsReceived.isEmpty ? "no reports" : ""
            line += ", \(entry.leavesReceived) leaves"
            return line
        }.joined(separator: "\n")
    }

    /// `mcrelay igmp groups`: one line per interface and group.
    public var groupsText: String {
        guard !groups.isEmpty else { return "no listeners" }
        return groups.map { entry in
            var line = "\(entry.interface) \(entry.group) \(entry.mode) \(entry.compatibility)"
            if !entry.sources.isEmpty { line += " sources " + entry.sources.map(\.address).joined(separator: ",") }
            if let expiry = entry.expiresIn { line += ", expires in \(expiry) s" }
            if let reporter = entry.lastReporter { line += ", last reporter \(reporter)" }
            return line
        }.joined(separator: "\n")
    }
}
