import Foundation
import RelayCore

/// The liveness phase: faults off, convergence, probes.
extension Simulation {
    // MARK: - Liveness

    func startLiveness() {
        livenessStarted = now
        livenessDeadline = now + options.livenessBound
        injector.enabled = false
        for index in faultDown.indices where faultDown[index] > 0 {
            faultDown[index] = 0
            updateInterface(index)
        }
        checkConvergence()
    }

    /// Converged: the kernel holds exactly the memberships the operator's rules need on the
    /// interfaces that are up, every worker is alive and runs exactly those rules, and every
    /// frame on a used input interface reaches exactly one socket.
    func convergenceGap() -> String? {
        let specs = oracle.currentSpecs
        let needed = Oracle.neededMemberships(specs) { kernel.up[interfaces.index(of: $0)!] }
        let joined = kernel.joinedMemberships
        if needed != joined {
            let missing = needed.subtracting(joined).sorted().prefix(3).map(\.description)
            let extra = joined.subtracting(needed).sorted().prefix(3).map(\.description)
            return "memberships differ from what the rules need: missing [\(missing.joined(separator: ", "))]"
                + " (\(needed.subtracting(joined).count) in all), extra [\(extra.joined(separator: ", "))]"
                + " (\(joined.subtracting(needed).count) in all)"
        }
        let wanted = Set(specs)
        for (index, worker) in workers.enumerated() {
            guard worker.alive else { return "worker \(index) is not running" }
            // Quiescent: the newest plan the supervisor sent is the one installed, so no plan
            // still in flight can change what the worker reads.
            if worker.version != latestPlanVersion || pendingPlans.values.contains(where: { $0.worker == index }) {
                return "worker \(index) runs plan v\(worker.version); the supervisor's latest is v\(latestPlanVersion)"
            }
            if worker.forwarder.gateVersion != latestGateVersion {
                return "worker \(index) holds listener gates v\(worker.forwarder.gateVersion); the supervisor's latest is v\(latestGateVersion)"
            }
            if Set(worker.forwarder.plan.rules.map(\.spec)) != wanted {
                return "worker \(index) runs plan v\(worker.version) with \(worker.forwarder.plan.rules.count) rules, not the \(specs.count) configured"
            }
        }
        let inputs = Set(specs.map(\.input.interface)).sorted()
        for name in inputs {
            let index = interfaces.index(of: name)!
            guard kernel.up[index] else { continue }
            let copies = packetSockets.copies(on: index)
            if copies != 1 { return "\(name): each frame reaches \(copies) sockets, not 1" }
        }
        return nil
    }

    func checkConvergence() {
        guard convergedAt == nil, let started = livenessStarted else { return }
        if let gap = convergenceGap() {
            livenessDetail = gap
            if now >= livenessDeadline {
                count(InvariantName.liveness)
                violate(InvariantName.liveness,
                        "not converged \(Double(options.livenessBound) / 1e6) ms after faults stopped: \(gap)")
                finished = true
                return
            }
            // Every 10 ms for the first second, then every 100 ms: a relay that has not
            // converged by then is waiting on backoff timers, and checks are not free.
            let interval = now - started < 1_000_000_000 ? Self.livenessCheckInterval : 10 * Self.livenessCheckInterval
            queue.push(.livenessCheck, at: min(now + interval, max(livenessDeadline, now)))
            return
        }
        step("converged", 0)
        convergedAt = now
        livenessDetail = nil
        sendProbes()
    }

    /// One synthetic datagram per rule whose input is up: each must come out on every output
    /// whose interface is up, exactly once.
    func sendProbes() {
        let specs = oracle.currentSpecs
        var at = now + 1_000
        firstProbeArrival = arrivalRule.count
        for (number, spec) in specs.enumerated() {
            guard let interface = interfaces.index(of: spec.input.interface), kernel.up[interface] else { continue }
            // A prefix input joins nothing, so a probe to it would stop at the kernel's filter;
            // its routing is checked datagram by datagram against the oracle instead.
            if spec.input.prefixLength != nil { continue }
            var source = spec.input.source ?? (spec.input.group.family == .ipv4
                ? .v4(IPv4Address(198, 18, 0, 2)) : .v6(IPv6Address(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)))
            if spec.input.source == nil {
                while specs.contains(where: { $0.input.interface == spec.input.interface && $0.input.group == spec.input.group
                    && $0.input.port == spec.input.port && $0.input.source == source }) {
                    source = source.successor
                }
            }
            let payload = Array("mcrelay-sim liveness probe \(number)".utf8)
            var fields = EgressFrame.Fields(sourceMAC: TrafficMaker.senderMAC(interface: interface, host: 0xAA), source: source,
                                            destination: spec.input.group, sourcePort: 40000, destinationPort: spec.input.port, ttl: 8)
            fields.dontFragment = false
            let bytes = EgressFrame.bytes(fields, payload: payload)
            let frame = bytes.withUnsafeBytes { addFrame(bytes: $0, interface: interface, link: .ethernet) }
            let arrival = newArrival()
            probes.append((arrival, oracle.intern(spec)))
            queue.push(.arrival(frame: Int32(frame), arrival: Int32(arrival)), at: at)
            at += 1_000
        }
        ingress.probes = probes.count
        syncRegistry()
        queue.push(.livenessFinish, at: at + 10_000_000)
    }

    func probeForwarded(_ probe: (arrival: Int, rule: Int)) -> Bool {
        let spec = oracle.registry.specs[probe.rule]
        var required: UInt64 = 0
        // Follow outputs are judged per frame against the listeners (`ListenerOracle`), probes too.
        for (o, output) in spec.outputs.enumerated() where !output.followsListeners && kernel.up[interfaces.index(of: output.interface)!] {
            required |= 1 << UInt64(o)
        }
        return arrivalRule[probe.arrival] == Int32(probe.rule) ? arrivalMask[probe.arrival] & required == required : required == 0
    }

    func finishLiveness() {
        count(InvariantName.liveness)
        for interface in interfaces.names.indices {
            for family in segments.relayFamilies[interface].sorted(by: { $0.rawValue < $1.rawValue }) {
                count(InvariantName.singleQuerier)
                if let problem = listenerOracle.querierMissing(interface: interface, family: family, now: now) {
                    violate(InvariantName.singleQuerier, "\(interfaces.names[interface]): \(problem)")
                }
            }
        }
        for probe in probes where !probeForwarded(probe) {
            let spec = oracle.registry.specs[probe.rule]
            violate(InvariantName.liveness, "after convergence, a probe for rule \(RuleID(deriving: spec.input)) (\(spec.input)) "
                + "was not forwarded to every output (\(spec.outputs.map(\.description).joined(separator: ", ")))")
        }
        // A soak's core lives on: the settle ends the window, and the next one is loaded.
        if options.continuous { windowDone = true } else { finished = true }
    }
}
