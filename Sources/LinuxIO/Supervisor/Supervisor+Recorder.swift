#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl
import RelayCore

/// The flight recorder in the supervisor: `--record DIR` at launch, `record_start`,
/// `record_stop` and `record_status` on the control socket, and the control-plane events
/// (rule add/remove, config reloads, link changes, join failures, worker crashes) written as
/// they happen. See `FlightRecorder` and `FrameRecorder`.
extension Supervisor {
    /// Starts a recording; a message for the operator when it cannot.
    func startRecording(directory: String, limit: UInt64, now: Instant) -> Result<RecordingView, ControlProtocolError> {
        if let active = flightRecorder, active.isActive {
            return .failure(ControlProtocolError("already recording to \(active.directory); `mcrelay record stop` first"))
        }
        guard limit >= RecordingFormat.minimumLimitBytes else {
            return .failure(ControlProtocolError("record limit \(limit) bytes is below the minimum of \(RecordingFormat.minimumLimitBytes)"))
        }
        guard directory.hasPrefix("/") else {
            return .failure(ControlProtocolError("record directory \"\(directory)\" must be an absolute path (the daemon's working directory is not yours)"))
        }
        let recorder: FlightRecorder
        do {
            recorder = try FlightRecorder(
                directory: directory, limitBytes: limit, session: now.nanoseconds, now: now, workers: workers.count,
                dispatch: options.dispatchMode, rules: core.rules.rules.values.map(\.spec), interfaces: Self.hostInterfaces(),
                membershipLimit: Self.kernelMembershipLimit(), membershipLimitIPv6: core.configuration.socketLimits.ipv6)
        } catch {
            return .failure(ControlProtocolError("cannot record: \(error)"))
        }
        flightRecorder = recorder
        // The simulator starts with every interface up: say which ones were not.
        let usable = Set(links.usable)
        var named = Set<String>()
        for rule in core.rules.rules.values {
            named.insert(rule.input.interface.rawValue)
            for output in rule.outputs { named.insert(output.interface.rawValue) }
        }
        for name in named.sorted() where !usable.contains(name) {
            recorder.event("iface_down", at: now, [("iface", FlightRecorder.json(name))])
        }
        for worker in workers where worker.ready { sendRecordingAssignment(worker) }
        if let xdp {
            // The recorder reads the workers' frames: what the program redirected would be missing.
            xdp.setRecording(true, now: now)
            for problem in xdp.takeProblems() { logger.warning("\(problem)") }
            logger.notice("--data-path xdp: every rule on the packet path while recording (\(XDPDataPath.recordingReason))")
        }
        logger.notice("recording to \(directory) (limit \(limit) bytes: \(recorder.framePool) for frames, granted to the workers as they need it; the rest for events)")
        return .success(recorder.view)
    }

    /// Ends the recording (no-op when none runs).
    func stopRecording(reason: String, now: Instant, completeUntil: UInt64? = nil) {
        guard let recorder = flightRecorder, recorder.isActive else { return }
        recorder.stop(reason: reason, at: now, completeUntil: completeUntil)
        for worker in workers where worker.ready { try? worker.send(.recordStop) }
        let view = recorder.view
        let message = "recording to \(recorder.directory) stopped (\(reason)): \(view.bytes) bytes, \(view.frames) frames, \(view.events) events"
            + (view.framesLost > 0 ? ", \(view.framesLost) frames not recorded" : "")
        if reason == "limit reached" || reason.hasPrefix("error") { logger.warning("\(message)") } else { logger.notice("\(message)") }
        if let xdp, case .running = shutdown {
            xdp.setRecording(false, now: now)
            for problem in xdp.takeProblems() { logger.warning("\(problem)") }
            logger.notice("--data-path xdp: the recording ended, the XDP program carries its rules again")
        }
    }

    var recordingView: RecordingView? { flightRecorder?.view }

    func sendRecordingAssignment(_ worker: WorkerHandle) {
        guard let recorder = flightRecorder, recorder.isActive else { return }
        do { try worker.send(.recordStart(recorder.assignment(worker: worker.id.rawValue))) } catch {
            logger.error("cannot tell \(worker.id) to record: \(error)")
        }
    }

    /// A worker said ready: a new process in its slot, which records from now on too.
    func recordingWorkerReady(_ worker: WorkerHandle) {
        guard let recorder = flightRecorder, recorder.isActive else { return }
        recorder.workerRestarted(worker.id.rawValue)
        sendRecordingAssignment(worker)
    }

