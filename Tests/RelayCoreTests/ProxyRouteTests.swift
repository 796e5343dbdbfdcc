import PropertyBased
import Testing
@testable import RelayCore

/// The proxy's data path: routes derived from the proxies, routed outputs gated per datagram by
/// (downstream, group, source), routed frames (TTL - 1, checksum, source kept, MACs).
@Suite struct ProxyRouteTests {
    static let up = iface("eth0")
    static let down1 = iface("eth1")
    static let down2 = iface("eth2")
    static let sender = ip("198.18.0.10")
    static let other = ip("198.18.0.11")

    static func proxy(_ groups: [String] = ["239.0.0.0/8"], downstream: [InterfaceName] = [down1, down2]) -> ProxyConfiguration {
        ProxyConfiguration(upstream: up, downstream: downstream, groups: groups.map { try! GroupPrefix(parsing: $0) })
    }

    static func routedPlan(_ proxies: [ProxyConfiguration], rules: [RuleSpec] = [], gates: [GateEntry] = []) -> WorkerPlan {
        var book = RuleBook()
        for rule in rules { try! book.add(rule) }
        let all = Array(book.rules.values) + Proxies.routes(for: proxies, besides: book.rules.values)
        return WorkerPlan(worker: WorkerID(0), version: 1, ingress: [IngressAssignment(interface: up, fanoutGroup: nil)],
                          rules: all, gateVersion: gates.isEmpty ? 0 : 1, gates: gates)
    }

    static func gate(_ interface: InterfaceName, _ group: String, _ filter: GateFilter) -> GateEntry {
        GateEntry(key: GateKey(interface: interface, group: .v4(ip(group))), filter: filter)
    }

    /// (egress interface, destination, port, ttl) of every transmit for one frame, or the drop.
    enum Sent: Equatable {
        case success([String])
        case failure(DropReason)
    }

    static func send(_ forwarder: inout Forwarder, _ frame: [UInt8]) -> Sent {
        frame.withUnsafeBytes { bytes in
            switch forwarder.decide(bytes, link: .ethernet, ingress: 0) {
            case let .drop(reason): return .failure(reason)
            case let .forward(forwarding):
                return .success(forwarder.transmits(for: forwarding).map { transmit in
                    #expect(transmit.routed)
                    return "\(forwarder.egress[transmit.egress]) \(transmit.destination):\(transmit.port) ttl \(transmit.ttl)"
                })
            }
        }
    }

    // MARK: - Routes

