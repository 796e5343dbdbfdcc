import CLinuxNet
import Glibc

/// Reads up to `batchSize` frames per system call from a non-blocking AF_PACKET socket into
/// preallocated buffers. The frames stay valid until the next `receive`.
final class RecvmmsgReceiver {
    static let batchSize = 64

    private let buffers: UnsafeMutableRawPointer
    private let messages: UnsafeMutablePointer<ldp_mmsghdr>
    private let iovecs: UnsafeMutablePointer<iovec>

    init() {
        let size = IngressTuning.frameBufferSize
        buffers = .allocate(byteCount: Self.batchSize * size, alignment: 64)
        messages = .allocate(capacity: Self.batchSize)
        messages.initialize(repeating: ldp_mmsghdr(), count: Self.batchSize)
        iovecs = .allocate(capacity: Self.batchSize)
        for index in 0..<Self.batchSize {
            iovecs[index] = iovec(iov_base: buffers + index * size, iov_len: size)
            messages[index].msg_hdr.msg_iov = iovecs + index
            messages[index].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        buffers.deallocate()
        messages.deallocate()
        iovecs.deallocate()
    }

    /// Frames received (0 when none is waiting), or -errno.
    @inline(__always)
    func receive(_ fd: Int32) -> Int {
        let result = Int(ldp_recvmmsg(fd, messages, UInt32(Self.batchSize), Int32(MSG_DONTWAIT)))
        return result == -Int(EAGAIN) || result == -Int(EWOULDBLOCK) ? 0 : result
    }

    @inline(__always)
    func frame(_ index: Int) -> UnsafeRawBufferPointer {
        let length = min(Int(messages[index].msg_len), IngressTuning.frameBufferSize)
        return UnsafeRawBufferPointer(start: buffers + index * IngressTuning.frameBufferSize, count: length)
    }
}
