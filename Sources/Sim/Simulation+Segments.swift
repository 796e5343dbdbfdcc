import RelayControl
import RelayCore

/// The simulated LAN segments on the relay's querier interfaces: hosts, other routers, loss.
/// Every IGMP/MLD message is a real frame (`ListenerFrame.build`): the relay reads hosts'
/// frames through `ListenerEvent.frame`, the daemon's tap path, and hosts and routers parse
/// the relay's queries with `ListenerFrame.extract`.
struct Segments {
    /// Who sends or receives a frame on a segment.
    enum Station: Hashable {
        case relay
        case host(Int)
        case router(Int)
    }

    struct InFlight {
        var bytes: [UInt8]
        var message: ListenerMessage
        var family: AddressFamily
        var interface: Int
        var sender: Station
        var sentAt: UInt64
    }

    var hosts: [ListenerHost] = []
    var hostIndex: [HostKey: Int] = [:]
    var hostGeneration: [UInt64] = []
    /// Groups each host ever had state for (what the oracle is told about after each change).
    var hostGroups: [Set<IPAddress>] = []
    var routers: [SegmentQuerier] = []
    var routerIndex: [HostKey: Int] = [:]
    var routerGeneration: [UInt64] = []
    var loss: [Double]
    var frames: [Int: InFlight] = [:]
    /// Copies of each frame still on their way (the frame is forgotten when none are).
    var pendingCopies: [Int: Int] = [:]
    var nextFrame = 0
    /// The relay's IGMP/MLD router runs on these interfaces (per family).
    var relayFamilies: [Set<AddressFamily>]
    /// Host timing (query answer delays, report intervals) and segment loss: two streams, so
    /// turning loss on does not move the hosts' delays.
    var rng: SimRandom
    var lossRng: SimRandom
    var stats = SimReport.Segments()

    struct HostKey: Hashable {
        var interface: Int
        var address: IPAddress
    }

    init(interfaceCount: Int, seed: UInt64) {
        loss = Array(repeating: 0, count: interfaceCount)
        relayFamilies = Array(repeating: [], count: interfaceCount)
        rng = SimRandom.stream(seed: seed, label: "segment-hosts")
        lossRng = SimRandom.stream(seed: seed, label: "segment-loss")
    }

    /// Latency of one frame across a segment (a switch hop).
    static let latency: UInt64 = 100_000

    var isEmpty: Bool { hosts.isEmpty && routers.isEmpty && relayFamilies.allSatisfy(\.isEmpty) }
}

extension Simulation {
    // MARK: - Boot

    /// Starts the relay's IGMP/MLD router on each configured interface, from the address the
    /// interface's facts give (as `ListenerDriver` does from the real interface).
    func startListeners(_ settings: [QuerierSetting]) {
        for setting in settings {
            guard let index = interfaces.index(of: setting.interface) else { continue }
            let facts = egress.ports[index].facts
            for family in setting.families {
                let address: IPAddress? = family == .ipv4 ? facts.ipv4.map(IPAddress.v4) : facts.ipv6LinkLocal.map(IPAddress.v6)
                segments.relayFamilies[index].insert(family)
                listenerOracle.segments[index].relay[family] = setting.configuration
                if let address { listenerOracle.segments[index].relayAddress[family] = address }
                control.handle(.listener(.start(setting.interface, family, address: address, configuration: setting.configuration)),
                               now: instant)
            }
        }
    }

    // MARK: - Scripted segment events

    func runSegmentEvent(_ kind: ScriptedEvent.Kind) {
        switch kind {
        case let .hostJoin(join):
            let host = hostNumber(join.interface, join.host, version: join.version ?? .v3)
            if let version = join.version { segments.hosts[host].setVersion(version) }
            let messages = segments.hosts[host].setFilter(HostFilter(mode: join.mode, sources: join.sources), group: join.group,
                                                          now: now, rng: &segments.rng)
            segments.hostGroups[host].insert(join.group)
            hostChanged(host, sending: messages)
        case let .hostLeave(name, address, group):
            let host = hostNumber(name, address, version: .v3)
            let messages = segments.hosts[host].setFilter(.none, group: group, now: now, rng: &segments.rng)
            segments.hostGroups[host].insert(group)
            hostChanged(host, sending: messages)
        case let .hostVersion(name, address, version):
            let host = hostNumber(name, address, version: version)
            segments.hosts[host].setVersion(version)
            hostChanged(host, sending: [])
        case let .querierStart(name, address, version, interval):
            let index = interfaces.index(of: name)!
            let key = Segments.HostKey(interface: index, address: address)
            let router = SegmentQuerier(interface: index, address: address, mac: TrafficMaker.senderMAC(interface: index, host: 0xE0),
                                        version: version, queryInterval: UInt64(interval) * 1_000_000, now: now)
            if let existing = segments.routerIndex[key] {
                segments.routers[existing] = router
                routerChanged(existing)
            } else {
                segments.routerIndex[key] = segments.routers.count
                segments.routers.append(router)
                segments.routerGeneration.append(0)
                routerChanged(segments.routers.count - 1)
            }
            listenerOracle.routerStarted(interface: index, address: address, version: version, queryInterval: UInt64(interval) * 1_000_000)
        case let .querierStop(name, address):
            let index = interfaces.index(of: name)!
            guard let router = segments.routerIndex[Segments.HostKey(interface: index, address: address)] else {
                operatorError("querier_stop: no router \(address) on \(name)")
                return
            }
            segments.routers[router].stop()
            routerChanged(router)
        case let .segmentLoss(name, probability):
            segments.loss[interfaces.index(of: name)!] = probability
        default:
            break
        }
    }

