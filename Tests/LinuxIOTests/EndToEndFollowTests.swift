import Foundation
import RelayControl
import Testing

/// An output that follows listeners (`rout0:…:listeners`), end to end: the daemon tracks
/// listeners on rout0 (config `queriers`), a Linux host on rcv0 joins and leaves with an
/// ordinary socket (mcrecv.py: IP_ADD_MEMBERSHIP, then close), and a frame reader on rcv0 counts
/// the relayed datagrams on the wire in each phase: none before the join, all after it, none
/// after the leave. A second, static output of the same rule (rout1 -> rcv1) must get every
/// datagram of all three phases. The IGMPv2 case sets `force_igmp_version=2` on the host's rcv0
/// (a setting of the test host, not of the relay); the MLDv2 case relays the IPv4 stream into
/// ff3e::10:1 on rout0 (an output may be of the other family) and the host joins that with MLDv2.
@Suite(.serialized) struct EndToEndFollowTests {
    static let count = 200, size = 200, rate = 400.0

    enum Case: String, CaseIterable, CustomTestStringConvertible {
        case igmp3 = "IGMPv3", igmp2 = "IGMPv2", mld2 = "MLDv2"
        var testDescription: String { rawValue }
        var ipv6: Bool { self == .mld2 }
        var group: String { ipv6 ? "[ff3e::10:1]" : "239.10.1.1" }
        var groupBytes: [UInt8] { ipv6 ? [0xFF, 0x3E] + Array(repeating: 0, count: 11) + [0x10, 0, 1] : [239, 10, 1, 1] }
    }

    func followOutput(_ daemon: RelayDaemon) throws -> OutputStatsView? {
        try daemon.stats().rules.first?.outputs.first { $0.out.hasPrefix("rout0:") }
    }

    /// Sends one phase's datagrams and returns how many frames to 239.10.1.1 the reader saw on rcv0.
    func phase(_ lab: Lab, _ streams: [Stream], _ which: Case, startSeq: Int, expectOnWire: Int) throws -> Int {
        let capture = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
        defer { capture.close() }
        try send(lab, streams: streams, count: Self.count, rate: Self.rate, size: Self.size, startSeq: startSeq)
        // Nothing expected: wait a fixed second for stragglers rather than for a count.
        let frames = capture.frames(expect: expectOnWire == 0 ? Int.max : expectOnWire, timeout: expectOnWire == 0 ? 1 : 5)
        return frames.compactMap(CapturedDatagram.init).filter { $0.destination == which.groupBytes && $0.destinationPort == 6001 }.count
    }

    @Test("a follow output sends only between a Linux host's join and its leave; the static output loses nothing",
          .timeLimit(.minutes(3)), arguments: Case.allCases)
    func followsALinuxHost(which: Case) throws {
        let lab = try Lab("flw\(Case.allCases.firstIndex(of: which)!)", ipv6: which.ipv6)
        defer { lab.down() }
        if which == .igmp2 {
            try lab.must(lab.receiver, ["sysctl", "-qw", "net.ipv4.conf.rcv0.force_igmp_version=2"])
        }
        let config = lab.directory + "/follow.json"
        try #"""
            {"rules": [{"name": "cam", "in": "rin0:239.1.1.1:5001", "out": ["rout0:\#(which.group):6001:4:listeners", "rout1:239.20.1.1:6001:4"]}],
             "queriers": [{"interface": "rout0", "families": ["\#(which.ipv6 ? "ipv6" : "ipv4")"], "query_interval": 5,
                           "query_response_interval": 1, "last_member_query_interval": 0.5}]}
            """#.write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try RelayDaemon(lab, config: config)
        defer { _ = try? daemon.stop() }
        try daemon.waitSettled()

        let toFollow = [Stream(input: "239.1.1.1:5001", output: "\(which.group):6001", id: 1)]
        let toStatic = [Stream(input: "239.1.1.1:5001", output: "239.20.1.1:6001", id: 1)]
        // The static output's receiver sees all three phases.
        let staticReceiver = try Receiver(lab, address: Lab.receiverAddress1, streams: toStatic, expect: 3 * Self.count,
                                          size: Self.size, duration: 90, name: "static")
        let before = try followOutput(daemon)
        #expect(before?.open == false, "no listener yet: the follow output must be closed: \(String(describing: before))")

        // 1. No listener on rcv0: nothing on the wire.
        let beforeJoin = try phase(lab, toFollow, which, startSeq: 0, expectOnWire: 0)
        #expect(beforeJoin == 0, "before the join: sent \(Self.count), \(beforeJoin) arrived on rcv0's wire")

        // 2. The host joins (mcrecv's socket; its kernel reports): the gate opens, everything arrives.
        let joined = ContinuousClock.now
        let host = try Receiver(lab, address6: which.ipv6 ? Lab.receiverAddress6 : nil, streams: toFollow, expect: Self.count, size: Self.size, startSeq: Self.count, duration: 30,
                                name: "host")
        var last: OutputStatsView?
        let opened = try waitUntil(timeout: .seconds(10)) {
            last = try followOutput(daemon)
            return last?.open == true
        }
        #expect(opened, "the host's join must open the output: \(String(describing: last))")
        print("follow test (\(which.rawValue)): output open \(ContinuousClock.now - joined) after the host joined")
        let afterJoin = try phase(lab, toFollow, which, startSeq: Self.count, expectOnWire: Self.count)
        #expect(afterJoin == Self.count, "after the join: sent \(Self.count), \(afterJoin) arrived on rcv0's wire")
        expectDelivered(try host.finish(), toFollow, count: Self.count)

        // 3. The host left (mcrecv closed its socket when done): the gate closes after the last
        //    member queries (2 x 0.5 s), and nothing more reaches the wire.
        let left = ContinuousClock.now
        let closed = try waitUntil(timeout: .seconds(10)) {
            last = try followOutput(daemon)
            return last?.open == false
        }
        let leaveToStop = ContinuousClock.now - left
        #expect(closed, "the host's leave must close the output: \(String(describing: last))")
        #expect(leaveToStop < .seconds(4), "leave to stop took \(leaveToStop); last member query time is 1 s")
        print("follow test (\(which.rawValue)): output closed \(leaveToStop) after the host left (last member query time 1 s)")
        let afterLeave = try phase(lab, toFollow, which, startSeq: 2 * Self.count, expectOnWire: 0)
        #expect(afterLeave == 0, "after the leave: sent \(Self.count), \(afterLeave) arrived on rcv0's wire")

        expectDelivered(try staticReceiver.finish(timeout: .seconds(60)), toStatic, count: 3 * Self.count)
        let final = try followOutput(daemon)
        #expect(final?.packets == UInt64(Self.count), "the follow output counted \(final?.packets ?? 0) sent")
        #expect(final?.suppressed == UInt64(2 * Self.count), "suppressed: no listener \(final?.suppressed ?? 0), expected \(2 * Self.count)")
    }
}