    @Test func routesCoverEveryPrefixWithTheDownstreamsOfEveryProxyCoveringIt() {
        let routes = Proxies.routes(for: [Self.proxy(["239.0.0.0/8"], downstream: [Self.down1]),
                                          Self.proxy(["239.1.0.0/16"], downstream: [Self.down2])], besides: [])
        #expect(routes.map(\.input.endpoint) == ["eth0:239.0.0.0/8:*", "eth0:239.1.0.0/16:*"])
        #expect(routes.map { $0.outputs.map(\.description) } == [["eth1:routed"], ["eth1:routed", "eth2:routed"]],
                "the /16 (which wins its groups) carries the /8's downstream too")
        #expect(routes.allSatisfy { $0.name == "proxy" })
        #expect(routes[0].id != RuleID(deriving: routes[0].input), "never the id a user rule with that input gets")
    }

    @Test func aUserRuleWithTheSameInputReplacesTheProxyRoute() {
        var book = RuleBook()
        try! book.add(spec("eth0:239.0.0.0/8:*", ["eth3:239.9.9.9:6000"]))
        #expect(Proxies.routes(for: [Self.proxy()], besides: book.rules.values).isEmpty)
    }

    @Test func moreThan64DownstreamsPerUpstreamAreRefusedWithTheCount() {
        let many = (0..<65).map { iface("d\($0)") }
        let split = [Self.proxy(["239.0.0.0/8"], downstream: Array(many[0..<40])), Self.proxy(["238.0.0.0/8"], downstream: Array(many[30...]))]
        #expect(throws: ProxyError.tooManyDownstream(Self.up, 65, limit: 64)) { try ProxyConfiguration.validate(split) }
        #expect(ProxyError.tooManyDownstream(Self.up, 65, limit: 64).description
            == "the proxies of upstream eth0 have 65 downstream interfaces; at most 64")
        #expect(throws: Never.self) { try ProxyConfiguration.validate([Self.proxy(downstream: Array(many[0..<64]))]) }
    }

    // MARK: - Forwarder

    @Test func aRoutedDatagramGoesOnlyToDownstreamsWhoseListenersWantItsGroupAndSource() {
        var forwarder = Forwarder(plan: Self.routedPlan([Self.proxy()], gates: [
            Self.gate(Self.down1, "239.1.1.1", GateFilter(mode: .include, sources: [.v4(Self.sender)])),
            Self.gate(Self.down2, "239.1.1.2", .anySource),
        ]))
        let frame = { (group: String, source: IPv4Address) in
            FrameBuilder(source: source, destination: ip(group), destinationPort: 7000, ttl: 9).build()
        }
        #expect(Self.send(&forwarder, frame("239.1.1.1", Self.sender)) == .success(["eth1 239.1.1.1:7000 ttl 8"]))
        #expect(Self.send(&forwarder, frame("239.1.1.1", Self.other)) == .success([]), "eth1 wants 239.1.1.1 from the sender only")
        #expect(Self.send(&forwarder, frame("239.1.1.2", Self.other)) == .success(["eth2 239.1.1.2:7000 ttl 8"]))
        #expect(Self.send(&forwarder, frame("239.1.1.3", Self.sender)) == .success([]), "nobody wants 239.1.1.3")
        #expect(Self.send(&forwarder, frame("239.2.0.1", Self.sender)) == .success([]))
        let outputs = forwarder.statistics().rules[0].outputs
        #expect(outputs[0] == OutputCounter(packets: 1, bytes: 15, suppressed: 4), "eth1: 1 forwarded, 4 suppressed")
        #expect(outputs[1] == OutputCounter(packets: 1, bytes: 15, suppressed: 4), "eth2: 1 forwarded, 4 suppressed")
        #expect(forwarder.statistics().rules[0].accepted.packets == 5)
    }

    @Test func aDatagramThatWouldLeaveWithTTLZeroIsDroppedWithAReason() {
        var forwarder = Forwarder(plan: Self.routedPlan([Self.proxy()], gates: [Self.gate(Self.down1, "239.1.1.1", .anySource)]))
        #expect(Self.send(&forwarder, FrameBuilder(destination: ip("239.1.1.1"), ttl: 1).build()) == .failure(.ttlExceeded))
        #expect(Self.send(&forwarder, FrameBuilder(destination: ip("239.1.1.1"), ttl: 0).build()) == .failure(.ttlExceeded))
        #expect(Self.send(&forwarder, FrameBuilder(destination: ip("239.1.1.1"), ttl: 2).build()) == .success(["eth1 239.1.1.1:5001 ttl 1"]))
        #expect(forwarder.drops[.ttlExceeded] == 2)
        #expect(forwarder.statistics().rules[0].accepted.packets == 1, "a dropped datagram is not accepted")
    }

    @Test func aMoreSpecificUserRuleWinsItsDatagramsOverTheProxy() {
        var forwarder = Forwarder(plan: Self.routedPlan([Self.proxy()], rules: [spec("eth0:239.1.1.1:5001", ["eth3:239.9.9.9:6000"])],
                                                        gates: [Self.gate(Self.down1, "239.1.1.1", .anySource)]))
        let decided = FrameBuilder(destination: ip("239.1.1.1"), ttl: 5).build().withUnsafeBytes {
            forwarder.decide($0, link: .ethernet, ingress: 0)
        }
        guard case let .forward(forwarding) = decided else { Issue.record("not forwarded"); return }
        #expect(forwarder.transmits(for: forwarding).map(\.routed) == [false], "the user's rule, re-originated")
        #expect(Self.send(&forwarder, FrameBuilder(destination: ip("239.1.1.1"), destinationPort: 5002, ttl: 5).build())
            == .success(["eth1 239.1.1.1:5002 ttl 4"]), "another port of the group: the proxy")
    }

    @Test func gateDeltasOpenAndCloseARoutedDownstreamPerGroup() {
        var forwarder = Forwarder(plan: Self.routedPlan([Self.proxy()]))
        let frame = FrameBuilder(source: Self.sender, destination: ip("239.5.5.5"), ttl: 64).build()
        #expect(Self.send(&forwarder, frame) == .success([]))
        _ = forwarder.applyGates(GateDelta(worker: WorkerID(0), base: 0, version: 1, entries: [Self.gate(Self.down2, "239.5.5.5", .anySource)]))
        #expect(Self.send(&forwarder, frame) == .success(["eth2 239.5.5.5:5001 ttl 63"]))
        _ = forwarder.applyGates(GateDelta(worker: WorkerID(0), base: 1, version: 2, entries: [
            Self.gate(Self.down2, "239.5.5.5", GateFilter(mode: .exclude, sources: [.v4(Self.sender)]))]))
        #expect(Self.send(&forwarder, frame) == .success([]), "EXCLUDE {sender}")
        _ = forwarder.applyGates(GateDelta(worker: WorkerID(0), base: 2, version: 3, entries: [Self.gate(Self.down2, "239.5.5.5", .closed)]))
        #expect(Self.send(&forwarder, frame) == .success([]))
    }

    /// For random gate tables over 3 downstreams x 3 groups x 2 sources and random datagrams, the
    /// downstreams a datagram goes out on are exactly those whose gate for its group admits its
    /// source, each frame is the datagram with TTL - 1 and a valid IP header checksum, and every
    /// datagram is either forwarded or dropped as ttl_exceeded.
    @Test func routedDeliveryMatchesTheGateTable() async {
        let downstream = [Self.down1, Self.down2, iface("eth3")]
        let sources = [Self.sender, Self.other]
        let filters: [GateFilter] = [.closed, .anySource, GateFilter(mode: .include, sources: [.v4(Self.sender)]),
                                     GateFilter(mode: .exclude, sources: [.v4(Self.sender)]),
                                     GateFilter(mode: .include, sources: sources.map(IPAddress.v4))]
        await propertyCheck(
            count: 300,
            input: Gen.int(in: 0..<filters.count).array(of: 9...9), Gen.int(in: 1...3), Gen.int(in: 0...1), Gen.int(in: 0...4)
        ) { table, groupLow, sourceIndex, ttl in
            var gates: [GateEntry] = []
            for (index, choice) in table.enumerated() where !filters[choice].isClosed {
                gates.append(GateEntry(key: GateKey(interface: downstream[index / 3], group: .v4(IPv4Address(239, 3, 3, UInt8(index % 3 + 1)))),
                                       filter: filters[choice]))
            }
            var forwarder = Forwarder(plan: Self.routedPlan([Self.proxy(downstream: downstream)], gates: gates))
            let source = sources[sourceIndex]
            let frame = FrameBuilder(source: source, destination: IPv4Address(239, 3, 3, UInt8(groupLow)), ttl: UInt8(ttl)).build()
            let want = downstream.indices.filter { filters[table[$0 * 3 + groupLow - 1]].admits(.v4(source)) }.map { downstream[$0].description }
            frame.withUnsafeBytes { bytes in
                switch forwarder.decide(bytes, link: .ethernet, ingress: 0) {
                case let .forward(forwarding):
                    #expect(ttl > 1)
                    let transmits = Array(forwarder.transmits(for: forwarding))
                    #expect(transmits.map { forwarder.egress[$0.egress].description } == want)
                    for transmit in transmits {
                        let out = EgressFrame.routedBytes(sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), headers: Array(transmit.headers),
                                                          payload: Array(transmit.payload))
                        #expect(out[22] == UInt8(ttl - 1) && transmit.ttl == UInt8(ttl - 1))
                        #expect(out.withUnsafeBytes { EgressFrame.checksum(UnsafeRawBufferPointer(rebasing: $0[14..<34])) } == 0)
                        #expect(Array(out[26..<30]) == be32(source.value))
                    }
                case let .drop(reason):
                    #expect(ttl <= 1 && reason == .ttlExceeded)
                }
            }
        }
    }

    // MARK: - Routed frames

    @Test func aRoutedIPv4FrameIsTheDatagramWithTTLLessOneAValidChecksumAndTheDownstreamMAC() throws {
        let mac = MACAddress(0x02, 0xAA, 0, 0, 0, 2)
        for options in [[UInt8](), [0x94, 0x04, 0, 0]] {  // none, and Router Alert (a 24-byte header)
            let input = FrameBuilder(source: Self.sender, destination: ip("239.129.2.3"), destinationPort: 7000, ttl: 17,
                                     ipOptions: options)
            let bytes = Self.settingUDPChecksum(input.build())
            #expect(Self.udpChecksumVerifies(bytes))
            guard case let .datagram(datagram) = parse(bytes) else { Issue.record("input does not parse"); return }
            let headers = Array(bytes[datagram.ipOffset..<datagram.payloadOffset])
            let frame = EgressFrame.routedBytes(sourceMAC: mac, headers: headers, payload: input.payload)
            #expect(Array(frame[0..<6]) == [0x01, 0x00, 0x5E, 0x01, 0x02, 0x03], "the group's MAC (low 23 bits)")
            #expect(Array(frame[6..<12]) == mac.array)
            #expect(Array(frame[12..<14]) == [0x08, 0x00])
            #expect(frame.count == 14 + bytes.count - datagram.ipOffset, "one datagram, nothing added")
            let ipLength = 20 + options.count
            #expect(frame[14 + 8] == 16, "TTL 17 - 1")
            #expect(frame.withUnsafeBytes { EgressFrame.checksum(UnsafeRawBufferPointer(rebasing: $0[14..<14 + ipLength])) } == 0,
                    "the IPv4 header checksum is valid")
            var expected = Array(bytes[datagram.ipOffset...])
            expected[8] = 16
            expected[10] = frame[24]
            expected[11] = frame[25]
            #expect(Array(frame[14...]) == expected, "everything else as received: addresses, ports, UDP checksum, payload")
            #expect(Self.udpChecksumVerifies(frame))
            guard case let .datagram(out) = parse(frame) else { Issue.record("output does not parse"); return }
            #expect(out.source == .v4(Self.sender) && out.destination == datagram.destination && out.ttl == 16)
            #expect(out.sourcePort == datagram.sourcePort && out.destinationPort == 7000 && out.payloadLength == datagram.payloadLength)
        }
    }

    @Test func aChecksumLeftToOffloadIsCompletedAndACorruptedOneIsLeftCorrupted() throws {
        let mac = MACAddress(2, 0, 0, 0, 0, 3)
        let input = FrameBuilder(source: Self.sender, destination: ip("239.1.1.1"), ttl: 4, payload: Array(0..<201))
        let valid = Self.settingUDPChecksum(input.build())
        func routed(_ bytes: [UInt8]) -> [UInt8] {
            guard case let .datagram(datagram) = parse(bytes) else { return [] }
            return EgressFrame.routedBytes(sourceMAC: mac, headers: Array(bytes[datagram.ipOffset..<datagram.payloadOffset]),
                                           payload: Array(bytes[datagram.payloadOffset..<datagram.payloadOffset + datagram.payloadLength]))
        }
        // CHECKSUM_PARTIAL, as a local sender's kernel leaves it: the pseudo header's sum alone.
        var partial = valid
        let udp = 14 + 20
        var pseudo: UInt32 = 0
        let words = Array(valid[26..<34]) + [0, 17] + Array(valid[udp + 4..<udp + 6])
        for index in stride(from: 0, to: words.count, by: 2) { pseudo += UInt32(words[index]) << 8 | UInt32(words[index + 1]) }
        while pseudo > 0xFFFF { pseudo = (pseudo & 0xFFFF) + (pseudo >> 16) }
        partial[udp + 6] = UInt8(pseudo >> 8)
        partial[udp + 7] = UInt8(pseudo & 0xFF)
        #expect(!Self.udpChecksumVerifies(partial))
        #expect(Array(routed(partial)[(udp + 6)...].prefix(2)) == Array(valid[(udp + 6)...].prefix(2)), "completed: the sender's full checksum")
        #expect(Self.udpChecksumVerifies(routed(partial)))
        #expect(Array(routed(valid)[14...]).enumerated().filter { $0.element != valid[$0.offset + 14] }.map(\.offset).sorted() == [8, 10, 11]
                    || Array(routed(valid)[14...]).enumerated().filter { $0.element != valid[$0.offset + 14] }.map(\.offset).sorted() == [8, 10]
                    || Array(routed(valid)[14...]).enumerated().filter { $0.element != valid[$0.offset + 14] }.map(\.offset).sorted() == [8, 11],
                "a valid datagram changes only in its TTL and IP header checksum")
        var corrupted = valid
        corrupted[udp + 8 + 100] ^= 0x40
        let out = routed(corrupted)
        #expect(!Self.udpChecksumVerifies(out), "corruption before the relay stays detectable")
        #expect(Array(out[(udp + 6)...].prefix(2)) == Array(valid[(udp + 6)...].prefix(2)))
        var none = input.build()  // IPv4 without a UDP checksum
        #expect(Array(routed(none)[(udp + 6)...].prefix(2)) == [0, 0], "no checksum stays no checksum")
        none[0] = none[0]
    }

    /// The UDP checksum of an untagged Ethernet frame, over its pseudo header (RFC 768, RFC 8200 8.1).
    static func udpChecksumVerifies(_ frame: [UInt8]) -> Bool { udpSum(frame) == 0xFFFF }

    /// The frame with its UDP checksum filled in (FrameBuilder sends IPv4 without one).
    static func settingUDPChecksum(_ frame: [UInt8]) -> [UInt8] {
        var frame = frame
        let udp = 14 + Int(frame[14] & 0x0F) * 4
        frame[udp + 6] = 0
        frame[udp + 7] = 0
        let check = ~udpSum(frame)
        frame[udp + 6] = UInt8(check >> 8)
        frame[udp + 7] = UInt8(check & 0xFF)
        return frame
    }

    static func udpSum(_ frame: [UInt8]) -> UInt16 {
        var words: [UInt8] = []
        let udp: Int
        if frame[12] == 0x86 {
            words = Array(frame[22..<54])
            udp = 54
        } else {
            words = Array(frame[26..<34])
            udp = 14 + Int(frame[14] & 0x0F) * 4
        }
        let length = Int(frame[udp + 4]) << 8 | Int(frame[udp + 5])
        words += [0, 0, UInt8(length >> 8), UInt8(length & 0xFF), 0, 0, 0, 17] + Array(frame[udp..<udp + length])
        if words.count % 2 == 1 { words.append(0) }
        var sum: UInt32 = 0
        for index in stride(from: 0, to: words.count, by: 2) { sum += UInt32(words[index]) << 8 | UInt32(words[index + 1]) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return UInt16(sum)
    }

    @Test func aRoutedIPv6FrameHasHopLimitLessOneAndTheGroupsMAC() throws {
        let input = FrameBuilder6(destination: IPv6Address("ff3e::8000:1234")!, hopLimit: 3)
        let bytes = input.build()
        guard case let .datagram(datagram) = parse(bytes) else { Issue.record("input does not parse"); return }
        let frame = EgressFrame.routedBytes(sourceMAC: MACAddress(2, 0, 0, 0, 0, 9),
                                            headers: Array(bytes[datagram.ipOffset..<datagram.payloadOffset]), payload: input.payload)
        #expect(Array(frame[0..<6]) == [0x33, 0x33, 0x80, 0x00, 0x12, 0x34])
        #expect(Array(frame[12..<14]) == [0x86, 0xDD])
        var expected = Array(bytes[datagram.ipOffset...])
        expected[7] = 2
        #expect(Array(frame[14...]) == expected)
        guard case let .datagram(out) = parse(frame) else { Issue.record("output does not parse"); return }
        #expect(out.ttl == 2 && out.source == datagram.source)
        #expect(Self.udpChecksumVerifies(frame), "the hop limit is outside the pseudo header: the sender's checksum holds")
    }

    // MARK: - XDP

    @Test func theXDPPathLeavesAProxyRouteToThePacketPathWithAReason() {
        let plan = Self.routedPlan([Self.proxy(["239.1.1.1"])])
        let tables = XDPTables(plan: plan, facts: [:])
        #expect(tables.fallbacks.map(\.reason) == ["a proxy's route (routed outputs keep the sender's address; the XDP path re-originates and has no gates)"])
    }
}

