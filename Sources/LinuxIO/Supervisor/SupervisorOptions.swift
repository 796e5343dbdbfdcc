import RelayCore
import RelayControl

/// What `mcrelay daemon` was asked to do.
public struct SupervisorOptions: Sendable {
    public var controlPath: String
    public var configPath: String?
    public var workerCount: Int
    public var dispatchMode: DispatchMode
    /// The program workers are started from (`<it> worker --id N --channel-fd 3`).
    public var workerExecutable: String
    /// `--metrics`: serve Prometheus metrics over HTTP here (nil: off).
    public var metricsAddress: MetricsAddress?
    /// `--record DIR`: start the flight recorder at launch; `--record-limit` bounds it.
    public var recordDirectory: String?
    public var recordLimitBytes: UInt64 = RecordingFormat.defaultLimitBytes
    /// `--data-path xdp`: the BPF object to load and attach (nil: `--data-path packet`).
    public var xdpObject: String?
    public var xdpMode: XDPDataPath.Mode = .native
    /// `--input-napi` (InputNAPIThreads.swift).
    public var inputNAPI: InputNAPISetting = .default
    /// `--input-napi-nice` (InputNAPIThreadPriority.swift).
    public var inputNAPINice: Int32 = InputNAPIThreadPriority.defaultNice
    /// `--worker-nice` (WorkerPriority.swift).
    public var workerNice: Int32 = WorkerPriority.defaultNice

    public init(controlPath: String = ControlProtocol.defaultSocketPath, configPath: String? = nil,
                workerCount: Int, dispatchMode: DispatchMode = .fanout, workerExecutable: String = "/proc/self/exe") {
        self.controlPath = controlPath
        self.configPath = configPath
        self.workerCount = workerCount
        self.dispatchMode = dispatchMode
        self.workerExecutable = workerExecutable
    }
}

/// Why the daemon could not start; `description` is the one line printed before exiting.
public struct SupervisorStartError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
