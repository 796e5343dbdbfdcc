import CLinuxNet
import Glibc
import RelayCore

/// What the AF_PACKET egress path must know about an output interface to write frames for it
/// itself, read with ioctls when its socket opens and again every `EgressSocketPool`
/// refresh (an address, MAC or MTU change is picked up within a second).
///
/// The kernel's UDP path picks the same source address for a multicast datagram sent with
/// IP_MULTICAST_IF: the interface's primary IPv4 address.
struct PacketEgressLink: Equatable {
    var index: Int32
    var mac: [UInt8]
    /// Network byte order.
    var address: UInt32
    var mtu: Int

    /// The largest UDP payload that fits one frame; bigger ones take the UDP path (the kernel
    /// fragments them, as it would have).
    var payloadLimit: Int { max(0, mtu - 28) }

    var addressText: String {
        let value = UInt32(bigEndian: address)
        return "\(value >> 24).\((value >> 16) & 0xFF).\((value >> 8) & 0xFF).\(value & 0xFF)"
    }

    /// The interface as the packet path needs it, or why it cannot take it (then its outputs
    /// use UDP sockets). `probe`: any socket of the worker's network namespace.
    static func read(_ interface: InterfaceName, probe: Int32) -> Result<PacketEgressLink, PacketEgressUnusable> {
        let name = interface.rawValue
        let index = Int32(bitPattern: if_nametoindex(name))
        guard index > 0 else { return .failure(.missing) }
        var type: UInt16 = 0
        var mac = [UInt8](repeating: 0, count: 6)
        let hardware = ldp_interface_hardware(probe, name, &type, &mac)
        guard hardware == 0 else { return .failure(.lookup("SIOCGIFHWADDR", -hardware)) }
        // ARPHRD_ETHER (1): veth, physical NICs, bridges, bonds, VLANs, macvlans.
        guard type == 1 else { return .failure(.notEthernet(type)) }
        var address: UInt32 = 0
        let found = ldp_interface_ipv4(probe, name, &address)
        guard found == 0 else { return .failure(found == -EADDRNOTAVAIL ? .noAddress : .lookup("SIOCGIFADDR", -found)) }
        let mtu = ldp_interface_mtu(probe, name)
        guard mtu > 0 else { return .failure(.lookup("SIOCGIFMTU", -mtu)) }
        return .success(PacketEgressLink(index: index, mac: mac, address: address, mtu: Int(mtu)))
    }

    /// An AF_PACKET SOCK_RAW socket for sending on interface `index`: bound with protocol 0 (it
    /// receives nothing), non-blocking, a large send buffer.
    ///
    /// Not PACKET_QDISC_BYPASS: a bypassing socket hands frames straight to the driver, which
    /// also skips the packet taps (tcpdump on the output interface sees nothing), tc egress, and
    /// the qdisc's buffering (a burst beyond the NIC's ring would be dropped, not queued). On the
    /// lab it bought nothing measurable (100 streams x 64 B: 3.7 us/pkt with it, 3.4 without;
    /// zero-loss 230k vs 240k pps, back to back), so frames take dev_queue_xmit like the kernel's
    /// own traffic. What the packet path skips is the UDP/IP send path (routing, socket
    /// accounting, IP output and netfilter's OUTPUT/POSTROUTING hooks).
    static func openSocket(index: Int32, target: String) throws(DataPlaneSystemError) -> Int32 {
        let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .last("socket(AF_PACKET, SOCK_RAW)", target) }
        do throws(DataPlaneSystemError) {
            var address = sockaddr_ll()
            address.sll_family = UInt16(AF_PACKET)
            address.sll_ifindex = index
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_ll>.size)) }
            }
            guard bound == 0 else { throw .last("bind(AF_PACKET)", target) }
            DataPlaneSocketOption.setBuffer(fd, receive: false, bytes: EgressSocketPool.sendBufferBytes)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }
}

/// Why an output interface cannot take AF_PACKET egress.
enum PacketEgressUnusable: Error, Equatable, CustomStringConvertible {
    /// The interface does not exist (its UDP socket reports that; nothing to add).
    case missing
    case noAddress
    case notEthernet(UInt16)
    case lookup(String, Int32)
    case socket(DataPlaneSystemError)

    var description: String {
        switch self {
        case .missing: "does not exist"
        case .noAddress: "has no IPv4 address"
        case let .notEthernet(type): "is not an Ethernet interface (hardware type \(type))"
        case let .lookup(call, code): "\(call) failed: \(String(cString: strerror(code))) (errno \(code))"
        case let .socket(error): error.description
        }
    }
}
