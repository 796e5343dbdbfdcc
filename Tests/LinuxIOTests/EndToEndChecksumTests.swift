import Foundation
import Testing

/// UDP checksums as senders leave them, through the daemon on the wire (issue #14's work on
/// `EgressFrame.checksumCarry`), on the packet path and on the XDP path: the injector writes
/// `count` datagrams of each kind to 239.1.1.1:5001 (198.18.1.1, 100-byte payloads whose first
/// byte names the kind and next four the sequence), and a frame reader on rcv0 checks every copy
/// of 239.10.1.1:6001 the relay sent:
/// - G, a valid checksum: carried on, valid;
/// - B, a wrong one (corrupted on the way): carried on, still wrong, so the receiver discards it
///   as it would have without the relay (a checksum summed over the payload would hide it);
/// - Z, none (0, IPv4 allows it): summed from the payload, valid;
/// - P, the pseudo header's sum only (what a sender on this host leaves to offload): completed, valid.
enum ChecksumCases {
    static let kinds: [UInt8] = Array("GBZP".utf8)

    static let injector = #"""
import socket, struct, sys, time
iface, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
mac = bytes.fromhex(open(f"/sys/class/net/{iface}/address").read().strip().replace(":", ""))
eth = bytes.fromhex("01005e010101") + mac + b"\x08\x00"
src, dst = socket.inet_aton("198.18.1.1"), socket.inet_aton("239.1.1.1")
def fold(t):
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return t
def words(b):
    if len(b) % 2: b += b"\0"
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))
def frame(kind, seq):
    payload = kind + struct.pack("!I", seq) + b"c" * 95
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", 40000, 5001, length, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
    good = (~fold(words(pseudo) + words(udp)) & 0xffff) or 0xffff
    partial = fold(words(pseudo))
    field = {b"G": good, b"Z": 0, b"P": partial, b"B": good ^ 0x5a5a}[kind]
    if kind == b"B" and field in (0, partial): field = good ^ 0x0101
    udp = udp[:6] + struct.pack("!H", field) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, seq & 0xffff, 0x4000, 8, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", ~fold(words(ip)) & 0xffff) + ip[12:]
    return eth + ip + udp
sent = 0
for seq in range(n):
    for kind in (b"G", b"B", b"Z", b"P"):
        s.send(frame(kind, seq))
        sent += 1
    time.sleep(0.002)
print("sent", sent)
"""#

    /// Every copy of 239.10.1.1 on the wire, by kind: exactly `count` of each, each sequence
    /// once, checksums as the kinds above say. Returns the counts for the test's line.
    @discardableResult
    static func expectCarried(_ frames: [CapturedDatagram], count: Int) -> String {
        let copies = frames.filter { $0.destination == [239, 10, 1, 1] && $0.payload.count == 100 }
        var seen = Set<[UInt8]>()
        var summary: [String] = []
        for kind in kinds {
            let mine = copies.filter { $0.payload[0] == kind }
            let name = String(UnicodeScalar(kind))
            #expect(mine.count == count, "kind \(name): \(mine.count) copies on rcv0 of \(count) sent")
            let valid = mine.filter { $0.udpChecksumValid && $0.udpChecksum != 0 }.count
            if kind == UInt8(ascii: "B") {
                #expect(valid == 0, "kind B (wrong checksum): \(valid) of \(mine.count) copies left with a valid one")
            } else {
                #expect(valid == mine.count, "kind \(name): \(mine.count - valid) of \(mine.count) copies without a valid checksum")
            }
            for copy in mine { seen.insert(Array(copy.payload[0..<5])) }
            summary.append("\(name) \(mine.count) (\(valid) valid)")
        }
        #expect(seen.count == copies.count, "\(copies.count - seen.count) copies twice")
        return summary.joined(separator: ", ")
    }
}

extension RelayEndToEndTests {
    @Test("UDP checksums on the packet path: valid carried on, wrong carried on as wrong, none and offload-partial summed; frame by frame on rcv0")
    func udpChecksumsCarriedOn() throws {
        try withRelay("csum") { lab, daemon in
            try daemon.addRule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"])
            try daemon.waitSettled()
            let capture = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
            defer { capture.close() }
            let count = 100
            let injected = try lab.must(lab.sender, ["python3", "-c", ChecksumCases.injector, "snd0", "\(count)"])
            #expect(injected.stdout.contains("sent \(4 * count)"), "injector: \(injected)")
            let summary = ChecksumCases.expectCarried(capture.frames(expect: 4 * count).compactMap(CapturedDatagram.init), count: count)
            expectCounted(try daemon.stats(), inputs: ["239.1.1.1:5001"], packets: UInt64(4 * count))
            print("udp checksums, packet path: \(summary)")
        }
    }
}

extension EndToEndXDPTests {
    @Test("UDP checksums on the XDP path: valid carried on, wrong carried on as wrong, none and offload-partial summed, every frame by XDP")
    func udpChecksumsCarriedOn() throws {
        let stream = Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)
        let config: (Lab) throws -> String = { lab in try Self.configFile(lab, [("rin0:\(stream.input)", ["rout0:\(stream.output)"])]) }
        try withXDPRelay("xdpc", config: config) { lab, daemon in
            try daemon.waitSettled()
            let paths = try #require(try daemon.stats().dataPath, "stats --json has no data_path with --data-path xdp")
            #expect(paths.rules.first?.path == "xdp", "the rule's path: \(paths.lines)")
            let capture = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
            defer { capture.close() }
            let count = 100
            let before = try redirected(lab)
            let injected = try lab.must(lab.sender, ["python3", "-c", ChecksumCases.injector, "snd0", "\(count)"])
            #expect(injected.stdout.contains("sent \(4 * count)"), "injector: \(injected)")
            let summary = ChecksumCases.expectCarried(capture.frames(expect: 4 * count).compactMap(CapturedDatagram.init), count: count)
            let carried = try redirected(lab) - before
            #expect(carried == 4 * count, "rin0 rx_queue_0_xdp_redirect grew by \(carried) of \(4 * count)")
            print("udp checksums, XDP path: \(summary); XDP redirected \(carried)")
        }
    }
}
