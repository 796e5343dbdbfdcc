import Foundation
import RelayControl
import Testing

/// The daemon as IGMP proxy (config `proxies`): upstream rin0 (towards snd0), downstream rout0
/// and rout1 (towards the host's rcv0 and rcv1, with listener tracking created implicitly). A
/// Linux host joins 239.7.7.7 on rcv0 with an ordinary socket and leaves again; the relay must
/// hold the group on rin0 (its helper-socket membership, which the kernel reports upstream) only
/// in between. What is checked is the kernel's own membership list (`ip maddr`) in the relay's
/// namespace and the IGMPv3 reports that reach the sender's namespace on snd0. Forwarding of the
/// proxied traffic is not part of this (not built yet), so no datagrams are counted here.
@Suite(.serialized) struct EndToEndProxyTests {
    static let hostScript = """
        import socket, sys, time, os
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        mreq = socket.inet_aton('239.7.7.7') + socket.inet_aton('198.18.2.2')
        while not os.path.exists(sys.argv[1]): time.sleep(0.05)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        print('joined', flush=True)
        while not os.path.exists(sys.argv[2]): time.sleep(0.05)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
        print('left', flush=True)
        time.sleep(30)
        """

    /// Counts IGMPv3 reports from rin0 on snd0 that name 239.7.7.7, by record type, twice a
    /// second. A raw IGMP socket sees the IGMP packets the namespace accepts; the kernel accepts
    /// those to 224.0.0.22 only when it is a member, so the counter joins it (a membership of
    /// the test host's own socket, as a router listening for reports has).
    static let reportCounter = """
        import socket, sys, time
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton('224.0.0.22') + socket.inet_aton('198.18.1.1'))
        s.settimeout(0.2)
        counts = {}
        last = 0
        while True:
            try:
                data, addr = s.recvfrom(65535)
                ihl = (data[0] & 15) * 4
                igmp = data[ihl:]
                if igmp and igmp[0] == 0x22:
                    n = int.from_bytes(igmp[6:8], 'big'); off = 8
                    for _ in range(n):
                        rtype, aux, nsrc = igmp[off], igmp[off + 1], int.from_bytes(igmp[off + 2:off + 4], 'big')
                        group = socket.inet_ntoa(igmp[off + 4:off + 8])
                        if group == '239.7.7.7' and addr[0] == '198.18.1.2':
                            counts[rtype] = counts.get(rtype, 0) + 1
                        off += 8 + 4 * nsrc + 4 * aux
            except socket.timeout:
                pass
            if time.time() - last > 0.5:
                print(' '.join('%d=%d' % kv for kv in sorted(counts.items())) or 'none', flush=True)
                last = time.time()
        """

    func joinedUpstream(_ lab: Lab) throws -> Bool {
        let result = try lab.must(lab.relay, ["ip", "maddr", "show", "dev", "rin0"])
        return result.stdout.contains("239.7.7.7")
    }

    @Test(.timeLimit(.minutes(2)))
    func joinsUpstreamOnlyWhileADownstreamHostListens() throws {
        let lab = try Lab("prx")
        defer { lab.down() }
        let config = lab.directory + "/proxy.json"
        try #"{"proxies": [{"upstream": "rin0", "downstream": ["rout0", "rout1"], "groups": ["239.0.0.0/8"]}]}"#
            .write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try RelayDaemon(lab, config: config)
        defer { _ = try? daemon.stop() }
        let counterScript = lab.directory + "/reports.py"
        try Self.reportCounter.write(toFile: counterScript, atomically: true, encoding: .utf8)
        let counter = try ChildProcess(lab.exec(lab.sender, ["python3", counterScript]), outputDirectory: lab.directory, name: "reports")
        defer { counter.terminate() }
        let script = lab.directory + "/host.py", join = lab.directory + "/join", leave = lab.directory + "/leave"
        try Self.hostScript.write(toFile: script, atomically: true, encoding: .utf8)
        let host = try ChildProcess(lab.exec(lab.receiver, ["python3", script, join, leave]), outputDirectory: lab.directory, name: "host")
        defer { host.terminate() }

        // Nothing joined upstream while nobody listens downstream (the daemon has been up and
        // querying its downstreams for this long).
        Thread.sleep(forTimeInterval: 2)
        #expect(!(try joinedUpstream(lab)), "239.7.7.7 joined on rin0 before any downstream listener")
        let before = counter.stdout.split(separator: "\n").last.map(String.init) ?? ""
        #expect(!before.isEmpty, "the report counter on snd0 must be running (stderr: \(counter.stderr.suffix(500)))")
        #expect(before == "none", "reports for 239.7.7.7 reached snd0 before any listener: \(before)")

        // The host joins on rcv0: the relay joins on rin0 and snd0 sees the report.
        try Data().write(to: URL(fileURLWithPath: join))
        let joinedAt = ContinuousClock.now
        let joined = try waitUntil(timeout: .seconds(10)) { try joinedUpstream(lab) }
        let maddr = try lab.must(lab.relay, ["ip", "maddr", "show", "dev", "rin0"]).stdout
        #expect(joined, "239.7.7.7 not joined on rin0 after the downstream join: \(maddr)")
        print("proxy test: upstream join \(ContinuousClock.now - joinedAt) after the downstream join")
        let shown = try daemon.cli(["igmp", "proxy", "--json"])
        let joins = try JSONDecoder().decode([ListenersView.ProxyJoin].self, from: Data(shown.stdout.utf8))
        #expect(joins.map { [$0.upstream, $0.group, $0.excludeOn.joined()] } == [["rin0", "239.7.7.7", "rout0"]],
                "mcrelay igmp proxy: \(shown)")
        #expect(joins.first?.sources == [] && joins.first?.joined == true)
        let text = try daemon.cli(["igmp", "proxy"])
        #expect(text.stdout == "rin0 239.7.7.7 any source, joined; EXCLUDE listeners on rout0\n")
        let reported = waitUntil(timeout: .seconds(5)) {
            let line = counter.stdout.split(separator: "\n").last.map(String.init) ?? ""
            return line.contains("4=") || line.contains("2=")  // CHANGE_TO_EXCLUDE or MODE_IS_EXCLUDE
        }
        #expect(reported, "no EXCLUDE report for 239.7.7.7 from rin0 reached snd0: \(counter.stdout.suffix(300))")

        // The host leaves: after the last member query time (2 x 1 s) the relay leaves upstream.
        try Data().write(to: URL(fileURLWithPath: leave))
        let leftAt = ContinuousClock.now
        let gone = try waitUntil(timeout: .seconds(10)) { try !joinedUpstream(lab) }
        let elapsed = ContinuousClock.now - leftAt
        #expect(gone, "239.7.7.7 still joined on rin0 after the downstream leave")
        #expect(elapsed < .seconds(6), "upstream leave took \(elapsed); the last member query time is 2 s")
        let leaveReported = waitUntil(timeout: .seconds(5)) {
            (counter.stdout.split(separator: "\n").last.map(String.init) ?? "").contains("3=")  // CHANGE_TO_INCLUDE {}
        }
        #expect(leaveReported, "no leave (TO_IN {}) for 239.7.7.7 reached snd0: \(counter.stdout.suffix(300))")
        #expect(try daemon.cli(["igmp", "proxy"]).stdout == "nothing joined upstream (config \"proxies\")\n")
        print("proxy test: upstream leave \(elapsed) after the downstream leave; reports on snd0: \(counter.stdout.split(separator: "\n").last ?? "")")
    }
}
