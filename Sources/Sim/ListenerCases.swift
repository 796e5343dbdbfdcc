import RelayControl
import RelayCore

/// Cases with LAN segments: a stream on in0 relayed to a follow output on out0 (and a static
/// one on out1), the relay's IGMP router on out0, and hosts and routers driven by events.
/// `sim fuzz` adds such a segment to some cases (`FuzzCase.addSegment`); the tests build
/// scenarios from `make`.
public enum ListenerCases {
    public static let input = InterfaceName("in0")!
    public static let follow = InterfaceName("out0")!
    public static let other = InterfaceName("out1")!
    public static let group = IPv4Address(239, 1, 1, 1)
    public static let followGroup = IPAddress.v4(IPv4Address(239, 10, 0, 1))
    /// The relay's address on out0 (`InterfaceFacts.simulated`, position 1 of in0/out0/out1):
    /// its frames there carry it, so an SSM listener must name it.
    public static let relaySource = IPAddress.v4(IPv4Address(198, 19, 1, 1))

    /// Short timers, so a run covers several query intervals: GMI = 2 x 10 s + 2 s = 22 s,
    /// LMQT = 2 x 1 s, OQPI = 2 x 10 s + 1 s = 21 s.
    public static func configuration(version: ListenerVersion = .v3) -> ListenerConfiguration {
        ListenerConfiguration(version: version, queryInterval: .seconds(10), queryResponseInterval: .seconds(2))
    }

    /// A case: traffic every `frameIntervalMs` for `seconds`, the events given.
    public static func make(events: [ScriptedEvent], seconds: Int, frameIntervalMs: Int = 20,
                            configuration: ListenerConfiguration = configuration(), seed: UInt64 = 1) -> SimCase {
        let rule = RuleSpec(name: "cam", input: InputSpec(interface: input, group: group, port: 5000), outputs: [
            OutputSpec(interface: follow, destination: followGroup, port: 6000, ttl: 8, followsListeners: true),
            OutputSpec(interface: other, destination: IPv4Address(239, 10, 0, 2), port: 6000, ttl: 8),
        ])
        var store = FrameStore()
        let count = seconds * 1000 / frameIntervalMs
        for index in 0..<count {
            let bytes = TrafficMaker.datagram(interface: 0, source: IPv4Address(198, 18, 1, 1), group: group, port: 5000,
                                              payload: [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 100),
                                              id: UInt16(truncatingIfNeeded: index))
            store.append(time: UInt64(index) * UInt64(frameIntervalMs) * 1_000_000, interface: input, link: .ethernet, bytes: bytes)
        }
        var options = SimOptions()
        options.seed = seed
        options.workers = 2
        let queriers = [QuerierSetting(interface: follow, families: [.ipv4], configuration: configuration)]
        let sorted = events.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element)
        return SimCase(input: SimInput(store: store, rules: [rule], events: sorted, queriers: queriers), options: options)
    }

    /// Shorthands for events `ms` after the first frame.
    public static func join(_ ms: Int, host: UInt8, mode: FilterMode = .exclude, sources: [IPAddress] = [],
                            version: ListenerVersion? = nil, on interface: InterfaceName = follow,
                            group: IPAddress = followGroup) -> ScriptedEvent {
        ScriptedEvent(at: UInt64(ms) * 1_000_000, kind: .hostJoin(.init(
            interface: interface, host: hostAddress(host), group: group, mode: mode, sources: sources, version: version)))
    }

    public static func leave(_ ms: Int, host: UInt8, on interface: InterfaceName = follow,
                             group: IPAddress = followGroup) -> ScriptedEvent {
        ScriptedEvent(at: UInt64(ms) * 1_000_000, kind: .hostLeave(interface, host: hostAddress(host), group: group))
    }

    public static func hostAddress(_ host: UInt8) -> IPAddress { .v4(IPv4Address(198, 18, 5, host)) }
}

