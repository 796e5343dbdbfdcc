#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayCore

/// The nice value of the receive threads the daemon creates (`--input-napi-nice`, default 19).
///
/// The workers' own nice value (`WorkerPriority`, -10) was meant to outweigh these threads, and
/// does not where it matters: a nice value weighs only against tasks of the same scheduling
/// group. With CFS autogroups (on by default in Debian's kernels) a daemon started from a shell
/// or by systemd (its own session) is one group, weighed as one nice-0 task against the
/// root-level kernel thread, whatever its workers' nice; in a cgroup with the cpu controller the
/// same holds for the cgroup's weight. And a group's weight on one CPU is its weight times the
/// share of its load there, so a worker that sleeps between batches weighs less still. Measured
/// on the bench lab (BENCHMARKS.md, "Receive work yields to the workers"): with the receive thread
/// at nice -10 and the workers in a nice -20 session, the thread took 85% of the shared CPU at
/// 400k pps offered and the delivered rate fell from 119k to 39k pps.
///
/// At nice 19 the thread's weight is 15 against a group's 1024 at nice 0 (1.5%), in any of these
/// arrangements: while a worker has frames the worker runs, and the thread runs whenever the
/// workers wait, which is the order the work must happen in under overload (Mogul and
/// Ramakrishnan's receive-livelock rule: give the consumer precedence, drop at the producer).
/// The costs: other traffic on the same receive queue is also received only when the workers
/// wait, so an input the workers cannot keep up with delays that traffic too; and a busy worker
/// lets the device's ring fill sooner: on the bench's veth (256 frames) the zero-loss rate was
/// 38-75k pps against 65-75k with the thread at nice 0 (alternating runs; at both values every
/// lost frame was refused at the full ring, none dropped at the socket), while at nice 0 the
/// delivered rate under overload fell to 73-78% of its peak instead of holding
/// (`--input-napi-nice 0` chooses that). Raising the nice value only while a socket drops was
/// measured as not worth building (BENCHMARKS.md, "Receive work yields to the workers").
///
/// The threads are found through the kernel's netdev netlink family (napi-get, kernel 6.9 and
/// later; the bytes are `NAPIThreadDump`'s); on an older kernel they keep the kernel's nice 0
/// (logged).
public enum InputNAPIThreadPriority {
    public static let defaultNice: Int32 = 19
    public static let range: ClosedRange<Int32> = -20...19

    /// One receive thread the daemon reniced, and the nice value it had.
    struct Yielded: Equatable { var pid: Int32; var before: Int32 }

    /// Gives the receive threads of device `index` (this network namespace) nice `nice`: the
    /// threads changed, and a note for the log.
    static func yield(index: Int32, nice: Int32) -> (threads: [Yielded], note: String) {
        let pids: [Int32]
        switch threads(ofDevice: index) {
        case let .success(found): pids = found
        case let .failure(unlisted):
            let why = unlisted.why
            return ([], "; its receive thread keeps the kernel's nice 0 (\(why)), which may outweigh the workers: see README \"Overload\"")
        }
        guard !pids.isEmpty else { return ([], "; the kernel reported no receive thread for it") }
        var yielded: [Yielded] = []
        var problems: [String] = []
        for pid in pids where isNAPIThread(pid) {
            errno = 0
            let before = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid))
            guard errno == 0 else { problems.append("pid \(pid): \(SystemError.message(for: errno))"); continue }
            guard setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), nice) == 0 else {
                problems.append("pid \(pid): \(SystemError.message(for: errno))")
                continue
            }
            yielded.append(Yielded(pid: pid, before: before))
        }
        var note = yielded.isEmpty ? "" : "; its receive thread\(yielded.count == 1 ? "" : "s") (pid "
            + yielded.map { String($0.pid) }.joined(separator: ", ") + ") at nice \(nice)"
            + (nice > 0 ? ", below the workers" : " (--input-napi-nice: not below the workers)")
        if !problems.isEmpty {
            note += "; could not renice its receive thread (" + problems.joined(separator: "; ") + "; needs root or CAP_SYS_NICE)"
        }
        return (yielded, note)
    }

    /// Gives the threads back the nice value they had, where they still are NAPI threads (the
    /// 6.18 kernel measured here stops them when `threaded` goes back to 0; older ones kept them).
    static func restore(_ threads: [Yielded]) {
        for thread in threads where isNAPIThread(thread.pid) {
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(thread.pid), thread.before)
        }
    }

    /// The pids of the NAPI threads of device `index` in this network namespace, asked of the
    /// kernel (generic netlink: the netdev family's id, then napi-get dumped for the device), or
    /// why not.
    struct Unlisted: Error { var why: String; init(_ why: String) { self.why = why } }

    static func threads(ofDevice index: Int32) -> Result<[Int32], Unlisted> {
        let netlink: NetlinkSocket
        do { netlink = try NetlinkSocket(family: netlinkGeneric, name: "NETLINK_GENERIC", timeoutSeconds: 2, bufferBytes: 32 * 1024) }
        catch { return .failure(Unlisted(error.why)) }
        func receive() -> Result<ArraySlice<UInt8>, Unlisted> { netlink.receive().mapError { Unlisted($0.why) } }
        if let problem = netlink.send(NAPIThreadDump.familyRequest(sequence: 1)) { return .failure(Unlisted(problem)) }
        let family: UInt16
        switch receive().flatMap({ NAPIThreadDump.familyID($0).mapError { Unlisted($0.message) } }) {
        case let .success(id): family = id
        case let .failure(unlisted): return .failure(Unlisted("the kernel has no netdev netlink family (\(unlisted.why)); napi-get needs 6.9 or later"))
        }
        if let problem = netlink.send(NAPIThreadDump.dumpRequest(family: family, ifindex: UInt32(bitPattern: index), sequence: 2)) {
            return .failure(Unlisted(problem))
        }
        var pids: [Int32] = []
        for _ in 0..<64 {  // a dump of one device's NAPIs is a datagram or two
            switch receive().flatMap({ NAPIThreadDump.parseDump($0, family: family, ifindex: UInt32(bitPattern: index)).mapError { Unlisted($0.message) } }) {
            case let .failure(unlisted): return .failure(Unlisted("the kernel's napi-get answer: \(unlisted.why)"))
            case let .success(part):
                if let code = part.error {
                    let unsupported = code == -Int32(EOPNOTSUPP) || code == -Int32(EINVAL)
                    return .failure(Unlisted(unsupported
                        ? "the kernel cannot list NAPI threads (netdev napi-get needs 6.9 or later)"
                        : "napi-get refused: \(SystemError.message(for: -code))"))
                }
                pids += part.pids
                if part.done { return .success(pids) }
            }
        }
        return .failure(Unlisted("the kernel's napi-get answer did not end"))
    }

    static let netlinkGeneric: Int32 = 16  // NETLINK_GENERIC (linux/netlink.h)

    /// Whether `pid` is a kernel NAPI thread still (a pid is reused once its thread ends).
    static func isNAPIThread(_ pid: Int32) -> Bool {
        Descriptors.readSmallFile("/proc/\(pid)/comm")?.hasPrefix("napi/") == true
    }
}
