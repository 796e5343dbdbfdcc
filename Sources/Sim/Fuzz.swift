import Foundation
import RelayCore

/// Frames for generated traces: valid datagrams and the malformed kinds real captures hold.
public enum TrafficMaker {
    public enum Malformation: CaseIterable, Sendable {
        case badChecksum, truncated, fragment, notUDP, ipv6, vlanTagged, unicast, ipOptions, badUDPLength, runt
    }

    /// A sender's frame: DF off and a counting identification, as many senders send (the
    /// relay's own frames differ: see `EgressFrame`).
    public static func datagram(interface: Int, source: IPv4Address, group: IPv4Address, port: UInt16,
                                payload: [UInt8], sourcePort: UInt16 = 40000, ttl: UInt8 = 32, id: UInt16 = 0,
                                vlan: UInt16? = nil) -> [UInt8] {
        datagram(interface: interface, source: .v4(source), group: .v4(group), port: port, payload: payload,
                 sourcePort: sourcePort, ttl: ttl, id: id, vlan: vlan)
    }

    /// `source` and `group` of one family (IPv6: no extension headers, hop limit `ttl`).
    public static func datagram(interface: Int, source: IPAddress, group: IPAddress, port: UInt16,
                                payload: [UInt8], sourcePort: UInt16 = 40000, ttl: UInt8 = 32, id: UInt16 = 0,
                                vlan: UInt16? = nil) -> [UInt8] {
        var fields = EgressFrame.Fields(sourceMAC: senderMAC(interface: interface, host: 0x10), source: source, destination: group,
                                        sourcePort: sourcePort, destinationPort: port, ttl: ttl)
        fields.identification = id
        fields.dontFragment = false
        fields.vlan = vlan
        return EgressFrame.bytes(fields, payload: payload)
    }

    /// A locally administered MAC (02:6d:63:HOST:...) naming a simulated host by interface.
    public static func senderMAC(interface: Int, host: UInt8) -> MACAddress {
        MACAddress(0x02, 0x6D, 0x63, host, UInt8(truncatingIfNeeded: interface >> 8), UInt8(truncatingIfNeeded: interface))
    }

    /// A frame of the given malformed kind, built from a valid one.
    public static func malformed(_ kind: Malformation, interface: Int, group: IPv4Address, port: UInt16,
                                 payload: [UInt8]) -> [UInt8] {
        let source = IPv4Address(198, 18, 1, 1)
        var frame = datagram(interface: interface, source: source, group: group, port: port, payload: payload)
        let ip = 14
        func refreshChecksum(_ frame: inout [UInt8], ihl: Int = 20) {
            frame[ip + 10] = 0; frame[ip + 11] = 0
            let sum = frame.withUnsafeBytes { FrameParser.ipv4HeaderChecksum(UnsafeRawBufferPointer(rebasing: $0[ip..<ip + ihl])) }
            frame[ip + 10] = UInt8(sum >> 8); frame[ip + 11] = UInt8(truncatingIfNeeded: sum)
        }
        switch kind {
        case .badChecksum:
            frame[ip + 11] ^= 0x5A
        case .truncated:
            frame.removeLast(min(frame.count - 20, 8 + payload.count / 2 + 1))
        case .fragment:
            frame[ip + 6] = 0x20  // more fragments
            refreshChecksum(&frame)
        case .notUDP:
            frame[ip + 9] = 6
            refreshChecksum(&frame)
        case .ipv6:
            frame[12] = 0x86; frame[13] = 0xDD
        case .vlanTagged:
            frame = datagram(interface: interface, source: source, group: group, port: port, payload: payload, vlan: 100)
        case .unicast:
            frame = datagram(interface: interface, source: source, group: IPv4Address(198, 18, 9, 9), port: port, payload: payload)
        case .ipOptions:
            // A valid datagram whose IPv4 header carries 4 bytes of options (IHL 6): forwardable.
            var bytes = Array(frame[0..<(ip + 20)]) + [1, 1, 1, 0] + Array(frame[(ip + 20)...])
            bytes[ip] = 0x46
            let total = (Int(bytes[ip + 2]) << 8 | Int(bytes[ip + 3])) + 4
            bytes[ip + 2] = UInt8(total >> 8); bytes[ip + 3] = UInt8(truncatingIfNeeded: total)
            refreshChecksum(&bytes, ihl: 24)
            // The UDP checksum covers only the pseudo-header and UDP part, which did not change.
            frame = bytes
        case .badUDPLength:
            frame[ip + 20 + 4] = 0xFF; frame[ip + 20 + 5] = 0xFF
        case .runt:
            frame = Array(frame.prefix(10))
        }
        return frame
    }
}

