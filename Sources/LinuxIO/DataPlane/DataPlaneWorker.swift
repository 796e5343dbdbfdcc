import CLinuxNet
import Glibc
import RelayControl
import RelayCore

/// One worker's data plane: a single-threaded poll loop over the supervisor channel and the
/// ingress sockets (or the io_uring that reads them). It installs plans into a `Forwarder`
/// (which keeps counters across plans), keeps one AF_PACKET socket open per assigned input
/// interface, forwards frames through the egress socket pool, and answers statistics.
///
/// `WorkerProcess.run` wraps this for the `mcrelay worker` process; tests run it on a thread
/// (after `setns` into a lab namespace) and get the exit reason back.
public final class DataPlaneWorker {
    public enum Exit: Equatable, Sendable {
        /// The supervisor sent `.shutdown`.
        case shutdown
        /// The channel reached end of stream: the supervisor is gone, so must the worker be.
        case channelClosed
        /// The channel carried bytes that are not a message.
        case channelFailed(String)

        /// Process exit status: 0 for an orderly end, 1 for a broken channel.
        public var status: Int32 {
            switch self {
            case .shutdown, .channelClosed: 0
            case .channelFailed: 1
            }
        }
    }

    /// One assigned input interface (index = ingress slot = its index in `plan.ingress`).
    struct Input {
        var assignment: IngressAssignment
        var socket: IngressSocket?
        /// io_uring user_data of this socket's multishot receive (unique per opened socket).
        var token: UInt64 = 0
        var armed = false
        /// An error a completion reported, handled after its batch.
        var pendingError: Int32 = 0
        var nextRetry: Int64 = 0
        var lastProblem: String?
        /// Kernel drops (receive queue full) not yet reported, and when they last were.
        var unreportedKernelDrops: UInt64 = 0
        var lastDropReport: Int64?
    }

    static let retryIntervalMilliseconds: Int64 = 500
    /// How often kernel drop counters are read, and the least time between two reports.
    static let dropCheckIntervalMilliseconds: Int64 = 1000
    static let dropReportIntervalMilliseconds: Int64 = 10_000
    static let idleTimeoutMilliseconds: Int64 = 1000
    /// Receive batches per socket per loop turn, so the channel is serviced under full load.
    static let batchesPerTurn = 16

    public let worker: WorkerID
    public let ingressMode: IngressMode
    let channel: WorkerChannel
    /// Plan decisions (shared with the simulator's workers) and the Forwarder.
    var core: WorkerCore
    var forwarder: Forwarder {
        get { core.forwarder }
        _modify { yield &core.forwarder }
    }
    let pool: EgressSocketPool
    /// `pool.factsChanges` when the follow outputs' frame sources were last read.
    var seenFactsChanges = 0
    let queue: TransmitQueue
    var inputs: [Input] = []
    let recvmmsg: RecvmmsgReceiver?
    let uring: URingReceiver?
    var nextToken: UInt64 = 1
    var needsSubmit = false
    private var startupProblems: [String] = []
    let receiveBufferBytes: Int32
    private var nextDropCheck: Int64 = 0
    /// Frames the kernel dropped on this worker's ingress sockets because it did not read them
    /// fast enough (loss the Forwarder never sees).
    public private(set) var kernelDrops: UInt64 = 0
    /// The flight recorder, while one runs (DataPlaneWorker+Recorder.swift); nil costs one branch per frame.
    var recorder: FrameRecorder?

    private var pollFDs: UnsafeMutablePointer<pollfd>
    private var pollInputs: UnsafeMutablePointer<Int32>
    private var pollCapacity = 0
    private var pollCount = 0
    var pollDirty = true

    /// Frames received from ingress sockets, and transmits sent / failed (diagnostics).
    public private(set) var framesReceived: UInt64 = 0
    public var transmitsSent: UInt64 { queue.sent }
    public var transmitsFailed: UInt64 { queue.failed }
    /// UDP GSO messages sent (each carrying two or more datagrams).
    public var segmentedSends: UInt64 { queue.segmentedMessages }
    /// Datagrams sent through AF_PACKET egress (included in `transmitsSent`).
    public var packetSends: UInt64 { queue.packetSent }
    public var egressMode: EgressMode { pool.mode }

