import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// What a finished command left: exit status (or 128+signal) and its output.
struct CommandResult: CustomStringConvertible {
    var arguments: [String]
    var status: Int32
    var stdout: String
    var stderr: String

    var description: String {
        "`\(arguments.joined(separator: " "))` -> \(status)\n--- stdout:\n\(stdout.suffix(3000))\n--- stderr:\n\(stderr.suffix(3000))"
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A child process whose output goes to files (never pipes: a pipe nobody drains can stall
/// the child, and a lingering grandchild can hold one open forever).
final class ChildProcess {
    let arguments: [String]
    let process = Process()
    let stdoutPath: String
    let stderrPath: String

    init(_ arguments: [String], outputDirectory: String, name: String) throws {
        self.arguments = arguments
        stdoutPath = "\(outputDirectory)/\(name).out"
        stderrPath = "\(outputDirectory)/\(name).err"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    func signal(_ number: Int32) {
        if process.isRunning { kill(pid, number) }
    }

    /// Waits up to `timeout`; nil if it is still running then.
    func wait(timeout: Duration) -> CommandResult? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now >= deadline { return nil }
            usleep(20_000)
        }
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return CommandResult(arguments: arguments, status: status, stdout: stdout, stderr: stderr)
    }

    /// Ends it for sure (cleanup paths).
    func terminate() {
        guard process.isRunning else { return }
        signal(SIGTERM)
        if wait(timeout: .seconds(3)) == nil {
            signal(SIGKILL)
            _ = wait(timeout: .seconds(3))
        }
    }
}

/// Distinct numbers for file names (tests may run in parallel; no randomness).
enum UniqueNumbers {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var counter = 0
    static func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        counter += 1
        return counter
    }
}

/// Runs a command to completion; kills it and throws if it takes longer than `timeout`.
@discardableResult
func run(_ arguments: [String], in directory: String, timeout: Duration = .seconds(30)) throws -> CommandResult {
    let name = "cmd-\(UniqueNumbers.next())"
    let child = try ChildProcess(arguments, outputDirectory: directory, name: name)
    defer {
        try? FileManager.default.removeItem(atPath: child.stdoutPath)
        try? FileManager.default.removeItem(atPath: child.stderrPath)
    }
    guard let result = child.wait(timeout: timeout) else {
        child.signal(SIGKILL)
        _ = child.wait(timeout: .seconds(5))
        throw HarnessError("timed out after \(timeout): \(arguments.joined(separator: " "))\nstderr: \(child.stderr.suffix(2000))")
    }
    return result
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
func waitUntil(timeout: Duration, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        usleep(50_000)
    }
}
