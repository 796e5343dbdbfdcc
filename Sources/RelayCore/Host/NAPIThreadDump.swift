/// The kernel's answer to "which threads do the receive work of this device": generic netlink,
/// family `netdev`, command napi-get dumped for one interface index (kernel 6.9 and later;
/// Documentation/netlink/specs/netdev.yaml). The daemon asks after it made an input's NAPI
/// threaded, to put those threads below its workers (`InputNAPIThreadPriority` in LinuxIO).
///
/// The bytes are built and read here, with no socket, so that a fuzzer can feed the reader
/// anything: a reply the reader does not understand is a `Problem` with a message, never a trap,
/// and never a pid that was not in a well-formed record of the asked device (framing:
/// `NetlinkBytes`).
public enum NAPIThreadDump {
    public typealias Problem = NetlinkProblem

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
    static let genlHeaderLength = 4
    static let error = NetlinkBytes.error, done = NetlinkBytes.done, request = NetlinkBytes.request
    static let dump: UInt16 = 0x300  // NLM_F_ROOT | NLM_F_MATCH
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
                attributes: [(ifindexAttribute, NetlinkBytes.le32(ifindex))])
    }

    /// The family id in the answer to `familyRequest`.
    public static func familyID(_ bytes: some Collection<UInt8>) -> Result<UInt16, Problem> {
        let bytes = Array(bytes)
        var found: UInt16?
        let walked = NetlinkBytes.walk(bytes) { type, body in
            if type == error {
                return NetlinkBytes.errorAnswer(body).flatMap { errno in
                    .failure(Problem(errno == 0 ? "the kernel acknowledged without an answer" : "the kernel refused: error \(errno)"))
                }
            }
            guard body.count >= genlHeaderLength else { return .failure(Problem("a message too short for its generic netlink header")) }
            return NetlinkBytes.attributes(body.dropFirst(genlHeaderLength)) { attribute, value in
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
        let walked = NetlinkBytes.walk(bytes) { type, body in
            if part.done || part.error != nil { return .success(()) }  // nothing after the end counts
            switch type {
            case done:
                part.done = true
                return .success(())
            case error:
                return NetlinkBytes.errorAnswer(body).map { errno in
                    if errno == 0 { part.done = true } else { part.error = -errno }
                }
            case family:
                guard body.count >= genlHeaderLength else { return .failure(Problem("a message too short for its generic netlink header")) }
                var device: UInt32?, pid: UInt32?
                let read = NetlinkBytes.attributes(body.dropFirst(genlHeaderLength)) { attribute, value in
                    guard attribute == ifindexAttribute || attribute == pidAttribute else { return .success(()) }
                    guard value.count == 4 else { return .failure(Problem("attribute \(attribute) has \(value.count) bytes, not 4")) }
                    if attribute == ifindexAttribute { device = NetlinkBytes.u32(value, 0) } else { pid = NetlinkBytes.u32(value, 0) }
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
        var attributes: [(UInt16, [UInt8])] = [(ifindexAttribute, NetlinkBytes.le32(ifindex)), (2, NetlinkBytes.le32(napiID))]
        if let pid { attributes.append((pidAttribute, NetlinkBytes.le32(pid))) }
        return message(type: family, flags: 0x2 /* NLM_F_MULTI */, sequence: sequence, command: napiGet, attributes: attributes)
    }

    /// NLMSG_DONE (for tests and seeds).
    public static func doneMessage(sequence: UInt32) -> [UInt8] {
        var bytes = NetlinkBytes.header(length: NetlinkBytes.headerLength + 4, type: done, flags: 0x2, sequence: sequence)
        bytes += NetlinkBytes.le32(0)
        return bytes
    }

    // -- bytes -----------------------------------------------------------------------------

    static func message(type: UInt16, flags: UInt16, sequence: UInt32, command: UInt8,
                        attributes: [(UInt16, [UInt8])]) -> [UInt8] {
        var body: [UInt8] = [command, 1, 0, 0]  // genlmsghdr: cmd, version 1, reserved
        for (type, value) in attributes { body += NetlinkBytes.attribute(type, value) }
        return NetlinkBytes.header(length: NetlinkBytes.headerLength + body.count, type: type, flags: flags, sequence: sequence) + body
    }

}
