#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// A short-lived netlink socket for the supervisor's request-and-answer exchanges with the kernel
/// (generic netlink's napi-get, rtnetlink's RTM_GETLINK), whose bytes RelayCore builds and reads.
/// The kernel answers at once; the receive timeout means a kernel that does not can never hang
/// the supervisor. Errors are sentences for the log or `mcrelay stats`.
final class NetlinkSocket {
    struct Failure: Error { var why: String }

    private let fd: Int32
    private var buffer: [UInt8]

    /// `family`: NETLINK_ROUTE (0), NETLINK_GENERIC (16), ...
    init(family: Int32, name: String, timeoutSeconds: Int = 1, bufferBytes: Int = 64 * 1024) throws(Failure) {
        fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), family)
        guard fd >= 0 else { throw Failure(why: "socket(AF_NETLINK, \(name)): \(SystemError.message(for: errno))") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        buffer = [UInt8](repeating: 0, count: bufferBytes)
    }

    deinit { Descriptors.close(fd) }

    /// Sends `request` to the kernel; nil, or why not.
    func send(_ request: [UInt8]) -> String? {
        var kernel: (UInt16, UInt16, UInt32, UInt32) = (UInt16(AF_NETLINK), 0, 0, 0)  // sockaddr_nl: the kernel
        let sent = request.withUnsafeBytes { bytes in
            withUnsafeBytes(of: &kernel) { address in
                sendto(fd, bytes.baseAddress, bytes.count, 0, address.baseAddress!.assumingMemoryBound(to: sockaddr.self),
                       socklen_t(address.count))
            }
        }
        return sent == request.count ? nil : "sending to netlink: \(SystemError.message(for: errno))"
    }

    /// One datagram of the answer (valid until the next call).
    func receive() -> Result<ArraySlice<UInt8>, Failure> {
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return .failure(Failure(why: "reading netlink: \(n < 0 ? SystemError.message(for: errno) : "closed")")) }
            return .success(buffer[0..<n])
        }
    }
}
