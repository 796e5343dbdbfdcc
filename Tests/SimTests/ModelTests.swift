import Foundation
import Testing
import RelayCore
@testable import Sim

@Suite struct ModelTests {
    let eth0 = InterfaceName("eth0")!

    @Test func membershipLimitIsPerSocket() {
        var kernel = KernelModel(interfaces: InterfaceTable([eth0]), membershipLimit: 20)
        let first = HelperSocketID(interface: eth0, ordinal: 0)
        let second = HelperSocketID(interface: eth0, ordinal: 1)
        try? kernel.openHelperSocket(first)
        try? kernel.openHelperSocket(second)
        func join(_ socket: HelperSocketID, _ group: Int, source: IPv4Address? = nil) -> JoinOutcome {
            kernel.join(socket: socket, membership: MembershipKey(interface: eth0, group: IPv4Address(239, 0, 0, UInt8(group)), source: source))
        }
        for group in 1...20 { #expect(join(first, group) == .joined) }
        #expect(join(first, 21) == .failed(.socketFull))
        #expect(join(second, 21) == .joined)
        #expect(join(first, 1) == .failed(.alreadyMember))
        #expect(join(second, 1, source: IPv4Address(198, 18, 0, 1)) == .joined)
        #expect(join(second, 1) == .failed(.other(errno: 22)))  // mode mismatch on one socket
        #expect(kernel.admits(interface: 0, group: .v4(IPv4Address(239, 0, 0, 21)), source: .v4(IPv4Address(1))))
        #expect(!kernel.admits(interface: 0, group: .v4(IPv4Address(239, 0, 0, 22)), source: .v4(IPv4Address(1))))
        #expect(kernel.admits(interface: 0, group: .v4(IPv4Address(224, 0, 0, 1)), source: .v4(IPv4Address(1))))
        try? kernel.closeHelperSocket(second)
        #expect(!kernel.admits(interface: 0, group: .v4(IPv4Address(239, 0, 0, 21)), source: .v4(IPv4Address(1))))
        #expect(kernel.joinedMemberships.count == 20)
    }

    /// The IPv6 limits measured on this kernel (docs/ipv6-linux-facts.md, section 1), from the
    /// model's option-memory accounting alone.
    @Test func ipv6MembershipsAreBoundByOptionMemoryAsMeasured() {
        func fill(sources: Int, distinctGroups: Bool) -> Int {
            var kernel = KernelModel(interfaces: InterfaceTable([eth0]), membershipLimit: 20)
            let socket = HelperSocketID(interface: eth0, family: .ipv6, ordinal: 0)
            try? kernel.openHelperSocket(socket)
            var joined = 0
            for group in 0..<5000 {
                for source in 0..<max(1, sources) {
                    let key = MembershipKey(interface: eth0, group: .v6(IPv6Address(high: 0xff3e << 48, low: UInt64(distinctGroups ? group : 0))),
                                            source: sources == 0 ? nil : .v6(IPv6Address(high: 0x2001_0db8 << 32, low: UInt64(source + 1))))
                    guard kernel.join(socket: socket, membership: key) == .joined else { return joined }
                    joined += 1
                }
            }
            return joined
        }
        #expect(fill(sources: 0, distinctGroups: true) == 2340, "any-source groups per socket")
        #expect(fill(sources: 1, distinctGroups: true) == 546, "one-source groups per socket")
        #expect(fill(sources: 64, distinctGroups: true) == 108 * 64 + 40, "(S,G) with 64 sources per group")
        #expect(fill(sources: 100, distinctGroups: false) == 64, "sources on one group: net.ipv6.mld_max_msf")
        #expect(SocketLimits.ipv6(optmemMax: KernelModel.optmemMax) == 546)
    }

    @Test func fanoutDeliversOneCopyAndSoloSocketsOneEach() {
        var sockets = PacketSockets(interfaceCount: 2)
        let opened = [sockets.open(.init(worker: 0, interface: 0, fanout: 7)), sockets.open(.init(worker: 1, interface: 0, fanout: 7))]
        #expect(opened == [true, true])
        #expect(sockets.copies(on: 0) == 1)
        let conflicting = sockets.open(.init(worker: 2, interface: 1, fanout: 7))
        #expect(!conflicting)  // EINVAL: the id is bound to another device
        let solo = sockets.open(.init(worker: 2, interface: 0, fanout: nil))
        #expect(solo)
        #expect(sockets.copies(on: 0) == 2)
        sockets.close(.init(worker: 0, interface: 0, fanout: 7))
        if case let .fanout(members) = sockets.receivers[0].last { #expect(members == [1]) } else { Issue.record("no fanout group") }
    }

    @Test func builtFramesHaveValidChecksums() {
        let frame = TrafficMaker.datagram(interface: 0, source: IPv4Address(198, 18, 1, 1), group: IPv4Address(239, 1, 1, 1),
                                          port: 5001, payload: Array("odd-length".utf8) + [7])
        frame.withUnsafeBytes { bytes in
            guard case let .datagram(datagram) = FrameParser.parse(bytes, link: .ethernet) else {
                Issue.record("core parser rejects a built frame"); return
            }
            #expect(datagram.ttl == 32 && datagram.payloadLength == 11)
            // UDP: pseudo-header + header + payload sums to 0xFFFF.
            var sum = 0
            for offset in stride(from: 26, to: 34, by: 2) { sum += Int(bytes[offset]) << 8 | Int(bytes[offset + 1]) }
            sum += 17 + (frame.count - 34)
            var offset = 34
            while offset < frame.count {
                sum += Int(bytes[offset]) << 8 | (offset + 1 < frame.count ? Int(bytes[offset + 1]) : 0)
                offset += 2
            }
            while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
            #expect(sum == 0xFFFF)
        }
        #expect(Array(frame[0..<6]) == [0x01, 0x00, 0x5E, 0x01, 0x01, 0x01])
    }

    @Test func referenceClassifierAgreesWithCoreOnMalformedKinds() {
        for kind in TrafficMaker.Malformation.allCases {
            let frame = TrafficMaker.malformed(kind, interface: 0, group: IPv4Address(239, 1, 1, 1), port: 5001, payload: [1, 2, 3, 4, 5])
            frame.withUnsafeBytes { bytes in
                let core: Bool
                if case .datagram = FrameParser.parse(bytes, link: .ethernet) { core = true } else { core = false }
                #expect(ReferenceClassifier.facts(bytes, link: .ethernet).forwardable == core, "\(kind)")
            }
        }
    }

    @Test func faultSpecRoundTripsAndRejectsNonsense() throws {
        let spec = try FaultSpec.parse("loss=0.01,join=0.25,flap=2,ctl_loss=0.1")
        #expect(try FaultSpec.parse(spec.description) == spec)
        #expect(spec.description == "loss=0.01,join=0.25,flap=2,ctl_loss=0.1")
        #expect(throws: SimError.self) { try FaultSpec.parse("loss=2") }
        #expect(throws: SimError.self) { try FaultSpec.parse("lose=0.1") }
        let swarm = FaultSpec.swarm(seed: 9)
        #expect(swarm == FaultSpec.swarm(seed: 9))
        #expect(try FaultSpec.parse(swarm.description) == swarm)
    }

    @Test func eventScriptRoundTripsAndNamesBadLines() throws {
        let text = """
            # comment
            {"at_ms": 500, "event": "rule_add", "rule": {"name": "cam2", "in": "eth0:239.1.1.2:5002", "out": ["eth1:239.10.1.2:6002"]}}
            {"at_ms": 800.25, "event": "rule_remove", "rule": "cam2"}
            {"at_ms": 900, "event": "iface_down", "iface": "eth0"}
            {"at_ms": 950, "event": "iface_up", "iface": "eth0"}
            {"at_ms": 1000, "event": "worker_crash", "worker": 1}
            {"at_ms": 1200, "event": "config_reload", "rules": [{"in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001:16"]}]}
            """
        let events = try EventScript.parse(text, origin: "ev.jsonl")
        #expect(events.count == 6)
        #expect(events[1].at == 800_250_000)
        #expect(try EventScript.parse(EventScript.serialize(events)) == events)
        do {
            _ = try EventScript.parse("{\"at_ms\": 1, \"event\": \"rule_add\", \"rule\": {\"in\": \"eth0:1.2.3.4:5\", \"out\": [\"eth1:239.1.1.1:1\"]}}", origin: "ev.jsonl")
            Issue.record("accepted a unicast input")
        } catch {
            #expect(error.description.hasPrefix("ev.jsonl:1"), "\(error)")
        }
        #expect(throws: SimError.self) { try EventScript.parse("{\"at_ms\": 1, \"event\": \"explode\"}") }
    }

    @Test func shrinkCutsAFailingCaseDown() throws {
        var simCase = FuzzCase.generate(seed: 3)
        simCase.options.driverBugs = [.ignoreFanout]
        simCase.options.workers = 3
        simCase.options.dispatch = .fanout
        guard let outcome = try Shrinker.shrink(simCase, maximumRuns: 400) else {
            Issue.record("the case does not fail"); return
        }
        #expect(outcome.shrunk.input.store.frames.count < simCase.input.store.frames.count)
        #expect(outcome.shrunk.input.store.frames.count <= 2)
        #expect(outcome.result.violations.contains { $0.invariant == outcome.invariant })
    }
}

@Suite struct SendQueueTests {
    /// A burst of large datagrams copied to eight outputs on one interface outruns the link:
    /// the socket's send buffer fills and sends fail with EAGAIN. The failures are counted as
    /// send errors, never transmitted, and the counters still add up.
    @Test func fullSendBufferFailsWithEagain() throws {
        let input = InterfaceName("in0")!, output = InterfaceName("out0")!
        let rule = RuleSpec(input: InputSpec(interface: input, group: IPv4Address(239, 1, 1, 1), port: 5000),
                            outputs: (0..<8).map { OutputSpec(interface: output, destination: IPv4Address(239, 9, 0, UInt8($0 + 1)), port: 6000) })
        var store = FrameStore()
        let frame = TrafficMaker.datagram(interface: 0, source: IPv4Address(198, 18, 1, 1), group: IPv4Address(239, 1, 1, 1),
                                          port: 5000, payload: [UInt8](repeating: 7, count: 1400))
        for index in 0..<2000 { store.append(time: UInt64(index) * 1_000, interface: input, link: .ethernet, bytes: frame) }
        var options = SimOptions()
        options.timing = .topspeed
        let result = try Simulation(input: SimInput(store: store, rules: [rule]), options: options).run()
        #expect(result.passed, "\(result.violations.prefix(3))")
        let outputs = result.report.rules[0].outputs
        let errors = outputs.reduce(0) { $0 + $1.sendErrors }
        let sent = outputs.reduce(0) { $0 + $1.transmitted }
        #expect(errors > 0)
        #expect(sent + errors == 16_000)
        #expect(result.report.egress["out0"]?.frames == Int(sent))
    }
}
