import CLinuxNet
import Glibc
import RelayCore

/// The syscall edge of the IGMP/MLD querier and listener tracking: one AF_PACKET socket per
/// interface that receives every IGMP and MLD message arriving there, as whole Ethernet frames,
/// and sends the router's own frames (queries, built complete by the caller).
///
/// Options, in the order they are set:
/// - `SOCK_RAW` (frames start at the Ethernet header), created with protocol 0 so nothing is
///   queued before the filter is on and `bind` narrows the socket to one interface;
/// - `PACKET_IGNORE_OUTGOING`: frames this host transmits (the relay's own queries, the host's
///   own reports) never come back;
/// - a classic BPF filter (`cln_attach_listener_filter`): IPv4 protocol 2 (IGMP, any IHL) and
///   IPv6 ICMPv6 type 130/131/132/143 (MLD), directly or after a hop-by-hop header. Frames the
///   kernel received with a VLAN tag are dropped unless `vlan == .includeTagged` (a tagged
///   frame belongs to the VLAN's own interface, where a tap of its own sees it untagged);
/// - `PACKET_AUXDATA`: each frame's original length and VLAN tag come with it;
/// - a receive buffer of `receiveBufferBytes` (report bursts after a general query);
/// - non-blocking;
/// - `bind` to the interface index with ETH_P_ALL;
/// - `PACKET_ADD_MEMBERSHIP` `PACKET_MR_ALLMULTI`: a NIC filters multicast by MAC, and
///   IGMPv2/MLDv1 reports go to the group's own address; with all-multicast on it delivers
///   them all (a veth passes all multicast anyway). The kernel counts the membership per socket
///   and drops it when the socket closes (also when the process dies), so nothing leaks.
///
/// One thread owns a tap (receive, send, reopen, close are not synchronised). Frames returned by
/// `receive` stay valid until the next receive into the same buffer or batch. The interface name
/// is resolved, and a reopened socket created, in the network namespace of the calling thread
/// (the daemon's: it lives in one); receive and send work from any thread.
public final class ListenerTap {
    /// Which frames the kernel filter keeps with respect to VLAN tags.
    public enum VLANPolicy: Sendable, Equatable {
        /// Only frames that arrived untagged on this interface (the default).
        case untaggedOnly
        /// Also frames that arrived with an 802.1Q/802.1ad tag (the tag is in `vlanTag`).
        case includeTagged
    }

    /// One received frame. `bytes` points into the caller's buffer or the batch.
    public struct Frame {
        /// The frame from its Ethernet header on (at most the buffer's size).
        public var bytes: UnsafeRawBufferPointer
        /// The frame's length on the wire (larger than `bytes.count` when truncated).
        public var length: Int
        /// The interface it arrived on (`sll_ifindex`).
        public var interfaceIndex: Int32
        /// CLOCK_MONOTONIC when the read returned (one reading per system call; the same clock as
        /// `MonotonicClock.now()`).
        public var timestamp: Instant
        /// The VLAN tag control information (priority, DEI, VLAN id) if the kernel received the
        /// frame tagged; nil if untagged. Only `.includeTagged` taps ever see a tagged frame.
        public var vlanTag: UInt16?
        /// `sll_pkttype`: PACKET_MULTICAST, PACKET_HOST, PACKET_BROADCAST, PACKET_OTHERHOST.
        public var packetType: UInt8

        public var isTruncated: Bool { bytes.count < length }
        /// The 12-bit VLAN id of `vlanTag`.
        public var vlanID: UInt16? { vlanTag.map { $0 & 0x0fff } }
    }

    public static let receiveBufferBytes: Int32 = 1 << 20

    public let interface: InterfaceName
    public let vlan: VLANPolicy
    public let receiveBufferBytes: Int32
    /// The socket (-1 after `close`).
    public private(set) var fd: Int32
    /// The interface index the socket is bound to.
    public private(set) var interfaceIndex: Int32

    // One recvmsg's name and control buffers, for `receive(into:)` (no allocation per frame).
    private let single: MessageSlots

    /// Opens the tap on `interface` (which must exist; it may be down: the socket then receives
    /// once it comes up).
    public init(interface: InterfaceName, vlan: VLANPolicy = .untaggedOnly,
                receiveBufferBytes: Int32 = ListenerTap.receiveBufferBytes) throws(DataPlaneSystemError) {
        self.interface = interface
        self.vlan = vlan
        self.receiveBufferBytes = receiveBufferBytes
        single = MessageSlots(count: 1)
        (fd, interfaceIndex) = try Self.openSocket(interface, vlan: vlan, receiveBufferBytes: receiveBufferBytes)
    }

