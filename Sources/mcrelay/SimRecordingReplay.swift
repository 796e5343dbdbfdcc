// `mcrelay sim replay --recording DIR [--save-case CASE]`: a flight recording as a simulator
// case (issue 6). The recording's manifest fixes workers, dispatch and the membership limit;
// --seed, --faults, --timing and --driver-bug apply as to any replay.
import ArgumentParser
import Foundation
import RelayControl
import Sim

extension SimCommand.Replay {
    func replayRecording(_ directory: String) throws {
        guard traces.isEmpty, config == nil, events == nil, interfaceMap.isEmpty else {
            throw SimError.usage("--recording brings its own frames, config and events: drop --trace, --config, --events and --iface-map")
        }
        let recording = try Recording.load(directory: directory)
        var options = recording.simCase.options
        var requested = SimOptions()
        try common.apply(to: &requested)
        options.seed = requested.seed
        options.faults = requested.faults
        options.swarm = requested.swarm
        options.timing = requested.timing
        options.driverBugs = requested.driverBugs
        let manifest = recording.manifest
        print("recording \(directory): \(manifest.mcrelayVersion), \(manifest.workers) worker(s), \(manifest.dispatch) dispatch, "
            + "\(recording.simCase.input.store.frames.count) frames, \(recording.simCase.input.events.count) events, "
            + "\(recording.simCase.input.rules.count) rule(s) at the start" + (manifest.stopReason.map { "; stopped: \($0)" } ?? ""))
        for note in recording.notes { print("note: \(note)") }
        if options.swarm { print("swarm faults for seed \(options.seed): \(options.effectiveFaults)") }
        let input = recording.simCase.input
        var result: SimResult?
        var failure: ExitCode?
        do { result = try run(input: input, options: options) } catch let exit as ExitCode { failure = exit }
        guard let saveCase else {
            if let failure { throw failure }
            return
        }
        let simCase = SimCase(input: input, options: options)
        try simCase.save(directory: saveCase, description: "flight recording \(directory) (\(manifest.mcrelayVersion))")
        // Load it back and replay it exactly as the trace tests will, so expected.json is
        // what a replay from the saved files gives.
        let reloaded = try SimCase.load(directory: saveCase).run()
        if let result, reloaded.report.egress != result.report.egress {
            throw SimError.output("\(saveCase): the saved case replays differently from the recording; not writing expected.json")
        }
        do { try ExpectedOutcome(reloaded).json().write(to: URL(fileURLWithPath: saveCase + "/expected.json")) } catch {
            throw SimError.output("\(saveCase)/expected.json: \(error.localizedDescription)")
        }
        print("saved the case to \(saveCase) (with expected.json); replay it: \(simCase.replayCommand(directory: saveCase)); "
            + "under traces/regressions/ the regression tests replay it")
        if let failure {
            print("the replay breaks an invariant: the saved case reproduces it (shrink it: mcrelay sim shrink \(saveCase))")
            throw failure
        }
    }
}