/// Random cases for `sim fuzz`: rules, traffic, events and (swarm) faults from one seed.
public enum FuzzCase {
    public static let inputs = ["in0", "in1"].map { InterfaceName($0)! }
    public static let outputs = ["out0", "out1"].map { InterfaceName($0)! }

    public static func generate(seed: UInt64, scale: Int = 1) -> SimCase {
        var rng = SimRandom.stream(seed: seed, label: "fuzz-case")
        let interfaces = InterfaceTable(inputs + outputs)
        let groups = (0..<6).map { IPv4Address(239, 1, 1, UInt8(1 + $0)) }
        let ports: [UInt16] = [5000, 5001, 5002]
        let sources = [IPv4Address(198, 18, 1, 1), IPv4Address(198, 18, 1, 2)]

        var ruleNumber = 0
        func randomRule() -> RuleSpec {
            ruleNumber += 1
            let input = InputSpec(
                interface: inputs[rng.below(inputs.count)], group: groups[rng.below(groups.count)],
                port: ports[rng.below(ports.count)], source: rng.chance(0.25) ? sources[rng.below(sources.count)] : nil)
            var outs: [OutputSpec] = []
            for _ in 0..<(1 + rng.below(3)) {
                let destination = rng.chance(0.1)
                    ? IPv4Address(198, 18, 2, UInt8(1 + rng.below(9)))
                    : IPv4Address(239, 10, UInt8(rng.below(4)), UInt8(1 + rng.below(9)))
                outs.append(OutputSpec(interface: outputs[rng.below(outputs.count)], destination: destination,
                                       port: UInt16(6000 + rng.below(50)), ttl: UInt8(1 + rng.below(64))))
            }
            return RuleSpec(name: "r\(ruleNumber)", input: input, outputs: outs)
        }
        func validSet(_ candidates: [RuleSpec]) -> [RuleSpec] {
            var book = RuleBook()
            var kept: [RuleSpec] = []
            for spec in candidates where (try? book.add(spec)) != nil { kept.append(spec) }
            return kept
        }

        var rules = validSet((0..<(1 + rng.below(5))).map { _ in randomRule() })
        if rng.chance(0.15) {
            // Many groups on one interface: past one helper socket's worth ("the 21st group").
            for group in 0..<(15 + rng.below(35)) {
                ruleNumber += 1
                rules.append(RuleSpec(
                    name: "r\(ruleNumber)",
                    input: InputSpec(interface: inputs[0], group: IPv4Address(239, 3, UInt8(group / 200), UInt8(1 + group % 200)), port: 5000),
                    outputs: [OutputSpec(interface: outputs[rng.below(outputs.count)], destination: IPv4Address(239, 30, 0, UInt8(1 + group)),
                                         port: 6000, ttl: 8)]))
            }
            rules = validSet(rules)
        }
        var known = rules

        // Traffic: strictly increasing timestamps (so per-interface files merge back in order).
        var store = FrameStore()
        store.epoch = 1_700_000_000_000_000_000
        var time: UInt64 = 0
        let frameCount = (10 + rng.below(150)) * scale
        for index in 0..<frameCount {
            if index > 0 { time += UInt64(10_000 + rng.below(5_000_000)) }
            let interfaceIndex = rng.below(inputs.count)
            let payload = (0..<rng.below(120)).map { UInt8(truncatingIfNeeded: $0 &+ index) }
            let roll = rng.unit()
            let bytes: [UInt8]
            if roll < 0.7, !known.isEmpty {
                let rule = known[rng.below(known.count)]
                let source = rule.input.source ?? .v4(sources[rng.below(sources.count)])
                let iface = interfaces.index(of: rule.input.interface)!
                bytes = TrafficMaker.datagram(interface: iface, source: source, group: rule.input.group,
                                              port: rule.input.port, payload: payload, id: UInt16(truncatingIfNeeded: index))
                store.append(time: time, interface: rule.input.interface, link: .ethernet, bytes: bytes)
                continue
            } else if roll < 0.85 {
                bytes = TrafficMaker.datagram(interface: interfaceIndex, source: sources[rng.below(2)],
                                              group: groups[rng.below(groups.count)], port: ports[rng.below(ports.count)] + 100,
                                              payload: payload)
            } else {
                let kinds = TrafficMaker.Malformation.allCases
                bytes = TrafficMaker.malformed(kinds[rng.below(kinds.count)], interface: interfaceIndex,
                                               group: groups[rng.below(groups.count)], port: ports[rng.below(ports.count)],
                                               payload: payload)
            }
            store.append(time: time, interface: inputs[interfaceIndex], link: .ethernet, bytes: bytes)
        }

        // Control-plane events spread over the traffic.
        var events: [ScriptedEvent] = []
        let span = max(time, 1_000_000)
        var current = rules
        for _ in 0..<rng.below(9) {
            let at = UInt64(rng.below(Int(span / 1_000))) * 1_000
            switch rng.below(6) {
            case 0:
                let spec = randomRule()
                if validSet(current + [spec]).count == current.count + 1 { current.append(spec); known.append(spec) }
                events.append(ScriptedEvent(at: at, kind: .ruleAdd(spec)))
            case 1:
                if !current.isEmpty, case let victim = current[rng.below(current.count)] {
                    events.append(ScriptedEvent(at: at, kind: .ruleRemove(victim.name ?? "")))
                }
            case 2:
                let interface = (inputs + outputs)[rng.below(4)]
                events.append(ScriptedEvent(at: at, kind: .interfaceDown(interface)))
                events.append(ScriptedEvent(at: at + UInt64(1 + rng.below(300)) * 1_000_000, kind: .interfaceUp(interface)))
            case 3:
                events.append(ScriptedEvent(at: at, kind: .workerCrash(rng.below(4))))
            default:
                let kept = current.filter { _ in rng.chance(0.7) }
                let reload = validSet(kept + [randomRule()])
                known.append(contentsOf: reload)
                events.append(ScriptedEvent(at: at, kind: .configReload(reload)))
            }
        }
        events = events.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element)

