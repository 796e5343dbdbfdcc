import Foundation
import Glibc
import CLinuxNet
import LinuxIO
import RelayCore
import Testing

/// ListenerTap against real Linux hosts: a host namespace whose own kernel sends IGMP and MLD
/// when its sockets join and leave groups, and a router namespace where the tap runs on the
/// other end of the veth (`ListenerLab`). Every message is checked by parsing its bytes here
/// (`ListenerFrames`); counts of what was sent and what arrived are printed and asserted.
///
/// Host settings used (in the host namespace only, on its interface lh0, as a host operator
/// would set them): `net.ipv4.conf.lh0.force_igmp_version=2` for an IGMPv2 host and
/// `net.ipv6.conf.lh0.force_mld_version=1` for an MLDv1 host. Nothing in the router namespace
/// or the root namespace is changed.
/// Back in `make test` since 2026-12-07. From 2026-12-02 it was off: in one clean-clone CI run the
/// test process died with SIGSEGV inside this suite (after "unrelated traffic", during the IGMPv2
/// query test), at a time when the live suites shared one test process. Never reproduced: 6 of 6
/// local runs then (two with CPU hogs), clean under AddressSanitizer and ThreadSanitizer, and 9 of
/// 9 on 2026-12-07 (4 with a busy loop on each core), each in its own process as the live pass now
/// runs every suite (scripts/run-tests.sh). Reading ListenerTap, MessageSlots, listener_tap.c,
/// NamespaceThread and the suite found no use after close or free. If it crashes again, the live
/// pass's log names this suite alone.
@Suite("ListenerTap (IGMP and MLD on a real veth)", .serialized,
       .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
struct ListenerTapTests {
    // MARK: Joins and leaves per protocol version

    enum HostVersion: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case igmpV3, igmpV2, mldV2, mldV1
        var testDescription: String { rawValue }
        var isIPv6: Bool { self == .mldV2 || self == .mldV1 }
        var sysctl: [String] {
            switch self {
            case .igmpV3, .mldV2: []
            case .igmpV2: ["net.ipv4.conf.lh0.force_igmp_version=2"]
            case .mldV1: ["net.ipv6.conf.lh0.force_mld_version=1"]
            }
        }
        var groups: [String] { isIPv6 ? ["ff3e::77:1", "ff05::77:2"] : ["239.77.1.1", "239.77.1.2"] }
        var tag: String {
            switch self { case .igmpV3: "i3"; case .igmpV2: "i2"; case .mldV2: "m2"; case .mldV1: "m1" }
        }

        /// Does `message` report a join of `group` the way this version does?
        func isJoin(_ message: ListenerFrames.Message, _ group: String) -> Bool {
            switch self {
            case .igmpV3: message.family == .ipv4 && message.type == 0x22 && message.mentions(group, recordType: 4)
            case .igmpV2: message.family == .ipv4 && message.type == 0x16 && message.mentions(group)
            case .mldV2: message.family == .ipv6 && message.type == 143 && message.mentions(group, recordType: 4)
            case .mldV1: message.family == .ipv6 && message.type == 131 && message.mentions(group)
            }
        }

        func isLeave(_ message: ListenerFrames.Message, _ group: String) -> Bool {
            switch self {
            case .igmpV3: message.family == .ipv4 && message.type == 0x22 && message.mentions(group, recordType: 3)
            case .igmpV2: message.family == .ipv4 && message.type == 0x17 && message.mentions(group)
            case .mldV2: message.family == .ipv6 && message.type == 143 && message.mentions(group, recordType: 3)
            case .mldV1: message.family == .ipv6 && message.type == 132 && message.mentions(group)
            }
        }
    }

    /// How long to keep counting after the first report of each join/leave was seen, for the
    /// kernel's repetitions (robustness 2: the second one comes within the unsolicited report
    /// interval, 1 s for IGMPv3/MLDv2, 10 s for IGMPv2/MLDv1).
    static var repeatWindow: Duration {
        .milliseconds(Int((ProcessInfo.processInfo.environment["MCRELAY_LISTENER_REPEAT_WINDOW"].flatMap(Double.init) ?? 1.5) * 1000))
    }

    @Test("the tap sees every join and leave a Linux host sends", arguments: HostVersion.allCases)
    func joinsAndLeaves(version: HostVersion) throws {
        var outcome = try joinAndLeave(version)
        // The host's own frames can be lost before the tap: a veth drops a frame (and counts it in
        // the sender's tx_dropped or the peer's rx_dropped) when the receiving CPU's backlog is
        // full, as happens here while other tests flood the machine. Then, and only then, the
        // case is run once more in a fresh lab, and says so.
        if !outcome.complete && outcome.vethDrops > 0 {
            print("ListenerTap \(version.rawValue): the veth dropped \(outcome.vethDrops) frame(s) (\(outcome.summary)); running the case again")
            outcome = try joinAndLeave(version)
        }
        #expect(outcome.joinsSeen, "not every join seen within 5 s (veth drops \(outcome.vethDrops)): \(outcome.joinMessages)")
        #expect(outcome.leavesSeen, "not every leave seen within 5 s (veth drops \(outcome.vethDrops)): \(outcome.leaveMessages)")
        for group in version.groups {
            #expect(outcome.joinMessages.filter { version.isJoin($0, group) }.count >= 1, "join of \(group): \(outcome.joinMessages)")
            #expect(outcome.leaveMessages.filter { version.isLeave($0, group) }.count >= 1, "leave of \(group): \(outcome.leaveMessages)")
        }
        // Everything IGMP/MLD that reached lr0 (an unfiltered witness socket counted it) was
        // delivered by the tap, and nothing else.
        #expect(outcome.tapFrames == outcome.witnessFrames, "tap \(outcome.tapFrames) vs witness \(outcome.witnessFrames) IGMP/MLD frames")
        #expect(outcome.problems.isEmpty, "\(outcome.problems)")
    }

    struct JoinLeaveOutcome {
        var joinsSeen = false
        var leavesSeen = false
        var joinMessages: [ListenerFrames.Message] = []
        var leaveMessages: [ListenerFrames.Message] = []
        var tapFrames = 0
        var witnessFrames = 0
        var vethDrops = 0
        var problems: [String] = []
        var summary = ""
        var complete: Bool { joinsSeen && leavesSeen }
    }

    private func joinAndLeave(_ version: HostVersion) throws -> JoinLeaveOutcome {
        let lab = try ListenerLab(tag: version.tag, hostSysctl: version.sysctl)
        defer { lab.down() }
        let tap = try openTap(lab)
        defer { tap.close() }
        let witness = try openWitness(lab)
        defer { close(witness) }
        let collector = Collector(tap)
        let member = try HostMember(lab, ipv6: version.isIPv6)
        defer { member.close() }
        let dropsBefore = try lab.vethDrops()
        var outcome = JoinLeaveOutcome()

        let joined = ContinuousClock.now
        for group in version.groups { try member.join(group) }
        outcome.joinsSeen = try collector.collect(until: { messages in
            version.groups.allSatisfy { group in messages.contains { version.isJoin($0, group) } }
        }, timeout: .seconds(5), thenFor: Self.repeatWindow)
        let firstJoin = collector.messages.first { m in version.groups.contains { version.isJoin(m, $0) } }
        outcome.joinMessages = collector.messages
        collector.messages = []

        for group in version.groups { try member.leave(group) }
        outcome.leavesSeen = try collector.collect(until: { messages in
            version.groups.allSatisfy { group in messages.contains { version.isLeave($0, group) } }
        }, timeout: .seconds(5), thenFor: Self.repeatWindow)
        outcome.leaveMessages = collector.messages
        try collector.drain()
        outcome.tapFrames = collector.framesRead
        outcome.witnessFrames = drainWitness(witness)
        outcome.vethDrops = try lab.vethDrops() - dropsBefore

        let perGroup = version.groups.map { group in
            "\(group): joins \(outcome.joinMessages.filter { version.isJoin($0, group) }.count), leaves \(outcome.leaveMessages.filter { version.isLeave($0, group) }.count)"
        }
        outcome.summary = "reports within \(Self.repeatWindow) of the first: \(perGroup.joined(separator: "; "))"
        print("ListenerTap \(version.rawValue): link-locals ready after \(lab.linkLocalReady); \(outcome.summary); first join report after \(firstJoin.map { Duration.nanoseconds(Int64($0.timestamp)) - collector.instant(joined) }.map { "\($0)" } ?? "-"); IGMP/MLD frames: tap \(outcome.tapFrames), witness \(outcome.witnessFrames); veth drops \(outcome.vethDrops)")
        // What the host sent is well-formed router-bound signalling: TTL/hop limit 1, Router
        // Alert, from the host (for MLD from its link-local: the lab waited for DAD), and the tap
        // delivered nothing that is not IGMP or MLD.
        let ours = (outcome.joinMessages + outcome.leaveMessages).filter { m in version.groups.contains { version.isJoin(m, $0) || version.isLeave(m, $0) } }
        let hostLinkLocal = try #require(try lab.linkLocal(lab.host, lab.hostInterface)).text
        for message in ours {
            if !(message.ttl == 1 && message.hasRouterAlert) { outcome.problems.append("no TTL 1 / Router Alert: \(message)") }
            if message.source != (version.isIPv6 ? hostLinkLocal : ListenerLab.hostAddress) { outcome.problems.append("source: \(message)") }
        }
        if !collector.unparsed.isEmpty { outcome.problems.append("frames the tap delivered that are not IGMP/MLD: \(collector.unparsed.prefix(3))") }
        if collector.wrongInterface != 0 || collector.truncated != 0 {
            outcome.problems.append("wrong interface \(collector.wrongInterface), truncated \(collector.truncated)")
        }
        return outcome
    }

    // MARK: What must not come through

    @Test("unrelated multicast UDP and unicast are not delivered (0 of N), though they arrived")
    func unrelatedTrafficFiltered() throws {
        let lab = try ListenerLab(tag: "u")
        defer { lab.down() }
        let tap = try openTap(lab)
        defer { tap.close() }
        // A witness on the same interface with no filter counts what really arrived.
        let witness = try openWitness(lab)
        defer { close(witness) }

        let count = 200
        let hostInterface = lab.hostInterface
        let destinations = [("239.77.9.9", false), (ListenerLab.routerAddress, false), ("ff3e::77:99", true), (ListenerLab.routerAddress6, true)]
        try inNamespace(lab.host) {
            let index = Int32(if_nametoindex(hostInterface))
            for (destination, ipv6) in destinations {
                try sendUDP(to: destination, port: 5099, ipv6: ipv6, interfaceIndex: index, count: count)
            }
        }
        // Read the witness until every datagram is accounted for (bounded), then the tap.
        var arrived: [String: Int] = [:]
        var buffer = [UInt8](repeating: 0, count: 2048)
        let complete = waitUntil(timeout: .seconds(5)) {
            while true {
                let n = recv(witness, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                guard n > 0 else { break }
                if let key = udpDestination(Array(buffer[0..<n]), port: 5099) { arrived[key, default: 0] += 1 }
            }
            return destinations.allSatisfy { arrived[$0.0, default: 0] >= count }
        }
        let collector = Collector(tap)
        _ = try collector.collect(until: { _ in false }, timeout: .milliseconds(300), thenFor: .zero)
        let deliveredUDP = collector.raw.filter { udpDestination($0, port: 5099) != nil }.count
        print("ListenerTap unrelated traffic: sent \(count) to each of \(destinations.map(\.0)); arrived at lr0 \(arrived); delivered by the tap: \(collector.framesRead) frames, \(deliveredUDP) of them UDP")
        #expect(complete, "not everything arrived at lr0 (the test's own traffic failed): \(arrived)")
        #expect(deliveredUDP == 0)
        #expect(collector.unparsed.isEmpty, "non-IGMP/MLD frames delivered: \(collector.unparsed.count)")
    }

    // MARK: Queries the tap sends

    @Test("an IGMPv2 general query sent by the tap is answered by the host with reports")
    func igmpQueryAnswered() throws {
        let lab = try ListenerLab(tag: "qi")
        defer { lab.down() }
        let tap = try openTap(lab)
        defer { tap.close() }
        let member = try HostMember(lab, ipv6: false)
        defer { member.close() }
        let groups = ["239.77.2.1", "239.77.2.2"]
        for group in groups { try member.join(group) }
        let collector = Collector(tap)
        // Let the unsolicited IGMPv3 reports (2 per join, within 1 s) pass first.
        _ = try collector.collect(until: { m in groups.allSatisfy { g in m.filter { $0.mentions(g, recordType: 4) }.count >= 2 } },
                                  timeout: .seconds(3), thenFor: .milliseconds(200))
        collector.messages = []

        let routerMAC = try lab.mac(lab.router, lab.routerInterface)
        let query = ListenerFrames.igmpV2GeneralQuery(sourceMAC: routerMAC, source: [198, 18, 77, 2], maxResponseTenths: 10)
        let sentAt = ContinuousClock.now
        let attempts = try sendRetrying(tap, query)
        // A v3 host answers an IGMPv2 query with IGMPv2 reports (it falls back to v2 for the
        // older-version querier present timeout): type 0x16 tells the answer from the v3
        // unsolicited ones. Max response time 1 s.
        let answered = try collector.collect(until: { m in groups.allSatisfy { g in m.contains { $0.type == 0x16 && $0.mentions(g) } } },
                                             timeout: .seconds(3), thenFor: .milliseconds(300))
        let latencies = groups.map { g in
            collector.messages.first { $0.type == 0x16 && $0.mentions(g) }.map { Duration.nanoseconds(Int64($0.timestamp)) - collector.instant(sentAt) }
        }
        print("ListenerTap IGMPv2 query (sent in \(attempts) attempt(s)): answer latency per group \(zip(groups, latencies).map { "\($0): \($1.map { "\($0)" } ?? "none")" }); messages after the query: \(collector.messages)")
        #expect(answered, "no v2 report for every group within 3 s of the query: \(collector.messages)")
        // The host answers within the max response time (1 s); the timestamps are taken when
        // the read returns, so on a loaded machine they can be later: only printed, not bounded
        // beyond the 3 s wait.
        #expect(!collector.messages.contains { $0.type == 0x11 }, "the tap's own query came back (PACKET_IGNORE_OUTGOING)")
    }

    @Test("an MLDv2 general query sent by the tap from its link-local is answered by the host")
    func mldQueryAnswered() throws {
        let lab = try ListenerLab(tag: "qm")
        defer { lab.down() }
        let tap = try openTap(lab)
        defer { tap.close() }
        let member = try HostMember(lab, ipv6: true)
        defer { member.close() }
        let groups = ["ff3e::77:3", "ff05::77:4"]
        for group in groups { try member.join(group) }
        let collector = Collector(tap)
        _ = try collector.collect(until: { m in groups.allSatisfy { g in m.filter { $0.mentions(g, recordType: 4) }.count >= 2 } },
                                  timeout: .seconds(3), thenFor: .milliseconds(200))
        collector.messages = []

        let routerMAC = try lab.mac(lab.router, lab.routerInterface)
        let linkLocal = try #require(try lab.linkLocal(lab.router, lab.routerInterface))
        let query = ListenerFrames.mldV2GeneralQuery(sourceMAC: routerMAC, linkLocalSource: linkLocal.bytes, maxResponseMilliseconds: 1000)
        let sentAt = ContinuousClock.now
        let attempts = try sendRetrying(tap, query)
        // The answer to a general query is a current-state record, MODE_IS_EXCLUDE (2), for
        // every group: distinct from the unsolicited CHANGE_TO_EXCLUDE (4) of the joins.
        let answered = try collector.collect(until: { m in groups.allSatisfy { g in m.contains { $0.type == 143 && $0.mentions(g, recordType: 2) } } },
                                             timeout: .seconds(3), thenFor: .milliseconds(300))
        let latencies = groups.map { g in
            collector.messages.first { $0.type == 143 && $0.mentions(g, recordType: 2) }.map { Duration.nanoseconds(Int64($0.timestamp)) - collector.instant(sentAt) }
        }
        print("ListenerTap MLDv2 query (sent in \(attempts) attempt(s)) from \(linkLocal.text): answer latency per group \(zip(groups, latencies).map { "\($0): \($1.map { "\($0)" } ?? "none")" }); messages after the query: \(collector.messages)")
        #expect(answered, "no IS_EX record for every group within 3 s of the query: \(collector.messages)")
        // The host answers within the max response time (1 s); the timestamps are taken when
        // the read returns, so on a loaded machine they can be later: only printed, not bounded
        // beyond the 3 s wait.
        #expect(!collector.messages.contains { $0.type == 130 }, "the tap's own query came back (PACKET_IGNORE_OUTGOING)")
    }

    // MARK: Interface re-created; all-multicast membership

    @Test("all-multicast is on while the tap is open and off after; a re-created interface is reopened")
    func reopenAfterRecreate() throws {
        let lab = try ListenerLab(tag: "r")
        defer { lab.down() }
        let allMulti: Int32 = 0x200  // IFF_ALLMULTI
        #expect(try lab.deviceFlags(lab.router, lab.routerInterface) & allMulti == 0, "ALLMULTI already on before the tap")
        let tap = try openTap(lab)
        defer { tap.close() }
        #expect(try lab.deviceFlags(lab.router, lab.routerInterface) & allMulti != 0, "ALLMULTI not on while the tap is open")
        let firstIndex = tap.interfaceIndex
        nonisolated(unsafe) let shared = tap
        // Names resolve in the calling thread's namespace: ask from the router's.
        #expect(try inNamespace(lab.router) { try shared.reopenIfReplaced() } == .unchanged)

        let collector = Collector(tap)
        var member = try HostMember(lab, ipv6: false)
        let first = member
        defer { first.close() }
        try member.join("239.77.3.1")
        #expect(try collector.collect(until: { $0.contains { $0.mentions("239.77.3.1", recordType: 4) } }, timeout: .seconds(5), thenFor: .zero),
                "no report before the re-creation: \(collector.messages)")

        // A link flap (down, up) keeps the socket and its index: one ENETDOWN, then frames again.
        try lab.must(["ip", "-n", lab.router, "link", "set", lab.routerInterface, "down"])
        var flapError: DataPlaneSystemError?
        do { try collector.drain() } catch { flapError = error as? DataPlaneSystemError }
        try lab.must(["ip", "-n", lab.router, "link", "set", lab.routerInterface, "up"])
        try lab.waitUntilReady()
        try member.join("239.77.3.3")
        let afterFlap = try collector.collect(until: { $0.contains { $0.mentions("239.77.3.3", recordType: 4) } }, timeout: .seconds(5), thenFor: .zero)
        print("ListenerTap link flap: read while down: \(flapError.map { "\($0)" } ?? "nothing"); report after up: \(afterFlap)")
        #expect(flapError?.code == ENETDOWN, "\(String(describing: flapError))")
        #expect(afterFlap, "no report on the same socket after the flap: \(collector.messages)")
        #expect(try inNamespace(lab.router) { try shared.reopenIfReplaced() } == .unchanged)
        #expect(try lab.deviceFlags(lab.router, lab.routerInterface) & allMulti != 0, "ALLMULTI lost in the flap")
        member.close()

        // Delete the veth (both ends) and create it again with the same names.
        try lab.must(["ip", "-n", lab.host, "link", "del", lab.hostInterface])
        try lab.must(["ip", "-n", lab.host, "link", "add", lab.hostInterface, "type", "veth", "peer", "name", lab.routerInterface, "netns", lab.router])
        try lab.must(["ip", "-n", lab.host, "addr", "add", ListenerLab.hostAddress + "/24", "dev", lab.hostInterface])
        try lab.must(["ip", "-n", lab.router, "link", "set", lab.routerInterface, "up"])
        try lab.must(["ip", "-n", lab.host, "link", "set", lab.hostInterface, "up"])
        try lab.waitUntilReady()

        // The old socket is bound to an index that no longer exists: it reports ENETDOWN once or
        // nothing, and never receives again.
        var buffer = [UInt8](repeating: 0, count: 2048)
        var oldError: DataPlaneSystemError?
        do { _ = try buffer.withUnsafeMutableBytes { try tap.receive(into: $0) } } catch let error as DataPlaneSystemError { oldError = error }
        let outcome = try inNamespace(lab.router) { try shared.reopenIfReplaced() }
        #expect(outcome == .reopened(oldIndex: firstIndex, newIndex: tap.interfaceIndex) && tap.interfaceIndex != firstIndex, "\(outcome)")
        #expect(try lab.deviceFlags(lab.router, lab.routerInterface) & allMulti != 0, "ALLMULTI not on on the new interface")

        collector.messages = []
        member = try HostMember(lab, ipv6: false)
        defer { member.close() }
        try member.join("239.77.3.2")
        #expect(try collector.collect(until: { $0.contains { $0.mentions("239.77.3.2", recordType: 4) } }, timeout: .seconds(5), thenFor: .zero),
                "no report after reopening: \(collector.messages)")
        print("ListenerTap reopen: index \(firstIndex) -> \(tap.interfaceIndex), old socket's read: \(oldError.map { "\($0)" } ?? "nothing queued"), \(outcome)")
        #expect(collector.messages.allSatisfy { $0.records.allSatisfy { $0.group != "239.77.3.1" } }, "\(collector.messages)")

        tap.close()
        #expect(try lab.deviceFlags(lab.router, lab.routerInterface) & allMulti == 0, "ALLMULTI still on after the tap closed")
    }

    // MARK: VLAN tags, truncation

    /// This kernel has no 802.1Q devices (CONFIG_VLAN_8021Q unset), so the host namespace sends
    /// a tagged frame itself through a packet socket: the receiving kernel moves the tag into
    /// the skb's metadata before any tap sees the frame, exactly as for a tag from a VLAN device.
    @Test("tagged frames are dropped by default, delivered with their tag by an includeTagged tap; short buffers report truncation")
    func vlanTagsAndTruncation() throws {
        let lab = try ListenerLab(tag: "v")
        defer { lab.down() }
        let name = try #require(InterfaceName(lab.routerInterface))
        let (plain, tagged) = try inNamespace(lab.router) {
            (try ListenerTap(interface: name), try ListenerTap(interface: name, vlan: .includeTagged))
        }
        defer { plain.close(); tagged.close() }

        let hostMAC = try lab.mac(lab.host, lab.hostInterface)
        let count = 20
        let report = ListenerFrames.igmpFrame(sourceMAC: hostMAC, destinationMAC: [0x01, 0, 0x5e, 0x4d, 0x04, 0x01],
                                              source: [198, 18, 77, 1], destination: [239, 77, 4, 1],
                                              igmp: [0x16, 0, 0, 0, 239, 77, 4, 1])
        let vlanTag: UInt16 = 0x6064  // priority 3, VLAN 100
        let taggedReport = Array(report[0..<12]) + [0x81, 0x00] + ListenerFrames.be16(vlanTag) + Array(report[12...])
        let hostInterface = lab.hostInterface
        try inNamespace(lab.host) {
            let sender = try ListenerTap(interface: try #require(InterfaceName(hostInterface)))
            defer { sender.close() }
            for _ in 0..<count {
                _ = try sendRetrying(sender, report)
                _ = try sendRetrying(sender, taggedReport)
                usleep(1000)
            }
        }
        let plainCollector = Collector(plain)
        let taggedCollector = Collector(tagged)
        _ = try taggedCollector.collect(until: { $0.count >= 2 * count }, timeout: .seconds(3), thenFor: .milliseconds(100))
        _ = try plainCollector.collect(until: { $0.count >= count }, timeout: .seconds(1), thenFor: .milliseconds(100))
        // Only the injected reports count (the host's kernel may send MLD of its own meanwhile).
        let ours = { (c: Collector) in zip(c.raw, c.tags).filter { $0.0 == report } }
        let plainOurs = ours(plainCollector), taggedOurs = ours(taggedCollector)
        let withTag = taggedOurs.compactMap(\.1)
        print("ListenerTap VLAN: sent \(count) untagged + \(count) tagged (VLAN 100) reports; untaggedOnly tap got \(plainOurs.count) (\(plainOurs.filter { $0.1 != nil }.count) tagged), includeTagged tap got \(taggedOurs.count), \(withTag.count) with a tag; other frames: \(plainCollector.messages.filter { !$0.mentions("239.77.4.1") })")
        #expect(plainOurs.count == count && plainOurs.allSatisfy { $0.1 == nil })
        #expect(taggedOurs.count == 2 * count, "the tagged frames arrive with the tag taken out: the same bytes as the untagged report")
        #expect(withTag.count == count && withTag.allSatisfy { $0 == vlanTag }, "\(withTag)")

        // One-frame receive into a buffer shorter than the frame: cut, with the real length.
        let truncation = try inNamespace(lab.router) { try ListenerTap(interface: name) }
        defer { truncation.close() }
        try inNamespace(lab.host) {
            let sender = try ListenerTap(interface: try #require(InterfaceName(hostInterface)))
            defer { sender.close() }
            _ = try sendRetrying(sender, report)
        }
        var small = [UInt8](repeating: 0, count: 20)
        var frame: ListenerTap.Frame?
        let got = try waitUntil(timeout: .seconds(3)) {
            while true {
                frame = try small.withUnsafeMutableBytes { try truncation.receive(into: $0) }
                guard frame != nil else { return false }
                if small == Array(report[0..<20]) { return true }
            }
        }
        #expect(got && frame?.bytes.count == 20 && frame?.length == report.count && frame?.isTruncated == true,
                "\(String(describing: frame.map { ($0.bytes.count, $0.length) }))")
    }

    // MARK: Helpers

    /// An AF_PACKET socket on lr0 with no filter (8 MiB receive buffer): what really arrived.
    private func openWitness(_ lab: ListenerLab) throws -> Int32 {
        let routerInterface = lab.routerInterface
        return try inNamespace(lab.router) { () throws -> Int32 in
            let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(cln_htons(UInt16(CLN_ETH_P_ALL))))
            guard fd >= 0 else { throw HarnessError("witness socket: \(String(cString: strerror(errno)))") }
            var size: Int32 = 8 << 20
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_ll()
            address.sll_family = UInt16(AF_PACKET)
            address.sll_protocol = cln_htons(UInt16(CLN_ETH_P_ALL))
            address.sll_ifindex = Int32(if_nametoindex(routerInterface))
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_ll>.size)) }
            }
            guard bound == 0 else { close(fd); throw HarnessError("witness bind: \(String(cString: strerror(errno)))") }
            return fd
        }
    }

    /// IGMP/MLD frames that arrived (not the router's own: those are PACKET_OUTGOING) queued on
    /// the witness.
    private func drainWitness(_ fd: Int32) -> Int {
        var count = 0
        var buffer = [UInt8](repeating: 0, count: 9300)
        var from = sockaddr_ll()
        while true {
            var length = socklen_t(MemoryLayout<sockaddr_ll>.size)
            let n = withUnsafeMutablePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT), $0, &length) }
            }
            guard n > 0 else { return count }
            if Int32(from.sll_pkttype) != CLN_PACKET_OUTGOING, ListenerFrames.parse(Array(buffer[0..<n])) != nil { count += 1 }
        }
    }

    private func openTap(_ lab: ListenerLab) throws -> ListenerTap {
        let name = try #require(InterfaceName(lab.routerInterface))
        return try inNamespace(lab.router) { try ListenerTap(interface: name) }
    }
}

