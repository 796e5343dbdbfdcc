import Collections
import RelayCore

/// The parts of the Linux kernel the relay depends on, reduced to the behaviour that decides
/// whether packets flow. Each rule below names the kernel code or fact it imitates.
struct KernelModel {
    /// `net.ipv4.igmp_max_memberships` (default 20): `ip_mc_join_group` returns ENOBUFS once
    /// a socket's `mc_list` holds this many (group, interface) entries.
    static let defaultMembershipLimit = 20
    /// `net.ipv4.igmp_max_msf` (default 10): `ip_mc_source` returns ENOBUFS past this many
    /// sources in one group's filter.
    static let maxSourcesPerGroup = 10
    /// `net.ipv6.mld_max_msf` (default 64): the IPv6 twin of `igmp_max_msf`.
    static let maxSourcesPerGroupIPv6 = 64
    /// IPv6 memberships are bounded by the socket's option memory, not by a count
    /// (`sock_kmalloc` fails once `sk_omem_alloc + size >= net.core.optmem_max`): 56 bytes
    /// per group (`ipv6_mc_socklist`, ENOMEM when refused) and, for a source-specific group,
    /// a source list of 24 + 16 * capacity bytes whose capacity grows in blocks of 10
    /// (`IP6_SFBLOCK`; the larger list is allocated before the old one is freed; ENOBUFS when
    /// refused). Measured on this kernel (docs/ipv6-linux-facts.md): 2340 any-source groups,
    /// 546 one-source groups, 108 full (64-source) groups and 40 sources of the next.
    static let optmemMax = 131_072
    static let ipv6GroupBytes = 56
    static func ipv6SourceListBytes(capacity: Int) -> Int { 24 + 16 * capacity }
    static func ipv6SourceCapacity(for count: Int) -> Int { (count + 9) / 10 * 10 }
    /// The any-source count at the default optmem (the most groups an IPv6 socket can hold).
    static let defaultIPv6MembershipLimit = optmemMax / ipv6GroupBytes - (optmemMax % ipv6GroupBytes == 0 ? 1 : 0)
    /// `net.core.wmem_default` (212992 bytes): a UDP socket's send buffer. A non-blocking send
    /// fails with EAGAIN when the bytes in flight (`sk_wmem_alloc`) would exceed it
    /// (`sock_alloc_send_pskb`).
    static let sendBufferBytes = 212_992
    /// Roughly what one small datagram charges to `sk_wmem_alloc` beyond its bytes
    /// (`skb->truesize`: the sk_buff and shared info).
    static let perPacketOverhead = 640
    /// Link speed of every simulated interface: 10 Gbit/s, i.e. 1.25 bytes per nanosecond,
    /// plus 24 bytes per frame on the wire (preamble, FCS, inter-frame gap).
    static let wireBytesPerNanosecond = 1.25

    enum GroupFilter: Equatable {
        case anySource
        case sources(Set<IPAddress>)
    }

    struct HelperSocket {
        var interface: InterfaceName
        var groups: [IPAddress: GroupFilter] = [:]
    }

    struct GateKey: Hashable {
        var interface: Int
        var group: IPAddress
    }

    let membershipLimit: Int
    /// IPv6 memberships one socket holds before the kernel refuses more (SocketLimits.ipv6).
    let membershipLimitIPv6: Int
    let interfaces: InterfaceTable
    private(set) var up: [Bool]
    private(set) var helperSockets: [HelperSocketID: HelperSocket] = [:]
    /// Per (interface, group): how the host is joined, derived from all helper sockets. The
    /// switch (IGMP snooping) and the NIC's multicast filter deliver a group's frames only to
    /// a host that joined it, so a group the relay failed to join never reaches the relay.
    private var gate: [GateKey: (any: Int, sources: [IPAddress: Int])] = [:]
    private(set) var refusedOverLimit = 0

    init(interfaces: InterfaceTable, membershipLimit: Int, membershipLimitIPv6: Int = KernelModel.defaultIPv6MembershipLimit) {
        self.interfaces = interfaces
        self.membershipLimit = membershipLimit
        self.membershipLimitIPv6 = membershipLimitIPv6
        up = Array(repeating: true, count: interfaces.count)
        sendQueues = Array(repeating: SendQueue(), count: interfaces.count)
    }

