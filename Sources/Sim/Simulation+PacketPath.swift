import Foundation
import RelayCore

/// The packet path: kernel delivery to AF_PACKET sockets, forwarding decisions, the per-frame invariants.
extension Simulation {
    // MARK: - The packet path

    func newArrival() -> Int {
        arrivalRule.append(-1)
        arrivalMask.append(0)
        return arrivalRule.count - 1
    }

    func addFrame(bytes: UnsafeRawBufferPointer, interface: Int, link: LinkType) -> Int {
        let offset = arena.append(bytes)
        frameOffset.append(offset)
        frameLength.append(bytes.count)
        frameInterface.append(interface)
        frameLink.append(link)
        facts.append(ReferenceClassifier.facts(arena.buffer(offset, bytes.count), link: link))
        return frameOffset.count - 1
    }

    func ingressArrival(frame: Int, arrival: Int, faulted: Bool) throws(SimError) {
        var frame = frame
        if !faulted && injector.ingressActive {
            switch injector.ingressFate(frame: frame, length: frameLength[frame]) {
            case .deliver: break
            case .drop:
                faultCounts.ingressLost += 1
                return
            case let .duplicate(gap):
                faultCounts.ingressDuplicated += 1
                queue.push(.arrival(frame: Int32(frame), arrival: Int32(newArrival())), at: now + gap)
            case let .delay(amount, reorder):
                if reorder { faultCounts.ingressReordered += 1 } else { faultCounts.ingressDelayed += 1 }
                queue.push(.arrival(frame: Int32(frame), arrival: Int32(arrival)), at: now + amount)
                return
            case let .truncate(keep):
                faultCounts.truncated += 1
                let bytes = arena.buffer(frameOffset[frame], min(keep, frameLength[frame]))
                let copy = [UInt8](bytes)
                frame = copy.withUnsafeBytes { addFrame(bytes: $0, interface: frameInterface[frame], link: frameLink[frame]) }
            case let .corrupt(byte, mask):
                faultCounts.corrupted += 1
                var copy = [UInt8](arena.buffer(frameOffset[frame], frameLength[frame]))
                if byte < copy.count { copy[byte] ^= mask }
                frame = copy.withUnsafeBytes { addFrame(bytes: $0, interface: frameInterface[frame], link: frameLink[frame]) }
            }
        }
        if options.recordSteps { step("frame", frame) } else { stepCount &+= 1 }
        ingress.arrived += 1
        let interface = frameInterface[frame]
        let fx = facts[frame]
        if fx.forwardable && arrival < firstProbeArrival {
            let rule = oracle.current.match(interface: interface, group: fx.group, port: fx.port, source: fx.source)
            if rule >= 0 {
                let ref = Int(rule)
                matchedByRule[ref] &+= 1
                let base = oracle.registry.outputBase[ref]
                for o in 0..<registryOutputCounts[ref] { expectedByOutput[base + o] &+= 1 }
            }
        }
        guard kernel.up[interface] else {
            ingress.interfaceDown += 1
            return
        }
        guard kernel.admits(interface: interface, group: fx.gateGroup, source: fx.gateSource) else {
            ingress.notJoined += 1
            return
        }
        let receivers = packetSockets.receivers[interface]
        if receivers.isEmpty {
            ingress.noReader += 1
            return
        }
        for receiver in receivers {
            switch receiver {
            case let .solo(worker):
                try deliver(frame: frame, arrival: arrival, interface: interface, to: worker)
            case let .fanout(members):
                // fanout_demux_hash: reciprocal_scale(hash, num_members).
                let member = members[Int((UInt64(fx.flowHash) &* UInt64(members.count)) >> 32)]
                try deliver(frame: frame, arrival: arrival, interface: interface, to: member)
            }
        }
    }

