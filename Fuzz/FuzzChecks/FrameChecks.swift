import RelayCore

/// Fuzz target `frame`: one frame, a link type, an ingress interface and a small rule table,
/// all drawn from the input, run through `FrameParser.parse` and `Forwarder.decide` /
/// `transmits` and compared with `ReferenceModel`.
///
/// Input layout (big-endian; missing bytes read as zero):
///
///     byte 0       bits 0-1 link type (ethernet, SLL, SLL2, raw IPv4), bits 2-7 ingress (mod 3)
///     byte 1       number of rules (mod 8)
///     per rule     11 bytes: flags, group (4), port (2), source (4)
///                  flags bits 0-1 input interface in0..in3 (in3 is not read by this worker),
///                        bits 2-3 number of outputs - 1, bit 4 source-specific,
///                        bit 5 IPv6 (group ff3e::GROUP, source 2001:db8::SOURCE from the same
///                        32 bits), bit 6 IPv6 outputs, bit 7 a range input: the group's
///                        prefix of length 4 + (SOURCE & 31) (IPv4, at most 31) or
///                        96 + (SOURCE & 31) (IPv6), its host bits cleared; no source then
///                  port 0 is any port (`*`)
///     the rest     the frame
///
/// Rules the RuleBook refuses (not multicast, port 0, duplicate input, ...) are left out,
/// exactly as a config load would refuse them.
public enum FrameFuzzInput {
    public static let links: [LinkType] = [.ethernet, .linuxCooked, .linuxCooked2, .rawIP]
    public static let ingressInterfaces = ["in0", "in1", "in2"].map { InterfaceName($0)! }
    static let allInputInterfaces = ingressInterfaces + [InterfaceName("in3")!]

    public struct RuleSeed: Sendable {
        public var interface: Int
        public var group: IPv4Address
        public var port: UInt16
        public var source: IPv4Address?
        public var outputs: Int
        /// The group and source are ff3e::GROUP and 2001:db8::SOURCE (their 32 bits).
        public var ipv6 = false
        public var ipv6Outputs = false
        /// A range input: the prefix length code (0-31, see the layout); `source` is then unused.
        public var rangeCode: UInt8?

        public init(interface: Int, group: IPv4Address, port: UInt16, source: IPv4Address? = nil, outputs: Int = 1,
                    ipv6: Bool = false, ipv6Outputs: Bool = false, rangeCode: UInt8? = nil) {
            self.rangeCode = rangeCode
            self.interface = interface
            self.group = group
            self.port = port
            self.source = source
            self.outputs = outputs
            self.ipv6 = ipv6
            self.ipv6Outputs = ipv6Outputs
        }

        /// The IPv6 group or source a rule seed's 32 bits stand for.
        public static func ipv6Group(_ bits: UInt32) -> IPv6Address { IPv6Address(high: 0xFF3E << 48, low: UInt64(bits)) }
        public static func ipv6Source(_ bits: UInt32) -> IPv6Address { IPv6Address(high: 0x2001_0DB8 << 32, low: UInt64(bits)) }
    }

    /// Builds an input in the layout above (used to write seed corpora).
    public static func encode(link: LinkType, ingress: Int, rules: [RuleSeed], frame: [UInt8]) -> [UInt8] {
        let control = UInt8(links.firstIndex(of: link)!) | UInt8(ingress % 3) << 2
        var bytes: [UInt8] = [control, UInt8(rules.count)]
        for rule in rules {
            let flags = UInt8(rule.interface & 3) | UInt8((rule.outputs - 1) & 3) << 2 | (rule.source == nil ? 0 : 0x10)
                | (rule.ipv6 ? 0x20 : 0) | (rule.ipv6Outputs ? 0x40 : 0) | (rule.rangeCode == nil ? 0 : 0x80)
            bytes.append(flags)
            bytes += be32(rule.group.value) + [UInt8(rule.port >> 8), UInt8(rule.port & 0xFF)]
            bytes += be32(rule.rangeCode.map(UInt32.init) ?? rule.source?.value ?? 0)
        }
        return bytes + frame
    }

