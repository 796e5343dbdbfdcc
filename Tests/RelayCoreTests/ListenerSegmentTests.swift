import PropertyBased
import Testing
@testable import RelayCore

/// One LAN segment in memory: several routers, each its own `Listeners`, and hosts that
/// behave as IGMPv2 or IGMPv3 hosts do (state-change reports sent twice, answers to general,
/// group and group-and-source queries after a per-host delay, no suppression). Everything
/// crosses the segment as whole Ethernet frames built by `ListenerFrame.build` and read by
/// `ListenerFrame.extract`. Loss drops every k-th delivery, so a run is fixed by its history.
struct ListenerSegment {
    enum HostState: Hashable { case any, sources(Set<Int>) }

    struct Router {
        var address: IPAddress
        var listeners = Listeners()
        var up = true
    }

    struct Host {
        var v3: Bool
        var address: IPAddress
        var groups: [Int: HostState] = [:]
        /// Bumped on every change of a group's state, so a stale retransmission is dropped.
        var generation: [Int: Int] = [:]
    }

    enum HostTimer { case answer(ListenerQuery), retransmit(group: Int, generation: Int, ListenerMessage) }

    static let interface = InterfaceName("seg0")!
    static let groupCount = 2
    static let sourceCount = 3

    let family: AddressFamily
    let groups: [IPAddress]
    /// s1 and s2 are named by INCLUDE hosts; s3 never is (wanted only by EXCLUDE {} hosts).
    let sources: [IPAddress]

    /// Router and host addresses: 10.0.0.n for IGMP, fe80::n (link-local, as MLD requires) for MLD.
    func linkAddress(_ n: UInt8) -> IPAddress {
        family == .ipv4 ? .v4(IPv4Address(10, 0, 0, n)) : .v6(IPv6Address(0xFE80, 0, 0, 0, 0, 0, 0, UInt16(n)))
    }
    static let configuration = ListenerConfiguration(queryInterval: .seconds(20), queryResponseInterval: .seconds(4))

    var routers: [Router]
    var hosts: [Host]
    var now = Instant.zero
    var lossEvery = 0
    var deliveries = 0
    var hostTimers: [(at: Instant, seq: Int, host: Int, timer: HostTimer)] = []
    var seq = 0
    var trace: [String] = []

    init(family: AddressFamily = .ipv4, routerAddresses: [UInt8], hostsV3: [Bool]) {
        self.family = family
        if family == .ipv4 {
            groups = [.v4(IPv4Address(239, 1, 1, 1)), .v4(IPv4Address(239, 1, 1, 2))]
            sources = (1...3).map { .v4(IPv4Address(198, 18, 0, $0)) }
        } else {
            groups = [.v6(IPv6Address(0xFF3E, 0, 0, 0, 0, 0, 0x8000, 1)), .v6(IPv6Address(0xFF05, 0, 0, 0, 0, 0, 0, 0x1234))]
            sources = (1...3).map { .v6(IPv6Address(0x2001, 0xDB8, 0, 0, 0, 0, 0, $0)) }
        }
        routers = []
        hosts = []
        routers = routerAddresses.map { Router(address: linkAddress($0)) }
        hosts = hostsV3.enumerated().map { Host(v3: $0.element, address: linkAddress(UInt8(100 + $0.offset))) }
        for index in routers.indices { start(index) }
    }

    mutating func start(_ index: Int) {
        routers[index].up = true
        routers[index].listeners.handle(.start(Self.interface, family, address: routers[index].address,
                                               configuration: Self.configuration), now: now)
        pump()
    }

    mutating func stop(_ index: Int) {
        routers[index].listeners.handle(.stop(Self.interface, family), now: now)
        routers[index].up = false
        _ = routers[index].listeners.drain()
    }

    func lost(_ deliveries: Int) -> Bool { lossEvery > 1 && deliveries % lossEvery == 0 }

    /// Sends every router's pending queries to the others and to the hosts.
    mutating func pump() {
        var moved = true
        while moved {
            moved = false
            for index in routers.indices {
                while let action = routers[index].listeners.poll() {
                    guard case let .send(transmit) = action else { continue }
                    moved = true
                    let frame = transmit.frame(sourceMAC: MACAddress(2, 0, 0, 0, 0, UInt8(index)))
                    for other in routers.indices where other != index && routers[other].up {
                        deliveries += 1
                        if lost(deliveries) { continue }
                        routers[other].listeners.handle(.frame(Self.interface, frame), now: now)
                    }
                    for host in hosts.indices {
                        deliveries += 1
                        if lost(deliveries) { continue }
                        hear(frame, host: host)
                    }
                }
            }
        }
    }

