// PcapFile: a small, safe API over libpcap for reading and writing classic capture files with
// nanosecond timestamps. Hostile or truncated input produces `PcapError`, never a trap.

import CPcap

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Link types

/// The link-layer header types the relay understands.
public enum PcapLinkType: Sendable, Hashable, CustomStringConvertible {
    /// DLT_EN10MB (1): Ethernet II header (14 bytes, or 18 with an 802.1Q tag).
    case ethernet
    /// DLT_LINUX_SLL (113): Linux "cooked" header v1 (16 bytes).
    case linuxCooked
    /// DLT_LINUX_SLL2 (276): Linux "cooked" header v2 (20 bytes, carries the interface index).
    case linuxCooked2
    /// DLT_RAW (12; LINKTYPE_RAW 101 in files), DLT_IPV4 (228) or DLT_IPV6 (229): no link
    /// header, the packet starts at the IP header (its version nibble says which).
    case rawIP

    /// Maps a libpcap DLT value (as returned by `pcap_datalink`) to a link type.
    public init?(dlt: Int32) {
        switch dlt {
        case 1: self = .ethernet
        case 113: self = .linuxCooked
        case 276: self = .linuxCooked2
        case 12, 14, 101, 228, 229: self = .rawIP
        default: return nil
        }
    }

    /// The DLT value used when writing (libpcap turns it into the file's LINKTYPE).
    public var dlt: Int32 {
        switch self {
        case .ethernet: return 1
        case .linuxCooked: return 113
        case .linuxCooked2: return 276
        case .rawIP: return 12  // DLT_RAW on Linux; stored in files as LINKTYPE_RAW (101)
        }
    }

    /// Length of the fixed link-layer header that precedes the network header.
    public var headerLength: Int {
        switch self {
        case .ethernet: return 14
        case .linuxCooked: return 16
        case .linuxCooked2: return 20
        case .rawIP: return 0
        }
    }

    public var description: String {
        switch self {
        case .ethernet: return "ethernet (DLT_EN10MB)"
        case .linuxCooked: return "linux cooked v1 (DLT_LINUX_SLL)"
        case .linuxCooked2: return "linux cooked v2 (DLT_LINUX_SLL2)"
        case .rawIP: return "raw IP (DLT_RAW)"
        }
    }
}

// MARK: - Errors

public enum PcapError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file does not exist.
    case fileNotFound(path: String)
    /// The file exists but could not be opened (permissions, a directory, ...).
    case cannotOpen(path: String, reason: String)
    /// The file is not a pcap (or pcapng) capture.
    case notAPcapFile(path: String, reason: String)
    /// The capture's link type is not one of `PcapLinkType`.
    case unsupportedLinkType(path: String, dlt: Int32, name: String)
    /// The file ends in the middle of the file header or of a record.
    /// `recordIndex` is the 0-based index of the record being read (nil: in the file header).
    case truncated(path: String, recordIndex: Int?, reason: String)
    /// A record is malformed (bad lengths, impossible timestamp, ...).
    case malformedRecord(path: String, recordIndex: Int, reason: String)
    /// Creating or writing an output file failed.
    case writeFailed(path: String, reason: String)
    /// The reader or writer was already closed.
    case closed(path: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "pcap: \(path): no such file"
        case .cannotOpen(let path, let reason):
            return "pcap: \(path): cannot open: \(reason)"
        case .notAPcapFile(let path, let reason):
            return "pcap: \(path): not a pcap capture file: \(reason)"
        case .unsupportedLinkType(let path, let dlt, let name):
            return "pcap: \(path): unsupported link type \(dlt) (\(name)); supported: "
                + "EN10MB (1), LINUX_SLL (113), LINUX_SLL2 (276), RAW (12/101/228)"
        case .truncated(let path, let index, let reason):
            if let index {
                return "pcap: \(path): truncated in record \(index): \(reason)"
            }
            return "pcap: \(path): truncated file header: \(reason)"
        case .malformedRecord(let path, let index, let reason):
            return "pcap: \(path): malformed record \(index): \(reason)"
        case .writeFailed(let path, let reason):
            return "pcap: \(path): write failed: \(reason)"
        case .closed(let path):
            return "pcap: \(path): already closed"
        }
    }
}

