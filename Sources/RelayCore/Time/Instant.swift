/// A point on the driver's monotonic clock, in nanoseconds from an arbitrary origin.
/// The core never reads a clock: every input that needs time carries one of these.
public struct Instant: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var nanoseconds: UInt64

    @inlinable public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    public static let zero = Instant(nanoseconds: 0)

    @inlinable public static func < (lhs: Self, rhs: Self) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    /// Saturating: a deadline far in the future must not wrap into the past.
    @inlinable public static func + (lhs: Self, rhs: Duration) -> Self {
        let (seconds, attoseconds) = rhs.components
        guard seconds >= 0 else { return lhs }
        let (wholeNanos, overflow1) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, overflow2) = lhs.nanoseconds.addingReportingOverflow(wholeNanos &+ UInt64(attoseconds / 1_000_000_000))
        return Instant(nanoseconds: overflow1 || overflow2 ? .max : sum)
    }

    @inlinable public func duration(since earlier: Instant) -> Duration {
        guard nanoseconds >= earlier.nanoseconds else { return .zero }
        return .nanoseconds(Int64(clamping: nanoseconds - earlier.nanoseconds))
    }

    public var description: String {
        let ms = nanoseconds / 1_000_000
        return "t=\(ms / 1000).\(String(ms % 1000).leftPadded(to: 3))s"
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