    mutating func hostSends(_ message: ListenerMessage, from host: Int) {
        let frame = ListenerFrame.build(message, sourceMAC: MACAddress(2, 0, 0, 0, 1, UInt8(host)), source: hosts[host].address)
        for index in routers.indices where routers[index].up {
            deliveries += 1
            if lost(deliveries) { continue }
            routers[index].listeners.handle(.frame(Self.interface, frame), now: now)
        }
        pump()
    }

    mutating func schedule(_ timer: HostTimer, host: Int, after delay: Duration) {
        seq += 1
        hostTimers.append((now + delay, seq, host, timer))
    }

    /// A host hears a query and answers after its delay (0.2 s per host index, within the Max Resp Time).
    mutating func hear(_ frame: [UInt8], host: Int) {
        guard case let .success(received) = ListenerFrame.extract(frame), case let .query(query) = received.message else { return }
        let delay = min(Duration.milliseconds(200 * (host + 1)), query.maxResponseTime(family) * 0.8)
        schedule(.answer(query), host: host, after: delay)
    }

    func record(_ host: Host, _ group: Int, for query: ListenerQuery) -> GroupRecord? {
        guard let state = host.groups[group] else { return nil }
        let address = groups[group]
        if query.sources.isEmpty {
            switch state {
            case .any: return GroupRecord(.modeIsExclude, group: address)
            case let .sources(s): return GroupRecord(.modeIsInclude, group: address, sources: s.sorted().map { sources[$0] })
            }
        }
        // RFC 3376 5.2: a group-and-source query is answered with the asked sources wanted.
        let asked = query.sources.filter { source in
            switch state {
            case .any: true
            case let .sources(s): s.contains { sources[$0] == source }
            }
        }
        return asked.isEmpty ? nil : GroupRecord(.modeIsInclude, group: address, sources: asked)
    }

    mutating func fire(_ timer: HostTimer, host: Int) {
        let h = hosts[host]
        switch timer {
        case let .answer(query):
            let asked = query.group.map { g in [groups.firstIndex(of: g)].compactMap { $0 } } ?? Array(groups.indices)
            if h.v3 {
                let records = asked.compactMap { record(h, $0, for: query) }
                if !records.isEmpty { hostSends(.v3Report(records), from: host) }
            } else {
                for g in asked where h.groups[g] != nil { hostSends(.report(.v2, group: groups[g]), from: host) }
            }
        case let .retransmit(group, generation, message):
            if h.generation[group, default: 0] == generation { hostSends(message, from: host) }
        }
    }

    /// A state change: the report now and once more a second later (RFC 3376 5.1, RFC 2236 3).
    mutating func change(_ host: Int, _ group: Int, to state: HostState?, message: ListenerMessage?) {
        hosts[host].groups[group] = state
        hosts[host].generation[group, default: 0] += 1
        trace.append("\(now) h\(host) g\(group) -> \(state.map { "\($0)" } ?? "none")")
        guard let message else { return }
        hostSends(message, from: host)
        schedule(.retransmit(group: group, generation: hosts[host].generation[group]!, message), host: host, after: .seconds(1))
    }

    mutating func join(_ host: Int, _ group: Int) {
        let g = groups[group]
        guard hosts[host].groups[group] != .any else { return }
        change(host, group, to: .any, message: hosts[host].v3 ? .v3Report([GroupRecord(.changeToExclude, group: g)]) : .report(.v2, group: g))
    }

    mutating func join(_ host: Int, _ group: Int, source: Int) {
        guard hosts[host].v3 else { return join(host, group) }
        let g = groups[group]
        switch hosts[host].groups[group] {
        case .any: return
        case let .sources(s) where s.contains(source): return
        case let .sources(s):
            change(host, group, to: .sources(s.union([source])),
                   message: .v3Report([GroupRecord(.allowNewSources, group: g, sources: [sources[source]])]))
        case nil:
            change(host, group, to: .sources([source]),
                   message: .v3Report([GroupRecord(.allowNewSources, group: g, sources: [sources[source]])]))
        }
    }

    /// The record (or v2 leave) that leaving sends.
    func leaveMessage(_ host: Int, _ group: Int) -> ListenerMessage? {
        let g = groups[group]
        switch hosts[host].groups[group] {
        case nil: return nil
        case .any: return hosts[host].v3 ? .v3Report([GroupRecord(.changeToInclude, group: g)]) : .leave(group: g)
        case let .sources(s): return .v3Report([GroupRecord(.blockOldSources, group: g, sources: s.sorted().map { sources[$0] })])
        }
    }

