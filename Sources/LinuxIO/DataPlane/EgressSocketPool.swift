import CLinuxNet
import Glibc
import RelayCore

/// The UDP sockets a worker sends through: one per (output interface, TTL, destination is
/// multicast), shared by every output with that combination. Re-originating through ordinary
/// UDP sockets lets the kernel do routing, ARP, checksums and fragmentation.
///
/// - multicast destinations: `IP_MULTICAST_IF` by interface index (not by address: an
///   interface may have none or several), `IP_MULTICAST_TTL` (the kernel default of 1 dies at
///   the first router), `IP_MULTICAST_LOOP` off (no copies back into this host);
/// - unicast destinations: `IP_TTL`, and `SO_BINDTODEVICE` to pin the output interface;
/// - all: non-blocking (a full queue is a counted drop, never a stalled worker), a large send
///   buffer, `IP_MULTICAST_ALL` off and a tiny receive buffer (these sockets are never read).
///
/// Per output (indexed like the Forwarder's `OutputHandle`s: rule by rule, output by output)
/// the pool precomputes the socket and the `sockaddr_in`, so a transmit is two array reads.
public final class EgressSocketPool {
    enum Kind: Hashable {
        /// A kernel UDP socket (sendmmsg, GSO).
        case udp
        /// An AF_PACKET socket the worker writes whole frames to (see `EgressMode.packet`).
        case packet
    }

    struct Key: Hashable, CustomStringConvertible {
        var interface: InterfaceName
        var ttl: UInt8
        var multicast: Bool
        var kind: Kind = .udp
        var description: String {
            kind == .packet ? "output interface \(interface) (AF_PACKET)"
                : "output interface \(interface) (ttl \(ttl), \(multicast ? "multicast" : "unicast"))"
        }
    }

    struct Socket {
        var key: Key
        /// -1 while the socket cannot be opened (interface missing); sends to it count as failures.
        var fd: Int32
        var lastProblem: String?
        /// errno of the last send failure reported to the supervisor (0: none), so a persistent
        /// error is reported once, not per packet.
        var reportedSendErrno: Int32 = 0
        /// The interface MTU when the socket was opened: a UDP GSO segment (payload + 28 bytes
        /// of IPv4/UDP header) must fit in it.
        var mtu: Int = 0
        /// Whether sends may coalesce same-size datagrams with UDP GSO (turned off for this
        /// socket if the kernel refuses it, e.g. a device without checksum offload).
        var segmentation = true
        /// UDP sockets: the local port (bound at open), which packet egress frames of the same
        /// outputs carry too, so a receiver sees one source port per stream whichever path a
        /// datagram took (runs and oversized datagrams go through this socket).
        var port: UInt16 = 0
        /// Packet sockets: the interface as last read (nil: unusable, its outputs use UDP).
        var link: PacketEgressLink?
        /// Packet sockets: why the interface cannot take packet egress, as last reported.
        var unusable: PacketEgressUnusable?
    }

    /// A planned output, kept so the packet tables can be rebuilt when an interface changes.
    struct PlannedOutput {
        var key: Key
        var address: sockaddr_in
        var ttl: UInt8
    }

    static let sendBufferBytes: Int32 = 8 << 20
    static let retryIntervalMilliseconds: Int64 = 500
    /// How often packet egress re-reads its interfaces (address, MAC, MTU, index).
    static let refreshIntervalMilliseconds: Int64 = 1000

    public let mode: EgressMode
    private(set) var sockets: [Socket] = []
    /// Per output handle: index into `sockets`.
    private(set) var outputSocket: UnsafeMutablePointer<Int32>
    /// Per output handle: the destination address (stable memory: `msghdr.msg_name` points here).
    private(set) var outputAddress: UnsafeMutablePointer<sockaddr_in>
    private(set) var outputTTL: UnsafeMutablePointer<UInt8>
    /// Per output handle: its position when outputs are ordered by socket (so sorting pending
    /// transmits by rank groups them by socket, and by output within a socket).
    private(set) var outputRank: UnsafeMutablePointer<Int32>
    private(set) var outputCount = 0

