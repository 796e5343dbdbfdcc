import Foundation
import Glibc
import RelayControl
import Testing

/// Receivers behind a Linux bridge that snoops IGMP, with mcrelay as the segment's querier. The
/// relay forwards one stream (a static output, rin0 239.1.30.1:5030 -> rout0 239.30.0.1:6030)
/// into the bridge; three Linux hosts hang off it:
///
///     relay rout0 ---- rcv0 [br0 in the lab's receiver namespace] b1 ---- h1 (joins, stays)
///                                                                  b2 ---- h2 (never joins)
///                                                                  b3 ---- h3 (joins, later leaves)
///
/// A frame reader (AF_PACKET, no filter) on each host's interface counts what the bridge
/// delivered to that port, datagram by datagram, against what mcsend sent.
///
/// Bridge settings (the test's own switch, in the lab's receiver namespace): `mcast_snooping 1`
/// and `mcast_querier 0` (the kernel's defaults, written out), and `mcast_membership_interval`
/// 500 (5 s instead of 260 s) so that "a joined host keeps receiving past the membership
/// interval" fits in a short test: it holds only because the host answers the relay's queries
/// (query interval 2 s, response 1 s). rcv0 loses its address (it is a bridge port now).
/// The daemon also serves `--metrics`: the router's series are scraped at the end.
@Suite("Linux bridge snooping with mcrelay as querier", .serialized,
       .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
struct BridgeSnoopingTests {
    static let group = "239.30.0.1"
    static let port: UInt16 = 6030
    static let membershipInterval = 5.0
    static let queryResponseInterval = 1.0
    static let lastMemberQueryTime = 2 * 0.5  // robustness 2 x last_member_query_interval 0.5 s

    static let hostScript = """
        import socket, sys, time, os
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        mreq = socket.inet_aton(sys.argv[1]) + socket.inet_aton(sys.argv[2])
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        print('joined', flush=True)
        while not os.path.exists(sys.argv[3]): time.sleep(0.02)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
        print('left', time.monotonic(), flush=True)
        time.sleep(60)
        """

    struct Host {
        var namespace: String
        var interface: String
        var address: String
    }

    @Test("a never-joined host is flooded until the bridge sees mcrelay's queries, then gets nothing; a joined host keeps receiving past the membership interval; a leave ends delivery within the last member query time",
          .timeLimit(.minutes(3)))
    func snoopingBridgeFollowsMcrelaysQueries() throws {
        let lab = try Lab("bsn")
        let hosts = (1...3).map { Host(namespace: "\(lab.prefix)-h\($0)", interface: "h\($0)0", address: "198.18.2.1\($0)") }
        defer {
            for host in hosts { _ = try? run(["ip", "netns", "del", host.namespace], in: lab.directory, timeout: .seconds(10)) }
            lab.down()
        }
        let switchNS = lab.receiver
        try lab.must(switchNS, ["ip", "addr", "flush", "dev", "rcv0"])
        try lab.must(switchNS, ["ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "1", "mcast_querier", "0",
                                "mcast_membership_interval", "\(Int(Self.membershipInterval * 100))"])
        try lab.must(switchNS, ["ip", "link", "set", "dev", "rcv0", "master", "br0"])
        for (index, host) in hosts.enumerated() {
            _ = try? run(["ip", "netns", "del", host.namespace], in: lab.directory, timeout: .seconds(10))
            let added = try run(["ip", "netns", "add", host.namespace], in: lab.directory)
            guard added.status == 0 else { throw HarnessError("ip netns add \(host.namespace): \(added)") }
            try lab.must(switchNS, ["ip", "link", "add", "b\(index + 1)", "type", "veth", "peer", "name", host.interface, "netns", host.namespace])
            try lab.must(switchNS, ["ip", "link", "set", "dev", "b\(index + 1)", "master", "br0"])
            try lab.must(switchNS, ["ip", "link", "set", "dev", "b\(index + 1)", "up"])
            try lab.must(host.namespace, ["ip", "addr", "add", host.address + "/24", "dev", host.interface])
            try lab.must(host.namespace, ["ip", "link", "set", "dev", host.interface, "up"])
            try lab.must(host.namespace, ["ip", "link", "set", "dev", "lo", "up"])
        }
        try lab.must(switchNS, ["ip", "link", "set", "dev", "br0", "up"])
        for host in hosts { try lab.waitForCarrier(host.namespace, host.interface) }
        try lab.waitForCarrier(lab.relay, "rout0")

        let readers = try hosts.map { try WireReader(namespace: $0.namespace, interface: $0.interface) }
        let script = lab.directory + "/host.py"
        try Self.hostScript.write(toFile: script, atomically: true, encoding: .utf8)
        let leaveFile = { (n: Int) in lab.directory + "/leave-h\(n)" }
        var members: [ChildProcess] = []
        defer { members.forEach { $0.terminate() } }
        for n in [1, 3] {
            let host = hosts[n - 1]
            members.append(try ChildProcess(lab.exec(host.namespace, ["python3", script, Self.group, host.address, leaveFile(n)]),
                                            outputDirectory: lab.directory, name: "member-h\(n)"))
        }
        let joined = waitUntil(timeout: .seconds(10)) { members.allSatisfy { $0.stdout.contains("joined") || !$0.isRunning } }
        guard joined, members.allSatisfy(\.isRunning) else {
            throw HarnessError("host members did not join: \(members.map { $0.stderr })")
        }

        let rule = #""rules": [{"name": "s", "in": "rin0:239.1.30.1:5030", "out": ["rout0:\#(Self.group):\#(Self.port)"]}]"#
        let stream = "239.1.30.1:5030:30"

        // 1. No querier on the segment yet (the relay forwards but does not query): the bridge
        //    floods the group to every port, also to h2 that never joined.
        let plain = lab.directory + "/plain.json"
        try "{\(rule)}".write(toFile: plain, atomically: true, encoding: .utf8)
        var daemon = try RelayDaemon(lab, config: plain)
        try daemon.waitSettled()
        readers.forEach { $0.drain(); $0.forget() }
        let baselineSent = try sent(lab.send(streams: [stream], count: 400, rate: 400, size: 64))
        readers.forEach { $0.watch(for: .milliseconds(500)) }
        let baseline = readers.map { $0.udp(to: Self.group, port: Self.port).count }
        let baselineQueries = readers.map { $0.queries.count }
        print("bridge baseline (no querier): sent \(baselineSent); arrived h1 \(baseline[0]), h2 (never joined) \(baseline[1]), h3 \(baseline[2]); queries seen \(baselineQueries)")
        #expect(baselineSent == 400)
        #expect(baseline == [baselineSent, baselineSent, baselineSent], "a snooping bridge without a querier floods every port")
        #expect(baselineQueries == [0, 0, 0], "a query on the segment before the relay queried: \(readers.map(\.queries))")
        _ = try daemon.stop()

        // 2. The relay as querier (same rule): once the bridge has seen its query and the
        //    members' answers, it forwards the group only to b1 and b3.
        let querying = lab.directory + "/querier.json"
        try #"{\#(rule), "queriers": [{"interface": "rout0", "families": ["ipv4"], "query_interval": 2, "query_response_interval": 1, "last_member_query_interval": 0.5}]}"#
            .write(toFile: querying, atomically: true, encoding: .utf8)
        daemon = try RelayDaemon(lab, config: querying, extraArguments: ["--metrics", MetricsEndToEndTests.address])
        defer { _ = try? daemon.stop() }
        let queriedAt = ContinuousClock.now
        var mdb = ""
        let learned = try waitUntil(timeout: .seconds(10)) {
            readers.forEach { $0.drain() }
            mdb = try lab.must(switchNS, ["bridge", "mdb", "show", "dev", "br0"]).stdout
            let ports = Set(mdb.split(separator: "\n").filter { $0.contains(Self.group) }.compactMap { line in
                line.split(separator: " ").drop { $0 != "port" }.dropFirst().first.map(String.init)
            })
            return ports == ["b1", "b3"] && readers[1].queries.contains { $0.source == "198.18.2.1" }
        }
        #expect(learned, "the bridge did not learn b1 and b3 for \(Self.group) within 10 s of the relay's start:\n\(mdb)\nqueries at h2: \(readers[1].queries)")
        print("bridge: mdb after the relay's queries (\(ContinuousClock.now - queriedAt)):\n\(mdb)")
        // The bridge keeps flooding for the first query's max response time after it first sees
        // a querier (its other-query delay timer: hosts get the time to report; seen here as
        // about 0.8 s of flooding to h2 when the stream started at once): wait that out.
        let firstQuery = readers[1].queries.first { $0.source == "198.18.2.1" }?.at ?? .now
        let settle = firstQuery + .milliseconds(Int(Self.queryResponseInterval * 1000) + 500)
        while ContinuousClock.now < settle { readers.forEach { $0.drain() }; usleep(20_000) }

        // 3. A stream across two membership intervals and more, then h3 leaves.
        readers.forEach { $0.forget() }
        let rate = 100, count = 2000  // 20 s
        let sender = try RunningProcess(["ip", "netns", "exec", lab.sender, "python3", E2E.scripts + "/mcsend.py",
                                         "--source", Lab.senderAddress, "--count", "\(count)", "--rate", "\(rate)", "--size", "64",
                                         "--stream", stream], outputDirectory: lab.directory)
        defer { sender.terminate() }
        let started = ContinuousClock.now
        let holdFor = Duration.seconds(2 * Self.membershipInterval + 2)
        while ContinuousClock.now - started < holdFor {
            readers.forEach { $0.drain() }
            usleep(20_000)
        }
        try Data().write(to: URL(fileURLWithPath: leaveFile(3)))
        let leftAt = ContinuousClock.now
        let midway = readers.map { $0.udp(to: Self.group, port: Self.port).count }
        // Keep reading while the stream runs: the readers stamp frames when they read them.
        let streamEnd = ContinuousClock.now + .seconds(40)
        while sender.child.isRunning && ContinuousClock.now < streamEnd {
            readers.forEach { $0.drain() }
            usleep(20_000)
        }
        let sentResult = try sender.finish(timeout: 5)
        readers.forEach { $0.watch(for: .milliseconds(500)) }
        let streamSent = try sent(Lab.json(sentResult.stdout, from: "mcsend"))
        let arrived = readers.map { $0.udp(to: Self.group, port: Self.port) }
        let h3After = arrived[2].filter { $0 > leftAt }
        let offsets = { (times: [ContinuousClock.Instant]) in times.map { String(format: "%.2f", QuerierElectionTests.seconds($0 - leftAt)) } }
        let leaveLatency = h3After.last.map { QuerierElectionTests.seconds($0 - leftAt) } ?? 0
        let state = try daemon.cli(["igmp", "interfaces", "--json"]).stdout
        print("bridge with the relay as querier: sent \(streamSent) over \(count / rate) s; h1 (joined) \(arrived[0].count), h2 (never joined) \(arrived[1].count), h3 \(arrived[2].count) (\(midway[2]) in the first \(holdFor), then left: its last datagram \(String(format: "%.2f", leaveLatency)) s after the leave, \(h3After.count) after it); last member query time \(Self.lastMemberQueryTime) s; frame reader drops \(readers.map(\.kernelDrops)); relay: \(state)")
        #expect(streamSent == count)
        #expect(arrived[0].count == streamSent, "h1 answers the queries: it must get every datagram across \(2 * Self.membershipInterval + 2) s and beyond (membership interval \(Self.membershipInterval) s)")
        #expect(arrived[1].isEmpty, "h2 never joined: the bridge must not deliver once it has seen the querier; got \(arrived[1].count) at \(offsets(arrived[1])) s from h3's leave")
        #expect(midway[2] == midway[0], "h3 got \(midway[2]) before its leave, h1 \(midway[0])")
        #expect(leaveLatency <= Self.lastMemberQueryTime + 0.5, "h3 still received \(String(format: "%.2f", leaveLatency)) s after its leave")
        #expect(arrived[2].count < streamSent - 500, "h3 must stop receiving after its leave")
        #expect(readers.allSatisfy { $0.kernelDrops == 0 })
        let relayQueries = readers[1].queries.filter { $0.source == "198.18.2.1" }
        print("bridge: relay queries seen at h2 during the stream: \(relayQueries.filter(\.isGeneral).count) general, group-specific at \(offsets(relayQueries.filter { !$0.isGeneral }.map(\.at))) s from the leave; h3's datagrams after the leave at \(offsets(h3After).prefix(3))...\(offsets(h3After).suffix(8)); h3's reports at \(offsets(readers[2].reports.filter { $0.source == hosts[2].address }.map(\.at)))")
        print("bridge: mdb at the end:\n" + ((try? lab.must(switchNS, ["bridge", "mdb", "show", "dev", "br0"]).stdout) ?? "?"))
        #expect(relayQueries.contains { $0.group == Self.group }, "no group-specific query for \(Self.group) after h3's leave reached the segment")

        // The router's metrics, scraped: they agree with `mcrelay igmp interfaces` read before
        // and after the scrape (the endpoint refreshes once a second, queries go on meanwhile).
        let before = try QuerierElectionTests.relayInterface(daemon)
        // The endpoint serves a snapshot refreshed once a second: scrape only once a snapshot
        // taken after `before` must be served (found in CI: a scrape 36 reports, `before` 37).
        Thread.sleep(forTimeInterval: 2.1)  // two refreshes: the timer can run late under load
        let series = { (name: String, extra: String) in "mcrelay_listener_\(name){interface=\"rout0\",family=\"ipv4\"\(extra)}" }
        let general = series("queries_sent_total", ",kind=\"general\"")
        let metrics = try MetricsEndToEndTests.scrape(lab) { ($0[general] ?? 0) >= Double(before.generalQueriesSent) }
        let after = try QuerierElectionTests.relayInterface(daemon)
        let listenerMetrics = metrics.filter { $0.key.hasPrefix("mcrelay_listener_") && $0.value != 0 }.sorted { $0.key < $1.key }
        print("bridge: router metrics (non-zero): \(listenerMetrics.map { "\($0.key) \(Int($0.value))" })")
        func within(_ name: String, _ extra: String = "", _ value: (ListenersView.Interface) -> UInt64) -> Bool {
            guard let scraped = metrics[series(name, extra)] else { return false }
            return Double(value(before)) <= scraped && scraped <= Double(value(after))
        }
        #expect(within("queries_sent_total", ",kind=\"general\"") { $0.generalQueriesSent }, "\(before) \(after)")
        #expect(within("queries_sent_total", ",kind=\"specific\"") { $0.specificQueriesSent })
        #expect(within("reports_received_total", ",version=\"IGMPv3\"") { $0.reportsReceived["IGMPv3"] ?? 0 })
        #expect(within("querier_changes_total") { $0.querierChanges })
        #expect(metrics[series("is_querier", "")] == 1)
        #expect(metrics[series("groups", "")] == Double(after.groups))
        #expect(metrics["mcrelay_listener_refusals_total{reason=\"badChecksum\"}"] == 0)
        #expect(after.specificQueriesSent >= 2, "the leave must have caused group-specific queries: \(after)")
    }

    private func sent(_ summary: [String: Any]) throws -> Int {
        guard let streams = summary["sent"] as? [String: Any], let first = streams.values.first as? [String: Any],
              let sent = first["sent"] as? Int else { throw HarnessError("mcsend summary without a sent count: \(summary)") }
        return sent
    }
}
