/// Index of a rule within the current plan of one Forwarder.
public struct RouteHandle: Hashable, Sendable {
    public let index: Int32
}

/// Index of one output of one rule within the current plan of one Forwarder.
public struct OutputHandle: Hashable, Sendable {
    public let index: Int32

    @usableFromInline init(index: Int32) { self.index = index }
}

/// One copy to send: everything the driver needs, all trivially copyable, with the payload
/// as a view into the received frame.
public struct Transmit: @unchecked Sendable {
    public let output: OutputHandle
    /// Index into the plan's `egress` interfaces.
    public let egress: Int
    public let destination: IPAddress
    public let port: UInt16
    public let ttl: UInt8
    /// The original datagram's source port, which the relay's frames keep (see `EgressFrame`).
    public let sourcePort: UInt16
    /// The part of the UDP checksum every copy of the datagram shares, carried on from the
    /// received checksum (`EgressFrame.checksumCarry`); `EgressFrame.writeHeader` adds the
    /// output's part. Not used by routed transmits. (Beside `sourcePort`: it fits the padding
    /// before `payload`, so a transmit is no larger.)
    public let checksumCarry: UInt16
    public let payload: UnsafeRawBufferPointer
    /// A proxy's routed output (`OutputSpec.routed`): the frame is the datagram itself, built
    /// by `EgressFrame.writeRoutedHeader` from `headers`; `destination`, `port` and `ttl` are
    /// then the datagram's group, port and TTL less one.
    public let routed: Bool
    /// Routed only: the received IP header (with options or extension headers) and UDP header,
    /// a view into the received frame like the payload (empty otherwise). The payload of a
    /// routed transmit runs to the end of the IP datagram (normally the UDP payload exactly).
    public let headers: UnsafeRawBufferPointer

    @usableFromInline
    init(output: OutputHandle, egress: Int, destination: IPAddress, port: UInt16, ttl: UInt8, sourcePort: UInt16,
         payload: UnsafeRawBufferPointer, checksumCarry: UInt16 = 0, routed: Bool = false,
         headers: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) {
        self.output = output
        self.egress = egress
        self.destination = destination
        self.port = port
        self.ttl = ttl
        self.sourcePort = sourcePort
        self.checksumCarry = checksumCarry
        self.payload = payload
        self.routed = routed
        self.headers = headers
    }
}

/// A datagram the Forwarder accepted for a route.
public struct Forwarding: @unchecked Sendable {
    public let route: RouteHandle
    /// Re-originating routes only: the part of the UDP checksum every copy shares
    /// (`Transmit.checksumCarry`), taken once per datagram. (Beside the 4-byte route: it fits
    /// the padding before the datagram.)
    public let checksumCarry: UInt16
    public let datagram: UDPDatagram
    public let payload: UnsafeRawBufferPointer
    /// Routed routes only: bit i set when output i of the route sends this datagram (its
    /// listeners want its group and source); the gate is per datagram there, not per output.
    public let routedMask: UInt64
    /// Routed routes only: the IP and UDP headers as received (see `Transmit.headers`).
    public let headers: UnsafeRawBufferPointer
}

public enum Decision: @unchecked Sendable {
    case forward(Forwarding)
    case drop(DropReason)
}

/// The per-worker data plane: frame in, decision out, transmits from the decision.
/// `decide` neither allocates nor copies the payload; counters are updated in place.
public struct Forwarder: Sendable {
    // Read by `TransmitBatch`'s inlinable subscript in the driver's module (per transmit).
    @usableFromInline
    struct EgressBinding: Sendable {
        @usableFromInline var egress: UInt16
        @usableFromInline var destination: IPAddress
        @usableFromInline var port: UInt16
        @usableFromInline var ttl: UInt8
        /// A proxy's downstream: the transmit is the datagram, routed (see `Transmit.routed`).
        @usableFromInline var routed: Bool
    }

    /// A routed output's gate: (its egress slot, the datagram's group), so the per-datagram
    /// lookup hashes two small values, not an interface name.
    struct RoutedGateKey: Hashable {
        var egress: UInt16
        var group: IPAddress
    }