/// Reads a tap (batch receive, poll for readiness) and parses what it delivers.
final class Collector {
    let tap: ListenerTap
    let batch = ListenerTap.Batch(capacity: 8)
    var messages: [ListenerFrames.Message] = []
    var raw: [[UInt8]] = []
    var tags: [UInt16?] = []
    var unparsed: [[UInt8]] = []
    var framesRead = 0
    var wrongInterface = 0
    var truncated = 0
    init(_ tap: ListenerTap) { self.tap = tap }

    /// `instant` on the tap's timestamp scale (MonotonicClock nanoseconds) as a Duration.
    func instant(_ instant: ContinuousClock.Instant) -> Duration {
        let nowMono = Duration.nanoseconds(Int64(MonotonicClock.now().nanoseconds))
        return nowMono - (ContinuousClock.now - instant)
    }

    /// Reads until `done(messages)` holds (then `thenFor` more) or `timeout`; whether it held.
    func collect(until done: ([ListenerFrames.Message]) -> Bool, timeout: Duration, thenFor: Duration) throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        var satisfiedAt: ContinuousClock.Instant?
        while true {
            let now = ContinuousClock.now
            if satisfiedAt == nil && done(messages) { satisfiedAt = now }
            if let at = satisfiedAt, now - at >= thenFor { return true }
            if satisfiedAt == nil && now >= deadline { return false }
            let end = satisfiedAt.map { $0 + thenFor } ?? deadline
            let wait = max(1, Int32((end - now).components.attoseconds / 1_000_000_000_000_000 + (end - now).components.seconds * 1000))
            var ready = pollfd(fd: tap.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&ready, 1, min(wait, 100))
            try drain()
        }
    }

    func drain() throws {
        while true {
            let count = try tap.receive(into: batch)
            guard count > 0 else { return }
            for index in 0..<count {
                let frame = batch[index]
                framesRead += 1
                if frame.interfaceIndex != tap.interfaceIndex { wrongInterface += 1 }
                if frame.isTruncated { truncated += 1 }
                let bytes = Array(frame.bytes)
                raw.append(bytes)
                tags.append(frame.vlanTag)
                if let message = ListenerFrames.parse(bytes, timestamp: frame.timestamp.nanoseconds) {
                    messages.append(message)
                } else {
                    unparsed.append(bytes)
                }
            }
        }
    }
}

