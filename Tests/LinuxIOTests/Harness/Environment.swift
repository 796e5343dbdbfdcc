import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// Where things are, and whether the end-to-end tests can run here.
enum E2E {
    /// The repository root, from this file's path (Tests/LinuxIOTests/Harness/Environment.swift).
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var scripts: String { repositoryRoot + "/scripts" }

    /// The `mcrelay` built alongside this test binary (`<scratch>/<config>/mcrelay`), or
    /// `$MCRELAY_BINARY`.
    static let binary: String = {
        if let explicit = ProcessInfo.processInfo.environment["MCRELAY_BINARY"] { return explicit }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("mcrelay").path
    }()

    /// Root, `ip netns` and python3: otherwise the suite is skipped, and says why.
    static let available: Bool = {
        var reasons: [String] = []
        if geteuid() != 0 { reasons.append("not running as root") }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") { reasons.append("python3 is missing") }
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["ip", "netns", "list"]
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        if (try? probe.run()) == nil {
            reasons.append("`ip` is missing")
        } else {
            probe.waitUntilExit()
            if probe.terminationStatus != 0 { reasons.append("`ip netns` does not work here") }
        }
        if !reasons.isEmpty {
            print("LinuxIOTests end-to-end suite skipped: " + reasons.joined(separator: "; "))
        }
        return reasons.isEmpty
    }()

    /// Where commands started outside a lab leave their output (one directory per test process).
    static let scratchDirectory: String = (try? temporaryDirectory("scratch")) ?? FileManager.default.temporaryDirectory.path

    /// A fresh scratch directory for one test. Directories of earlier runs (whose process is
    /// gone) are removed first; this run's stay, with the daemon's log, as evidence.
    static func temporaryDirectory(_ tag: String) throws -> String {
        pruneEarlierRuns()
        let path = "/tmp/mcrelay-e2e-\(tag)-\(getpid())-\(UniqueNumbers.next())"
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private static let pruneOnce: Void = {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        for entry in entries where entry.hasPrefix("mcrelay-e2e-") {
            let fields = entry.split(separator: "-")
            guard fields.count >= 5, let pid = Int32(fields[fields.count - 2]), pid != getpid(), kill(pid, 0) != 0 else { continue }
            try? FileManager.default.removeItem(atPath: "/tmp/" + entry)
        }
    }()

    private static func pruneEarlierRuns() { _ = pruneOnce }
}
