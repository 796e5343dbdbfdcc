import Foundation
import RelayCore

/// Messages from the supervisor to a worker process over their socketpair.
public enum SupervisorMessage: Codable, Equatable, Sendable {
    /// Run this plan (replacing the current one); answer `.installed(version)`.
    case install(WorkerPlan)
    /// Apply this listener gate change; answer `.gates(version)` (or `.gatesBehind(version)`
    /// when the worker holds less than the delta's base).
    case gates(GateDelta)
    /// Answer `.statistics(requestID, ...)` with the worker's counters.
    case statisticsRequest(requestID: UInt64)
    /// Close sockets and exit 0.
    case shutdown
    /// Flight recorder: write the frames read from now on (see `Recording.swift`).
    case recordStart(WorkerRecordingAssignment)
    /// Flight recorder: flush and close the files; answer `.recordStatus`.
    case recordStop
    /// Netlink says this interface just became usable (up with carrier, or newly created): retry
    /// at once what waits for it — ingress sockets that could not be opened, egress sockets that
    /// are missing, packet egress's view of the interface — instead of at the next retry timer.
    /// No answer.
    case linkUp(InterfaceName)
}

/// Messages from a worker process to the supervisor.
public enum WorkerMessage: Codable, Equatable, Sendable {
    /// Sent once at start, before anything else.
    case ready(WorkerID, pid: Int32)
    /// The plan with this version is installed and its sockets are open.
    case installed(version: UInt64)
    /// The worker holds listener gates up to this version.
    case gates(version: UInt64)
    /// The worker refused a gate delta: it holds gates only up to this version.
    case gatesBehind(version: UInt64)
    case statistics(requestID: UInt64, ForwardingStatistics)
    /// A problem the operator should see (an interface that cannot be opened, ...).
    case problem(String)
    /// Flight recorder: what was written so far (after each write, and once stopped).
    case recordStatus(WorkerRecordingStatus)
}

/// Length-prefixed JSON framing for the supervisor/worker channel (a SOCK_STREAM
/// socketpair): a 4-byte big-endian length, then that many bytes of JSON.
public enum MessageFraming {
    /// Plans for tens of thousands of rules fit well within this; anything larger is a bug
    /// or a corrupted stream.
    public static let maximumMessageSize = 64 << 20

    public static func encode<M: Encodable>(_ message: M) throws -> [UInt8] {
        let body = try JSONEncoder().encode(message)
        guard body.count <= maximumMessageSize else { throw FramingError.tooLarge(body.count) }
        let length = UInt32(body.count)
        return [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16),
                UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)] + body
    }
}

public enum FramingError: Error, Equatable, CustomStringConvertible {
    case tooLarge(Int)
    case malformed(String)

    public var description: String {
        switch self {
        case let .tooLarge(size): "message of \(size) bytes exceeds the \(MessageFraming.maximumMessageSize)-byte limit"
        case let .malformed(detail): "malformed message: \(detail)"
        }
    }
}

/// Reassembles framed messages from a byte stream that arrives in arbitrary pieces.
public struct MessageReassembler<Message: Decodable> {
    private var buffer: [UInt8] = []

    public init() {}

    public mutating func append(_ bytes: some Sequence<UInt8>) { buffer.append(contentsOf: bytes) }

    /// The next complete message, nil if more bytes are needed. A length over the limit or
    /// undecodable JSON throws; the stream cannot be resynchronised after that.
    public mutating func next() throws(FramingError) -> Message? {
        guard buffer.count >= 4 else { return nil }
        let length = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
        guard length <= MessageFraming.maximumMessageSize else { throw .tooLarge(length) }
        guard buffer.count >= 4 + length else { return nil }
        let body = Data(buffer[4..<(4 + length)])
        buffer.removeFirst(4 + length)
        do { return try JSONDecoder().decode(Message.self, from: body) } catch {
            throw .malformed(String(describing: error))
        }
    }
}
