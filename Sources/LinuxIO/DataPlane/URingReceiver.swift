import CURing
import CLinuxNet
import Glibc

/// Reads AF_PACKET sockets through io_uring: one multishot `recv` per socket, each completion
/// carrying one frame in a buffer the kernel picked from a provided-buffer ring.
///
/// liburing 2.3 has no `io_uring_setup_buf_ring`, so the ring is mmap'd and registered here.
/// `struct io_uring` lives on the heap (liburing keeps pointers into it). The caller processes
/// a batch of completions, flushes the transmits that point into their buffers, and only then
/// calls `finishBatch`, which hands the buffers back to the kernel.
final class URingReceiver {
    static let ringEntries: UInt32 = 256
    static let bufferCount: UInt32 = 512  // power of two (the buffer ring's mask)
    static let completionBatch = 256
    static let bufferGroup: UInt16 = 0
    /// user_data of requests whose completion carries no frame (cancellations).
    static let internalToken: UInt64 = .max
    /// user_data of the multishot poll on the supervisor channel.
    static let channelToken: UInt64 = .max - 1
    /// Completion queue size: room for every buffer's completion plus control traffic, so the
    /// kernel never takes the slow overflow path.
    static let completionEntries: UInt32 = 2048

    /// IORING_CQE_F_BUFFER / IORING_CQE_F_MORE (macros, which do not import).
    static let completionHasBuffer: UInt32 = 1 << 0
    static let completionHasMore: UInt32 = 1 << 1

    let ring: UnsafeMutablePointer<io_uring>
    private let bufferRing: UnsafeMutablePointer<io_uring_buf_ring>
    private let bufferRingBytes: Int
    private let buffers: UnsafeMutableRawPointer
    private let completions: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>
    private let returned: UnsafeMutablePointer<UInt16>
    private var returnedCount = 0
    private var peeked = 0
    /// The IORING_SETUP_* flags the ring was created with.
    private(set) var setupFlags: UInt32 = 0

    var fd: Int32 { ring.pointee.ring_fd }

    init() throws(DataPlaneSystemError) {
        ring = .allocate(capacity: 1)
        ring.initialize(to: io_uring())
        // Preferred: completions are produced only when this (single) thread enters the ring,
        // in one batch, with no inter-processor interrupts per packet. Older kernels: fall back.
        let cqSize = UInt32(IORING_SETUP_CQSIZE)
        let attempts: [UInt32] = [
            cqSize | UInt32(IORING_SETUP_SINGLE_ISSUER) | UInt32(IORING_SETUP_DEFER_TASKRUN),
            cqSize | UInt32(IORING_SETUP_COOP_TASKRUN),
            cqSize,
        ]
        var setup: Int32 = -EINVAL
        for flags in attempts {
            var parameters = io_uring_params()
            parameters.flags = flags
            parameters.cq_entries = Self.completionEntries
            setup = io_uring_queue_init_params(Self.ringEntries, ring, &parameters)
            if setup == 0 { setupFlags = flags; break }
            if setup != -EINVAL { break }
        }
        guard setup == 0 else {
            ring.deallocate()
            throw DataPlaneSystemError("io_uring_queue_init", "the worker's ingress ring", code: -setup)
        }
        bufferRingBytes = Int(Self.bufferCount) * MemoryLayout<io_uring_buf>.stride
        let mapped = mmap(nil, bufferRingBytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0)
        guard let mapped, mapped != MAP_FAILED else {
            let error = DataPlaneSystemError.last("mmap", "the provided-buffer ring")
            io_uring_queue_exit(ring)
            ring.deallocate()
            throw error
        }
        bufferRing = mapped.bindMemory(to: io_uring_buf_ring.self, capacity: 1)
        io_uring_buf_ring_init(bufferRing)
        var registration = io_uring_buf_reg()
        registration.ring_addr = UInt64(UInt(bitPattern: mapped))
        registration.ring_entries = Self.bufferCount
        registration.bgid = Self.bufferGroup
        let registered = io_uring_register_buf_ring(ring, &registration, 0)
        guard registered == 0 else {
            munmap(mapped, bufferRingBytes)
            io_uring_queue_exit(ring)
            ring.deallocate()
            throw DataPlaneSystemError("io_uring_register_buf_ring", "the provided-buffer ring", code: -registered)
        }
        let size = IngressTuning.frameBufferSize
        buffers = .allocate(byteCount: Int(Self.bufferCount) * size, alignment: 4096)
        let mask = io_uring_buf_ring_mask(Self.bufferCount)
        for id in 0..<Int(Self.bufferCount) {
            io_uring_buf_ring_add(bufferRing, buffers + id * size, UInt32(size), UInt16(id), mask, Int32(id))
        }
        io_uring_buf_ring_advance(bufferRing, Int32(Self.bufferCount))
        completions = .allocate(capacity: Self.completionBatch)
        returned = .allocate(capacity: Self.completionBatch)
    }