    /// Per output handle, packet egress: the packet socket (index into `sockets`, -1: this
    /// output uses its UDP socket), its rank (after every UDP rank), the largest payload a
    /// frame may carry, the link-layer address frames are sent to (`msg_name`), and the header
    /// template (`LDP_PACKET_TEMPLATE_BYTES` per output) of `ldp_packet_header`.
    private(set) var outputPacketSocket: UnsafeMutablePointer<Int32>
    private(set) var outputPacketRank: UnsafeMutablePointer<Int32>
    private(set) var outputPayloadLimit: UnsafeMutablePointer<Int32>
    private(set) var outputLinkAddress: UnsafeMutablePointer<sockaddr_ll>
    private(set) var outputTemplate: UnsafeMutableRawPointer
    /// Ranks in use: UDP ranks are 0..<outputCount, packet ranks follow.
    private(set) var rankCount = 0

    private var planned: [PlannedOutput] = []
    private var nextRetry: Int64 = 0
    private var nextRefresh: Int64 = 0
    /// A socket for interface ioctls (opened on first use).
    private var probe: Int32 = -1

    public init(mode: EgressMode = .default) {
        self.mode = mode
        outputSocket = .allocate(capacity: 1)
        outputAddress = .allocate(capacity: 1)
        outputTTL = .allocate(capacity: 1)
        outputRank = .allocate(capacity: 1)
        outputPacketSocket = .allocate(capacity: 1)
        outputPacketRank = .allocate(capacity: 1)
        outputPayloadLimit = .allocate(capacity: 1)
        outputLinkAddress = .allocate(capacity: 1)
        outputTemplate = .allocate(byteCount: Int(LDP_PACKET_TEMPLATE_BYTES), alignment: 16)
    }

    deinit {
        for socket in sockets where socket.fd >= 0 { close(socket.fd) }
        if probe >= 0 { close(probe) }
        deallocateOutputs()
    }

    private func deallocateOutputs() {
        outputSocket.deallocate()
        outputAddress.deallocate()
        outputTTL.deallocate()
        outputRank.deallocate()
        outputPacketSocket.deallocate()
        outputPacketRank.deallocate()
        outputPayloadLimit.deallocate()
        outputLinkAddress.deallocate()
        outputTemplate.deallocate()
    }