    // MARK: - Interfaces

    /// Administrative down (`ip link set down`): the device keeps its addresses and the
    /// sockets' memberships (`ip_mc_down` only stops IGMP reports; `ip_mc_up` resends them),
    /// receives nothing, and transmits fail with ENETDOWN (`dev_queue_xmit` on a stopped device).
    mutating func setUp(_ interface: Int, _ value: Bool) { up[interface] = value }

    // MARK: - Helper sockets and IGMP

    enum CallError: Error { case alreadyOpen, notOpen }

    mutating func openHelperSocket(_ id: HelperSocketID) throws(CallError) {
        guard helperSockets[id] == nil else { throw .alreadyOpen }
        helperSockets[id] = HelperSocket(interface: id.interface)
    }

    /// `close()` drops every membership the socket holds (`ip_mc_drop_socket`).
    mutating func closeHelperSocket(_ id: HelperSocketID) throws(CallError) {
        guard let socket = helperSockets.removeValue(forKey: id) else { throw .notOpen }
        for (group, filter) in socket.groups { ungate(socket.interface, group, filter) }
    }

    /// `IP_ADD_MEMBERSHIP` / `IP_ADD_SOURCE_MEMBERSHIP` on a helper socket.
    mutating func join(_ request: JoinRequest) -> JoinOutcome {
        join(socket: request.socket, membership: request.membership)
    }

    mutating func join(socket id: HelperSocketID, membership key: MembershipKey) -> JoinOutcome {
        guard var socket = helperSockets[id] else { return .failed(.other(errno: 9)) }  // EBADF
        // ip_mc_find_dev: the interface must exist (ENODEV otherwise).
        guard interfaces.index(of: key.interface) != nil else { return .failed(.noSuchDevice) }
        let group = key.group
        let sourceLimit = group.family == .ipv4 ? Self.maxSourcesPerGroup : Self.maxSourcesPerGroupIPv6
        if group.family == .ipv6, let refusal = Self.optionMemoryRefusal(socket, adding: key) {
            refusedOverLimit += 1
            return .failed(refusal)
        }
        if let existing = socket.groups[group] {
            switch (existing, key.source) {
            case (.anySource, nil): return .failed(.alreadyMember)  // EADDRINUSE
            case (.anySource, .some), (.sources, nil):
                return .failed(.other(errno: 22))  // EINVAL: filter mode mismatch on one socket
            case let (.sources(sources), .some(source)):
                if sources.contains(source) { return .failed(.alreadyMember) }
                if sources.count >= sourceLimit { return .failed(.socketFull) }
                socket.groups[group] = .sources(sources.union([source]))
            }
        } else {
            if socket.groups.count >= (group.family == .ipv4 ? membershipLimit : membershipLimitIPv6) {
                refusedOverLimit += 1
                return .failed(.socketFull)  // ENOBUFS: igmp_max_memberships reached
            }
            socket.groups[group] = key.source.map { .sources([$0]) } ?? .anySource
        }
        helperSockets[id] = socket
        regate(key.interface, group)
        return .joined
    }

    /// Option memory an IPv6 helper socket holds (see `optmemMax`).
    static func optionMemory(_ socket: HelperSocket) -> Int {
        socket.groups.reduce(0) { total, entry in
            guard entry.key.family == .ipv6 else { return total }
            switch entry.value {
            case .anySource: return total + ipv6GroupBytes
            case let .sources(sources):
                return total + ipv6GroupBytes + ipv6SourceListBytes(capacity: ipv6SourceCapacity(for: sources.count))
            }
        }
    }

