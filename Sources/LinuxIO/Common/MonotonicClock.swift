#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayCore

/// The daemon's one clock: CLOCK_MONOTONIC, as the core's `Instant`. Wall-clock time never
/// drives any decision (it jumps).
public enum MonotonicClock {
    public static func now() -> Instant {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Instant(nanoseconds: UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec))
    }
}
