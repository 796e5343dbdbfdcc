import RelayCore

/// `sim shrink`: cuts a failing case down — frames, events, rules, workers, faults — keeping
/// each cut only if the case still fails the same invariant. Greedy delta debugging: try big
/// chunks first, then smaller ones.
public enum Shrinker {
    public struct Outcome: Sendable {
        public var original: SimCase
        public var shrunk: SimCase
        public var invariant: String
        public var runs: Int
        public var result: SimResult
    }

    public static func shrink(_ start: SimCase, maximumRuns: Int = 2_000,
                              log: (String) -> Void = { _ in }) throws(SimError) -> Outcome? {
        let first = try start.run()
        guard let target = first.violations.first?.invariant else { return nil }
        var best = start
        var bestResult = first
        // Swarm picks probabilities from the seed; pin them so faults can be cut one by one.
        best.options.faults = best.options.effectiveFaults
        best.options.swarm = false
        var runs = 1

        func stillFails(_ candidate: SimCase) throws(SimError) -> SimResult? {
            guard runs < maximumRuns else { return nil }
            runs += 1
            var quick = candidate
            quick.options.stopAtInvariant = target
            let result = try quick.run()
            return result.violations.contains { $0.invariant == target } ? result : nil
        }

        var progress = true
        while progress && runs < maximumRuns {
            progress = false
            // Frames: chunks from half the trace down to single frames.
            var chunk = max(1, best.input.store.frames.count / 2)
            while chunk >= 1 && runs < maximumRuns {
                var start = 0
                var removedAny = false
                while start < best.input.store.frames.count && runs < maximumRuns {
                    let count = best.input.store.frames.count
                    let keep = Array(0..<start) + Array(min(count, start + chunk)..<count)
                    var candidate = best
                    candidate.input.store = best.input.store.subset(keep)
                    if let result = try stillFails(candidate) {
                        best = candidate; bestResult = result; removedAny = true; progress = true
                    } else {
                        start += chunk
                    }
                }
                if !removedAny { chunk /= 2 }
            }
            log("frames: \(best.input.store.frames.count)")
            // Events, one at a time.
            var index = 0
            while index < best.input.events.count {
                var candidate = best
                candidate.input.events.remove(at: index)
                if let result = try stillFails(candidate) { best = candidate; bestResult = result; progress = true } else { index += 1 }
            }
            // Rules.
            index = 0
            while index < best.input.rules.count {
                var candidate = best
                candidate.input.rules.remove(at: index)
                if let result = try stillFails(candidate) { best = candidate; bestResult = result; progress = true } else { index += 1 }
            }
            // Outputs of the remaining rules.
            for rule in best.input.rules.indices {
                var output = 0
                while best.input.rules[rule].outputs.count > 1 && output < best.input.rules[rule].outputs.count {
                    var candidate = best
                    candidate.input.rules[rule].outputs.remove(at: output)
                    if let result = try stillFails(candidate) { best = candidate; bestResult = result; progress = true } else { output += 1 }
                }
            }
            // Fewer workers.
            while best.options.workers > 1 {
                var candidate = best
                candidate.options.workers -= 1
                guard let result = try stillFails(candidate) else { break }
                best = candidate; bestResult = result; progress = true
            }
            // Faults, one kind at a time.
            for (_, path, _) in FaultSpec.fields where best.options.faults[keyPath: path] != 0 {
                var candidate = best
                candidate.options.faults[keyPath: path] = 0
                if let result = try stillFails(candidate) { best = candidate; bestResult = result; progress = true }
            }
            log("events: \(best.input.events.count), rules: \(best.input.rules.count), workers: \(best.options.workers), faults: \(best.options.faults)")
        }
        return Outcome(original: start, shrunk: best, invariant: target, runs: runs, result: bestResult)
    }
}
