import Foundation
import Glibc
import CLinuxNet
import LinuxIO
import RelayControl
import RelayCore
import Testing

/// AF_PACKET egress (`EgressMode.packet`): frames whose Ethernet/IPv4/UDP headers the relay
/// writes itself. A capture socket in the receiver namespace checks every header field of every
/// frame that arrived; mcrecv (a real UDP socket that joined the group) checks the payloads
/// byte for byte, which the kernel only delivers with a valid UDP checksum.
@Suite("DataPlane packet egress", .serialized,
       .enabled(if: DataPlaneTestSupport.isRoot, "needs root (network namespaces, AF_PACKET)"))
struct DataPlanePacketEgressTests {
    /// Payload sizes: the smallest mcstream payload, odd and even sizes (checksum padding), the
    /// largest that fits a 1500-byte MTU (1472), and one byte more, first in sequence: that one
    /// takes the UDP socket (the kernel fragments it), which sends before the packet socket.
    static let sizes = [1473, 12, 13, 64, 701, 1472, 300, 300]

    /// The same batch through either path: the packet path's headers must match what the
    /// kernel's UDP path writes (MACs, source address, TTL, DF), and be valid.
    @Test("writes valid Ethernet/IPv4/UDP headers, like the kernel's UDP path", arguments: EgressMode.allCases)
    func headers(mode: EgressMode) throws {
        let lab = try DataPlaneLab(tag: mode == .packet ? "pk" : "pu")
        defer { lab.down() }
        let rule = try DataPlaneRules.rule("rin0:239.1.2.3:5000", ["rout0:239.9.1.1:6000:7", "rout1:239.9.2.2:6001:3"])
        let plan = Self.plan([rule])
        let receiver0 = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver0Address,
                                              streams: ["239.9.1.1:6000:3"], expect: Self.sizes.count, size: nil)
        let receiver1 = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver1Address,
                                              streams: ["239.9.2.2:6001:3"], expect: Self.sizes.count, size: nil)
        defer { receiver0.terminate(); receiver1.terminate() }
        let capture = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
        defer { capture.close() }
        let mac = try Self.mac(of: "rout0", in: lab.relay)

        let payloads = Self.sizes.enumerated().map { MCStream.payload(stream: 3, sequence: UInt64($0), size: $1) }
        let result = try Self.forward(payloads, plan: plan, mode: mode, in: lab.relay)
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(result.sent == UInt64(2 * payloads.count) && result.failed == 0, "sent \(result.sent), failed \(result.failed)")
        // Everything but the oversized datagram, on both outputs, went through packet sockets.
        #expect(result.packetSent == (mode == .packet ? UInt64(2 * (payloads.count - 1)) : 0))

        for (receiver, key, ttl) in [(receiver0, "239.9.1.1:6000", 7), (receiver1, "239.9.2.2:6001", 3)] {
            let output = try receiver.finish(timeout: 20, check: false)
            #expect(output.status == 0, "mcrecv (strict, byte-exact) \(key): \(output.stdout) \(output.stderr)")
            let report = try DataPlaneLab.json(output.stdout, from: "mcrecv")
            let stream = try #require((report["received"] as? [String: Any])?[key] as? [String: Any], "\(output.stdout)")
            #expect(stream["received"] as? Int == payloads.count, "\(key): \(stream)")
            #expect(stream["bytes"] as? Int == Self.sizes.reduce(0, +), "\(key): \(stream)")
            #expect(stream["ttl_min"] as? Int == ttl && stream["ttl_max"] as? Int == ttl, "\(key): \(stream)")
        }

        // Whole (unfragmented) datagrams to 239.9.1.1:6000 as they arrived on rcv0.
        let frames = capture.frames(expect: payloads.count + 1).compactMap(CapturedDatagram.init).filter { $0.destination == [239, 9, 1, 1] }
        let whole = frames.filter { !$0.fragment }
        #expect(whole.count == payloads.count - 1, "whole datagrams captured: \(whole.count)")
        #expect(frames.count == whole.count + 2, "the 1473-byte datagram arrives as two fragments")
        // The packet path keeps the sender's source port (4000); the UDP path carries its
        // socket's ephemeral port.
        if mode == .packet {
            #expect(whole.allSatisfy { $0.sourcePort == 4000 }, "\(whole.map(\.sourcePort))")
        } else {
            #expect(Set(whole.map(\.sourcePort)).count == 1 && whole.first?.sourcePort != 0, "\(whole.map(\.sourcePort))")
        }
        for frame in whole {
            let sequence = frame.payload.count >= 12 ? Int(frame.payload[4...11].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) : -1
            guard payloads.indices.contains(sequence) else { Issue.record("unexpected payload \(frame.payload.prefix(12))"); continue }
            #expect(frame.payload == payloads[sequence], "payload of sequence \(sequence)")
            #expect(frame.destinationMAC == [0x01, 0x00, 0x5E, 0x09, 0x01, 0x01])
            #expect(frame.sourceMAC == mac, "source MAC \(frame.sourceMAC) vs rout0 \(mac)")
            #expect(frame.source == [198, 18, 2, 1], "source address: rout0's")
            #expect(frame.ttl == 7)
            // Both paths set DF. The kernel numbers its datagrams; the packet path sends ID 0, which
            // RFC 6864 allows for atomic (DF, unfragmented) datagrams, as Linux itself does for
            // DF datagrams it sends without a socket.
            #expect(frame.dontFragment, "DF set, as the kernel sends")
            if mode == .packet { #expect(frame.identification == 0) }
            #expect(frame.headerChecksumValid)
            #expect(frame.destinationPort == 6000)
            #expect(frame.udpLength == 8 + frame.payload.count)
            if mode == .packet {
                // The UDP path's checksum is left to offload on veth (not final in a capture).
                #expect(frame.udpChecksum != 0 && frame.udpChecksumValid, "UDP checksum of sequence \(sequence)")
            }
        }
    }

    /// One datagram per frame on the wire, at the defaults: a run of same-size datagrams (what a
    /// fast stream puts in one receive batch) leaves a veth as separate frames on the packet path
    /// and on the UDP path (`auto` refuses GSO toward a veth, which would pass the super-frame
    /// on whole). `--segmentation on` asks for that pass-through and gets it: the capture sees
    /// fewer, larger frames (the receiver's socket still gets each datagram). Nothing of the
    /// link is changed here; `nicWithoutOffloads` below emulates a NIC.
    @Test("a run of same-size datagrams leaves a veth one datagram per frame at the defaults; --segmentation on passes super-frames",
          arguments: [(EgressMode.packet, SegmentationSetting.auto), (.udp, .auto), (.udp, .on)])
    func oneDatagramPerFrame(mode: EgressMode, setting: SegmentationSetting) throws {
        let lab = try DataPlaneLab(tag: "o" + (mode == .packet ? "p" : "u") + setting.rawValue.prefix(1))
        defer { lab.down() }
        let rule = try DataPlaneRules.rule("rin0:239.1.2.3:5000", ["rout0:239.9.1.1:6000:7"])
        let sizes = Array(repeating: 700, count: 20) + [333] + Array(64..<94)
        let result = try Self.runAndCapture(sizes: sizes, rule: rule, mode: mode, setting: setting, lab: lab)
        let passThrough = mode == .udp && setting == .on
        #expect(result.egress.map(\.segmentation) == [passThrough], "\(result.egress)")
        #expect(result.counts == [UInt64(sizes.count), 0, passThrough ? 1 : 0, mode == .packet ? UInt64(sizes.count) : 0],
                "sent, failed, GSO sends, packet sends")
        if passThrough {
            #expect(result.frames.count < sizes.count, "super-frames expected on the veth, captured \(result.frames.count) frames")
            #expect(result.frames.contains { $0.payload.count > 700 }, "a frame carrying a run")
        } else {
            // The kernel's UDP path leaves the UDP checksum to the veth's offload (not final in a capture).
            Self.expectOnePerFrame(result.frames, sizes: sizes, sourcePort: mode == .packet ? 4000 : nil, udpChecksums: mode == .packet)
        }
    }

    /// Where the device cannot carry a super-frame (tx-udp-segmentation off) nor checksum (tx
    /// checksum offload off), as a NIC without USO or checksum offload, `auto` allows GSO on the
    /// UDP path and the kernel segments before the device: the capture must see separate, valid
    /// datagrams, byte-exact and in order. (This test turns those two offloads off on rout0 to
    /// emulate such a NIC: a link setting the product does not make.)
    @Test("on a device without tx-udp-segmentation, auto uses GSO and the kernel cuts it into valid datagrams")
    func nicWithoutOffloads() throws {
        let lab = try DataPlaneLab(tag: "ps")
        defer { lab.down() }
        try DataPlaneTestSupport.run(["ip", "netns", "exec", lab.relay, "ethtool", "-K", "rout0", "tx-udp-segmentation", "off"])
        try DataPlaneTestSupport.inNamespace(lab.relay) {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            defer { Glibc.close(fd) }
            let result = ldp_interface_set_tx_checksum(fd, "rout0", 0)
            guard result == 0 else { throw DataPlaneTestSupport.HarnessError("tx checksum offload off on rout0: errno \(-result)") }
        }
        let rule = try DataPlaneRules.rule("rin0:239.1.2.3:5000", ["rout0:239.9.1.1:6000:7"])
        let sizes = Array(repeating: 700, count: 20) + [333] + Array(64..<94)
        let result = try Self.runAndCapture(sizes: sizes, rule: rule, mode: .udp, setting: .auto, lab: lab)
        #expect(result.egress.map(\.segmentation) == [true], "\(result.egress)")
        #expect(result.counts == [UInt64(sizes.count), 0, 1, 0], "sent, failed, GSO sends, packet sends")
        Self.expectOnePerFrame(result.frames, sizes: sizes, sourcePort: nil, udpChecksums: true)
    }

    struct Captured {
        var counts: [UInt64]
        var egress: [InterfaceEgress]
        var frames: [CapturedDatagram]
    }

    /// Sends one batch of `sizes` through a pool and queue in the relay namespace; mcrecv (a real
    /// socket) must get every datagram byte-exact; returns the queue's counts, the pool's
    /// decisions and the frames captured on rcv0.
    static func runAndCapture(sizes: [Int], rule: Rule, mode: EgressMode, setting: SegmentationSetting,
                              lab: DataPlaneLab) throws -> Captured {
        let receiver = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver0Address,
                                             streams: ["239.9.1.1:6000:3"], expect: sizes.count, size: nil)
        defer { receiver.terminate() }
        let capture = try FrameCapture(namespace: lab.receiver, interface: "rcv0")
        defer { capture.close() }
        let payloads = sizes.enumerated().map { MCStream.payload(stream: 3, sequence: UInt64($0), size: $1) }
        let plan = Self.plan([rule])
        let (counts, egress) = try DataPlaneTestSupport.inNamespace(lab.relay) { () -> ([UInt64], [InterfaceEgress]) in
            var forwarder = Forwarder(plan: plan)
            let pool = EgressSocketPool(mode: mode, segmentation: setting)
            var problems = pool.install(plan, now: 0)
            let queue = TransmitQueue()
            try Self.send(payloads, forwarder: &forwarder, pool: pool, queue: queue, problems: &problems)
            guard problems.isEmpty else { throw DataPlaneTestSupport.HarnessError("\(problems)") }
            return ([queue.sent, queue.failed, queue.segmentedMessages, queue.packetSent], pool.interfaceEgress)
        }
        let output = try receiver.finish(timeout: 20, check: false)
        #expect(output.status == 0, "mcrecv (strict, byte-exact): \(output.stdout) \(output.stderr)")
        let frames = capture.frames(expect: sizes.count).compactMap(CapturedDatagram.init).filter { $0.destination == [239, 9, 1, 1] }
        return Captured(counts: counts, egress: egress, frames: frames)
    }

    /// Frame by frame: one whole datagram each, in order, byte-exact, valid checksums.
    static func expectOnePerFrame(_ frames: [CapturedDatagram], sizes: [Int], sourcePort: UInt16?, udpChecksums: Bool) {
        #expect(frames.count == sizes.count, "captured \(frames.count) frames, sent \(sizes.count) datagrams")
        for (index, frame) in frames.enumerated() where index < sizes.count {
            let payload = MCStream.payload(stream: 3, sequence: UInt64(index), size: sizes[index])
            #expect(frame.payload == payload, "frame \(index): \(frame.payload.count) payload bytes, datagram \(index) has \(sizes[index])")
            if udpChecksums { #expect(frame.udpChecksum != 0 && frame.udpChecksumValid, "UDP checksum of frame \(index)") }
            #expect(frame.headerChecksumValid && frame.ttl == 7 && frame.source == [198, 18, 2, 1], "IPv4 header of frame \(index)")
            #expect(frame.udpLength == 8 + sizes[index] && frame.destinationPort == 6000)
        }
        let ports = Set(frames.map(\.sourcePort))
        if let sourcePort { #expect(ports == [sourcePort], "source ports \(ports)") } else { #expect(ports.count == 1, "source ports \(ports)") }
    }

    /// An interface without an IPv4 address cannot take packet egress: its outputs use the UDP
    /// socket (reported once); once it has an address again, the next refresh moves them back.
    @Test("falls back to UDP on an interface without an IPv4 address, and back when it has one")
    func fallback() throws {
        let lab = try DataPlaneLab(tag: "pf")
        defer { lab.down() }
        try DataPlaneTestSupport.run(["ip", "-n", lab.relay, "addr", "flush", "dev", "rout1"])
        let rule = try DataPlaneRules.rule("rin0:239.1.2.3:5000", ["rout0:239.9.1.1:6000:7", "rout1:239.9.2.2:6001:3"])
        let plan = Self.plan([rule])
        let count = 50
        let receiver1 = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver1Address,
                                              streams: ["239.9.2.2:6001:3"], expect: 2 * count, size: 200)
        defer { receiver1.terminate() }
        let first = (0..<count).map { MCStream.payload(stream: 3, sequence: UInt64($0), size: 200) }
        let second = (count..<2 * count).map { MCStream.payload(stream: 3, sequence: UInt64($0), size: 200) }

        let relay = lab.relay
        let result = try DataPlaneTestSupport.inNamespace(relay) { () -> [String] in
            var forwarder = Forwarder(plan: plan)
            let pool = EgressSocketPool(mode: .packet)
            let queue = TransmitQueue()
            var log = pool.install(plan, now: 0)
            let before = pool.packetEgressState.map { "\($0.interface)=\($0.path)" }
            try Self.send(first, forwarder: &forwarder, pool: pool, queue: queue, problems: &log)
            let afterFirst = queue.packetSent
            try DataPlaneTestSupport.run(["ip", "-n", relay, "addr", "add", "198.18.3.1/24", "dev", "rout1"])
            log += pool.retryMissing(now: 10_000)
            let after = pool.packetEgressState.map { "\($0.interface)=\($0.path)" }
            try Self.send(second, forwarder: &forwarder, pool: pool, queue: queue, problems: &log)
            return before + after + ["first \(afterFirst)", "second \(queue.packetSent - afterFirst)",
                                     "sent \(queue.sent)", "failed \(queue.failed)"] + log
        }
        #expect(result[0] == "rout0=packet" && result[1] == "rout1=udp: no IPv4 address", "\(result)")
        #expect(result[2] == "rout0=packet" && result[3] == "rout1=packet", "\(result)")
        // First batch: only rout0's copies on the packet path; second batch: both outputs.
        #expect(result[4] == "first \(count)" && result[5] == "second \(2 * count)", "\(result)")
        #expect(result[6] == "sent \(4 * count)" && result[7] == "failed 0", "\(result)")
        let log = Array(result.dropFirst(8))
        #expect(log.count == 2, "\(log)")
        #expect(log.first?.contains("output interface rout1: no IPv4 address: its multicast outputs use UDP sockets") == true, "\(log)")
        #expect(log.last?.contains("output interface rout1: multicast outputs use AF_PACKET egress again") == true, "\(log)")

        let output = try receiver1.finish(timeout: 20, check: false)
        #expect(output.status == 0, "mcrecv (strict, byte-exact): \(output.stdout) \(output.stderr)")
        let report = try DataPlaneLab.json(output.stdout, from: "mcrecv")
        let stream = (report["received"] as? [String: Any])?["239.9.2.2:6001"] as? [String: Any]
        #expect(stream?["received"] as? Int == 2 * count, "\(String(describing: stream))")
    }

    /// A whole worker (the default egress is packet) under mcsend traffic: every datagram is
    /// counted as sent through a packet socket and arrives; nothing else is reported.
    @Test("a worker relays through packet sockets by default")
    func workerDefault() throws {
        let lab = try DataPlaneLab(tag: "pw")
        defer { lab.down() }
        #expect(EgressMode.default == .packet)
        let count = 300, size = 100
        let rule = try DataPlaneRules.rule("rin0:239.1.2.3:5000", ["rout0:239.9.1.1:6000:5"])
        let worker = try WorkerUnderTest(namespace: lab.relay, mode: .default)
        guard case .ready? = try worker.next() else { Issue.record("no ready message"); return }
        try worker.install(Self.plan([rule]))
        let receiver = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver0Address,
                                             streams: ["239.9.1.1:6000:1"], expect: count, size: size)
        defer { receiver.terminate() }
        let sent = try lab.send(streams: ["239.1.2.3:5000:1"], count: count, rate: 2000, size: size)
        #expect(sent["errors"] as? Int == 0)
        let output = try receiver.finish(timeout: 30, check: false)
        #expect(output.status == 0, "mcrecv: \(output.stdout) \(output.stderr)")
        let statistics = try worker.statistics()
        #expect(statistics.rules.first?.outputs.map(\.packets) == [UInt64(count)])
        #expect(statistics.rules.first?.outputs.map(\.sendErrors) == [0])
        #expect(worker.problems.isEmpty, "\(worker.problems)")
        #expect(try worker.shutdown() == .shutdown)
    }

    // MARK: - Helpers

    static func plan(_ rules: [Rule]) -> WorkerPlan {
        WorkerPlan(worker: WorkerID(0), version: 1,
                   ingress: [IngressAssignment(interface: DataPlaneRules.interface("rin0"), fanoutGroup: nil)], rules: rules)
    }

    struct Forwarded: Sendable {
        var sent: UInt64, failed: UInt64, packetSent: UInt64
        var problems: [String]
    }

    /// Runs `payloads` (as frames from 198.18.1.1:4000 to 239.1.2.3:5000) through a Forwarder,
    /// an egress pool of `mode` and one queue flush, in the relay namespace.
    static func forward(_ payloads: [[UInt8]], plan: WorkerPlan, mode: EgressMode, in namespace: String) throws -> Forwarded {
        try DataPlaneTestSupport.inNamespace(namespace) {
            var forwarder = Forwarder(plan: plan)
            let pool = EgressSocketPool(mode: mode, segmentation: .off)
            var problems = pool.install(plan, now: 0)
            let queue = TransmitQueue()
            try send(payloads, forwarder: &forwarder, pool: pool, queue: queue, problems: &problems)
            return Forwarded(sent: queue.sent, failed: queue.failed, packetSent: queue.packetSent, problems: problems)
        }
    }

    static func send(_ payloads: [[UInt8]], forwarder: inout Forwarder, pool: EgressSocketPool, queue: TransmitQueue,
                     problems: inout [String]) throws {
        let frames = payloads.map { EgressTestFrame.ipv4UDP(group: IPv4Address(239, 1, 2, 3), port: 5000, payload: $0) }
        try DataPlaneTestSupport.forwardAndFlush(frames, forwarder: &forwarder, pool: pool, queue: queue) { problems.append($0) }
    }

    static func mac(of interface: String, in namespace: String) throws -> [UInt8] {
        try DataPlaneTestSupport.inNamespace(namespace) {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            defer { Glibc.close(fd) }
            var type: UInt16 = 0
            var mac = [UInt8](repeating: 0, count: 6)
            guard ldp_interface_hardware(fd, interface, &type, &mac) == 0 else {
                throw DataPlaneTestSupport.HarnessError("SIOCGIFHWADDR \(interface) failed")
            }
            return mac
        }
    }
}