        var options = SimOptions()
        options.seed = seed
        options.swarm = true
        options.workers = 1 + rng.below(4)
        if rng.chance(0.2) { options.timing = .topspeed }
        options.dispatch = rng.chance(0.8) ? .fanout : .partition
        // Sometimes a host with igmp_max_memberships lowered (and the relay told so), so a
        // handful of groups already needs a pool of helper sockets.
        if rng.chance(0.3) {
            options.kernelMembershipLimit = 1 + rng.below(4)
            options.coreSocketLimit = options.kernelMembershipLimit
        }
        var simCase = SimCase(input: SimInput(store: store, rules: rules, events: events), options: options)
        addSegment(to: &simCase, seed: seed)
        return simCase
    }
}

/// `sim fuzz`: one generated case per seed, stopping at the first failure.
public enum Fuzzer {
    public struct Outcome: Sendable {
        public var runs: Int
        public var failure: (seed: UInt64, result: SimResult, simCase: SimCase)?
    }

    public static func run(seed: UInt64, runs: Int, scale: Int = 1, driverBugs: Set<DriverBug> = [],
                           progress: (UInt64, SimResult) -> Void = { _, _ in }) throws(SimError) -> Outcome {
        for index in 0..<runs {
            let caseSeed = seed &+ UInt64(index)
            var simCase = FuzzCase.generate(seed: caseSeed, scale: scale)
            simCase.options.driverBugs = driverBugs
            let result = try simCase.run()
            progress(caseSeed, result)
            if !result.passed { return Outcome(runs: index + 1, failure: (caseSeed, result, simCase)) }
        }
        return Outcome(runs: runs, failure: nil)
    }
}