    private func hostNumber(_ name: InterfaceName, _ address: IPAddress, version: ListenerVersion) -> Int {
        let index = interfaces.index(of: name)!
        let key = Segments.HostKey(interface: index, address: address)
        if let existing = segments.hostIndex[key] { return existing }
        let number = segments.hosts.count
        let mac = MACAddress(0x02, 0x6D, 0x68, UInt8(truncatingIfNeeded: number >> 8), UInt8(truncatingIfNeeded: number),
                             UInt8(truncatingIfNeeded: index))
        segments.hosts.append(ListenerHost(interface: index, address: address, mac: mac, version: version))
        segments.hostIndex[key] = number
        segments.hostGeneration.append(0)
        segments.hostGroups.append([])
        return number
    }

    // MARK: - Hosts and routers

    /// After anything a host did: send what it sends, re-arm its timer, tell the oracle.
    func hostChanged(_ host: Int, sending messages: [ListenerMessage]) {
        let state = segments.hosts[host]
        for message in messages {
            switch message {
            case .report(_, _): segments.stats.hostReportsV2 += 1
            case .leave: segments.stats.hostLeaves += 1
            case .v3Report: segments.stats.hostReportsV3 += 1
            case .query: break
            }
            transmit(message, family: state.family, from: .host(host), interface: state.interface,
                     bytes: ListenerFrame.build(message, sourceMAC: state.mac, source: state.address))
        }
        segments.hostGeneration[host] += 1
        if let deadline = state.nextDeadline {
            queue.push(.hostWake(host, generation: segments.hostGeneration[host]), at: max(deadline, now))
        }
        for group in segments.hostGroups[host].sorted() {
            let source = egress.ports[state.interface].facts.source(for: group) ?? group
            listenerOracle.hostState(interface: state.interface, group: group, host: host,
                                     wants: state.wants(source: source, group: group, now: now),
                                     excludeMember: state.isMember(group) && (state.filters[group]?.mode == .exclude
                                                                               || state.effectiveVersion(now: now) < .v3),
                                     source: source, now: now)
        }
    }

    func routerChanged(_ router: Int) {
        segments.routerGeneration[router] += 1
        if let deadline = segments.routers[router].nextDeadline {
            queue.push(.routerWake(router, generation: segments.routerGeneration[router]), at: max(deadline, now))
        }
    }

    func hostWake(_ host: Int, generation: UInt64) {
        guard segments.hostGeneration[host] == generation else { return }
        step("host", host)
        let messages = segments.hosts[host].advance(now: now, rng: &segments.rng)
        hostChanged(host, sending: messages)
    }

    func routerWake(_ router: Int, generation: UInt64) {
        guard segments.routerGeneration[router] == generation else { return }
        step("router", router)
        let messages = segments.routers[router].advance(now: now)
        let state = segments.routers[router]
        for message in messages {
            segments.stats.routerQueries += 1
            transmit(message, family: state.family, from: .router(router), interface: state.interface,
                     bytes: ListenerFrame.build(message, sourceMAC: state.mac, source: state.address))
        }
        routerChanged(router)
    }

    // MARK: - The wire

    /// The relay's IGMP/MLD action `send`: its frame goes onto the segment when the link is up.
    func relaySend(_ transmit: ListenerTransmit) {
        guard let index = interfaces.index(of: transmit.interface) else { return }
        if case let .query(query) = transmit.message {
            if query.group == nil {
                segments.stats.relayGeneralQueries += 1
                count(InvariantName.singleQuerier)
                if let problem = listenerOracle.relayGeneralQuery(interface: index, family: transmit.source.family, now: now) {
                    violate(InvariantName.singleQuerier, "\(transmit.interface): \(problem)")
                }
            } else {
                segments.stats.relaySpecificQueries += 1
            }
        }
        guard kernel.up[index] else { return }
        let facts = egress.ports[index].facts
        self.transmit(transmit.message, family: transmit.source.family, from: .relay, interface: index,
                      bytes: transmit.frame(sourceMAC: facts.mac ?? TrafficMaker.senderMAC(interface: index, host: 0)))
    }