    func recordingStatus(_ status: WorkerRecordingStatus, from worker: WorkerHandle, now: Instant) {
        // Counted also after the stop: the workers' final numbers arrive then.
        guard let recorder = flightRecorder else { return }
        let (cut, grant) = recorder.update(worker: worker.id.rawValue, status)
        if let grant { try? worker.send(.recordStart(grant)) }
        guard recorder.isActive, let cut else { return }
        if let error = status.error {
            logger.error("\(worker.id): recording failed: \(error)")
            stopRecording(reason: "error: \(error)", now: now, completeUntil: cut)
        } else if recorder.poolLeft == 0 {
            stopRecording(reason: "limit reached", now: now, completeUntil: cut)
        } else {
            stopRecording(reason: "\(worker.id) filled its room before more was granted (frames faster than the recorder's grants)",
                          now: now, completeUntil: cut)
        }
    }

    /// One control-plane event, in the simulator's events format. An events file that is full
    /// ends the recording at this event.
    func recordEvent(_ name: String, now: Instant, _ fields: [(String, String)]) {
        guard let recorder = flightRecorder, recorder.isActive else { return }
        if !recorder.event(name, at: now, fields) {
            stopRecording(reason: recorder.eventsProblem ?? "limit reached", now: now, completeUntil: recorder.time(now))
        }
    }

    /// `rule_add` or `config_reload`. The simulator's interfaces are up unless told otherwise:
    /// one the rules name that is not up here (missing, down) is written as down first.
    func recordRules(_ name: String, _ specs: [RuleSpec], now: Instant) {
        guard flightRecorder?.isActive == true else { return }
        let usable = Set(links.usable)
        var named = Set<String>()
        for spec in specs {
            named.insert(spec.input.interface.rawValue)
            for output in spec.outputs { named.insert(output.interface.rawValue) }
        }
        for interface in named.sorted() where !usable.contains(interface) {
            recordEvent("iface_down", now: now, [("iface", FlightRecorder.json(interface))])
        }
        if name == "rule_add", specs.count == 1 {
            recordEvent(name, now: now, [("rule", FlightRecorder.json(specs[0]))])
        } else {
            recordEvent(name, now: now, [("rules", "[" + specs.map(FlightRecorder.json).joined(separator: ",") + "]")])
        }
    }

    func recordJoinFailure(_ membership: MembershipKey, _ error: JoinError, now: Instant) {
        guard flightRecorder?.isActive == true else { return }
        var fields = [("iface", FlightRecorder.json(membership.interface.rawValue)), ("group", FlightRecorder.json(membership.group.description))]
        if let source = membership.source { fields.append(("source", FlightRecorder.json(source.description))) }
        // The four errors the core names go by name, any other errno as a number (as the simulator reads them).
        fields.append(("errno", Self.errnoName(error)))
        recordEvent("join_fail", now: now, fields)
    }

    static func errnoName(_ error: JoinError) -> String {
        switch error {
        case .socketFull: "\"ENOBUFS\""
        case .noSuchDevice: "\"ENODEV\""
        case .alreadyMember: "\"EADDRINUSE\""
        case .notAvailable: "\"EADDRNOTAVAIL\""
        case let .other(code): String(code)
        }
    }

    /// index <-> name of every interface of the host now.
    static func hostInterfaces() -> [RecordingManifest.Interface] {
        guard let list = if_nameindex() else { return [] }
        defer { if_freenameindex(list) }
        var result: [RecordingManifest.Interface] = []
        let probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { if probe >= 0 { close(probe) } }
        var entry = list
        while entry.pointee.if_index != 0, let name = entry.pointee.if_name {
            let text = String(cString: name)
            var facts: InterfaceFacts?
            if probe >= 0, let interface = InterfaceName(text), case let .success(read) = InterfaceFactsReader.read(interface, probe: probe) {
                facts = read
            }
            result.append(.init(index: Int(entry.pointee.if_index), name: text, facts: facts))
            entry += 1
        }
        return result.sorted { $0.index < $1.index }
    }

    /// `record_start`, `record_stop`, `record_status`.
    func handleRecordRequest(_ request: ControlRequest, from client: ControlConnection, now: Instant) {
        var reply = ControlReply(ok: true)
        switch request.op {
        case .recordStart:
            guard let path = request.path, !path.isEmpty else {
                return client.send(.failure("record_start needs \"path\": the directory to record into"))
            }
            switch startRecording(directory: path, limit: request.limit ?? RecordingFormat.defaultLimitBytes, now: now) {
            case let .success(view): reply.recording = view
            case let .failure(error): return client.send(.failure(error.message))
            }
        case .recordStop:
            guard flightRecorder?.isActive == true else { return client.send(.failure("not recording")) }
            stopRecording(reason: "record stop", now: now)
            reply.recording = recordingView
        default:
            reply.recording = recordingView ?? RecordingView(active: false)
        }
        client.send(reply)
    }
}