    /// Matches the sockets to a new plan: sockets still needed stay open (no churn for
    /// streams the plan did not change), the rest are closed. Returns problems to report.
    public func install(_ plan: WorkerPlan, now: Int64) -> [String] {
        var keys: [Key] = []
        var outputs: [PlannedOutput] = []
        for rule in plan.rules {
            for output in rule.outputs {
                let multicast = output.destination.isMulticast
                let key = Key(interface: output.interface, ttl: output.ttl, multicast: multicast)
                if !keys.contains(key) { keys.append(key) }
                if mode == .packet && multicast {
                    let packet = Key(interface: output.interface, ttl: 0, multicast: true, kind: .packet)
                    if !keys.contains(packet) { keys.append(packet) }
                }
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = output.port.bigEndian
                address.sin_addr.s_addr = output.destination.value.bigEndian
                outputs.append(PlannedOutput(key: key, address: address, ttl: output.ttl))
            }
        }

        var kept: [Socket] = []
        for socket in sockets {
            if keys.contains(socket.key) { kept.append(socket) } else if socket.fd >= 0 { close(socket.fd) }
        }
        var problems: [String] = []
        for key in keys where !kept.contains(where: { $0.key == key }) {
            var socket = Socket(key: key, fd: -1)
            problems += open(&socket)
            kept.append(socket)
        }
        // UDP sockets first, so UDP ranks come before packet ranks.
        sockets = kept.filter { $0.key.kind == .udp } + kept.filter { $0.key.kind == .packet }
        planned = outputs

        deallocateOutputs()
        let capacity = max(outputs.count, 1)
        outputSocket = .allocate(capacity: capacity)
        outputAddress = .allocate(capacity: capacity)
        outputTTL = .allocate(capacity: capacity)
        outputRank = .allocate(capacity: capacity)
        outputPacketSocket = .allocate(capacity: capacity)
        outputPacketRank = .allocate(capacity: capacity)
        outputPayloadLimit = .allocate(capacity: capacity)
        outputLinkAddress = .allocate(capacity: capacity)
        outputTemplate = .allocate(byteCount: capacity * Int(LDP_PACKET_TEMPLATE_BYTES), alignment: 16)
        for (index, output) in outputs.enumerated() {
            outputSocket[index] = Int32(sockets.firstIndex { $0.key == output.key }!)
            outputAddress[index] = output.address
            outputTTL[index] = output.ttl
        }
        var rank: Int32 = 0
        for socket in sockets.indices {
            for index in outputs.indices where outputSocket[index] == Int32(socket) {
                outputRank[index] = rank
                rank += 1
            }
        }
        outputCount = outputs.count
        rebuildPacketOutputs()
        nextRetry = now + Self.retryIntervalMilliseconds
        nextRefresh = now + Self.refreshIntervalMilliseconds
        return problems
    }

    /// Chooses, per multicast output, packet egress (its interface's packet socket is open and
    /// the interface usable) or UDP, and writes the header templates. Called after any change
    /// of a packet socket; the transmit queue is empty then (it is flushed every batch).
    private func rebuildPacketOutputs() {
        var rank = Int32(outputCount)
        for index in 0..<outputCount {
            outputPacketSocket[index] = -1
            outputPacketRank[index] = -1
            outputPayloadLimit[index] = 0
        }
        for socket in sockets.indices where sockets[socket].key.kind == .packet {
            guard sockets[socket].fd >= 0, let link = sockets[socket].link else { continue }
            for index in 0..<outputCount {
                let output = planned[index]
                guard output.key.multicast, output.key.interface == sockets[socket].key.interface else { continue }
                outputPacketSocket[index] = Int32(socket)
                outputPacketRank[index] = rank
                rank += 1
                outputPayloadLimit[index] = Int32(link.payloadLimit)
                var address = sockaddr_ll()
                address.sll_family = UInt16(AF_PACKET)
                address.sll_protocol = UInt16(ETH_P_IP).bigEndian
                address.sll_ifindex = link.index
                address.sll_halen = 6
                outputLinkAddress[index] = address
                let sourcePort = sockets[Int(outputSocket[index])].port
                link.mac.withUnsafeBufferPointer { mac in
                    ldp_packet_template(outputTemplate.advanced(by: index * Int(LDP_PACKET_TEMPLATE_BYTES)).assumingMemoryBound(to: UInt8.self),
                                        mac.baseAddress, link.address, output.address.sin_addr.s_addr,
                                        sourcePort, UInt16(bigEndian: output.address.sin_port), output.ttl)
                }
            }
        }
        rankCount = Int(rank)
    }

    /// Which path each interface's multicast outputs take, for logs and tests:
    /// `(interface, "packet" | "udp: <reason>")`.
    public var packetEgressState: [(interface: String, path: String)] {
        sockets.filter { $0.key.kind == .packet }.map { socket in
            let path = socket.fd >= 0 && socket.link != nil ? "packet" : "udp: \(socket.unusable?.description ?? "not open")"
            return (socket.key.interface.rawValue, path)
        }
    }

    var hasMissingSockets: Bool { sockets.contains { $0.fd < 0 } }
    var hasPacketSockets: Bool { sockets.contains { $0.key.kind == .packet } }