    /// Outputs a routed route may have: its per-datagram gate result is one bit each.
    public static let maximumRoutedOutputs = 64

    /// An output's identity across plans.
    struct OutputKey: Hashable {
        var rule: RuleID
        var output: OutputSpec
    }

    struct Route: Sendable {
        var outputStart: Int32
        var outputCount: Int32
        /// Outputs whose gate is open (or that follow nothing): the first `openCount` entries
        /// of `openOutputs[outputStart...]`.
        var openCount: Int32
        /// Some output follows listeners: decide counts per output against `open`.
        var gated: Bool
        /// A proxy's route: its outputs are routed, gated per datagram (`routedGates`).
        var routed: Bool
    }

    public private(set) var plan: WorkerPlan
    public private(set) var egress: [InterfaceName] = []
    private var table4 = RouteTable<RouteKey4, UInt32>(routes: [])
    private var table6 = RouteTable<RouteKey6, IPv6Address>(routes: [])
    /// Range inputs, consulted only when the exact tables miss (see `RangeRoutes`).
    private var ranges = RangeRoutes()
    private var routes: ContiguousArray<Route> = []
    private var bindings: ContiguousArray<EgressBinding> = []
    private var accepted: ContiguousArray<TrafficCounter> = []
    private var outputCounters: ContiguousArray<OutputCounter> = []
    /// Per binding: its gate (nil: a static output), whether it may send now, and per route
    /// the open bindings' indices, so `decide` and `transmits` read a bit and a list that
    /// only `install` and `applyGates` write.
    private var gateKeys: ContiguousArray<GateKey?> = []
    private var open: ContiguousArray<Bool> = []
    private var openOutputs: ContiguousArray<Int32> = []
    public private(set) var gateFilters: [GateKey: GateFilter] = [:]
    public private(set) var gateVersion: UInt64 = 0
    /// `gateFilters` of the gates on this worker's egress interfaces, keyed for routed outputs.
    private var routedGates: [RoutedGateKey: GateFilter] = [:]
    /// The source address a follow output's frames carry, per binding, as the driver said
    /// at the last `applyGates`.
    private var frameSources: ContiguousArray<IPAddress?> = []
    public private(set) var drops = DropCounters()

    public init(plan: WorkerPlan) {
        self.plan = .idle(plan.worker)
        install(plan)
    }

