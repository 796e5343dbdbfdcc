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
    struct Key: Hashable, CustomStringConvertible {
        var interface: InterfaceName
        var ttl: UInt8
        var multicast: Bool
        var description: String { "output interface \(interface) (ttl \(ttl), \(multicast ? "multicast" : "unicast"))" }
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
    }

    static let sendBufferBytes: Int32 = 8 << 20
    static let retryIntervalMilliseconds: Int64 = 500

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
    private var nextRetry: Int64 = 0

    public init() {
        outputSocket = .allocate(capacity: 1)
        outputAddress = .allocate(capacity: 1)
        outputTTL = .allocate(capacity: 1)
        outputRank = .allocate(capacity: 1)
    }

    deinit {
        for socket in sockets where socket.fd >= 0 { close(socket.fd) }
        outputSocket.deallocate()
        outputAddress.deallocate()
        outputTTL.deallocate()
        outputRank.deallocate()
    }

    /// Matches the sockets to a new plan: sockets still needed stay open (no churn for
    /// streams the plan did not change), the rest are closed. Returns problems to report.
    public func install(_ plan: WorkerPlan, now: Int64) -> [String] {
        var keys: [Key] = []
        var outputs: [(key: Key, address: sockaddr_in, ttl: UInt8)] = []
        for rule in plan.rules {
            for output in rule.outputs {
                let key = Key(interface: output.interface, ttl: output.ttl, multicast: output.destination.isMulticast)
                if !keys.contains(key) { keys.append(key) }
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = output.port.bigEndian
                address.sin_addr.s_addr = output.destination.value.bigEndian
                outputs.append((key, address, output.ttl))
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
        sockets = kept

        outputSocket.deallocate()
        outputAddress.deallocate()
        outputTTL.deallocate()
        outputRank.deallocate()
        let capacity = max(outputs.count, 1)
        outputSocket = .allocate(capacity: capacity)
        outputAddress = .allocate(capacity: capacity)
        outputTTL = .allocate(capacity: capacity)
        outputRank = .allocate(capacity: capacity)
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
        nextRetry = now + Self.retryIntervalMilliseconds
        return problems
    }

    var hasMissingSockets: Bool { sockets.contains { $0.fd < 0 } }

    /// Milliseconds until the next retry of missing sockets, nil when none is missing.
    func retryDelay(now: Int64) -> Int64? { hasMissingSockets ? max(0, nextRetry - now) : nil }

    /// Retries opening missing sockets when due; returns problems (only changed ones).
    func retryMissing(now: Int64) -> [String] {
        guard hasMissingSockets, now >= nextRetry else { return [] }
        nextRetry = now + Self.retryIntervalMilliseconds
        var problems: [String] = []
        for index in sockets.indices where sockets[index].fd < 0 { problems += open(&sockets[index]) }
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
        do {
            socket.fd = try Self.makeSocket(socket.key)
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

    static func makeSocket(_ key: Key) throws(DataPlaneSystemError) -> Int32 {
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
        } catch {
            close(fd)
            throw error
        }
        return fd
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
    }
}