    /// Milliseconds until the next retry of missing sockets or refresh of packet interfaces,
    /// nil when there is nothing to do.
    func retryDelay(now: Int64) -> Int64? {
        var delay: Int64?
        if hasMissingSockets { delay = max(0, nextRetry - now) }
        if hasPacketSockets { delay = min(delay ?? .max, max(0, nextRefresh - now)) }
        return delay
    }

    /// Retries opening missing sockets when due, and re-reads the packet path's interfaces;
    /// returns problems (only changed ones).
    public func retryMissing(now: Int64) -> [String] {
        var problems: [String] = []
        var changed = false
        if hasMissingSockets, now >= nextRetry {
            nextRetry = now + Self.retryIntervalMilliseconds
            for index in sockets.indices where sockets[index].fd < 0 {
                problems += open(&sockets[index])
                if sockets[index].fd >= 0 && sockets[index].key.kind == .packet { changed = true }
            }
        }
        if hasPacketSockets, now >= nextRefresh {
            nextRefresh = now + Self.refreshIntervalMilliseconds
            for index in sockets.indices where sockets[index].key.kind == .packet && sockets[index].fd >= 0 {
                let before = sockets[index].link
                problems += readLink(&sockets[index])
                if let link = sockets[index].link, let before, link.index != before.index {
                    // The interface was re-created: the socket is bound to the old one.
                    close(sockets[index].fd)
                    sockets[index].fd = -1
                    problems += open(&sockets[index])
                }
                if sockets[index].link != before { changed = true }
            }
        }
        if changed { rebuildPacketOutputs() }
        return problems
    }

    /// The socket for a transmit: the one precomputed for its output handle, after checking
    /// that the handle's entry describes this very transmit (always, by construction); -1
    /// otherwise, which the queue counts as a failed send rather than risk the wrong interface.
    @inline(__always)
    public func socketIndex(for transmit: Transmit) -> Int {
        let output = Int(transmit.output.index)
        guard output < outputCount else { return -1 }
        let address = outputAddress[output]
        guard address.sin_addr.s_addr == transmit.destination.value.bigEndian,
              address.sin_port == transmit.port.bigEndian, outputTTL[output] == transmit.ttl else { return -1 }
        return Int(outputSocket[output])
    }

    /// A send failure other than a full queue, reported once per socket and errno.
    func sendProblem(socket index: Int, code: Int32) -> String? {
        guard sockets[index].reportedSendErrno != code else { return nil }
        sockets[index].reportedSendErrno = code
        return DataPlaneSystemError("sendmmsg", sockets[index].key.description, code: code).description
    }

    /// UDP GSO failed on this socket (EINVAL, EIO, EMSGSIZE): send datagrams one by one from
    /// now on. Returns a problem to report.
    func disableSegmentation(socket index: Int, code: Int32) -> String {
        sockets[index].segmentation = false
        return "\(DataPlaneSystemError("sendmmsg with UDP_SEGMENT", sockets[index].key.description, code: code)); "
            + "sending datagrams one by one on it from now on"
    }

    private func open(_ socket: inout Socket) -> [String] {
        if socket.key.kind == .packet { return openPacket(&socket) }
        do {
            (socket.fd, socket.port) = try Self.makeSocket(socket.key)
            let mtu = ldp_interface_mtu(socket.fd, socket.key.interface.rawValue)
            socket.mtu = mtu > 0 ? Int(mtu) : 0
            socket.lastProblem = nil
            return []
        } catch {
            let text = error.description
            defer { socket.lastProblem = text }
            return socket.lastProblem == text ? [] : [text]
        }
    }

    /// Opens a packet socket if its interface can take packet egress. A missing interface is
    /// left to the UDP socket of the same interface to report; anything else that keeps the
    /// interface on the UDP path is reported once.
    private func openPacket(_ socket: inout Socket) -> [String] {
        var problems = readLink(&socket)
        guard let link = socket.link else { return problems }
        do {
            socket.fd = try PacketEgressLink.openSocket(index: link.index, target: socket.key.description)
        } catch {
            socket.link = nil
            problems += transition(&socket, to: .socket(error))
        }
        return problems
    }