/// An AF_PACKET capture of every frame on one interface of a namespace (opened before the
/// traffic). A thread drains the socket while the traffic runs, so the capture keeps up with
/// the receivers; frames the kernel still dropped from it (PACKET_STATISTICS) make the check
/// void, and `frames` records that as a failure of the test's own tooling.
final class FrameCapture: @unchecked Sendable {
    let fd: Int32
    let interface: String
    private let lock = NSLock()
    private var captured: [[UInt8]] = []
    private var udpCount = 0
    private var dropped: UInt32 = 0
    private var stopping = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    init(namespace: String, interface: String) throws {
        self.interface = interface
        fd = try DataPlaneTestSupport.inNamespace(namespace) { () -> Int32 in
            let protocolAll = UInt16(ETH_P_ALL).bigEndian
            let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue), Int32(protocolAll))
            guard fd >= 0 else { throw DataPlaneTestSupport.HarnessError("capture socket: errno \(errno)") }
            var address = sockaddr_ll()
            address.sll_family = UInt16(AF_PACKET)
            address.sll_protocol = protocolAll
            address.sll_ifindex = Int32(bitPattern: if_nametoindex(interface))
            var size: Int32 = 16 << 20
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size))
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_ll>.size)) }
            }
            guard address.sll_ifindex > 0, bound == 0 else {
                Glibc.close(fd)
                throw DataPlaneTestSupport.HarnessError("capture bind to \(interface): errno \(errno)")
            }
            return fd
        }
        let thread = Thread { [self] in drain() }
        self.thread = thread
        thread.start()
    }

    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            lock.lock()
            let stop = stopping
            lock.unlock()
            if stop { break }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 20) > 0 else { continue }
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                guard count > 0 else { break }
                // IPv4 UDP, or IPv6 whose first next header is UDP.
                let udp = (count >= 24 && buffer[12] == 0x08 && buffer[13] == 0 && buffer[23] == 17)
                    || (count >= 62 && buffer[12] == 0x86 && buffer[13] == 0xDD && buffer[20] == 17)
                let frame = Array(buffer[0..<count])
                lock.lock()
                captured.append(frame)
                if udp { udpCount += 1 }
                lock.unlock()
            }
        }
        var statistics = tpacket_stats()
        var length = socklen_t(MemoryLayout<tpacket_stats>.size)
        if getsockopt(fd, CLN_SOL_PACKET, CLN_PACKET_STATISTICS, &statistics, &length) == 0 {
            lock.lock()
            dropped &+= statistics.tp_drops
            lock.unlock()
        }
        finished.signal()
    }

    /// Frames captured so far: once `expect` UDP frames have come (others are kept too), or
    /// after `timeout` seconds of waiting for them (the caller's count then fails). Stops the
    /// capture. Frames the kernel dropped from the capture socket are recorded as an issue.
    func frames(expect: Int = 0, timeout: Double = 5, sourceLocation: SourceLocation = #_sourceLocation) -> [[UInt8]] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            lock.lock()
            let enough = udpCount >= expect
            lock.unlock()
            if enough { break }
            usleep(10_000)  // polling the drain thread's count, bounded by the deadline
        }
        stop()
        lock.lock()
        defer { lock.unlock() }
        if dropped > 0 {
            Issue.record("the frame capture on \(interface) itself lost \(dropped) frames: its counts prove nothing", sourceLocation: sourceLocation)
        }
        return captured
    }

    private func stop() {
        lock.lock()
        let running = thread != nil && !stopping
        stopping = true
        lock.unlock()
        if running { finished.wait() }
    }

    func close() {
        stop()
        Glibc.close(fd)
    }
}

