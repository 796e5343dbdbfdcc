#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import Logging

/// The daemon's listening Unix stream socket: created with mode 0660, its directory created
/// if missing, a stale socket file from a dead daemon replaced, a live daemon's left alone.
final class ControlListener {
    let path: String
    let fd: Int32
    /// The socket file's inode, so `close` removes only our own file, never a successor's.
    private var inode: ino_t = 0
    /// The socket's directory, if this daemon created it (`--user` hands it over).
    private(set) var createdDirectory: String?

    init(path: String) throws(SystemError) {
        self.path = path
        createdDirectory = try Self.prepareDirectory(of: path)
        try Self.clearStaleSocket(at: path)

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .last("socket(AF_UNIX) for \(path)") }
        // Created 0660 from the start (umask during bind): no window in which others may connect.
        let oldMask = umask(0o117)
        let bound = try UnixSocketAddress.with(path: path) { bind(fd, $0, $1) }
        let bindErrno = errno
        umask(oldMask)
        guard bound == 0 else {
            Descriptors.close(fd)
            throw SystemError("bind \(path)", errno: bindErrno)
        }
        guard chmod(path, 0o660) == 0 else {
            let error = SystemError.last("chmod 0660 \(path)")
            Descriptors.close(fd)
            unlink(path)
            throw error
        }
        guard listen(fd, 64) == 0 else {
            let error = SystemError.last("listen \(path)")
            Descriptors.close(fd)
            unlink(path)
            throw error
        }
        self.fd = fd
        var info = stat()
        if lstat(path, &info) == 0 { inode = info.st_ino }
    }

    /// A new client, nil when none is pending.
    func accept() -> Int32? {
        // accept4 is not visible from Swift's Glibc module; set the flags right after.
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { return nil }
        try? Descriptors.setCloseOnExec(client)
        try? Descriptors.setNonBlocking(client)
        return client
    }

    func close() {
        Descriptors.close(fd)
        // Only remove the file if it is still ours (another daemon may have replaced it).
        var info = stat()
        if lstat(path, &info) == 0, info.st_ino == inode { unlink(path) }
    }

    /// Returns the directory if it had to be created.
    private static func prepareDirectory(of path: String) throws(SystemError) -> String? {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return nil }
        let directory = String(path[..<slash])
        var info = stat()
        if stat(directory, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw SystemError("control socket directory \(directory)", errno: ENOTDIR) }
            return nil
        }
        // mkdir -p, mode 0755 (the socket itself is 0660).
        var prefix = directory.hasPrefix("/") ? "" : "."
        for component in directory.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw .last("create control socket directory \(prefix)")
            }
        }
        return directory
    }

    /// A socket file nobody listens on is left over from a daemon that died: remove it.
    /// One somebody answers on belongs to a running daemon: refuse to start.
    private static func clearStaleSocket(at path: String) throws(SystemError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw SystemError("control socket path \(path) exists and is not a socket", errno: EEXIST)
        }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { throw .last("socket(AF_UNIX)") }
        defer { Descriptors.close(probe) }
        let connected = try UnixSocketAddress.with(path: path) { connect(probe, $0, $1) }
        if connected == 0 {
            throw SystemError("control socket \(path) is in use by a running daemon", errno: EADDRINUSE)
        }
        guard unlink(path) == 0 || errno == ENOENT else { throw .last("remove stale control socket \(path)") }
    }
}
