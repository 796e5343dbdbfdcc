// `mcrelay record start|stop|status`: the flight recorder of the running daemon (issue 6),
// and the byte-size syntax shared with `mcrelay daemon --record-limit`.
import ArgumentParser
import Foundation
import LinuxIO
import RelayControl

struct RecordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record", abstract: "Start, stop and show the daemon's flight recorder.",
        discussion: """
            The recorder writes each worker's ingress frames (pcap, one file per interface and worker) \
            and the control-plane events with their times into DIR, up to --limit bytes in all; when the \
            limit is reached it stops (the beginning is kept) and says so in the log and in `stats`. \
            Replay a recording with `mcrelay sim replay --recording DIR --out-dir OUT`.
            """,
        subcommands: [Start.self, Stop.self, Status.self])

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start recording into DIR (a new or empty directory).")
        @Argument(help: "The directory to record into.") var directory: String
        @Option(name: .long, help: "Size limit over every file, in bytes (suffixes K, M, G: KiB, MiB, GiB). Default 256M.")
        var limit: String?
        @Option(name: .long, help: "Control socket path.") var control: String = ControlProtocol.defaultSocketPath

        func run() throws {
            let bytes = try limit.map { try parseByteSize($0, option: "--limit") } ?? RecordingFormat.defaultLimitBytes
            let reply = try controlRequest(ControlRequest(op: .recordStart, path: absolutePath(directory), limit: bytes), control: control)
            print(reply.recording?.text ?? "recording")
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop recording.")
        @Option(name: .long, help: "Control socket path.") var control: String = ControlProtocol.defaultSocketPath

        func run() throws {
            let reply = try controlRequest(ControlRequest(op: .recordStop), control: control)
            print(reply.recording?.text ?? "stopped")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show whether the daemon records, where, and how much.")
        @Flag(name: .long, help: "Print the JSON view.") var json = false
        @Option(name: .long, help: "Control socket path.") var control: String = ControlProtocol.defaultSocketPath

        func run() throws {
            let view = try controlRequest(ControlRequest(op: .recordStatus), control: control).recording ?? RecordingView(active: false)
            if json {
                print(String(decoding: ControlProtocol.encodeLine(view), as: UTF8.self), terminator: "")
            } else {
                print(view.text)
            }
        }
    }
}

/// "268435456", "256M", "64K", "1G" (binary multiples).
func parseByteSize(_ text: String, option: String) throws -> UInt64 {
    var digits = text.trimmingCharacters(in: .whitespaces)
    var multiplier: UInt64 = 1
    if let last = digits.last?.uppercased(), let shift = ["K": 10, "M": 20, "G": 30][last] {
        multiplier = 1 << UInt64(shift)
        digits.removeLast()
        if digits.uppercased().hasSuffix("I") { digits.removeLast() }  // "MiB" style: 256Mi
    }
    guard let value = UInt64(digits), value.multipliedReportingOverflow(by: multiplier).overflow == false else {
        printError("\(option): \"\(text)\" is not a size in bytes (e.g. 268435456, 256M, 64K)")
        throw ExitCode.failure
    }
    let bytes = value * multiplier
    guard bytes >= RecordingFormat.minimumLimitBytes else {
        printError("\(option): \(bytes) bytes is below the minimum of \(RecordingFormat.minimumLimitBytes) (64K)")
        throw ExitCode.failure
    }
    return bytes
}

func absolutePath(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}
