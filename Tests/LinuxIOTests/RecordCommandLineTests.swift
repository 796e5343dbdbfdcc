import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The flight recorder's command-line errors: one line on stderr naming what is wrong.
extension CommandLineTests {
    @Test("record start: a limit that is not a size, or too small, is refused before contacting the daemon")
    func recordLimits() throws {
        expectOneLineError(try mcrelay(["record", "start", "/tmp/x", "--limit", "lots", "--control", "/nonexistent/x.sock"]),
                           mentioning: "--limit: \"lots\" is not a size in bytes")
        expectOneLineError(try mcrelay(["record", "start", "/tmp/x", "--limit", "1K", "--control", "/nonexistent/x.sock"]),
                           mentioning: "--limit: 1024 bytes is below the minimum of 65536")
        expectOneLineError(try mcrelay(["daemon", "--record", "/tmp/x", "--record-limit", "12Q", "--control", "/nonexistent/x.sock"]),
                           mentioning: "--record-limit: \"12Q\"")
        expectOneLineError(try mcrelay(["record", "status", "--control", "/tmp/mcrelay-no-such-daemon.sock"]),
                           mentioning: "cannot connect to /tmp/mcrelay-no-such-daemon.sock")
    }

    @Test("daemon --record into a directory that cannot be created names it", .enabled(if: geteuid() == 0, "needs root (AF_PACKET)"))
    func recordDirectoryRefused() throws {
        let directory = try E2E.temporaryDirectory("recdir")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try mcrelay(["daemon", "--record", "/proc/mcrelay-nope/rec", "--control", directory + "/c.sock", "--workers", "1"])
        expectOneLineError(result, mentioning: "--record: cannot record: mkdir /proc/mcrelay-nope/rec")
    }

    @Test("sim replay --recording of something that is not a recording: exit 2 and why")
    func replayNotARecording() throws {
        let result = try mcrelay(["sim", "replay", "--recording", "/nonexistent/rec", "--out-dir", "/tmp/mcrelay-cli-replay-out"])
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains("--recording /nonexistent/rec: no such directory"), "\(result.stderr)")
        let mixed = try mcrelay(["sim", "replay", "--recording", "/nonexistent/rec", "--config", "x.json", "--out-dir", "/tmp/mcrelay-cli-replay-out"])
        #expect(mixed.status == 2 && mixed.stderr.contains("drop --trace, --config"), "\(mixed)")
    }
}
