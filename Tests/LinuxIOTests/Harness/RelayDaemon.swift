import Foundation
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// The built `mcrelay daemon` running in the lab's relay namespace, driven through the real CLI.
final class RelayDaemon {
    let lab: Lab
    let control: String
    let process: ChildProcess

    /// `launcher`: a command the daemon runs under (e.g. setpriv, as a service manager would).
    init(_ lab: Lab, workers: Int = 1, config: String? = nil, extraArguments: [String] = [], launcher: [String] = []) throws {
        guard FileManager.default.isExecutableFile(atPath: E2E.binary) else {
            throw HarnessError("mcrelay binary not found at \(E2E.binary): build it first (swift build), or set MCRELAY_BINARY")
        }
        self.lab = lab
        // In a directory that does not exist yet: the daemon creates it.
        control = lab.directory + "/run/mcrelay/control.sock"
        var arguments = [E2E.binary, "daemon", "--control", control, "--workers", String(workers)]
        if let config { arguments += ["--config", config] }
        arguments += extraArguments
        process = try ChildProcess(lab.exec(lab.relay, launcher + arguments), outputDirectory: lab.directory, name: "daemon")
        let up = waitUntil(timeout: .seconds(15)) {
            guard process.isRunning else { return true }
            guard let stats = try? stats() else { return false }
            return stats.workers.allSatisfy { $0.alive && $0.planVersion == stats.planVersion }
        }
        guard up, process.isRunning else {
            process.terminate()
            throw HarnessError("daemon did not come up (running: \(process.isRunning))\nstderr:\n\(process.stderr.suffix(3000))")
        }
    }

    /// `mcrelay ARGS --control SOCKET`, run from the host namespace (the socket is a file).
    func cli(_ arguments: [String]) throws -> CommandResult {
        try run([E2E.binary] + arguments + ["--control", control], in: lab.directory, timeout: .seconds(20))
    }

    /// `rule add`; returns the printed id, failing the test if the CLI failed.
    @discardableResult
    func addRule(_ input: String, _ outputs: [String], name: String? = nil, source: String? = nil) throws -> String {
        var arguments = ["rule", "add", "--in", input]
        for output in outputs { arguments += ["--out", output] }
        if let name { arguments += ["--name", name] }
        if let source { arguments += ["--source", source] }
        let result = try cli(arguments)
        guard result.status == 0 else { throw HarnessError("rule add failed: \(result)") }
        let id = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard id.count == 12 else { throw HarnessError("rule add printed \"\(id)\", not a rule id") }
        return id
    }

    func removeRule(_ selector: String) throws {
        let result = try cli(["rule", "remove", selector])
        guard result.status == 0 else { throw HarnessError("rule remove failed: \(result)") }
    }

    /// `mcrelay stats --json`, decoded.
    func stats() throws -> StatsView {
        let result = try cli(["stats", "--json"])
        guard result.status == 0 else { throw HarnessError("stats failed: \(result)") }
        return try JSONDecoder().decode(StatsView.self, from: Data(result.stdout.utf8))
    }

    /// Waits until every worker runs the current plan and no join is outstanding.
    func waitSettled(timeout: Duration = .seconds(10)) throws {
        var last: StatsView?
        let settled = try waitUntil(timeout: timeout) {
            let stats = try stats()
            last = stats
            return stats.outstanding.isEmpty && stats.workers.allSatisfy { $0.alive && $0.planVersion == stats.planVersion }
        }
        guard settled else { throw HarnessError("daemon did not settle: \(String(describing: last))") }
    }

    /// SIGTERM and wait: the result carries the exit status and the final counters on stdout.
    func stop() throws -> CommandResult {
        process.signal(SIGTERM)
        guard let result = process.wait(timeout: .seconds(15)) else {
            process.signal(SIGKILL)
            throw HarnessError("daemon did not exit within 15 s of SIGTERM\nstderr:\n\(process.stderr.suffix(3000))")
        }
        return result
    }

    /// Cleanup: whatever state it is in, it is gone afterwards.
    func kill() { process.terminate() }
}