    deinit { close() }

    public func close() {
        guard fd >= 0 else { return }
        _ = Glibc.close(fd)
        fd = -1
    }

    private static func target(_ interface: InterfaceName) -> String { "listener tap on \(interface)" }

    private static func openSocket(_ interface: InterfaceName, vlan: VLANPolicy,
                                   receiveBufferBytes: Int32) throws(DataPlaneSystemError) -> (Int32, Int32) {
        let target = target(interface)
        let index = Int32(bitPattern: if_nametoindex(interface.rawValue))
        guard index > 0 else { throw .last("if_nametoindex", target) }
        let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .last("socket(AF_PACKET, SOCK_RAW)", target) }
        do throws(DataPlaneSystemError) {
            try DataPlaneSocketOption.set(fd, CLN_SOL_PACKET, CLN_PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING", target)
            let attached = cln_attach_listener_filter(fd, vlan == .includeTagged ? 1 : 0)
            guard attached == 0 else { throw DataPlaneSystemError("setsockopt(SO_ATTACH_FILTER, IGMP and MLD)", target, code: -attached) }
            try DataPlaneSocketOption.set(fd, CLN_SOL_PACKET, CLN_PACKET_AUXDATA, 1, "PACKET_AUXDATA", target)
            DataPlaneSocketOption.setBuffer(fd, receive: true, bytes: receiveBufferBytes)
            try DataPlaneSocketOption.setNonBlocking(fd, target)

            try DataPlaneSocketOption.bindPacketSocket(fd, ifindex: index, target)
            let joined = cln_packet_allmulti(fd, index, 1)
            guard joined == 0 else { throw DataPlaneSystemError("setsockopt(PACKET_ADD_MEMBERSHIP, PACKET_MR_ALLMULTI)", target, code: -joined) }
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        return (fd, index)
    }

    // MARK: Interface re-creation

    /// The index registered under the tap's interface name now, or 0 if there is none.
    public func currentInterfaceIndex() -> Int32 { Int32(bitPattern: if_nametoindex(interface.rawValue)) }

    /// What `reopenIfReplaced` found.
    public enum ReopenOutcome: Equatable, Sendable {
        /// Same index as the socket's: nothing done.
        case unchanged
        /// The interface was re-created (new index): a new socket is open on it.
        case reopened(oldIndex: Int32, newIndex: Int32)
        /// No interface of that name exists now; the old socket is kept (it receives nothing).
        case missing
    }

    /// Call when the interface may have been deleted and re-created (a netlink RTM_NEWLINK for
    /// the name, or periodically): a socket bound to a deleted interface's index never receives
    /// again, even when an interface of the same name comes back. Opens the new socket before
    /// closing the old one, so on failure the old one is kept and the error thrown.
    /// A link that only went down and up keeps its index and needs nothing: the kernel re-attaches
    /// a bound packet socket when the interface comes up.
    @discardableResult
    public func reopenIfReplaced() throws(DataPlaneSystemError) -> ReopenOutcome {
        let current = currentInterfaceIndex()
        guard current > 0 else { return .missing }
        guard current != interfaceIndex || fd < 0 else { return .unchanged }
        let old = interfaceIndex
        try reopen()
        return .reopened(oldIndex: old, newIndex: interfaceIndex)
    }

    /// Opens a new socket on whatever interface has the tap's name now and closes the old one
    /// (after the new one is open; on failure the old one stays and the error is thrown).
    public func reopen() throws(DataPlaneSystemError) {
        let (newFD, newIndex) = try Self.openSocket(interface, vlan: vlan, receiveBufferBytes: receiveBufferBytes)
        close()
        fd = newFD
        interfaceIndex = newIndex
    }

    // MARK: Receiving

    /// Reads one frame into `buffer`, or returns nil when none is queued (never blocks).
    /// Throws on any other failure: ENETDOWN once after the interface went down or was deleted
    /// (see `reopenIfReplaced`), EBADF after `close`.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(DataPlaneSystemError) -> Frame? {
        single.prepare(0, buffer: UnsafeMutableRawPointer(buffer.baseAddress), capacity: buffer.count)
        let count = retryingInterrupts { recvmsg(fd, &single.messages[0].msg_hdr, Int32(MSG_DONTWAIT)) }
        if count < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            throw .last("recvmsg", Self.target(interface))
        }
        single.messages[0].msg_len = UInt32(count)
        return single.frame(0, base: UnsafeRawPointer(buffer.baseAddress), capacity: buffer.count, timestamp: MonotonicClock.now())
    }

    /// Reads up to `batch.capacity` frames in one `recvmmsg` (never blocks); returns how many,
    /// 0 when none is queued. The frames are `batch[0..<n]`, valid until the next receive into
    /// the batch. Errors as for `receive(into:)`.
    public func receive(into batch: Batch) throws(DataPlaneSystemError) -> Int {
        for index in 0..<batch.capacity {
            batch.slots.prepare(index, buffer: batch.buffers + index * batch.frameCapacity, capacity: batch.frameCapacity)
        }
        var result: Int32
        repeat {
            result = ldp_recvmmsg(fd, batch.slots.messages, UInt32(batch.capacity), Int32(MSG_DONTWAIT))
        } while result == -EINTR
        if result < 0 {
            batch.count = 0
            if result == -EAGAIN || result == -EWOULDBLOCK { return 0 }
            throw DataPlaneSystemError("recvmmsg", Self.target(interface), code: -result)
        }
        batch.count = Int(result)
        batch.timestamp = MonotonicClock.now()
        return Int(result)
    }

    /// Preallocated buffers for `receive(into: Batch)`: `capacity` frames of up to
    /// `frameCapacity` bytes each (default 9216 + 18: a jumbo frame with its Ethernet header and
    /// a tag; IGMPv3 and MLDv2 reports fill the MTU).
    public final class Batch {
        public let capacity: Int
        public let frameCapacity: Int
        public fileprivate(set) var count = 0
        fileprivate var timestamp = Instant.zero
        fileprivate let buffers: UnsafeMutableRawPointer
        fileprivate let slots: MessageSlots

        public init(capacity: Int = 16, frameCapacity: Int = 9216 + 18) {
            precondition(capacity > 0 && frameCapacity > 0)
            self.capacity = capacity
            self.frameCapacity = frameCapacity
            buffers = .allocate(byteCount: capacity * frameCapacity, alignment: 64)
            slots = MessageSlots(count: capacity)
        }

        deinit { buffers.deallocate() }

        /// Frame `index` of the last receive (index < count).
        public subscript(index: Int) -> Frame {
            precondition(index >= 0 && index < count, "frame \(index) of \(count)")
            return slots.frame(index, base: UnsafeRawPointer(buffers + index * frameCapacity), capacity: frameCapacity,
                               timestamp: timestamp)
        }
    }

    // MARK: Sending

    /// Sends one complete frame (Ethernet header first, as built by the caller) out of the
    /// interface: `sendto` with a `sockaddr_ll` naming the interface index and the frame's
    /// EtherType. The kernel sends it as is (no padding: a NIC pads short frames to 60 bytes,
    /// a veth does not). Throws EAGAIN when the socket's send buffer is full (non-blocking),
    /// ENOBUFS when the device or qdisc dropped the frame (a veth does when its peer's per-CPU
    /// backlog is full: seen in the live tests on a loaded machine; the frame is lost, sending it
    /// again is the caller's choice), ENETDOWN, ENXIO (the index is gone), EMSGSIZE (longer than
    /// the MTU allows).
    public func send(frame: UnsafeRawBufferPointer) throws(DataPlaneSystemError) {
        guard frame.count >= Int(CLN_ETH_HLEN), let base = frame.baseAddress else {
            throw DataPlaneSystemError("sendto (frame of \(frame.count) bytes, shorter than an Ethernet header)",
                                       Self.target(interface), code: EINVAL)
        }
        var address = sockaddr_ll()
        address.sll_family = UInt16(AF_PACKET)
        // The EtherType as it stands in the frame: network byte order, as sll_protocol wants it.
        address.sll_protocol = base.loadUnaligned(fromByteOffset: 12, as: UInt16.self)
        address.sll_ifindex = interfaceIndex
        address.sll_halen = 6
        withUnsafeMutableBytes(of: &address.sll_addr) { $0.copyMemory(from: UnsafeRawBufferPointer(start: base, count: 6)) }
        let sent = retryingInterrupts {
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, base, frame.count, Int32(MSG_DONTWAIT), $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                }
            }
        }
        guard sent == frame.count else {
            if sent < 0 { throw .last("sendto", Self.target(interface)) }
            throw DataPlaneSystemError("sendto (sent \(sent) of \(frame.count) bytes)", Self.target(interface), code: EMSGSIZE)
        }
    }

    public func send(frame: [UInt8]) throws(DataPlaneSystemError) {
        let result: Result<Void, DataPlaneSystemError> = frame.withUnsafeBytes { bytes in
            do throws(DataPlaneSystemError) { try send(frame: bytes); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    // MARK: Statistics

    /// Frames the kernel dropped for this socket (receive queue full) since the last call
    /// (PACKET_STATISTICS resets on read); nil if the kernel would not say.
    public func takeKernelDrops() -> UInt64? {
        var statistics = tpacket_stats()
        var length = socklen_t(MemoryLayout<tpacket_stats>.size)
        guard getsockopt(fd, CLN_SOL_PACKET, CLN_PACKET_STATISTICS, &statistics, &length) == 0 else { return nil }
        return UInt64(statistics.tp_drops)
    }
}

/// `count` message headers with a sockaddr_ll and a PACKET_AUXDATA control buffer each,
/// allocated once.
final class MessageSlots {
    let count: Int
    let messages: UnsafeMutablePointer<ldp_mmsghdr>
    private let iovecs: UnsafeMutablePointer<iovec>
    private let names: UnsafeMutablePointer<sockaddr_ll>
    private let controls: UnsafeMutableRawPointer
    private let controlSize: Int

    init(count: Int) {
        self.count = count
        controlSize = cln_cmsg_space(MemoryLayout<tpacket_auxdata>.size)
        messages = .allocate(capacity: count)
        messages.initialize(repeating: ldp_mmsghdr(), count: count)
        iovecs = .allocate(capacity: count)
        iovecs.initialize(repeating: iovec(), count: count)
        names = .allocate(capacity: count)
        names.initialize(repeating: sockaddr_ll(), count: count)
        controls = .allocate(byteCount: count * controlSize, alignment: 16)
        for index in 0..<count {
            messages[index].msg_hdr.msg_iov = iovecs + index
            messages[index].msg_hdr.msg_iovlen = 1
            messages[index].msg_hdr.msg_name = UnsafeMutableRawPointer(names + index)
            messages[index].msg_hdr.msg_control = controls + index * controlSize
        }
    }

    deinit {
        messages.deallocate()
        iovecs.deallocate()
        names.deallocate()
        controls.deallocate()
    }

    /// Resets slot `index` for a receive into `buffer` (the kernel overwrites the lengths).
    @inline(__always)
    func prepare(_ index: Int, buffer: UnsafeMutableRawPointer?, capacity: Int) {
        iovecs[index] = iovec(iov_base: buffer, iov_len: capacity)
        messages[index].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_ll>.size)
        messages[index].msg_hdr.msg_controllen = controlSize
        messages[index].msg_hdr.msg_flags = 0
        messages[index].msg_len = 0
    }

    @inline(__always)
    func frame(_ index: Int, base: UnsafeRawPointer?, capacity: Int, timestamp: Instant) -> ListenerTap.Frame {
        let received = Int(messages[index].msg_len)
        var length = received
        var vlanTag: UInt16?
        var dataLength = 0
        if let data = cln_cmsg_find(&messages[index].msg_hdr, CLN_SOL_PACKET, CLN_PACKET_AUXDATA, &dataLength),
           dataLength >= MemoryLayout<tpacket_auxdata>.size {
            let auxdata = data.loadUnaligned(as: tpacket_auxdata.self)
            length = max(received, Int(auxdata.tp_len))
            if auxdata.tp_status & UInt32(CLN_TP_STATUS_VLAN_VALID) != 0 { vlanTag = auxdata.tp_vlan_tci }
        }
        let name = names[index]
        return ListenerTap.Frame(bytes: UnsafeRawBufferPointer(start: base, count: min(received, capacity)),
                                 length: length, interfaceIndex: name.sll_ifindex, timestamp: timestamp,
                                 vlanTag: vlanTag, packetType: name.sll_pkttype)
    }
}
