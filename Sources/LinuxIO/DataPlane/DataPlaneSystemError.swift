import Glibc
import CLinuxNet

/// A failed system call in the data plane, naming what was attempted and on what, so the
/// supervisor can show it to an operator as is (it travels as `WorkerMessage.problem`).
public struct DataPlaneSystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var target: String
    public var code: Int32

    public init(_ operation: String, _ target: String, code: Int32) {
        self.operation = operation
        self.target = target
        self.code = code
    }

    /// The error of the last failed call (`errno`).
    static func last(_ operation: String, _ target: String) -> DataPlaneSystemError {
        DataPlaneSystemError(operation, target, code: errno)
    }

    public var description: String {
        "\(operation) on \(target) failed: \(String(cString: strerror(code))) (errno \(code))"
    }
}

/// Small wrappers over setsockopt/fcntl so socket setup reads as a list of options.
enum DataPlaneSocketOption {
    static func set(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ what: String, _ target: String) throws(DataPlaneSystemError) {
        var value = value
        guard setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw .last("setsockopt(\(what))", target)
        }
    }

    static func setNonBlocking(_ fd: Int32, _ target: String) throws(DataPlaneSystemError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else { throw .last("fcntl(O_NONBLOCK)", target) }
    }

    /// Binds an AF_PACKET socket to every protocol on one interface (ingress sockets and the
    /// listener tap: what they keep is left to their BPF filters).
    static func bindPacketSocket(_ fd: Int32, ifindex: Int32, _ target: String) throws(DataPlaneSystemError) {
        var address = sockaddr_ll()
        address.sll_family = UInt16(AF_PACKET)
        address.sll_protocol = cln_htons(UInt16(CLN_ETH_P_ALL))
        address.sll_ifindex = ifindex
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
            }
        }
        guard bound == 0 else { throw .last("bind(AF_PACKET)", target) }
    }

    /// A large buffer: the *FORCE variant (root, ignores rmem_max/wmem_max, which cannot be
    /// raised inside a namespace) first, the plain one (capped by the sysctl) otherwise.
    static func setBuffer(_ fd: Int32, receive: Bool, bytes: Int32) {
        let force = receive ? SO_RCVBUFFORCE : SO_SNDBUFFORCE
        let plain = receive ? SO_RCVBUF : SO_SNDBUF
        var value = bytes
        let size = socklen_t(MemoryLayout<Int32>.size)
        if setsockopt(fd, SOL_SOCKET, force, &value, size) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, plain, &value, size)
        }
    }
}

/// Monotonic milliseconds for retry timers (the data plane's only clock).
enum DataPlaneClock {
    static func milliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}