extension FuzzCase {
    /// Some fuzz cases get a LAN segment on out0 (a stream of their own, drawn from a stream
    /// of its own so the rest of the case is what it was): a follow output, 1-3 hosts that join
    /// (any-source, SSM with the right or a wrong source), leave, rejoin and change version,
    /// sometimes a router with a lower address that starts and stops, sometimes loss; IGMP, or
    /// MLD in a quarter of them.
    static func addSegment(to simCase: inout SimCase, seed: UInt64) {
        var rng = SimRandom.stream(seed: seed, label: "fuzz-segment")
        guard rng.chance(0.3) else { return }
        let output = outputs[0]
        // A quarter of the segments run MLD: link-local hosts and router, a site-scoped group.
        let mld = rng.chance(0.25)
        let family: AddressFamily = mld ? .ipv6 : .ipv4
        // The relay's source on out0 (position 2 of in0, in1, out0, out1; `InterfaceFacts.simulated`).
        let relaySource: IPAddress = mld ? .v6(IPv6Address(0xfd00, 0x6d63, 0, 0, 0, 0, 2, 1)) : .v4(IPv4Address(198, 19, 2, 1))
        let otherSource: IPAddress = mld ? .v6(IPv6Address(0xfd00, 0x6d63, 0, 0, 0, 0, 2, 0x99)) : .v4(IPv4Address(198, 19, 2, 99))
        let pick = UInt16(1 + rng.below(2))
        let group: IPAddress = mld ? .v6(IPv6Address(0xff05, 0, 0, 0, 0, 0, 0x20, pick)) : .v4(IPv4Address(239, 20, 0, UInt8(pick)))
        func hostAddress(_ number: Int) -> IPAddress {
            mld ? .v6(IPv6Address(0xfe80, 0, 0, 0, 0, 0, 0, UInt16(0x10 + number))) : .v4(IPv4Address(198, 18, 5, UInt8(10 + number)))
        }
        let rule = RuleSpec(name: "segment", input: InputSpec(interface: inputs[0], group: IPv4Address(239, 2, 2, 1), port: 5000),
                            outputs: [OutputSpec(interface: output, destination: group, port: 6000, ttl: 8, followsListeners: true)])
        var book = RuleBook()
        for spec in simCase.input.rules { try? book.add(spec) }
        guard (try? book.add(rule)) != nil else { return }
        simCase.input.rules.append(rule)
        // Reloads keep the segment's rule (a reload without it would end the segment's story early).
        for index in simCase.input.events.indices {
            guard case let .configReload(specs) = simCase.input.events[index].kind else { continue }
            var reloaded = RuleBook()
            for spec in specs { try? reloaded.add(spec) }
            if (try? reloaded.add(rule)) != nil { simCase.input.events[index].kind = .configReload(specs + [rule]) }
        }
        // Crashes and flaps at the swarm's rates (up to 3 a second) would leave no second
        // undisturbed for the listener checks to judge: a twentieth of them here.
        var faults = simCase.options.effectiveFaults
        faults.flapsPerSecond = (faults.flapsPerSecond * 50_000).rounded() / 1_000_000
        faults.crashesPerSecond = (faults.crashesPerSecond * 50_000).rounded() / 1_000_000
        simCase.options.faults = faults
        simCase.options.swarm = false
        let version: ListenerVersion = rng.chance(0.8) ? .v3 : .v2
        // The relay's settings vary too: robustness 1-3, last member query interval 0.5-2 s,
        // and now and then listener tracking without querying (`"querier": false`).
        var configuration = ListenerCases.configuration(version: version)
        configuration.robustness = 1 + rng.below(3)
        configuration.lastMemberQueryInterval = .milliseconds([500, 1000, 2000][rng.below(3)])
        configuration.querierEnabled = rng.chance(0.85)
        simCase.input.queriers = [QuerierSetting(interface: output, families: [family], configuration: configuration)]
        let seconds = 20 + rng.below(30)
        let span = UInt64(seconds) * 1_000_000_000
        var events: [ScriptedEvent] = []
        func at() -> UInt64 { UInt64(rng.below(seconds * 1000)) * 1_000_000 }
        for host in 0..<(1 + rng.below(3)) {
            let address = hostAddress(host)
            let hostVersion: ListenerVersion = rng.chance(0.3) ? .v2 : .v3
            for _ in 0..<(1 + rng.below(3)) {
                var join = ScriptedEvent.HostJoin(interface: output, host: address, group: group, mode: .exclude, version: hostVersion)
                switch rng.below(4) {
                case 0: join.mode = .include; join.sources = [relaySource]
                case 1: join.mode = .include; join.sources = [otherSource]
                case 2: join.sources = [otherSource]
                default: break
                }
                let start = at()
                events.append(ScriptedEvent(at: start, kind: .hostJoin(join)))
                if rng.chance(0.7) {
                    events.append(ScriptedEvent(at: start + UInt64(rng.below(15_000)) * 1_000_000,
                                                kind: .hostLeave(output, host: address, group: group)))
                }
            }
            if rng.chance(0.2) {
                events.append(ScriptedEvent(at: at(), kind: .hostVersion(output, host: address, version: hostVersion == .v2 ? .v3 : .v2)))
            }
        }
        if rng.chance(0.4) {
            let router: IPAddress = mld ? .v6(IPv6Address(0xfe80, 0, 0, 0, 0, 0, 0, 1)) : .v4(IPv4Address(198, 18, 0, 1))
            let start = at()
            events.append(ScriptedEvent(at: start, kind: .querierStart(output, address: router, version: rng.chance(0.7) ? .v3 : .v2,
                                                                          queryIntervalMs: 10_000)))
            if rng.chance(0.6) { events.append(ScriptedEvent(at: start + UInt64(rng.below(20_000)) * 1_000_000, kind: .querierStop(output, address: router))) }
        }
        if rng.chance(0.4) {
            events.append(ScriptedEvent(at: 0, kind: .segmentLoss(output, probability: Double(1 + rng.below(30)) / 100)))
        }
        // The segment's stream: a frame every 50 ms, at odd nanoseconds so none lands on another frame's time.
        var store = simCase.input.store
        let times = Set(store.frames.map(\.time))
        var time: UInt64 = 333
        var index = 0
        while time < span {
            if !times.contains(time) {
                let bytes = TrafficMaker.datagram(interface: 0, source: IPv4Address(198, 18, 1, 1), group: IPv4Address(239, 2, 2, 1),
                                                  port: 5000, payload: [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 64),
                                                  id: UInt16(truncatingIfNeeded: index))
                store.append(time: time, interface: inputs[0], link: .ethernet, bytes: bytes)
            }
            time += 50_000_000
            index += 1
        }
        store.sortByTime()
        simCase.input.store = store
        let all = simCase.input.events + events
        simCase.input.events = all.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element)
    }
}
