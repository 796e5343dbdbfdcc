/// How a worker reads its AF_PACKET sockets. Both stay selectable (env `MCRELAY_INGRESS`) so
/// both stay tested. On the lab the two measured the same (kernel UDP sends dominate, see
/// DataPlaneOverview.swift); io_uring is the default because a busy turn costs one
/// io_uring_enter instead of a poll plus a recvmmsg per socket, which matters with many input
/// interfaces. Where io_uring is unavailable the worker falls back to recvmmsg and says so.
public enum IngressMode: String, Sendable, CaseIterable, CustomStringConvertible {
    /// `poll` + non-blocking `recvmmsg` in batches of `RecvmmsgReceiver.batchSize`.
    case recvmmsg
    /// io_uring multishot `recv` into a registered provided-buffer ring.
    case uring

    public static let `default`: IngressMode = .uring
    public static let environmentVariable = "MCRELAY_INGRESS"

    public var description: String { rawValue }

    /// The mode named by `MCRELAY_INGRESS` (unset or empty: the default); a value that names no
    /// mode is an error that names the variable and the allowed values.
    public static func fromEnvironment(_ value: String?) -> Result<IngressMode, IngressModeError> {
        guard let value, !value.isEmpty else { return .success(.default) }
        guard let mode = IngressMode(rawValue: value) else { return .failure(IngressModeError(value: value)) }
        return .success(mode)
    }
}

public struct IngressModeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var value: String
    public var description: String {
        "\(IngressMode.environmentVariable)=\"\(value)\" is not an ingress mode (use "
            + IngressMode.allCases.map(\.rawValue).joined(separator: " or ") + ")"
    }
}

/// Sizes shared by both ingress paths.
enum IngressTuning {
    /// Frame buffer size: a 9000-byte jumbo frame plus headroom. Larger frames arrive
    /// truncated and are counted as `truncated` drops by the Forwarder.
    static let frameBufferSize = 9216
}
