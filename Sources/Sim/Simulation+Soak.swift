import Foundation
import RelayCore

/// What one soak window found (`Simulation.runWindow()`).
public struct SoakWindowResult: Sendable {
    /// Every violation so far (a soak stops at the first).
    public var violations: [Violation]
    /// State sizes sampled during the window, then once after its settle.
    public var samples: [StateSizes]
    public var liveness: SimReport.Liveness
    /// Counters that do not add up, checked over every rule the simulator still tracks.
    public var countersProblem: String?
    public var frames: Int
    public var faults: Int
    /// Simulated time when the window's settle ended.
    public var endNanoseconds: UInt64
}

/// Soak runs with one core for the whole run (`options.continuous`): the driver (`Soak.run`)
/// loads a window of traffic and operator events, runs it through its fault-free settle, checks
/// it, then compacts the simulator's and the oracle's bookkeeping and loads the next window
/// into the same `ControlPlane`, `Forwarder`s and kernel model.
///
/// What compaction may forget, and why nothing a check still needs is lost:
/// - frames and per-arrival records (rule, outputs sent, overflow keys) of arrivals that no
///   queued event refers to: an arrival is checked only when it is delivered, a delayed or
///   reordered one is re-queued with its own number and a duplicate gets a new number, so an
///   arrival nothing refers to is never looked at again. The ones still in flight are kept
///   and renumbered, queue entries included.
/// - the rule set of a plan version that can no longer be installed: the dispatcher only ever
///   sends its current version, so an older version not in flight is dead; sending one again
///   is reported as a violation, never judged against today's rules.
/// - interned rules nothing refers to any more (the current rule set, the rule sets above, the
///   workers' installed plans and the per-arrival records keep theirs), with their report
///   tallies, after the window's counter check has covered them.
extension Simulation {
    /// Runs the loaded window through its settle and reports it; the samples are handed over.
    func runWindow() throws(SimError) -> SoakWindowResult {
        let faultsBefore = faultCounts.total
        let frames = traceEnd - traceStart
        try advance()
        // Fold the workers' counters in, so the counter check sees everything up to now.
        for worker in workers.indices where workers[worker].alive { checkpoint(worker) }
        samples.append(stateSizes())
        let report = makeReport()
        let result = SoakWindowResult(
            violations: violations, samples: samples, liveness: report.liveness,
            countersProblem: Soak.countersProblem(report), frames: frames,
            faults: faultCounts.total - faultsBefore, endNanoseconds: now)
        samples.removeAll(keepingCapacity: true)
        return result
    }

    /// Loads the next window at `start` (after the previous window's settle): its frames, its
    /// scripted events, its random faults, its settle. Its initial rules must be the ones the
    /// relay runs now: the core carries them, nothing is re-applied.
    func load(window input: SimInput, at start: UInt64) throws(SimError) {
        precondition(options.continuous && windowDone && !finished, "load(window:) after a finished window only")
        guard start > now else { throw SimError.input("soak window at \(start) ns starts before now (\(now) ns)") }
        for name in input.interfaces.names where interfaces.index(of: name) == nil {
            throw SimError.input("soak window mentions interface \(name), which the run did not declare")
        }
        guard Set(input.rules) == Set(oracle.currentSpecs) else {
            throw SimError.input("soak window starts from \(input.rules.count) rules, the relay runs \(oracle.current.rules.count)")
        }
        var stale = 0
        queue.forEachPayload { if case .script = $0 { stale += 1 } }
        guard stale == 0 else { throw SimError.input("\(stale) scripted events of the last window never ran") }

        windowIndex += 1
        windowDone = false
        injector.enabled = true
        livenessStarted = nil
        livenessDeadline = .max
        convergedAt = nil
        livenessDetail = nil
        probes.removeAll()
        firstProbeArrival = .max

        // Frames: appended to the store; arrivals numbered after the ones in use.
        let count = input.store.frames.count
        let base = input.store.arena.withUnsafeBytes { arena.append($0) }
        traceStart = frameOffset.count
        traceEnd = traceStart + count
        cursor = traceStart
        traceArrivalDelta = arrivalRule.count - traceStart
        arrivalTime.removeAll(keepingCapacity: true)
        appendTraceFrames(input.store, arenaBase: base, start: start)

        events = input.events
        var end = arrivalTime.last ?? start
        for (index, event) in events.enumerated() {
            end = max(end, start + event.at)
            queue.push(.script(index), at: start + event.at)
        }
        trafficEnd = end + 10_000_000
        scheduleTimedFaults(from: start)
        queue.push(.livenessStart, at: trafficEnd)
        if options.sampleInterval > 0 { queue.push(.sample, at: start + options.sampleInterval) }
    }

