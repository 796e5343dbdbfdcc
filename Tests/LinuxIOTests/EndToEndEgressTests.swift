import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `mcrelay daemon --egress packet|udp` end to end. Which path carried the traffic shows in the
/// IPv4 identification field the receiver sees: the kernel's UDP path numbers its datagrams,
/// frames the relay builds carry 0 (see RelayCore's EgressFrame). Either way a frame reader on
/// the receiver's link must see one datagram per frame (no GSO super-frame crosses the veth).
extension RelayEndToEndTests {
    @Test("--egress packet sends relay-built frames, --egress udp kernel datagrams; both deliver everything, one datagram per frame",
          arguments: ["packet", "udp"])
    func egressPaths(egress: String) throws {
        let count = 400, size = 200
        try withRelay(egress == "packet" ? "egp" : "egu", daemonArguments: ["--egress", egress]) { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001:4"])
            try daemon.waitSettled()
            let capture = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
            defer { capture.close() }
            let streams = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)]
            let receiver = try Receiver(lab, streams: streams, expect: count, size: size)
            try send(lab, streams: streams, count: count, rate: 800, size: size)
            expectDelivered(try receiver.finish(), streams, count: count, ttl: 4)
            expectCounted(try daemon.stats(), inputs: ["239.1.1.1:5001"], packets: UInt64(count))

            let frames = capture.frames(expect: count).compactMap(CapturedDatagram.init).filter { $0.destination == [239, 10, 1, 1] }
            #expect(frames.count == count, "frames captured on rcv0: \(frames.count) for \(count) datagrams")
            let wrong = frames.filter { $0.payload.count != size || $0.udpLength != size + 8 }
            #expect(wrong.isEmpty, "\(wrong.count) frames do not carry exactly one \(size)-byte datagram: \(wrong.prefix(3).map(\.payload.count))")
            let unnumbered = frames.filter { $0.identification == 0 }.count
            if egress == "packet" {
                #expect(unnumbered == frames.count, "\(unnumbered) of \(frames.count) frames with IPv4 ID 0")
                // The relay keeps the sender's source port: one port for the whole stream.
                #expect(Set(frames.map(\.sourcePort)).count == 1, "source ports \(Set(frames.map(\.sourcePort)))")
            } else {
                #expect(unnumbered <= count / 10, "\(unnumbered) of \(frames.count) frames with IPv4 ID 0")
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
}
