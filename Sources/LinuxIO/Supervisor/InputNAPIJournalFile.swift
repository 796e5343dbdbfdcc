#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayCore

/// The file of `InputNAPIJournal`, `<control socket>.input-napi`: opened (created, mode 0600)
/// at start, before `--user` drops root, and kept open, so the unprivileged daemon can still
/// rewrite it; rewritten whenever the set of inputs the daemon changed changes; truncated and
/// removed when the daemon has restored them (a truncated file that could not be removed reads
/// as an empty journal).
final class InputNAPIJournalFile {
    let path: String
    private var fd: Int32

    static func path(forControl control: String) -> String { control + ".input-napi" }

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// The file, and the bytes an earlier daemon left in it (empty when there was none).
    static func open(path: String) -> Result<(file: InputNAPIJournalFile, leftover: [UInt8]), SystemError> {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return .failure(SystemError("open \(path)", errno: errno)) }
        var leftover: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        // a journal is a few lines; more than 256 KiB is not one (decoding says so)
        while leftover.count <= 256 << 10 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            leftover += chunk[..<n]
        }
        return .success((InputNAPIJournalFile(path: path, fd: fd), leftover))
    }

    /// Replaces the file's text with `journal`'s; what went wrong, if anything.
    @discardableResult
    func record(_ journal: InputNAPIJournal) -> String? {
        guard fd >= 0 else { return nil }
        let bytes = journal.encoded()
        guard ftruncate(fd, 0) == 0 else { return "\(path): truncate: \(SystemError.message(for: errno))" }
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        guard n == bytes.count else { return "\(path): write: \(n < 0 ? SystemError.message(for: errno) : "short write")" }
        return nil
    }

    /// Nothing left to undo: the file truncated, removed where the directory allows, closed.
    func close() {
        guard fd >= 0 else { return }
        _ = ftruncate(fd, 0)
        _ = unlink(path)
        Glibc.close(fd)
        fd = -1
    }
}