    /// Switches to a new plan. Counters belong to what they count, not to positions: a rule
    /// present in both plans (same id: same input) keeps its accepted count, and each of its
    /// outputs that is in both (same interface, address, port and TTL) keeps its own counts
    /// wherever it now stands; a new output starts at zero; a removed rule's or output's counts
    /// are gone. (A reload that replaces outputs [A, B] with [C, D] shows C and D at zero.)
    public mutating func install(_ plan: WorkerPlan) {
        var previousAccepted: [RuleID: TrafficCounter] = [:]
        var previousOutputs: [OutputKey: OutputCounter] = [:]
        for (index, rule) in self.plan.rules.enumerated() {
            let route = routes[index]
            previousAccepted[rule.id] = accepted[index]
            for (position, output) in rule.outputs.enumerated() {
                previousOutputs[OutputKey(rule: rule.id, output: output)] = outputCounters[Int(route.outputStart) + position]
            }
        }
        let ingressSlots = Dictionary(uniqueKeysWithValues: plan.ingress.enumerated().map { ($1.interface, $0) })
        let egress = plan.egress
        let egressSlots = Dictionary(uniqueKeysWithValues: egress.enumerated().map { ($1, $0) })

        var keyed4: [(key: RouteKey4, source: UInt32?, route: Int32)] = []
        var keyed6: [(key: RouteKey6, source: IPv6Address?, route: Int32)] = []
        var routes: ContiguousArray<Route> = []
        var bindings: ContiguousArray<EgressBinding> = []
        var accepted: ContiguousArray<TrafficCounter> = []
        var outputCounters: ContiguousArray<OutputCounter> = []
        var ranges = RangeRoutes()
        for rule in plan.rules {
            // A rule for an interface this worker does not read can never match; give it an
            // impossible ingress slot rather than dropping it, so route indices match rules.
            let slot = ingressSlots[rule.input.interface] ?? 0xFFFF
            let route = Int32(routes.count)
            if rule.input.prefixLength != nil {
                ranges.append(rule.input, ingress: slot, route: route)
            } else {
            // An exact group with any port sits in the exact table under port 0.
            if rule.input.port == 0 { ranges.noteAnyPort(rule.input.family) }
            switch rule.input.group {
            case let .v4(group):
                keyed4.append((RouteKey4(ingress: slot, group: group, port: rule.input.port), rule.input.source?.v4?.value, route))
            case let .v6(group):
                keyed6.append((RouteKey6(ingress: slot, group: group, port: rule.input.port), rule.input.source?.v6, route))
            }
            }
            // A routed route is all routed (ControlPlane derives them so); its gate bits must fit a mask.
            let routed = rule.outputs.contains { $0.routed }
            precondition(!routed || rule.outputs.count <= Self.maximumRoutedOutputs, "too many routed outputs")
            routes.append(Route(outputStart: Int32(bindings.count), outputCount: Int32(rule.outputs.count),
                                openCount: Int32(rule.outputs.count),
                                gated: !routed && rule.outputs.contains { $0.followsListeners }, routed: routed))
            for output in rule.outputs {
                bindings.append(EgressBinding(
                    egress: UInt16(egressSlots[output.interface]!), destination: output.destination,
                    port: output.port, ttl: output.ttl, routed: output.routed))
            }
            accepted.append(previousAccepted[rule.id] ?? TrafficCounter())
            for output in rule.outputs {
                outputCounters.append(previousOutputs[OutputKey(rule: rule.id, output: output)] ?? OutputCounter())
            }
        }
        self.plan = plan
        self.egress = egress
        self.table4 = RouteTable(routes: keyed4)
        self.table6 = RouteTable(routes: keyed6)
        ranges.seal()
        self.ranges = ranges
        self.routes = routes
        self.bindings = bindings
        self.accepted = accepted
        self.outputCounters = outputCounters
        gateKeys = ContiguousArray(plan.rules.flatMap { rule in
            rule.outputs.map { $0.followsListeners ? GateKey(interface: $0.interface, group: $0.destination) : nil }
        })
        open = ContiguousArray(repeating: true, count: bindings.count)
        openOutputs = ContiguousArray(0..<Int32(bindings.count))
        frameSources = ContiguousArray(repeating: nil, count: bindings.count)
        // A plan's gates are at least as new as the worker's only when its version says so:
        // a plan resent from before the last delta must not reopen what the delta closed.
        if plan.gateVersion >= gateVersion {
            gateFilters = Dictionary(uniqueKeysWithValues: plan.gates.map { ($0.key, $0.filter) })
            gateVersion = plan.gateVersion
        }
        reevaluateGates()
    }

    /// What the worker does with a gate delta.
    public enum GateOutcome: Equatable, Sendable {
        /// Applied (or already had): the worker holds gates up to `version`.
        case current(version: UInt64)
        /// The delta starts after what the worker holds: it needs the changes since `version`.
        case behind(version: UInt64)
    }

    /// Applies a listener gate delta. `source` tells the address the frames of an output
    /// will carry (nil: not known yet); follow outputs open where their gate admits it.
    public mutating func applyGates(_ delta: GateDelta, source: (OutputSpec) -> IPAddress? = { _ in nil }) -> GateOutcome {
        guard delta.base <= gateVersion else { return .behind(version: gateVersion) }
        guard delta.version > gateVersion else { return .current(version: gateVersion) }
        for entry in delta.entries { gateFilters[entry.key] = entry.filter.isClosed ? nil : entry.filter }
        gateVersion = delta.version
        refreshFrameSources(source)  // re-evaluates every gate
        return .current(version: gateVersion)
    }