    static func be32(_ value: UInt32) -> [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) }
    }

    /// The outputs of the rule at `position`: distinct, valid, on three egress interfaces,
    /// one of them unicast, so transmits can be checked field by field.
    static func outputs(position: Int, count: Int, ipv6: Bool = false) -> [OutputSpec] {
        (0..<count).map { (index: Int) -> OutputSpec in
            let interface = InterfaceName("out\(index % 3)")!
            let unicast: IPAddress = ipv6 ? .v6(IPv6Address(0x2001, 0xdb8, 0, 0, 0, 0, 0, UInt16(position + 1)))
                : .v4(IPv4Address(198, 18, 0, UInt8(position + 1)))
            let group: IPAddress = ipv6 ? .v6(IPv6Address(0xff3e, 0, 0, 0, 0, 0x100, UInt16(position), UInt16(index)))
                : .v4(IPv4Address(239, 100, UInt8(position), UInt8(index)))
            let ttl = UInt8(1 + index * 16)
            return OutputSpec(interface: interface, destination: index == 3 ? unicast : group,
                              port: UInt16(6000 + index), ttl: ttl)
        }
    }
}

/// What a `frame` input came to, so tests can see the seeds reach every outcome.
public enum FrameVerdict: Hashable, Sendable {
    case forwarded(outputs: Int)
    case dropped(DropReason)
}

/// A `frame` input decoded: what `checkFrame` runs, and what the XDP differential test
/// (Tests/XDPTests) runs through the BPF program.
public struct FrameFuzzCase {
    public var link: LinkType
    public var ingress: Int
    public var rules: [Rule]
    public var frame: [UInt8]

    public init(_ input: UnsafeRawBufferPointer) {
        var reader = ByteReader(input)
        let control = reader.u8()
        link = FrameFuzzInput.links[Int(control & 3)]
        ingress = Int(control >> 2) % FrameFuzzInput.ingressInterfaces.count
        let ruleCount = Int(reader.u8() & 7)
        var book = RuleBook()
        for position in 0..<ruleCount {
            let flags = reader.u8()
            let groupBits = reader.u32()
            let port = reader.u16()
            let sourceBits = reader.u32()
            let ipv6 = flags & 0x20 != 0
            let group: IPAddress = ipv6 ? .v6(FrameFuzzInput.RuleSeed.ipv6Group(groupBits)) : .v4(IPv4Address(groupBits))
            let source: IPAddress = ipv6 ? .v6(FrameFuzzInput.RuleSeed.ipv6Source(sourceBits)) : .v4(IPv4Address(sourceBits))
            var input = InputSpec(
                interface: FrameFuzzInput.allInputInterfaces[Int(flags & 3)], group: group, port: port,
                source: flags & 0x10 != 0 ? source : nil)
            if flags & 0x80 != 0 {
                let length = UInt8(ipv6 ? 96 + (sourceBits & 31) : min(4 + (sourceBits & 31), 31))
                input = InputSpec(interface: input.interface, group: GroupRange.truncated(group, to: length), port: port,
                                  prefixLength: length)
            }
            let outputs = FrameFuzzInput.outputs(position: position, count: Int(flags >> 2 & 3) + 1, ipv6: flags & 0x40 != 0)
            _ = try? book.add(RuleSpec(input: input, outputs: outputs))
        }
        rules = Array(book.rules.values)
        frame = Array(reader.rest)
    }

    /// The plan `checkFrame` gives its Forwarder: every ingress interface read, these rules.
    public var plan: WorkerPlan {
        let ingressAssignments = FrameFuzzInput.ingressInterfaces.map { IngressAssignment(interface: $0, fanoutGroup: nil) }
        return WorkerPlan(worker: WorkerID(0), version: 1, ingress: ingressAssignments, rules: rules)
    }
}

/// Checks one `frame` fuzz input. Traps on a violated property.
@discardableResult
public func checkFrame(_ input: UnsafeRawBufferPointer) -> FrameVerdict {
    let decoded = FrameFuzzCase(input)
    return decoded.frame.withUnsafeBytes { frame in
        withExactCopy(of: frame) { frame in
            checkParse(frame, link: decoded.link)
            return checkDecision(frame, link: decoded.link, ingress: decoded.ingress, rules: decoded.rules)
        }
    }
}

