import Foundation
@testable import LinuxIO
import RelayControl
import RelayCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Recovery at the link's speed (issue #11, item 6): the daemon, at its defaults, relays a
/// steady 1,000 pps stream (mcsend.py, sequence-numbered) while the input link, the output link
/// or the only worker is taken away; receivers count by sequence number (mcrecv.py --gaps), so
/// the test knows exactly which datagrams were lost and when forwarding resumed.
///
/// "The link's own down time" is measured, not assumed: a reference stream crosses the same
/// link in the same moment without the relay — for an input flap a kernel UDP receiver in the
/// relay namespace joined to the input group on rin0 (it loses exactly what the link dropped),
/// for an output flap a kernel UDP sender in the relay namespace sending out of rout0 at the same
/// rate. The relay's outage beyond the link's is (datagrams the relay's receiver lost) −
/// (datagrams the reference lost). `ip link set … down; sleep 0.5; ip link set … up` in one
/// shell keeps the link down for about 500 ms (the references lost 503–519 datagrams).
///
/// Measured on the 2-core lab (debug build, the machine shared with three other builds: load
/// average 6-11), loss beyond the link's down time in datagrams, min/median/max:
/// - input flap (rin0): before this change 133/502/509 (5 runs; the supervisor waited for
///   IFF_RUNNING, which the kernel's link watcher sets up to a second after the previous link
///   event), after 0/2/6 (17 runs).
/// - output flap (rout0): before -2/0/1 (5 runs), after -10/0/2 (16 runs; the worker's AF_PACKET
///   and UDP sockets survive down/up). One more run was rejected as a tooling failure: the
///   loaded machine stretched the flap itself to 1.1 s (the reference lost 1,129).
/// - `kill -9` of the only worker (`--workers 1`: the whole stream is on it; reference loss 0):
///   before 137/152/169 (6 runs: 100 ms restart backoff, then ~25-45 ms to exec the worker and
///   install its plan), after 28/52/151 (20 runs). What is left is CPU-bound (process teardown,
///   exec, dynamic loading, start-up) and grows with the machine's load; the supervisor's own
///   share, reap to respawn, is checked separately: 1-3 ms (was 100).
/// - output interface deleted and re-created 500 ms later: before, the first relayed datagram
///   left up to 490 ms after `ip link set rout0 up` returned (95-490 ms in 5 of 6 runs, at the
///   phase of the 500 ms egress retry timer), after 2-19 ms *before* that command returned
///   (7 runs: within the command).
/// Bounds: 20 datagrams beyond the link for the flaps (20 ms at 1,000 pps), 20 ms after the up
/// for the re-created output, 250 for the restart outage, 20 ms for reap -> respawn.
@Suite("Link and worker recovery end to end (root, network namespaces)", .serialized,
       .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
struct EndToEndLinkRecoveryTests {
    static let rate = 1000
    static let count = 5000
    /// Datagrams the relay may lose beyond the link's own down time on a flap.
    static let flapBound = 20
    /// Datagrams the relay may lose while its only worker is killed and restarted.
    static let restartBound = 250

    @Test("input link down 500 ms and up: the relay loses no more than the link did")
    func inputFlap() throws {
        let outage = try measure(.inputFlap, tag: "lrin")
        #expect(outage.excess <= Self.flapBound, "\(outage)")
    }

    @Test("output link down 500 ms and up: the relay loses no more than the link did")
    func outputFlap() throws {
        let outage = try measure(.outputFlap, tag: "lrout")
        #expect(outage.excess <= Self.flapBound, "\(outage)")
    }

    @Test("kill -9 of the only worker: its streams flow again within a bounded time")
    func workerKill() throws {
        let outage = try measure(.workerKill, tag: "lrkil", workers: 1, daemonArguments: ["--log-format", "json"])
        #expect(outage.referenceLost == 0, "the input stream itself lost datagrams: \(outage)")
        #expect(outage.relayLost > 0, "killing the only worker lost nothing: was it killed? \(outage)")
        #expect(outage.excess <= Self.restartBound, "\(outage)")
        // The supervisor's own share, which does not depend on how busy the machine is: from
        // reaping the dead worker to spawning its replacement (this was the 100 ms backoff).
        let times = Self.restartTimeline(outage.daemonLog)
        guard let reaped = times.reaped, let spawned = times.spawned, let ready = times.ready else {
            throw HarnessError("no reap/restart/ready lines in the daemon's JSON log:\n\(outage.daemonLog.suffix(3000))")
        }
        print(String(format: "link recovery: worker restart: reaped -> spawned %.0f ms, spawned -> ready %.0f ms", spawned - reaped, ready - spawned))
        #expect(spawned - reaped <= 20, "the supervisor waited \(spawned - reaped) ms before restarting the worker")
    }

    /// Milliseconds (of the day) of the reap, the restart and the new worker's ready in a
    /// `--log-format json` log.
    static func restartTimeline(_ log: String) -> (reaped: Double?, spawned: Double?, ready: Double?) {
        func milliseconds(_ line: Substring) -> Double? {
            // {"ts":"2026-12-02T10:05:10.409Z",...
            guard let start = line.range(of: "\"ts\":\""), let t = line[start.upperBound...].firstIndex(of: "T") else { return nil }
            let clock = line[line.index(after: t)...].prefix(12).split(separator: ":")
            guard clock.count == 3, let h = Double(clock[0]), let m = Double(clock[1]), let s = Double(clock[2]) else { return nil }
            return ((h * 60 + m) * 60 + s) * 1000
        }
        var reaped: Double?, spawned: Double?, ready: Double?
        for line in log.split(separator: "\n") {
            if reaped == nil, line.contains("killed by signal 9") { reaped = milliseconds(line) }
            else if reaped != nil, spawned == nil, line.contains("restarted worker 0 as pid") { spawned = milliseconds(line) }
            else if spawned != nil, ready == nil, line.contains("worker 0 ready") { ready = milliseconds(line) }
        }
        return (reaped, spawned, ready)
    }

    @Test("output interface deleted and re-created: relayed datagrams leave on it within milliseconds of its up")
    func outputRecreated() throws {
        let lab = try Lab("lrnew")
        defer { lab.down() }
        let daemon = try RelayDaemon(lab, workers: ProcessInfo.processInfo.activeProcessorCount)
        defer { daemon.kill() }
        try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
        try daemon.waitSettled()
        let sender = try ChildProcess(lab.exec(lab.sender, Self.sendArguments(source: Lab.senderAddress, stream: "239.1.1.1:5001:1")),
                                      outputDirectory: lab.directory, name: "sender")
        defer { sender.terminate() }
        usleep(2_000_000)
        guard sender.isRunning else { throw HarnessError("sender ended early: \(sender.stderr)") }

        // rout0 and its peer rcv0 go away (a veth pair dies whole); 500 ms later a new pair with
        // the same names and addresses, rcv0 up first; a receiver joins on the new rcv0; then rout0 up.
        // No kernel reference here: a kernel UDP sender pins the old interface index too
        // (IP_MULTICAST_IF resolves the address at setsockopt) and never recovers by itself, so
        // the relay is measured against the end of `ip link set rout0 up`.
        try lab.must(lab.relay, ["ip", "link", "del", "rout0"])
        usleep(500_000)
        try lab.must(lab.relay, ["ip", "link", "add", "rout0", "type", "veth", "peer", "name", "rcv0", "netns", lab.receiver])
        try lab.must(lab.relay, ["ip", "addr", "add", "198.18.2.1/24", "dev", "rout0"])
        try lab.must(lab.receiver, ["ip", "addr", "add", "198.18.2.2/24", "dev", "rcv0"])
        try lab.must(lab.receiver, ["ip", "link", "set", "rcv0", "up"])
        let receiver = try GapReceiver(lab, namespace: lab.receiver, address: Lab.receiverAddress0,
                                       streams: ["239.10.1.1:6001:1"], expect: Self.count, name: "recv")
        defer { receiver.process.terminate() }
        try lab.must(lab.relay, ["ip", "link", "set", "rout0", "up"])
        let up = Self.monotonicSeconds()

        let timeout = Duration.seconds(Self.count / Self.rate + 30)
        guard let sent = sender.wait(timeout: timeout), sent.status == 0,
              try Self.decodeSend(sent).sent["239.1.1.1:5001"]?.sent == Self.count else {
            throw HarnessError("sender did not send \(Self.count) datagrams without errors: \(sender.stdout) \(sender.stderr)")
        }
        let summary = try receiver.finish(timeout: timeout)
        guard let relayed = summary.received["239.10.1.1:6001"], let relayFirst = relayed.first_at else {
            throw HarnessError("the new rcv0 received nothing: \(summary.received)")
        }
        #expect(relayed.duplicates == 0 && relayed.corrupt == 0, "relayed stream: \(relayed)")
        // The stream's remaining datagrams all arrive once it resumed (nothing lost after the up).
        let resumedAt = relayed.gaps?.first(where: { $0.first == 0 })?.count ?? 0
        let lostLater = (relayed.missing ?? 0) - resumedAt
        let afterUp = (relayFirst - up) * 1000
        print(String(format: "link recovery: output re-created: first relayed datagram %.1f ms after `ip link set rout0 up` "
                     + "returned; %d relayed after it, %d lost after the first", afterUp, relayed.received, lostLater))
        #expect(afterUp <= Double(Self.flapBound), "the relay resumed \(afterUp) ms after the new rout0 came up")
        #expect(lostLater <= Self.flapBound, "lost \(lostLater) datagrams after resuming: \(relayed.gaps ?? [])")
        let stopped = try daemon.stop()
        #expect(stopped.status == 0, "daemon exit after SIGTERM: \(stopped)")
    }

    /// CLOCK_MONOTONIC in seconds: the clock of mcrecv's arrival times (Python's time.monotonic()).
    static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    // MARK: - Measuring

    enum Disturbance: String { case inputFlap = "input flap", outputFlap = "output flap", workerKill = "worker kill" }

    struct Outage: CustomStringConvertible {
        var disturbance: Disturbance
        var relayLost: Int
        var referenceLost: Int
        var relayGaps: [GapSummary.Gap]
        var referenceGaps: [GapSummary.Gap]
        /// How long the disturbing command took (the flap's shell, or the kill and the wait for the restart).
        var commandMilliseconds: Double
        /// The daemon's stderr (its log), filled in once it stopped.
        var daemonLog = ""
        var excess: Int { relayLost - referenceLost }

        /// How much later the relay's stream resumed than the reference (ms), when both had one gap.
        var resumedLater: Double? {
            guard let relay = relayGaps.last?.after_at, let reference = referenceGaps.last?.after_at else { return nil }
            return (relay - reference) * 1000
        }

        /// The relay's longest silence (ms): from the last datagram before a gap to the first after it.
        var relaySilence: Double? {
            relayGaps.compactMap { gap in gap.after_at.flatMap { after in gap.before_at.map { (after - $0) * 1000 } } }.max()
        }

        var description: String {
            func ms(_ value: Double?) -> String { value.map { String(format: "%.1f ms", $0) } ?? "n/a" }
            func runs(_ gaps: [GapSummary.Gap]) -> String { gaps.map { "\($0.first)...\($0.last)" }.joined(separator: ", ") }
            return "\(disturbance.rawValue): relay lost \(relayLost) [\(runs(relayGaps))], reference lost \(referenceLost) "
                + "[\(runs(referenceGaps))], beyond the link: \(excess) datagrams; relay silent \(ms(relaySilence)), "
                + "resumed \(ms(resumedLater)) after the reference; the disturbance took \(ms(commandMilliseconds))"
        }
    }

    func measure(_ disturbance: Disturbance, tag: String, workers: Int = ProcessInfo.processInfo.activeProcessorCount,
                 daemonArguments: [String] = []) throws -> Outage {
        let lab = try Lab(tag)
        defer { lab.down() }
        let daemon = try RelayDaemon(lab, workers: workers, extraArguments: daemonArguments)
        defer { daemon.kill() }
        try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
        try daemon.waitSettled()

        let relayed = "239.10.1.1:6001"
        let referenceOut = "239.10.9.9:6009"  // sent by the kernel out of rout0, not relayed
        var outputStreams = ["\(relayed):1"]
        if disturbance == .outputFlap { outputStreams.append("\(referenceOut):9") }
        let receiver = try GapReceiver(lab, namespace: lab.receiver, address: Lab.receiverAddress0, streams: outputStreams,
                                       expect: Self.count, name: "recv")
        defer { receiver.process.terminate() }
        // The input stream as the relay namespace's kernel sees it on rin0 (a plain joined UDP socket).
        let inputReference = try GapReceiver(lab, namespace: lab.relay, address: "198.18.1.2", streams: ["239.1.1.1:5001:1"],
                                             expect: Self.count, name: "ref-in")
        defer { inputReference.process.terminate() }

        let sender = try ChildProcess(lab.exec(lab.sender, Self.sendArguments(source: Lab.senderAddress, stream: "239.1.1.1:5001:1")),
                                      outputDirectory: lab.directory, name: "sender")
        defer { sender.terminate() }
        var outputSender: ChildProcess?
        if disturbance == .outputFlap {
            outputSender = try ChildProcess(lab.exec(lab.relay, Self.sendArguments(source: "198.18.2.1", stream: "\(referenceOut):9")),
                                            outputDirectory: lab.directory, name: "sender-out")
        }
        defer { outputSender?.terminate() }

        // Two seconds of steady traffic, then the disturbance, then the rest of the stream.
        usleep(2_000_000)
        guard sender.isRunning else { throw HarnessError("sender ended early: \(sender.stderr)") }
        let started = ContinuousClock.now
        switch disturbance {
        case .inputFlap:
            try lab.must(lab.relay, ["sh", "-c", "ip link set rin0 down && sleep 0.5 && ip link set rin0 up"])
        case .outputFlap:
            try lab.must(lab.relay, ["sh", "-c", "ip link set rout0 down && sleep 0.5 && ip link set rout0 up"])
        case .workerKill:
            let before = try daemon.stats()
            guard let pid = before.workers.first?.pid else { throw HarnessError("no worker pid in \(before.workers)") }
            guard kill(pid, SIGKILL) == 0 else { throw HarnessError("kill -9 \(pid): \(String(cString: strerror(errno)))") }
            let restarted = try waitUntil(timeout: .seconds(10)) {
                let stats = try daemon.stats()
                guard let worker = stats.workers.first else { return false }
                return worker.alive && worker.pid != pid && worker.restarts == 1 && worker.planVersion == stats.planVersion
            }
            guard restarted else { throw HarnessError("the worker was not restarted: \(try daemon.stats().workers)") }
        }
        let took = ContinuousClock.now - started
        let commandMilliseconds = Double(took.components.seconds) * 1000 + Double(took.components.attoseconds) / 1e15

        // The tooling must have done exactly what was planned, or the figures mean nothing.
        let timeout = Duration.seconds(Self.count / Self.rate + 30)
        guard let sent = sender.wait(timeout: timeout) else { throw HarnessError("sender did not finish") }
        let sendSummary = try Self.decodeSend(sent)
        guard sent.status == 0, sendSummary.errors == 0, sendSummary.sent["239.1.1.1:5001"]?.sent == Self.count else {
            throw HarnessError("sender did not send \(Self.count) datagrams without errors: \(sent)")
        }
        if let outputSender {
            guard let result = outputSender.wait(timeout: timeout) else { throw HarnessError("output reference sender did not finish") }
            // Its sends fail (ENETUNREACH) while rout0 is down: exit 1 with errors, never fewer attempts.
            let summary = try Self.decodeSend(result)
            let attempts = (summary.sent[referenceOut]?.sent ?? 0) + (summary.sent[referenceOut]?.errors ?? 0)
            guard result.status <= 1, attempts == Self.count else {
                throw HarnessError("output reference sender made \(attempts) of \(Self.count) attempts: \(result)")
            }
        }
        let output = try receiver.finish(timeout: timeout)
        let input = try inputReference.finish(timeout: timeout)
        guard let relayStream = output.received[relayed], let inputStream = input.received["239.1.1.1:5001"] else {
            throw HarnessError("receiver summaries lack a stream: \(output.received.keys) \(input.received.keys)")
        }
        #expect(relayStream.duplicates == 0 && relayStream.corrupt == 0, "relayed stream: \(relayStream)")

        let reference: GapSummary.Stream
        switch disturbance {
        case .inputFlap, .workerKill:
            reference = inputStream
        case .outputFlap:
            guard let stream = output.received[referenceOut] else { throw HarnessError("no summary for \(referenceOut)") }
            reference = stream
            #expect(inputStream.missing == 0, "the input stream lost datagrams on rin0 during an output flap: \(inputStream)")
        }
        let outage = Outage(disturbance: disturbance, relayLost: relayStream.missing ?? -1, referenceLost: reference.missing ?? -1,
                            relayGaps: relayStream.gaps ?? [], referenceGaps: reference.gaps ?? [],
                            commandMilliseconds: commandMilliseconds)
        if disturbance != .workerKill {
            // The flap itself must show in the reference: at least 400 ms of a 1,000 pps stream
            // (more when a loaded machine stretches the shell's `sleep 0.5` or the `ip` commands:
            // seen once, 1,129; the relay is measured against whatever the link really lost).
            guard outage.referenceLost >= 400, outage.referenceLost < Self.count / 2 else {
                throw HarnessError("the reference lost \(outage.referenceLost) datagrams, not a 500 ms flap's worth: \(outage)")
            }
        }
        print("link recovery: \(outage)")
        let stopped = try daemon.stop()
        #expect(stopped.status == 0, "daemon exit after SIGTERM: \(stopped)")
        var result = outage
        result.daemonLog = stopped.stderr
        return result
    }

    static func sendArguments(source: String, stream: String) -> [String] {
        ["python3", E2E.scripts + "/mcsend.py", "--source", source, "--count", String(count), "--rate", String(rate),
         "--size", "200", "--ttl", "4", "--stream", stream]
    }

    static func decodeSend(_ result: CommandResult) throws -> SendSummary {
        do { return try JSONDecoder().decode(SendSummary.self, from: Data(result.stdout.utf8)) } catch {
            throw HarnessError("sender output unreadable (\(error)): \(result)")
        }
    }
}

/// mcrecv.py --gaps output (the fields these tests read).
struct GapSummary: Decodable {
    struct Gap: Decodable, CustomStringConvertible {
        var first: Int
        var last: Int
        var count: Int
        var before_at: Double?
        var after_at: Double?
        var description: String { "\(first)...\(last)" }
    }

    struct Stream: Decodable {
        var received: Int
        var duplicates: Int
        var corrupt: Int
        var missing: Int?
        var gaps: [Gap]?
        var first_at: Double?
    }

    var received: [String: Stream]
}

/// mcrecv.py --gaps in any lab namespace, joined and ready before `init` returns.
final class GapReceiver {
    let process: ChildProcess

    init(_ lab: Lab, namespace: String, address: String, streams: [String], expect: Int, name: String) throws {
        process = try McrecvProcess.start(lab, namespace: namespace, name: name, arguments:
            ["--iface-addr", address, "--expect", String(expect), "--size", "200", "--duration", String(expect / 1000 + 20),
             "--idle", "3", "--gaps"] + streams.flatMap { ["--stream", $0] })
    }

    func finish(timeout: Duration) throws -> GapSummary {
        try McrecvProcess.finish(process, timeout: timeout)
    }
}

/// The parts of the recovery that need no namespaces.
@Suite("Link and worker recovery parts")
struct LinkRecoveryPartsTests {
    @Test("an interface is usable with IFF_UP and carrier (IFF_LOWER_UP), before linkwatch sets IFF_RUNNING")
    func usableFlags() {
        let up: UInt32 = 0x1, running: UInt32 = 0x40, lowerUp: UInt32 = 0x10000
        #expect(LinkMonitor.isUsable(flags: up | lowerUp))
        #expect(LinkMonitor.isUsable(flags: up | running | lowerUp))
        #expect(LinkMonitor.isUsable(flags: up | running))
        #expect(!LinkMonitor.isUsable(flags: up))
        #expect(!LinkMonitor.isUsable(flags: lowerUp | running))
    }

    @Test(".linkUp crosses the supervisor/worker channel")
    func linkUpMessage() throws {
        let message = SupervisorMessage.linkUp(InterfaceName("rout0")!)
        var reassembler = MessageReassembler<SupervisorMessage>()
        reassembler.append(try MessageFraming.encode(message))
        #expect(try reassembler.next() == message)
    }

    @Test("a first crash restarts the worker at once; repeated crashes back off to 5 s")
    func restartBackoff() {
        #expect(WorkerHandle.restartDelay(afterConsecutiveFailures: 0) == .zero)
        #expect(WorkerHandle.restartDelay(afterConsecutiveFailures: 1) == .milliseconds(100))
        #expect(WorkerHandle.restartDelay(afterConsecutiveFailures: 2) == .milliseconds(200))
        #expect(WorkerHandle.restartDelay(afterConsecutiveFailures: 6) == .milliseconds(3200))
        #expect(WorkerHandle.restartDelay(afterConsecutiveFailures: 7) == .seconds(5))
        #expect(WorkerHandle.restartDelay(afterConsecutiveFailures: 50) == .seconds(5))
    }
}
