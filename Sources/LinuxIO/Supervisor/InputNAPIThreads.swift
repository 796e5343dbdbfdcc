#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayCore

/// `--input-napi`: where the kernel does an input interface's receive work.
public enum InputNAPISetting: String, Sendable, CaseIterable, CustomStringConvertible {
    /// In a kernel thread per receive queue (`/sys/class/net/IF/threaded` = 1), which the
    /// scheduler weighs against the workers. The default.
    case threaded
    /// As the kernel has it (usually softirq on the CPU that took the interrupt or, on a veth,
    /// on the sender's CPU or an RPS CPU): nothing is changed.
    case kernel

    public static let `default`: InputNAPISetting = .threaded
    public var description: String { rawValue }
}

/// Receive livelock, and why the daemon makes its inputs' NAPI threaded.
///
/// Softirq runs before any thread on its CPU. When a worker shares a CPU with its input's
/// receive softirq and the input is offered more than the worker can forward, softirq keeps
/// filling the worker's socket, the worker gets less and less of the CPU, and the delivered rate
/// falls as the offered rate grows: measured on the bench lab, 200k pps delivered at 200k offered
/// and 11k at 847k (BENCHMARKS.md, "Receive livelock"). Raising the worker's priority does not
/// help (softirq is not scheduled). Threaded NAPI moves the receive work into a kernel thread
/// (`napi/IF-N`), a normal SCHED_OTHER task, which the daemon puts at nice 19
/// (`InputNAPIThreadPriority` says why the workers' own nice value is not enough), so under
/// overload the worker drains its socket first and the excess is dropped where it costs the
/// shared CPU nothing: in the device's ring (a NIC), or on a veth in the sender's transmit (the
/// frames a lagging NAPI has not taken hold the sender's socket memory, so a socket sender is
/// slowed to what the relay forwards, BENCHMARKS.md "Receive work yields to the workers").
///
/// A veth has NAPI only while GRO is on (or an XDP program is attached), so for a veth input
/// the daemon turns GRO on first; for UDP that coalesces nothing unless a socket asked for UDP
/// GRO or the device has rx-udp-gro-forwarding on, so the workers still see one datagram per
/// frame. Even then a veth takes a frame through its NAPI only when an XDP program is attached,
/// the sender has no TSO, or (a socket's frame) this end has rx-udp-gro-forwarding or rx-gro-list
/// on (drivers/net/veth.c, veth_skb_is_eligible_for_gro); the rest, which is most traffic (a
/// local socket's datagrams through a veth with TSO, the default), goes to the backlog softirq
/// of the sending CPU or of the CPUs RPS names, and never to the thread (measured: BENCHMARKS.md,
/// "The packet path's receive work on veth"); the daemon says so in its log. (An XDP program
/// passing every frame would send them all through the thread; tried on 2026-12-06, it broke
/// byte-exact delivery of 500 IPv6 streams in the live tests and did not prevent the collapse,
/// so it is not attached.) Devices without NAPI (loopback, tun, macvlan, a bridge) are left as
/// they are.
///
/// What the daemon changed it restores on the same device (same ifindex) when no worker reads the
/// input any more (its last rule removed) and when it stops. Under `--user` the sysfs file is
/// root's: inputs known at start are changed before the switch, and their files stay open so the
/// unprivileged daemon can restore them, and thread them again when a rule reads them again;
/// inputs first added later stay as they are (logged).
///
/// A daemon killed with SIGKILL (or crashed) restores nothing, and a daemon started after it
/// would find the input already threaded and take it as the host's own setting, leaving it so
/// for good. So what the daemon changed is also kept in a file beside the control socket
/// (`InputNAPIJournal`, rewritten at every change), and a daemon starting on that socket first
/// undoes what the earlier one left (`undoLeftovers`), on the same devices only.
/// Not used with `--data-path xdp` (the XDP program forwards in the NAPI context itself); the
/// leftovers are undone there too.
final class InputNAPIThreads {
    struct Refusal: Error { var reason: String; init(_ reason: String) { self.reason = reason } }

    struct Change {
        var index: Int32
        var turnedGROOn: Bool
        /// The `threaded` file, open for writing since the change: sysfs checks the file's
        /// permission at open and CAP_NET_ADMIN at each write, so the daemon can still restore it
        /// after `--user` dropped root (it keeps CAP_NET_ADMIN).
        var file: Int32
        var isVeth = false
        /// The receive threads the daemon reniced (`InputNAPIThreadPriority`).
        var threads: [InputNAPIThreadPriority.Yielded] = []
    }

