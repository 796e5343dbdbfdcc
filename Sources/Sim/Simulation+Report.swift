import Foundation
import RelayCore

/// The report of a run.
extension Simulation {
    // MARK: - Report

    func makeReport() -> SimReport {
        var invariantChecks = self.invariantChecks
        let registry = oracle.registry
        var rules: [SimReport.RuleEntry] = []
        for (ref, spec) in registry.specs.enumerated() {
            let base = registry.outputBase[ref]
            rules.append(SimReport.RuleEntry(
                id: RuleID(deriving: spec.input).description, name: spec.name, input: spec.input.description,
                matched: matchedByRule[ref], accepted: acceptedByRule[ref] &- (probeAccepted[ref] ?? 0),
                outputs: spec.outputs.enumerated().map { o, output in
                    SimReport.Output(output: output.description, expected: expectedByOutput[base + o],
                                     handedToDriver: handedByOutput[base + o] &- (probeAccepted[ref] ?? 0), transmitted: transmittedByOutput[base + o],
                                     sendErrors: sendErrorsByOutput[base + o])
                }))
        }
        var dropMap: [String: UInt64] = [:]
        for reason in DropReason.allCases { dropMap[reason.description] = drops[reason.rawValue] }
        invariantChecks[InvariantName.noForwardWithoutRule, default: 0] &+= forwardChecks
        invariantChecks[InvariantName.correctDestination, default: 0] &+= forwardChecks
        invariantChecks[InvariantName.noDuplicateForward, default: 0] &+= sendChecks
        let invariants = InvariantName.all.map { name in
            SimReport.Invariant(name: name, checked: invariantChecks[name] ?? 0, violations: invariantViolations[name] ?? 0,
                                first: violations.first { $0.invariant == name }?.description)
        }
        var egressMap: [String: SimReport.Egress] = [:]
        for index in egress.used {
            let port = egress.ports[index]
            egressMap[port.name.rawValue] = .init(frames: port.frames, bytes: port.bytes, hash: port.hash.hex)
        }
        var controlReport = controlStats
        controlReport.kernelRefusedOverLimit = kernel.refusedOverLimit
        controlReport.helperSocketsAtEnd = kernel.helperSockets.count
        let liveness = SimReport.Liveness(
            converged: convergedAt != nil,
            convergedAfterMs: convergedAt.map { Double($0 - (livenessStarted ?? $0)) / 1e6 },
            boundMs: Double(options.livenessBound) / 1e6,
            probesSent: probes.count, probesForwarded: probes.filter(probeForwarded).count,
            detail: convergedAt == nil ? (livenessDetail ?? "the run stopped before the liveness phase") : nil)
        return SimReport(
            result: violations.isEmpty ? "pass" : "fail",
            run: .init(seed: options.seed, faults: faultSpec.description, swarm: options.swarm,
                       timing: options.timing.rawValue, workers: options.workers, dispatch: options.dispatch.rawValue,
                       coreSocketLimit: options.coreSocketLimit, kernelMembershipLimit: options.kernelMembershipLimit,
                       simulatedNanoseconds: now, steps: stepCount),
            ingress: ingress, rules: rules, drops: dropMap, faultsInjected: faultCounts, invariants: invariants,
            liveness: liveness, control: controlReport, egress: egressMap,
            segments: segments.isEmpty ? nil : {
                var stats = segments.stats
                stats.hosts = segments.hosts.count
                stats.routers = segments.routers.count
                return stats
            }())
    }
}
