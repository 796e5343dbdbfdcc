/// The kernel's answer to "which threads do the receive work of this device": generic netlink,
/// family `netdev`, command napi-get dumped for one interface index (kernel 6.9 and later;
/// Documentation/netlink/specs/netdev.yaml). The daemon asks after it made an input's NAPI
/// threaded, to put those threads below its workers (`InputNAPIThreadPriority` in LinuxIO).
///
/// The bytes are built and read here, with no socket, so that a fuzzer can feed the reader
/// anything: a reply the reader does not understand is a `Problem` with a message, never a trap,
/// and never a pid that was not in a well-formed record of the asked device. Netlink is in host
/// byte order, little-endian on every platform mcrelay builds for (x86-64, arm64).
public enum NAPIThreadDump {
    public struct Problem: Error, Equatable, Sendable {
        public var message: String
        init(_ message: String) { self.message = message }
    }

    /// What one datagram of the dump said.
    public struct Part: Equatable, Sendable {
        /// Threads of the asked device, in the kernel's order.
        public var pids: [Int32] = []
        /// NLMSG_DONE seen: the dump is over.
        public var done = false
        /// NLMSG_ERROR's code (negative errno, -4095 through -1), if the kernel refused:
        /// -EOPNOTSUPP or -EINVAL on a kernel without napi-get, -ENOENT for an unknown family.
        public var error: Int32?
        public init(pids: [Int32] = [], done: Bool = false, error: Int32? = nil) {
            self.pids = pids
            self.done = done
            self.error = error
        }
    }

    // netlink and generic netlink constants (linux/netlink.h, linux/genetlink.h)
    static let headerLength = 16, genlHeaderLength = 4
    static let error: UInt16 = 2, done: UInt16 = 3
    static let request: UInt16 = 0x1, dump: UInt16 = 0x300  // NLM_F_REQUEST, NLM_F_ROOT | NLM_F_MATCH
    static let controlFamily: UInt16 = 0x10                  // GENL_ID_CTRL
    static let getFamily: UInt8 = 3, familyIDAttribute: UInt16 = 1, familyNameAttribute: UInt16 = 2
    // netdev family (include/uapi/linux/netdev.h): NETDEV_CMD_NAPI_GET, NETDEV_A_NAPI_*
    static let napiGet: UInt8 = 11
    public static let ifindexAttribute: UInt16 = 1, pidAttribute: UInt16 = 4
    /// Far more NAPI instances than a device has queues; a longer answer is not believed.
    public static let maximumThreads = 1024

    /// CTRL_CMD_GETFAMILY for "netdev".
    public static func familyRequest(sequence: UInt32) -> [UInt8] {
        message(type: controlFamily, flags: request, sequence: sequence, command: getFamily,
                attributes: [(familyNameAttribute, Array("netdev".utf8) + [0])])
    }

    /// napi-get, dumped for the device `ifindex` (kernels that ignore the filter list every
    /// device's; `parseDump` keeps the asked one's).
    public static func dumpRequest(family: UInt16, ifindex: UInt32, sequence: UInt32) -> [UInt8] {
        message(type: family, flags: request | dump, sequence: sequence, command: napiGet,
                attributes: [(ifindexAttribute, le32(ifindex))])
    }

    /// The family id in the answer to `familyRequest`.
    public static func familyID(_ bytes: some Collection<UInt8>) -> Result<UInt16, Problem> {
        let bytes = Array(bytes)
        var found: UInt16?
        let walked = walk(bytes) { type, body in
            if type == error {
                let code = body.count >= 4 ? Int32(bitPattern: u32(body, 0)) : 0
                if code == 0 { return .failure(Problem("the kernel acknowledged without an answer")) }
                guard let errno = errnoValue(code) else { return .failure(Problem("an error message with code \(code), not a negative errno")) }
                return .failure(Problem("the kernel refused: error \(errno)"))
            }
            guard body.count >= genlHeaderLength else { return .failure(Problem("a message too short for its generic netlink header")) }
            return attributes(body.dropFirst(genlHeaderLength)) { attribute, value in
                if attribute == familyIDAttribute {
                    guard value.count >= 2 else { return .failure(Problem("the family id attribute has \(value.count) bytes, not 2")) }
                    found = UInt16(value[value.startIndex]) | UInt16(value[value.startIndex + 1]) << 8
                }
                return .success(())
            }
        }
        if case let .failure(problem) = walked { return .failure(problem) }
        guard let found, found != 0 else { return .failure(Problem("the answer names no family id")) }
        return .success(found)
    }

