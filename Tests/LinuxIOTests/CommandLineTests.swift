import Foundation
import Testing

/// The CLI's error contract, without a daemon or root: non-zero exit and one line on stderr
/// saying what is wrong and where.
@Suite("mcrelay command line errors")
struct CommandLineTests {
    func mcrelay(_ arguments: [String]) throws -> CommandResult {
        guard FileManager.default.isExecutableFile(atPath: E2E.binary) else {
            throw HarnessError("mcrelay binary not found at \(E2E.binary): build it first (swift build), or set MCRELAY_BINARY")
        }
        let directory = try E2E.temporaryDirectory("cli")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try run([E2E.binary] + arguments, in: directory, timeout: .seconds(20))
    }

    func expectOneLineError(_ result: CommandResult, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status != 0, "\(result)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr should be one line: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(text), "stderr should mention \(text): \(result.stderr)", sourceLocation: sourceLocation)
    }

    @Test("bad --in syntax is reported before contacting the daemon")
    func badInput() throws {
        let result = try mcrelay(["rule", "add", "--in", "rin0:239.1.1:5001", "--out", "rout0:239.2.2.2:6000", "--control", "/nonexistent/x.sock"])
        expectOneLineError(result, mentioning: "\"239.1.1\" is not an IPv4 address")
    }

    @Test("missing --in or selector")
    func missingArguments() throws {
        expectOneLineError(try mcrelay(["rule", "add", "--out", "rout0:239.2.2.2:6000"]), mentioning: "--in IFACE:GROUP:PORT")
        expectOneLineError(try mcrelay(["rule", "add", "--in", "rin0:239.1.1.1:5001", "--control", "/nonexistent/x.sock"]), mentioning: "--out")
        expectOneLineError(try mcrelay(["rule", "remove"]), mentioning: "rule id or name")
    }

    @Test("daemon: a control socket directory that cannot be created is named")
    func badControlDirectory() throws {
        let result = try mcrelay(["daemon", "--control", "/proc/mcrelay-nope/control.sock", "--workers", "1"])
        expectOneLineError(result, mentioning: "/proc/mcrelay-nope")
    }

    @Test("daemon: a bad --data-path, --xdp-mode without xdp, and a missing or unreadable XDP object are one line each")
    func badDataPath() throws {
        expectOneLineError(try mcrelay(["daemon", "--data-path", "bogus", "--workers", "1"]), mentioning: "--data-path: \"bogus\" is not packet or xdp")
        expectOneLineError(try mcrelay(["daemon", "--xdp-mode", "generic", "--workers", "1"]), mentioning: "need --data-path xdp")
        expectOneLineError(try mcrelay(["daemon", "--data-path", "xdp", "--xdp-mode", "fast", "--workers", "1"]), mentioning: "is not native or generic")
        let directory = try E2E.temporaryDirectory("xdpcli")
        let missing = try mcrelay(["daemon", "--data-path", "xdp", "--xdp-object", "/nonexistent/mcrelay_xdp.o", "--workers", "1",
                                   "--control", directory + "/control.sock"])
        #expect(missing.status == 1)
        expectOneLineError(missing, mentioning: "no BPF object at /nonexistent/mcrelay_xdp.o")
        guard geteuid() == 0 else { return }  // loading needs CAP_BPF: unprivileged, the refusal above is as far as it gets
        let notELF = try mcrelay(["daemon", "--data-path", "xdp", "--xdp-object", "/etc/hostname", "--workers", "1",
                                  "--control", directory + "/control.sock"])
        #expect(notELF.status == 1 && notELF.stderr.contains("cannot load /etc/hostname: "), "\(notELF)")
    }

    @Test("bad TTL in --out")
    func badTTL() throws {
        let result = try mcrelay(["rule", "add", "--in", "rin0:239.1.1.1:5001", "--out", "rout0:239.2.2.2:6000:300", "--control", "/nonexistent/x.sock"])
        expectOneLineError(result, mentioning: "TTL")
    }

    @Test("no daemon: says which socket and asks whether the daemon runs")
    func noDaemon() throws {
        let result = try mcrelay(["stats", "--control", "/tmp/mcrelay-no-such-daemon.sock"])
        expectOneLineError(result, mentioning: "cannot connect to /tmp/mcrelay-no-such-daemon.sock: No such file or directory (is the daemon running?)")
    }

    @Test("daemon with a broken config file names the file and the rule")
    func badConfig() throws {
        let directory = try E2E.temporaryDirectory("cfg")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/bad.json"
        try Data(#"{"rules": [{"in": "rin0:239.1.1.1:5001", "out": ["rout0:239.2.2.2:0"]}]}"#.utf8).write(to: URL(fileURLWithPath: path))
        let result = try mcrelay(["daemon", "--config", path, "--control", directory + "/c.sock", "--workers", "1"])
        expectOneLineError(result, mentioning: "\(path): rules[0]")
    }

    @Test("daemon: proxies with --egress udp are refused (the kernel's sockets cannot keep the sender's address)")
    func proxyNeedsPacketEgress() throws {
        let directory = try E2E.temporaryDirectory("cfg")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/proxy.json"
        try Data(#"{"proxies": [{"upstream": "rin0", "downstream": ["rout0"], "groups": ["239.0.0.0/8"]}]}"#.utf8)
            .write(to: URL(fileURLWithPath: path))
        let result = try mcrelay(["daemon", "--config", path, "--egress", "udp", "--control", directory + "/c.sock", "--workers", "1"])
        expectOneLineError(result, mentioning: "\"proxies\" need packet egress")
    }
}