/// ControlPlane and a worker's Forwarder together: listener reports on the downstreams open the
/// right downstream for the right group and source, and leaves close it.
@Suite struct ProxyForwardingTests {
    static let sender = IPAddress.v4(IPv4Address(198, 18, 0, 10))
    static let other = IPAddress.v4(IPv4Address(198, 18, 0, 11))
    static let host1 = IPv4Address(198, 18, 1, 100)
    static let host2 = IPv4Address(198, 18, 2, 100)

    static func lab() throws -> ProxyLab {
        var lab = try ProxyLab()
        lab.worker = Forwarder(plan: .idle(WorkerID(0)))
        lab.handle(.workerStarted(WorkerID(0)))
        return lab
    }

    /// The downstreams a datagram from `source` to `group` goes out on, as the worker decides.
    static func downstreams(_ lab: inout ProxyLab, _ group: String, from source: IPAddress, ttl: UInt8 = 32) -> [String] {
        let frame = FrameBuilder(source: source.v4!, destination: ip(group), destinationPort: 6000, ttl: ttl).build()
        let slot = lab.worker!.ingressSlot(of: ProxyLab.up)!
        return frame.withUnsafeBytes { bytes in
            guard case let .forward(forwarding) = lab.worker!.decide(bytes, link: .ethernet, ingress: slot) else { return ["dropped"] }
            return lab.worker!.transmits(for: forwarding).map { "\(lab.worker!.egress[$0.egress])" }
        }
    }