/// Properties of `FrameParser.parse` alone, for any frame (also used on pcap records).
public func checkParse(_ frame: UnsafeRawBufferPointer, link: LinkType) {
    let outcome = FrameParser.parse(frame, link: link)
    require(FrameParser.parse(frame, link: link) == outcome, "parse is deterministic")
    let expected = ReferenceModel.parse(Array(frame), link: link)
    require(ReferenceModel.Outcome(outcome) == expected, "parse(\(link)) = \(outcome), reference model says \(expected)")
    guard case let .datagram(datagram) = outcome else { return }
    checkRouted(frame, link: link, datagram)

    // Every field lies inside the buffer and says what the bytes there say.
    let ip = datagram.ipOffset
    func be16(_ at: Int) -> Int { Int(frame[at]) << 8 | Int(frame[at + 1]) }
    func be32(_ at: Int) -> UInt32 { UInt32(be16(at)) << 16 | UInt32(be16(at + 2)) }
    let end: Int
    require(datagram.destination.isMulticast, "only multicast is accepted")
    require(datagram.source.family == datagram.destination.family, "one family")
    if case let .v6(destination) = datagram.destination {
        require(ip >= 0 && frame[ip] >> 4 == 6, "IPv6 header at \(ip)")
        end = ip + 40 + be16(ip + 4)
        require(end <= frame.count, "datagram inside the frame")
        let udp = datagram.payloadOffset - 8
        require(udp >= ip + 40 && be16(udp + 4) == end - udp, "UDP fills the IPv6 payload")
        require(destination == IPv6Address(bytes: Array(frame[(ip + 24)..<(ip + 40)])), "destination")
        require(datagram.source == .v6(IPv6Address(bytes: Array(frame[(ip + 8)..<(ip + 24)]))), "source")
        require(Int(datagram.destinationPort) == be16(udp + 2) && Int(datagram.sourcePort) == be16(udp), "ports")
        require(datagram.ttl == frame[ip + 7], "hop limit")
        require(datagram.payloadLength == end - udp - 8, "payload length is the UDP length minus 8")
    } else {
        let headerLength = Int(frame[ip] & 0x0F) * 4
        let udp = ip + headerLength
        require(ip >= 0 && headerLength >= 20, "IPv4 header at \(ip), \(headerLength) bytes")
        require(datagram.payloadOffset == udp + 8, "payload starts right after the UDP header")
        require(datagram.payloadLength >= 0 && datagram.payloadOffset + datagram.payloadLength <= frame.count,
                "payload \(datagram.payloadOffset)+\(datagram.payloadLength) inside a \(frame.count)-byte frame")
        let totalLength = be16(ip + 2)
        require(ip + totalLength <= frame.count && udp + 8 + datagram.payloadLength <= ip + totalLength,
                "datagram inside the IPv4 total length")
        require(be16(udp + 4) == datagram.payloadLength + 8, "payload length is the UDP length minus 8")
        require(datagram.destination == .v4(IPv4Address(be32(ip + 16))), "destination")
        require(datagram.source == .v4(IPv4Address(be32(ip + 12))), "source")
        require(Int(datagram.destinationPort) == be16(udp + 2) && Int(datagram.sourcePort) == be16(udp), "ports")
        require(datagram.ttl == frame[ip + 8], "ttl")
        end = ip + totalLength
    }

    // Bytes after the IP datagram (Ethernet padding) change nothing; cutting the datagram
    // short by one byte makes it truncated.
    let head = UnsafeRawBufferPointer(rebasing: frame[..<end])
    withExactCopy(of: head) { exact in
        require(FrameParser.parse(exact, link: link) == outcome, "trailing bytes after the datagram are ignored")
    }
    var padded = Array(head)
    padded += [0xA5, 0, 0xFF, 0x45, 0x08, 0x00, 0x11]
    padded.withUnsafeBytes { withExactCopy(of: $0) { exact in
        require(FrameParser.parse(exact, link: link) == outcome, "padding after the datagram is ignored")
    } }
    withExactCopy(of: UnsafeRawBufferPointer(rebasing: frame[..<(end - 1)])) { short in
        require(FrameParser.parse(short, link: link) == .dropped(.truncated), "one byte short is truncated")
    }
}

