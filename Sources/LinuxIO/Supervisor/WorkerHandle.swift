#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl
import RelayCore

/// How the supervisor starts a worker process, and what it expects of it (the contract with
/// `Sources/LinuxIO/DataPlane`):
///
/// - argv: `<the daemon's own executable> worker --id N --channel-fd 3`, started with
///   posix_spawn from `/proc/self/exe`, so worker and supervisor are always the same build.
/// - The worker runs in its own process group (terminal signals go to the supervisor only).
/// - fd 3 is the worker's end of a blocking AF_UNIX SOCK_STREAM socketpair; no other
///   descriptor is inherited except stdin/stdout/stderr. Signal dispositions are default and
///   the signal mask is empty.
/// - Framing: `RelayControl.MessageFraming` (4-byte big-endian length + JSON).
/// - The worker first sends `WorkerMessage.ready(id, pid:)`; after each `.install(plan)` it
///   answers `.installed(version:)` once the plan's sockets are open (the supervisor resends
///   an unacknowledged plan every 250 ms; installing the same version twice must be harmless);
///   `.statisticsRequest(id)` gets `.statistics(id, counters)`; `.shutdown` means close and
///   exit 0. End of file on the channel means the supervisor is gone: exit.
/// - Flight recorder: `.recordStart(assignment)` starts recording the frames it reads (the same
///   session again raises its byte budget), `.recordStop` flushes and closes the files; the worker
///   answers with `.recordStatus` (rate-limited, when half its room is used, when full, at stop).
/// - `.linkUp(interface)` (no answer): netlink reported the interface usable; the worker retries
///   at once whatever waits for it instead of at its 500 ms / 1 s timers.
/// - A worker that has not said `ready` within `readyTimeout` is killed and restarted; one that
///   exits is restarted at once the first time, then after a backoff if it keeps exiting
///   (100 ms doubling to 5 s; a worker that lived 10 s starts the count afresh).
final class WorkerHandle {
    let id: WorkerID
    private(set) var pid: pid_t?
    private(set) var channel: Int32 = -1
    /// `ready` arrived: the core knows this worker as started.
    var ready = false
    var acknowledgedVersion: UInt64?
    var spawnedAt: Instant?
    var restartAt: Instant?
    var restarts = 0
    var consecutiveFailures = 0
    private var reassembler = MessageReassembler<WorkerMessage>()
    private var output: [UInt8] = []
    private var outputStart = 0

    static let readyTimeout: Duration = .seconds(10)

    init(id: WorkerID) { self.id = id }

    var isRunning: Bool { pid != nil }
    var wantsWrite: Bool { channel >= 0 && outputStart < output.count }

    func spawn(executable: String, now: Instant) throws(SystemError) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw .last("socketpair for \(id)")
        }
        var childEnd = pair[1]
        if childEnd < 10 {
            // posix_spawn's dup2(fd, 3) would keep close-on-exec set if the end were already 3.
            let moved = fcntl(childEnd, F_DUPFD_CLOEXEC, 10)
            Descriptors.close(childEnd)
            childEnd = moved
        }
        defer { Descriptors.close(childEnd) }
        let parentEnd = pair[0]

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, childEnd, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        // Its own process group: Ctrl-C in the daemon's terminal reaches only the supervisor,
        // which then stops the workers in order (final counters included).
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        let arguments = ["mcrelay", "worker", "--id", String(id.rawValue), "--channel-fd", "3"]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, executable, &actions, &attributes, &argv, environ)
        guard result == 0 else {
            Descriptors.close(parentEnd)
            throw SystemError("posix_spawn \(executable) worker --id \(id.rawValue)", errno: result)
        }
        try? Descriptors.setNonBlocking(parentEnd)
        pid = child
        channel = parentEnd
        ready = false
        acknowledgedVersion = nil
        spawnedAt = now
        restartAt = nil
        reassembler = MessageReassembler()
        output = []
        outputStart = 0
    }

    /// Queues a message and writes what the channel takes now.
    func send(_ message: SupervisorMessage) throws {
        guard channel >= 0 else { return }
        output.append(contentsOf: try MessageFraming.encode(message))
        flush()
    }

    /// False when the channel failed (the worker is gone or broken).
    @discardableResult
    func flush() -> Bool {
        while channel >= 0 && outputStart < output.count {
            let n = output.withUnsafeBytes {
                Glibc.send(channel, $0.baseAddress! + outputStart, $0.count - outputStart, Int32(MSG_NOSIGNAL))
            }
            if n > 0 { outputStart += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return true }
            return false
        }
        output.removeAll(keepingCapacity: output.count < 1 << 20)
        outputStart = 0
        return true
    }

    enum ReadResult { case messages([WorkerMessage]), broken(String) }

    func receive() -> ReadResult {
        var messages: [WorkerMessage] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while channel >= 0 {
            let n = chunk.withUnsafeMutableBytes { read(channel, $0.baseAddress, $0.count) }
            if n > 0 {
                reassembler.append(chunk[0..<n])
                do {
                    while let message = try reassembler.next() { messages.append(message) }
                } catch {
                    return .broken("unreadable message from \(id): \(error)")
                }
                continue
            }
            if n == 0 { return messages.isEmpty ? .broken("\(id) closed its channel") : .messages(messages) }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { break }
            return .broken("reading from \(id): \(SystemError.message(for: errno))")
        }
        return .messages(messages)
    }

    func closeChannel() {
        Descriptors.close(channel)
        channel = -1
        output = []
        outputStart = 0
    }

    /// The process was reaped.
    func exited() {
        closeChannel()
        pid = nil
        ready = false
        acknowledgedVersion = nil
    }

    func kill(_ signal: Int32 = SIGKILL) {
        if let pid { _ = Glibc.kill(pid, signal) }
    }

    /// Restart delay after this exit: none for the first crash (with one worker, every stream
    /// is down until its replacement reads again; the 100 ms this used to wait were half of the
    /// restart outage measured on the lab), backing off if it keeps crashing.
    func scheduleRestart(now: Instant) {
        if let spawnedAt, now.duration(since: spawnedAt) >= .seconds(10) { consecutiveFailures = 0 }
        restartAt = now + Self.restartDelay(afterConsecutiveFailures: consecutiveFailures)
        consecutiveFailures += 1
    }

    /// 0 for a first failure, then 100 ms doubling to 5 s.
    static func restartDelay(afterConsecutiveFailures failures: Int) -> Duration {
        guard failures > 0 else { return .zero }
        var delay = Duration.milliseconds(100)
        for _ in 0..<min(failures - 1, 6) { delay = delay * 2 }
        return min(delay, .seconds(5))
    }
}

/// Describes a wait(2) status the way an operator reads it.
func describeExit(_ status: Int32) -> String {
    let signal = status & 0x7F
    if signal == 0 { return "exited with status \((status >> 8) & 0xFF)" }
    let name = String(cString: strsignal(signal))
    return "killed by signal \(signal) (\(name))" + (status & 0x80 != 0 ? ", core dumped" : "")
}
