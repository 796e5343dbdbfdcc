#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayCore

/// Watches network interfaces through rtnetlink (RTMGRP_LINK) and reports, by name, when one
/// becomes usable (IFF_UP with carrier) or stops being usable (down, no carrier, deleted,
/// renamed). On start, and after the kernel reports that events were lost (ENOBUFS), it dumps
/// every link (RTM_GETLINK) and reports the differences.
///
/// "Carrier" is IFF_LOWER_UP (or IFF_RUNNING), not IFF_RUNNING alone. IFF_LOWER_UP is the
/// driver's carrier bit, in the very RTM_NEWLINK that reports IFF_UP; IFF_RUNNING is the RFC 2863
/// operstate, which the kernel's link watcher sets later, and rate-limits: a non-urgent event
/// is handled at most once a second (linkwatch_nextevent). Measured on the lab (veth, a 500 ms
/// `ip link set rin0 down; ip link set rin0 up`): IFF_UP|IFF_LOWER_UP arrived 3 ms after the
/// `up`, IFF_RUNNING 530 ms after it (one second after the `down`), while the interface had
/// been receiving since the `up` (a kernel UDP socket lost only the down time). Waiting for
/// IFF_RUNNING made the relay lose that extra half second on every input flap.
///
/// The netlink structures are read and written by offset (they are not importable from
/// Swift's Glibc module); all fields are in host byte order.
final class LinkMonitor {
    enum Change: Equatable { case up(InterfaceName), down(InterfaceName) }

    let fd: Int32
    private var links: [Int32: (name: String, usable: Bool)] = [:]
    private var dumping = false
    private var dumpSeen: Set<Int32> = []
    private var resyncWanted = false
    /// The first dump is complete: every existing link has been reported (readiness waits for it).
    private(set) var listedOnce = false
    private var sequence: UInt32 = 1

    // linux/rtnetlink.h, linux/netlink.h, linux/if.h, linux/if_link.h
    static let netlinkRoute: Int32 = 0
    static let rtmgrpLink: UInt32 = 1
    static let nlmsgError: UInt16 = 2
    static let nlmsgDone: UInt16 = 3
    static let nlmsgOverrun: UInt16 = 4
    static let rtmNewLink: UInt16 = 16
    static let rtmDelLink: UInt16 = 17
    static let rtmGetLink: UInt16 = 18
    static let nlmFRequest: UInt16 = 1
    static let nlmFDump: UInt16 = 0x300
    static let iflaIfname: UInt16 = 3
    static let iffUp: UInt32 = 0x1
    static let iffRunning: UInt32 = 0x40
    static let iffLowerUp: UInt32 = 0x10000

