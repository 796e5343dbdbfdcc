/// A device's own receive counters, as the kernel keeps them (rtnetlink: RTM_GETLINK for one
/// interface index, answered by one RTM_NEWLINK whose IFLA_STATS64 is `struct
/// rtnl_link_stats64`). `mcrelay stats` shows them per input: a frame the device dropped (its
/// ring full, no buffer, a backlog over netdev_max_backlog) never reached the relay, on the
/// packet path or the XDP path, so the relay's own counters cannot say it was lost.
///
/// Built and read here, with no socket, so that a fuzzer can feed the reader anything (framing:
/// `NetlinkBytes`): an answer it does not understand is a `Problem` with a message, and counters
/// come only from a well-formed record of the asked device.
public enum LinkCounters {
    public typealias Problem = NetlinkProblem

    /// The receive side of `struct rtnl_link_stats64` (include/uapi/linux/if_link.h).
    public struct Receive: Equatable, Sendable {
        public var packets: UInt64 = 0, bytes: UInt64 = 0
        /// rx_errors: bad frames (drivers add their own error counts here).
        public var errors: UInt64 = 0
        /// rx_dropped: frames the device or the kernel's receive path dropped for want of room or
        /// memory, a full backlog (netdev_max_backlog) among them.
        public var dropped: UInt64 = 0
        /// rx_over_errors: the receive ring overflowed (drivers differ in which they count).
        public var overruns: UInt64 = 0
        /// rx_fifo_errors: the NIC's FIFO overflowed.
        public var fifo: UInt64 = 0
        /// rx_missed_errors: frames the NIC had no buffer for (its ring was full), the usual
        /// sign that the host did not read the ring fast enough.
        public var missed: UInt64 = 0
        public init(packets: UInt64 = 0, bytes: UInt64 = 0, errors: UInt64 = 0, dropped: UInt64 = 0,
                    overruns: UInt64 = 0, fifo: UInt64 = 0, missed: UInt64 = 0) {
            self.packets = packets
            self.bytes = bytes
            self.errors = errors
            self.dropped = dropped
            self.overruns = overruns
            self.fifo = fifo
            self.missed = missed
        }
    }

    public enum Answer: Equatable, Sendable {
        case counters(Receive)
        /// The kernel refused with this errno (ENODEV: the device is gone).
        case refused(errno: Int32)
    }

    // linux/rtnetlink.h, linux/if_link.h
    static let newLink: UInt16 = 16, getLink: UInt16 = 18
    static let infoLength = 16  // struct ifinfomsg
    static let stats64Attribute: UInt16 = 23  // IFLA_STATS64
    /// rtnl_link_stats64 up to rx_missed_errors (16 counters); every kernel since 2.6.35 sends more.
    static let stats64MinimumLength = 16 * 8

    /// RTM_GETLINK for the device `ifindex`.
    public static func request(ifindex: Int32, sequence: UInt32) -> [UInt8] {
        NetlinkBytes.header(length: NetlinkBytes.headerLength + infoLength, type: getLink, flags: NetlinkBytes.request, sequence: sequence)
            + info(ifindex: ifindex)
    }

    /// The answer to `request`: the asked device's counters, or the kernel's refusal. A record of
    /// another device is skipped; an answer with neither is a problem.
    public static func parse(_ bytes: some Collection<UInt8>, ifindex: Int32) -> Result<Answer, Problem> {
        let bytes = Array(bytes)
        var answer: Answer?
        let walked = NetlinkBytes.walk(bytes) { type, body in
            guard answer == nil else { return .success(()) }  // the first answer counts
            switch type {
            case NetlinkBytes.error:
                // an acknowledgement (0) carries no counters
                return NetlinkBytes.errorAnswer(body).map { errno in if errno != 0 { answer = .refused(errno: errno) } }
            case newLink:
                guard body.count >= infoLength else { return .failure(Problem("a link message of \(body.count) bytes, shorter than its ifinfomsg"))}
                guard Int32(bitPattern: NetlinkBytes.u32(body, 4)) == ifindex else { return .success(()) }
                var found: Receive?
                let read = NetlinkBytes.attributes(body.dropFirst(infoLength)) { attribute, value in
                    guard attribute == stats64Attribute else { return .success(()) }
                    guard value.count >= stats64MinimumLength else {
                        return .failure(Problem("IFLA_STATS64 has \(value.count) bytes, fewer than the \(stats64MinimumLength) through rx_missed_errors"))
                    }
                    func field(_ index: Int) -> UInt64 { NetlinkBytes.u64(value, index * 8) }
                    found = Receive(packets: field(0), bytes: field(2), errors: field(4), dropped: field(6),
                                    overruns: field(11), fifo: field(14), missed: field(15))
                    return .success(())
                }
                if case let .failure(problem) = read { return .failure(problem) }
                guard let found else { return .failure(Problem("the link message of device \(ifindex) has no IFLA_STATS64")) }
                answer = .counters(found)
                return .success(())
            default:
                return .success(())
            }
        }
        if case let .failure(problem) = walked { return .failure(problem) }
        guard let answer else { return .failure(Problem("the answer holds no link message of device \(ifindex) and no error")) }
        return .success(answer)
    }

    /// An RTM_NEWLINK of device `ifindex` with these counters, as the kernel writes it (its
    /// name first, then IFLA_STATS64 of 25 counters; for tests and the fuzzer's seeds).
    public static func record(ifindex: Int32, name: String, _ counters: Receive, sequence: UInt32) -> [UInt8] {
        var stats = [UInt64](repeating: 0, count: 25)
        stats[0] = counters.packets; stats[2] = counters.bytes; stats[4] = counters.errors; stats[6] = counters.dropped
        stats[11] = counters.overruns; stats[14] = counters.fifo; stats[15] = counters.missed
        let body = info(ifindex: ifindex)
            + NetlinkBytes.attribute(3, Array(name.utf8) + [0])  // IFLA_IFNAME
            + NetlinkBytes.attribute(stats64Attribute, stats.flatMap(NetlinkBytes.le64))
        return NetlinkBytes.header(length: NetlinkBytes.headerLength + body.count, type: newLink, flags: 0, sequence: sequence) + body
    }

    /// struct ifinfomsg: AF_UNSPEC, the device's index, no flags.
    static func info(ifindex: Int32) -> [UInt8] {
        [0, 0, 0, 0] + NetlinkBytes.le32(UInt32(bitPattern: ifindex)) + NetlinkBytes.le32(0) + NetlinkBytes.le32(0)
    }
}