/// The fields of a captured Ethernet/IPv4/UDP or Ethernet/IPv6/UDP frame (nil for anything
/// else). For IPv6 (`ipv6`): `source`/`destination` are 16 bytes, `ttl` is the hop limit,
/// `identification`/`dontFragment` are 0/false, `headerChecksumValid` is true (IPv6 has none),
/// `fragment` means a fragment header came first; only frames whose first next header is UDP
/// are read (the relay writes no extension headers).
struct CapturedDatagram {
    var destinationMAC: [UInt8], sourceMAC: [UInt8]
    var source: [UInt8], destination: [UInt8]
    var ttl: UInt8, identification: UInt16, dontFragment: Bool, fragment: Bool
    var headerChecksumValid: Bool
    var sourcePort: UInt16 = 0, destinationPort: UInt16 = 0, udpLength = 0, udpChecksum: UInt16 = 0
    var udpChecksumValid = false
    var payload: [UInt8] = []
    var ipv6 = false
    /// IPv6: traffic class and flow label (the relay writes 0), and the payload length field.
    var trafficClassAndFlow: UInt32 = 0
    var ipv6PayloadLength = 0
    /// The UDP checksum field holds the folded pseudo-header sum, not complemented: what the
    /// kernel leaves for the device to finish (CHECKSUM_PARTIAL, veth's checksum offload),
    /// as captured on the peer of a veth the kernel's UDP path sent through.
    var udpChecksumOffloadPending = false