    mutating func leave(_ host: Int, _ group: Int) {
        guard let message = leaveMessage(host, group) else { return }
        change(host, group, to: nil, message: message)
    }

    /// Runs routers and hosts up to `target`, deadline by deadline.
    mutating func run(until target: Instant) {
        while true {
            let routerNext = routers.filter(\.up).compactMap(\.listeners.nextDeadline).min()
            let hostNext = hostTimers.map(\.at).min()
            guard let next = [routerNext, hostNext].compactMap({ $0 }).min(), next <= target else { break }
            now = max(now, next)
            for index in routers.indices where routers[index].up && (routers[index].listeners.nextDeadline.map { $0 <= now } ?? false) {
                routers[index].listeners.handle(.timerFired, now: now)
            }
            pump()
            let due = hostTimers.filter { $0.at <= now }.sorted { ($0.at, $0.seq) < ($1.at, $1.seq) }
            hostTimers.removeAll { $0.at <= now }
            for timer in due { fire(timer.timer, host: timer.host) }
        }
        now = max(now, target)
    }

    mutating func run(for duration: Duration) { run(until: now + duration) }

    // MARK: the reference model

    /// Some host wants (source, group): one in EXCLUDE {} or one including the source.
    func modelWants(_ source: Int, _ group: Int) -> Bool {
        hosts.contains { host in
            switch host.groups[group] {
            case .any: true
            case let .sources(s): s.contains(source)
            case nil: false
            }
        }
    }

    /// Differences between the routers' listener state and the model.
    func mismatches() -> [String] {
        var found: [String] = []
        for (index, router) in routers.enumerated() where router.up {
            for group in groups.indices {
                for source in sources.indices {
                    let actual = router.listeners.wants(interface: Self.interface, source: sources[source], group: groups[group])
                    if actual != modelWants(source, group) {
                        found.append("router \(index) (\(router.address)) wants (s\(source + 1), g\(group)) = \(actual) at \(now)")
                    }
                }
            }
        }
        return found
    }

    /// Exactly one querier, the lowest address, and every router agrees on it.
    func querierProblems() -> [String] {
        let up = routers.filter(\.up)
        let queriers = up.filter { $0.listeners.interfaceStatus.first?.isQuerier == true }.map(\.address)
        let lowest = up.map(\.address).min()
        var problems: [String] = []
        if queriers != [lowest].compactMap({ $0 }) { problems.append("queriers \(queriers), lowest \(String(describing: lowest)) at \(now)") }
        for router in up where router.listeners.interfaceStatus.first?.querier != lowest {
            problems.append("\(router.address) thinks the querier is \(String(describing: router.listeners.interfaceStatus.first?.querier))")
        }
        return problems
    }
}

@Suite struct ListenerSegmentTests {
    enum Step: CustomStringConvertible, Sendable {
        case join(host: Int, group: Int)
        case joinSource(host: Int, group: Int, source: Int)
        case leave(host: Int, group: Int)
        case wait(milliseconds: Int)
        /// Drop every k-th delivery from now on (k < 2: no loss).
        case loss(every: Int)
        case routerDown(Int)
        case routerUp(Int)

        var description: String {
            switch self {
            case let .join(h, g): "join(h\(h), g\(g))"
            case let .joinSource(h, g, s): "join(h\(h), g\(g), s\(s + 1))"
            case let .leave(h, g): "leave(h\(h), g\(g))"
            case let .wait(ms): "wait(\(ms) ms)"
            case let .loss(k): "loss(every \(k))"
            case let .routerDown(r): "down(r\(r))"
            case let .routerUp(r): "up(r\(r))"
            }
        }
    }

    static let stepGen = Gen<Step>.oneOf(
        zip(Gen.int(in: 0...3), Gen.int(in: 0...1)).map { Step.join(host: $0, group: $1) },
        zip(Gen.int(in: 0...3), Gen.int(in: 0...1), Gen.int(in: 0...1)).map { Step.joinSource(host: $0, group: $1, source: $2) },
        zip(Gen.int(in: 0...3), Gen.int(in: 0...1)).map { Step.leave(host: $0, group: $1) },
        Gen.int(in: 100...30000).map { Step.wait(milliseconds: $0) },
        Gen.int(in: 0...4).map { Step.loss(every: $0) },
        Gen.int(in: 0...2).map { Step.routerDown($0) },
        Gen.int(in: 0...2).map { Step.routerUp($0) })

