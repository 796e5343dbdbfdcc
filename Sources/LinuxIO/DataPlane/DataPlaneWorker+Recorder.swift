import CLinuxNet
import Glibc
import RelayControl
import RelayCore

/// The flight recorder in a worker: started and stopped by the supervisor; the frames
/// themselves are recorded in `handle(frame:slot:)` (see `FrameRecorder`).
extension DataPlaneWorker {
    func startRecording(_ assignment: WorkerRecordingAssignment) {
        if let old = recorder, old.assignment.session == assignment.session {
            old.raiseBudget(to: assignment.budgetBytes)  // a grant of more room
            return
        }
        stopRecording()
        let recorder = FrameRecorder(assignment: assignment, worker: worker.rawValue)
        recorder.assign(interfaces: inputs.map(\.assignment.interface.rawValue))
        self.recorder = recorder
        if let status = recorder.takeStatus() { _ = channel.send(.recordStatus(status)) }
    }

    /// Flushes and closes the files and sends the final status.
    func stopRecording() {
        guard let recorder else { return }
        self.recorder = nil
        _ = channel.send(.recordStatus(recorder.close()))
    }

    /// After a batch and on idle turns: write buffers out when due, tell the supervisor how far
    /// it got (rate-limited), and stop by ourselves once full (the supervisor ends the session).
    func recordingTick() {
        guard let recorder else { return }
        recorder.flushIfDue()
        if let status = recorder.takeStatus() { _ = channel.send(.recordStatus(status)) }
        if recorder.isFull { stopRecording() }
    }
}