    @Test func theWorkerGetsTheProxyRouteAndReadsTheUpstream() throws {
        var lab = try Self.lab()
        #expect(lab.worker!.plan.rules.map(\.description).contains { $0.hasSuffix("(proxy): up0:239.0.0.0/8:* -> down1:routed, down2:routed") })
        #expect(lab.worker!.plan.ingress.map(\.interface) == [ProxyLab.up])
        #expect(Self.downstreams(&lab, "239.1.1.1", from: Self.sender).isEmpty, "nobody listens yet")
    }

    @Test func anySourceAndSourceSpecificListenersOpenOnlyTheirDownstreamForTheirGroupAndSource() throws {
        var lab = try Self.lab()
        let g1 = IPAddress.v4(ip("239.1.1.1")), g2 = IPAddress.v4(ip("239.1.1.2"))
        lab.report([GroupRecord(.changeToExclude, group: g1)], on: ProxyLab.down1, from: Self.host1)
        lab.report([GroupRecord(.allowNewSources, group: g2, sources: [Self.sender])], on: ProxyLab.down2, from: Self.host2)
        #expect(Self.downstreams(&lab, "239.1.1.1", from: Self.sender) == ["down1"])
        #expect(Self.downstreams(&lab, "239.1.1.1", from: Self.other) == ["down1"])
        #expect(Self.downstreams(&lab, "239.1.1.2", from: Self.sender) == ["down2"])
        #expect(Self.downstreams(&lab, "239.1.1.2", from: Self.other).isEmpty, "down2 wants (sender, 239.1.1.2) only")
        #expect(Self.downstreams(&lab, "239.1.1.3", from: Self.sender).isEmpty)
        #expect(Self.downstreams(&lab, "239.1.1.1", from: Self.sender, ttl: 1) == ["dropped"])
        // Leaves: the gate closes when the listener state drops the group (last member queries).
        lab.report([GroupRecord(.changeToInclude, group: g1)], on: ProxyLab.down1, from: Self.host1)
        lab.report([GroupRecord(.blockOldSources, group: g2, sources: [Self.sender])], on: ProxyLab.down2, from: Self.host2)
        lab.advance(by: .seconds(5))
        #expect(Self.downstreams(&lab, "239.1.1.1", from: Self.sender).isEmpty)
        #expect(Self.downstreams(&lab, "239.1.1.2", from: Self.sender).isEmpty)
        #expect(lab.held.isEmpty, "and nothing is joined upstream any more")
    }

