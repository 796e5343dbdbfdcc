import Foundation
import Glibc
import CLinuxNet
import LinuxIO
import RelayControl
import RelayCore
import Testing

@Suite("DataPlane ingress and lifecycle", .serialized,
       .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
struct DataPlaneIngressTests {
    /// Two sockets in one PACKET_FANOUT group on the same interface: every frame reaches
    /// exactly one of them (none twice, none lost), across several flows.
    @Test("two sockets in one fanout group receive each frame exactly once")
    func fanoutDeliversOnce() throws {
        let lab = try DataPlaneLab(tag: "f")
        defer { lab.down() }
        let perStream = 150
        let streams = (0..<4).map { "239.1.2.\(10 + $0):\(5000 + $0):\($0 + 1)" }
        let interface = DataPlaneRules.interface("rin0")
        let sockets = try DataPlaneTestSupport.inNamespace(lab.relay) {
            [try IngressSocket.open(interface: interface, fanoutGroup: 0x1234),
             try IngressSocket.open(interface: interface, fanoutGroup: 0x1234)]
        }
        defer { for socket in sockets { socket.close() } }
        try lab.send(streams: streams, count: perStream, rate: 3000, size: 64)

        // Each frame is an IPv4 header (20 bytes, no options from a plain socket), UDP (8),
        // then the mcstream payload: stream id (4 bytes BE) and sequence (8 bytes BE).
        var seen: [UInt64: Int] = [:]
        var perSocket = [0, 0]
        var buffer = [UInt8](repeating: 0, count: 2048)
        func drain() {
            for (index, socket) in sockets.enumerated() {
                while true {
                    let count = recv(socket.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                    guard count > 0 else { break }
                    guard count >= 40, buffer[9] == 17 else { continue }
                    let payload = 28
                    let stream = buffer[payload..<payload + 4].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    let sequence = buffer[payload + 4..<payload + 12].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    seen[stream << 32 | sequence, default: 0] += 1
                    perSocket[index] += 1
                }
            }
        }
        // Read until every frame sent has arrived (bounded); a last read then catches any extra copy.
        let arrived = waitUntil(timeout: .seconds(5)) { drain(); return perSocket.reduce(0, +) >= 4 * perStream }
        drain()
        #expect(arrived, "only \(perSocket.reduce(0, +)) of \(4 * perStream) frames arrived within 5 s (per socket: \(perSocket))")
        #expect(perSocket.reduce(0, +) == 4 * perStream, "per socket: \(perSocket)")
        #expect(seen.count == 4 * perStream)
        #expect(seen.values.allSatisfy { $0 == 1 }, "duplicated frames: \(seen.filter { $0.value > 1 }.count)")
    }

    /// A socket joining a fanout group while traffic flows (a restarted worker, a second worker
    /// taking an interface) must not see a frame the group also delivers: between its `bind`
    /// and its `PACKET_FANOUT` join it is a standalone listener. Joins a second socket again and
    /// again under ~12k frames/s (hundreds of times) and looks for any frame seen twice. Without the accept-nothing filter
    /// until the join, 300 joins found 1-3 duplicated frames in 2 of 3 runs here.
    @Test("a socket joining a fanout group under traffic never duplicates a frame")
    func fanoutJoinUnderTrafficNoDuplicates() throws {
        let lab = try DataPlaneLab(tag: "j")
        defer { lab.down() }
        let interface = DataPlaneRules.interface("rin0")
        let group: UInt16 = 0x4321
        let member = try DataPlaneTestSupport.inNamespace(lab.relay) { try IngressSocket.open(interface: interface, fanoutGroup: group) }
        defer { member.close() }
        // 16 flows, not 4: the fanout hashes each flow to one member with a seed drawn at boot,
        // and with 4 the joiner got none of them on one boot in 16 (CI, 2026-12-07: "by joiners 0"),
        // so the test measured nothing; with 16 that is one boot in 65536.
        let streams = (0..<16).map { "239.1.3.\(10 + $0):\(5000 + $0):\($0 + 1)" }
        var arguments = ["ip", "netns", "exec", lab.sender, "python3", DataPlaneTestSupport.script("mcsend.py"),
                         "--source", DataPlaneLab.senderAddress, "--count", "2500", "--rate", "750", "--size", "64"]
        for stream in streams { arguments += ["--stream", stream] }
        let sender = try DataPlaneTestSupport.start(arguments)

        /// Reads every queued frame: (stream << 32 | sequence) of each mcsend datagram.
        @Sendable func drain(_ fd: Int32) -> [UInt64] {
            var keys: [UInt64] = []
            var buffer = [UInt8](repeating: 0, count: 2048)
            while true {
                let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                guard count > 0 else { return keys }
                guard count >= 40, buffer[9] == 17 else { continue }
                let stream = buffer[28..<32].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                let sequence = buffer[32..<40].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                keys.append(stream << 32 | sequence)
            }
        }
        // Join and leave again and again while the traffic lasts (~3.3 s from its first frame).
        let (joins, joinerKeys, memberKeys) = try DataPlaneTestSupport.inNamespace(lab.relay) {
            var joinerKeys: [UInt64] = []
            var memberKeys: [UInt64] = []
            let started = ContinuousClock.now
            while memberKeys.isEmpty && ContinuousClock.now - started < .seconds(10) {
                var waiting = pollfd(fd: member.fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&waiting, 1, 100)
                memberKeys += drain(member.fd)
            }
            let trafficSeen = ContinuousClock.now
            var joins = 0
            while ContinuousClock.now - trafficSeen < .milliseconds(2_800) {
                let joiner = try IngressSocket.open(interface: interface, fanoutGroup: group)
                usleep(1_000)  // the stimulus: the joiner stays in the group for 1 ms under traffic
                joinerKeys += drain(joiner.fd)
                joiner.close()
                memberKeys += drain(member.fd)
                joins += 1
            }
            return (joins, joinerKeys, memberKeys)
        }
        let sent = try sender.finish(timeout: 30)
        // The sender has exited: read the member's queue until nothing more comes for 200 ms.
        var lastKeys: [UInt64] = []
        while true {
            var waiting = pollfd(fd: member.fd, events: Int16(POLLIN), revents: 0)
            guard poll(&waiting, 1, 200) > 0 else { break }
            let keys = drain(member.fd)
            guard !keys.isEmpty else { break }
            lastKeys += keys
        }
        var seen: [UInt64: Int] = [:]
        for key in joinerKeys + memberKeys + lastKeys { seen[key, default: 0] += 1 }
        // The test measured something: the sender ran, the member and the joiners got frames.
        let report = try DataPlaneLab.json(sent.stdout, from: "mcsend")
        let perStream = (report["sent"] as? [String: [String: Any]] ?? [:]).values.map { $0["sent"] as? Int ?? 0 }
        #expect(perStream == [Int](repeating: 2500, count: 16) && report["errors"] as? Int == 0, "mcsend: \(report)")
        print("fanout join under traffic: frames seen \(seen.count), by joiners \(joinerKeys.count), joins \(joins)")
        #expect(seen.count > 1000 && !joinerKeys.isEmpty && joins >= 100,
                "frames seen \(seen.count), by joiners \(joinerKeys.count), joins under traffic \(joins)")
        #expect(seen.values.allSatisfy { $0 == 1 }, "\(seen.filter { $0.value > 1 }.count) frames delivered twice in \(joins) joins")
    }

    /// A plan naming an interface that does not exist yet: the worker says so, acknowledges
    /// the plan, and opens the interface once it appears (checked by forwarding through it).
    @Test("a missing input interface is reported and picked up when it appears", arguments: IngressMode.allCases)
    func missingInterfaceIsRetried(mode: IngressMode) throws {
        let lab = try DataPlaneLab(tag: mode == .uring ? "mu" : "mr")
        defer { lab.down() }
        let count = 100, size = 80
        let rule = try DataPlaneRules.rule("late0:239.1.2.3:5000", ["rout0:239.9.1.1:6000:4"])
        let plan = WorkerPlan(worker: WorkerID(0), version: 1,
                              ingress: [IngressAssignment(interface: DataPlaneRules.interface("late0"), fanoutGroup: 9)],
                              rules: [rule])
        let worker = try WorkerUnderTest(namespace: lab.relay, mode: mode)
        _ = try worker.next()
        try worker.install(plan)
        #expect(worker.problems.contains { $0.contains("input interface late0") }, "\(worker.problems)")

        // Bring a second veth pair up between sender and relay, with the name the plan uses.
        try DataPlaneTestSupport.run(["ip", "-n", lab.sender, "link", "add", "late1", "type", "veth", "peer", "name", "late0", "netns", lab.relay])
        try DataPlaneTestSupport.run(["ip", "-n", lab.sender, "addr", "add", "198.18.4.1/24", "dev", "late1"])
        try DataPlaneTestSupport.run(["ip", "-n", lab.sender, "link", "set", "late1", "up"])
        try DataPlaneTestSupport.run(["ip", "-n", lab.relay, "link", "set", "late0", "up"])
        try DataPlaneTestSupport.run(["ip", "-n", lab.sender, "route", "replace", "239.1.2.3/32", "dev", "late1"])
        // The worker's retry opens an AF_PACKET socket on late0 once it exists.
        try lab.waitForPacketSocket(on: "late0", timeout: .seconds(10))

        let receiver = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver0Address,
                                             streams: ["239.9.1.1:6000:1"], expect: count, size: size)
        defer { receiver.terminate() }
        var arguments = ["ip", "netns", "exec", lab.sender, "python3", DataPlaneTestSupport.script("mcsend.py"),
                         "--source", "198.18.4.1", "--count", "\(count)", "--rate", "2000", "--size", "\(size)"]
        arguments += ["--stream", "239.1.2.3:5000:1"]
        try DataPlaneTestSupport.run(arguments)
        let output = try receiver.finish(timeout: 30, check: false)
        #expect(output.status == 0, "mcrecv: \(output.stdout) \(output.stderr)")
        #expect(try worker.statistics().rules.first?.accepted.packets == UInt64(count))
        #expect(try worker.shutdown() == .shutdown)
    }

    /// An input interface going down and up keeps its socket (and fanout membership); an
    /// output interface that does not exist yet turns sends into counted failures (never a
    /// stall), and is picked up once it appears.
    @Test("survives an input link flap and a late output interface", arguments: IngressMode.allCases)
    func linkFlapAndLateOutput(mode: IngressMode) throws {
        let lab = try DataPlaneLab(tag: mode == .uring ? "lu" : "lr")
        defer { lab.down() }
        let count = 100, size = 64
        let rule = try DataPlaneRules.rule("rin0:239.1.2.3:5000", ["rout0:239.9.1.1:6000:4", "late2:239.9.1.2:6000:4"])
        let worker = try WorkerUnderTest(namespace: lab.relay, mode: mode)
        _ = try worker.next()
        try worker.install(WorkerPlan(worker: WorkerID(0), version: 1,
                                      ingress: [IngressAssignment(interface: DataPlaneRules.interface("rin0"), fanoutGroup: 77)],
                                      rules: [rule]))
        #expect(worker.problems.contains { $0.contains("output interface late2") }, "\(worker.problems)")

        try DataPlaneTestSupport.run(["ip", "-n", lab.relay, "link", "set", "rin0", "down"])
        #expect(try worker.waitForProblem(containing: "input interface rin0 is down", timeout: 5),
                "the worker did not report rin0 down within 5 s: \(worker.problems)")
        try DataPlaneTestSupport.run(["ip", "-n", lab.relay, "link", "set", "rin0", "up"])
        try waitUntilUp(lab.relay, "rin0")
        try waitUntilUp(lab.sender, "snd0")

        let receiver = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver0Address,
                                             streams: ["239.9.1.1:6000:1"], expect: count, size: size)
        defer { receiver.terminate() }
        try lab.send(streams: ["239.1.2.3:5000:1"], count: count, rate: 2000, size: size)
        let output = try receiver.finish(timeout: 30, check: false)
        #expect(output.status == 0, "after the flap: \(output.stdout) \(output.stderr)")
        var outputs = try #require(try worker.statistics().rules.first?.outputs)
        #expect(outputs.map(\.packets) == [UInt64(count), UInt64(count)])
        #expect(outputs.map(\.sendErrors) == [0, UInt64(count)], "the missing output's copies are counted failures")

        try DataPlaneTestSupport.run(["ip", "-n", lab.relay, "link", "add", "late2", "type", "veth", "peer", "name", "late3", "netns", lab.receiver])
        try DataPlaneTestSupport.run(["ip", "-n", lab.relay, "link", "set", "late2", "up"])
        try DataPlaneTestSupport.run(["ip", "-n", lab.receiver, "addr", "add", "198.18.5.2/24", "dev", "late3"])
        try DataPlaneTestSupport.run(["ip", "-n", lab.receiver, "link", "set", "late3", "up"])
        try waitUntilUp(lab.receiver, "late3")
        // The worker's retry reopens the egress socket for late2: probe with single datagrams
        // (before the receiver joins, so it never sees them) until one leaves without a send error.
        var probes = 0
        var probed = try #require(try worker.statistics().rules.first?.outputs)
        let lateWorks = try waitUntil(timeout: .seconds(10)) {
            try lab.send(streams: ["239.1.2.3:5000:1"], count: 1, rate: 0, size: size, startSeq: 1_000_000 + probes)
            probes += 1
            let now = try #require(try worker.statistics().rules.first?.outputs)
            defer { probed = now }
            return now[1].packets > probed[1].packets && now[1].sendErrors == probed[1].sendErrors
        }
        #expect(lateWorks, "late2 still refused sends 10 s after it appeared (\(probes) probes): \(probed)")
        let late = try lab.startReceiver(interfaceAddress: "198.18.5.2", streams: ["239.9.1.2:6000:1"],
                                         expect: count, size: size, startSeq: count)
        defer { late.terminate() }
        try lab.send(streams: ["239.1.2.3:5000:1"], count: count, rate: 2000, size: size, startSeq: count)
        let lateOutput = try late.finish(timeout: 30, check: false)
        #expect(lateOutput.status == 0, "late output: \(lateOutput.stdout) \(lateOutput.stderr)")
        outputs = try #require(try worker.statistics().rules.first?.outputs)
        #expect(outputs[1].sendErrors == probed[1].sendErrors, "no failures once the interface exists: \(outputs) after \(probed)")
        #expect(outputs[1].packets == probed[1].packets + UInt64(count), "\(outputs) after \(probed)")
        #expect(try worker.shutdown() == .shutdown)
    }

    private func waitUntilUp(_ namespace: String, _ interface: String) throws {
        let up = try waitUntil(timeout: .seconds(5)) {
            try DataPlaneTestSupport.run(["ip", "netns", "exec", namespace, "cat", "/sys/class/net/\(interface)/operstate"]).stdout.hasPrefix("up")
        }
        guard up else { throw DataPlaneTestSupport.HarnessError("\(interface) in \(namespace) did not come up within 5 s") }
    }

    /// Loss before the Forwarder is never silent: with a tiny receive queue and an unpaced
    /// burst, every frame that reached the input interface is either accepted by the rule or
    /// counted as dropped from the receive queue. (Frames the kernel drops before any packet tap
    /// sees them — the per-CPU backlog under a burst — never reached the relay; rin0's
    /// rx_packets counts only frames that did.)
    @Test("frames the kernel drops are reported", arguments: IngressMode.allCases)
    func kernelDropsAreReported(mode: IngressMode) throws {
        let lab = try DataPlaneLab(tag: mode == .uring ? "ku" : "kr")
        defer { lab.down() }
        let count = 3000
        let rule = try DataPlaneRules.rule("rin0:239.1.2.3:5000", ["rout0:239.9.1.1:6000:4"])
        let worker = try WorkerUnderTest(namespace: lab.relay, mode: mode, receiveBufferBytes: 4096)
        _ = try worker.next()
        try worker.install(WorkerPlan(worker: WorkerID(0), version: 1,
                                      ingress: [IngressAssignment(interface: DataPlaneRules.interface("rin0"), fanoutGroup: nil)],
                                      rules: [rule]))
        func received() throws -> UInt64 {
            let text = try DataPlaneTestSupport.run(["ip", "netns", "exec", lab.relay, "cat", "/sys/class/net/rin0/statistics/rx_packets"]).stdout
            return try #require(UInt64(text.filter(\.isNumber)), "rx_packets of rin0: \(text)")
        }
        let before = try received()
        try lab.send(streams: ["239.1.2.3:5000:1"], count: count, rate: 0, size: 1000)
        let arrived = try received() - before
        #expect(arrived > 0 && arrived <= UInt64(count), "frames that reached rin0: \(arrived) of \(count) sent")

        var accepted: UInt64 = 0
        var queueDrops: UInt64 = 0
        _ = try waitUntil(timeout: .seconds(5)) {  // the worker may still be reading its queue
            let statistics = try worker.statistics()
            accepted = try #require(statistics.rules.first?.accepted.packets)
            queueDrops = statistics.ingressQueueDrops
            return accepted + queueDrops >= arrived
        }
        print("kernel drop accounting (\(mode)): sent \(count), reached rin0 \(arrived), accepted \(accepted), receive-queue drops \(queueDrops)")
        #expect(queueDrops > 0, "a 4 KiB receive queue under an unpaced burst must overflow, or this test proves nothing")
        #expect(accepted + queueDrops == arrived, "\(worker.problems)")
        // The worker also reports drops as a problem, on a 1 s tick.
        #expect(try worker.waitForProblem(containing: "the kernel dropped", timeout: 5),
                "the drops were not reported as a problem within 5 s: \(worker.problems)")
        #expect(try worker.shutdown() == .shutdown)
    }

    /// The supervisor dying closes the channel: the worker must end, not linger.
    @Test("the worker ends when the channel closes", arguments: IngressMode.allCases)
    func channelCloseEndsWorker(mode: IngressMode) throws {
        let lab = try DataPlaneLab(tag: mode == .uring ? "cu" : "cr")
        defer { lab.down() }
        let worker = try WorkerUnderTest(namespace: lab.relay, mode: mode)
        guard case .ready? = try worker.next() else { Issue.record("no ready message"); return }
        let rule = try DataPlaneRules.rule("rin0:239.1.2.3:5000", ["rout0:239.9.1.1:6000:4"])
        try worker.install(WorkerPlan(worker: WorkerID(0), version: 3,
                                      ingress: [IngressAssignment(interface: DataPlaneRules.interface("rin0"), fanoutGroup: nil)],
                                      rules: [rule]))
        #expect(try worker.closeChannel() == .channelClosed)

        // A message and the end of the stream arriving together: the message is handled, and the
        // end is not missed (with io_uring the channel poll fires once for both).
        let second = try WorkerUnderTest(namespace: lab.relay, mode: mode, preload: [.statisticsRequest(requestID: 1)],
                                         endAfterPreload: true)
        guard case .ready? = try second.next() else { Issue.record("no ready message"); return }
        guard case .statistics(1, _)? = try second.next() else { Issue.record("the request before the end was not answered"); return }
        #expect(try second.join() == .channelClosed)

        // Bytes that are not a message: the worker says so and ends (status 1).
        let third = try WorkerUnderTest(namespace: lab.relay, mode: mode)
        _ = try third.next()
        let garbage: [UInt8] = [0, 0, 0, 3] + Array("{x}".utf8)
        _ = garbage.withUnsafeBytes { Glibc.send(third.supervisorFD, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        let exit = try third.join()
        guard case .channelFailed = exit else { Issue.record("expected channelFailed, got \(exit)"); return }
        #expect(exit.status == 1)
    }
}

@Suite("DataPlane settings")
struct DataPlaneSettingsTests {
    @Test("MCRELAY_INGRESS values")
    func ingressModeSetting() throws {
        #expect(try IngressMode.fromEnvironment(nil).get() == .default)
        #expect(try IngressMode.fromEnvironment("").get() == .default)
        #expect(try IngressMode.fromEnvironment("uring").get() == .uring)
        #expect(try IngressMode.fromEnvironment("recvmmsg").get() == .recvmmsg)
        guard case let .failure(error) = IngressMode.fromEnvironment("epoll") else { Issue.record("accepted epoll"); return }
        #expect(error.description.contains("MCRELAY_INGRESS=\"epoll\""))
    }
}
