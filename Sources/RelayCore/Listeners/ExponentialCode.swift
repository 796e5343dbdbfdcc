/// The floating-point codes of IGMPv3 Max Resp Code and QQIC (RFC 3376 4.1.1, 4.1.7) and of
/// MLDv2 Max Response Code (RFC 3810 5.1.3; its QQIC is the IGMPv3 one). Below the threshold
/// the code is the value; above it, `1 | exp | mant` stands for `(mant | 1 << width) << (exp + 3)`.
public enum ExponentialCode {
    /// 8-bit: values 0...31744.
    public static func decode8(_ code: UInt8) -> Int {
        code < 128 ? Int(code) : (Int(code & 0x0F) | 0x10) << (Int(code >> 4 & 0x07) + 3)
    }

    /// 16-bit: values 0...8387584.
    public static func decode16(_ code: UInt16) -> Int {
        code < 32768 ? Int(code) : (Int(code & 0x0FFF) | 0x1000) << (Int(code >> 12 & 0x07) + 3)
    }

    /// The largest code whose value does not exceed `value` (rounding down, so a response
    /// deadline is never later than asked); values past the range give the largest code.
    public static func encode8(_ value: Int) -> UInt8 {
        guard value >= 128 else { return UInt8(max(value, 0)) }
        for exp in 0..<8 {
            let mantissa = value >> (exp + 3)
            if mantissa < 0x20 { return 0x80 | UInt8(exp) << 4 | UInt8(mantissa & 0x0F) }
        }
        return 0xFF
    }

    public static func encode16(_ value: Int) -> UInt16 {
        guard value >= 32768 else { return UInt16(max(value, 0)) }
        for exp in 0..<8 {
            let mantissa = value >> (exp + 3)
            if mantissa < 0x2000 { return 0x8000 | UInt16(exp) << 12 | UInt16(mantissa & 0x0FFF) }
        }
        return 0xFFFF
    }
}