    @Test func aProxyAddedAfterTheListenersJoinedOpensAtOnce() throws {
        var plane = ControlPlane()
        var worker = Forwarder(plan: .idle(WorkerID(0)))
        let now = Instant.zero
        plane.handle(.interfaceUp(ProxyLab.up), now: now)
        plane.handle(.listener(.start(ProxyLab.down1, .ipv4, address: .v4(IPv4Address(198, 18, 1, 1)), configuration: ListenerConfiguration())), now: now)
        plane.handle(.workerStarted(WorkerID(0)), now: now)
        let message = ListenerMessage.v3Report([GroupRecord(.changeToExclude, group: .v4(ip("239.7.7.7")))])
        plane.handle(.listener(.received(ProxyLab.down1, ListenerFrame.Received(message: message, source: .v4(Self.host1),
                                                                                destination: message.destination(.ipv4)))), now: now)
        try plane.replaceProxies([ProxyConfiguration(upstream: ProxyLab.up, downstream: [ProxyLab.down1],
                                                     groups: [try GroupPrefix(parsing: "239.0.0.0/8")])], now: now)
        while let action = plane.poll() {
            if case let .sendPlan(plan) = action { worker.install(plan) }
            if case let .sendGates(delta) = action { _ = worker.applyGates(delta) }
        }
        let frame = FrameBuilder(destination: ip("239.7.7.7"), ttl: 8).build()
        let sent = frame.withUnsafeBytes { bytes -> Int in
            guard case let .forward(forwarding) = worker.decide(bytes, link: .ethernet, ingress: 0) else { return -1 }
            return worker.transmits(for: forwarding).count
        }
        #expect(sent == 1)
    }
}