    /// Re-reads the frames' source addresses (after the driver learned interface addresses).
    public mutating func refreshFrameSources(_ source: (OutputSpec) -> IPAddress?) {
        for (index, rule) in plan.rules.enumerated() {
            let start = Int(routes[index].outputStart)
            for (position, output) in rule.outputs.enumerated() where output.followsListeners {
                frameSources[start + position] = source(output)
            }
        }
        reevaluateGates()
    }

    private mutating func reevaluateGates() {
        var routedGates: [RoutedGateKey: GateFilter] = [:]
        if routes.contains(where: \.routed) {
            let slots = Dictionary(uniqueKeysWithValues: egress.enumerated().map { ($1, UInt16($0)) })
            for (key, filter) in gateFilters {
                if let slot = slots[key.interface] { routedGates[RoutedGateKey(egress: slot, group: key.group)] = filter }
            }
        }
        self.routedGates = routedGates
        for index in routes.indices where routes[index].gated {
            let start = Int(routes[index].outputStart)
            var count: Int32 = 0
            for binding in start..<start + Int(routes[index].outputCount) {
                let isOpen = gateKeys[binding].map { (gateFilters[$0] ?? .closed).admits(frameSources[binding]) } ?? true
                open[binding] = isOpen
                if isOpen {
                    openOutputs[start + Int(count)] = Int32(binding)
                    count += 1
                }
            }
            routes[index].openCount = count
        }
    }

    /// Whether the output at `position` of the rule at `route` may send now.
    public func isOpen(route: Int, output position: Int) -> Bool {
        open[Int(routes[route].outputStart) + position]
    }

    /// Index of an input interface in the plan (what `decide` takes as `ingress`).
    public func ingressSlot(of interface: InterfaceName) -> Int? {
        plan.ingress.firstIndex { $0.interface == interface }
    }

    /// Classifies one frame that arrived on ingress slot `ingress` and counts the outcome.
    @inline(__always)
    public mutating func decide(_ frame: UnsafeRawBufferPointer, link: LinkType, ingress: Int) -> Decision {
        switch FrameParser.parse(frame, link: link) {
        case let .dropped(reason):
            drops.record(reason)
            return .drop(reason)
        case let .datagram(datagram):
            var route: Int32
            switch (datagram.destination, datagram.source) {
            case let (.v4(group), .v4(source)):
                route = table4.route(for: RouteKey4(ingress: ingress, group: group, port: datagram.destinationPort),
                                     source: source.value)
                // Exact (group, port) first; only a miss pays for any-port and prefix routes.
                if route < 0, ranges.hasAnyPort4 {
                    route = table4.route(for: RouteKey4(ingress: ingress, group: group, port: 0), source: source.value)
                }
                if route < 0, !ranges.isEmpty4 {
                    route = ranges.route(ingress: ingress, group: group, port: datagram.destinationPort, source: source)
                }
            case let (.v6(group), .v6(source)):
                route = table6.route(for: RouteKey6(ingress: ingress, group: group, port: datagram.destinationPort),
                                     source: source)
                if route < 0, ranges.hasAnyPort6 {
                    route = table6.route(for: RouteKey6(ingress: ingress, group: group, port: 0), source: source)
                }
                if route < 0, !ranges.isEmpty6 {
                    route = ranges.route(ingress: ingress, group: group, port: datagram.destinationPort, source: source)
                }
            default:
                route = -1  // the parser never mixes families
            }
            guard route >= 0 else {
                drops.record(.noMatchingRule)
                return .drop(.noMatchingRule)
            }
            let length = UInt64(datagram.payloadLength)
            let index = Int(route)
            let routeInfo = routes[index]
            let range = Int(routeInfo.outputStart)..<Int(routeInfo.outputStart + routeInfo.outputCount)
            if routeInfo.routed {
                return decideRouted(frame, datagram: datagram, route: route, range: range)
            }
            accepted[index].packets &+= 1
            accepted[index].bytes &+= length
            if routeInfo.gated {
                let open = self.open
                outputCounters.withUnsafeMutableBufferPointer { counters in
                    for output in range {
                        if open[output] {
                            counters[output].packets &+= 1
                            counters[output].bytes &+= length
                        } else {
                            counters[output].suppressed &+= 1
                        }
                    }
                }
            } else {
                // One uniqueness and bounds check for the rule's outputs, not one per output.
                outputCounters.withUnsafeMutableBufferPointer { counters in
                    for output in range {
                        counters[output].packets &+= 1
                        counters[output].bytes &+= length
                    }
                }
            }
            let payload = UnsafeRawBufferPointer(rebasing: frame[datagram.payloadOffset..<datagram.payloadOffset + datagram.payloadLength])
            // Once per datagram, not per copy: with a received checksum it reads no payload.
            return .forward(Forwarding(route: RouteHandle(index: route),
                                       checksumCarry: EgressFrame.checksumCarry(frame: frame, datagram: datagram),
                                       datagram: datagram, payload: payload,
                                       routedMask: 0, headers: UnsafeRawBufferPointer(start: nil, count: 0)))
        }
    }

