import Foundation
import RelayControl
import Testing

/// The daemon as IGMP proxy (config `proxies`): upstream rin0 (towards snd0), downstream rout0
/// and rout1 (towards the host's rcv0 and rcv1, with listener tracking created implicitly). A
/// Linux host joins 239.7.7.7 on rcv0 with an ordinary socket and leaves again; the relay must
/// hold the group on rin0 (its helper-socket membership, which the kernel reports upstream) only
/// in between. What is checked is the kernel's own membership list (`ip maddr`) in the relay's
/// namespace and the IGMPv3 reports that reach the sender's namespace on snd0.
/// `forwardsToEachDownstreamOnlyWhatItsHostsJoined` counts the proxied datagrams themselves.
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

    /// The daemon as an IGMP/MLD proxy: upstream rin0, downstreams rout0 and rout1, for `groups`.
    static func proxyDaemon(_ lab: Lab, groups: String = "239.0.0.0/8") throws -> RelayDaemon {
        let config = lab.directory + "/proxy.json"
        try #"{"proxies": [{"upstream": "rin0", "downstream": ["rout0", "rout1"], "groups": ["\#(groups)"]}]}"#
            .write(toFile: config, atomically: true, encoding: .utf8)
        return try RelayDaemon(lab, config: config)
    }

    func joinedUpstream(_ lab: Lab) throws -> Bool {
        let result = try lab.must(lab.relay, ["ip", "maddr", "show", "dev", "rin0"])
        return result.stdout.contains("239.7.7.7")
    }

    @Test(.timeLimit(.minutes(2)))
    func joinsUpstreamOnlyWhileADownstreamHostListens() throws {
        let lab = try Lab("prx")
        defer { lab.down() }
        let daemon = try Self.proxyDaemon(lab)
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
        let idle = "forwarding rin0:239.0.0.0/8:* -> rout0 0 forwarded, 0 suppressed; rout1 0 forwarded, 0 suppressed\n"
        #expect(text.stdout == "rin0 239.7.7.7 any source, joined; EXCLUDE listeners on rout0\n" + idle)
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
        #expect(try daemon.cli(["igmp", "proxy"]).stdout == "nothing joined upstream (config \"proxies\")\n" + idle)
        print("proxy test: upstream leave \(elapsed) after the downstream leave; reports on snd0: \(counter.stdout.split(separator: "\n").last ?? "")")
    }

    /// The datagrams of one group to one port that arrived on a frame reader's interface, each
    /// checked as the proxy must forward it: the sender's address, TTL `ttl`, one datagram per
    /// frame (the frame ends where the IP datagram does), `size` bytes of payload. Returns
    /// (count, the frames that were not so).
    static func routed(_ reader: WireReader, group: String, port: UInt16, ttl: UInt8, size: Int) -> (count: Int, bad: [String]) {
        var count = 0
        var bad: [String] = []
        for frame in reader.frames where !frame.outgoing {
            let b = frame.bytes
            guard b.count >= 42, b[12] == 0x08, b[13] == 0x00, b[23] == 17, ListenerFrames.ipv4Text(b[30..<34]) == group else { continue }
            let udp = 14 + Int(b[14] & 0x0f) * 4
            guard b.count >= udp + 8, UInt16(b[udp + 2]) << 8 | UInt16(b[udp + 3]) == port else { continue }
            count += 1
            let total = Int(b[16]) << 8 | Int(b[17])
            let source = ListenerFrames.ipv4Text(b[26..<30])
            let udpLength = Int(b[udp + 4]) << 8 | Int(b[udp + 5])
            let macOK = b[0] == 0x01 && b[1] == 0x00 && b[2] == 0x5E
            if source != Lab.senderAddress || b[22] != ttl || b.count != 14 + total || udpLength != 8 + size || !macOK {
                bad.append("source \(source) ttl \(b[22]) frame \(b.count) bytes, IP total \(total), UDP length \(udpLength), MAC \(b[0..<3].map { String($0, radix: 16) })")
            }
        }
        return (count, bad)
    }

    /// The proxy forwards: rin0 -> rout0, rout1 for 239.0.0.0/8. The sender sends 200 datagrams
    /// (TTL 4, 200-byte payload) to each of 239.7.1.1:5001, 239.7.1.2:5002 and 239.7.1.3:5003.
    /// Host receivers (ordinary sockets) in the receiver namespace: on rcv0 an IGMPv3 SSM join
    /// (239.7.1.1 from the sender, IP_ADD_SOURCE_MEMBERSHIP) and an IGMPv3 any-source join of
    /// 239.7.1.3; on rcv1 an IGMPv2 host (`force_igmp_version=2` on the host's own rcv1, the one
    /// setting changed, as a v2 host is) joining 239.7.1.2. Counted per interface and group, on the
    /// wire (frame readers on rcv0 and rcv1) and by the receivers' sockets: 0 of 200 before any
    /// join, 200 of 200 after on the joining side and 0 of 200 on the other, and 0 of 200 after the
    /// hosts left and the relay's last member queries ran out.
    @Test(.timeLimit(.minutes(3)))
    func forwardsToEachDownstreamOnlyWhatItsHostsJoined() throws {
        let lab = try Lab("prf")
        defer { lab.down() }
        let daemon = try Self.proxyDaemon(lab)
        defer { _ = try? daemon.stop() }
        try lab.must(lab.receiver, ["sysctl", "-qw", "net.ipv4.conf.rcv1.force_igmp_version=2"])
        let rcv0 = try WireReader(namespace: lab.receiver, interface: "rcv0")
        let rcv1 = try WireReader(namespace: lab.receiver, interface: "rcv1")
        let size = 200, count = 200
        let ssm = Stream(input: "239.7.1.1:5001", output: "239.7.1.1:5001", id: 1)
        let v2 = Stream(input: "239.7.1.2:5002", output: "239.7.1.2:5002", id: 2)
        let asm = Stream(input: "239.7.1.3:5003", output: "239.7.1.3:5003", id: 3)
        let streams = [ssm, v2, asm]
        /// Datagrams on the wire: rcv0 239.7.1.1, .2, .3, then rcv1 239.7.1.1, .2, .3.
        func counts() -> [Int] {
            rcv0.drain()
            rcv1.drain()
            let all = [rcv0, rcv1].flatMap { reader in
                streams.map { Self.routed(reader, group: String($0.output.prefix(9)), port: UInt16($0.output.suffix(4))!, ttl: 3, size: size) }
            }
            for (index, result) in all.enumerated() where !result.bad.isEmpty {
                Issue.record("phase frames \(index) not forwarded as a router would: \(result.bad.prefix(3))")
            }
            #expect(rcv0.kernelDrops == 0 && rcv1.kernelDrops == 0, "the frame readers lost frames")
            return all.map(\.count)
        }

        // Before any join: the relay reads the upstream but sends nothing downstream.
        Thread.sleep(forTimeInterval: 1)
        try send(lab, streams: streams, count: count, rate: 400, size: size, sourcePort: 40001)
        Thread.sleep(forTimeInterval: 0.5)
        let none = [0, 0, 0, 0, 0, 0]
        #expect(counts() == none, "rcv0 239.7.1.1, .2, .3, rcv1 239.7.1.1, .2, .3 before any join")
        let before = try daemon.stats().rules.first { $0.name == "proxy" }
        #expect(before?.in == "rin0:239.0.0.0/8:*")
        #expect(before?.outputs.map(\.out) == ["rout0:routed", "rout1:routed"])
        #expect(before?.packets == UInt64(3 * count), "the proxy route took the 600 datagrams: \(String(describing: before))")
        #expect(before?.outputs.map(\.suppressed) == [UInt64(3 * count), UInt64(3 * count)])
        #expect(before?.outputs.map(\.packets) == [0, 0])

        // The hosts join: on rcv0 239.7.1.1 from the sender and 239.7.1.3 from anyone (IGMPv3),
        // on rcv1 239.7.1.2 (IGMPv2).
        let ssmHost = try Receiver(lab, address: Lab.receiverAddress0, sourceFilter: Lab.senderAddress, streams: [ssm],
                                   expect: count, size: size, duration: 30, idle: 0, name: "ssm")
        let asmHost = try Receiver(lab, address: Lab.receiverAddress0, streams: [asm], expect: count, size: size,
                                   duration: 30, idle: 0, name: "asm")
        let v2Host = try Receiver(lab, address: Lab.receiverAddress1, streams: [v2], expect: count, size: size,
                                  duration: 30, idle: 0, name: "v2")
        let upstream = try waitUntil(timeout: .seconds(10)) {
            let text = try lab.must(lab.relay, ["ip", "maddr", "show", "dev", "rin0"]).stdout
            return text.contains("239.7.1.1") && text.contains("239.7.1.2") && text.contains("239.7.1.3")
        }
        #expect(upstream, "both groups joined upstream on rin0")
        let shown = try daemon.cli(["igmp", "proxy"]).stdout
        print("proxy forwarding test: mcrelay igmp proxy:\n\(shown)")
        // The rcv1 host is an IGMPv2 host as the relay sees it (its group in v2 compatibility).
        let groups = try daemon.cli(["igmp", "groups"]).stdout
        #expect(groups.split(separator: "\n").contains { $0.hasPrefix("rout1 239.7.1.2 ") && $0.contains("IGMPv2") },
                "mcrelay igmp groups: \(groups)")
        // The gates travel to the worker beside the joins (a delta, acknowledged within ms).
        Thread.sleep(forTimeInterval: 0.3)
        rcv0.forget()
        rcv1.forget()
        try send(lab, streams: streams, count: count, rate: 400, size: size, startSeq: 0, sourcePort: 40001)
        expectDelivered(try ssmHost.finish(), [ssm], count: count, ttl: 3)
        expectDelivered(try asmHost.finish(), [asm], count: count, ttl: 3)
        expectDelivered(try v2Host.finish(), [v2], count: count, ttl: 3)
        Thread.sleep(forTimeInterval: 0.3)
        let joined = counts()
        print("proxy forwarding test: datagrams on the wire after the joins (rcv0 .1 .2 .3, rcv1 .1 .2 .3): \(joined)")
        #expect(joined == [count, 0, count, 0, count, 0], "rcv0 239.7.1.1, .2, .3, rcv1 239.7.1.1, .2, .3 after the joins")
        let after = try daemon.stats().rules.first { $0.name == "proxy" }
        #expect(after?.outputs.map(\.packets) == [UInt64(2 * count), UInt64(count)], "forwarded per downstream: \(String(describing: after))")
        // rout0 held back 239.7.1.2's 200, rout1 those of 239.7.1.1 and 239.7.1.3.
        #expect(zip(after?.outputs ?? [], before?.outputs ?? []).map { $0.suppressed! - $1.suppressed! } == [UInt64(count), UInt64(2 * count)])
        #expect(after?.outputs.map(\.sendErrors) == [0, 0])
        let proxyText = try daemon.cli(["igmp", "proxy"]).stdout
        #expect(proxyText.hasSuffix("forwarding rin0:239.0.0.0/8:* -> rout0 400 forwarded, 800 suppressed; rout1 200 forwarded, 1000 suppressed\n"),
                "mcrelay igmp proxy: \(proxyText)")
        let text = try daemon.cli(["stats"]).stdout
        #expect(text.contains("rout0:routed") && text.contains("suppressed: no listener"), "mcrelay stats: \(text.suffix(800))")

        // The hosts' sockets are closed (the receivers finished): their kernels leave; after the
        // last member query time (2 x 1 s) the gates close and the relay leaves upstream.
        let left = try waitUntil(timeout: .seconds(10)) {
            let text = try lab.must(lab.relay, ["ip", "maddr", "show", "dev", "rin0"]).stdout
            return !text.contains("239.7.1.1") && !text.contains("239.7.1.2") && !text.contains("239.7.1.3")
        }
        #expect(left, "the groups are still joined on rin0 after the hosts left")
        rcv0.forget()
        rcv1.forget()
        try send(lab, streams: streams, count: count, rate: 400, size: size, sourcePort: 40001)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(counts() == none, "after the leaves")
        print("proxy forwarding test: \(String(describing: try daemon.stats().rules.first { $0.name == "proxy" }))")
    }

    /// The MLD proxy's forwarding: rin0 -> rout0, rout1 for ff3e::/16 (MLDv2 queriers on the
    /// downstreams by default). A host on rcv0 joins (S, ff3e::7:1) with MCAST_JOIN_SOURCE_GROUP
    /// (S the sender's 2001:db8:1::1), a host on rcv1 joins ff3e::7:2 from any source; 200
    /// datagrams (hop limit 4) to each group. Each host gets its group's 200 with hop limit 3, and
    /// each downstream holds back the other group's 200.
    @Test(.timeLimit(.minutes(2)))
    func routesIPv6ToTheDownstreamsWhoseListenersJoined() throws {
        let lab = try Lab("prf6", ipv6: true)
        defer { lab.down() }
        let daemon = try Self.proxyDaemon(lab, groups: "ff3e::/16")
        defer { _ = try? daemon.stop() }
        let count = 200, size = 200
        let ssm = Stream(input: "[ff3e::7:1]:5001", output: "[ff3e::7:1]:5001", id: 1)
        let asm = Stream(input: "[ff3e::7:2]:5002", output: "[ff3e::7:2]:5002", id: 2)
        Thread.sleep(forTimeInterval: 1)
        let ssmHost = try Receiver(lab, address6: Lab.receiverAddress6, sourceFilter: Lab.senderAddress6, streams: [ssm],
                                   expect: count, size: size, duration: 30, idle: 0, name: "ssm6")
        let asmHost = try Receiver(lab, address6: Lab.receiver1Address6, streams: [asm], expect: count, size: size,
                                   duration: 30, idle: 0, name: "asm6")
        let joined = try waitUntil(timeout: .seconds(10)) {
            let groups = try lab.memberships6(lab.relay, interface: "rin0")
            return groups.contains("ff3e::7:1") && groups.contains("ff3e::7:2")
        }
        let upstream = try lab.memberships6(lab.relay, interface: "rin0")
        #expect(joined, "both groups joined upstream on rin0: \(upstream)")
        Thread.sleep(forTimeInterval: 0.3)
        try send(lab, streams: [ssm, asm], count: count, rate: 400, size: size, sourcePort: 40002)
        expectDelivered(try ssmHost.finish(), [ssm], count: count, ttl: 3)
        expectDelivered(try asmHost.finish(), [asm], count: count, ttl: 3)
        let stats = try daemon.stats().rules.first { $0.name == "proxy" }
        print("proxy IPv6 test: \(String(describing: stats))")
        #expect(stats?.in == "rin0:[ff3e::]/16:*")
        #expect(stats?.outputs.map(\.packets) == [UInt64(count), UInt64(count)], "forwarded per downstream")
        #expect(stats?.outputs.map(\.suppressed) == [UInt64(count), UInt64(count)], "each held back the other group")
        #expect(stats?.outputs.map(\.sendErrors) == [0, 0])
    }
}
