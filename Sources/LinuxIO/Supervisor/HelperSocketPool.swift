#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayCore

/// Executes the core's membership actions on real sockets. A helper socket is an unbound
/// UDP socket used only to hold IGMP or MLD memberships (the kernel sends the reports); it is
/// never read, never bound (so it cannot receive anything), and has IP(V6)_MULTICAST_ALL off.
/// IPv6 joins use the protocol-independent MCAST_JOIN_GROUP / MCAST_JOIN_SOURCE_GROUP
/// (RFC 3678), which name the interface by index.
final class HelperSocketPool {
    private var sockets: [HelperSocketID: Int32] = [:]
    /// What each socket holds, so shutdown can leave every group explicitly.
    private var held: [HelperSocketID: Set<MembershipKey>] = [:]

    // Linux values (netinet/in.h); spelled out because not every one imports.
    static let ipAddMembership: Int32 = 35
    static let ipDropMembership: Int32 = 36
    static let ipAddSourceMembership: Int32 = 39
    static let ipDropSourceMembership: Int32 = 40
    static let ipMulticastAll: Int32 = 49

    var openCount: Int { sockets.count }

    func open(_ id: HelperSocketID) throws(SystemError) {
        guard sockets[id] == nil else { return }
        let family = id.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .last("socket(\(id.family == .ipv4 ? "AF_INET" : "AF_INET6")) for helper socket \(id)") }
        if id.family == .ipv4 {
            try? Descriptors.setOption(fd, level: Int32(IPPROTO_IP), name: Self.ipMulticastAll, value: 0, "IP_MULTICAST_ALL")
        } else {
            try? Descriptors.setOption(fd, level: Int32(IPPROTO_IPV6), name: CLN_IPV6_MULTICAST_ALL, value: 0, "IPV6_MULTICAST_ALL")
        }
        sockets[id] = fd
        held[id] = []
    }

    func close(_ id: HelperSocketID) {
        guard let fd = sockets.removeValue(forKey: id) else { return }
        held[id] = nil
        Descriptors.close(fd)  // the kernel drops whatever it still holds
    }

    func join(_ request: JoinRequest) -> JoinOutcome { join(request.membership, on: request.socket) }

    func join(_ key: MembershipKey, on socket: HelperSocketID) -> JoinOutcome {
        guard let fd = sockets[socket] else { return .failed(.other(errno: EBADF)) }
        guard let index = Interfaces.index(of: key.interface) else { return .failed(.noSuchDevice) }
        let result: Int32
        if case let .v6(group) = key.group {
            let code = Self.mcast6(fd, join: true, index: index, group: group, source: key.source?.v6)
            if code == 0 {
                held[socket, default: []].insert(key)
                return .joined
            }
            if code == EADDRINUSE { held[socket, default: []].insert(key) }
            // IPv6 has no count sysctl: a socket past its option memory gets ENOBUFS or
            // ENOMEM (sock_kmalloc against net.core.optmem_max); both mean "this socket is full".
            return .failed(code == ENOMEM ? .socketFull : Self.joinError(code))
        }
        guard let group = key.group.v4 else { return .failed(.other(errno: EINVAL)) }
        if let source = key.source?.v4 {
            // ip_mreq_source names the interface by address, not index.
            guard let local = Interfaces.ipv4Address(of: key.interface) else { return .failed(.notAvailable) }
            var mreq = ip_mreq_source(imr_multiaddr: group.inAddr, imr_interface: local.inAddr,
                                      imr_sourceaddr: source.inAddr)
            result = setsockopt(fd, Int32(IPPROTO_IP), Self.ipAddSourceMembership, &mreq,
                                socklen_t(MemoryLayout<ip_mreq_source>.size))
        } else {
            var mreq = ip_mreqn(imr_multiaddr: group.inAddr, imr_address: in_addr(s_addr: 0), imr_ifindex: index)
            result = setsockopt(fd, Int32(IPPROTO_IP), Self.ipAddMembership, &mreq, socklen_t(MemoryLayout<ip_mreqn>.size))
        }
        if result == 0 {
            held[socket, default: []].insert(key)
            return .joined
        }
        let code = errno
        if code == EADDRINUSE { held[socket, default: []].insert(key) }
        return .failed(Self.joinError(code))
    }

    func leave(_ request: LeaveRequest) {
        guard let fd = sockets[request.socket] else { return }
        held[request.socket]?.remove(request.membership)
        Self.drop(fd, request.membership)
    }

    /// Leaves every group explicitly (so the kernel sends IGMP leaves now), then closes.
    func leaveAllAndClose() -> Int {
        var left = 0
        for id in sockets.keys.sorted() {
            for key in (held[id] ?? []).sorted() {
                Self.drop(sockets[id]!, key)
                left += 1
            }
            close(id)
        }
        return left
    }

    static func joinError(_ code: Int32) -> JoinError {
        switch code {
        case ENOBUFS: .socketFull
        case ENODEV: .noSuchDevice
        case EADDRINUSE: .alreadyMember
        case EADDRNOTAVAIL: .notAvailable
        default: .other(errno: code)
        }
    }

    private static func mcast6(_ fd: Int32, join: Bool, index: Int32, group: IPv6Address, source: IPv6Address?) -> Int32 {
        let groupBytes = group.bytes
        return groupBytes.withUnsafeBufferPointer { groupPointer in
            if let source {
                return source.bytes.withUnsafeBufferPointer {
                    cln_mcast_ipv6(fd, join ? 1 : 0, index, groupPointer.baseAddress, $0.baseAddress)
                }
            }
            return cln_mcast_ipv6(fd, join ? 1 : 0, index, groupPointer.baseAddress, nil)
        }
    }

    private static func drop(_ fd: Int32, _ key: MembershipKey) {
        if case let .v6(group) = key.group {
            _ = mcast6(fd, join: false, index: Interfaces.index(of: key.interface) ?? 0, group: group, source: key.source?.v6)
            return
        }
        guard let group = key.group.v4 else { return }
        if let source = key.source?.v4 {
            let local = Interfaces.ipv4Address(of: key.interface) ?? IPv4Address(0)
            var mreq = ip_mreq_source(imr_multiaddr: group.inAddr, imr_interface: local.inAddr,
                                      imr_sourceaddr: source.inAddr)
            _ = setsockopt(fd, Int32(IPPROTO_IP), ipDropSourceMembership, &mreq, socklen_t(MemoryLayout<ip_mreq_source>.size))
        } else {
            var mreq = ip_mreqn(imr_multiaddr: group.inAddr, imr_address: in_addr(s_addr: 0),
                                imr_ifindex: Interfaces.index(of: key.interface) ?? 0)
            _ = setsockopt(fd, Int32(IPPROTO_IP), ipDropMembership, &mreq, socklen_t(MemoryLayout<ip_mreqn>.size))
        }
    }
}
