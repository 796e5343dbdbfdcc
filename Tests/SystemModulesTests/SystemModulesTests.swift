// Checks that the system modules import into Swift and that their helpers do what they say.

import CLinuxNet
import CPcap
import CURing
import Testing

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Tiny classic-BPF interpreter (the subset our filters use, with Linux SKF_AD_PROTOCOL)

private func runBPF(_ prog: [sock_filter], packet: [UInt8], protocolValue: UInt16) -> UInt32 {
    var a: UInt32 = 0
    var pc = 0
    func load(_ k: UInt32, size: Int) -> UInt32? {
        if k == UInt32(bitPattern: SKF_AD_OFF + SKF_AD_PROTOCOL) { return UInt32(protocolValue) }
        let off = Int(k)
        guard off + size <= packet.count else { return nil }
        var v: UInt32 = 0
        for i in 0..<size { v = (v << 8) | UInt32(packet[off + i]) }
        return v
    }
    while pc < prog.count {
        let ins = prog[pc]
        switch Int32(ins.code) {
        case BPF_LD | BPF_W | BPF_ABS, BPF_LD | BPF_H | BPF_ABS, BPF_LD | BPF_B | BPF_ABS:
            let size = Int32(ins.code) & 0x18 == BPF_W ? 4 : (Int32(ins.code) & 0x18 == BPF_H ? 2 : 1)
            guard let v = load(ins.k, size: size) else { return 0 }  // out of bounds: drop
            a = v
            pc += 1
        case BPF_ALU | BPF_AND | BPF_K:
            a &= ins.k
            pc += 1
        case BPF_JMP | BPF_JEQ | BPF_K:
            pc += 1 + Int(a == ins.k ? ins.jt : ins.jf)
        case BPF_RET | BPF_K:
            return ins.k
        default:
            Issue.record("unexpected BPF opcode \(ins.code)")
            return 0
        }
    }
    Issue.record("BPF program fell off the end")
    return 0
}

private func program(cooked: Bool) -> [sock_filter] {
    var n: UInt32 = 0
    let p = cooked ? cln_bpf_udp_multicast_cooked(&n) : cln_bpf_udp_multicast_ethernet(&n)
    return Array(UnsafeBufferPointer(start: p, count: Int(n)))
}

/// A minimal IPv4 header + 8-byte UDP header.
private func ipv4(proto: UInt8, dst: (UInt8, UInt8, UInt8, UInt8), version: UInt8 = 4) -> [UInt8] {
    var h = [UInt8](repeating: 0, count: 28)
    h[0] = (version << 4) | 5
    h[3] = 28
    h[8] = 64
    h[9] = proto
    h[12] = 198; h[13] = 18; h[14] = 1; h[15] = 1
    h[16] = dst.0; h[17] = dst.1; h[18] = dst.2; h[19] = dst.3
    return h
}

private func ethernet(_ payload: [UInt8], type: UInt16 = 0x0800) -> [UInt8] {
    [0x01, 0x00, 0x5e, 0, 0, 1, 0x02, 0, 0, 0, 0, 1, UInt8(type >> 8), UInt8(type & 0xff)] + payload
}

@Suite struct SystemModulesTests {
    // MARK: CURing

    @Test func curingQueueNop() throws {
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        defer { ring.deallocate() }
        let rc = io_uring_queue_init(4, ring, 0)
        try #require(rc == 0, "io_uring_queue_init: \(rc)")
        defer { io_uring_queue_exit(ring) }
        let sqe = try #require(io_uring_get_sqe(ring))
        io_uring_prep_nop(sqe)
        io_uring_sqe_set_data64(sqe, 0xfeed)
        #expect(io_uring_submit(ring) == 1)
        var cqe: UnsafeMutablePointer<io_uring_cqe>?
        #expect(io_uring_wait_cqe(ring, &cqe) == 0)
        #expect(cqe?.pointee.user_data == 0xfeed)
        #expect(cqe?.pointee.res == 0)
        io_uring_cqe_seen(ring, cqe)
    }

    @Test func iosqeFlagsMatchLiburing() {
        #expect(CLN_IOSQE_FIXED_FILE == UInt8(1 << IOSQE_FIXED_FILE_BIT))
        #expect(CLN_IOSQE_IO_DRAIN == UInt8(1 << IOSQE_IO_DRAIN_BIT))
        #expect(CLN_IOSQE_IO_LINK == UInt8(1 << IOSQE_IO_LINK_BIT))
        #expect(CLN_IOSQE_IO_HARDLINK == UInt8(1 << IOSQE_IO_HARDLINK_BIT))
        #expect(CLN_IOSQE_ASYNC == UInt8(1 << IOSQE_ASYNC_BIT))
        #expect(CLN_IOSQE_BUFFER_SELECT == UInt8(1 << IOSQE_BUFFER_SELECT_BIT))
        #expect(CLN_IOSQE_CQE_SKIP_SUCCESS == UInt8(1 << IOSQE_CQE_SKIP_SUCCESS_BIT))
    }

