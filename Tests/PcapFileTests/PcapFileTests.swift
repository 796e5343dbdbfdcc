import Foundation
import Testing

@testable import PcapFile

/// Repository root, found from this file's location (Tests/PcapFileTests/PcapFileTests.swift).
private let repoRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
private func realTrace(_ name: String) -> String {
    repoRoot.appendingPathComponent("traces/real").appendingPathComponent(name).path
}

/// A fresh temporary directory, removed by the caller.
private func makeTempDir() throws -> URL {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("pcapfile-tests-\(getpid())-\(UInt64.random(in: 0...UInt64.max))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// Deterministic generator (SplitMix64) so failures reproduce.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private func sampleRecords(count: Int, seed: UInt64) -> [PcapRecord] {
    var rng = SplitMix64(state: seed)
    var t: UInt64 = 1_700_000_000_123_456_789
    return (0..<count).map { i in
        let len = i == 0 ? 0 : Int.random(in: 1...1600, using: &rng)
        let bytes = (0..<len).map { _ in UInt8.random(in: 0...255, using: &rng) }
        t += UInt64.random(in: 1...2_000_000_000, using: &rng)
        let orig = i % 5 == 3 ? len + 100 : len
        return PcapRecord(timestampNanoseconds: t, originalLength: orig, bytes: bytes)
    }
}

/// Writes the standard 24-byte pcap file header (little-endian, microsecond magic).
private func classicHeader(linkType: UInt32, snaplen: UInt32 = 65535) -> [UInt8] {
    var h: [UInt8] = []
    func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { h += $0 } }
    func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { h += $0 } }
    u32(0xa1b2_c3d4); u16(2); u16(4); u32(0); u32(0); u32(snaplen); u32(linkType)
    return h
}

private func recordHeader(sec: UInt32, usec: UInt32, caplen: UInt32, len: UInt32) -> [UInt8] {
    var h: [UInt8] = []
    for v in [sec, usec, caplen, len] { withUnsafeBytes(of: v.littleEndian) { h += $0 } }
    return h
}

/// Reads every record, returning the error (if any) as a PcapError. Fails the test if any other
/// error type escapes.
private func drain(_ path: String) -> (records: Int, error: PcapError?) {
    do {
        let r = try PcapReader(path: path)
        var n = 0
        while try r.next({ _, _ in () }) != nil { n += 1 }
        return (n, nil)
    } catch let e as PcapError {
        return (0, e)
    } catch {
        Issue.record("unexpected error type \(type(of: error)): \(error)")
        return (0, nil)
    }
}

@Suite struct PcapFileTests {
    @Test(arguments: [PcapLinkType.ethernet, .linuxCooked, .linuxCooked2, .rawIP])
    func roundTrip(linkType: PcapLinkType) throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("rt.pcap").path
        let records = sampleRecords(count: 50, seed: UInt64(linkType.dlt))

        let w = try PcapWriter(path: path, linkType: linkType)
        for r in records { try w.write(r) }
        #expect(w.recordsWritten == 50)
        try w.close()
        try w.close()  // idempotent
        #expect(throws: PcapError.closed(path: path)) { try w.write(records[1]) }

