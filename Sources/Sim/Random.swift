/// The simulator's only source of randomness: xoshiro256** seeded through SplitMix64, so one
/// `UInt64` seed fixes a whole run on every platform. `SystemRandomNumberGenerator` is never
/// used, and each consumer gets its own stream (`fork`) so that, say, adding a fault draw does
/// not shift the traffic generator's numbers.
public struct SimRandom: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(seed: UInt64) {
        var mixer = SplitMix64(state: seed)
        s0 = mixer.next(); s1 = mixer.next(); s2 = mixer.next(); s3 = mixer.next()
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// An independent stream for one consumer, derived from this seed and a label.
    public static func stream(seed: UInt64, label: String) -> SimRandom {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in label.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return SimRandom(seed: seed ^ hash)
    }

    /// True with probability `p` (0 never draws true, and still consumes one number so the
    /// stream stays aligned whatever the probabilities are).
    @inline(__always)
    public mutating func chance(_ p: Double) -> Bool {
        let draw = Double(next() >> 11) * 0x1.0p-53
        return draw < p
    }

    /// Uniform in 0..<bound without modulo bias (Lemire).
    @inline(__always)
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0)
        return Int(truncatingIfNeeded: next().multipliedFullWidth(by: UInt64(bound)).high)
    }

    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// FNV-1a 64: the simulator's content hash for egress records and determinism checks
/// (stable across runs and platforms; not for security).
public struct FNV64: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}
    @inline(__always) public mutating func add(_ byte: UInt8) {
        value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }
    public mutating func add(_ bytes: UnsafeRawBufferPointer) { for byte in bytes { add(byte) } }
    public mutating func add(_ word: UInt64) {
        var w = word
        for _ in 0..<8 { add(UInt8(truncatingIfNeeded: w)); w >>= 8 }
    }
    mutating func set(_ newValue: UInt64) { value = newValue }
    public var hex: String { String(value, radix: 16).leftPadded(16) }
}

extension String {
    func leftPadded(_ width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
