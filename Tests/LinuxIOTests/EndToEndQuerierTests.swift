import Foundation
import RelayControl
import Testing

/// The daemon as IGMP and MLD router on rout0 (config `queriers`), with a Linux host (rcv0, its
/// own IGMPv3 and MLDv2) joining and leaving groups through ordinary sockets.
@Suite(.serialized) struct EndToEndQuerierTests {
    static let hostScript = """
        import socket, struct, sys, time, os
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        mreq = socket.inet_aton('239.7.7.7') + socket.inet_aton('198.18.2.2')
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                      socket.inet_pton(socket.AF_INET6, 'ff3e::7:7') + struct.pack('@I', socket.if_nametoindex('rcv0')))
        print('joined', flush=True)
        while not os.path.exists(sys.argv[1]): time.sleep(0.05)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
        print('left', flush=True)
        time.sleep(20)
        """

    func view(_ daemon: RelayDaemon) throws -> ListenersView {
        let groups = try daemon.cli(["igmp", "groups", "--json"])
        let interfaces = try daemon.cli(["igmp", "interfaces", "--json"])
        guard groups.status == 0, interfaces.status == 0 else { throw HarnessError("igmp failed: \(groups) \(interfaces)") }
        return ListenersView(
            interfaces: try JSONDecoder().decode([ListenersView.Interface].self, from: Data(interfaces.stdout.utf8)),
            groups: try JSONDecoder().decode([ListenersView.Group].self, from: Data(groups.stdout.utf8)))
    }

    @Test(.timeLimit(.minutes(2)))
    func relayQueriesAndTracksALinuxHostsJoinsAndLeaves() throws {
        let lab = try Lab("qry", ipv6: true)
        defer { lab.down() }
        let config = lab.directory + "/queriers.json"
        try #"{"rules": [], "queriers": [{"interface": "rout0", "query_interval": 5, "query_response_interval": 1, "last_member_query_interval": 0.5}]}"#
            .write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try RelayDaemon(lab, config: config)
        defer { _ = try? daemon.stop() }
        let script = lab.directory + "/host.py", leave = lab.directory + "/leave"
        try Self.hostScript.write(toFile: script, atomically: true, encoding: .utf8)
        let host = try ChildProcess(lab.exec(lab.receiver, ["python3", script, leave]), outputDirectory: lab.directory, name: "host")
        defer { host.terminate() }

        // The host's unsolicited reports and its answers to the relay's startup queries.
        var last: ListenersView?
        let tracked = try waitUntil(timeout: .seconds(20)) {
            let state = try view(daemon)
            last = state
            let v4 = state.groups.first { $0.interface == "rout0" && $0.group == "239.7.7.7" }
            let v6 = state.groups.first { $0.interface == "rout0" && $0.group == "ff3e::7:7" }
            let queried = state.interfaces.allSatisfy { $0.isQuerier && $0.generalQueriesSent >= 2 && $0.reportsReceived.values.reduce(0, +) >= 2 }
            return v4?.lastReporter == Lab.receiverAddress0 && v4?.mode == "EXCLUDE" && v6?.lastReporter?.hasPrefix("fe80::") == true
                && state.interfaces.count == 2 && queried
        }
        #expect(tracked, "the relay must be IGMP and MLD querier on rout0 and track the host's groups: \(String(describing: last))")
        #expect(last?.interfaces.map(\.version).sorted() == ["IGMPv3", "MLDv2"])

        // A leave ends the listener within the last member query time (robustness 2 x 0.5 s).
        try Data().write(to: URL(fileURLWithPath: leave))
        let left = ContinuousClock.now
        let gone = try waitUntil(timeout: .seconds(8)) {
            let state = try view(daemon)
            last = state
            return !state.groups.contains { $0.group == "239.7.7.7" } && state.groups.contains { $0.group == "ff3e::7:7" }
        }
        let elapsed = ContinuousClock.now - left
        #expect(gone, "239.7.7.7 must be gone after the host's leave, ff3e::7:7 kept: \(String(describing: last))")
        #expect(elapsed < .seconds(4), "leave took \(elapsed); last member query time is 1 s")
        print("querier test: leave of 239.7.7.7 took effect after \(elapsed)")
    }
}
