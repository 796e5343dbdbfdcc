import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A started command the caller waits for with `finish`: a `ChildProcess` (output in files)
/// with the throwing, status-checking wait the DataPlane tests use.
final class RunningProcess: @unchecked Sendable {
    let child: ChildProcess
    var arguments: [String] { child.arguments }
    var pid: Int32 { child.pid }

    init(_ arguments: [String], outputDirectory: String = E2E.scratchDirectory) throws {
        child = try ChildProcess(arguments, outputDirectory: outputDirectory, name: "proc-\(UniqueNumbers.next())")
    }

    /// Waits up to `timeout` seconds; a command still running then is killed and reported with
    /// its stderr. With `check`, a non-zero exit is an error too (with its output).
    func finish(timeout: Double, check: Bool = true) throws -> CommandResult {
        guard let result = child.wait(timeout: .milliseconds(Int(timeout * 1000))) else {
            child.signal(SIGKILL)
            _ = child.wait(timeout: .seconds(5))
            throw HarnessError("\(arguments.joined(separator: " ")) did not finish within \(timeout) s; stderr: \(child.stderr.suffix(2000))")
        }
        if check && result.status != 0 {
            throw HarnessError("\(arguments.joined(separator: " ")) exited \(result.status)\nstdout: \(result.stdout.suffix(3000))\nstderr: \(result.stderr.suffix(3000))")
        }
        return result
    }

    /// Kills it if it still runs (cleanup paths).
    func terminate() {
        guard child.isRunning else { return }
        child.signal(SIGKILL)
        _ = child.wait(timeout: .seconds(5))
    }
}