    /// `channelFD` becomes owned by the worker (set non-blocking, closed at exit).
    /// `segmentation`: where same-size datagrams of an output may be coalesced into UDP GSO
    /// sends (`SegmentationSetting`, `EgressPolicy.segmentation`, `TransmitQueue`).
    /// `receiveBufferBytes`: each ingress socket's receive queue (what absorbs a burst while the
    /// worker is busy or descheduled). `egress`: AF_PACKET egress for multicast outputs, or UDP
    /// sockets only (see `EgressMode`).
    public init(worker: WorkerID, channelFD: Int32, ingressMode: IngressMode = .default,
                segmentation: SegmentationSetting = .default, egress: EgressMode = .default,
                receiveBufferBytes: Int32 = IngressSocket.receiveBufferBytes, startupProblems: [String] = []) {
        self.worker = worker
        pool = EgressSocketPool(mode: egress, segmentation: segmentation)
        self.receiveBufferBytes = receiveBufferBytes
        queue = TransmitQueue()
        self.startupProblems = startupProblems
        channel = WorkerChannel(fd: channelFD)
        core = WorkerCore(worker: worker)
        var mode = ingressMode
        var ring: URingReceiver?
        if mode == .uring {
            do { ring = try URingReceiver() } catch {
                self.startupProblems.append("\(error); falling back to recvmmsg ingress")
                mode = .recvmmsg
            }
        }
        self.ingressMode = mode
        uring = ring
        recvmmsg = mode == .recvmmsg ? RecvmmsgReceiver() : nil
        pollFDs = .allocate(capacity: 1)
        pollInputs = .allocate(capacity: 1)
        pollCapacity = 1
    }

    deinit {
        closeAllInputs()
        pollFDs.deallocate()
        pollInputs.deallocate()
        close(channel.fd)
    }

    // MARK: - Loop

    public func run() -> Exit {
        guard channel.send(.ready(worker, pid: getpid())) else { return .channelClosed }
        for problem in startupProblems { report(problem) }
        let exit = if let uring { runRing(uring) } else { runPoll(recvmmsg!) }
        closeAllInputs()
        stopRecording()
        return exit
    }

    /// recvmmsg ingress: one poll over the channel and every ingress socket per turn.
    private func runPoll(_ receiver: RecvmmsgReceiver) -> Exit {
        var busy = false
        while true {
            if pollDirty { rebuildPollSet() }
            let timeout = busy ? 0 : Int32(nextTimeout(now: DataPlaneClock.milliseconds()))
            let ready = poll(pollFDs, nfds_t(pollCount), timeout)
            if ready < 0 && errno != EINTR { report(DataPlaneSystemError.last("poll", "the worker loop").description) }
            busy = false
            if ready > 0 {
                if pollFDs[0].revents != 0, let exit = serviceChannel() { return exit }
                // A plan installed just now may have closed or renumbered inputs: this turn's
                // poll results no longer match them. The frames wait in their sockets.
                if pollDirty { continue }
                for index in 1..<pollCount where pollFDs[index].revents != 0 {
                    if drain(input: Int(pollInputs[index]), with: receiver) { busy = true }
                }
            }
            retryTimers()
        }
    }

    /// io_uring ingress: the worker sleeps inside io_uring_enter (which also runs the ring's
    /// deferred completion work), and the channel is watched by a multishot poll on the same
    /// ring, so a busy turn costs one io_uring_enter plus the sendmmsg calls.
    private func runRing(_ uring: URingReceiver) -> Exit {
        var busy = false
        var channelArmed = false
        while true {
            if !channelArmed {
                uring.watchChannel(channel.fd)
                channelArmed = true
            }
            if busy {
                uring.submitAndGetEvents()
            } else {
                uring.submitAndWait(milliseconds: nextTimeout(now: DataPlaneClock.milliseconds()))
            }
            needsSubmit = false
            let turn = drainRing(uring)
            busy = turn.frames > 0
            if turn.channelEnded { channelArmed = false }
            if turn.channelReady || turn.channelEnded, let exit = serviceChannel() { return exit }
            retryTimers()
        }
    }

    /// Moves the kernel's per-socket drop counts (PACKET_STATISTICS, which reset on read)
    /// into the worker's totals; statistics answers call this so they are exact.
    func collectKernelDrops() {
        for index in inputs.indices {
            guard let socket = inputs[index].socket, let drops = socket.takeKernelDrops(), drops > 0 else { continue }
            kernelDrops &+= drops
            inputs[index].unreportedKernelDrops &+= drops
        }
    }

    private func retryTimers() {
        let now = DataPlaneClock.milliseconds()
        retryInputs(now: now)
        for problem in pool.retryMissing(now: now) { report(problem) }
        if pool.factsChanges != seenFactsChanges {
            seenFactsChanges = pool.factsChanges
            core.forwarder.refreshFrameSources(pool.frameSource)
        }
        if now >= nextDropCheck { checkKernelDrops(now: now) }
        if recorder != nil { recordingTick() }
    }

    /// Loss before the Forwarder (the socket's receive queue overflowed) is reported to the
    /// supervisor, at most every `dropReportIntervalMilliseconds` per input.
    private func checkKernelDrops(now: Int64) {
        nextDropCheck = now + Self.dropCheckIntervalMilliseconds
        collectKernelDrops()
        for index in inputs.indices {
            guard let socket = inputs[index].socket, inputs[index].unreportedKernelDrops > 0 else { continue }
            if inputs[index].lastDropReport.map({ now - $0 >= Self.dropReportIntervalMilliseconds }) ?? true {
                report("input interface \(socket.interface): the kernel dropped \(inputs[index].unreportedKernelDrops) frames "
                       + "because this worker did not read them fast enough (receive queue full)")
                inputs[index].unreportedKernelDrops = 0
                inputs[index].lastDropReport = now
            }
        }
    }