    @inline(__always)
    func deliver(frame: Int, arrival: Int, interface: Int, to index: Int) throws(SimError) {
        ingress.copiesToWorkers += 1
        let slot = workers[index].slotOf[interface]
        workers[index].delivered &+= 1
        let bytes = arena.buffer(frameOffset[frame], frameLength[frame])
        switch workers[index].forwarder.decide(bytes, link: frameLink[frame], ingress: slot) {
        case let .drop(reason):
            workers[index].dropTally[reason.rawValue] &+= 1
        case let .forward(forwarding):
            let route = Int(forwarding.route.index)
            workers[index].routeTally[route] &+= 1
            if arrival >= firstProbeArrival { probeAccepted[workers[index].routeRef[route], default: 0] += 1 }
            try forward(forwarding, frame: frame, arrival: arrival, interface: interface, worker: index, bytes: bytes)
        }
    }

    func forward(_ forwarding: Forwarding, frame: Int, arrival: Int, interface: Int, worker index: Int,
                         bytes: UnsafeRawBufferPointer) throws(SimError) {
        let fx = facts[frame]
        forwardChecks &+= 1  // no_forward_without_rule and correct_destination, once per forward
        guard fx.forwardable else {
            violate(InvariantName.noForwardWithoutRule,
                    "worker \(index) forwarded frame \(frame) on \(interfaces.names[interface]), which is not a whole multicast UDP datagram")
            return
        }
        let epoch = workers[index].epoch
        let expected = epoch.match(interface: interface, group: fx.group, port: fx.port, source: fx.source)
        guard expected >= 0 else {
            violate(InvariantName.noForwardWithoutRule,
                    "worker \(index) (plan v\(workers[index].version)) forwarded \(fx.source) -> \(fx.group.endpointText):\(fx.port) on \(interfaces.names[interface]); no rule matches it")
            return
        }
        let ref = Int(expected)
        if forwarding.payload.baseAddress != bytes.baseAddress.map({ $0 + Int(fx.payloadOffset) })
            || forwarding.payload.count != Int(fx.payloadLength) {
            violate(InvariantName.correctDestination, "frame \(frame): payload is not the datagram's payload")
            return
        }
        let base = oracle.registry.outputBase[ref]
        let outputCount = registryOutputCounts[ref]
        var spec: RuleSpec { oracle.registry.specs[ref] }  // for messages only: copying it costs
        let batch = workers[index].forwarder.transmits(for: forwarding)
        var followAttempted: UInt64 = 0
        defer { checkFollowOpen(rule: ref, sent: followAttempted, frame: frame, worker: index) }
        for position in 0..<batch.count {
            let transmit = batch[position]
            let egressInterface = workers[index].egressInterface[transmit.egress]
            var o = position < outputCount ? position : -1
            if o >= 0 {
                let want = registryOutputs[base + o]
                if want.interface != egressInterface || want.destination != transmit.destination
                    || want.port != transmit.port || want.ttl != transmit.ttl { o = -1 }
            }
            if o < 0 {
                o = (0..<outputCount).first { candidate in
                    let want = registryOutputs[base + candidate]
                    return want.interface == egressInterface && want.destination == transmit.destination
                        && want.port == transmit.port && want.ttl == transmit.ttl
                } ?? -1
            }
            guard o >= 0 else {
                violate(InvariantName.correctDestination,
                        "frame \(frame) sent to \(interfaces.names[max(0, egressInterface)]):\(transmit.destination):\(transmit.port) ttl \(transmit.ttl), not an output of rule \(RuleID(deriving: spec.input))")
                continue
            }
            if registryFollows[base + o] {
                // The worker decided to send to a follow output: a listener must want it.
                if o < 64 { followAttempted |= 1 << UInt64(o) }
                count(InvariantName.followOutputClosed)
                if let problem = listenerOracle.closedViolation(interface: egressInterface, group: transmit.destination, now: now) {
                    violate(InvariantName.followOutputClosed,
                            "frame \(frame) sent to \(spec.outputs[o]) by worker \(index): \(problem)")
                }
            }
            // The send.
            var failure: Int32?
            if injector.sendActive, let errno = injector.sendFault() {
                faultCounts.sendsFailed += 1
                failure = errno
            } else if case let .failed(errno) = kernel.send(interface: egressInterface,
                                                            frameLength: EgressFrame.headerLength(for: transmit.destination.family) + transmit.payload.count, now: now) {
                failure = errno
            }
            if failure != nil {
                workers[index].forwarder.recordSendFailures(transmit.output)
                workers[index].sendFailTally[Int(transmit.output.index)] &+= 1
                continue
            }
            sendChecks &+= 1
            if arrivalRule[arrival] == -1 || arrivalRule[arrival] == Int32(ref) {
                arrivalRule[arrival] = Int32(ref)
                let bit: UInt64 = 1 << UInt64(o)
                if arrivalMask[arrival] & bit != 0 {
                    violate(InvariantName.noDuplicateForward,
                            "frame \(frame) (arrival \(arrival)) sent twice to \(spec.outputs[o]) (second copy by worker \(index))")
                    continue
                }
                arrivalMask[arrival] |= bit
            } else {
                let key = DuplicateKey(arrival: arrival, interface: egressInterface, destination: transmit.destination, port: transmit.port)
                let first = registryOutputs[oracle.registry.outputBase[Int(arrivalRule[arrival])]...]
                let clash = first.prefix(oracle.registry.specs[Int(arrivalRule[arrival])].outputs.count).enumerated().contains { k, w in
                    arrivalMask[arrival] & (1 << UInt64(k)) != 0 && w.interface == egressInterface
                        && w.destination == transmit.destination && w.port == transmit.port
                }
                if clash || !arrivalOverflow.insert(key).inserted {
                    violate(InvariantName.noDuplicateForward, "frame \(frame) (arrival \(arrival)) sent twice to \(spec.outputs[o])")
                    continue
                }
            }
            guard arrival < firstProbeArrival else { continue }
            transmittedByOutput[base + o] &+= 1
            if transmit.routed {
                try egress.recordRouted(interface: egressInterface, time: epochBase &+ now, headers: transmit.headers,
                                        payload: transmit.payload)
                continue
            }
            try egress.record(interface: egressInterface, time: epochBase &+ now, destination: transmit.destination,
                              port: transmit.port, ttl: transmit.ttl, sourcePort: transmit.sourcePort, payload: transmit.payload,
                              checksumCarry: transmit.checksumCarry)
        }
    }

