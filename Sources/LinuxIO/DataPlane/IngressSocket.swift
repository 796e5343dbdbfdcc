import CLinuxNet
import Glibc
import RelayCore

/// One AF_PACKET socket reading IPv4 and IPv6 frames from one input interface.
///
/// `SOCK_DGRAM` with protocol ETH_P_ALL: the kernel strips the link header (and any VLAN tag),
/// so frames start at the IP header (`LinkType.rawIP`; its version nibble says which). Options, in the order they are set:
/// - created with protocol 0, so nothing is queued before `bind` narrows it to one interface;
/// - `PACKET_IGNORE_OUTGOING`: the relay's own transmissions never come back as input (a relay
///   that reads an interface it also writes would otherwise loop);
/// - a classic BPF filter keeping IPv4 UDP to 224.0.0.0/4 and IPv6 to ff00::/8 whose first next
///   header is UDP or an extension header (the parser walks those), so unicast and other protocols are
///   dropped in the kernel instead of costing a wakeup and a copy (for a fanout member, a filter
///   accepting nothing until it has joined its group, then this one);
/// - a large receive buffer (bursts are absorbed by the kernel, not lost);
/// - `bind` to the interface index with ETH_P_ALL (with PACKET_IGNORE_OUTGOING, which such a
///   socket needs: it would otherwise see every frame the host sends there);
/// - `PACKET_FANOUT` (hash mode, `PACKET_FANOUT_FLAG_IGNORE_OUTGOING`: once joined, the group's
///   hook replaces the socket's, so the socket's own IGNORE_OUTGOING no longer applies) when
///   workers share the interface (the daemon's workers always do, even one): the kernel hands
///   each frame to exactly one socket of the group, and a flow stays on one worker (in order).
///   Joining needs a bound, running socket, so it comes last (a down interface fails here).
public struct IngressSocket: Sendable {
    public let fd: Int32
    public let interface: InterfaceName
    public let interfaceIndex: Int32
    public let fanoutGroup: UInt16?

    public static let receiveBufferBytes: Int32 = 8 << 20

    public static func open(interface: InterfaceName, fanoutGroup: UInt16?,
                            receiveBufferBytes: Int32 = receiveBufferBytes) throws(DataPlaneSystemError) -> IngressSocket {
        let target = "input interface \(interface)"
        let index = Int32(bitPattern: if_nametoindex(interface.rawValue))
        guard index > 0 else { throw .last("if_nametoindex", target) }

        let fd = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .last("socket(AF_PACKET)", target) }
        do throws(DataPlaneSystemError) {
            try DataPlaneSocketOption.set(fd, CLN_SOL_PACKET, CLN_PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING", target)
            // A fanout member must be bound before it can join, and from bind until it joins it
            // is a standalone listener: it would get a copy of every frame the group's other
            // sockets also get (a duplicate of each, e.g. while a restarted worker rejoins).
            // So it accepts nothing until it has joined; only then does the real filter go on.
            try Self.attachFilter(fd, dropAll: fanoutGroup != nil, target)
            DataPlaneSocketOption.setBuffer(fd, receive: true, bytes: receiveBufferBytes)
            try DataPlaneSocketOption.setNonBlocking(fd, target)

            try DataPlaneSocketOption.bindPacketSocket(fd, ifindex: index, target)

            if let group = fanoutGroup {
                // The group's hook, not the socket's, receives frames once it has joined: without
                // the group's own IGNORE_OUTGOING flag, PACKET_IGNORE_OUTGOING above no longer
                // applies and (bound to ETH_P_ALL) every frame the host sends on this interface,
                // the relay's own output included, comes back as input (kernel >= 4.20).
                let argument = cln_fanout_arg(group, CLN_PACKET_FANOUT_HASH, CLN_PACKET_FANOUT_FLAG_IGNORE_OUTGOING)
                try DataPlaneSocketOption.set(fd, CLN_SOL_PACKET, CLN_PACKET_FANOUT, argument, "PACKET_FANOUT group \(group)", target)
                try Self.attachFilter(fd, dropAll: false, target)
            }
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        return IngressSocket(fd: fd, interface: interface, interfaceIndex: index, fanoutGroup: fanoutGroup)
    }

    public func close() { _ = Glibc.close(fd) }

    private static func attachFilter(_ fd: Int32, dropAll: Bool, _ target: String) throws(DataPlaneSystemError) {
        let attached = dropAll ? cln_attach_drop_all_filter(fd) : cln_attach_udp_multicast_filter(fd, 1)
        guard attached == 0 else {
            throw DataPlaneSystemError("setsockopt(SO_ATTACH_FILTER\(dropAll ? ", accept nothing" : ""))", target, code: -attached)
        }
    }

    /// Frames the kernel dropped for this socket (receive queue full) since the last call
    /// (PACKET_STATISTICS resets on read); nil if the kernel would not say.
    public func takeKernelDrops() -> UInt64? {
        var statistics = tpacket_stats()
        var length = socklen_t(MemoryLayout<tpacket_stats>.size)
        guard getsockopt(fd, CLN_SOL_PACKET, CLN_PACKET_STATISTICS, &statistics, &length) == 0 else { return nil }
        return UInt64(statistics.tp_drops)
    }

    /// The interface index currently registered under this socket's interface name, or 0.
    /// Differs from `interfaceIndex` when the interface was deleted (and maybe re-created).
    func currentInterfaceIndex() -> Int32 { Int32(bitPattern: if_nametoindex(interface.rawValue)) }
}
