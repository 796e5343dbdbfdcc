#if canImport(Glibc)
import Glibc
#endif

/// A violated property: prints what and why, then traps, so libFuzzer records the input as a
/// crash and a regression test replaying it fails loudly. `fatalError` (not `precondition`)
/// because its message survives every optimisation level.
@inline(never)
public func fuzzFailure(_ property: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError("fuzz property violated: \(property)", file: file, line: line)
}

@inline(__always)
func require(_ condition: Bool, _ property: @autoclosure () -> String,
             file: StaticString = #fileID, line: UInt = #line) {
    if !condition { fuzzFailure(property(), file: file, line: line) }
}

/// Reads a fuzz input front to back. Past the end every read yields zero, so any byte
/// string decodes to *some* structured input and the fuzzer never wastes runs on "too short".
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func u8() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() -> UInt16 { UInt16(u8()) << 8 | UInt16(u8()) }
    mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }

    /// Everything not read yet.
    var rest: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[min(offset, bytes.count)...])
    }
}

/// Copies bytes into a heap block of exactly their size, so AddressSanitizer's redzone sits
/// right after the last byte and any read past the end is reported (a Swift Array may have
/// spare capacity there that hides an over-read).
func withExactCopy<R>(of bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    let block = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
    defer { block.deallocate() }
    if bytes.count > 0 { block.copyMemory(from: bytes) }
    return try body(UnsafeRawBufferPointer(block))
}