    static let config = ListenerSegment.configuration
    /// From the end of faults: every member re-reported by the next general query (one query
    /// interval plus the response interval) and every stale record run out (one group
    /// membership interval), with the last member query time and slack for host delays.
    static let convergence = config.groupMembershipInterval + config.queryInterval + config.queryResponseInterval
        + config.lastMemberQueryTime + .seconds(2)

    /// For random histories of joins, leaves, lost messages and routers going away and coming
    /// back, once faults stop: every router's listener state equals the reference model within
    /// the RFC's bounds and stays equal, there is exactly one querier (the lowest address) and
    /// every router knows it; then leaves take effect within the last member query time (or
    /// the membership interval where an IGMPv2 host's presence makes a BLOCK ignored) and
    /// never drop a group or source that another host still wants.
    @Test(arguments: AddressFamily.allCases) func listenerStateFollowsTheHostsWithinTheRFCBounds(_ family: AddressFamily) async {
        await propertyCheck(count: 150, input: Self.stepGen.array(of: 0...40), Gen.int(in: 1...3), Gen.bool.array(of: 4),
                            Gen.int(in: 0...5)) { steps, routerCount, hostsV3, order in
            // Distinct router addresses in an order the input picks, so any router may be lowest.
            let permutations: [[UInt8]] = [[1, 2, 3], [1, 3, 2], [2, 1, 3], [2, 3, 1], [3, 1, 2], [3, 2, 1]]
            var s = ListenerSegment(family: family, routerAddresses: Array(permutations[order].prefix(routerCount)), hostsV3: hostsV3)
            for step in steps {
                switch step {
                case let .join(h, g): s.join(h, g)
                case let .joinSource(h, g, source): s.join(h, g, source: source)
                case let .leave(h, g): s.leave(h, g)
                case let .wait(ms): s.run(for: .milliseconds(ms))
                case let .loss(k): s.lossEvery = k
                case let .routerDown(r): if r < routerCount, s.routers[r].up { s.stop(r) }
                case let .routerUp(r): if r < routerCount, !s.routers[r].up { s.start(r) }
                }
            }
            // Liveness: faults off, every router back.
            s.lossEvery = 0
            for r in s.routers.indices where !s.routers[r].up { s.start(r) }
            s.run(for: Self.convergence)
            for _ in 0..<8 {
                let problems = s.mismatches() + s.querierProblems()
                #expect(problems.isEmpty, "\(problems)\nhistory: \(steps)\n\(s.trace.suffix(12))")
                if !problems.isEmpty { return }
                s.run(for: .seconds(7))
            }
            // Timing: every member leaves, host by host.
            for h in s.hosts.indices {
                for g in s.groups.indices where s.hosts[h].groups[g] != nil {
                    let blocks = if case .sources = s.hosts[h].groups[g]! { true } else { false }
                    let olderHosts = s.routers.contains { router in
                        router.listeners.groupStatus.contains { $0.group == s.groups[g] && $0.compatibility < .v3 }
                    }
                    s.leave(h, g)
                    // Until the bound, nothing the model still wants may be dropped.
                    let bound = blocks && olderHosts ? Self.config.groupMembershipInterval : Self.config.lastMemberQueryTime
                    var waited = Duration.zero
                    while waited < bound + .milliseconds(100) {
                        s.run(for: .milliseconds(250))
                        waited += .milliseconds(250)
                        for (index, router) in s.routers.enumerated() {
                            for source in s.sources.indices where s.modelWants(source, g) {
                                #expect(router.listeners.wants(interface: ListenerSegment.interface, source: s.sources[source],
                                                               group: s.groups[g]),
                                        "router \(index) dropped (s\(source + 1), g\(g)) still wanted, \(waited) after h\(h) left; history \(steps)")
                            }
                        }
                    }
                    let problems = s.mismatches()
                    #expect(problems.isEmpty, "\(bound) after h\(h) left g\(g): \(problems)\nhistory: \(steps)\n\(s.trace.suffix(12))")
                    if !problems.isEmpty { return }
                }
            }
            #expect(s.querierProblems().isEmpty)
        }
    }

    /// The same segment without faults: a joining host is a listener at every router at once.
    @Test func joinsAreSeenAtOnceWithoutLoss() {
        var s = ListenerSegment(routerAddresses: [2, 1], hostsV3: [true, false, true, true])
        s.run(for: .seconds(3))
        s.join(0, 0)
        s.join(1, 1)
        s.join(2, 1, source: 0)
        #expect(s.mismatches().isEmpty)
        s.run(for: .seconds(200))
        #expect(s.mismatches().isEmpty && s.querierProblems().isEmpty)
    }
}