    /// Every follow output of the rule that a listener wants now must have been sent to.
    @inline(__always)
    func checkFollowOpen(rule ref: Int, sent: UInt64, frame: Int, worker index: Int) {
        let base = oracle.registry.outputBase[ref]
        for o in 0..<min(registryOutputCounts[ref], 64) where registryFollows[base + o] && sent & (1 << UInt64(o)) == 0 {
            let want = registryOutputs[base + o]
            guard want.interface >= 0 else { continue }
            count(InvariantName.followOutputOpen)
            if let host = listenerOracle.mustOpen(interface: want.interface, group: want.destination,
                                                  interfaceUp: kernel.up[want.interface], now: now) {
                let address = segments.hosts[host].address
                violate(InvariantName.followOutputOpen,
                        "frame \(frame) accepted by worker \(index) was not sent to \(oracle.registry.specs[ref].outputs[o]), "
                        + "which host \(address) wants (its report reached the relay at "
                        + "\(Instant(nanoseconds: listenerOracle.groups[.init(interface: want.interface, group: want.destination)]?.wantReport[host] ?? 0)))")
            }
        }
    }

    // MARK: - Invariant bookkeeping

    @inline(__always)
    func count(_ invariant: String) {
        invariantChecks[invariant, default: 0] &+= 1
    }

    func violate(_ invariant: String, _ detail: String) {
        invariantViolations[invariant, default: 0] += 1
        if violations.count < 100 { violations.append(Violation(invariant: invariant, timeNanoseconds: now, detail: detail)) }
    }
}
