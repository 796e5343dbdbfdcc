#if canImport(Glibc)
import Glibc
#endif

/// The workers' scheduling priority (`--worker-nice`, default -10).
///
/// It weighs a worker against the tasks of its own scheduling group (the daemon's session under
/// CFS autogroups, or its cgroup). It was first meant to outweigh the inputs' threaded-NAPI
/// receive threads at nice 0 too, and cannot: those are root-level kernel threads, weighed
/// against the daemon's whole group, so the daemon puts them at nice 19 instead
/// (`InputNAPIThreadPriority`, measured there).
/// A lower nice value than this (set by an operator or `nice -n -20`) is kept. The supervisor
/// sets it on itself before it starts any worker; the workers inherit it and do nothing more.
public enum WorkerPriority {
    public static let defaultNice: Int32 = -10
    public static let range: ClosedRange<Int32> = -20...19

    /// In the supervisor, before `--user` drops root (CAP_SYS_NICE): its own nice value to
    /// `nice` unless lower already. The worker processes it forks inherit it under any identity
    /// (an unprivileged worker could not lower its own, and raising RLIMIT_NICE for it needs
    /// CAP_SYS_RESOURCE, which containers often lack). The supervisor itself only wakes for
    /// control events, so its share of a CPU is unchanged in practice. Returns a problem, or nil.
    public static func lowerForWorkers(to nice: Int32) -> String? {
        lower(to: nice).map { "\($0); workers run at the daemon's nice value" }
    }

    /// This thread's nice value to `target` unless lower already; a problem, or nil.
    static func lower(to target: Int32) -> String? {
        errno = 0
        let current = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        guard errno == 0 else { return "getpriority: \(String(cString: strerror(errno)))" }
        guard current > target else { return nil }
        guard setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, target) == 0 else {
            return "cannot lower the nice value from \(current) to \(target): \(String(cString: strerror(errno))) (needs root or CAP_SYS_NICE)"
        }
        return nil
    }
}
