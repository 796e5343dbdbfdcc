import Foundation
import Glibc
import CLinuxNet
import Testing

/// The ListenerTap's kernel filter, run by the kernel on an AF_UNIX datagram socket pair (the
/// same classic BPF interpreter as on a packet socket; the datagram is the frame from its
/// Ethernet header on, and the VLAN-present ancillary load reads 0). No root, no namespace:
/// it runs in the pure pass. The live suite (ListenerTapTests) proves it on real frames.
@Suite("ListenerTap filter (classic BPF, in the kernel)")
struct ListenerFilterTests {
    static let mac: [UInt8] = [0x02, 0, 0, 0, 0, 1]
    static let v4Source: [UInt8] = [198, 18, 77, 1]
    static let v6LinkLocal: [UInt8] = [0xfe, 0x80] + [UInt8](repeating: 0, count: 13) + [1]
    static let v6Group: [UInt8] = [0xff, 0x3e] + [UInt8](repeating: 0, count: 13) + [0x77]

    /// Frames with what the filter must decide about them.
    static var cases: [(name: String, frame: [UInt8], accept: Bool)] {
        var list: [(String, [UInt8], Bool)] = []
        let f = ListenerFrames.self
        let groupMAC: [UInt8] = [0x01, 0, 0x5e, 0x4d, 0x01, 0x01]
        list.append(("IGMPv2 query, IHL 6", f.igmpV2GeneralQuery(sourceMAC: mac, source: v4Source, maxResponseTenths: 10), true))
        let v2report = f.igmpFrame(sourceMAC: mac, destinationMAC: groupMAC, source: v4Source, destination: [239, 77, 1, 1],
                                   igmp: [0x16, 0, 0, 0, 239, 77, 1, 1])
        list.append(("IGMPv2 report, IHL 6", v2report, true))
        // The same report without options (IHL 5): Ethernet + 20-byte header + IGMP.
        var plain = Array(v2report[0..<14]) + [0x45] + Array(v2report[15..<34]) + Array(v2report[38...])
        plain[16] = 0; plain[17] = 28
        list.append(("IGMPv2 report, IHL 5", plain, true))
        let v3report = f.igmpFrame(sourceMAC: mac, destinationMAC: [0x01, 0, 0x5e, 0, 0, 0x16], source: v4Source,
                                   destination: [224, 0, 0, 22], igmp: [0x22, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 239, 77, 1, 1])
        list.append(("IGMPv3 report", v3report, true))
        var udp = v2report
        udp[23] = 17
        list.append(("IPv4 UDP multicast", udp, false))
        var icmp = v2report
        icmp[23] = 1
        list.append(("IPv4 ICMP", icmp, false))
        var wrongVersion = v2report
        wrongVersion[14] = 0x66
        list.append(("EtherType IPv4, version 6, protocol 2", wrongVersion, false))
        list.append(("IPv4 cut before the protocol", Array(v2report[0..<20]), false))
        var arp = v2report
        arp[12] = 0x08; arp[13] = 0x06
        list.append(("ARP", arp, false))
        // 802.1Q tag inline (the kernel strips tags before taps; an inline one is not parsed).
        let tagged = Array(v2report[0..<12]) + [0x81, 0x00, 0x00, 0x64] + Array(v2report[12...])
        list.append(("IGMP behind an inline 802.1Q tag", tagged, false))

        func mld(_ type: UInt8, length: Int = 24) -> [UInt8] {
            var icmp = [type, 0, 0, 0] + [UInt8](repeating: 0, count: length - 4)
            if length >= 24 { icmp.replaceSubrange(8..<24, with: v6Group) }
            return f.mldFrame(sourceMAC: mac, destinationMAC: [0x33, 0x33, 0, 0, 0, 0x77], source: v6LinkLocal,
                              destination: v6Group, icmp: icmp)
        }
        list.append(("MLDv2 general query", f.mldV2GeneralQuery(sourceMAC: mac, linkLocalSource: v6LinkLocal, maxResponseMilliseconds: 1000), true))
        list.append(("MLDv1 query", mld(130), true))
        list.append(("MLDv1 report", mld(131), true))
        list.append(("MLDv1 done", mld(132), true))
        list.append(("MLDv2 report", mld(143, length: 28), true))
        list.append(("ICMPv6 neighbour solicitation after hop-by-hop", mld(135), false))
        list.append(("ICMPv6 echo request after hop-by-hop", mld(128), false))
        // Without the hop-by-hop header: ICMPv6 right after the IPv6 header.
        func direct(_ frame: [UInt8]) -> [UInt8] {
            var out = Array(frame[0..<54]) + Array(frame[62...])
            out[20] = 58
            let payload = out.count - 54
            out[18] = UInt8(payload >> 8); out[19] = UInt8(payload & 0xff)
            return out
        }
        list.append(("MLDv2 report without hop-by-hop", direct(mld(143, length: 28)), true))
        list.append(("MLDv1 report without hop-by-hop", direct(mld(131)), true))
        list.append(("neighbour solicitation", direct(mld(135)), false))
        list.append(("router solicitation", direct(mld(133)), false))
        // A hop-by-hop header of 16 bytes (length field 1): the type is read after all of it.
        func longHopByHop(_ frame: [UInt8], decoy: UInt8) -> [UInt8] {
            var out = Array(frame[0..<62]) + [decoy, 0, 0x01, 0x06, 0, 0, 0, 0] + Array(frame[62...])
            out[55] = 1
            let payload = out.count - 54
            out[18] = UInt8(payload >> 8); out[19] = UInt8(payload & 0xff)
            return out
        }
        list.append(("MLDv2 report after a 16-byte hop-by-hop header", longHopByHop(mld(143, length: 28), decoy: 135), true))
        list.append(("neighbour solicitation after a 16-byte hop-by-hop header with 143 where 8 bytes would end",
                     longHopByHop(mld(135), decoy: 143), false))
        var udp6 = mld(143, length: 28)
        udp6[54] = 17
        list.append(("IPv6 hop-by-hop then UDP", udp6, false))
        var udpDirect = direct(mld(143, length: 28))
        udpDirect[20] = 17
        list.append(("IPv6 UDP multicast", udpDirect, false))
        var routing = mld(143, length: 28)
        routing[20] = 43
        list.append(("IPv6 routing header first", routing, false))
        var ipv6Version4 = mld(143, length: 28)
        ipv6Version4[14] = 0x40
        list.append(("EtherType IPv6, version 4", ipv6Version4, false))
        let report = mld(143, length: 28)
        list.append(("MLD cut before the ICMPv6 type", Array(report[0..<62]), false))
        var hugeHopByHop = report
        hugeHopByHop[55] = 200
        list.append(("hop-by-hop length beyond the frame", hugeHopByHop, false))
        list.append(("runt", [0x01, 0x00, 0x5e], false))
        return list
    }