    private func nextTimeout(now: Int64) -> Int64 {
        var timeout = Self.idleTimeoutMilliseconds
        for input in inputs where input.socket == nil { timeout = min(timeout, max(0, input.nextRetry - now)) }
        if let delay = pool.retryDelay(now: now) { timeout = min(timeout, delay) }
        // Wake for the drop check itself: an idle timeout that ends a millisecond early would
        // otherwise put it off by a whole second.
        if !inputs.isEmpty { timeout = min(timeout, max(0, nextDropCheck - now)) }
        return timeout
    }

    private func rebuildPollSet() {
        let needed = 1 + inputs.count
        if pollCapacity < needed {
            pollFDs.deallocate()
            pollInputs.deallocate()
            pollFDs = .allocate(capacity: needed)
            pollInputs = .allocate(capacity: needed)
            pollCapacity = needed
        }
        pollFDs[0] = pollfd(fd: channel.fd, events: Int16(POLLIN), revents: 0)
        pollInputs[0] = -1
        pollCount = 1
        for (index, input) in inputs.enumerated() {
            guard let socket = input.socket else { continue }
            pollFDs[pollCount] = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
            pollInputs[pollCount] = Int32(index)
            pollCount += 1
        }
        pollDirty = false
    }

    // MARK: - Hot path

    @inline(__always)
    private func handle(frame: UnsafeRawBufferPointer, slot: Int) {
        framesReceived &+= 1
        if let recorder { recorder.record(frame, slot: slot) }
        guard case let .forward(forwarding) = forwarder.decide(frame, link: .rawIP, ingress: slot) else { return }
        let transmits = forwarder.transmits(for: forwarding)
        for index in 0..<transmits.count {
            if queue.isFull { flush() }
            queue.append(transmits[index], pool: pool)
        }
    }

    func flush() {
        queue.flush(pool: pool, forwarder: &forwarder) { report($0) }
        if recorder != nil { recordingTick() }
    }

    /// Reads one socket until it is empty or the turn's budget is spent; true if more may wait.
    private func drain(input index: Int, with receiver: RecvmmsgReceiver) -> Bool {
        guard inputs.indices.contains(index), let socket = inputs[index].socket else { return false }
        for _ in 0..<Self.batchesPerTurn {
            let count = receiver.receive(socket.fd)
            if count < 0 {
                inputFailed(index, code: Int32(-count))
                return false
            }
            for frame in 0..<count { handle(frame: receiver.frame(frame), slot: index) }
            flush()
            if count < RecvmmsgReceiver.batchSize { return false }
        }
        return true
    }

    /// Processes the completions posted so far (within the turn's budget): frames, the ends of
    /// multishot receives (re-armed once their buffers are back), and channel readiness.
    private func drainRing(_ uring: URingReceiver) -> (frames: Int, channelReady: Bool, channelEnded: Bool) {
        var frames = 0
        var channelReady = false
        var channelEnded = false
        for _ in 0..<Self.batchesPerTurn {
            let count = uring.peek()
            if count == 0 { break }
            var rearm = false
            for position in 0..<count {
                let completion = uring.completion(position)
                let frame = uring.takeFrame(result: completion.result, flags: completion.flags)
                if completion.token == URingReceiver.channelToken {
                    channelReady = true
                    if completion.flags & URingReceiver.completionHasMore == 0 { channelEnded = true }
                    continue
                }
                guard completion.token != URingReceiver.internalToken,
                      let index = inputIndex(token: completion.token) else { continue }
                if let frame {
                    handle(frame: frame, slot: index)
                    frames += 1
                }
                if completion.flags & URingReceiver.completionHasMore == 0 {
                    // The multishot request ended: out of buffers (they come back below), or an error.
                    inputs[index].armed = false
                    rearm = true
                    let result = completion.result
                    if result < 0 && result != -ENOBUFS && result != -ECANCELED { inputs[index].pendingError = -result }
                }
            }
            flush()
            uring.finishBatch()
            if rearm {
                for index in inputs.indices where inputs[index].pendingError != 0 {
                    let code = inputs[index].pendingError
                    inputs[index].pendingError = 0
                    inputFailed(index, code: code)
                }
                armInputs()
            }
            if count < URingReceiver.completionBatch { break }
        }
        return (frames, channelReady, channelEnded)
    }

    @inline(__always)
    private func inputIndex(token: UInt64) -> Int? {
        for index in inputs.indices where inputs[index].token == token && inputs[index].socket != nil { return index }
        return nil
    }
}