/// `Forwarder.decide` and `transmits` against the reference model of the rule table.
func checkDecision(_ frame: UnsafeRawBufferPointer, link: LinkType, ingress: Int, rules: [Rule]) -> FrameVerdict {
    let ingressAssignments = FrameFuzzInput.ingressInterfaces.map { IngressAssignment(interface: $0, fanoutGroup: nil) }
    let plan = WorkerPlan(worker: WorkerID(0), version: 1, ingress: ingressAssignments, rules: rules)
    var forwarder = Forwarder(plan: plan)
    let interface = FrameFuzzInput.ingressInterfaces[ingress]
    require(forwarder.ingressSlot(of: interface) == ingress, "ingress slot of \(interface)")

    let decision = forwarder.decide(frame, link: link, ingress: ingress)
    let expectedParse = ReferenceModel.parse(Array(frame), link: link)
    switch (expectedParse, decision) {
    case let (.dropped(expected), .drop(reason)):
        require(reason == expected, "dropped as \(reason), model says \(expected)")
        require(forwarder.drops[reason] == 1 && forwarder.drops.total == 1, "one drop counted under \(reason)")
    case let (.dropped(expected), .forward):
        fuzzFailure("forwarded a frame the model drops as \(expected)")
    case let (.datagram(datagram), .drop(reason)):
        let match = ReferenceModel.rule(for: datagram, on: interface, in: rules)
        require(match == nil, "dropped as \(reason); model routes it to \(match?.description ?? "")")
        require(reason == .noMatchingRule,
                "dropped as \(reason); model routes it to \(match.map(\.description) ?? "no rule")")
        require(forwarder.drops[.noMatchingRule] == 1 && forwarder.drops.total == 1, "one no-rule drop counted")
    case let (.datagram(datagram), .forward(forwarding)):
        guard let rule = ReferenceModel.rule(for: datagram, on: interface, in: rules) else {
            fuzzFailure("forwarded to route \(forwarding.route.index); the model has no rule for it")
        }
        let index = Int(forwarding.route.index)
        require(rules.indices.contains(index) && rules[index] == rule,
                "route \(index) chosen; model says \(rule)")
        require(ReferenceModel.Datagram(forwarding.datagram) == datagram, "forwarded datagram is the parsed one")
        require(forwarding.payload.baseAddress == frame.baseAddress! + datagram.payloadOffset
                    && forwarding.payload.count == datagram.payloadLength, "payload is a view of the frame")
        checkTransmits(forwarder, forwarding, rule: rule, frame: frame)
        checkCounters(forwarder, rule: rule, payloadLength: datagram.payloadLength)
    }

    // Reinstalling the same plan keeps every counter.
    let before = forwarder.statistics()
    forwarder.install(plan)
    require(forwarder.statistics() == before, "reinstalling the same plan keeps the counters")

    switch decision {
    case let .drop(reason): return .dropped(reason)
    case let .forward(forwarding): return .forwarded(outputs: forwarder.transmits(for: forwarding).count)
    }
}

func checkTransmits(_ forwarder: Forwarder, _ forwarding: Forwarding, rule: Rule, frame: UnsafeRawBufferPointer) {
    let batch = forwarder.transmits(for: forwarding)
    require(batch.count == rule.outputs.count, "\(batch.count) transmits for \(rule.outputs.count) outputs")
    for (position, output) in rule.outputs.enumerated() {
        let transmit = batch[position]
        require(forwarder.egress.indices.contains(transmit.egress)
                    && forwarder.egress[transmit.egress] == output.interface, "transmit \(position) egress")
        require(transmit.destination == output.destination && transmit.port == output.port
                    && transmit.ttl == output.ttl, "transmit \(position) is output \(output)")
        require(transmit.payload.baseAddress == forwarding.payload.baseAddress
                    && transmit.payload.count == forwarding.payload.count, "transmit \(position) payload")
        guard let located = forwarder.locate(transmit.output) else { fuzzFailure("output handle not found") }
        require(located.rule == rule && located.outputIndex == position, "output handle locates its output")
    }
}