    /// A proxy's route, as a router: a datagram that would leave with TTL 0 is dropped
    /// (`ttlExceeded`); otherwise each downstream sends it iff its listeners want (this group,
    /// this source) now: one dictionary lookup per output, no allocation.
    @inline(__always)
    private mutating func decideRouted(_ frame: UnsafeRawBufferPointer, datagram: UDPDatagram, route: Int32,
                                       range: Range<Int>) -> Decision {
        guard datagram.ttl > 1 else {
            drops.record(.ttlExceeded)
            return .drop(.ttlExceeded)
        }
        let index = Int(route)
        let length = UInt64(datagram.payloadLength)
        accepted[index].packets &+= 1
        accepted[index].bytes &+= length
        var mask: UInt64 = 0
        let gates = routedGates
        let bindings = self.bindings
        outputCounters.withUnsafeMutableBufferPointer { counters in
            for output in range {
                let key = RoutedGateKey(egress: bindings[output].egress, group: datagram.destination)
                if let filter = gates[key], filter.admits(datagram.source) {
                    mask |= 1 << UInt64(output - range.lowerBound)
                    counters[output].packets &+= 1
                    counters[output].bytes &+= length
                } else {
                    counters[output].suppressed &+= 1
                }
            }
        }
        // Routed, the whole IP datagram goes on: up to its IP length, which may hold bytes past
        // the UDP length (the parser allows that; a router forwards them).
        let ip = datagram.ipOffset
        let ipEnd = frame[ip] >> 4 == 6 ? ip + 40 + (Int(frame[ip + 4]) << 8 | Int(frame[ip + 5]))
            : ip + (Int(frame[ip + 2]) << 8 | Int(frame[ip + 3]))
        let end = max(datagram.payloadOffset + datagram.payloadLength, min(ipEnd, frame.count))
        let payload = UnsafeRawBufferPointer(rebasing: frame[datagram.payloadOffset..<end])
        let headers = UnsafeRawBufferPointer(rebasing: frame[ip..<datagram.payloadOffset])
        return .forward(Forwarding(route: RouteHandle(index: route), checksumCarry: 0, datagram: datagram, payload: payload,
                                   routedMask: mask, headers: headers))
    }

    /// The copies to send for an accepted datagram, one per open output of its rule.
    @inline(__always)
    public func transmits(for forwarding: Forwarding) -> TransmitBatch {
        let route = routes[Int(forwarding.route.index)]
        if route.routed {
            return TransmitBatch(
                bindings: bindings, order: openOutputs, start: Int(route.outputStart),
                count: forwarding.routedMask.nonzeroBitCount, sourcePort: forwarding.datagram.sourcePort,
                payload: forwarding.payload, routedMask: forwarding.routedMask, datagram: forwarding.datagram,
                headers: forwarding.headers)
        }
        return TransmitBatch(
            bindings: bindings, order: openOutputs, start: Int(route.outputStart), count: Int(route.openCount),
            sourcePort: forwarding.datagram.sourcePort, payload: forwarding.payload, checksumCarry: forwarding.checksumCarry)
    }

