/// One interface's router-side IGMP / MLD settings, with the RFCs' defaults (RFC 3376 8,
/// RFC 3810 9; RFC 2236 8 has the same values). The derived intervals are computed, never
/// stored, so they cannot disagree with the variables they come from.
public struct ListenerConfiguration: Hashable, Sendable {
    /// The version this router runs: `.v3` (IGMPv3 / MLDv2) or `.v2` (IGMPv2 / MLDv1). A v2
    /// router sends v2 queries and ignores v3 reports, as RFC 2236 routers do.
    public var version: ListenerVersion
    /// False: never query, only track listeners (and follow whoever is querier).
    public var querierEnabled: Bool
    /// Robustness Variable: how many losses the protocol tolerates (default 2).
    public var robustness: Int
    public var queryInterval: Duration
    /// Query Response Interval: the Max Response Time in general queries.
    public var queryResponseInterval: Duration
    public var lastMemberQueryInterval: Duration
    /// nil: the robustness variable.
    public var lastMemberQueryCountSetting: Int?
    /// nil: a quarter of the query interval.
    public var startupQueryIntervalSetting: Duration?
    /// nil: the robustness variable.
    public var startupQueryCountSetting: Int?
    /// Bounds on what reports can make this router remember (not in the RFCs: a report flood
    /// must not grow state without limit). A report past either is ignored and counted.
    public var maximumGroups: Int
    public var maximumSourcesPerGroup: Int

    public init(version: ListenerVersion = .v3, querierEnabled: Bool = true, robustness: Int = 2,
                queryInterval: Duration = .seconds(125), queryResponseInterval: Duration = .seconds(10),
                lastMemberQueryInterval: Duration = .seconds(1), lastMemberQueryCount: Int? = nil,
                startupQueryInterval: Duration? = nil, startupQueryCount: Int? = nil,
                maximumGroups: Int = 4096, maximumSourcesPerGroup: Int = 1024) {
        self.version = version
        self.querierEnabled = querierEnabled
        self.robustness = max(robustness, 1)
        // Intervals have a floor (a second for the query interval, the IGMP code's 100 ms
        // resolution for the others): a zero interval would schedule work at the instant it
        // was scheduled from, for ever.
        self.queryInterval = max(queryInterval, .seconds(1))
        self.queryResponseInterval = max(queryResponseInterval, .milliseconds(100))
        self.lastMemberQueryInterval = max(lastMemberQueryInterval, .milliseconds(100))
        lastMemberQueryCountSetting = lastMemberQueryCount
        startupQueryIntervalSetting = startupQueryInterval.map { max($0, .milliseconds(100)) }
        startupQueryCountSetting = startupQueryCount
        self.maximumGroups = max(maximumGroups, 0)
        self.maximumSourcesPerGroup = max(maximumSourcesPerGroup, 0)
    }

    public var lastMemberQueryCount: Int { max(lastMemberQueryCountSetting ?? robustness, 1) }
    public var startupQueryInterval: Duration { startupQueryIntervalSetting ?? queryInterval / 4 }
    public var startupQueryCount: Int { max(startupQueryCountSetting ?? robustness, 1) }

    /// Group Membership Interval (RFC 3376 8.4): robustness x query interval + response interval.
    public var groupMembershipInterval: Duration { queryInterval * robustness + queryResponseInterval }
    /// Other Querier Present Interval (8.5): robustness x query interval + half the response interval.
    public var otherQuerierPresentInterval: Duration { queryInterval * robustness + queryResponseInterval / 2 }
    /// Last Member Query Time (8.9): count x interval.
    public var lastMemberQueryTime: Duration { lastMemberQueryInterval * lastMemberQueryCount }
    /// Older Host Present Interval (8.13) / Older Version Host Present Timeout (RFC 3810 9.13).
    public var olderHostPresentInterval: Duration { groupMembershipInterval }

    /// The same settings with the robustness and query interval a querier announced, as a
    /// non-querier adopts them (RFC 3376 8.1 and 8.2: "routers adopt the QRV / QQI value
    /// from the most recently received query").
    func adopting(robustness qrv: UInt8, queryInterval qqi: Duration?) -> ListenerConfiguration {
        var adopted = self
        if qrv != 0 { adopted.robustness = Int(qrv) }
        if let qqi { adopted.queryInterval = qqi }
        return adopted
    }
}
