import Foundation
import RelayCore

/// Frame bytes in one block of memory that only grows (mutated copies and probes are
/// appended); the per-packet path hands the core a pointer into it.
final class Arena {
    private(set) var base: UnsafeMutableRawPointer
    private(set) var count = 0
    private var capacity: Int

    init(_ bytes: [UInt8]) {
        capacity = max(bytes.count * 2, 4096)
        base = .allocate(byteCount: capacity, alignment: 16)
        bytes.withUnsafeBytes { if let source = $0.baseAddress { base.copyMemory(from: source, byteCount: $0.count) } }
        count = bytes.count
    }

    deinit { base.deallocate() }

    /// Bytes allocated (what the soak's bound check watches).
    var capacityBytes: Int { capacity }

    func append(_ bytes: UnsafeRawBufferPointer) -> Int {
        if count + bytes.count > capacity {
            let newCapacity = max(capacity * 2, count + bytes.count)
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
            fresh.copyMemory(from: base, byteCount: count)
            base.deallocate()
            base = fresh
            capacity = newCapacity
        }
        if let source = bytes.baseAddress { (base + count).copyMemory(from: source, byteCount: bytes.count) }
        count += bytes.count
        return count - bytes.count
    }

    @inline(__always) func buffer(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + offset, count: length)
    }
}
