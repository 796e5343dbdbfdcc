#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import Foundation

/// Writes a worker's full recording buffers to their files on a thread of its own, so the
/// worker's receive loop never waits on the disk (write(2) to a file can sleep in dirty-page
/// throttling when the disk is slower than the traffic). The worker hands over a batch of
/// buffers and keeps filling the other half of each file's double buffer; while a batch is
/// still being written it does not hand over another (`isBusy`), and if its buffers fill up
/// meanwhile, frames are not recorded and the recording ends there (see `FrameRecorder`).
final class RecordingDiskWriter: @unchecked Sendable {
    struct Job {
        var fd: Int32
        var buffer: UnsafeMutableRawPointer
        var count: Int
        var name: String
    }

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var pending: [Job] = []
    private var busy = false
    private var stopping = false
    private var finished = false
    private var failure: String?

    init() {
        pending.reserveCapacity(8)
        let thread = Thread { [self] in run() }
        thread.name = "mcrelay-recorder"
        thread.start()
    }

    /// A batch is still being written: do not hand over its buffers' twins yet.
    var isBusy: Bool {
        condition.lock()
        defer { condition.unlock() }
        return busy
    }

    /// The first write error, if any (the recording ends at it).
    var error: String? {
        condition.lock()
        defer { condition.unlock() }
        return failure
    }

    /// Hands over a batch; the buffers belong to the writer until `isBusy` is false again.
    func submit(_ jobs: [Job]) {
        guard !jobs.isEmpty else { return }
        condition.lock()
        pending = jobs
        busy = true
        condition.signal()
        condition.unlock()
    }

    /// Waits for the batch in progress, then ends the thread.
    func finish() {
        condition.lock()
        while busy { condition.wait() }
        stopping = true
        condition.signal()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while !busy && !stopping { condition.wait() }
            if !busy && stopping {
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let jobs = pending
            let failed = failure != nil
            condition.unlock()
            var error: String?
            if !failed {
                for job in jobs { if let problem = Self.write(job) { error = problem; break } }
            }
            condition.lock()
            if let error, failure == nil { failure = error }
            pending.removeAll(keepingCapacity: true)
            busy = false
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Writes one buffer whole; a message when it could not.
    static func write(_ job: Job) -> String? {
        var offset = 0
        while offset < job.count {
            let n = Glibc.write(job.fd, job.buffer + offset, job.count - offset)
            if n < 0 && errno == EINTR { continue }
            // The bytes that did not reach the file leave a truncated record behind: the
            // recording ends here (the loader cuts at `complete_until_ns`).
            guard n > 0 else { return SystemError.last("write \(job.name)").description }
            offset += n
        }
        return nil
    }
}
