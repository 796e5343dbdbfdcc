import CLinuxNet
import Glibc
import RelayCore

/// Entry point of the `mcrelay worker --id N --channel-fd FD` process.
public enum WorkerProcess {
    /// Runs the worker's data plane until the supervisor sends `.shutdown` or the channel
    /// closes (the supervisor died: a worker must not outlive it), then exits the process
    /// (0 for those, 1 for a corrupted channel, 2 when `channelFD` is not a stream socket). The ingress mode comes from
    /// `MCRELAY_INGRESS` (`recvmmsg` or `uring`; an unknown value is reported to the
    /// supervisor and the default is used), UDP GSO on egress from `MCRELAY_SEGMENTATION`
    /// (`auto`, the default, `off` or `on`; see `SegmentationSetting`), and the egress path
    /// from `MCRELAY_EGRESS` (`packet`, the default, or `udp`; see `EgressMode`).
    public static func run(worker: WorkerID, channelFD: Int32) -> Never {
        // A closed channel must surface as EPIPE from send(), not kill the process.
        signal(SIGPIPE, SIG_IGN)
        // A descriptor that is not an open stream socket is a launch mistake, not a supervisor
        // that went away: say so on stderr and exit 2 (the supervisor logs the worker's stderr).
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(channelFD, SOL_SOCKET, SO_TYPE, &type, &length) == 0, type == Int32(SOCK_STREAM.rawValue) else {
            let reason = fcntl(channelFD, F_GETFD) < 0 ? "is not open" : "is not a stream socket"
            let message = Array("mcrelay worker \(worker.rawValue): --channel-fd \(channelFD) \(reason)\n".utf8)
            _ = message.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
            Glibc.exit(2)
        }
        let setting = getenv(IngressMode.environmentVariable).map { String(cString: $0) }
        var modeProblem: String?
        let mode: IngressMode
        switch IngressMode.fromEnvironment(setting) {
        case let .success(value): mode = value
        case let .failure(error):
            mode = .default
            modeProblem = "\(error); using \(IngressMode.default)"
        }
        var problems = modeProblem.map { [$0] } ?? []
        let segmentationSetting = getenv(SegmentationSetting.environmentVariable).map { String(cString: $0) }
        let segmentation: SegmentationSetting
        switch SegmentationSetting.fromEnvironment(segmentationSetting) {
        case let .success(value): segmentation = value
        case let .failure(error):
            segmentation = .default
            problems.append(error.description)
        }
        let egressSetting = getenv(EgressMode.environmentVariable).map { String(cString: $0) }
        let egress: EgressMode
        switch EgressMode.fromEnvironment(egressSetting) {
        case let .success(value): egress = value
        case let .failure(error):
            egress = .default
            problems.append(error.description)
        }
        let exit = DataPlaneWorker(worker: worker, channelFD: channelFD, ingressMode: mode, segmentation: segmentation,
                                   egress: egress, startupProblems: problems).run()
        Glibc.exit(exit.status)
    }
}
