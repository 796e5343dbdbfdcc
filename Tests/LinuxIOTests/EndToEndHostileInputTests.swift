import Foundation
import LinuxIO
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// Hostile input: malformed frames on the wire, abusive control clients.
extension RelayEndToEndTests {
    @Test("malformed frames are counted by reason; the daemon and a valid stream are unharmed")
    func malformedFrames() throws {
        try withRelay("junk", workers: 2) { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
            try daemon.waitSettled()
            let injected = try lab.must(lab.sender, ["python3", "-c", Self.malformedFrameInjector, "snd0", "50"])
            #expect(injected.stdout.contains("sent 250"), "injector: \(injected)")
            let streams = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)]
            let receiver = try Receiver(lab, streams: streams, expect: 500, size: 200)
            try send(lab, streams: streams, count: 500, rate: 500, size: 200)
            expectDelivered(try receiver.finish(), streams, count: 500)
            let stats = try daemon.stats()
            for reason in ["bad_checksum", "truncated", "fragment", "bad_length", "bad_ipv4_header"] {
                let counted = stats.drops.nonZero.first { $0.reason.description == reason }?.count ?? 0
                #expect(counted == 50, "\(reason): daemon counted \(counted) of 50 injected")
            }
            #expect(stats.workers.allSatisfy { $0.alive && $0.restarts == 0 })
            expectCounted(stats, inputs: ["239.1.1.1:5001"], packets: 500)
        }
    }

    @Test("control socket: mode 0660, malformed, oversized and stalled clients get errors, never stall the daemon")
    func controlSocketAbuse() throws {
        try withRelay("ctl") { lab, daemon in
            var info = stat()
            #expect(stat(daemon.control, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o660, "socket mode \(String(info.st_mode & 0o777, radix: 8))")

            // A client that connects, sends half a request and then nothing.
            let stalled = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(stalled) }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                let bytes = Array(daemon.control.utf8)
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(stalled, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            #expect(connected == 0)
            _ = write(stalled, "{\"op\":\"li", 9)

            for garbage in ["nonsense\n", "{\"op\":\"bogus\"}\n", "{\"op\":\"add\"}\n", "{\"op\":\"add\",\"rule\":{\"in\":\"x\",\"out\":[]}}\n",
                            "[1,2,3]\n", "\u{0}\u{1}\u{2}\n"] {
                let reply = try ControlClient.sendRaw(Array(garbage.utf8), to: daemon.control, timeout: .seconds(5))
                let decoded = try ControlProtocol.decodeReply(reply)
                #expect(!decoded.ok && decoded.error != nil, "\(garbage.debugDescription) -> \(String(decoding: reply, as: UTF8.self))")
            }
            // A second daemon on the same socket refuses to start and says why.
            let second = try run([E2E.binary, "daemon", "--control", daemon.control, "--workers", "1"], in: lab.directory, timeout: .seconds(10))
            #expect(second.status != 0 && second.stderr.contains("in use by a running daemon"), "\(second)")

            let oversized = [UInt8](repeating: UInt8(ascii: "a"), count: 70_000) + [UInt8(ascii: "\n")]
            let reply = try ControlProtocol.decodeReply(try ControlClient.sendRaw(oversized, to: daemon.control, timeout: .seconds(5)))
            #expect(!reply.ok && (reply.error ?? "").contains("longer than"))

            // Still answering, and still forwarding.
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
            try daemon.waitSettled()
            let streams = [Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)]
            let receiver = try Receiver(lab, streams: streams, expect: 200, size: 100)
            try send(lab, streams: streams, count: 200, rate: 400, size: 100)
            expectDelivered(try receiver.finish(), streams, count: 200)
        }
    }

    /// Writes Ethernet frames to 01:00:5e:01:01:01 (239.1.1.1:5001, the rule's input) that are
    /// broken in one way each, N of every kind; prints "sent TOTAL".
    static let malformedFrameInjector = #"""
import socket, struct, sys
iface, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
src = bytes.fromhex(open(f"/sys/class/net/{iface}/address").read().strip().replace(":", ""))
eth = bytes.fromhex("01005e010101") + src + b"\x08\x00"
def csum(h):
    t = sum(struct.unpack("!%dH" % (len(h) // 2), h))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
def ip(payload_len, ihl=5, frag=0, total=None, good=True):
    total = 20 + payload_len if total is None else total
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, frag, 4, 17, 0,
                    socket.inet_aton("198.18.1.1"), socket.inet_aton("239.1.1.1"))
    c = csum(h) if good else (csum(h) ^ 0x5555)
    return h[:10] + struct.pack("!H", c) + h[12:]
def udp(payload, length=None):
    return struct.pack("!HHHH", 40000, 5001, 8 + len(payload) if length is None else length, 0) + payload
body = b"x" * 100
frames = []
frames += [eth + ip(108, good=False) + udp(body)] * n                 # bad_checksum
frames += [eth + ip(108, total=400) + udp(body)] * n                   # truncated (claims more than the frame)
frames += [eth + ip(108, frag=0x2000) + udp(body)] * n                 # fragment (more fragments)
frames += [eth + ip(108) + udp(body, length=300)] * n                  # bad_length (UDP longer than IP payload)
h = bytearray(ip(108)); h[0] = 0x44; h[10:12] = b"\0\0"                # IHL 4: impossible
h[10:12] = struct.pack("!H", csum(bytes(h[:16]) + bytes(4)))
frames += [eth + bytes(h) + udp(body)] * n                              # bad_ipv4_header
for f in frames:
    s.send(f)
print("sent", len(frames))
"""#
}
