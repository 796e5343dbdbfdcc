/// The contents of bpf/mcrelay_xdp.c's maps for one worker's plan: what the XDP path forwards,
/// decided here from the same `WorkerPlan` the `Forwarder` installs, so the two cannot disagree
/// about rules. Each entry is the exact bytes of the C struct (host byte order, as BPF maps
/// hold them; ports and addresses in network order as in the packet).
///
/// A rule the XDP path cannot carry is left out with the reason, and so is every other rule of
/// its input (interface, group, port): a frame the XDP program does not match goes on to the
/// kernel and the packet path, which must then find the rule that RouteTable would have chosen.
public struct XDPTables: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var key: [UInt8]
        public var value: [UInt8]
    }

    /// `rules`: struct rule_key (40 bytes) -> struct rule_value (16 bytes).
    public private(set) var rules: [Entry] = []
    /// `outputs`: struct output_key (8 bytes) -> the output's `EgressFrame` template (80 bytes).
    public private(set) var outputs: [Entry] = []
    /// The devices of the `egress` devmap (ifindex), sorted.
    public private(set) var devices: [Int32] = []
    /// Rules left to the packet path, in plan order, with why.
    public private(set) var fallbacks: [(rule: RuleID, reason: String)] = []
    /// The plan index of each `rules` entry (same order).
    public private(set) var carried: [Int] = []

    public static func == (lhs: XDPTables, rhs: XDPTables) -> Bool {
        lhs.rules == rhs.rules && lhs.outputs == rhs.outputs && lhs.devices == rhs.devices
            && lhs.fallbacks.map(\.rule) == rhs.fallbacks.map(\.rule) && lhs.fallbacks.map(\.reason) == rhs.fallbacks.map(\.reason)
    }

    /// The longest payload the program carries (`MAX_PAYLOAD` in the C source): the bound of its
    /// loop that sums a payload whose received UDP checksum cannot be carried on (0 or an
    /// offload's partial sum; `EgressFrame.checksumCarry`).
    public static let maximumPayload = 2048
    /// The maps' sizes in the C source: rules (and rule counters, by rule index) and outputs.
    public static let mapRuleCapacity = 4096
    public static let mapOutputCapacity = 16384
    /// One plan fills at most half of each map: the daemon installs a new plan beside the old
    /// one (the other `generation`'s indices), switches the rule entries over, then removes the
    /// old outputs, so no frame ever finds a rule's index pointing at another rule's templates.
    public static let ruleCapacity = mapRuleCapacity / 2
    public static let outputCapacity = mapOutputCapacity / 2

    /// The index of rule `index` of a plan installed as `generation` (0 or 1).
    public static func ruleIndex(_ index: Int, generation: Int) -> UInt32 {
        UInt32(generation % 2 * ruleCapacity + index)
    }

    /// `generation` (0 or 1) picks the half of the index space the plan's rules use.
    /// `unavailableInputs`: input interfaces the program cannot run on (the driver refused
    /// the attach), with why; `unavailableOutputs`: devices that cannot take frames the
    /// program redirects (no ndo_xdp_xmit now), with why. Their rules stay on the packet path.
    public init(plan: WorkerPlan, facts: [InterfaceName: InterfaceFacts], generation: Int = 0,
                unavailableInputs: [InterfaceName: String] = [:], unavailableOutputs: [InterfaceName: String] = [:]) {
        let read = Set(plan.ingress.map(\.interface))
        var outputsSoFar = 0
        var reasons: [String?] = plan.rules.enumerated().map { index, rule in
            outputsSoFar += rule.outputs.count
            guard index < Self.ruleCapacity, outputsSoFar <= Self.outputCapacity else {
                return "beyond the XDP maps' \(Self.ruleCapacity) rules or \(Self.outputCapacity) outputs per plan"
            }
            if let why = unavailableInputs[rule.input.interface] { return "no XDP program on input \(rule.input.interface): \(why)" }
            if let output = rule.outputs.first(where: { unavailableOutputs[$0.interface] != nil }) {
                return "output \(output.interface) cannot take XDP redirects: \(unavailableOutputs[output.interface]!)"
            }
            return Self.refusal(rule, read: read, facts: facts)
        }
        // One refused rule of an input takes the others of that input with it (see above).
        struct InputKey: Hashable { var interface: InterfaceName; var group: IPAddress; var port: UInt16 }
        var refusedInputs: [InputKey: RuleID] = [:]
        for (index, rule) in plan.rules.enumerated() where reasons[index] != nil {
            let key = InputKey(interface: rule.input.interface, group: rule.input.group, port: rule.input.port)
            if refusedInputs[key] == nil { refusedInputs[key] = rule.id }
        }
        for (index, rule) in plan.rules.enumerated() where reasons[index] == nil {
            if let other = refusedInputs[InputKey(interface: rule.input.interface, group: rule.input.group, port: rule.input.port)] {
                reasons[index] = "shares its input with \(other), which the XDP path cannot carry"
            }
        }

        // RouteTable's choice: the first source-specific rule per source, the last any-source one.
        var ruleIndex: [[UInt8]: Int] = [:]
        var keyOrder: [[UInt8]] = []
        var devices = Set<Int32>()
        for (index, rule) in plan.rules.enumerated() {
            if let reason = reasons[index] {
                fallbacks.append((rule.id, reason))
                continue
            }
            let key = Self.ruleKey(rule.input, ifindex: facts[rule.input.interface]!.index)
            if ruleIndex[key] == nil { keyOrder.append(key) } else if rule.input.source != nil { continue }
            ruleIndex[key] = index
        }
        for key in keyOrder {
            let index = ruleIndex[key]!
            let rule = plan.rules[index]
            var maximum = Self.maximumPayload
            for output in rule.outputs {
                let outputFacts = facts[output.interface]!
                maximum = min(maximum, outputFacts.payloadLimit(for: output.destination.family))
                devices.insert(outputFacts.index)
                var template = [UInt8](repeating: 0, count: EgressFrame.templateBytes)
                template.withUnsafeMutableBytes {
                    EgressFrame.writeTemplate($0.baseAddress!, sourceMAC: outputFacts.mac!,
                                              source: outputFacts.source(for: output.destination)!,
                                              destination: output.destination, destinationPort: output.port, ttl: output.ttl)
                }
                outputs.append(Entry(key: Self.words(Self.ruleIndex(index, generation: generation), UInt32(bitPattern: outputFacts.index)),
                                     value: template))
            }
            let single = rule.outputs.count == 1 ? UInt32(bitPattern: facts[rule.outputs[0].interface]!.index) : 0
            rules.append(Entry(key: key, value: Self.words(Self.ruleIndex(index, generation: generation), UInt32(maximum), single, 0)))
            carried.append(index)
        }
        self.devices = devices.sorted()
    }

    /// Why the XDP path cannot carry a rule on its own, or nil.
    static func refusal(_ rule: Rule, read: Set<InterfaceName>, facts: [InterfaceName: InterfaceFacts]) -> String? {
        guard read.contains(rule.input.interface) else { return "input \(rule.input.interface) is not read by this worker" }
        // A proxy's route keeps the datagram's source and TTL - 1 and is gated per (group,
        // source): the program re-originates from templates and has no gates.
        if rule.outputs.contains(where: \.routed) {
            return "a proxy's route (routed outputs keep the sender's address; the XDP path re-originates and has no gates)"
        }
        // The program looks up exact (group, port) keys; a miss passes the frame to the kernel,
        // where the packet path's fallback to any-port and range routes sees it.
        guard rule.input.prefixLength == nil, rule.input.port != 0 else {
            return "a range or any-port input (the XDP program matches one group and port)"
        }
        guard let input = facts[rule.input.interface], input.hardwareType == InterfaceFacts.ethernet, input.index > 0 else {
            return "input \(rule.input.interface) is not a known Ethernet interface"
        }
        var seen = Set<InterfaceName>()
        for output in rule.outputs {
            guard output.destination.isMulticast else { return "output \(output.destination) is not a multicast group" }
            // The program has no listener gates: it would send while nobody listens.
            guard !output.followsListeners else { return "output \(output) follows listeners (the XDP path has no gates)" }
            guard output.interface != rule.input.interface else {
                return "output on its input interface \(output.interface) (the broadcast excludes the input)"
            }
            guard seen.insert(output.interface).inserted else {
                return "two outputs on \(output.interface) (one devmap pass sends one copy per device)"
            }
            guard let facts = facts[output.interface], facts.hardwareType == InterfaceFacts.ethernet, facts.index > 0,
                  facts.mac != nil else { return "output \(output.interface) is not a known Ethernet interface" }
            guard facts.source(for: output.destination) != nil else {
                return "output \(output.interface) has no \(output.destination.family) address"
            }
        }
        return nil
    }

    /// struct rule_key for a rule's input on the device `ifindex`.
    public static func ruleKey(_ input: InputSpec, ifindex: Int32) -> [UInt8] {
        var key = words(UInt32(bitPattern: ifindex))
        key += [UInt8(input.port >> 8), UInt8(input.port & 0xFF)]
        key += [input.group.family == .ipv4 ? 4 : 6, input.source != nil ? 1 : 0]
        key += addressBytes(input.group)
        key += input.source.map(addressBytes) ?? [UInt8](repeating: 0, count: 16)
        return key
    }

    /// Network order, IPv4 in the first four of 16 bytes.
    static func addressBytes(_ address: IPAddress) -> [UInt8] {
        switch address {
        case let .v4(v4):
            return (0..<4).map { UInt8(truncatingIfNeeded: v4.value >> (24 - 8 * $0)) } + [UInt8](repeating: 0, count: 12)
        case let .v6(v6):
            return (0..<8).map { UInt8(truncatingIfNeeded: v6.high >> (56 - 8 * $0)) }
                + (0..<8).map { UInt8(truncatingIfNeeded: v6.low >> (56 - 8 * $0)) }
        }
    }

    /// 32-bit words in host byte order.
    public static func words(_ values: UInt32...) -> [UInt8] {
        var bytes: [UInt8] = []
        for value in values { withUnsafeBytes(of: value) { bytes += $0 } }
        return bytes
    }
}