    let setting: InputNAPISetting
    /// `--input-napi-nice`: the receive threads' nice value.
    let threadNice: Int32
    /// Inputs whose `threaded` the daemon turned on, to restore when no worker reads them any
    /// more or at exit. Each change goes to the journal file at once.
    private(set) var changed: [InterfaceName: Change] = [:] {
        didSet { if let problem = journal?.record(recorded) { journalProblem = problem } }
    }
    private let journal: InputNAPIJournalFile?
    /// The journal file's last failure, if any (the daemon logs it).
    var journalProblem: String?
    /// Inputs the daemon threaded and then stopped reading: restored, their files kept open so
    /// that a rule on them again threads them again (under `--user` too, where opening the file
    /// again would be refused).
    private var parked: [InterfaceName: Change] = [:]
    /// Inputs left as they were, and why (each reason logged once).
    private(set) var unchanged: [InterfaceName: String] = [:]
    /// The inputs of each worker's plan.
    private var byWorker: [WorkerID: Set<InterfaceName>] = [:]
    /// The config's inputs at start (before `--user`, before any plan): in use until every
    /// worker has had its first plan.
    private var atStart: Set<InterfaceName> = []
    private let workers: Int
    /// Every input a worker reads now: a re-created one is made threaded again when it comes up.
    private(set) var inputs: Set<InterfaceName> = []

    init(setting: InputNAPISetting, workers: Int, threadNice: Int32 = InputNAPIThreadPriority.defaultNice,
         journal: InputNAPIJournalFile? = nil) {
        self.setting = setting
        self.threadNice = threadNice
        self.workers = workers
        self.journal = journal
        journal?.record(InputNAPIJournal([]))
    }

    /// What `changed` holds, as the journal keeps it.
    var recorded: InputNAPIJournal {
        InputNAPIJournal(changed.map { InputNAPIJournal.Entry(interface: $0.key, index: $0.value.index, turnedGROOn: $0.value.turnedGROOn) })
    }

    /// Undoes what an earlier daemon on this control socket changed and did not restore (the
    /// journal's entries), where the device is still the same one and still threaded; returns
    /// the lines to log.
    static func undoLeftovers(_ journal: InputNAPIJournal) -> [String] {
        journal.entries.map { entry in
            let name = entry.interface.rawValue
            let prefix = "\(name): an earlier daemon on this control socket changed its receive setting and did not restore it (killed?): "
            guard Int32(bitPattern: if_nametoindex(name)) == entry.index else {
                return prefix + "left as it is: the device is gone or re-created (index is not \(entry.index))"
            }
            let path = "/sys/class/net/\(name)/threaded"
            guard Descriptors.readSmallFile(path)?.filter({ !$0.isWhitespace }) == "1" else {
                return prefix + "left as it is: no longer threaded (someone else changed it since)"
            }
            let file = open(path, O_WRONLY | O_CLOEXEC)
            let code = file < 0 ? errno : Self.write(file, "0")
            if file >= 0 { Glibc.close(file) }
            let gro = entry.turnedGROOn ? cln_ethtool_set_gro(name, 0) : 0
            if code == 0, gro == 0 {
                return prefix + "receive work back in softirq" + (entry.turnedGROOn ? ", GRO off" : "") + " (as before that daemon)"
            }
            return prefix + "could not undo it (threaded: \(code == 0 ? "0" : SystemError.message(for: code))"
                + (entry.turnedGROOn ? ", GRO off: \(gro == 0 ? "done" : SystemError.message(for: -gro))" : "") + ")"
        }
    }

    /// The config's inputs, at start.
    func useAtStart(_ interfaces: some Sequence<InterfaceName>) -> [(notice: Bool, line: String)] {
        guard setting == .threaded else { return [] }
        atStart = Set(interfaces)
        inputs = atStart
        return apply(inputs.sorted())
    }