    init() throws(SystemError) {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                        Self.netlinkRoute)
        guard fd >= 0 else { throw .last("socket(AF_NETLINK, NETLINK_ROUTE)") }
        // struct sockaddr_nl { u16 family; u16 pad; u32 pid; u32 groups; }
        var address: (UInt16, UInt16, UInt32, UInt32) = (UInt16(AF_NETLINK), 0, 0, Self.rtmgrpLink)
        let bound = withUnsafeBytes(of: &address) { raw in
            bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard bound == 0 else {
            let error = SystemError.last("bind netlink RTMGRP_LINK")
            Descriptors.close(fd)
            throw error
        }
        var size: Int32 = 1 << 20
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, 4) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4)
        }
        self.fd = fd
        try requestDump()
    }

    func close() { Descriptors.close(fd) }

    /// Names of the interfaces that are usable now, sorted.
    var usable: [String] { links.values.filter(\.usable).map(\.name).sorted() }

    private func requestDump() throws(SystemError) {
        // nlmsghdr (16) + ifinfomsg (16), family AF_UNSPEC: every link.
        var message = [UInt8](repeating: 0, count: 32)
        Self.put32(&message, 0, 32)
        Self.put16(&message, 4, Self.rtmGetLink)
        Self.put16(&message, 6, Self.nlmFRequest | Self.nlmFDump)
        sequence &+= 1
        Self.put32(&message, 8, sequence)
        let sent = message.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == message.count else { throw .last("netlink RTM_GETLINK dump") }
        dumping = true
        dumpSeen = []
    }

    /// Reads everything pending and returns the changes, in the order they happened.
    func receive() -> [Change] {
        var changes: [Change] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == ENOBUFS { resyncWanted = true; continue }  // events were lost: re-dump
                break
            }
            if n == 0 { break }
            parse(buffer[0..<n], into: &changes)
        }
        if resyncWanted && !dumping {
            resyncWanted = false
            try? requestDump()
        }
        return changes
    }

    private func parse(_ data: ArraySlice<UInt8>, into changes: inout [Change]) {
        var offset = data.startIndex
        while offset + 16 <= data.endIndex {
            let length = Int(Self.get32(data, offset))
            guard length >= 16, offset + length <= data.endIndex else { return }
            let type = Self.get16(data, offset + 4)
            switch type {
            case Self.nlmsgDone:
                finishDump(into: &changes)
            case Self.nlmsgError, Self.nlmsgOverrun:
                if dumping { dumping = false; resyncWanted = true }
            case Self.rtmNewLink, Self.rtmDelLink:
                if length >= 32 { link(data[offset..<offset + length], deleted: type == Self.rtmDelLink, into: &changes) }
            default:
                break
            }
            offset += (length + 3) & ~3
        }
    }

    private func link(_ message: ArraySlice<UInt8>, deleted: Bool, into changes: inout [Change]) {
        let base = message.startIndex
        let index = Int32(bitPattern: Self.get32(message, base + 20))
        let flags = Self.get32(message, base + 24)
        var name: String?
        var attribute = base + 32
        while attribute + 4 <= message.endIndex {
            let attributeLength = Int(Self.get16(message, attribute))
            guard attributeLength >= 4, attribute + attributeLength <= message.endIndex else { break }
            if Self.get16(message, attribute + 2) == Self.iflaIfname {
                let bytes = message[(attribute + 4)..<(attribute + attributeLength)].prefix { $0 != 0 }
                name = String(decoding: bytes, as: UTF8.self)
            }
            attribute += (attributeLength + 3) & ~3
        }
        if dumping { dumpSeen.insert(index) }
        let previous = links[index]
        if deleted {
            links[index] = nil
            if let previous, previous.usable, let old = InterfaceName(previous.name) { changes.append(.down(old)) }
            return
        }
        let newName = name ?? previous?.name ?? ""
        let usable = Self.isUsable(flags: flags)
        links[index] = (newName, usable)
        if let previous, previous.usable, previous.name != newName || !usable, let old = InterfaceName(previous.name) {
            changes.append(.down(old))
        }
        if usable, previous?.usable != true || previous?.name != newName, let interface = InterfaceName(newName) {
            changes.append(.up(interface))
        }
    }

    /// Administratively up with carrier (see the type's comment for why IFF_LOWER_UP counts).
    static func isUsable(flags: UInt32) -> Bool {
        flags & iffUp != 0 && flags & (iffLowerUp | iffRunning) != 0
    }

    /// Links the dump did not mention are gone (their deletion event was lost).
    private func finishDump(into changes: inout [Change]) {
        guard dumping else { return }
        dumping = false
        listedOnce = true
        for index in links.keys.sorted() where !dumpSeen.contains(index) {
            if let link = links.removeValue(forKey: index), link.usable, let name = InterfaceName(link.name) {
                changes.append(.down(name))
            }
        }
        if resyncWanted {
            resyncWanted = false
            try? requestDump()
        }
    }

    private static func put16(_ bytes: inout [UInt8], _ at: Int, _ value: UInt16) {
        withUnsafeBytes(of: value) { for i in 0..<2 { bytes[at + i] = $0[i] } }
    }

    private static func put32(_ bytes: inout [UInt8], _ at: Int, _ value: UInt32) {
        withUnsafeBytes(of: value) { for i in 0..<4 { bytes[at + i] = $0[i] } }
    }

    private static func get16(_ bytes: ArraySlice<UInt8>, _ at: Int) -> UInt16 {
        UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8  // host order: little-endian here (x86-64, arm64)
    }

    private static func get32(_ bytes: ArraySlice<UInt8>, _ at: Int) -> UInt32 {
        UInt32(get16(bytes, at)) | UInt32(get16(bytes, at + 2)) << 16
    }
}