// MARK: - Records

/// Per-record metadata.
public struct PcapRecordHeader: Sendable, Hashable {
    /// Capture time in nanoseconds since the Unix epoch.
    public var timestampNanoseconds: UInt64
    /// Length of the packet on the wire (>= capturedLength).
    public var originalLength: Int
    /// Number of bytes stored in the file for this record.
    public var capturedLength: Int

    public init(timestampNanoseconds: UInt64, originalLength: Int, capturedLength: Int) {
        self.timestampNanoseconds = timestampNanoseconds
        self.originalLength = originalLength
        self.capturedLength = capturedLength
    }
}

/// One record with its bytes copied out of libpcap's buffer.
public struct PcapRecord: Sendable, Hashable {
    public var timestampNanoseconds: UInt64
    public var originalLength: Int
    public var bytes: [UInt8]

    public init(timestampNanoseconds: UInt64, originalLength: Int? = nil, bytes: [UInt8]) {
        self.timestampNanoseconds = timestampNanoseconds
        self.originalLength = originalLength ?? bytes.count
        self.bytes = bytes
    }
}

private let nanosPerSecond: UInt64 = 1_000_000_000

/// libpcap treats the path "-" as stdin/stdout; make it a file name.
private func libpcapSafePath(_ path: String) -> String {
    path == "-" ? "./-" : path
}