/// A socket of the Linux host (opened in the host namespace) that joins and leaves groups on
/// lh0; the host's kernel sends the reports.
final class HostMember {
    let fd: Int32
    let ipv6: Bool
    let index: Int32

    init(_ lab: ListenerLab, ipv6: Bool) throws {
        let interface = lab.hostInterface
        (fd, index) = try inNamespace(lab.host) { () throws -> (Int32, Int32) in
            let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw HarnessError("host socket: \(String(cString: strerror(errno)))") }
            let index = Int32(if_nametoindex(interface))
            guard index > 0 else { Glibc.close(fd); throw HarnessError("no \(interface) in the host namespace") }
            return (fd, index)
        }
        self.ipv6 = ipv6
    }

    func join(_ group: String) throws { try change(group, join: true) }
    func leave(_ group: String) throws { try change(group, join: false) }

    private func change(_ group: String, join: Bool) throws {
        if ipv6 {
            var address = in6_addr()
            guard inet_pton(AF_INET6, group, &address) == 1 else { throw HarnessError("bad group \(group)") }
            let rc = withUnsafeBytes(of: &address) { cln_mcast_ipv6(fd, join ? 1 : 0, index, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), nil) }
            guard rc == 0 else { throw HarnessError("MCAST_\(join ? "JOIN" : "LEAVE")_GROUP \(group): \(String(cString: strerror(rc)))") }
        } else {
            var request = ip_mreqn()
            guard inet_pton(AF_INET, group, &request.imr_multiaddr) == 1 else { throw HarnessError("bad group \(group)") }
            request.imr_ifindex = index
            let rc = setsockopt(fd, Int32(IPPROTO_IP), join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &request, socklen_t(MemoryLayout<ip_mreqn>.size))
            guard rc == 0 else { throw HarnessError("IP_\(join ? "ADD" : "DROP")_MEMBERSHIP \(group): \(String(cString: strerror(errno)))") }
        }
    }

    private var closed = false

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }
}