    // MARK: CPcap

    @Test func cpcapImports() throws {
        let v = String(cString: pcap_lib_version())
        #expect(v.contains("libpcap"))
        let p = try #require(pcap_open_dead_with_tstamp_precision(
            DLT_EN10MB, 65535, UInt32(PCAP_TSTAMP_PRECISION_NANO)))
        #expect(pcap_datalink(p) == DLT_EN10MB)
        pcap_close(p)
    }

    // MARK: CLinuxNet constants and structs

    @Test func clinuxnetConstants() {
        #expect(CLN_ETH_P_ALL == 0x0003)
        #expect(CLN_ETH_P_IP == 0x0800)
        #expect(cln_htons(0x0800) == 0x0008)
        #expect(CLN_SOL_PACKET == 263)
        #expect(CLN_PACKET_FANOUT == 18)
        #expect(CLN_PACKET_IGNORE_OUTGOING == 23)
        #expect(CLN_PACKET_FANOUT_HASH == 0)
        #expect(CLN_PACKET_FANOUT_FLAG_IGNORE_OUTGOING == 0x4000)
        #expect(cln_fanout_arg(0x1234, CLN_PACKET_FANOUT_HASH, CLN_PACKET_FANOUT_FLAG_DEFRAG)
            == Int32(bitPattern: 0x8000_1234))
        #expect(cln_fanout_arg(7, CLN_PACKET_FANOUT_LB, 0) == 0x0001_0007)
        #expect(MemoryLayout<sockaddr_ll>.size == 20)
        #expect(MemoryLayout<packet_mreq>.size == 16)
        #expect(MemoryLayout<tpacket_auxdata>.size == 20)
        #expect(MemoryLayout<sock_filter>.size == 8)
        #expect(MemoryLayout<tpacket_req3>.size == 28)
    }

    @Test func cmsgWalk() {
        // Two control messages: (SOL_SOCKET, SCM_RIGHTS) with one int, (SOL_PACKET, PACKET_AUXDATA).
        let space = cln_cmsg_space(MemoryLayout<Int32>.size)
            + cln_cmsg_space(MemoryLayout<tpacket_auxdata>.size)
        let control = UnsafeMutableRawPointer.allocate(byteCount: space, alignment: 8)
        defer { control.deallocate() }
        control.initializeMemory(as: UInt8.self, repeating: 0, count: space)
        var msg = msghdr()
        msg.msg_control = control
        msg.msg_controllen = space

        let c1 = cln_cmsg_firsthdr(&msg)!
        c1.pointee.cmsg_level = SOL_SOCKET
        c1.pointee.cmsg_type = Int32(SCM_RIGHTS)
        c1.pointee.cmsg_len = cln_cmsg_len(MemoryLayout<Int32>.size)
        cln_cmsg_data(c1).withMemoryRebound(to: Int32.self, capacity: 1) { $0.pointee = 99 }

        let c2 = cln_cmsg_nxthdr(&msg, c1)!
        c2.pointee.cmsg_level = CLN_SOL_PACKET
        c2.pointee.cmsg_type = CLN_PACKET_AUXDATA
        c2.pointee.cmsg_len = cln_cmsg_len(MemoryLayout<tpacket_auxdata>.size)
        var aux = tpacket_auxdata()
        aux.tp_len = 1234
        aux.tp_vlan_tci = 42
        UnsafeMutableRawPointer(cln_cmsg_data(c2)).storeBytes(of: aux, as: tpacket_auxdata.self)
        #expect(cln_cmsg_nxthdr(&msg, c2) == nil)

        var len = 0
        let p = cln_cmsg_find(&msg, CLN_SOL_PACKET, CLN_PACKET_AUXDATA, &len)
        #expect(len == MemoryLayout<tpacket_auxdata>.size)
        let got = p!.loadUnaligned(as: tpacket_auxdata.self)
        #expect(got.tp_len == 1234)
        #expect(got.tp_vlan_tci == 42)
        #expect(cln_cmsg_find(&msg, CLN_SOL_PACKET, CLN_PACKET_ORIGDEV, &len) == nil)
    }

    // MARK: CLinuxNet BPF filters

    @Test func cookedFilterKeepsOnlyIPv4UdpMulticast() {
        let prog = program(cooked: true)
        let keep: UInt32 = 0xffff_ffff
        #expect(runBPF(prog, packet: ipv4(proto: 17, dst: (239, 1, 2, 3)), protocolValue: 0x0800) == keep)
        #expect(runBPF(prog, packet: ipv4(proto: 17, dst: (224, 0, 0, 251)), protocolValue: 0x0800) == keep)
        #expect(runBPF(prog, packet: ipv4(proto: 17, dst: (239, 255, 255, 255)), protocolValue: 0x0800) == keep)
        #expect(runBPF(prog, packet: ipv4(proto: 17, dst: (240, 0, 0, 1)), protocolValue: 0x0800) == 0)
        #expect(runBPF(prog, packet: ipv4(proto: 17, dst: (223, 255, 255, 255)), protocolValue: 0x0800) == 0)
        #expect(runBPF(prog, packet: ipv4(proto: 17, dst: (198, 18, 2, 2)), protocolValue: 0x0800) == 0)
        #expect(runBPF(prog, packet: ipv4(proto: 6, dst: (239, 1, 2, 3)), protocolValue: 0x0800) == 0)
        #expect(runBPF(prog, packet: ipv4(proto: 2, dst: (224, 0, 0, 1)), protocolValue: 0x0800) == 0)  // IGMP
        #expect(runBPF(prog, packet: ipv4(proto: 17, dst: (239, 1, 2, 3)), protocolValue: 0x86dd) == 0)
        #expect(runBPF(prog, packet: ipv4(proto: 17, dst: (239, 1, 2, 3), version: 6), protocolValue: 0x0800) == 0)
        #expect(runBPF(prog, packet: [0x45, 0, 0], protocolValue: 0x0800) == 0)  // short
    }

    @Test func ethernetFilterKeepsOnlyIPv4UdpMulticast() {
        let prog = program(cooked: false)
        let keep: UInt32 = 0xffff_ffff
        #expect(runBPF(prog, packet: ethernet(ipv4(proto: 17, dst: (239, 1, 2, 3))), protocolValue: 0) == keep)
        #expect(runBPF(prog, packet: ethernet(ipv4(proto: 17, dst: (224, 0, 0, 10))), protocolValue: 0) == keep)
        #expect(runBPF(prog, packet: ethernet(ipv4(proto: 17, dst: (192, 0, 2, 1))), protocolValue: 0) == 0)
        #expect(runBPF(prog, packet: ethernet(ipv4(proto: 88, dst: (224, 0, 0, 10))), protocolValue: 0) == 0)
        #expect(runBPF(prog, packet: ethernet(ipv4(proto: 17, dst: (239, 1, 2, 3)), type: 0x86dd), protocolValue: 0) == 0)
        #expect(runBPF(prog, packet: ethernet(ipv4(proto: 17, dst: (239, 1, 2, 3)), type: 0x8100), protocolValue: 0) == 0)
        #expect(runBPF(prog, packet: Array(ethernet(ipv4(proto: 17, dst: (239, 1, 2, 3))).prefix(20)), protocolValue: 0) == 0)
    }

    /// libpcap's own interpreter agrees on the Ethernet program (it has no Linux ancillary loads,
    /// so the cooked program is checked by the kernel attach test only).
    @Test func ethernetFilterAgreesWithLibpcap() {
        let prog = program(cooked: false)
        let insns = prog.map { bpf_insn(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) }
        let cases: [([UInt8], Bool)] = [
            (ethernet(ipv4(proto: 17, dst: (239, 1, 2, 3))), true),
            (ethernet(ipv4(proto: 17, dst: (10, 1, 2, 3))), false),
            (ethernet(ipv4(proto: 6, dst: (239, 1, 2, 3))), false),
            (ethernet(ipv4(proto: 17, dst: (239, 1, 2, 3)), type: 0x0806), false),
        ]
        for (pkt, want) in cases {
            let r = insns.withUnsafeBufferPointer { ip in
                pkt.withUnsafeBufferPointer { pp in
                    bpf_filter(ip.baseAddress, pp.baseAddress, UInt32(pkt.count), UInt32(pkt.count))
                }
            }
            #expect((r != 0) == want)
        }
    }

    /// Whether this process may open AF_PACKET sockets (CAP_NET_RAW), probed once.
    static let canOpenPacketSockets: Bool = {
        let fd = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return errno != EPERM && errno != EACCES }  // another errno: let the test say it
        close(fd)
        return true
    }()

    /// The kernel's checker accepts both programs on real AF_PACKET sockets (needs CAP_NET_RAW).
    @Test("the kernel accepts the cooked and raw UDP-multicast filters and PACKET_IGNORE_OUTGOING",
          .enabled(if: SystemModulesTests.canOpenPacketSockets, "needs CAP_NET_RAW (AF_PACKET sockets)"))
    func kernelAcceptsFilters() throws {
        for (type, cooked) in [(Int32(SOCK_DGRAM.rawValue), true), (Int32(SOCK_RAW.rawValue), false)] {
            let fd = socket(AF_PACKET, type, Int32(cln_htons(UInt16(CLN_ETH_P_ALL))))
            try #require(fd >= 0, "socket(AF_PACKET): errno \(errno)")
            defer { close(fd) }
            #expect(cln_attach_udp_multicast_filter(fd, cooked ? 1 : 0) == 0)
            #expect(cln_detach_filter(fd) == 0)
            var one: Int32 = 1
            #expect(setsockopt(fd, CLN_SOL_PACKET, CLN_PACKET_IGNORE_OUTGOING, &one, 4) == 0)
        }
    }
}
