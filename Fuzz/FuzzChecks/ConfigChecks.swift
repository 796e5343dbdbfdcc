import Foundation
import RelayControl
import RelayCore

/// Fuzz target `config`: the input is a config file.
///
/// Properties: `ConfigFile.parse` either loads or throws a `ConfigError` naming where and
/// what; a file that loads is accepted as a whole by a `RuleBook`; its `serialized()` form
/// parses back to an equal file and re-serialises to the same bytes.
/// Returns the number of rules loaded (nil: refused), for tests of the seeds.
@discardableResult
public func checkConfig(_ input: UnsafeRawBufferPointer) -> Int? {
    let data = Data(input)
    let config: ConfigFile
    do {
        config = try ConfigFile.parse(data, origin: "fuzz.json")
    } catch {
        require(error.location.hasPrefix("fuzz.json"), "error location names the file: \(error.location)")
        require(!error.message.isEmpty, "error has a message")
        return nil
    }
    var book = RuleBook()
    do { try book.replaceAll(with: config.rules) } catch {
        fuzzFailure("a config that loads is refused by the RuleBook: \(error)")
    }
    // Repeating a rule verbatim is allowed (adding it again is idempotent), so the book may be smaller.
    require(book.count <= config.rules.count && (book.count > 0) == !config.rules.isEmpty,
            "\(config.rules.count) rules load as \(book.count)")

    let canonical = config.serialized()
    let reloaded: ConfigFile
    do {
        reloaded = try ConfigFile.parse(canonical, origin: "serialized")
    } catch {
        fuzzFailure("serialized() output does not load: \(error)\n\(String(decoding: canonical, as: UTF8.self))")
    }
    require(reloaded == config, "serialized() round trip changed the config")
    require(reloaded.serialized() == canonical, "serialized() is canonical (stable on a second round)")
    return config.rules.count
}