/// `tap.send(frame:)`, again (up to 10 times, 50 ms apart) while it fails with ENOBUFS or
/// EAGAIN: a veth returns ENOBUFS when the peer's per-CPU backlog is full and drops the frame
/// (seen here while another test loaded the machine). Returns the attempts it took.
func sendRetrying(_ tap: ListenerTap, _ frame: [UInt8]) throws -> Int {
    var attempt = 1
    while true {
        let failure: DataPlaneSystemError
        do {
            try tap.send(frame: frame)
            return attempt
        } catch {
            failure = error
        }
        guard failure.code == ENOBUFS || failure.code == EAGAIN, attempt < 10 else { throw failure }
        attempt += 1
        usleep(50_000)
    }
}

/// Sends `count` UDP datagrams (paced 0.5 ms) out of `interfaceIndex`; throws on any failure.
private func sendUDP(to destination: String, port: UInt16, ipv6: Bool, interfaceIndex: Int32, count: Int) throws {
    let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("UDP socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var storage = sockaddr_storage()
    let length: socklen_t
    if ipv6 {
        var index = UInt32(interfaceIndex)
        _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_MULTICAST_IF, &index, socklen_t(MemoryLayout<UInt32>.size))
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = port.bigEndian
        guard inet_pton(AF_INET6, destination, &address.sin6_addr) == 1 else { throw HarnessError("bad \(destination)") }
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in6.self) }
        length = socklen_t(MemoryLayout<sockaddr_in6>.size)
    } else {
        var request = ip_mreqn()
        request.imr_ifindex = interfaceIndex
        _ = setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, &request, socklen_t(MemoryLayout<ip_mreqn>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, destination, &address.sin_addr) == 1 else { throw HarnessError("bad \(destination)") }
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in.self) }
        length = socklen_t(MemoryLayout<sockaddr_in>.size)
    }
    let payload = [UInt8](repeating: 0x5a, count: 64)
    for _ in 0..<count {
        let sent = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, payload, payload.count, 0, $0, length) }
        }
        guard sent == payload.count else { throw HarnessError("sendto \(destination): \(String(cString: strerror(errno)))") }
        usleep(500)
    }
}

/// The destination address of an Ethernet frame carrying UDP to `port` (IPv4, or IPv6 without
/// extension headers), else nil.
private func udpDestination(_ frame: [UInt8], port: UInt16) -> String? {
    guard frame.count >= 14 else { return nil }
    let etherType = UInt16(frame[12]) << 8 | UInt16(frame[13])
    if etherType == 0x0800, frame.count >= 34, frame[23] == 17 {
        let udp = 14 + Int(frame[14] & 0x0f) * 4
        guard frame.count >= udp + 4, UInt16(frame[udp + 2]) << 8 | UInt16(frame[udp + 3]) == port else { return nil }
        return ListenerFrames.ipv4Text(frame[30..<34])
    }
    if etherType == 0x86dd, frame.count >= 58, frame[20] == 17, UInt16(frame[56]) << 8 | UInt16(frame[57]) == port {
        return ListenerFrames.ipv6Text(frame[38..<54])
    }
    return nil
}