        let reader = try PcapReader(path: path)
        #expect(reader.linkType == linkType)
        let back = try reader.readAll()
        #expect(back == records)
        #expect(reader.recordsRead == 50)
        #expect(try reader.next() == nil)  // stays at end
    }

    @Test func zeroCopyNextSeesBytesAndHeader() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("z.pcap").path
        let w = try PcapWriter(path: path, linkType: .rawIP)
        try w.write(timestampNanoseconds: 5_000_000_001, bytes: [1, 2, 3, 4], originalLength: 9)
        try w.flush()
        try w.close()
        let r = try PcapReader(path: path)
        let got = try r.next { header, bytes -> (PcapRecordHeader, [UInt8]) in
            (header, Array(bytes))
        }
        #expect(got?.0 == PcapRecordHeader(timestampNanoseconds: 5_000_000_001, originalLength: 9, capturedLength: 4))
        #expect(got?.1 == [1, 2, 3, 4])
        #expect(try r.next({ _, _ in 0 }) == nil)
    }

    @Test func snapLengthTruncatesButKeepsOriginalLength() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("s.pcap").path
        let w = try PcapWriter(path: path, linkType: .ethernet, snapLength: 64)
        try w.write(timestampNanoseconds: 1, bytes: [UInt8](repeating: 7, count: 200))
        try w.close()
        let recs = try PcapReader.readAll(path: path).records
        #expect(recs.count == 1)
        #expect(recs[0].bytes == [UInt8](repeating: 7, count: 64))
        #expect(recs[0].originalLength == 200)
    }

    @Test func writerRejectsTimestampBeyondPcapRange() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.pcap").path
        let w = try PcapWriter(path: path, linkType: .ethernet)
        #expect(throws: PcapError.self) {
            try w.write(timestampNanoseconds: UInt64.max, bytes: [1])
        }
        try w.close()
    }

    @Test func writerFailsOnUnwritablePath() {
        #expect(throws: PcapError.self) {
            _ = try PcapWriter(path: "/nonexistent-dir-\(getpid())/x.pcap", linkType: .ethernet)
        }
    }

    @Test func outputIsReadableByTcpdump() throws {
        let tcpdump = ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        guard let tcpdump else {
            Issue.record("tcpdump not installed (run scripts/install-deps.sh)")
            return
        }
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("td.pcap").path
        // Re-write the real capture through PcapWriter, then let tcpdump read it.
        let (lt, recs) = try PcapReader.readAll(path: realTrace("tcpreplay-test.pcap"))
        let w = try PcapWriter(path: path, linkType: lt)
        for r in recs { try w.write(r) }
        try w.close()

        let p = Process()
        p.executableURL = URL(fileURLWithPath: tcpdump)
        p.arguments = ["-nn", "-tt", "--time-stamp-precision=nano", "-r", path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
        // One line per packet starts with its timestamp "sssssssss.nnnnnnnnn ".
        let stamped = lines.filter { $0.first?.isNumber == true && $0.contains(".") }
        #expect(stamped.count == recs.count)
        let first = recs[0].timestampNanoseconds
        let expected = "\(first / 1_000_000_000).\(String(first % 1_000_000_000).leftPadded(to: 9))"
        #expect(lines.first?.hasPrefix(expected) == true)
    }

    @Test func readsRealTcpreplayTest() throws {
        let r = try PcapReader(path: realTrace("tcpreplay-test.pcap"))
        #expect(r.linkType == .ethernet)
        #expect(r.dlt == 1)
        var count = 0
        var total = 0
        var previous: UInt64 = 0
        var monotonic = true
        try r.forEach { h, bytes in
            count += 1
            total += bytes.count
            #expect(h.capturedLength == bytes.count)
            #expect(h.originalLength >= bytes.count)
            // microsecond file read at nanosecond precision
            #expect(h.timestampNanoseconds % 1000 == 0)
            if h.timestampNanoseconds < previous { monotonic = false }
            previous = h.timestampNanoseconds
        }
        // 179 frames, 69000 captured bytes (tcpdump prints some frames on several lines).
        #expect(count == 179)
        #expect(total == 69000)
        #expect(monotonic)
        let first = try PcapReader(path: realTrace("tcpreplay-test.pcap")).next()
        #expect(first?.timestampNanoseconds == 1_278_472_579_466_743_000)
    }

    @Test func readsRealTcpreplayFragroute() throws {
        let (lt, recs) = try PcapReader.readAll(path: realTrace("tcpreplay-fragroute.pcap"))
        #expect(lt == .ethernet)
        #expect(recs.count == 20)
        #expect(recs.reduce(0) { $0 + $1.bytes.count } == 4778)
    }

    @Test func missingFile() {
        let path = "/nonexistent-\(getpid()).pcap"
        #expect(throws: PcapError.fileNotFound(path: path)) { _ = try PcapReader(path: path) }
        let e = PcapError.fileNotFound(path: path)
        #expect(e.description.contains("no such file"))
    }

    @Test func directoryIsNotACapture() {
        #expect(throws: PcapError.self) { _ = try PcapReader(path: "/tmp") }
    }

    @Test func emptyAndGarbageFiles() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let empty = dir.appendingPathComponent("empty.pcap").path
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        let r1 = drain(empty)
        guard case .truncated(_, nil, _)? = r1.error else {
            Issue.record("empty file: expected truncated, got \(String(describing: r1.error))")
            return
        }

        let garbage = dir.appendingPathComponent("garbage.pcap").path
        _ = FileManager.default.createFile(
            atPath: garbage, contents: Data("this is definitely not a capture file at all\n".utf8))
        let r2 = drain(garbage)
        guard case .notAPcapFile(_, let reason)? = r2.error else {
            Issue.record("garbage: expected notAPcapFile, got \(String(describing: r2.error))")
            return
        }
        #expect(!reason.isEmpty)
        #expect(r2.error!.description.contains("not a pcap capture file"))
    }

    @Test func truncatedFileHeader() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("th.pcap").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(classicHeader(linkType: 1).prefix(10)))
        let r = drain(path)
        guard case .truncated(_, nil, _)? = r.error else {
            Issue.record("expected truncated header, got \(String(describing: r.error))")
            return
        }
    }

    @Test func truncatedRecordReportsIndex() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = try Data(contentsOf: URL(fileURLWithPath: realTrace("tcpreplay-fragroute.pcap")))
        // Cut inside a record's data, then inside a record header.
        for cut in [data.count - 10, data.count - 200] {
            let path = dir.appendingPathComponent("tr\(cut).pcap").path
            _ = FileManager.default.createFile(atPath: path, contents: data.prefix(cut))
            let reader = try PcapReader(path: path)
            var good = 0
            do {
                while try reader.next() != nil { good += 1 }
                Issue.record("cut at \(cut): expected an error")
            } catch let PcapError.truncated(_, index?, reason) {
                #expect(index == good)
                #expect(!reason.isEmpty)
            }
            #expect(good < 20)
        }
        // A header cut mid-way (file ends 7 bytes into a record header).
        let path = dir.appendingPathComponent("trh.pcap").path
        var bytes = classicHeader(linkType: 1)
        bytes += recordHeader(sec: 1, usec: 2, caplen: 4, len: 4) + [1, 2, 3, 4]
        bytes += recordHeader(sec: 1, usec: 3, caplen: 4, len: 4).prefix(7)
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let reader = try PcapReader(path: path)
        #expect(try reader.next()?.bytes == [1, 2, 3, 4])
        #expect(throws: PcapError.self) { _ = try reader.next() }
        #expect(try reader.next() == nil)  // after an error the reader stays finished
    }

    @Test func unsupportedLinkType() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("wifi.pcap").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(classicHeader(linkType: 105)))
        #expect(throws: PcapError.unsupportedLinkType(path: path, dlt: 105, name: "IEEE802_11")) {
            _ = try PcapReader(path: path)
        }
    }

    @Test func hostileCaptureLength() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("huge.pcap").path
        var bytes = classicHeader(linkType: 1, snaplen: 0xffff_ffff)
        bytes += recordHeader(sec: 1, usec: 0, caplen: 0xffff_fff0, len: 10) + [1, 2, 3]
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let r = drain(path)
        #expect(r.error != nil)
    }

    @Test func rawIPWritesLinktypeRaw101() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("raw.pcap").path
        let w = try PcapWriter(path: path, linkType: .rawIP)
        try w.write(timestampNanoseconds: 1, bytes: [0x45])
        try w.close()
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(Array(data[0..<4]) == [0x4d, 0x3c, 0xb2, 0xa1])  // nanosecond magic, little-endian
        #expect(Array(data[20..<24]) == [101, 0, 0, 0])
        #expect(try PcapReader(path: path).linkType == .rawIP)
    }

    @Test func linkTypeMapping() {
        #expect(PcapLinkType(dlt: 1) == .ethernet)
        #expect(PcapLinkType(dlt: 113) == .linuxCooked)
        #expect(PcapLinkType(dlt: 276) == .linuxCooked2)
        #expect(PcapLinkType(dlt: 12) == .rawIP)
        #expect(PcapLinkType(dlt: 228) == .rawIP)
        #expect(PcapLinkType(dlt: 101) == .rawIP)
        #expect(PcapLinkType(dlt: 105) == nil)
        #expect(PcapLinkType.linuxCooked2.headerLength == 20)
    }

    /// Random corruption of a real capture must give records or a PcapError, never a trap.
    @Test func mutatedFilesNeverTrap() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: realTrace("tcpreplay-fragroute.pcap"))))
        var rng = SplitMix64(state: 42)
        let path = dir.appendingPathComponent("m.pcap").path
        var errors = 0
        for _ in 0..<300 {
            var b = original
            let flips = Int.random(in: 1...16, using: &rng)
            for _ in 0..<flips {
                // Bias toward headers: file header and the first record headers.
                let pos = Bool.random(using: &rng)
                    ? Int.random(in: 0..<min(200, b.count), using: &rng)
                    : Int.random(in: 0..<b.count, using: &rng)
                b[pos] = UInt8.random(in: 0...255, using: &rng)
            }
            if Int.random(in: 0..<4, using: &rng) == 0 {
                b = Array(b.prefix(Int.random(in: 0..<b.count, using: &rng)))
            }
            _ = FileManager.default.createFile(atPath: path, contents: Data(b))
            if drain(path).error != nil { errors += 1 }
        }
        #expect(errors > 0)
    }
}

extension String {
    fileprivate func leftPadded(to n: Int) -> String {
        count >= n ? self : String(repeating: "0", count: n - count) + self
    }
}
