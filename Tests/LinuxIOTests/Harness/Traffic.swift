import Foundation
import Testing

/// mcsend.py's summary.
struct SendSummary: Decodable {
    struct Stream: Decodable { var stream_id: Int; var sent: Int; var errors: Int }
    var sent: [String: Stream]
    var errors: Int
}

/// mcrecv.py's summary.
struct ReceiveSummary: Decodable {
    struct Stream: Decodable {
        var stream_id: Int
        var received: Int
        var duplicates: Int
        var corrupt: Int
        var out_of_order: Int
        var bytes: Int
        var ttl_min: Int?
        var ttl_max: Int?
        var missing: Int?
    }
    var received: [String: Stream]
    var complete: Bool
}

/// One test stream: sent to `input` (GROUP:PORT) with `id`, expected at `output` (GROUP:PORT).
struct Stream {
    var input: String
    var output: String
    var id: Int
}

/// mcrecv.py in the receiver namespace, joined and ready before `init` returns.
final class Receiver {
    let process: ChildProcess
    let streams: [Stream]

    /// `namespace`: where it listens (default: the lab's receiver namespace). `address6`: the
    /// IPv6 address of the interface to join IPv6 streams (`[GROUP]:PORT` outputs) on, beside or
    /// instead of `address` (nil: IPv4 only; `address` is then the only one passed when `ipv6Only`
    /// is false). `sourceFilter`: source-specific joins (MCAST_JOIN_SOURCE_GROUP for IPv6).
    init(_ lab: Lab, namespace: String? = nil, address: String = Lab.receiverAddress0, address6: String? = nil,
         sourceFilter: String? = nil, streams: [Stream], expect: Int, size: Int,
         startSeq: Int = 0, duration: Double = 20, idle: Double = 3, name: String = "recv") throws {
        self.streams = streams
        var addresses: [String] = []
        if address6 == nil || streams.contains(where: { !$0.output.hasPrefix("[") }) { addresses += ["--iface-addr", address] }
        if let address6 { addresses += ["--iface-addr", address6] }
        if let sourceFilter { addresses += ["--source-filter", sourceFilter] }
        process = try McrecvProcess.start(lab, namespace: namespace ?? lab.receiver, name: name, arguments:
            addresses + ["--expect", String(expect), "--size", String(size), "--start-seq", String(startSeq),
             "--duration", String(duration), "--idle", String(idle)] + streams.flatMap { ["--stream", "\($0.output):\($0.id)"] })
    }

    /// Waits for it to finish (it stops when every stream is complete, or when idle) and
    /// returns its summary; a receiver that failed to run fails the test.
    func finish(timeout: Duration = .seconds(40)) throws -> ReceiveSummary {
        try McrecvProcess.finish(process, timeout: timeout)
    }
}

/// Starting and finishing mcrecv.py, for every receiver kind of the tests.
enum McrecvProcess {
    /// Runs mcrecv.py ARGUMENTS in `namespace`; returns once it has joined its groups (its ready file).
    static func start(_ lab: Lab, namespace: String, name: String, arguments: [String]) throws -> ChildProcess {
        let ready = "\(lab.directory)/\(name).ready"
        try? FileManager.default.removeItem(atPath: ready)
        let process = try ChildProcess(lab.exec(namespace, ["python3", E2E.scripts + "/mcrecv.py"] + arguments + ["--ready-file", ready]),
                                       outputDirectory: lab.directory, name: name)
        let isReady = waitUntil(timeout: .seconds(15)) { FileManager.default.fileExists(atPath: ready) || !process.isRunning }
        guard isReady, process.isRunning else {
            process.terminate()
            throw HarnessError("receiver \(name) did not get ready: \(process.stderr.suffix(2000))")
        }
        return process
    }

    /// Its JSON summary once it ends. Exit 1 means "not everything arrived", which the caller
    /// asserts; 2 (or anything else) is a tooling failure.
    static func finish<Summary: Decodable>(_ process: ChildProcess, timeout: Duration) throws -> Summary {
        guard let result = process.wait(timeout: timeout) else {
            process.terminate()
            throw HarnessError("receiver did not finish within \(timeout)")
        }
        guard result.status == 0 || result.status == 1 else { throw HarnessError("receiver failed: \(result)") }
        do { return try JSONDecoder().decode(Summary.self, from: Data(result.stdout.utf8)) } catch {
            throw HarnessError("receiver output unreadable (\(error)): \(result)")
        }
    }
}

/// Runs mcsend.py in the sender namespace to completion; any send error fails the test.
/// `sourcePort`: fixed, so two runs are the same flows (PACKET_FANOUT hashes the ports too).
/// IPv6 streams (`[GROUP]:PORT` inputs) are sent from `source6` (default snd0's IPv6 address).
@discardableResult
func send(_ lab: Lab, streams: [Stream], count: Int, rate: Double, size: Int, startSeq: Int = 0, sourcePort: Int = 0,
          source6: String = Lab.senderAddress6) throws -> SendSummary {
    var sources: [String] = []
    if streams.contains(where: { !$0.input.hasPrefix("[") }) { sources += ["--source", Lab.senderAddress] }
    if streams.contains(where: { $0.input.hasPrefix("[") }) { sources += ["--source", source6] }
    var arguments = ["python3", E2E.scripts + "/mcsend.py"] + sources + ["--count", String(count),
                     "--rate", String(rate), "--size", String(size), "--start-seq", String(startSeq), "--ttl", "4",
                     "--source-port", String(sourcePort)]
    for stream in streams { arguments += ["--stream", "\(stream.input):\(stream.id)"] }
    let expected = Double(count) / max(rate, 1)
    let result = try run(lab.exec(lab.sender, arguments), in: lab.directory, timeout: .seconds(Int(expected * 3) + 20))
    guard result.status == 0 else { throw HarnessError("sender failed: \(result)") }
    let summary = try JSONDecoder().decode(SendSummary.self, from: Data(result.stdout.utf8))
    guard summary.errors == 0 else { throw HarnessError("sender reported \(summary.errors) send errors: \(result.stdout)") }
    for stream in streams {
        guard summary.sent[stream.input]?.sent == count else {
            throw HarnessError("sender sent \(summary.sent[stream.input]?.sent ?? -1) of \(count) on \(stream.input)")
        }
    }
    return summary
}

/// Every stream arrived exactly once, in full, byte-exact (mcrecv checks the deterministic
/// payload and the size), with no duplicates.
func expectDelivered(_ summary: ReceiveSummary, _ streams: [Stream], count: Int, ttl: Int? = nil,
                     sourceLocation: SourceLocation = #_sourceLocation) {
    for stream in streams {
        guard let got = summary.received[stream.output] else {
            Issue.record("no summary for \(stream.output)", sourceLocation: sourceLocation)
            continue
        }
        #expect(got.received == count, "\(stream.input) -> \(stream.output): received \(got.received) of \(count) (missing \(got.missing ?? -1))", sourceLocation: sourceLocation)
        #expect(got.duplicates == 0, "\(stream.output): \(got.duplicates) duplicates", sourceLocation: sourceLocation)
        #expect(got.corrupt == 0, "\(stream.output): \(got.corrupt) corrupt (payload not byte-exact)", sourceLocation: sourceLocation)
        if let ttl, got.received > 0 {
            #expect(got.ttl_min == ttl && got.ttl_max == ttl, "\(stream.output): TTL \(got.ttl_min ?? -1)...\(got.ttl_max ?? -1), expected \(ttl)", sourceLocation: sourceLocation)
        }
    }
}
