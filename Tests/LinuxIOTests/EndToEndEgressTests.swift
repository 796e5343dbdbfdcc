import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `mcrelay daemon --egress packet|udp` end to end. Which path carried the traffic is told
/// apart by what each one passes through: a pfifo qdisc on the output interface counts every
/// datagram of the UDP path, and none of the packet path (PACKET_QDISC_BYPASS).
extension RelayEndToEndTests {
    @Test("--egress packet bypasses the output qdisc, --egress udp goes through it; both deliver everything",
          arguments: ["packet", "udp"])
    func egressPaths(egress: String) throws {
        let count = 400, size = 200
        try withRelay(egress == "packet" ? "egp" : "egu", daemonArguments: ["--egress", egress]) { lab, daemon in
            try lab.must(lab.relay, ["tc", "qdisc", "replace", "dev", "rout0", "root", "pfifo", "limit", "10000"])
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001:4"])
            try daemon.waitSettled()
            let streams = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)]
            let receiver = try Receiver(lab, streams: streams, expect: count, size: size)
            try send(lab, streams: streams, count: count, rate: 800, size: size)
            expectDelivered(try receiver.finish(), streams, count: count, ttl: 4)
            expectCounted(try daemon.stats(), inputs: ["239.1.1.1:5001"], packets: UInt64(count))

            let qdisc = try lab.must(lab.relay, ["tc", "-s", "qdisc", "show", "dev", "rout0"]).stdout
            let sent = try #require(Self.qdiscPackets(qdisc), "no 'Sent ... pkt' in tc output: \(qdisc)")
            if egress == "packet" {
                #expect(sent < count, "the qdisc saw \(sent) packets: the relayed datagrams should bypass it\n\(qdisc)")
            } else {
                #expect(sent >= count, "the qdisc saw \(sent) packets, fewer than the \(count) relayed\n\(qdisc)")
            }
            #expect(daemon.process.stderr.contains("egress: \(egress)"), "daemon log should name the egress path")
        }
    }

    @Test("--egress with an unknown value is one line naming the option")
    func badEgress() throws {
        let directory = try E2E.temporaryDirectory("egr")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try run([E2E.binary, "daemon", "--egress", "raw", "--control", directory + "/c.sock"], in: directory,
                             timeout: .seconds(20))
        #expect(result.status != 0, "\(result)")
        #expect(result.stderr.hasSuffix("--egress: \"raw\" is not packet or udp\n"), "\(result)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result)")
    }

    /// The packet count of the first "Sent N bytes M pkt" line of `tc -s qdisc show`.
    static func qdiscPackets(_ text: String) -> Int? {
        for line in text.split(separator: "\n") where line.contains("Sent ") && line.contains(" pkt") {
            let words = line.split(separator: " ")
            if let index = words.firstIndex(of: "pkt"), index > 0 { return Int(words[index - 1]) }
        }
        return nil
    }
}