    /// The driver reports sends that failed (EAGAIN, ENOBUFS, ...), so losses are visible.
    public mutating func recordSendFailures(_ output: OutputHandle, count: UInt64 = 1) {
        guard outputCounters.indices.contains(Int(output.index)) else { return }
        outputCounters[Int(output.index)].sendErrors &+= count
    }

    /// The rule and output index an output handle refers to.
    public func locate(_ output: OutputHandle) -> (rule: Rule, outputIndex: Int)? {
        for (index, route) in routes.enumerated()
        where output.index >= route.outputStart && output.index < route.outputStart + route.outputCount {
            return (plan.rules[index], Int(output.index - route.outputStart))
        }
        return nil
    }

    public func statistics() -> ForwardingStatistics {
        var rules: [RuleStatistics] = []
        for (index, rule) in plan.rules.enumerated() {
            let route = routes[index]
            let range = Int(route.outputStart)..<Int(route.outputStart + route.outputCount)
            var statistics = RuleStatistics(rule: rule, accepted: accepted[index], outputs: Array(outputCounters[range]))
            statistics.open = Array(open[range])
            rules.append(statistics)
        }
        return ForwardingStatistics(rules: rules, drops: drops)
    }
}

/// The transmits of one forwarding decision, as a collection that reads the precomputed
/// output bindings in place: iterating it allocates nothing.
///
/// Inlinable so a driver's per-transmit loop (another module) compiles to plain loads rather
/// than a call per transmit: with fan-out 8 that call was a tenth of the decision's cost.
public struct TransmitBatch: RandomAccessCollection, @unchecked Sendable {
    @usableFromInline let bindings: ContiguousArray<Forwarder.EgressBinding>
    /// Binding indices of the route's open outputs, from `start`.
    @usableFromInline let order: ContiguousArray<Int32>
    @usableFromInline let start: Int
    public let count: Int
    @usableFromInline let sourcePort: UInt16
    @usableFromInline let checksumCarry: UInt16
    @usableFromInline let payload: UnsafeRawBufferPointer
    /// Routed routes: the outputs that send (bit i: output `start + i`); 0 otherwise.
    @usableFromInline let routedMask: UInt64
    @usableFromInline let group: IPAddress
    @usableFromInline let port: UInt16
    @usableFromInline let ttl: UInt8
    @usableFromInline let headers: UnsafeRawBufferPointer

    init(bindings: ContiguousArray<Forwarder.EgressBinding>, order: ContiguousArray<Int32>, start: Int, count: Int,
         sourcePort: UInt16, payload: UnsafeRawBufferPointer, checksumCarry: UInt16 = 0, routedMask: UInt64 = 0,
         datagram: UDPDatagram? = nil, headers: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) {
        self.bindings = bindings
        self.order = order
        self.start = start
        self.count = count
        self.sourcePort = sourcePort
        self.payload = payload
        self.checksumCarry = checksumCarry
        self.routedMask = routedMask
        group = datagram?.destination ?? .v4(IPv4Address(0))
        port = datagram?.destinationPort ?? 0
        ttl = datagram.map { $0.ttl &- 1 } ?? 0
        self.headers = headers
    }

    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { count }

    @inlinable
    public subscript(position: Int) -> Transmit {
        precondition(position >= 0 && position < count, "transmit index out of range")
        if routedMask != 0 {
            // The position-th set bit: clear the lower ones (fan-out is small).
            var mask = routedMask
            for _ in 0..<position { mask &= mask &- 1 }
            let index = start + mask.trailingZeroBitCount
            return Transmit(
                output: OutputHandle(index: Int32(index)), egress: Int(bindings[index].egress), destination: group,
                port: port, ttl: ttl, sourcePort: sourcePort, payload: payload, routed: true, headers: headers)
        }
        let index = Int(order[start + position])
        let binding = bindings[index]
        return Transmit(
            output: OutputHandle(index: Int32(index)), egress: Int(binding.egress),
            destination: binding.destination, port: binding.port, ttl: binding.ttl, sourcePort: sourcePort, payload: payload,
            checksumCarry: checksumCarry)
    }
}
