import ArgumentParser
import Foundation
import RelayControl

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with config files.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a config file: exit 0 and print a summary, or exit 1 and say what is wrong and where.")

        @Argument(help: "The JSON config file.") var file: String

        func run() throws {
            do {
                let config = try ConfigFile.load(path: file)
                print("\(file): OK, \(config.rules.count) rule(s)")
            } catch {
                printError(error.description)
                throw ExitCode.failure
            }
        }
    }
}

/// One line on stderr, for errors an operator must read.
func printError(_ message: String) {
    var stderr = StandardError()
    print("mcrelay: \(message)", to: &stderr)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandle.standardError.write(Data(string.utf8))
    }
}