    /// Why the kernel would refuse this IPv6 join for option memory (nil: it fits). Both errnos
    /// mean "this socket is full" to the relay (`JoinError.socketFull`).
    static func optionMemoryRefusal(_ socket: HelperSocket, adding key: MembershipKey) -> JoinError? {
        let held = optionMemory(socket)
        func fits(_ bytes: Int) -> Bool { held + bytes < optmemMax }
        switch (socket.groups[key.group], key.source) {
        case (nil, nil):
            return fits(ipv6GroupBytes) ? nil : .socketFull  // ENOMEM
        case (nil, .some):
            guard fits(ipv6GroupBytes) else { return .socketFull }  // ENOMEM
            return fits(ipv6GroupBytes + ipv6SourceListBytes(capacity: 10)) ? nil : .socketFull  // ENOBUFS
        case let (.sources(sources)?, .some(source)):
            guard !sources.contains(source), sources.count < maxSourcesPerGroupIPv6,
                  sources.count == ipv6SourceCapacity(for: sources.count) else { return nil }
            // A full list grows: the new one is allocated while the old one is still held.
            return fits(ipv6SourceListBytes(capacity: sources.count + 10)) ? nil : .socketFull  // ENOBUFS
        default:
            return nil  // EADDRINUSE or EINVAL, decided below
        }
    }

    /// `IP_DROP_MEMBERSHIP` / `IP_DROP_SOURCE_MEMBERSHIP`. Returns false when there was no
    /// such membership (EADDRNOTAVAIL), which a correct relay never causes.
    mutating func leave(_ request: LeaveRequest) -> Bool {
        guard var socket = helperSockets[request.socket] else { return false }
        let key = request.membership
        let group = key.group
        guard let existing = socket.groups[group] else { return false }
        switch (existing, key.source) {
        case (.anySource, nil): socket.groups[group] = nil
        case (.sources(var sources), .some(let source)):
            guard sources.remove(source) != nil else { return false }
            socket.groups[group] = sources.isEmpty ? nil : .sources(sources)
        default: return false
        }
        helperSockets[request.socket] = socket
        regate(key.interface, group)
        return true
    }

    /// What the kernel is joined to (as `/proc/net/igmp` and `/proc/net/mcfilter` would show).
    var joinedMemberships: Set<MembershipKey> {
        var keys = Set<MembershipKey>()
        for socket in helperSockets.values {
            for (group, filter) in socket.groups {
                switch filter {
                case .anySource: keys.insert(MembershipKey(interface: socket.interface, group: group))
                case let .sources(sources):
                    for source in sources {
                        keys.insert(MembershipKey(interface: socket.interface, group: group, source: source))
                    }
                }
            }
        }
        return keys
    }

    func groupsHeld(by socket: HelperSocketID) -> Int { helperSockets[socket]?.groups.count ?? 0 }

    private mutating func regate(_ interface: InterfaceName, _ group: IPAddress) {
        guard let index = interfaces.index(of: interface) else { return }
        var any = 0
        var sources: [IPAddress: Int] = [:]
        for socket in helperSockets.values where socket.interface == interface {
            switch socket.groups[group] {
            case .anySource: any += 1
            case let .sources(set): for source in set { sources[source, default: 0] += 1 }
            case nil: break
            }
        }
        let key = GateKey(interface: index, group: group)
        gate[key] = any == 0 && sources.isEmpty ? nil : (any, sources)
    }

    private mutating func ungate(_ interface: InterfaceName, _ group: IPAddress, _ filter: GroupFilter) {
        regate(interface, group)
    }

    /// Would the network hand this frame to the host? Frames to groups in 224.0.0.0/24 are
    /// flooded (RFC 4541 section 2.1.2), other multicast needs a join on that interface (in
    /// EXCLUDE mode, or INCLUDE with this source); non-multicast frames always arrive.
    @inline(__always)
    func admits(interface: Int, group: IPAddress?, source: IPAddress) -> Bool {
        // Link-scoped groups (224.0.0.0/24, ff02::/16) are never filtered: every host
        // receives them (all-hosts, all-nodes, MLD, mDNS) without asking.
        guard let group, !group.isLinkScopedGroup else { return true }
        guard let entry = gate[GateKey(interface: interface, group: group)] else { return false }
        return entry.any > 0 || entry.sources[source] != nil
    }

    // MARK: - Egress send queues

    struct SendQueue {
        var inFlight: Deque<(done: UInt64, charge: Int)> = []
        var bytes = 0
        var busyUntil: UInt64 = 0
    }

    private var sendQueues: [SendQueue]

    enum SendResult { case sent, failed(errno: Int32) }