private func errbufString(_ buf: [CChar]) -> String {
    let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

// MARK: - Reader

/// Reads a pcap (or pcapng) file record by record.
///
///     let reader = try PcapReader(path: "in.pcap")
///     while let n = try reader.next({ header, bytes in bytes.count }) { ... }
///
/// Not thread-safe: use one reader from one task at a time.
public final class PcapReader {
    public let path: String
    public let linkType: PcapLinkType
    /// The raw DLT value libpcap reported.
    public let dlt: Int32
    /// Snapshot length declared in the file header.
    public let snapLength: Int
    /// Number of records returned so far.
    public private(set) var recordsRead: Int = 0

    private var handle: OpaquePointer?
    private var finished = false

    public init(path: String) throws {
        self.path = path
        var st = stat()
        if stat(path, &st) != 0 {
            let e = errno
            if e == ENOENT || e == ENOTDIR {
                throw PcapError.fileNotFound(path: path)
            }
            throw PcapError.cannotOpen(path: path, reason: String(cString: strerror(e)))
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw PcapError.cannotOpen(path: path, reason: "is a directory")
        }
        if access(path, R_OK) != 0 {
            throw PcapError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        if st.st_size == 0 {
            throw PcapError.truncated(path: path, recordIndex: nil, reason: "file is empty")
        }

        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        let h = pcap_open_offline_with_tstamp_precision(
            libpcapSafePath(path), UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf)
        guard let h else {
            let msg = errbufString(errbuf)
            if msg.contains("truncated") {
                throw PcapError.truncated(path: path, recordIndex: nil, reason: msg)
            }
            if msg.contains("No such file") {
                throw PcapError.fileNotFound(path: path)
            }
            if msg.contains("Permission denied") {
                throw PcapError.cannotOpen(path: path, reason: msg)
            }
            throw PcapError.notAPcapFile(path: path, reason: msg)
        }
        let dlt = pcap_datalink(h)
        guard let lt = PcapLinkType(dlt: dlt) else {
            var name = "unknown"
            if let n = pcap_datalink_val_to_name(dlt) { name = String(cString: n) }
            pcap_close(h)
            throw PcapError.unsupportedLinkType(path: path, dlt: dlt, name: name)
        }
        self.handle = h
        self.dlt = dlt
        self.linkType = lt
        self.snapLength = Int(pcap_snapshot(h))
    }

    deinit {
        if let handle { pcap_close(handle) }
    }

    /// Closes the file. Further reads throw `.closed`.
    public func close() {
        if let handle { pcap_close(handle) }
        handle = nil
    }

    /// Reads the next record and hands its header and bytes to `body` without copying.
    /// The buffer is valid only during the call. Returns nil at the end of the file.
    public func next<R>(
        _ body: (PcapRecordHeader, UnsafeRawBufferPointer) throws -> R
    ) throws -> R? {
        guard let handle else { throw PcapError.closed(path: path) }
        if finished { return nil }
        var hdrPtr: UnsafeMutablePointer<pcap_pkthdr>?
        var dataPtr: UnsafePointer<UInt8>?
        let rc = pcap_next_ex(handle, &hdrPtr, &dataPtr)
        let index = recordsRead
        switch rc {
        case 1:
            break
        case PCAP_ERROR_BREAK:  // -2: end of file
            finished = true
            return nil
        default:
            finished = true
            let msg = pcap_geterr(handle).map { String(cString: $0) } ?? "read error \(rc)"
            if msg.contains("truncated") {
                throw PcapError.truncated(path: path, recordIndex: index, reason: msg)
            }
            throw PcapError.malformedRecord(path: path, recordIndex: index, reason: msg)
        }
        guard let hdr = hdrPtr?.pointee else {
            finished = true
            throw PcapError.malformedRecord(path: path, recordIndex: index, reason: "no header")
        }
        let caplen = Int(hdr.caplen)
        if caplen > 0 && dataPtr == nil {
            finished = true
            throw PcapError.malformedRecord(path: path, recordIndex: index, reason: "no data")
        }
        // Nanosecond precision: tv_usec holds nanoseconds.
        // The seconds field is an unsigned 32-bit value in the file (good until 2106), but
        // libpcap sign-extends it from native-order files and not from byte-swapped ones:
        // take the stored 32 bits back, so both byte orders agree and every timestamp
        // PcapWriter accepts (up to UInt32.max seconds) reads back (found by fuzzing).
        let sec = Int64(UInt32(truncatingIfNeeded: hdr.ts.tv_sec))
        let frac = Int64(hdr.ts.tv_usec)
        guard sec >= 0, frac >= 0, frac < Int64(nanosPerSecond) else {
            finished = true
            throw PcapError.malformedRecord(
                path: path, recordIndex: index,
                reason: "impossible timestamp \(sec).\(frac)")
        }
        let (mul, o1) = UInt64(sec).multipliedReportingOverflow(by: nanosPerSecond)
        let (ts, o2) = mul.addingReportingOverflow(UInt64(frac))
        guard !o1, !o2 else {
            finished = true
            throw PcapError.malformedRecord(
                path: path, recordIndex: index, reason: "timestamp overflows 64-bit nanoseconds")
        }
        let header = PcapRecordHeader(
            timestampNanoseconds: ts,
            originalLength: max(Int(hdr.len), caplen),
            capturedLength: caplen)
        recordsRead += 1
        let buffer = UnsafeRawBufferPointer(start: caplen > 0 ? dataPtr : nil, count: caplen)
        return try body(header, buffer)
    }

    /// Reads the next record, copying its bytes. Returns nil at the end of the file.
    public func next() throws -> PcapRecord? {
        try next { header, bytes in
            PcapRecord(
                timestampNanoseconds: header.timestampNanoseconds,
                originalLength: header.originalLength,
                bytes: [UInt8](bytes))
        }
    }

    /// Calls `body` for every remaining record (bytes valid only during each call).
    public func forEach(
        _ body: (PcapRecordHeader, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        while try next(body) != nil {}
    }

    /// Reads every remaining record.
    public func readAll() throws -> [PcapRecord] {
        var out: [PcapRecord] = []
        while let r = try next() { out.append(r) }
        return out
    }

    /// Convenience: opens `path` and returns its link type and every record.
    public static func readAll(path: String) throws -> (linkType: PcapLinkType, records: [PcapRecord]) {
        let r = try PcapReader(path: path)
        return (r.linkType, try r.readAll())
    }
}

// MARK: - Writer

/// Writes a classic pcap file (nanosecond-timestamp magic 0xa1b23c4d) readable by tcpdump,
/// Wireshark and `PcapReader`.
///
/// Not thread-safe. Call `close()` to flush and check for errors; `deinit` closes silently.
public final class PcapWriter {
    public let path: String
    public let linkType: PcapLinkType
    public let snapLength: Int
    public private(set) var recordsWritten: Int = 0

    private var dead: OpaquePointer?
    private var dumper: OpaquePointer?

    /// Creates (or truncates) `path`. Records longer than `snapLength` are truncated to it,
    /// keeping their original length.
    public init(path: String, linkType: PcapLinkType, snapLength: Int = 262_144) throws {
        self.path = path
        self.linkType = linkType
        self.snapLength = max(1, min(snapLength, 262_144))
        guard let p = pcap_open_dead_with_tstamp_precision(
            linkType.dlt, Int32(self.snapLength), UInt32(PCAP_TSTAMP_PRECISION_NANO))
        else {
            throw PcapError.writeFailed(path: path, reason: "pcap_open_dead failed")
        }
        guard let d = pcap_dump_open(p, libpcapSafePath(path)) else {
            let msg = pcap_geterr(p).map { String(cString: $0) } ?? "pcap_dump_open failed"
            pcap_close(p)
            throw PcapError.writeFailed(path: path, reason: msg)
        }
        self.dead = p
        self.dumper = d
    }

    deinit {
        if let dumper { pcap_dump_close(dumper) }
        if let dead { pcap_close(dead) }
    }

    /// Appends one record. `originalLength` defaults to `bytes.count` (and is never less).
    public func write(
        timestampNanoseconds: UInt64, bytes: UnsafeRawBufferPointer, originalLength: Int? = nil
    ) throws {
        guard let dumper else { throw PcapError.closed(path: path) }
        let caplen = min(bytes.count, snapLength)
        let orig = max(originalLength ?? bytes.count, bytes.count)
        guard orig <= Int(UInt32.max) else {
            throw PcapError.writeFailed(path: path, reason: "original length \(orig) too large")
        }
        let secs = timestampNanoseconds / nanosPerSecond
        guard secs <= UInt64(UInt32.max) else {
            throw PcapError.writeFailed(
                path: path, reason: "timestamp \(timestampNanoseconds) ns beyond the pcap range")
        }
        var hdr = pcap_pkthdr()
        hdr.ts.tv_sec = time_t(secs)
        hdr.ts.tv_usec = suseconds_t(timestampNanoseconds % nanosPerSecond)
        hdr.caplen = UInt32(caplen)
        hdr.len = UInt32(orig)
        let user = UnsafeMutableRawPointer(dumper).assumingMemoryBound(to: UInt8.self)
        if caplen == 0 {
            var zero: UInt8 = 0
            pcap_dump(user, &hdr, &zero)
        } else {
            pcap_dump(user, &hdr, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        if let f = pcap_dump_file(dumper), ferror(f) != 0 {
            throw PcapError.writeFailed(path: path, reason: "I/O error")
        }
        recordsWritten += 1
    }

    /// Appends one record.
    public func write(timestampNanoseconds: UInt64, bytes: [UInt8], originalLength: Int? = nil) throws {
        try bytes.withUnsafeBytes {
            try write(timestampNanoseconds: timestampNanoseconds, bytes: $0, originalLength: originalLength)
        }
    }

    /// Appends one record.
    public func write(_ record: PcapRecord) throws {
        try write(
            timestampNanoseconds: record.timestampNanoseconds, bytes: record.bytes,
            originalLength: record.originalLength)
    }

    /// Flushes buffered records to the file.
    public func flush() throws {
        guard let dumper else { throw PcapError.closed(path: path) }
        if pcap_dump_flush(dumper) != 0 {
            throw PcapError.writeFailed(path: path, reason: String(cString: strerror(errno)))
        }
    }

    /// Flushes and closes the file. Calling it twice is harmless.
    public func close() throws {
        guard let d = dumper else { return }
        let flushFailed = pcap_dump_flush(d) != 0
        let err = errno
        pcap_dump_close(d)
        dumper = nil
        if let dead { pcap_close(dead) }
        dead = nil
        if flushFailed {
            throw PcapError.writeFailed(path: path, reason: String(cString: strerror(err)))
        }
    }
}