    deinit {
        _ = io_uring_unregister_buf_ring(ring, Int32(Self.bufferGroup))
        io_uring_queue_exit(ring)
        ring.deallocate()
        munmap(UnsafeMutableRawPointer(bufferRing), bufferRingBytes)
        buffers.deallocate()
        completions.deallocate()
        returned.deallocate()
    }

    private func sqe() -> UnsafeMutablePointer<io_uring_sqe> {
        if let entry = io_uring_get_sqe(ring) { return entry }
        // Submission queue full: hand what is queued to the kernel, then there is room.
        _ = io_uring_submit(ring)
        return io_uring_get_sqe(ring)!
    }

    /// Starts a multishot receive on `socket`; its completions carry `token`.
    func arm(socket: Int32, token: UInt64) {
        let entry = sqe()
        io_uring_prep_recv_multishot(entry, socket, nil, 0, 0)
        entry.pointee.flags |= UInt8(1 << IOSQE_BUFFER_SELECT_BIT)
        entry.pointee.buf_group = Self.bufferGroup
        io_uring_sqe_set_data64(entry, token)
    }

    /// Cancels the multishot receive armed with `token` (before its socket is closed: the
    /// request holds a reference to the socket until it ends).
    func cancel(token: UInt64) {
        let entry = sqe()
        io_uring_prep_cancel64(entry, token, 0)
        io_uring_sqe_set_data64(entry, Self.internalToken)
    }

    /// Watches the supervisor channel for input (multishot poll; completions carry `channelToken`).
    func watchChannel(_ channel: Int32) {
        let entry = sqe()
        io_uring_prep_poll_multishot(entry, channel, UInt32(POLLIN))
        io_uring_sqe_set_data64(entry, Self.channelToken)
    }

    /// Submits queued requests and collects completions without sleeping.
    func submitAndGetEvents() { _ = io_uring_submit_and_get_events(ring) }

    /// Submits queued requests and sleeps until a completion arrives or `milliseconds` pass.
    func submitAndWait(milliseconds: Int64) {
        var timeout = __kernel_timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var completion: UnsafeMutablePointer<io_uring_cqe>?
        _ = io_uring_submit_and_wait_timeout(ring, &completion, 1, &timeout, nil)
    }

    /// Submits queued requests without waiting.
    func submit() -> Int32 { io_uring_submit(ring) }

    /// Completions ready now (at most `completionBatch`), read with `completion(_:)`.
    func peek() -> Int {
        peeked = Int(io_uring_peek_batch_cqe(ring, completions, UInt32(Self.completionBatch)))
        return peeked
    }

    @inline(__always)
    func completion(_ index: Int) -> (token: UInt64, result: Int32, flags: UInt32) {
        let cqe = completions[index]!.pointee
        return (cqe.user_data, cqe.res, cqe.flags)
    }

    /// The frame of a completion that carries a buffer, and remembers that buffer for return.
    @inline(__always)
    func takeFrame(result: Int32, flags: UInt32) -> UnsafeRawBufferPointer? {
        guard flags & Self.completionHasBuffer != 0 else { return nil }
        let id = UInt16(truncatingIfNeeded: flags >> UInt32(IORING_CQE_BUFFER_SHIFT))
        returned[returnedCount] = id
        returnedCount += 1
        guard result > 0 else { return nil }
        let length = min(Int(result), IngressTuning.frameBufferSize)
        return UnsafeRawBufferPointer(start: buffers + Int(id) * IngressTuning.frameBufferSize, count: length)
    }

    /// Returns the batch's buffers to the kernel and consumes its completions. Call after the
    /// transmits pointing into those buffers were sent.
    func finishBatch() {
        let mask = io_uring_buf_ring_mask(Self.bufferCount)
        let size = IngressTuning.frameBufferSize
        for offset in 0..<returnedCount {
            let id = returned[offset]
            io_uring_buf_ring_add(bufferRing, buffers + Int(id) * size, UInt32(size), id, mask, Int32(offset))
        }
        io_uring_buf_ring_advance(bufferRing, Int32(returnedCount))
        returnedCount = 0
        io_uring_cq_advance(ring, UInt32(peeked))
        peeked = 0
    }
}