    /// One datagram into an interface's egress socket at `now`.
    @inline(__always)
    mutating func send(interface: Int, frameLength: Int, now: UInt64) -> SendResult {
        guard up[interface] else { return .failed(errno: 100) }  // ENETDOWN
        // Mutated in place: copying the queue out would copy its buffer on every send.
        while let head = sendQueues[interface].inFlight.first, head.done <= now {
            sendQueues[interface].bytes -= head.charge
            sendQueues[interface].inFlight.removeFirst()
        }
        let charge = frameLength + Self.perPacketOverhead
        guard sendQueues[interface].bytes + charge <= Self.sendBufferBytes else {
            return .failed(errno: 11)  // EAGAIN: sk_wmem_alloc over sk_sndbuf
        }
        let start = max(now, sendQueues[interface].busyUntil)
        let done = start + UInt64(Double(frameLength + 24) / Self.wireBytesPerNanosecond)
        sendQueues[interface].busyUntil = done
        sendQueues[interface].bytes += charge
        sendQueues[interface].inFlight.append((done, charge))
        return .sent
    }
}

/// AF_PACKET ingress sockets and PACKET_FANOUT groups (net/packet/af_packet.c).
///
/// - A socket bound to an interface gets its own copy of every frame (`dev_queue_xmit_nit` /
///   `deliver_skb` run each packet_type hook), so N sockets without fanout = N copies.
/// - Sockets in one fanout group share a single hook: each frame goes to exactly one member,
///   `fanout_demux_hash`: `reciprocal_scale(skb_get_hash, num_members)` in PACKET_FANOUT_HASH
///   mode, so a flow stays on one member.
/// - Members are kept in join order; when one leaves, the last member takes its slot
///   (`__fanout_unlink`), which is why flows move between workers when one exits.
/// - A fanout id names one group per network namespace; joining it from a socket bound to
///   another interface fails with EINVAL (`fanout_add` checks the device matches).
struct PacketSockets {
    struct Socket: Equatable {
        var worker: Int
        var interface: Int
        var fanout: UInt16?
    }

    enum Receiver {
        case solo(worker: Int)
        case fanout(members: [Int])
    }

    private(set) var sockets: [Socket] = []
    private var fanoutMembers: [UInt16: (interface: Int, members: [Int])] = [:]
    private var fanoutOrder: [UInt16] = []
    /// Per interface, who gets each frame; rebuilt when sockets change (rarely).
    private(set) var receivers: [[Receiver]]

    init(interfaceCount: Int) {
        receivers = Array(repeating: [], count: interfaceCount)
    }

    /// Opens a socket; returns false (EINVAL) when the fanout id is bound to another interface.
    mutating func open(_ socket: Socket) -> Bool {
        if let id = socket.fanout {
            if var group = fanoutMembers[id] {
                guard group.interface == socket.interface else { return false }
                group.members.append(socket.worker)
                fanoutMembers[id] = group
            } else {
                fanoutMembers[id] = (socket.interface, [socket.worker])
                fanoutOrder.append(id)
            }
        }
        sockets.append(socket)
        rebuild()
        return true
    }

    mutating func close(_ socket: Socket) {
        guard let index = sockets.firstIndex(of: socket) else { return }
        sockets.remove(at: index)
        if let id = socket.fanout, var group = fanoutMembers[id],
           let slot = group.members.firstIndex(of: socket.worker) {
            group.members[slot] = group.members[group.members.count - 1]
            group.members.removeLast()
            if group.members.isEmpty {
                fanoutMembers[id] = nil
                fanoutOrder.removeAll { $0 == id }
            } else {
                fanoutMembers[id] = group
            }
        }
        rebuild()
    }

    func sockets(of worker: Int) -> [Socket] { sockets.filter { $0.worker == worker } }

    private mutating func rebuild() {
        for index in receivers.indices { receivers[index].removeAll() }
        for socket in sockets where socket.fanout == nil {
            receivers[socket.interface].append(.solo(worker: socket.worker))
        }
        for id in fanoutOrder {
            let group = fanoutMembers[id]!
            receivers[group.interface].append(.fanout(members: group.members))
        }
    }

    /// How many copies of one frame on this interface reach user space.
    func copies(on interface: Int) -> Int { receivers[interface].count }
}
