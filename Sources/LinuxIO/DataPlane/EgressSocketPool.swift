import CLinuxNet
import Glibc
import RelayCore

/// The UDP sockets a worker sends through: one per (output interface, TTL, destination is
/// multicast, address family), shared by every output with that combination. Re-originating through ordinary
/// UDP sockets lets the kernel do routing, ARP, checksums and fragmentation.
///
/// - multicast destinations: `IP_MULTICAST_IF` by interface index (not by address: an
///   interface may have none or several), `IP_MULTICAST_TTL` (the kernel default of 1 dies at
///   the first router), `IP_MULTICAST_LOOP` off (no copies back into this host);
/// - unicast destinations: `IP_TTL`, and `SO_BINDTODEVICE` to pin the output interface;
/// - IPv6: the twins `IPV6_MULTICAST_IF`, `IPV6_MULTICAST_HOPS`, `IPV6_MULTICAST_LOOP` off,
///   `IPV6_UNICAST_HOPS`, `IPV6_V6ONLY`; the kernel always computes the UDP checksum;
/// - all: non-blocking (a full queue is a counted drop, never a stalled worker), a large send
///   buffer, `IP(V6)_MULTICAST_ALL` off and a tiny receive buffer (these sockets are never read).
///
/// Per output (indexed like the Forwarder's `OutputHandle`s: rule by rule, output by output)
/// the pool precomputes the socket and the `sockaddr_in`/`sockaddr_in6`, so a transmit is two
/// array reads.
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
        var family: AddressFamily = .ipv4
        var description: String {
            kind == .packet ? "output interface \(interface) (AF_PACKET)"
                : "output interface \(interface) (\(family == .ipv4 ? "ttl" : "IPv6 hop limit") \(ttl), \(multicast ? "multicast" : "unicast"))"
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
        /// Whether sends may coalesce same-size datagrams with UDP GSO: the interface's
        /// `EgressPolicy.segmentation` decision, unless the kernel refused GSO on this socket
        /// (e.g. a device without checksum offload).
        var segmentation = false
        var segmentationRefused = false
        /// UDP sockets: the local port (bound at open): the source port of what this socket sends.
        var port: UInt16 = 0
        /// Packet sockets: the interface index the socket is bound to.
        var boundIndex: Int32 = 0
    }

    /// One output interface: its facts as last read and the egress decision taken from them.
    struct Link {
        var facts: InterfaceFacts?
        var egress: InterfaceEgress
        /// The path last reported to the operator per family (absent: nothing reported yet).
        var reportedPath: [AddressFamily: EgressPath] = [:]
        var reportedReason: [AddressFamily: String] = [:]
    }

    /// A planned output, kept so the packet tables can be rebuilt when an interface changes.
    struct PlannedOutput {
        var key: Key
        var destination: IPAddress
        /// A `sockaddr_in` (IPv4, in the first 16 bytes) or a `sockaddr_in6`.
        var address: sockaddr_in6
        var ttl: UInt8
        /// A proxy's downstream (`OutputSpec.routed`): only the packet socket can carry it.
        var routed = false
    }

    static let sendBufferBytes: Int32 = 8 << 20
    static let retryIntervalMilliseconds: Int64 = 500
    /// How often packet egress re-reads its interfaces (address, MAC, MTU, index).
    static let refreshIntervalMilliseconds: Int64 = 1000

    public let mode: EgressMode
    public let segmentationSetting: SegmentationSetting
    private(set) var sockets: [Socket] = []
    /// Every output interface of the plan.
    private(set) var links: [InterfaceName: Link] = [:]
    /// Per output handle: index into `sockets`.
    private(set) var outputSocket: UnsafeMutablePointer<Int32>
    /// Per output handle: the destination address (stable memory: `msghdr.msg_name` points
    /// here), a `sockaddr_in` in the first bytes of the slot for IPv4, with its length.
    private(set) var outputAddress: UnsafeMutablePointer<sockaddr_in6>
    private(set) var outputAddressLength: UnsafeMutablePointer<socklen_t>
    private(set) var outputDestination: UnsafeMutablePointer<IPAddress>
    private(set) var outputTTL: UnsafeMutablePointer<UInt8>
    /// Per output handle: a proxy's routed output (its frames are the datagrams themselves).
    private(set) var outputRouted: UnsafeMutablePointer<Bool>
    /// Per output handle: its position when outputs are ordered by socket (so sorting pending
    /// transmits by rank groups them by socket, and by output within a socket).
    private(set) var outputRank: UnsafeMutablePointer<Int32>
    private(set) var outputCount = 0

    /// Per output handle, packet egress: the packet socket (index into `sockets`, -1: this
    /// output uses its UDP socket), its rank (after every UDP rank), the largest payload a
    /// frame may carry, the link-layer address frames are sent to (`msg_name`), and the header
    /// template (`EgressFrame.templateBytes` per output) of `EgressFrame.writeHeader`.
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

    public init(mode: EgressMode = .default, segmentation: SegmentationSetting = .default) {
        self.mode = mode
        self.segmentationSetting = segmentation
        outputSocket = .allocate(capacity: 1)
        outputAddress = .allocate(capacity: 1)
        outputAddressLength = .allocate(capacity: 1)
        outputDestination = .allocate(capacity: 1)
        outputTTL = .allocate(capacity: 1)
        outputRouted = .allocate(capacity: 1)
        outputRank = .allocate(capacity: 1)
        outputPacketSocket = .allocate(capacity: 1)
        outputPacketRank = .allocate(capacity: 1)
        outputPayloadLimit = .allocate(capacity: 1)
        outputLinkAddress = .allocate(capacity: 1)
        outputTemplate = .allocate(byteCount: EgressFrame.templateBytes, alignment: 16)
    }

    deinit {
        for socket in sockets where socket.fd >= 0 { close(socket.fd) }
        if probe >= 0 { close(probe) }
        deallocateOutputs()
    }

    private func deallocateOutputs() {
        outputSocket.deallocate()
        outputAddress.deallocate()
        outputAddressLength.deallocate()
        outputDestination.deallocate()
        outputTTL.deallocate()
        outputRouted.deallocate()
        outputRank.deallocate()
        outputPacketSocket.deallocate()
        outputPacketRank.deallocate()
        outputPayloadLimit.deallocate()
        outputLinkAddress.deallocate()
        outputTemplate.deallocate()
    }

    /// Matches the sockets to a new plan: sockets still needed stay open (no churn for
    /// streams the plan did not change), the rest are closed. Returns problems to report.
    /// The source address an output's frames carry, from the interface facts last read (what
    /// a follow output's gate is decided against); nil while the interface is unknown.
    /// Bumped when a refresh finds an interface's facts changed (an address may have changed,
    /// and with it what a follow output's gate is judged against).
    public private(set) var factsChanges = 0

    public func frameSource(_ output: OutputSpec) -> IPAddress? {
        links[output.interface]?.facts?.source(for: output.destination)
    }

    public func install(_ plan: WorkerPlan, now: Int64) -> [String] {
        var keys: [Key] = []
        var outputs: [PlannedOutput] = []
        for rule in plan.rules {
            for output in rule.outputs {
                if output.routed {
                    // No UDP socket: the kernel would put the interface's address where the
                    // sender's must stay (the supervisor refuses proxies with --egress udp).
                    let packet = Key(interface: output.interface, ttl: 0, multicast: true, kind: .packet)
                    if mode == .packet && !keys.contains(packet) { keys.append(packet) }
                    outputs.append(PlannedOutput(key: packet, destination: output.destination,
                                                 address: Self.socketAddress(output.destination, port: 0), ttl: 0, routed: true))
                    continue
                }
                let multicast = output.destination.isMulticast
                let key = Key(interface: output.interface, ttl: output.ttl, multicast: multicast, family: output.family)
                if !keys.contains(key) { keys.append(key) }
                if mode == .packet && multicast {
                    // One packet socket per interface carries both families (the frame says which).
                    let packet = Key(interface: output.interface, ttl: 0, multicast: true, kind: .packet)
                    if !keys.contains(packet) { keys.append(packet) }
                }
                outputs.append(PlannedOutput(key: key, destination: output.destination,
                                             address: Self.socketAddress(output.destination, port: output.port), ttl: output.ttl))
            }
        }

        var problems: [String] = []
        let interfaces = Set(keys.map(\.interface))
        links = links.filter { interfaces.contains($0.key) }
        for interface in interfaces.sorted() where links[interface] == nil {
            problems += readLink(interface, families: Self.multicastFamilies(outputs, on: interface),
                                 routed: outputs.contains { $0.routed && $0.key.interface == interface })
        }
        var kept: [Socket] = []
        for socket in sockets {
            if keys.contains(socket.key) { kept.append(socket) } else if socket.fd >= 0 { close(socket.fd) }
        }
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
        outputAddressLength = .allocate(capacity: capacity)
        outputDestination = .allocate(capacity: capacity)
        outputTTL = .allocate(capacity: capacity)
        outputRouted = .allocate(capacity: capacity)
        outputRank = .allocate(capacity: capacity)
        outputPacketSocket = .allocate(capacity: capacity)
        outputPacketRank = .allocate(capacity: capacity)
        outputPayloadLimit = .allocate(capacity: capacity)
        outputLinkAddress = .allocate(capacity: capacity)
        outputTemplate = .allocate(byteCount: capacity * EgressFrame.templateBytes, alignment: 16)
        for (index, output) in outputs.enumerated() {
            outputSocket[index] = Int32(sockets.firstIndex { $0.key == output.key } ?? -1)
            outputRouted[index] = output.routed
            outputAddress[index] = output.address
            outputAddressLength[index] = socklen_t(output.destination.family == .ipv4
                ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
            outputDestination[index] = output.destination
            outputTTL[index] = output.ttl
        }
        var rank: Int32 = 0
        for socket in sockets.indices {
            for index in outputs.indices where outputSocket[index] == Int32(socket) && !output(index, isRoutedIn: outputs) {
                outputRank[index] = rank
                rank += 1
            }
        }
        outputCount = outputs.count
        applySegmentation()
        rebuildPacketOutputs()
        nextRetry = now + Self.retryIntervalMilliseconds
        nextRefresh = now + Self.refreshIntervalMilliseconds
        return problems
    }

    /// Chooses, per multicast output, packet egress (its interface's decision is `.packet` and
    /// its packet socket is open) or UDP, and writes the header templates (`EgressFrame`).
    /// Called after any change of a packet socket or a link; the transmit queue is empty then
    /// (it is flushed every batch).
    private func rebuildPacketOutputs() {
        var rank = Int32(outputCount)
        for index in 0..<outputCount {
            outputPacketSocket[index] = -1
            outputPacketRank[index] = -1
            outputPayloadLimit[index] = 0
        }
        for socket in sockets.indices where sockets[socket].key.kind == .packet {
            let interface = sockets[socket].key.interface
            guard sockets[socket].fd >= 0, let link = links[interface], link.egress.anyPacketPath,
                  let facts = link.facts, let mac = facts.mac,
                  facts.index == sockets[socket].boundIndex else { continue }
            for index in 0..<outputCount {
                let output = planned[index]
                if output.routed {
                    guard output.key.interface == interface, link.egress.path(for: output.destination.family) == .packet
                    else { continue }
                    // Routed frames carry the received IP header: the limit is the IP MTU.
                    bindPacketOutput(index, socket: socket, rank: &rank, family: output.destination.family,
                                     facts: facts, payloadLimit: Int32(facts.mtu))
                    EgressFrame.writeRoutedTemplate(outputTemplate + index * EgressFrame.templateBytes, sourceMAC: mac)
                    continue
                }
                // No address of the output's family there: the UDP socket reports what the
                // kernel says (EADDRNOTAVAIL, ENETUNREACH) instead of frames with no source.
                guard output.key.multicast, output.key.interface == interface,
                      link.egress.path(for: output.destination.family) == .packet,
                      let source = facts.source(for: output.destination) else { continue }
                bindPacketOutput(index, socket: socket, rank: &rank, family: output.destination.family,
                                 facts: facts, payloadLimit: Int32(facts.payloadLimit(for: output.destination.family)))
                EgressFrame.writeTemplate(
                    outputTemplate + index * EgressFrame.templateBytes, sourceMAC: mac, source: source,
                    destination: output.destination,
                    destinationPort: UInt16(bigEndian: output.address.sin6_port), ttl: output.ttl)
            }
        }
        rankCount = Int(rank)
    }

    /// Output `index` sends through packet socket `socket` (the next transmit rank), up to
    /// `payloadLimit` bytes, to the link address of `facts`' interface for `family`.
    private func bindPacketOutput(_ index: Int, socket: Int, rank: inout Int32, family: AddressFamily,
                                  facts: InterfaceFacts, payloadLimit: Int32) {
        outputPacketSocket[index] = Int32(socket)
        outputPacketRank[index] = rank
        rank += 1
        outputPayloadLimit[index] = payloadLimit
        var address = sockaddr_ll()
        address.sll_family = UInt16(AF_PACKET)
        address.sll_protocol = UInt16(family == .ipv4 ? ETH_P_IP : ETH_P_IPV6).bigEndian
        address.sll_ifindex = facts.index
        address.sll_halen = 6
        outputLinkAddress[index] = address
    }

    /// Each UDP socket may use GSO when its interface's decision allows it and the kernel has
    /// not refused it on that socket.
    private func applySegmentation() {
        for index in sockets.indices where sockets[index].key.kind == .udp {
            let allowed = links[sockets[index].key.interface]?.egress.segmentation ?? false
            sockets[index].segmentation = allowed && !sockets[index].segmentationRefused
        }
    }

    /// The egress decision of every output interface, by name: what `mcrelay stats` shows.
    public var interfaceEgress: [InterfaceEgress] {
        links.keys.sorted().compactMap { links[$0]?.egress }
    }

    /// Which path each interface's multicast outputs take, for logs and tests:
    /// `(interface, "packet" | "udp: <reason>")`.
    public var packetEgressState: [(interface: String, path: String)] {
        sockets.filter { $0.key.kind == .packet }.map { socket in
            let interface = socket.key.interface
            let link = links[interface]
            let open = socket.fd >= 0 && link?.facts?.index == socket.boundIndex
            let path = link?.egress.path == .packet && open ? "packet"
                : "udp: \(link?.egress.path == .packet ? "packet socket not open" : link?.egress.pathReason ?? "not read")"
                + (link.map { link in
                    // The IPv6 decision, when it differs and IPv6 outputs are planned here.
                    guard link.egress.ipv6Path != link.egress.path,
                          Self.multicastFamilies(planned, on: interface).contains(.ipv6) else { return "" }
                    return ", IPv6 \(link.egress.ipv6Path == .packet && open ? "packet" : "udp: \(link.egress.ipv6PathReason)")"
                } ?? "")
            return (interface.rawValue, path)
        }
    }

    /// Sockets that should be open and are not (a packet socket only while its interface's
    /// decision is packet egress).
    var hasMissingSockets: Bool {
        sockets.contains { $0.fd < 0 && ($0.key.kind == .udp || links[$0.key.interface]?.egress.anyPacketPath == true) }
    }

    /// Milliseconds until the next retry of missing sockets or refresh of packet interfaces,
    /// nil when there is nothing to do.
    func retryDelay(now: Int64) -> Int64? {
        var delay: Int64?
        if hasMissingSockets { delay = max(0, nextRetry - now) }
        if !links.isEmpty { delay = min(delay ?? .max, max(0, nextRefresh - now)) }
        return delay
    }

    /// Retries opening missing sockets when due, and re-reads the output interfaces (facts and
    /// decisions); returns problems (only changed ones).
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
        if now >= nextRefresh {
            nextRefresh = now + Self.refreshIntervalMilliseconds
            for interface in links.keys.sorted() {
                let before = links[interface]?.facts
                let beforeEgress = links[interface]?.egress
                problems += readLink(interface, families: Self.multicastFamilies(planned, on: interface),
                                     routed: planned.contains { $0.routed && $0.key.interface == interface })
                if links[interface]?.facts != before { factsChanges &+= 1 }
                if links[interface]?.facts != before || links[interface]?.egress != beforeEgress { changed = true }
            }
            for index in sockets.indices where sockets[index].key.kind == .packet {
                let interface = sockets[index].key.interface
                guard let link = links[interface] else { continue }
                let wanted = link.egress.anyPacketPath
                if sockets[index].fd >= 0 && (!wanted || link.facts?.index != sockets[index].boundIndex) {
                    // Not wanted any more, or bound to an interface that was re-created.
                    close(sockets[index].fd)
                    sockets[index].fd = -1
                    changed = true
                }
                if wanted && sockets[index].fd < 0 {
                    problems += open(&sockets[index])
                    changed = true
                }
            }
        }
        if changed {
            applySegmentation()
            rebuildPacketOutputs()
        }
        return problems
    }

    /// The socket for a transmit: the one precomputed for its output handle, after checking
    /// that the handle's entry describes this very transmit (always, by construction); -1
    /// otherwise, which the queue counts as a failed send rather than risk the wrong interface.
    @inline(__always)
    public func socketIndex(for transmit: Transmit) -> Int {
        let output = Int(transmit.output.index)
        guard output < outputCount else { return -1 }
        // A routed transmit carries the datagram's own group, port and TTL - 1.
        if transmit.routed || outputRouted[output] { return transmit.routed && outputRouted[output] ? Int(outputSocket[output]) : -1 }
        // sin_port and sin6_port lie at the same offset.
        guard outputDestination[output] == transmit.destination,
              outputAddress[output].sin6_port == transmit.port.bigEndian, outputTTL[output] == transmit.ttl else { return -1 }
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
        sockets[index].segmentationRefused = true
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

    /// Opens a packet socket if its interface's decision is packet egress. A missing interface
    /// is left to the UDP socket of the same interface to report.
    private func openPacket(_ socket: inout Socket) -> [String] {
        let interface = socket.key.interface
        guard let link = links[interface], link.egress.anyPacketPath, let facts = link.facts else { return [] }
        do {
            socket.fd = try PacketEgressLink.openSocket(index: facts.index, target: socket.key.description)
            socket.boundIndex = facts.index
            socket.lastProblem = nil
            return []
        } catch {
            let text = "\(error): its multicast outputs use UDP sockets (kernel path) instead of AF_PACKET egress"
            defer { socket.lastProblem = text }
            return socket.lastProblem == text ? [] : [text]
        }
    }

    /// Routed outputs have no UDP rank (they never use a UDP socket).
    private func output(_ index: Int, isRoutedIn outputs: [PlannedOutput]) -> Bool { outputs[index].routed }

    /// Re-reads an output interface and decides its egress (`EgressPolicy`); returns a problem
    /// when its multicast outputs leave the packet path (or come back to it).
    /// The families of the multicast outputs planned on `interface` (what its path reports are about).
    static func multicastFamilies(_ outputs: [PlannedOutput], on interface: InterfaceName) -> [AddressFamily] {
        AddressFamily.allCases.filter { family in
            outputs.contains { $0.key.interface == interface && $0.key.multicast && $0.destination.family == family }
        }
    }

    /// `routed`: a proxy's downstream is planned there, whose datagrams only the packet path carries.
    private func readLink(_ interface: InterfaceName, families: [AddressFamily], routed: Bool = false) -> [String] {
        if probe < 0 { probe = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var facts: InterfaceFacts?
        var missing = false
        var problems: [String] = []
        switch InterfaceFactsReader.read(interface, probe: probe) {
        case let .success(read): facts = read
        case .failure(.missing): missing = true
        case let .failure(failure): problems.append("output interface \(interface): \(failure)")
        }
        let egress = EgressPolicy.decide(interface, facts: facts, mode: mode, segmentation: segmentationSetting)
        var link = links[interface] ?? Link(facts: nil, egress: egress)
        link.facts = facts
        link.egress = egress
        // Only a fallback from the packet path, and a recovery from a reported one, are news; a
        // missing interface is reported by its UDP socket.
        for family in families where mode == .packet && !missing {
            let path = egress.path(for: family), reason = egress.pathReason(for: family)
            guard link.reportedPath[family] != path || (path == .udp && link.reportedReason[family] != reason) else { continue }
            let outputs = family == .ipv4 ? "multicast outputs" : "IPv6 multicast outputs"
            if path == .udp {
                problems.append("output interface \(interface): \(reason): its \(outputs) use UDP sockets "
                                + "(kernel path) instead of AF_PACKET egress"
                                + (routed ? "; a proxy's datagrams cannot keep their sender's address there and are counted as send errors" : ""))
            } else if link.reportedPath[family] == .udp {
                problems.append("output interface \(interface): \(outputs) use AF_PACKET egress again")
            }
            link.reportedPath[family] = path
            link.reportedReason[family] = reason
        }
        links[interface] = link
        return problems
    }

    /// The `sockaddr_in` (in the first bytes) or `sockaddr_in6` of a destination.
    static func socketAddress(_ destination: IPAddress, port: UInt16) -> sockaddr_in6 {
        var storage = sockaddr_in6()
        switch destination {
        case let .v4(address):
            withUnsafeMutableBytes(of: &storage) { raw in
                var v4 = sockaddr_in()
                v4.sin_family = sa_family_t(AF_INET)
                v4.sin_port = port.bigEndian
                v4.sin_addr.s_addr = address.value.bigEndian
                raw.storeBytes(of: v4, as: sockaddr_in.self)
            }
        case let .v6(address):
            storage.sin6_family = sa_family_t(AF_INET6)
            storage.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage.sin6_addr) { raw in
                for (offset, byte) in address.bytes.enumerated() { raw[offset] = byte }
            }
        }
        return storage
    }

    static func makeSocket(_ key: Key) throws(DataPlaneSystemError) -> (fd: Int32, port: UInt16) {
        let target = key.description
        let index = Int32(bitPattern: if_nametoindex(key.interface.rawValue))
        guard index > 0 else { throw .last("if_nametoindex", target) }
        let v6 = key.family == .ipv6
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .last(v6 ? "socket(AF_INET6, SOCK_DGRAM)" : "socket(AF_INET, SOCK_DGRAM)", target) }
        do throws(DataPlaneSystemError) {
            let ip = Int32(IPPROTO_IP), ip6 = Int32(IPPROTO_IPV6)
            if v6 { try DataPlaneSocketOption.set(fd, ip6, IPV6_V6ONLY, 1, "IPV6_V6ONLY", target) }
            switch (key.multicast, v6) {
            case (true, false):
                var request = ip_mreqn()
                request.imr_ifindex = index
                guard setsockopt(fd, ip, IP_MULTICAST_IF, &request, socklen_t(MemoryLayout<ip_mreqn>.size)) == 0 else {
                    throw .last("setsockopt(IP_MULTICAST_IF)", target)
                }
                try DataPlaneSocketOption.set(fd, ip, IP_MULTICAST_TTL, Int32(key.ttl), "IP_MULTICAST_TTL", target)
                try DataPlaneSocketOption.set(fd, ip, IP_MULTICAST_LOOP, 0, "IP_MULTICAST_LOOP", target)
            case (true, true):
                try DataPlaneSocketOption.set(fd, ip6, IPV6_MULTICAST_IF, index, "IPV6_MULTICAST_IF", target)
                try DataPlaneSocketOption.set(fd, ip6, IPV6_MULTICAST_HOPS, Int32(key.ttl), "IPV6_MULTICAST_HOPS", target)
                try DataPlaneSocketOption.set(fd, ip6, IPV6_MULTICAST_LOOP, 0, "IPV6_MULTICAST_LOOP", target)
            case (false, false):
                try DataPlaneSocketOption.set(fd, ip, IP_TTL, Int32(key.ttl), "IP_TTL", target)
            case (false, true):
                try DataPlaneSocketOption.set(fd, ip6, IPV6_UNICAST_HOPS, Int32(key.ttl), "IPV6_UNICAST_HOPS", target)
            }
            // Pins unicast to the interface; for IPv6 also multicast, whose link-local
            // destinations and sources need the interface as their zone.
            if !key.multicast || v6 {
                let name = key.interface.rawValue
                let bound = name.withCString { setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, $0, socklen_t(name.utf8.count)) }
                guard bound == 0 else { throw .last("setsockopt(SO_BINDTODEVICE)", target) }
            }
            if v6 {
                try DataPlaneSocketOption.set(fd, ip6, CLN_IPV6_MULTICAST_ALL, 0, "IPV6_MULTICAST_ALL", target)
            } else {
                try DataPlaneSocketOption.set(fd, ip, CLN_IP_MULTICAST_ALL, 0, "IP_MULTICAST_ALL", target)
            }
            DataPlaneSocketOption.setBuffer(fd, receive: false, bytes: sendBufferBytes)
            var small: Int32 = 4096
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            // Bind the ephemeral port now (the first send would), so packet egress can use it.
            // A sockaddr_in6 holds either family's address (sin_port and sin6_port coincide).
            var local = sockaddr_in6()
            local.sin6_family = sa_family_t(v6 ? AF_INET6 : AF_INET)
            var length = socklen_t(v6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
                }
            }
            guard bound else { throw .last(v6 ? "bind([::]:0)" : "bind(0.0.0.0:0)", target) }
            return (fd, UInt16(bigEndian: local.sin6_port))
        } catch {
            close(fd)
            throw error
        }
    }
}

extension EgressSocketPool {
    /// `interface` just became usable (or was re-created): retry missing sockets and re-read
    /// packet egress's interfaces on the next `retryMissing`, not at their timers.
    func linkUp(_ interface: InterfaceName, now: Int64) {
        guard sockets.contains(where: { $0.key.interface == interface }) else { return }
        nextRetry = min(nextRetry, now)
        nextRefresh = min(nextRefresh, now)
    }

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