    /// One datagram of the napi-get dump: the threads of `ifindex` in it, and whether it ended
    /// the dump (or the kernel refused). Messages of other types than `family`, error and done
    /// are skipped; records of other devices, or without a pid (NAPI not threaded), are too.
    public static func parseDump(_ bytes: some Collection<UInt8>, family: UInt16, ifindex: UInt32) -> Result<Part, Problem> {
        let bytes = Array(bytes)
        var part = Part()
        let walked = walk(bytes) { type, body in
            if part.done || part.error != nil { return .success(()) }  // nothing after the end counts
            switch type {
            case done:
                part.done = true
                return .success(())
            case error:
                guard body.count >= 4 else { return .failure(Problem("an error message of \(body.count) bytes")) }
                let code = Int32(bitPattern: u32(body, 0))
                if code == 0 { part.done = true; return .success(()) }
                guard errnoValue(code) != nil else { return .failure(Problem("an error message with code \(code), not a negative errno")) }
                part.error = code
                return .success(())
            case family:
                guard body.count >= genlHeaderLength else { return .failure(Problem("a message too short for its generic netlink header")) }
                var device: UInt32?, pid: UInt32?
                let read = attributes(body.dropFirst(genlHeaderLength)) { attribute, value in
                    guard attribute == ifindexAttribute || attribute == pidAttribute else { return .success(()) }
                    guard value.count == 4 else { return .failure(Problem("attribute \(attribute) has \(value.count) bytes, not 4")) }
                    if attribute == ifindexAttribute { device = u32(value, 0) } else { pid = u32(value, 0) }
                    return .success(())
                }
                if case let .failure(problem) = read { return .failure(problem) }
                guard device == ifindex, let pid, pid > 0, pid <= UInt32(Int32.max) else { return .success(()) }
                guard part.pids.count < maximumThreads else { return .failure(Problem("more than \(maximumThreads) threads for one device")) }
                part.pids.append(Int32(pid))
                return .success(())
            default:
                return .success(())
            }
        }
        if case let .failure(problem) = walked { return .failure(problem) }
        return .success(part)
    }

    /// One napi-get record, as the kernel writes it (for tests and the fuzzer's seeds).
    public static func record(family: UInt16, ifindex: UInt32, napiID: UInt32, pid: UInt32?, sequence: UInt32) -> [UInt8] {
        var attributes: [(UInt16, [UInt8])] = [(ifindexAttribute, le32(ifindex)), (2, le32(napiID))]
        if let pid { attributes.append((pidAttribute, le32(pid))) }
        return message(type: family, flags: 0x2 /* NLM_F_MULTI */, sequence: sequence, command: napiGet, attributes: attributes)
    }

    /// NLMSG_DONE (for tests and seeds).
    public static func doneMessage(sequence: UInt32) -> [UInt8] {
        var bytes = header(length: headerLength + 4, type: done, flags: 0x2, sequence: sequence)
        bytes += le32(0)
        return bytes
    }

    // -- bytes -----------------------------------------------------------------------------

    static func message(type: UInt16, flags: UInt16, sequence: UInt32, command: UInt8,
                        attributes: [(UInt16, [UInt8])]) -> [UInt8] {
        var body: [UInt8] = [command, 1, 0, 0]  // genlmsghdr: cmd, version 1, reserved
        for (type, value) in attributes {
            body += le16(UInt16(4 + value.count)) + le16(type) + value
            body += [UInt8](repeating: 0, count: (4 - value.count % 4) % 4)
        }
        return header(length: headerLength + body.count, type: type, flags: flags, sequence: sequence) + body
    }

    static func header(length: Int, type: UInt16, flags: UInt16, sequence: UInt32) -> [UInt8] {
        le32(UInt32(length)) + le16(type) + le16(flags) + le32(sequence) + le32(0)
    }

    /// Calls `each` with every message's type and body; a length that does not fit is a problem.
    static func walk(_ bytes: [UInt8], _ each: (UInt16, ArraySlice<UInt8>) -> Result<Void, Problem>) -> Result<Void, Problem> {
        var at = 0
        while at < bytes.count {
            guard bytes.count - at >= headerLength else { return .failure(Problem("\(bytes.count - at) bytes left at offset \(at), less than a netlink header")) }
            let length = Int(u32(bytes[...], at))
            guard length >= headerLength, length <= bytes.count - at else {
                return .failure(Problem("a netlink message at offset \(at) says \(length) bytes; \(bytes.count - at) are left"))
            }
            let type = UInt16(bytes[at + 4]) | UInt16(bytes[at + 5]) << 8
            if case let .failure(problem) = each(type, bytes[(at + headerLength)..<(at + length)]) { return .failure(problem) }
            at += (length + 3) & ~3
        }
        return .success(())
    }

    /// Calls `each` with every attribute's type (flags masked off) and value.
    static func attributes(_ bytes: ArraySlice<UInt8>, _ each: (UInt16, ArraySlice<UInt8>) -> Result<Void, Problem>) -> Result<Void, Problem> {
        var at = bytes.startIndex
        while at < bytes.endIndex {
            guard bytes.endIndex - at >= 4 else { return .failure(Problem("\(bytes.endIndex - at) bytes left, less than an attribute header")) }
            let length = Int(UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8)
            let type = (UInt16(bytes[at + 2]) | UInt16(bytes[at + 3]) << 8) & 0x3fff  // NLA_TYPE_MASK
            guard length >= 4, length <= bytes.endIndex - at else {
                return .failure(Problem("an attribute says \(length) bytes; \(bytes.endIndex - at) are left"))
            }
            if case let .failure(problem) = each(type, bytes[(at + 4)..<(at + length)]) { return .failure(problem) }
            at += min((length + 3) & ~3, bytes.endIndex - at)
        }
        return .success(())
    }

    /// The errno a netlink error code stands for, if it is one: the kernel sends -errno, and
    /// errnos are 1 through 4095 (MAX_ERRNO). Anything else (Int32.min among them, whose
    /// negation overflows) is a malformed message, not a refusal.
    static func errnoValue(_ code: Int32) -> Int32? {
        (-4095 ... -1).contains(code) ? -code : nil
    }

    static func u32(_ bytes: ArraySlice<UInt8>, _ offset: Int) -> UInt32 {
        let at = bytes.startIndex + offset
        return UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }

    static func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8)] }
    static func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8((value >> (8 * $0)) & 0xff) } }
}
