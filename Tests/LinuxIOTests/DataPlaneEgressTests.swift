import Foundation
import Glibc
import CLinuxNet
import LinuxIO
import RelayControl
import RelayCore
import Testing

/// The egress path on its own, with frames built in the test so the batch is known exactly:
/// Forwarder decisions -> TransmitQueue -> real UDP sockets in the relay namespace -> mcrecv.
/// (The AF_PACKET path has its own tests in DataPlanePacketEgressTests.)
@Suite("DataPlane egress batching", .serialized,
       .enabled(if: DataPlaneTestSupport.isRoot, "needs root (network namespaces)"))
struct DataPlaneEgressTests {
    /// 10 x 700 bytes, 3 x 300, 5 x 700 of one stream in one batch. On the UDP path with GSO
    /// allowed (`--segmentation on`: the veth would otherwise refuse it, see
    /// DataPlanePacketEgressTests) they go out as three messages ([700 x 10, 300], [300, 300],
    /// [700 x 5]: a shorter datagram may only end a group); with `off`, as 18. On the packet path
    /// every datagram is its own frame whatever the setting. Either way the receiver's socket gets
    /// the same 18 datagrams, byte-exact.
    @Test("same-size datagrams coalesce into UDP GSO sends only on the UDP path with GSO allowed, and arrive unchanged",
          arguments: [SegmentationSetting.on, .off], EgressMode.allCases)
    func segmentation(setting: SegmentationSetting, mode: EgressMode) throws {
        let enabled = setting == .on && mode == .udp
        let lab = try DataPlaneLab(tag: (setting == .on ? "gs" : "gn") + (mode == .packet ? "p" : "u"))
        defer { lab.down() }
        let sizes = Array(repeating: 700, count: 10) + Array(repeating: 300, count: 3) + Array(repeating: 700, count: 5)
        let rule = try DataPlaneRules.rule("rin0:239.1.2.3:5000", ["rout0:239.9.1.1:6000:6"])
        let plan = WorkerPlan(worker: WorkerID(0), version: 1,
                              ingress: [IngressAssignment(interface: DataPlaneRules.interface("rin0"), fanoutGroup: nil)],
                              rules: [rule])
        let receiver = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver0Address,
                                             streams: ["239.9.1.1:6000:3"], expect: sizes.count, size: nil)
        defer { receiver.terminate() }

        let frames = sizes.enumerated().map { sequence, size in
            EgressTestFrame.ipv4UDP(group: IPv4Address(239, 1, 2, 3), port: 5000,
                                    payload: MCStream.payload(stream: 3, sequence: UInt64(sequence), size: size))
        }
        let counts = try DataPlaneTestSupport.inNamespace(lab.relay) { () -> [UInt64] in
            var forwarder = Forwarder(plan: plan)
            let pool = EgressSocketPool(mode: mode, segmentation: setting)
            let problems = pool.install(plan, now: 0)
            guard problems.isEmpty else { throw DataPlaneTestSupport.HarnessError("egress setup: \(problems)") }
            let queue = TransmitQueue()
            var reports: [String] = []
            try DataPlaneTestSupport.forwardAndFlush(frames, forwarder: &forwarder, pool: pool, queue: queue) { reports.append($0) }
            guard reports.isEmpty else { throw DataPlaneTestSupport.HarnessError("send problems: \(reports)") }
            return [queue.sent, queue.failed, queue.segmentedMessages, queue.packetSent]
        }
        #expect(counts == [UInt64(sizes.count), 0, enabled ? 3 : 0, mode == .packet ? UInt64(sizes.count) : 0],
                 "sent, failed, GSO messages, sent through packet sockets")

        let output = try receiver.finish(timeout: 20, check: false)
        #expect(output.status == 0, "mcrecv (strict, byte-exact): \(output.stdout) \(output.stderr)")
        let report = try DataPlaneLab.json(output.stdout, from: "mcrecv")
        let stream = (report["received"] as? [String: Any])?["239.9.1.1:6000"] as? [String: Any]
        #expect(stream?["bytes"] as? Int == sizes.reduce(0, +), "\(String(describing: stream))")
    }
}

enum EgressTestFrame {
    /// An IPv4/UDP datagram from 198.18.1.1:4000 (no link header, as an AF_PACKET SOCK_DGRAM
    /// socket delivers it): RelayCore's `EgressFrame` without its Ethernet header.
    static func ipv4UDP(group: IPv4Address, port: UInt16, payload: [UInt8]) -> [UInt8] {
        var fields = EgressFrame.Fields(sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), source: IPv4Address(198, 18, 1, 1), destination: group,
                                        sourcePort: 4000, destinationPort: port, ttl: 8)
        fields.dontFragment = false
        return Array(EgressFrame.bytes(fields, payload: payload).dropFirst(EgressFrame.ethernetHeaderBytes))
    }
}