func checkCounters(_ forwarder: Forwarder, rule: Rule, payloadLength: Int) {
    let statistics = forwarder.statistics()
    require(statistics.drops.total == 0, "a forwarded frame counts no drop")
    for entry in statistics.rules {
        let hit = entry.rule == rule
        require(entry.accepted == TrafficCounter(packets: hit ? 1 : 0, bytes: hit ? UInt64(payloadLength) : 0),
                "accepted counter of \(entry.rule.id)")
        for output in entry.outputs {
            require(output == OutputCounter(packets: hit ? 1 : 0, bytes: hit ? UInt64(payloadLength) : 0),
                    "output counter of \(entry.rule.id)")
        }
    }
}

/// A proxy's route over every group (224.0.0.0/4, ff00::/8) with one downstream whose listeners
/// want the datagram's group: the routed frame of any datagram the parser accepts is that IP
/// datagram again, TTL / hop limit one less (IPv4 header checksum valid: the parser checks it),
/// everything else as received except a UDP checksum the relay completed (which then verifies);
/// a datagram with TTL 1 or 0 is dropped as ttl_exceeded.
func checkRouted(_ frame: UnsafeRawBufferPointer, link: LinkType, _ datagram: UDPDatagram) {
    let up = InterfaceName("up0")!, down = InterfaceName("down0")!
    let proxy = ProxyConfiguration(upstream: up, downstream: [down], groups: [
        GroupPrefix(base: .v4(IPv4Address(224, 0, 0, 0)), length: 4), GroupPrefix(base: .v6(IPv6Address(high: 0xFF00 << 48, low: 0)), length: 8)])
    var forwarder = Forwarder(plan: WorkerPlan(
        worker: WorkerID(0), version: 1, ingress: [IngressAssignment(interface: up, fanoutGroup: nil)],
        rules: Proxies.routes(for: [proxy], besides: []), gateVersion: 1,
        gates: [GateEntry(key: GateKey(interface: down, group: datagram.destination), filter: .anySource)]))
    switch forwarder.decide(frame, link: link, ingress: 0) {
    case let .drop(reason):
        require(datagram.ttl <= 1 && reason == .ttlExceeded, "a routable datagram dropped as \(reason)")
    case let .forward(forwarding):
        require(datagram.ttl > 1, "a datagram with TTL \(datagram.ttl) routed")
        let transmits = Array(forwarder.transmits(for: forwarding))
        require(transmits.count == 1 && transmits[0].routed, "one routed transmit")
        let input = Array(frame[datagram.ipOffset..<(datagram.payloadOffset + transmits[0].payload.count)])
        guard transmits[0].headers.count <= EgressFrame.maximumRoutedHeaderBytes - 14 else { return }
        let out = EgressFrame.routedBytes(sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), headers: Array(transmits[0].headers),
                                          payload: Array(transmits[0].payload))
        out.withUnsafeBytes { bytes in
            guard case let .datagram(routed) = FrameParser.parse(bytes, link: .ethernet) else {
                fuzzFailure("a routed frame does not parse: \(FrameParser.parse(bytes, link: .ethernet))")
            }
            require(routed.source == datagram.source && routed.destination == datagram.destination
                    && routed.sourcePort == datagram.sourcePort && routed.destinationPort == datagram.destinationPort
                    && routed.payloadLength == datagram.payloadLength && routed.ttl == datagram.ttl - 1,
                    "the routed frame parses to the datagram with TTL - 1")
        }
        require(out.count == 14 + input.count, "one IP datagram per frame, nothing added")
        let v6 = input[0] >> 4 == 6
        let udp = datagram.payloadOffset - 8 - datagram.ipOffset
        var differences = zip(input, out[14...]).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
        differences.removeAll { $0 == (v6 ? 7 : 8) || (!v6 && ($0 == 10 || $0 == 11)) }
        if !differences.isEmpty {
            require(differences.allSatisfy { $0 == udp + 6 || $0 == udp + 7 }, "only TTL, IP checksum, UDP checksum change: \(differences)")
        }
    }
}