    /// Puts a frame on a segment: each other station gets its own copy after the segment's
    /// latency, or loses it (`segment_loss`, while faults are on).
    func transmit(_ message: ListenerMessage, family: AddressFamily, from sender: Segments.Station, interface: Int, bytes: [UInt8]) {
        let number = segments.nextFrame
        segments.nextFrame += 1
        var receivers: [Segments.Station] = []
        if sender != .relay, segments.relayFamilies[interface].contains(family) { receivers.append(.relay) }
        for (host, state) in segments.hosts.enumerated() where state.interface == interface && sender != .host(host) {
            receivers.append(.host(host))
        }
        for (router, state) in segments.routers.enumerated() where state.interface == interface && sender != .router(router) && state.active {
            receivers.append(.router(router))
        }
        let loss = injector.enabled ? segments.loss[interface] : 0
        var pending = 0
        for receiver in receivers {
            if loss > 0, segments.lossRng.chance(loss) {
                segments.stats.framesLost += 1
                continue
            }
            pending += 1
            queue.push(.segmentDelivery(frame: number, receiver: receiver), at: now + Segments.latency)
        }
        guard pending > 0 else { return }
        segments.frames[number] = Segments.InFlight(bytes: bytes, message: message, family: family, interface: interface,
                                                    sender: sender, sentAt: now)
        segments.pendingCopies[number] = pending
    }

    func segmentDelivery(frame number: Int, receiver: Segments.Station) {
        guard let frame = segments.frames[number] else { return }
        defer {
            segments.pendingCopies[number]! -= 1
            if segments.pendingCopies[number] == 0 {
                segments.frames[number] = nil
                segments.pendingCopies[number] = nil
            }
        }
        switch receiver {
        case .relay:
            guard kernel.up[frame.interface] else { return }  // a link that is down delivers nothing
            step("igmp_rx", number)
            segments.stats.framesToRelay += 1
            if case let .host(host) = frame.sender {
                listenerOracle.relayHeard(frame.message, family: frame.family, interface: frame.interface, host: host,
                                          sentAt: frame.sentAt, now: now)
                if options.driverBugs.contains(.dropLeaves), frame.message.isLeave { return }
            }
            if case .router = frame.sender, case let .query(query) = frame.message, let group = query.group,
               !query.suppressRouterSideProcessing {
                listenerOracle.lowered(interface: frame.interface, group: group, now: now)
            }
            if case let .router(router) = frame.sender, case .query = frame.message,
               let deadline = listenerOracle.routerQueryHeard(interface: frame.interface, family: frame.family,
                                                              router: segments.routers[router].address, now: now) {
                queue.push(.takeoverCheck(interface: frame.interface, family: frame.family, heardAt: now), at: deadline)
            }
            control.handle(.listener(.frame(interfaces.names[frame.interface], frame.bytes)), now: instant)
            executeActions()
        case let .host(host):
            guard case let .success(received) = ListenerFrame.extract(frame.bytes) else {
                segments.stats.framesRefused += 1
                return
            }
            let messages = segments.hosts[host].receive(received, now: now, rng: &segments.rng)
            hostChanged(host, sending: messages)
        case let .router(router):
            guard case let .success(received) = ListenerFrame.extract(frame.bytes) else {
                segments.stats.framesRefused += 1
                return
            }
            segments.routers[router].receive(received, now: now)
            routerChanged(router)
        }
    }

    func takeoverCheck(interface: Int, family: AddressFamily, heardAt: UInt64) {
        step("takeover_check", interface)
        count(InvariantName.singleQuerier)
        guard kernel.up[interface] else { return }
        if let problem = listenerOracle.takeoverViolation(interface: interface, family: family, heardAt: heardAt, now: now) {
            violate(InvariantName.singleQuerier, "\(interfaces.names[interface]): \(problem)")
        }
    }
}

extension ListenerMessage {
    /// A departure: an IGMPv2 Leave / MLD Done, or a v3 report holding TO_IN or BLOCK records.
    var isLeave: Bool {
        switch self {
        case .leave: true
        case let .v3Report(records): records.contains { $0.type == .changeToInclude || $0.type == .blockOldSources }
        default: false
        }
    }
}
