#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl

/// The worker's half of the flight recorder: the frames it reads, one pcap file per input
/// interface (`ingress-IFACE.wN.pPID.pcap`, LINKTYPE_RAW because AF_PACKET SOCK_DGRAM hands
/// over the IPv4 packet without a link header, nanosecond timestamps).
///
/// Per packet it only stamps the time (vDSO clock_gettime) and copies the frame into the
/// file's preallocated buffer: no allocation, no system call. Each file has two buffers: once
/// the active one holds `flushThreshold` bytes or has waited `flushIntervalNs` (`flushIfDue`,
/// after each receive batch and on idle turns), it goes to a writer thread
/// (`RecordingDiskWriter`) and the other one takes the frames, so the worker never waits on the
/// disk. A frame that does not fit in the budget, or in the buffer because the disk is behind,
/// is not recorded and counted in `lost`; from then on the recorder records nothing more and
/// reports the time it happened, so the supervisor ends the recording at a consistent cut.
///
/// With several workers in one PACKET_FANOUT group, each records the share of an interface it
/// reads; the simulator merges the files by timestamp. All timestamps are CLOCK_MONOTONIC plus
/// the recording's `clockOffsetNs`, the same clock the supervisor stamps events with.
public final class FrameRecorder {
    struct File {
        let interface: String
        let name: String
        let fd: Int32
        let buffers: (UnsafeMutableRawPointer, UnsafeMutableRawPointer)
        var active = 0
        var used = 0
        var buffer: UnsafeMutableRawPointer { active == 0 ? buffers.0 : buffers.1 }
    }

    /// Per file: room for a full io_uring completion batch (256) of 1500-byte frames and more.
    public static let bufferBytes = 1 << 20
    public static let flushThreshold = 64 << 10
    public static let flushIntervalNs: UInt64 = 200_000_000
    /// Status messages to the supervisor: at most this often, except when full or stopped.
    static let statusIntervalNs: UInt64 = 100_000_000
    static let globalHeaderBytes = 24
    static let recordHeaderBytes = 16
    /// LINKTYPE_RAW: the packet starts at the IPv4 header.
    static let linkTypeRaw: UInt32 = 101

    public let assignment: WorkerRecordingAssignment
    /// Bytes this process may put into its files; raised by the supervisor's grants.
    public private(set) var budgetBytes: UInt64
    /// Ask for more room (send a status) once this much is committed.
    private var askAt: UInt64
    let worker: Int
    let pid: Int32
    private var files: [File] = []
    /// Ingress slot -> index in `files` (-1: not recorded).
    private var slotFile: UnsafeMutablePointer<Int>
    private var slotCapacity = 0
    private var slotCount = 0
    /// Bytes written to disk plus bytes waiting in buffers: never above the budget.
    private var committed: UInt64 = 0
    private var lastFlush: UInt64 = 0
    private var lastStatus: UInt64 = 0
    public private(set) var status: WorkerRecordingStatus
    /// A status the supervisor has not been sent yet (taken with `takeStatus`).
    private var statusDue = false
    private let writer = RecordingDiskWriter()

    public init(assignment: WorkerRecordingAssignment, worker: Int, pid: Int32 = getpid()) {
        self.assignment = assignment
        self.worker = worker
        self.pid = pid
        status = WorkerRecordingStatus(session: assignment.session)
        budgetBytes = assignment.budgetBytes
        askAt = assignment.budgetBytes / 2
        slotFile = .allocate(capacity: 1)
        slotCapacity = 1
        lastFlush = now()
    }

    deinit {
        close()
        slotFile.deallocate()
    }

    public var isFull: Bool { status.fullAtNs != nil || status.error != nil }

    /// The supervisor granted more room.
    public func raiseBudget(to bytes: UInt64) {
        guard bytes > budgetBytes else { return }
        budgetBytes = bytes
        askAt = committed + (budgetBytes - committed) / 2
    }

