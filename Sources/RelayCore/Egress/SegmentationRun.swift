/// Which datagrams of one output may share a UDP GSO send: the kernel cuts a GSO message into
/// segments of the first datagram's size, so every datagram but the last must have exactly that
/// size; a shorter one can only close the run. At most `maximumSegments` datagrams
/// (UDP_MAX_SEGMENTS on older kernels; newer ones allow 128) and `maximumBytes` of payload.
public struct SegmentationRun: Sendable {
    public static let maximumSegments = 64
    public static let maximumBytes = 65507

    public let segmentSize: Int
    public var count: Int { segments }
    @usableFromInline var segments = 1
    public var payloadBytes: Int { bytes }
    @usableFromInline var bytes: Int
    /// A shorter datagram ended the run.
    public var closed: Bool { isClosed }
    @usableFromInline var isClosed = false

    @inlinable @inline(__always)
    public init(first length: Int) {
        segmentSize = length
        bytes = length
    }

    /// Adds the next datagram if it may follow; false (nothing changed) when it may not.
    @inlinable @inline(__always)
    public mutating func admit(_ length: Int) -> Bool {
        guard !isClosed, segments < Self.maximumSegments, length <= segmentSize, bytes + length <= Self.maximumBytes else {
            return false
        }
        segments += 1
        bytes += length
        if length < segmentSize { isClosed = true }
        return true
    }
}