    /// Re-reads a packet socket's interface; returns a problem when it stops (or starts again
    /// after having stopped) being usable for packet egress.
    private func readLink(_ socket: inout Socket) -> [String] {
        if probe < 0 { probe = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        switch PacketEgressLink.read(socket.key.interface, probe: probe) {
        case let .success(link):
            socket.link = link
            return transition(&socket, to: nil)
        case let .failure(reason):
            socket.link = nil
            return transition(&socket, to: reason)
        }
    }

    private func transition(_ socket: inout Socket, to reason: PacketEgressUnusable?) -> [String] {
        guard socket.unusable != reason else { return [] }
        let previous = socket.unusable
        socket.unusable = reason
        let interface = socket.key.interface
        switch reason {
        case nil:
            // Only a recovery from a reported fallback is news.
            guard let previous, previous != .missing else { return [] }
            return ["output interface \(interface): multicast outputs use AF_PACKET egress again"]
        case .missing?:
            return []
        case let reason?:
            return ["output interface \(interface) \(reason): its multicast outputs use UDP sockets (kernel path) "
                    + "instead of AF_PACKET egress"]
        }
    }

    static func makeSocket(_ key: Key) throws(DataPlaneSystemError) -> (fd: Int32, port: UInt16) {
        let target = key.description
        let index = Int32(bitPattern: if_nametoindex(key.interface.rawValue))
        guard index > 0 else { throw .last("if_nametoindex", target) }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .last("socket(AF_INET, SOCK_DGRAM)", target) }
        do throws(DataPlaneSystemError) {
            if key.multicast {
                var request = ip_mreqn()
                request.imr_ifindex = index
                guard setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, &request, socklen_t(MemoryLayout<ip_mreqn>.size)) == 0 else {
                    throw .last("setsockopt(IP_MULTICAST_IF)", target)
                }
                try DataPlaneSocketOption.set(fd, Int32(IPPROTO_IP), IP_MULTICAST_TTL, Int32(key.ttl), "IP_MULTICAST_TTL", target)
                try DataPlaneSocketOption.set(fd, Int32(IPPROTO_IP), IP_MULTICAST_LOOP, 0, "IP_MULTICAST_LOOP", target)
            } else {
                try DataPlaneSocketOption.set(fd, Int32(IPPROTO_IP), IP_TTL, Int32(key.ttl), "IP_TTL", target)
                let name = key.interface.rawValue
                let bound = name.withCString { setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, $0, socklen_t(name.utf8.count)) }
                guard bound == 0 else { throw .last("setsockopt(SO_BINDTODEVICE)", target) }
            }
            try DataPlaneSocketOption.set(fd, Int32(IPPROTO_IP), CLN_IP_MULTICAST_ALL, 0, "IP_MULTICAST_ALL", target)
            DataPlaneSocketOption.setBuffer(fd, receive: false, bytes: sendBufferBytes)
            var small: Int32 = 4096
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            // Bind the ephemeral port now (the first send would), so packet egress can use it.
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
                }
            }
            guard bound else { throw .last("bind(0.0.0.0:0)", target) }
            return (fd, UInt16(bigEndian: local.sin_port))
        } catch {
            close(fd)
            throw error
        }
    }
}

extension EgressSocketPool {
    /// The output interface of this socket vanished (ENODEV: its index is stale): close it so
    /// the retry timer reopens it by name.
    func invalidate(socket index: Int) {
        guard sockets[index].fd >= 0 else { return }
        close(sockets[index].fd)
        sockets[index].fd = -1
        nextRetry = 0
        if sockets[index].key.kind == .packet { rebuildPacketOutputs() }
    }
}
