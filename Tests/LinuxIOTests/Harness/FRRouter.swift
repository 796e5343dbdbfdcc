import Foundation
import Glibc

/// FRRouting 8.4.4 (Debian's `frr`, installed by scripts/install-deps.sh and never started as a
/// service) as a peer router: zebra and pimd run in the foreground in a namespace with their own
/// config, pid files, zebra API socket and vty sockets in `directory` (`-f`, `-i`, `-z`,
/// `--vty_socket`; no TCP vty, `-P 0`), so nothing touches /etc/frr or /var/run/frr and several
/// routers can run at once. `vtysh --vty_socket` talks to them.
final class FRRouter {
    static let daemons = "/usr/lib/frr"

    /// Why FRRouting cannot run here, or nil if it can.
    static let unavailable: String? = {
        for tool in ["\(daemons)/zebra", "\(daemons)/pimd", "/usr/bin/vtysh"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "FRRouting is not installed (\(tool) missing; scripts/install-deps.sh installs Debian's frr)"
        }
        if getpwnam("frr") == nil { return "FRRouting's user frr does not exist" }
        return nil
    }()

    let namespace: String
    let directory: String
    private(set) var zebra: ChildProcess?
    private(set) var pimd: ChildProcess?

    /// Writes `config` (frr.conf syntax) and starts zebra, then pimd once zebra's API socket
    /// exists. The directory belongs to user frr (the daemons drop to it).
    init(namespace: String, directory: String, config: String) throws {
        self.namespace = namespace
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try config.write(toFile: "\(directory)/frr.conf", atomically: true, encoding: .utf8)
        guard let user = getpwnam("frr") else { throw HarnessError("no user frr") }
        guard chown(directory, user.pointee.pw_uid, user.pointee.pw_gid) == 0 else {
            throw HarnessError("chown \(directory): \(String(cString: strerror(errno)))")
        }
        zebra = try start("zebra")
        let api = "\(directory)/zserv.api"
        guard waitUntil(timeout: .seconds(10), { access(api, F_OK) == 0 || zebra?.isRunning != true }), access(api, F_OK) == 0 else {
            let stderr = zebra?.stderr ?? ""
            stop()
            throw HarnessError("zebra in \(namespace) did not open \(api) within 10 s: \(stderr.suffix(2000))")
        }
        pimd = try start("pimd")
        guard waitUntil(timeout: .seconds(10), { access("\(directory)/pimd.vty", F_OK) == 0 || pimd?.isRunning != true }),
              pimd?.isRunning == true else {
            let stderr = pimd?.stderr ?? ""
            stop()
            throw HarnessError("pimd in \(namespace) did not start within 10 s: \(stderr.suffix(2000))")
        }
    }

    private func start(_ daemon: String) throws -> ChildProcess {
        try ChildProcess(["ip", "netns", "exec", namespace, "\(Self.daemons)/\(daemon)",
                          "-f", "\(directory)/frr.conf", "-i", "\(directory)/\(daemon).pid", "-z", "\(directory)/zserv.api",
                          "--vty_socket", directory, "-P", "0", "--log", "file:\(directory)/\(daemon).log"],
                         outputDirectory: directory, name: daemon)
    }

    /// `vtysh -c COMMAND` against this router's daemons.
    func vtysh(_ command: String) throws -> String {
        let result = try run(["ip", "netns", "exec", namespace, "vtysh", "--vty_socket", directory, "-c", command],
                             in: directory, timeout: .seconds(20))
        guard result.status == 0 else { throw HarnessError("vtysh failed: \(result)") }
        return result.stdout
    }

    /// `show ip igmp interface json` for one interface: FRR's own view of the election.
    func igmpInterface(_ interface: String) throws -> [String: Any] {
        let text = try vtysh("show ip igmp interface json")
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let entry = object[interface] as? [String: Any] else {
            throw HarnessError("show ip igmp interface json has no \(interface): \(text)")
        }
        return entry
    }

    /// pimd dies at once (SIGKILL): it sends nothing more, as a router that crashed or lost power.
    func killPimd() {
        pimd?.signal(SIGKILL)
        _ = pimd?.wait(timeout: .seconds(5))
    }

    /// Ends both daemons (cleanup; also on failure paths).
    func stop() {
        pimd?.terminate()
        zebra?.terminate()
    }

    /// The daemons' logs, for failure messages.
    var logs: String {
        ["zebra", "pimd"].map { "--- \($0).log:\n" + ((try? String(contentsOfFile: "\(directory)/\($0).log", encoding: .utf8))?.suffix(1500) ?? "") }
            .joined(separator: "\n")
    }
}
