import Foundation
import Testing

/// The README must match `--help`: every subcommand and every long option the binary offers
/// is mentioned in README.md, so a new flag cannot ship undocumented. No root needed.
@Suite("README matches --help")
struct DocumentationTests {
    /// One command's help: its subcommands (from the SUBCOMMANDS section) and long options.
    struct Help {
        var subcommands: [String] = []
        var options: [String] = []
    }

    static func help(_ path: [String]) throws -> Help {
        let directory = try E2E.temporaryDirectory("help")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try run([E2E.binary] + path + ["--help"], in: directory, timeout: .seconds(20))
        guard result.status == 0, !result.stdout.isEmpty else {
            throw HarnessError("`mcrelay \(path.joined(separator: " ")) --help` failed: \(result)")
        }
        var parsed = Help()
        var section = ""
        for line in result.stdout.split(separator: "\n", omittingEmptySubsequences: false) {
            if let first = line.first, first != " " { section = String(line); continue }
            if section == "SUBCOMMANDS:", line.hasPrefix("  "), !line.hasPrefix("   ") {
                let name = line.dropFirst(2).prefix { $0 != " " }
                if !name.isEmpty, name != "See" { parsed.subcommands.append(String(name)) }
            }
            // An option's own line is indented two spaces ("  -x, --name <value>  text");
            // wrapped help text is indented further and may mention other options.
            if section.hasSuffix("OPTIONS:"), line.hasPrefix("  -") {
                for token in line.dropFirst(2).split(separator: " ").prefix(3) where token.hasPrefix("--") {
                    let name = "--" + token.dropFirst(2).prefix { $0.isLetter || $0.isNumber || $0 == "-" }
                    if name.count > 2, !parsed.options.contains(name) { parsed.options.append(name) }
                }
            }
        }
        return parsed
    }

    @Test("every subcommand and long option of mcrelay appears in README.md")
    func readmeCoversHelp() throws {
        guard FileManager.default.isExecutableFile(atPath: E2E.binary) else {
            Issue.record("mcrelay binary not found at \(E2E.binary): build it first (swift build)")
            return
        }
        let readme = try String(contentsOfFile: E2E.repositoryRoot + "/README.md", encoding: .utf8)
        var queue: [[String]] = [[]]
        var commandsSeen = 0
        var missing: [String] = []
        while let path = queue.first {
            queue.removeFirst()
            let help = try Self.help(path)
            commandsSeen += 1
            let command = (["mcrelay"] + path).joined(separator: " ")
            if !path.isEmpty, !readme.contains(command) { missing.append("command `\(command)`") }
            for option in help.options where !["--help", "--version"].contains(option) && !readme.contains(option) {
                missing.append("`\(command) \(option)`")
            }
            queue += help.subcommands.filter { $0 != "help" }.map { path + [$0] }
        }
        // The walk itself must have found the command tree, or this test proves nothing.
        #expect(commandsSeen >= 10, "walked only \(commandsSeen) commands: is the help format parsed?")
        #expect(missing.isEmpty, "README.md does not mention: \(missing.joined(separator: ", "))")
    }
}
