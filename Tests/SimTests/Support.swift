import Foundation
import RelayCore
@testable import Sim

/// Repository root, from this file's location (Tests/SimTests/Support.swift).
let repoRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

func tracePath(_ name: String) -> String { repoRoot + "/traces/" + name }

/// A fresh temporary directory (named by the test, not by a random number).
func temporaryDirectory(_ label: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.path + "/mcrelay-simtests-\(getpid())-\(label)"
    try? FileManager.default.removeItem(atPath: path)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func environmentInt(_ name: String, default value: Int) -> Int {
    ProcessInfo.processInfo.environment[name].flatMap(Int.init) ?? value
}

import PcapFile

/// Writes a Linux cooked v2 capture for loader tests.
final class PcapWriterShim {
    let writer: PcapWriter
    init(path: String) throws { writer = try PcapWriter(path: path, linkType: .linuxCooked2) }
    func write(_ time: UInt64, _ bytes: [UInt8]) throws {
        try writer.write(timestampNanoseconds: 1_700_000_000_000_000_000 + time, bytes: bytes)
    }
    func close() throws { try writer.close() }
}