    /// The recording clock: CLOCK_MONOTONIC + the recording's offset to CLOCK_REALTIME.
    @inline(__always)
    func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec) + assignment.clockOffsetNs)
    }

    /// The worker's input interfaces by ingress slot (after each plan). Opens a file for each
    /// interface not seen yet; files of interfaces no longer read stay open until `close`.
    public func assign(interfaces: [String]) {
        if slotCapacity < interfaces.count {
            slotFile.deallocate()
            slotFile = .allocate(capacity: interfaces.count)
            slotCapacity = interfaces.count
        }
        slotCount = interfaces.count
        for (slot, interface) in interfaces.enumerated() {
            if let existing = files.firstIndex(where: { $0.interface == interface }) {
                slotFile[slot] = existing
            } else if let file = open(interface) {
                files.append(file)
                slotFile[slot] = files.count - 1
            } else {
                slotFile[slot] = -1
            }
        }
    }

    private func open(_ interface: String) -> File? {
        guard !isFull else { return nil }
        let path = assignment.directory + "/" + RecordingFormat.pcapFileName(interface: interface, worker: worker, pid: pid)
        guard committed + UInt64(Self.globalHeaderBytes) <= budgetBytes else {
            markFull()
            return nil
        }
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            fail(SystemError.last("open \(path)").description)
            return nil
        }
        let file = File(interface: interface, name: path, fd: fd,
                        buffers: (.allocate(byteCount: Self.bufferBytes, alignment: 16), .allocate(byteCount: Self.bufferBytes, alignment: 16)))
        // Global header: nanosecond magic, version 2.4, no zone, snaplen, LINKTYPE_RAW.
        var header = [UInt8](repeating: 0, count: Self.globalHeaderBytes)
        store(&header, 0, UInt32(0xa1b2_3c4d))
        store(&header, 4, UInt32(2) | UInt32(4) << 16)
        store(&header, 16, UInt32(262_144))
        store(&header, 20, Self.linkTypeRaw)
        header.withUnsafeBytes { file.buffer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        var opened = file
        opened.used = Self.globalHeaderBytes
        committed += UInt64(Self.globalHeaderBytes)
        return opened
    }

    private func store(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { for i in 0..<4 { bytes[offset + i] = $0[i] } }
    }

    // MARK: - Hot path

    /// Records one frame read on ingress `slot`. No allocation, no system call.
    @inline(__always)
    public func record(_ frame: UnsafeRawBufferPointer, slot: Int) {
        guard slot < slotCount, !isFull else { return }
        let index = slotFile[slot]
        guard index >= 0 else { return }
        let size = Self.recordHeaderBytes + frame.count
        let time = now()
        guard committed + UInt64(size) <= budgetBytes else {
            status.lost &+= 1
            status.fullAtNs = time
            statusDue = true
            return
        }
        guard files[index].used + size <= Self.bufferBytes else {
            status.lost &+= 1
            status.fullAtNs = time
            status.error = "the \(Self.bufferBytes)-byte recording buffer of \(files[index].interface) filled up before the disk writer caught up"
            statusDue = true
            return
        }
        let base = files[index].buffer + files[index].used
        base.storeBytes(of: UInt32(truncatingIfNeeded: time / 1_000_000_000).littleEndian, toByteOffset: 0, as: UInt32.self)
        base.storeBytes(of: UInt32(truncatingIfNeeded: time % 1_000_000_000).littleEndian, toByteOffset: 4, as: UInt32.self)
        base.storeBytes(of: UInt32(frame.count).littleEndian, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt32(frame.count).littleEndian, toByteOffset: 12, as: UInt32.self)
        if let source = frame.baseAddress { (base + Self.recordHeaderBytes).copyMemory(from: source, byteCount: frame.count) }
        files[index].used += size
        committed += UInt64(size)
        status.frames &+= 1
        if committed >= askAt {
            askAt = .max
            statusDue = true
        }
    }

    // MARK: - Writing out

    /// After a receive batch: writes the buffers out when one is past the threshold or the
    /// interval has passed.
    @inline(__always)
    public func flushIfDue() {
        var due = false
        for index in files.indices where files[index].used >= Self.flushThreshold { due = true }
        if due || now() &- lastFlush >= Self.flushIntervalNs { flush() }
    }

    /// Hands the filled buffers to the writer thread and switches to their twins; when the
    /// writer is still busy with the previous ones, the frames wait in the active buffers.
    public func flush() {
        lastFlush = now()
        if lastFlush &- lastStatus >= Self.statusIntervalNs { statusDue = true }
        if let error = writer.error { return fail(error) }
        guard !writer.isBusy else { return }
        var jobs: [RecordingDiskWriter.Job] = []
        for index in files.indices where files[index].used > 0 {
            jobs.append(.init(fd: files[index].fd, buffer: files[index].buffer, count: files[index].used, name: files[index].name))
            files[index].active ^= 1
            files[index].used = 0
        }
        writer.submit(jobs)
    }

    /// The status to send to the supervisor, if one is due.
    public func takeStatus() -> WorkerRecordingStatus? {
        guard statusDue else { return nil }
        status.bytes = committed
        statusDue = false
        lastStatus = now()
        return status
    }

    /// Writes what is left (waiting for the writer thread) and closes every file; returns the
    /// final status.
    @discardableResult
    public func close() -> WorkerRecordingStatus {
        writer.finish()
        if let error = writer.error { fail(error) }
        for file in files {
            if status.error == nil, file.used > 0,
               let error = RecordingDiskWriter.write(.init(fd: file.fd, buffer: file.buffer, count: file.used, name: file.name)) {
                fail(error)
            }
            Descriptors.close(file.fd)
            file.buffers.0.deallocate()
            file.buffers.1.deallocate()
        }
        files.removeAll()
        slotCount = 0
        statusDue = false
        status.bytes = committed
        return status
    }

    private func markFull() {
        if status.fullAtNs == nil { status.fullAtNs = now() }
        statusDue = true
    }

    private func fail(_ message: String) {
        if status.error == nil { status.error = message }
        if status.fullAtNs == nil { status.fullAtNs = now() }
        statusDue = true
    }
}
