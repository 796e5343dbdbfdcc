#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// Delivers signals to the event loop as readable bytes (the self-pipe trick).
///
/// Why not signalfd: signalfd only sees signals that are blocked in *every* thread, and the
/// Swift runtime may have started threads (the concurrency pool) before the daemon runs, with
/// the signals unblocked; the default action of SIGTERM would then kill the daemon without its
/// cleanup. A handler runs on whichever thread gets the signal, so this works regardless.
enum SignalPipe {
    nonisolated(unsafe) static var writeEnd: Int32 = -1
    nonisolated(unsafe) static var readEnd: Int32 = -1

    static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGCHLD]

    /// Creates the pipe and installs the handlers; returns the read end for poll(2).
    static func install() throws(SystemError) -> Int32 {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw .last("pipe for signals") }
        for fd in fds {
            try Descriptors.setCloseOnExec(fd)
            try Descriptors.setNonBlocking(fd)
        }
        readEnd = fds[0]
        writeEnd = fds[1]
        for signal in handled {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                let saved = errno  // a handler must not disturb the interrupted code's errno
                var byte = UInt8(truncatingIfNeeded: number)
                _ = write(SignalPipe.writeEnd, &byte, 1)  // full pipe: a byte of that kind is pending anyway
                errno = saved
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART | (signal == SIGCHLD ? SA_NOCLDSTOP : 0)
            guard sigaction(signal, &action, nil) == 0 else { throw .last("sigaction \(signal)") }
        }
        // Writes to a client that went away must fail with EPIPE, not kill the daemon.
        signal(SIGPIPE, SIG_IGN)
        return readEnd
    }

    /// The signals that arrived since the last call, each once, in a fixed order.
    static func drain() -> [Int32] {
        var seen = Set<Int32>()
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let n = read(readEnd, &buffer, buffer.count)
            guard n > 0 else { break }
            for byte in buffer[0..<n] { seen.insert(Int32(byte)) }
        }
        return handled.filter(seen.contains)
    }
}