    /// A worker's new plan reads `interfaces`: those of every worker are made threaded where they
    /// are not yet, and inputs no worker reads any more get their setting back. Returns the lines
    /// to log (what changed, or why not), each interface's once per device.
    func use(_ interfaces: some Sequence<InterfaceName>, by worker: WorkerID) -> [(notice: Bool, line: String)] {
        guard setting == .threaded else { return [] }
        byWorker[worker] = Set(interfaces)
        if byWorker.count >= workers { atStart = [] }
        inputs = byWorker.values.reduce(into: atStart) { $0.formUnion($1) }
        var lines: [(notice: Bool, line: String)] = []
        for name in changed.keys.sorted() where !inputs.contains(name) { lines += release(name) }
        for name in unchanged.keys where !inputs.contains(name) { unchanged[name] = nil }  // said again if it comes back
        return lines + apply(inputs.sorted())
    }

    /// An input came up (perhaps re-created): threaded again if a worker reads it.
    func interfaceUp(_ name: InterfaceName) -> [(notice: Bool, line: String)] {
        guard setting == .threaded, inputs.contains(name) else { return [] }
        return apply([name])
    }

    /// Back in softirq: no worker reads this input any more.
    private func release(_ name: InterfaceName) -> [(notice: Bool, line: String)] {
        guard let change = changed.removeValue(forKey: name) else { return [] }
        guard Int32(bitPattern: if_nametoindex(name.rawValue)) == change.index else {  // gone or re-created
            Glibc.close(change.file)
            return []
        }
        parked[name] = change
        return [(true, "\(name): no rule reads it any more: " + Self.restore(name, change))]
    }

    private func apply(_ interfaces: [InterfaceName]) -> [(notice: Bool, line: String)] {
        var lines: [(notice: Bool, line: String)] = []
        for name in interfaces {
            let index = Int32(bitPattern: if_nametoindex(name.rawValue))
            guard index > 0 else { continue }  // not there yet: tried again when it comes up
            if changed[name]?.index == index { continue }
            if let stale = changed.removeValue(forKey: name) { Glibc.close(stale.file) }  // a re-created device
            // A parked input's file, kept open since the first change (the only way back under --user).
            var kept = parked.removeValue(forKey: name)
            if let stale = kept, stale.index != index { Glibc.close(stale.file); kept = nil }
            let path = "/sys/class/net/\(name.rawValue)/threaded"
            let outcome: String
            let state = Descriptors.readSmallFile(path)?.filter({ !$0.isWhitespace })
            if let kept, state != "0" { Glibc.close(kept.file) }  // threaded by someone else meanwhile: theirs now
            switch state {
            case nil: outcome = "left in softirq: the kernel has no threaded NAPI (\(path) missing)"
            case "0"?:
                switch threadedOn(name, index: index, path: path, file: kept?.file) {
                case let .success(threaded) where kept != nil:
                    let (change, threadNote) = yieldThreads(threaded)
                    changed[name] = change
                    unchanged[name] = nil
                    lines.append((true, "\(name): a rule reads it again: receive work back in a kernel thread (threaded NAPI)"
                        + (change.turnedGROOn ? ", GRO on" : "") + threadNote + Self.passNote(change)))
                    continue
                case let .success(threaded):
                    let (change, threadNote) = yieldThreads(threaded)
                    changed[name] = change
                    unchanged[name] = nil
                    lines.append((true, "\(name): receive work moved to a kernel thread (threaded NAPI, was softirq)"
                        + (change.turnedGROOn ? "; GRO turned on (a veth has NAPI only with GRO or XDP)" : "")
                        + ", so that when offered more than the workers can forward the excess is dropped at the device, "
                        + "not after costing the workers' CPU; restored when no rule reads it any more or the daemon stops; --input-napi kernel leaves it"
                        + threadNote + Self.passNote(change)))
                    continue
                case let .failure(refusal): outcome = refusal.reason
                }
            case let value?: outcome = value == "1" ? "already threaded" : "threaded is \"\(value)\"; left as it is"
            }
            if unchanged[name] != outcome {
                unchanged[name] = outcome
                lines.append((false, "\(name): \(outcome)"))
            }
        }
        return lines
    }

    /// The change with its receive threads put below the workers, and what to log about them.
    private func yieldThreads(_ change: Change) -> (Change, String) {
        var change = change
        let (threads, note) = InputNAPIThreadPriority.yield(index: change.index, nice: threadNice)
        change.threads = threads
        return (change, note)
    }

    /// What threaded NAPI does not do on a veth (drivers/net/veth.c, veth_skb_is_eligible_for_gro;
    /// measured: BENCHMARKS.md, "The packet path's receive work on veth").
    static let vethCaveat = "on a veth only frames that pass through its NAPI reach that thread (with an XDP program on it, "
        + "from a sender without TSO, or a socket's frames with rx-udp-gro-forwarding on here): others, such as a local "
        + "socket's datagrams through a veth with TSO, are received in the backlog softirq of the sending CPU, or of the CPUs RPS names"

