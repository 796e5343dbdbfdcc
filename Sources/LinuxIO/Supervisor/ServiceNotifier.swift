#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// The sd_notify(3) protocol, without libsystemd: each notification is one datagram of
/// newline-separated `KEY=VALUE` lines sent to the AF_UNIX socket named by `$NOTIFY_SOCKET`
/// (a path, or an abstract name written with a leading `@`). systemd sets the variable for
/// `Type=notify` services; without it nothing is sent.
///
/// The datagram socket is opened when the daemon starts, before it gives up root: sending
/// needs no privilege, and the socket must exist before the daemon might lose access to
/// create it. `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` are removed from the
/// environment once read, so the worker processes never see them (only the main process may
/// notify: the unit says `NotifyAccess=main`).
public final class ServiceNotifier {
    /// `$NOTIFY_SOCKET` as given (for messages).
    public let socketName: String
    /// How often systemd expects `WATCHDOG=1` (`$WATCHDOG_USEC`), nil without a watchdog.
    public let watchdogInterval: Duration?
    private let fd: Int32
    private var address = sockaddr_un()
    private let addressLength: socklen_t

    public static let socketVariable = "NOTIFY_SOCKET"
    public static let watchdogVariable = "WATCHDOG_USEC"
    public static let watchdogPIDVariable = "WATCHDOG_PID"

    /// Reads and clears the environment: nil when `NOTIFY_SOCKET` is unset or empty, an error
    /// naming the variable when it cannot be used.
    public static func fromEnvironment() -> Result<ServiceNotifier, SystemError>? {
        let name = getenv(socketVariable).map { String(cString: $0) }
        let watchdog = watchdogInterval(microseconds: getenv(watchdogVariable).map { String(cString: $0) },
                                        pid: getenv(watchdogPIDVariable).map { String(cString: $0) }, ownPID: getpid())
        unsetenv(socketVariable)
        unsetenv(watchdogVariable)
        unsetenv(watchdogPIDVariable)
        guard let name, !name.isEmpty else { return nil }
        do { return .success(try ServiceNotifier(socket: name, watchdogInterval: watchdog)) } catch {
            return .failure(error)
        }
    }

    /// `$WATCHDOG_USEC` if it is meant for this process (`$WATCHDOG_PID` unset or ours).
    public static func watchdogInterval(microseconds: String?, pid: String?, ownPID: Int32) -> Duration? {
        if let pid, !pid.isEmpty {
            guard let value = Int32(pid), value == ownPID else { return nil }
        }
        guard let microseconds, let value = UInt64(microseconds), value > 0 else { return nil }
        return .microseconds(Int64(clamping: value))
    }

    public init(socket name: String, watchdogInterval: Duration? = nil) throws(SystemError) {
        socketName = name
        self.watchdogInterval = watchdogInterval
        var bytes = Array(name.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        guard abstract || bytes.first == UInt8(ascii: "/") else {
            // systemd also knows vsock: addresses (VMs); a relay has no use for them.
            throw SystemError("\(Self.socketVariable)=\(name) (not an absolute path or @abstract name)", errno: EAFNOSUPPORT)
        }
        if abstract { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            throw SystemError("\(Self.socketVariable)=\(name) (\(bytes.count) bytes, at most \(capacity - 1))", errno: ENAMETOOLONG)
        }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        // An abstract name is exactly its bytes (a trailing NUL would be part of the name).
        addressLength = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (abstract ? 0 : 1))
        fd = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .last("socket(AF_UNIX, SOCK_DGRAM) for \(Self.socketVariable)") }
    }

    deinit { Descriptors.close(fd) }

    /// Sends one notification (lines joined by newlines); nil when the datagram went out.
    @discardableResult
    public func send(_ lines: [String]) -> SystemError? {
        let message = Array(lines.joined(separator: "\n").utf8)
        while true {
            let sent = message.withUnsafeBytes { payload in
                withUnsafePointer(to: &address) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, payload.baseAddress, payload.count, Int32(MSG_NOSIGNAL), $0, addressLength)
                    }
                }
            }
            if sent == message.count { return nil }
            if sent < 0 && errno == EINTR { continue }
            return sent < 0 ? .last("notify \(socketName)") : SystemError("notify \(socketName): short send", errno: EMSGSIZE)
        }
    }

    /// `MONOTONIC_USEC=` for `RELOADING=1`: CLOCK_MONOTONIC in microseconds, the clock systemd
    /// compares it with.
    public static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }
}
