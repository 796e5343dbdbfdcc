import ArgumentParser
import Foundation
import LinuxIO
import RelayControl
import RelayCore

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this host for known multicast relaying traps and print the fix for each.",
        discussion: """
            Checks privileges, net.ipv4.igmp_max_memberships and net.core.optmem_max, io_uring, LRO/GRO \
            on input interfaces, and that output interfaces are up, have the MULTICAST flag and an IPv4 \
            address. Interfaces come from --config and --in/--out. With --data-path xdp: whether the \
            XDP object loads and which path (XDP or packet) each rule of --config takes, and why. \
            Exits 1 when a check fails.
            """)

    @Option(help: "A config file whose interfaces to check.") var config: String?
    @Option(name: .customLong("in"), help: "An input interface to check (repeatable).") var inputs: [String] = []
    @Option(name: .customLong("out"), help: "An output interface to check (repeatable).") var outputs: [String] = []
    @Flag(help: "Print the findings as JSON.") var json = false
    @Option(help: "The daemon's --data-path to check for: packet (default) or xdp.") var dataPath: String = "packet"
    @Option(help: "With --data-path xdp: the BPF object (default: $MCRELAY_XDP_OBJECT, else /usr/lib/mcrelay/mcrelay_xdp.o).") var xdpObject: String?

    func run() throws {
        var rules: [RuleSpec] = []
        if let config {
            do { rules = try ConfigFile.load(path: config).rules } catch {
                printError(error.description)
                throw ExitCode.failure
            }
        }
        func names(_ list: [String], _ option: String) throws -> [InterfaceName] {
            try list.map { text in
                guard let name = InterfaceName(text) else {
                    printError("--\(option) \(text): not a valid interface name")
                    throw ExitCode.validationFailure
                }
                return name
            }
        }
        let doctor = HostDoctor(rules: rules, extraInputs: try names(inputs, "in"), extraOutputs: try names(outputs, "out"))
        guard dataPath == "packet" || dataPath == "xdp" else {
            printError("--data-path: \"\(dataPath)\" is not packet or xdp")
            throw ExitCode.validationFailure
        }
        var findings = doctor.run()
        if dataPath == "xdp" { findings += doctor.xdp(object: XDPDataPath.objectPath(option: xdpObject), rules: rules) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(findings), as: UTF8.self))
        } else {
            let problems = findings.filter { $0.severity == .problem }.count
            let warnings = findings.filter { $0.severity == .warning }.count
            print("mcrelay doctor: \(problems) problem(s), \(warnings) warning(s)")
            for finding in findings {
                print("  \(finding.severity.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0)) \(finding.subject): \(finding.message)")
                if let fix = finding.fix, finding.severity != .ok { print("        fix: \(fix)") }
            }
        }
        if findings.contains(where: { $0.severity == .problem }) { throw ExitCode.failure }
    }
}
