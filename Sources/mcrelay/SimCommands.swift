// Owned by the simulator work (issue 3): `sim replay|fuzz|shrink`. Stub until then.
import ArgumentParser

struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sim", abstract: "Deterministic simulator.")
}