    /// What the log adds for a veth input.
    private static func passNote(_ change: Change) -> String { change.isVeth ? "; " + vethCaveat : "" }

    /// `threaded` 1 (GRO on first for a veth) through `file` if given (kept from an earlier
    /// change), else through the file opened now. On refusal the file is closed.
    private func threadedOn(_ name: InterfaceName, index: Int32, path: String, file given: Int32?) -> Result<Change, Refusal> {
        let isVeth = InterfaceFactsReader.driver(name.rawValue) == "veth"
        var turnedGROOn = false
        if isVeth, cln_ethtool_gro(name.rawValue) == 0 {
            // With these on, GRO would merge same-flow datagrams into one frame the workers would see.
            let merging = ["rx-udp-gro-forwarding", "rx-gro-list"].filter { (feature: String) in cln_ethtool_feature(name.rawValue, feature) == 1 }
            guard merging.isEmpty else {
                if let given { Glibc.close(given) }
                return .failure(Refusal("left in softirq: GRO is off and turning it on (a veth needs it for NAPI) would merge datagrams, since \(merging.joined(separator: " and ")) is on"))
            }
            let code = cln_ethtool_set_gro(name.rawValue, 1)
            guard code == 0 else {
                if let given { Glibc.close(given) }
                return .failure(Refusal("left in softirq: cannot turn GRO on (a veth needs it for NAPI): \(SystemError.message(for: -code))")) }
            turnedGROOn = true
        }
        let file = given ?? open(path, O_WRONLY | O_CLOEXEC)
        let code = file < 0 ? errno : Self.write(file, "1")
        guard code == 0 else {
            if file >= 0 { Glibc.close(file) }
            if turnedGROOn { _ = cln_ethtool_set_gro(name.rawValue, 0) }
            let why = switch code {
            case EACCES, EPERM: "needs root (\(path) is root's; with --user only the inputs of the config at start are changed)"
            case EROFS: "\(path) is read-only here (systemd's ProtectKernelTunables=; README \"Overload\" says how to set it from the unit)"
            case EOPNOTSUPP, EINVAL, 524 /* ENOTSUPP */: "the device has no NAPI"
            default: "writing \(path): \(SystemError.message(for: code))"
            }
            return .failure(Refusal("left in softirq: \(why)"))
        }
        return .success(Change(index: index, turnedGROOn: turnedGROOn, file: file, isVeth: isVeth))
    }

    /// Undoes what `use` changed, on devices that are still the same; returns the lines to log.
    func restore() -> [String] {
        var lines: [String] = []
        for (name, change) in changed.sorted(by: { $0.key < $1.key }) {
            guard Int32(bitPattern: if_nametoindex(name.rawValue)) == change.index else {  // gone or re-created
                Glibc.close(change.file)
                continue
            }
            defer { Glibc.close(change.file) }
            lines.append("\(name): " + Self.restore(name, change))
        }
        for (_, change) in parked { Glibc.close(change.file) }
        changed.removeAll()
        parked.removeAll()
        journal?.close()
        return lines
    }

    /// `threaded` 0 and GRO off again where the daemon turned it on: what to log.
    private static func restore(_ name: InterfaceName, _ change: Change) -> String {
        InputNAPIThreadPriority.restore(change.threads)
        let code = write(change.file, "0")
        let gro = change.turnedGROOn ? cln_ethtool_set_gro(name.rawValue, 0) : 0
        if code == 0, gro == 0 {
            return "receive work back in softirq\(change.turnedGROOn ? ", GRO off" : "") (as before the daemon)"
        }
        return "could not restore the receive setting (threaded: \(code == 0 ? "0" : SystemError.message(for: code))"
            + (change.turnedGROOn ? ", GRO off: \(gro == 0 ? "done" : SystemError.message(for: -gro))" : "") + ")"
    }

    /// One sysfs store through an open file (each write from offset 0 is a store); 0 or errno.
    private static func write(_ file: Int32, _ text: String) -> Int32 {
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { pwrite(file, $0.baseAddress, $0.count, 0) }
        return n == bytes.count ? 0 : (n < 0 ? errno : EIO)
    }
}
