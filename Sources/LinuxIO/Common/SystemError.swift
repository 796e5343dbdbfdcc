#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// A failed system call: which operation (with its subject) and the errno it left.
/// `description` is one line an operator can act on, e.g.
/// "bind /run/mcrelay/control.sock: Address already in use (EADDRINUSE)".
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// The errno the last failed call left (read it before calling anything else).
    public static func last(_ operation: String) -> SystemError {
        SystemError(operation, errno: Glibc.errno)
    }

    public var description: String { "\(operation): \(Self.message(for: errno))" }

    /// "No such file or directory (ENOENT)"; the symbolic name only for the common ones.
    public static func message(for code: Int32) -> String {
        let text = String(cString: strerror(code))
        return errnoName(code).map { "\(text) (\($0))" } ?? text
    }

    public static func errnoName(_ code: Int32) -> String? {
        switch code {
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case EINTR: "EINTR"
        case EBADF: "EBADF"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case EACCES: "EACCES"
        case EEXIST: "EEXIST"
        case ENODEV: "ENODEV"
        case ENOTDIR: "ENOTDIR"
        case EINVAL: "EINVAL"
        case EMFILE: "EMFILE"
        case ENOSPC: "ENOSPC"
        case EPIPE: "EPIPE"
        case ENOBUFS: "ENOBUFS"
        case EADDRINUSE: "EADDRINUSE"
        case EADDRNOTAVAIL: "EADDRNOTAVAIL"
        case ENETDOWN: "ENETDOWN"
        case ENETUNREACH: "ENETUNREACH"
        case ECONNREFUSED: "ECONNREFUSED"
        case ECONNRESET: "ECONNRESET"
        case ENXIO: "ENXIO"
        case EMSGSIZE: "EMSGSIZE"
        case ENAMETOOLONG: "ENAMETOOLONG"
        case EPROTONOSUPPORT: "EPROTONOSUPPORT"
        case EAFNOSUPPORT: "EAFNOSUPPORT"
        case ENOTSOCK: "ENOTSOCK"
        default: nil
        }
    }
}

/// Runs `body` again while it fails with EINTR; returns its result (-1 with errno set on failure).
@inlinable
public func retryingInterrupts<T: BinaryInteger>(_ body: () -> T) -> T {
    while true {
        let result = body()
        if result == -1 && errno == EINTR { continue }
        return result
    }
}