    /// Source and destination as text (dotted quad or RFC 5952).
    var sourceText: String { Self.text(source) }
    var destinationText: String { Self.text(destination) }
    static func text(_ bytes: [UInt8]) -> String {
        bytes.count == 16 ? IPv6Address(bytes: bytes).description : bytes.map(String.init).joined(separator: ".")
    }

    init?(_ frame: [UInt8]) {
        if frame.count >= 62, frame[12] == 0x86, frame[13] == 0xDD {
            guard let datagram = Self.parseIPv6(frame) else { return nil }
            self = datagram
            return
        }
        guard frame.count >= 34, frame[12] == 0x08, frame[13] == 0x00, frame[14] == 0x45, frame[23] == 17 else { return nil }
        let ip = Array(frame[14..<34])
        destinationMAC = Array(frame[0..<6])
        sourceMAC = Array(frame[6..<12])
        source = Array(ip[12..<16])
        destination = Array(ip[16..<20])
        ttl = ip[8]
        identification = UInt16(ip[4]) << 8 | UInt16(ip[5])
        dontFragment = ip[6] & 0x40 != 0
        fragment = ip[6] & 0x20 != 0 || (UInt16(ip[6] & 0x1F) << 8 | UInt16(ip[7])) != 0
        headerChecksumValid = ip.withUnsafeBytes { EgressFrame.checksum($0) } == 0
        guard !fragment else { return }
        let total = Int(UInt16(ip[2]) << 8 | UInt16(ip[3]))
        guard total >= 28, 14 + total <= frame.count else { return nil }
        let udp = Array(frame[34..<(14 + total)])
        sourcePort = UInt16(udp[0]) << 8 | UInt16(udp[1])
        destinationPort = UInt16(udp[2]) << 8 | UInt16(udp[3])
        udpLength = Int(UInt16(udp[4]) << 8 | UInt16(udp[5]))
        udpChecksum = UInt16(udp[6]) << 8 | UInt16(udp[7])
        payload = Array(udp[8...])
        // Pseudo header (source, destination, zero, protocol, UDP length) + the UDP datagram.
        let pseudo = source + destination + [0, 17, udp[4], udp[5]] + udp
        udpChecksumValid = pseudo.withUnsafeBytes { EgressFrame.checksum($0) } == 0
        let partial = (source + destination + [0, 17, udp[4], udp[5]]).withUnsafeBytes { EgressFrame.checksum($0) }
        udpChecksumOffloadPending = udpChecksum == UInt16(bigEndian: ~partial)  // the sum is kept in memory order
    }

