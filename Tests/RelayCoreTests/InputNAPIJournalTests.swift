import Testing
@testable import RelayCore

/// The text of the file a daemon keeps of the inputs whose receive setting it changed
/// (`InputNAPIJournal`), which the next daemon reads after a SIGKILL.
@Suite struct InputNAPIJournalTests {
    func entry(_ name: String, _ index: Int32, gro: Bool) -> InputNAPIJournal.Entry {
        InputNAPIJournal.Entry(interface: InterfaceName(name)!, index: index, turnedGROOn: gro)
    }

    @Test func encodesOneSortedLinePerInputAndDecodesBack() throws {
        let journal = InputNAPIJournal([entry("rin1", 9, gro: false), entry("rin0", 7, gro: true)])
        let text = String(decoding: journal.encoded(), as: UTF8.self)
        #expect(text == "mcrelay input-napi journal 1\nrin0 7 gro=on\nrin1 9 gro=off\n")
        #expect(InputNAPIJournal.decode(journal.encoded()) == .success(journal))
    }

    @Test func anEmptyFileAndAHeaderAloneAreEmptyJournals() {
        #expect(InputNAPIJournal.decode([UInt8]()) == .success(InputNAPIJournal([])))
        #expect(InputNAPIJournal.decode(Array("mcrelay input-napi journal 1\n".utf8)) == .success(InputNAPIJournal([])))
        #expect(InputNAPIJournal([]).isEmpty)
    }

    @Test func theLastChangeOfAnInputIsTheOneKept() {
        let journal = InputNAPIJournal([entry("rin0", 7, gro: true), entry("rin0", 8, gro: false)])
        #expect(journal.entries == [entry("rin0", 8, gro: false)])
    }

    @Test func refusesWhatItDidNotWriteWithALineNumber() {
        let header = "mcrelay input-napi journal 1\n"
        let cases: [(String, String)] = [
            ("mcrelay input-napi journal 2\nrin0 7 gro=on\n", "line 1"),
            (header + "rin0 7 gro=on", "no newline"),
            (header + "rin0 7\n", "line 2"),
            (header + "rin0 7 gro=on extra\n", "line 2"),
            (header + "rin0 -7 gro=on\n", "line 2"),
            (header + "rin0 0 gro=on\n", "line 2"),
            (header + "rin0 2147483648 gro=on\n", "line 2"),
            (header + "rin0 +7 gro=on\n", "line 2"),
            (header + "rin0 7 gro=yes\n", "line 2"),
            (header + "rin0 7 gro=on\na/b 8 gro=on\n", "line 3"),
            (header + "rin0 7 gro=on\nrin0 8 gro=off\n", "twice"),
            (header + "\n", "line 2"),
            (header + "rin0  7 gro=on\n", "line 2"),
        ]
        for (text, wanted) in cases {
            switch InputNAPIJournal.decode(Array(text.utf8)) {
            case .success: Issue.record("accepted \(text.debugDescription)")
            case let .failure(problem): #expect(problem.message.contains(wanted), "\(text.debugDescription): \(problem.message)")
            }
        }
    }
}
