import PcapFile
import RelayCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Fuzz target `pcap`: the input is a whole capture file, opened with `PcapReader(path:)`
/// through `/proc/self/fd/N` of an unlinked scratch file (libpcap wants a path).
///
/// Properties: opening and reading either succeed or throw a `PcapError` (never trap);
/// every record's lengths are consistent (captured == bytes handed over <= original);
/// after the end or an error the reader stays finished; what was read, written back with
/// `PcapWriter` and read again, is the same records; and each record, parsed with the
/// file's link type, satisfies `checkParse`.
/// Returns the number of records read (nil: the file did not open), for tests of the seeds.
@discardableResult
public func checkPcap(_ input: UnsafeRawBufferPointer) -> Int? {
    // The scratch files are shared: tests may call this from several threads at once.
    ScratchFile.lock.withLock { _ in checkPcapAlone(input) }
}

func checkPcapAlone(_ input: UnsafeRawBufferPointer) -> Int? {
    let file = ScratchFile.input
    file.replaceContents(with: input)
    let reader: PcapReader
    do {
        reader = try PcapReader(path: file.path)
    } catch let error as PcapError {
        require(!error.description.isEmpty, "open error has a message")
        return nil
    } catch {
        fuzzFailure("PcapReader(path:) threw a non-PcapError: \(error)")
    }
    require(PcapLinkType(dlt: reader.dlt) == reader.linkType, "link type matches the DLT")

    var records: [PcapRecord] = []
    var failed = false
    while records.count < 10_000 {
        do {
            let record = try reader.next { header, bytes -> PcapRecord in
                require(header.capturedLength == bytes.count, "captured length \(header.capturedLength) == \(bytes.count) bytes")
                require(header.originalLength >= header.capturedLength, "original length >= captured length")
                require(bytes.count == 0 || bytes.baseAddress != nil, "bytes have an address")
                withExactCopy(of: bytes) { checkParse($0, link: LinkType(reader.linkType)) }
                return PcapRecord(timestampNanoseconds: header.timestampNanoseconds,
                                  originalLength: header.originalLength, bytes: [UInt8](bytes))
            }
            guard let record else { break }
            records.append(record)
        } catch let error as PcapError {
            require(!error.description.isEmpty, "read error has a message")
            failed = true
            break
        } catch {
            fuzzFailure("PcapReader.next threw a non-PcapError: \(error)")
        }
    }
    require(reader.recordsRead == records.count, "recordsRead \(reader.recordsRead) == \(records.count) records returned")
    if records.count < 10_000 || failed {
        do {
            require(try reader.next() == nil, "a finished reader returns no more records")
        } catch {
            fuzzFailure("a finished reader threw again: \(error)")
        }
    }
    reader.close()
    do {
        _ = try reader.next()
        fuzzFailure("a closed reader returned a record")
    } catch let error as PcapError {
        require(error == .closed(path: file.path), "a closed reader throws .closed, not \(error)")
    } catch {
        fuzzFailure("a closed reader threw a non-PcapError: \(error)")
    }

    checkRoundTrip(records, linkType: reader.linkType)
    return records.count
}

/// Records read from any file survive a write and a second read unchanged.
func checkRoundTrip(_ records: [PcapRecord], linkType: PcapLinkType) {
    let file = ScratchFile.output
    file.replaceContents(with: UnsafeRawBufferPointer(start: nil, count: 0))
    do {
        let writer = try PcapWriter(path: file.path, linkType: linkType)
        for record in records { try writer.write(record) }
        try writer.close()
    } catch {
        // Only records the writer documents as out of range may be refused.
        let writable = records.allSatisfy { $0.timestampNanoseconds / 1_000_000_000 <= UInt64(UInt32.max) && $0.bytes.count <= 262_144 }
        require(!writable, "writing back \(records.count) records failed: \(error)")
        return
    }
    do {
        let again = try PcapReader.readAll(path: file.path)
        require(again.linkType == linkType, "link type survives a round trip")
        require(again.records == records, "records survive a write and a read (\(records.count) vs \(again.records.count))")
    } catch {
        fuzzFailure("reading back what PcapWriter wrote failed: \(error)")
    }
}

extension LinkType {
    init(_ pcap: PcapLinkType) {
        switch pcap {
        case .ethernet: self = .ethernet
        case .linuxCooked: self = .linuxCooked
        case .linuxCooked2: self = .linuxCooked2
        case .rawIP: self = .rawIP
        }
    }
}

/// An unlinked temporary file kept open for the life of the process and named through
/// `/proc/self/fd/N`: no file-system litter even when a run is killed, and no open/unlink
/// per input.
final class ScratchFile: @unchecked Sendable {
    static let input = ScratchFile()
    static let output = ScratchFile()
    static let lock = Mutex(())

    let descriptor: Int32
    let path: String

    private init() {
        var template = Array("/tmp/mcrelay-fuzz-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { fatalError("fuzz harness: mkstemp failed: \(String(cString: strerror(errno)))") }
        _ = template.withUnsafeBufferPointer { unlink($0.baseAddress!) }
        descriptor = fd
        path = "/proc/self/fd/\(fd)"
    }

    func replaceContents(with bytes: UnsafeRawBufferPointer) {
        guard ftruncate(descriptor, 0) == 0 else { fatalError("fuzz harness: ftruncate failed") }
        var written = 0
        while written < bytes.count {
            let n = pwrite(descriptor, bytes.baseAddress! + written, bytes.count - written, off_t(written))
            guard n > 0 else { fatalError("fuzz harness: pwrite failed: \(String(cString: strerror(errno)))") }
            written += n
        }
    }
}
