import RelayCore

/// Fuzz target `journal`: the input is the file an earlier daemon left beside its control socket
/// (`InputNAPIJournal`), which a starting daemon reads before it undoes anything.
///
/// Properties: decoding never traps and a refusal has a message; a decoded journal encodes to
/// text that decodes back to an equal journal and re-encodes to the same bytes, and holds each
/// interface once.
public func checkJournal(_ input: UnsafeRawBufferPointer) {
    switch InputNAPIJournal.decode(input) {
    case let .failure(problem):
        require(!problem.message.isEmpty, "a refusal has a message")
    case let .success(journal):
        let encoded = journal.encoded()
        require(InputNAPIJournal.decode(encoded) == .success(journal), "journal round trip")
        require(InputNAPIJournal(journal.entries).encoded() == encoded, "encoding is deterministic")
        require(Set(journal.entries.map(\.interface)).count == journal.entries.count, "each interface once")
    }
}
