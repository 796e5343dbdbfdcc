import Foundation
import Glibc
import CLinuxNet

/// A frame reader for the live tests: an AF_PACKET socket with no filter (ETH_P_ALL, 8 MiB
/// receive buffer) opened in a namespace on one interface, so it sees every frame that arrives
/// there and every frame sent from there (`outgoing`). Read from the test's thread with `drain`;
/// each frame is stamped when the read returns (drain often where timing matters).
final class WireReader {
    struct Frame {
        var bytes: [UInt8]
        var outgoing: Bool
        var at: ContinuousClock.Instant
    }

    let namespace: String
    let interface: String
    private let fd: Int32
    private(set) var frames: [Frame] = []
    /// Frames the kernel dropped for this socket (queue full): a reader that lost frames cannot
    /// prove a count, and the tests check this is 0.
    private(set) var kernelDrops = 0

    init(namespace: String, interface: String) throws {
        self.namespace = namespace
        self.interface = interface
        fd = try inNamespace(namespace) { () throws -> Int32 in
            let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(cln_htons(UInt16(CLN_ETH_P_ALL))))
            guard fd >= 0 else { throw HarnessError("frame reader socket in \(namespace): \(String(cString: strerror(errno)))") }
            var size: Int32 = 8 << 20
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_ll()
            address.sll_family = UInt16(AF_PACKET)
            address.sll_protocol = cln_htons(UInt16(CLN_ETH_P_ALL))
            address.sll_ifindex = Int32(if_nametoindex(interface))
            guard address.sll_ifindex > 0 else { close(fd); throw HarnessError("no \(interface) in \(namespace)") }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_ll>.size)) }
            }
            guard bound == 0 else { close(fd); throw HarnessError("frame reader bind \(interface) in \(namespace): \(String(cString: strerror(errno)))") }
            return fd
        }
    }

    deinit { close(fd) }

    /// Reads everything queued now.
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 9300)
        var from = sockaddr_ll()
        while true {
            var length = socklen_t(MemoryLayout<sockaddr_ll>.size)
            let n = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0, &length)
                    }
                }
            }
            guard n > 0 else { break }
            frames.append(Frame(bytes: Array(buffer[0..<n]), outgoing: Int32(from.sll_pkttype) == CLN_PACKET_OUTGOING, at: .now))
        }
        var statistics = tpacket_stats()
        var size = socklen_t(MemoryLayout<tpacket_stats>.size)
        if getsockopt(fd, CLN_SOL_PACKET, CLN_PACKET_STATISTICS, &statistics, &size) == 0 { kernelDrops += Int(statistics.tp_drops) }
    }

    /// Drains every 20 ms for `duration`.
    func watch(for duration: Duration) {
        let end = ContinuousClock.now + duration
        while ContinuousClock.now < end {
            drain()
            usleep(20_000)
        }
        drain()
    }

    /// Drains every 20 ms until `condition` holds for the frames read so far, or `timeout`.
    func watch(until condition: ([Frame]) -> Bool, timeout: Duration) -> Bool {
        let end = ContinuousClock.now + timeout
        while true {
            drain()
            if condition(frames) { return true }
            if ContinuousClock.now >= end { return false }
            usleep(20_000)
        }
    }

    // MARK: What the frames are

    /// An IGMP query on the wire: its IPv4 source, version (by length, RFC 3376 7.1: 8 bytes
    /// v1/v2, 12 or more v3; max response 0 means v1), group (0.0.0.0: a general query).
    struct Query: CustomStringConvertible {
        var source: String
        var group: String
        var version: Int
        var maxResponseCode: UInt8
        var at: ContinuousClock.Instant
        var outgoing: Bool
        var isGeneral: Bool { group == "0.0.0.0" }
        var description: String { "IGMPv\(version) \(isGeneral ? "general" : "group \(group)") query from \(source)" }
    }

    static func igmp(_ frame: Frame) -> (source: String, message: ArraySlice<UInt8>)? {
        let b = frame.bytes
        guard b.count >= 34, b[12] == 0x08, b[13] == 0x00, b[14] >> 4 == 4, b[23] == 2 else { return nil }
        let headerLength = Int(b[14] & 0x0f) * 4
        let total = Int(b[16]) << 8 | Int(b[17])
        guard headerLength >= 20, total >= headerLength + 8, b.count >= 14 + total else { return nil }
        return (ListenerFrames.ipv4Text(b[26..<30]), b[(14 + headerLength)..<(14 + total)])
    }

    var queries: [Query] {
        frames.compactMap { frame in
            guard let (source, message) = Self.igmp(frame), message.first == 0x11 else { return nil }
            let s = message.startIndex
            let version = message.count >= 12 ? 3 : (message[s + 1] == 0 ? 1 : 2)
            return Query(source: source, group: ListenerFrames.ipv4Text(message[(s + 4)..<(s + 8)]), version: version,
                         maxResponseCode: message[s + 1], at: frame.at, outgoing: frame.outgoing)
        }
    }

    /// IGMP reports and leaves (types 0x12, 0x16, 0x17, 0x22) and who sent them.
    var reports: [(source: String, type: UInt8, at: ContinuousClock.Instant)] {
        frames.compactMap { frame in
            guard let (source, message) = Self.igmp(frame), let type = message.first, [0x12, 0x16, 0x17, 0x22].contains(type) else { return nil }
            return (source, type, frame.at)
        }
    }

    /// UDP datagrams to `group`:`port` (IPv4) that arrived (not outgoing), with when.
    func udp(to group: String, port: UInt16) -> [ContinuousClock.Instant] {
        frames.compactMap { frame in
            let b = frame.bytes
            guard !frame.outgoing, b.count >= 42, b[12] == 0x08, b[13] == 0x00, b[23] == 17,
                  ListenerFrames.ipv4Text(b[30..<34]) == group else { return nil }
            let udp = 14 + Int(b[14] & 0x0f) * 4
            guard b.count >= udp + 8, UInt16(b[udp + 2]) << 8 | UInt16(b[udp + 3]) == port else { return nil }
            return frame.at
        }
    }

    func forget() { frames = [] }
}
