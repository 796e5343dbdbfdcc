import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Live tests (network namespaces, daemons, real traffic) never overlap: each holds the live
/// lease from the moment its lab exists until it is torn down.
///
/// `make test` already runs the live suites in their own `swift test --no-parallel` pass (see
/// README, "Tests"), so the lease is normally never contended. It is the guard for everything
/// else: a plain parallel `swift test`, a live suite missing from the Makefile's list, two
/// worktrees testing on one machine. It is held twice over:
///
/// - in this process, by a mutex: a second live test waits for the first to finish;
/// - across processes, by `flock` on /run/lock/mcrelay-live-tests.lock (the holder writes its pid
///   and test into the file, so a long wait says whom it waits for).
///
/// Waiting is bounded (`MCRELAY_LIVE_LEASE_TIMEOUT` seconds, default 1800) and ends in an error
/// naming the holder. A live test started in the pure pass (`MCRELAY_TEST_PASS=pure`) is an
/// error: its suite is missing from LIVE_SUITES in the Makefile.
enum LiveLease {
    static let lockPath = "/run/lock/mcrelay-live-tests.lock"

    private static let condition = NSCondition()
    nonisolated(unsafe) private static var holder: String?
    nonisolated(unsafe) private static var holderThread: pthread_t?
    nonisolated(unsafe) private static var fileDescriptor: Int32 = -1

    static var timeout: Double {
        ProcessInfo.processInfo.environment["MCRELAY_LIVE_LEASE_TIMEOUT"].flatMap(Double.init) ?? 1800
    }

    /// Takes the lease for `test` (a short label: the lab prefix or the test's tag).
    static func acquire(_ test: String) throws {
        if ProcessInfo.processInfo.environment["MCRELAY_TEST_PASS"] == "pure" {
            throw HarnessError("live test \(test) started in the pure (parallel) pass: add its suite to LIVE_SUITES in the Makefile")
        }
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        if let current = holder, let thread = holderThread, pthread_equal(thread, pthread_self()) != 0 {
            throw HarnessError("live test \(test) started while this thread still holds the lease for \(current) (a lab inside a lab?)")
        }
        while let current = holder {
            guard condition.wait(until: deadline) else {
                throw HarnessError("live test \(test) waited \(Int(timeout)) s for \(current) (in this process) to finish")
            }
        }
        holder = test
        holderThread = pthread_self()
        do {
            fileDescriptor = try lockFile(test, deadline: deadline)
        } catch {
            holder = nil
            holderThread = nil
            condition.broadcast()
            throw error
        }
    }

    /// Gives the lease back if `test` holds it (so a second `down()` is harmless).
    static func release(_ test: String) {
        condition.lock()
        defer { condition.unlock() }
        guard holder == test else { return }
        if fileDescriptor >= 0 {
            _ = ftruncate(fileDescriptor, 0)
            close(fileDescriptor)  // drops the flock
            fileDescriptor = -1
        }
        holder = nil
        holderThread = nil
        condition.broadcast()
    }

    /// Runs `body` holding the lease (for live tests without a `Lab`).
    static func with<T>(_ test: String, _ body: () throws -> T) throws -> T {
        try acquire(test)
        defer { release(test) }
        return try body()
    }

    private static func lockFile(_ test: String, deadline: Date) throws -> Int32 {
        _ = mkdir("/run/lock", 0o755)
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw HarnessError("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        var waited = false
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                let message = String(cString: strerror(errno))
                close(fd)
                throw HarnessError("flock \(lockPath): \(message)")
            }
            if !waited {
                print("live test \(test) waits for another process's live test: \(owner(fd))")
                waited = true
            }
            guard Date() < deadline else {
                let current = owner(fd)
                close(fd)
                throw HarnessError("live test \(test) waited \(Int(timeout)) s for another process's live test (\(current)) to finish")
            }
            usleep(100_000)  // flock has no timed wait; this polls a lock, it decides nothing
        }
        let text = "pid \(getpid()): \(test)\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        return fd
    }

    private static func owner(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = pread(fd, &buffer, buffer.count, 0)
        guard count > 0 else { return "holder unknown" }
        return String(decoding: buffer[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