    private init(blank: Void) {
        destinationMAC = []; sourceMAC = []; source = []; destination = []
        ttl = 0; identification = 0; dontFragment = false; fragment = false; headerChecksumValid = false
    }

    private static func parseIPv6(_ frame: [UInt8]) -> CapturedDatagram? {
        var datagram = CapturedDatagram(blank: ())
        return datagram.readIPv6(frame) ? datagram : nil
    }

    private mutating func readIPv6(_ frame: [UInt8]) -> Bool {
        let ip = Array(frame[14..<54])
        guard ip[0] >> 4 == 6 else { return false }
        destinationMAC = Array(frame[0..<6])
        sourceMAC = Array(frame[6..<12])
        source = Array(ip[8..<24])
        destination = Array(ip[24..<40])
        ttl = ip[7]
        identification = 0
        dontFragment = false
        headerChecksumValid = true
        ipv6 = true
        trafficClassAndFlow = (UInt32(ip[0]) << 24 | UInt32(ip[1]) << 16 | UInt32(ip[2]) << 8 | UInt32(ip[3])) & 0x0FFF_FFFF
        ipv6PayloadLength = Int(UInt16(ip[4]) << 8 | UInt16(ip[5]))
        fragment = ip[6] == 44
        guard ip[6] == 17 else { return false }
        guard ipv6PayloadLength >= 8, 54 + ipv6PayloadLength <= frame.count else { return false }
        let udp = Array(frame[54..<(54 + ipv6PayloadLength)])
        sourcePort = UInt16(udp[0]) << 8 | UInt16(udp[1])
        destinationPort = UInt16(udp[2]) << 8 | UInt16(udp[3])
        udpLength = Int(UInt16(udp[4]) << 8 | UInt16(udp[5]))
        udpChecksum = UInt16(udp[6]) << 8 | UInt16(udp[7])
        payload = Array(udp[8...])
        // RFC 8200 8.1: source, destination, 32-bit upper-layer length, 3 zero bytes, next header.
        let length = UInt32(udp.count)
        let pseudoHeader = source + destination + [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF),
                                                   UInt8(length & 0xFF), 0, 0, 0, 17]
        udpChecksumValid = udpChecksum != 0 && (pseudoHeader + udp).withUnsafeBytes { EgressFrame.checksum($0) } == 0
        // CHECKSUM_PARTIAL leaves ~checksum(pseudo header) in the field (the device adds the rest).
        let partial = pseudoHeader.withUnsafeBytes { EgressFrame.checksum($0) }
        udpChecksumOffloadPending = udpChecksum == UInt16(bigEndian: ~partial)  // the sum is kept in memory order
        return true
    }
}
