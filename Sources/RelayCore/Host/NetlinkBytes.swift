/// A kernel answer over netlink that a decoder here could not believe: what and where.
public struct NetlinkProblem: Error, Equatable, Sendable {
    public var message: String
    init(_ message: String) { self.message = message }
}

/// Netlink's framing, read and written by offset for the decoders of kernel answers
/// (`NAPIThreadDump`, `LinkCounters`), so a fuzzer can feed them anything: every length is
/// checked before it is used. Netlink is in host byte order, little-endian on every platform
/// mcrelay builds for (x86-64, arm64).
enum NetlinkBytes {
    static let headerLength = 16
    static let error: UInt16 = 2, done: UInt16 = 3  // NLMSG_ERROR, NLMSG_DONE
    static let request: UInt16 = 0x1  // NLM_F_REQUEST

    static func header(length: Int, type: UInt16, flags: UInt16, sequence: UInt32) -> [UInt8] {
        le32(UInt32(length)) + le16(type) + le16(flags) + le32(sequence) + le32(0)
    }

    /// One attribute, padded to 4 bytes.
    static func attribute(_ type: UInt16, _ value: [UInt8]) -> [UInt8] {
        le16(UInt16(4 + value.count)) + le16(type) + value + [UInt8](repeating: 0, count: (4 - value.count % 4) % 4)
    }

    /// Calls `each` with every message's type and body; a length that does not fit is a problem.
    static func walk(_ bytes: [UInt8], _ each: (UInt16, ArraySlice<UInt8>) -> Result<Void, NetlinkProblem>) -> Result<Void, NetlinkProblem> {
        var at = 0
        while at < bytes.count {
            guard bytes.count - at >= headerLength else { return .failure(NetlinkProblem("\(bytes.count - at) bytes left at offset \(at), less than a netlink header")) }
            let length = Int(u32(bytes[...], at))
            guard length >= headerLength, length <= bytes.count - at else {
                return .failure(NetlinkProblem("a netlink message at offset \(at) says \(length) bytes; \(bytes.count - at) are left"))
            }
            let type = UInt16(bytes[at + 4]) | UInt16(bytes[at + 5]) << 8
            if case let .failure(problem) = each(type, bytes[(at + headerLength)..<(at + length)]) { return .failure(problem) }
            at += (length + 3) & ~3
        }
        return .success(())
    }

    /// Calls `each` with every attribute's type (flags masked off) and value.
    static func attributes(_ bytes: ArraySlice<UInt8>, _ each: (UInt16, ArraySlice<UInt8>) -> Result<Void, NetlinkProblem>) -> Result<Void, NetlinkProblem> {
        var at = bytes.startIndex
        while at < bytes.endIndex {
            guard bytes.endIndex - at >= 4 else { return .failure(NetlinkProblem("\(bytes.endIndex - at) bytes left, less than an attribute header")) }
            let length = Int(UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8)
            let type = (UInt16(bytes[at + 2]) | UInt16(bytes[at + 3]) << 8) & 0x3fff  // NLA_TYPE_MASK
            guard length >= 4, length <= bytes.endIndex - at else {
                return .failure(NetlinkProblem("an attribute says \(length) bytes; \(bytes.endIndex - at) are left"))
            }
            if case let .failure(problem) = each(type, bytes[(at + 4)..<(at + length)]) { return .failure(problem) }
            at += min((length + 3) & ~3, bytes.endIndex - at)
        }
        return .success(())
    }

    /// What an NLMSG_ERROR's body says: 0 (an acknowledgement) or the errno the kernel refused
    /// with (1...4095). A body too short for its code, or a code that is no negative errno, is a
    /// malformed message.
    static func errorAnswer(_ body: ArraySlice<UInt8>) -> Result<Int32, NetlinkProblem> {
        guard body.count >= 4 else { return .failure(NetlinkProblem("an error message of \(body.count) bytes")) }
        let code = Int32(bitPattern: u32(body, 0))
        if code == 0 { return .success(0) }
        guard let errno = errnoValue(code) else { return .failure(NetlinkProblem("an error message with code \(code), not a negative errno")) }
        return .success(errno)
    }

    /// The errno a netlink error code stands for, if it is one: the kernel sends -errno, and
    /// errnos are 1 through 4095 (MAX_ERRNO). Anything else (Int32.min among them, whose
    /// negation overflows) is a malformed message, not a refusal.
    static func errnoValue(_ code: Int32) -> Int32? {
        (-4095 ... -1).contains(code) ? -code : nil
    }

    static func u32(_ bytes: ArraySlice<UInt8>, _ offset: Int) -> UInt32 {
        let at = bytes.startIndex + offset
        return UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }

    static func u64(_ bytes: ArraySlice<UInt8>, _ offset: Int) -> UInt64 {
        UInt64(u32(bytes, offset)) | UInt64(u32(bytes, offset + 4)) << 32
    }

    static func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8)] }
    static func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8((value >> (8 * $0)) & 0xff) } }
    static func le64(_ value: UInt64) -> [UInt8] { le32(UInt32(value & 0xffff_ffff)) + le32(UInt32(value >> 32)) }
}