    /// Forgets what can no longer matter (see the type's comment). Between windows only.
    func compact() {
        precondition(options.continuous && windowDone && cursor == traceEnd, "compact() between windows only")
        probes.removeAll()
        firstProbeArrival = .max

        // Frames and arrivals still referred to by queued events.
        var firstFrame = frameOffset.count
        var firstArrival = arrivalRule.count
        queue.forEachPayload { payload in
            guard case let .arrival(frame, arrival) = payload else { return }
            firstFrame = min(firstFrame, Int(frame))
            firstArrival = min(firstArrival, Int(arrival))
        }
        if firstFrame > 0 || firstArrival > 0 {
            let frameShift = Int32(firstFrame)
            let arrivalShift = Int32(firstArrival)
            queue.updatePayloads { payload in
                guard case let .arrival(frame, arrival) = payload else { return }
                payload = .arrival(frame: frame - frameShift, arrival: arrival - arrivalShift)
            }
        }
        if firstFrame > 0 {
            var bytes: [UInt8] = []
            var offsets: [Int] = []
            for frame in firstFrame..<frameOffset.count {
                offsets.append(bytes.count)
                bytes.append(contentsOf: arena.buffer(frameOffset[frame], frameLength[frame]))
            }
            arena = Arena(bytes)
            frameOffset = offsets
            frameLength.removeFirst(firstFrame)
            frameInterface.removeFirst(firstFrame)
            frameLink.removeFirst(firstFrame)
            facts.removeFirst(firstFrame)
            traceStart = frameOffset.count
            traceEnd = traceStart
            cursor = traceStart
        }
        if firstArrival > 0 {
            arrivalRule.removeFirst(firstArrival)
            arrivalMask.removeFirst(firstArrival)
            arrivalOverflow = Set(arrivalOverflow.compactMap { key in
                guard key.arrival >= firstArrival else { return nil }
                var shifted = key
                shifted.arrival -= firstArrival
                return shifted
            })
        }
        traceArrivalDelta = arrivalRule.count - traceStart

        // Plan versions that can no longer be installed.
        let inFlight = Set(pendingPlans.values.map(\.plan.version))
        versionEpoch = versionEpoch.filter { $0.key == latestPlanVersion || inFlight.contains($0.key) }

        // Interned rules nothing refers to.
        var keep = [Bool](repeating: false, count: oracle.registry.specs.count)
        for ref in oracle.current.references { keep[ref] = true }
        for epoch in versionEpoch.values { for ref in epoch.references { keep[ref] = true } }
        for worker in workers {
            for ref in worker.epoch.references { keep[ref] = true }
            for ref in worker.routeRef { keep[ref] = true }
        }
        for rule in arrivalRule where rule >= 0 { keep[Int(rule)] = true }
        for (ref, _) in probeAccepted where !keep[ref] { probeAccepted[ref] = nil }
        guard keep.contains(false) else { return }
        let old = oracle.registry
        let map = oracle.compactRegistry(keeping: keep)
        versionEpoch = versionEpoch.mapValues { $0.remapped(map) }
        for index in workers.indices {
            workers[index].epoch = workers[index].epoch.remapped(map)
            workers[index].routeRef = workers[index].routeRef.map { Int(map[$0]) }
        }
        for index in arrivalRule.indices where arrivalRule[index] >= 0 { arrivalRule[index] = map[Int(arrivalRule[index])] }
        probeAccepted = Dictionary(uniqueKeysWithValues: probeAccepted.map { (Int(map[$0.key]), $0.value) })

        // The report tallies follow the registry.
        var matched: [UInt64] = [], accepted: [UInt64] = [], outputCounts: [Int] = []
        var outputs: [(interface: Int, destination: IPAddress, port: UInt16, ttl: UInt8)] = []
        var follows: [Bool] = []
        var expected: [UInt64] = [], handed: [UInt64] = [], transmitted: [UInt64] = [], sendErrors: [UInt64] = []
        for ref in old.specs.indices where keep[ref] {
            matched.append(matchedByRule[ref])
            accepted.append(acceptedByRule[ref])
            outputCounts.append(registryOutputCounts[ref])
            for slot in old.outputBase[ref]..<(old.outputBase[ref] + registryOutputCounts[ref]) {
                outputs.append(registryOutputs[slot])
                follows.append(registryFollows[slot])
                expected.append(expectedByOutput[slot])
                handed.append(handedByOutput[slot])
                transmitted.append(transmittedByOutput[slot])
                sendErrors.append(sendErrorsByOutput[slot])
            }
        }
        matchedByRule = matched
        acceptedByRule = accepted
        registryOutputCounts = outputCounts
        registryOutputs = outputs
        registryFollows = follows
        expectedByOutput = expected
        handedByOutput = handed
        transmittedByOutput = transmitted
        sendErrorsByOutput = sendErrors
    }
}