    @Test("keeps IGMP (any IHL) and MLD (direct or after hop-by-hop), drops the rest")
    func decisions() throws {
        for include in [0, 1] {
            var pair: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
                throw HarnessError("socketpair: \(String(cString: strerror(errno)))")
            }
            defer { close(pair[0]); close(pair[1]) }
            let attached = cln_attach_listener_filter(pair[1], Int32(include))
            try #require(attached == 0, "SO_ATTACH_FILTER: \(String(cString: strerror(-attached)))")
            var buffer = [UInt8](repeating: 0, count: 4096)
            var checked = 0
            for item in Self.cases {
                let sent = send(pair[0], item.frame, item.frame.count, 0)
                try #require(sent == item.frame.count, "send \(item.name): \(String(cString: strerror(errno)))")
                let got = recv(pair[1], &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if item.accept {
                    #expect(got == item.frame.count && Array(buffer[0..<max(got, 0)]) == item.frame,
                            "\(item.name) (include_tagged \(include)): expected whole, got \(got)")
                } else {
                    #expect(got < 0 && errno == EAGAIN, "\(item.name) (include_tagged \(include)): expected dropped, got \(got) bytes")
                }
                checked += 1
            }
            #expect(checked == Self.cases.count && checked > 25)
        }
    }

    @Test("the frames the tests build parse back, with correct checksums")
    func builtFramesParse() throws {
        let query = ListenerFrames.igmpV2GeneralQuery(sourceMAC: Self.mac, source: Self.v4Source, maxResponseTenths: 10)
        #expect(query.count == 14 + 24 + 8)
        #expect(ListenerFrames.checksum(Array(query[14..<38])) == 0, "IPv4 header checksum")
        #expect(ListenerFrames.checksum(Array(query[38...])) == 0, "IGMP checksum")
        let parsed = try #require(ListenerFrames.parse(query))
        #expect(parsed.type == 0x11 && parsed.hasRouterAlert && parsed.ttl == 1 && parsed.source == "198.18.77.1")

        let mld = ListenerFrames.mldV2GeneralQuery(sourceMAC: Self.mac, linkLocalSource: Self.v6LinkLocal, maxResponseMilliseconds: 1000)
        #expect(mld.count == 14 + 40 + 8 + 28)
        let icmp = Array(mld[62...])
        let pseudo = Array(mld[22..<54]) + [0, 0, 0, UInt8(icmp.count), 0, 0, 0, 58]
        #expect(ListenerFrames.checksum(pseudo + icmp) == 0, "ICMPv6 checksum")
        let parsed6 = try #require(ListenerFrames.parse(mld))
        #expect(parsed6.type == 130 && parsed6.hasRouterAlert && parsed6.ttl == 1 && parsed6.source == "fe80::1")
    }
}
