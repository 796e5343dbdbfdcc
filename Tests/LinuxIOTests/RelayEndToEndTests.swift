import Foundation
import LinuxIO
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// The daemon as users run it: the built `mcrelay` in a relay namespace between a sender and
/// a receiver namespace (veth pairs), rules added with the real CLI, real sockets sending
/// deterministic payloads, and a receiver that counts every datagram per stream. Every test
/// checks what was sent against what arrived (exactly once, byte-exact) and against the
/// daemon's own counters, and fails when its own tooling failed.
@Suite("Relay end to end (root, network namespaces)", .serialized,
       .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
struct RelayEndToEndTests {
    /// A lab and a daemon for one test; afterwards SIGTERM must exit 0, print the final
    /// counters and leave every group. Cleanup runs whatever happens.
    func withRelay(_ tag: String, workers: Int = 1, config: ((Lab) throws -> String)? = nil, restartsExpected: Bool = false,
                   daemonArguments: [String] = [], _ body: (Lab, RelayDaemon) throws -> Void) throws {
        let lab = try Lab(tag)
        defer { lab.down() }
        let daemon = try RelayDaemon(lab, workers: workers, config: config?(lab), extraArguments: daemonArguments)
        defer { daemon.kill() }
        try body(lab, daemon)
        if !restartsExpected {
            let restarts = try daemon.stats().workers.filter { $0.restarts > 0 }
            #expect(restarts.isEmpty, "workers restarted (crashed?) during the test: \(restarts); see \(lab.directory)/daemon.err")
        }
        let stopped = try daemon.stop()
        #expect(stopped.status == 0, "daemon exit after SIGTERM: \(stopped)")
        #expect(stopped.stdout.contains("final counters"), "no final counters on stdout: \(stopped.stdout)")
        let left = try lab.memberships(lab.relay, interface: "rin0").filter { $0.hasPrefix("239.") }
        #expect(left.isEmpty, "groups still joined on rin0 after shutdown: \(left.sorted())")
    }

    /// The daemon counted exactly `packets` for each stream's rule, on every output, without send errors.
    func expectCounted(_ stats: StatsView, inputs: [String], packets: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
        for input in inputs {
            guard let rule = stats.rules.first(where: { $0.in.hasSuffix(input) }) else {
                Issue.record("no rule for \(input) in stats", sourceLocation: sourceLocation)
                continue
            }
            #expect(rule.packets == packets, "daemon counted \(rule.packets) packets for \(input), sender sent \(packets)", sourceLocation: sourceLocation)
            for output in rule.outputs {
                #expect(output.packets == packets && output.sendErrors == 0,
                        "\(output.out): \(output.packets) packets, \(output.sendErrors) send errors", sourceLocation: sourceLocation)
            }
        }
    }

    static func streams(_ count: Int, inputGroup: (Int) -> String, outputGroup: (Int) -> String) -> [Stream] {
        (0..<count).map { Stream(input: inputGroup($0), output: outputGroup($0), id: $0 + 1) }
    }
}
