import Testing
@testable import RelayCore

@Suite struct RuleBookTests {
    @Test func idIsStableAndDerivedFromInput() throws {
        let a = try RuleBook.validated(spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"]))
        let b = try RuleBook.validated(spec("eth0:239.1.1.1:5001", ["eth2:239.20.1.1:7001"], name: "other"))
        let c = try RuleBook.validated(spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"], source: "198.18.1.1"))
        #expect(a.id == b.id)
        #expect(a.id != c.id)
        #expect(a.id.description.count == 12)
        #expect(RuleID(a.id.description) == a.id)
    }

    @Test func refusesInvalidRulesWithExactMessages() {
        func refused(_ s: RuleSpec) -> RuleError? {
            do { _ = try RuleBook.validated(s); return nil } catch { return error }
        }
        #expect(refused(spec("eth0:198.18.1.1:5001", ["eth1:239.1.1.1:1"])) == .inputNotMulticast(.v4(ip("198.18.1.1"))))
        #expect(refused(spec("eth0:224.0.0.5:5001", ["eth1:239.1.1.1:1"])) == .inputLocalNetworkControl(.v4(ip("224.0.0.5"))))
        #expect(refused(spec("eth0:239.1.1.1:1", [])) == .noOutputs)
        #expect(refused(spec("eth0:239.1.1.1:1", ["eth1:239.1.1.1:0"]))?.description.contains("port must be 1-65535") == true)
        #expect(refused(spec("eth0:239.1.1.1:1", ["eth1:255.255.255.255:9"]))?.description.contains("destination") == true)
        #expect(refused(spec("eth0:239.1.1.1:1", ["eth1:239.2.2.2:9", "eth1:239.2.2.2:9"])) != nil)
        #expect(refused(spec("eth0:239.1.1.1:1", ["eth1:239.2.2.2:9"], source: "239.9.9.9")) == .sourceNotUnicast(.v4(ip("239.9.9.9"))))
        #expect(refused(spec("eth0:239.1.1.1:1", ["eth1:239.2.2.2:9"], name: "has space")) == .badName("has space"))
        let loop = refused(spec("eth0:239.1.1.1:5001", ["eth0:239.1.1.1:5001"]))
        #expect(loop?.description == "output eth0:239.1.1.1:5001:64 would feed straight back into the input of rule \(RuleID(deriving: spec("eth0:239.1.1.1:5001", []).input)) (a forwarding loop)")
    }

    @Test func duplicateInputIsIdempotentOnlyWhenIdentical() throws {
        var book = RuleBook()
        let first = try book.add(spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"]))
        guard case .added = first else { Issue.record("first add"); return }
        #expect(try book.add(spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"])) == .unchanged(first.rule))
        #expect(throws: RuleError.conflictingInput(first.rule.input, existing: first.rule.id)) {
            try book.add(spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6002"]))
        }
        #expect(book.count == 1)
    }

    @Test func refusesLoopsAcrossRules() throws {
        var book = RuleBook()
        let a = try book.add(spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"])).rule
        #expect(throws: RuleError.inputFedByOutput(try EndpointSyntax.parseInput("eth1:239.10.1.1:6001"), a.id)) {
            try book.add(spec("eth1:239.10.1.1:6001", ["eth0:239.2.2.2:1"]))
        }
        #expect(throws: RuleError.outputFeedsInput(try EndpointSyntax.parseOutput("eth0:239.1.1.1:5001"), a.id)) {
            try book.add(spec("eth2:239.3.3.3:1", ["eth0:239.1.1.1:5001"]))
        }
    }

    @Test func namesAreUniqueAndSelectRules() throws {
        var book = RuleBook()
        let cam = try book.add(spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"], name: "cam1")).rule
        #expect(throws: RuleError.nameInUse("cam1", existing: cam.id)) {
            try book.add(spec("eth0:239.1.1.2:5001", ["eth1:239.10.1.2:6001"], name: "cam1"))
        }
        #expect(book.rule(matching: "cam1") == cam)
        #expect(book.rule(matching: cam.id.description) == cam)
        #expect(try book.remove("cam1") == cam)
        #expect(throws: RuleError.noSuchRule("cam1")) { try book.remove("cam1") }
    }

    @Test func replaceAllIsAtomicAndTouchesOnlyChanges() throws {
        var book = RuleBook()
        try book.add(spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"], name: "keep"))
        try book.add(spec("eth0:239.1.1.2:5001", ["eth1:239.10.1.2:6001"], name: "change"))
        try book.add(spec("eth0:239.1.1.3:5001", ["eth1:239.10.1.3:6001"], name: "drop"))
        let before = book.rules

        // An invalid set changes nothing.
        #expect(throws: RuleError.self) {
            try book.replaceAll(with: [spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"]),
                                       spec("eth0:239.1.1.9:5001", ["eth0:239.1.1.1:5001"])])
        }
        #expect(book.rules == before)

        let diff = try book.replaceAll(with: [
            spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"], name: "keep"),
            spec("eth0:239.1.1.2:5001", ["eth1:239.10.1.2:7001"], name: "change"),
            spec("eth0:239.1.1.4:5001", ["eth1:239.10.1.4:6001"], name: "new"),
        ])
        #expect(diff.unchanged.map(\.name) == ["keep"])
        #expect(diff.removed.compactMap(\.name).sorted() == ["change", "drop"])
        #expect(diff.added.compactMap(\.name).sorted() == ["change", "new"])
        #expect(book.count == 3)
    }
}
