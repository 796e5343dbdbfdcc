import Foundation
import RelayCore
import RelayControl
import Testing

@Suite struct ConfigFileTests {
    func load(_ text: String) -> Result<ConfigFile, ConfigError> {
        do { return .success(try ConfigFile.parse(Data(text.utf8), origin: "test.json")) } catch { return .failure(error) }
    }

    func message(_ text: String) -> String? {
        if case let .failure(error) = load(text) { return error.description }
        return nil
    }

    @Test func loadsTheDocumentedExample() throws {
        let config = try load("""
            {"rules":[{"name":"cam1","in":"eth0:239.1.1.1:5001","source":"198.18.1.1","out":["eth1:239.10.1.1:6001:16"]}]}
            """).get()
        #expect(config.rules.count == 1)
        let rule = config.rules[0]
        #expect(rule.name == "cam1")
        #expect(rule.input.source == IPAddress("198.18.1.1"))
        #expect(rule.outputs == [OutputSpec(interface: InterfaceName("eth1")!, destination: IPv4Address("239.10.1.1")!, port: 6001, ttl: 16)])
    }

    @Test func errorsSayWhatAndWhere() {
        #expect(message(#"{"rules":[{"in":"eth0:239.1.1.1:5001", "#) == "test.json: line 1, column 40: expected a quoted key")
        #expect(message("{\"rules\":[\n{\"in\":\"eth0:239.1.1.1:5001\" \"out\":[]}]}") == "test.json: line 2, column 29: expected ',' or '}'")
        #expect(message(#"{"rules":[{"in":"eth0:239.1.1.1:5001","ouput":["eth1:239.2.2.2:1"]}]}"#)
                == #"test.json: rules[0]: unknown key "ouput" (expected name, in, source, out)"#)
        #expect(message(#"{"rules":[{"in":"eth0:239.1.1.1:5001"}]}"#) == #"test.json: rules[0]: missing "out""#)
        #expect(message(#"{"rules":[{"in":"eth0:239.1.1.1","out":["eth1:239.2.2.2:1"]}]}"#)
                == #"test.json: rules[0]: "eth0:239.1.1.1": expected IFACE:GROUP[/PREFIX]:PORT|*"#)
        #expect(message(#"{"rules":[{"name":"x","in":"eth0:239.1.1.1:1","out":["eth1:239.2.2.2:1:300"]}]}"#)
                == #"test.json: rules[0] (x): "eth1:239.2.2.2:1:300": TTL "300" must be 1-255"#)
        #expect(message(#"{"rules":[{"in":"eth0:239.1.1.1:1","out":["eth0:239.1.1.1:1"]}]}"#)?.contains("forwarding loop") == true)
        #expect(message(#"{"rules":[{"in":"eth0:239.1.1.1:1","source":"nope","out":["eth1:239.2.2.2:1"]}]}"#)
                == #"test.json: rules[0]: "nope": "nope" is not an IPv4 address (dotted quad) or a bracketed IPv6 address ([ff3e::1])"#)
    }

    @Test func commentKeysAreIgnoredAtTheTopAndInRules() throws {
        let config = try load("""
            {"comment": ["packaged example", "edit me"], "rules": [
              {"comment": "camera 1", "name": "cam1", "in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001"]}]}
            """).get()
        #expect(config.rules.count == 1 && config.rules[0].name == "cam1")
        #expect(try load(#"{"comment": {"any": ["json", 1]}, "rules": []}"#).get().rules.isEmpty)
        // Misspelt keys are still refused, and the error lists only the keys that configure something.
        #expect(message(#"{"coment": "x", "rules": []}"#) == #"test.json: unknown key "coment" (expected rules, queriers, proxies)"#)
    }

    /// The Debian package's /etc/mcrelay/config.json: a commented file with no rules, whose
    /// example rule (in the comment) is itself a valid rule.
    @Test func packagedExampleConfigLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent("packaging/config.json").path
        let config = try ConfigFile.load(path: path)
        #expect(config.rules.isEmpty)
        let raw = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
        let comment = (raw?["comment"] as? [String])?.joined(separator: "\n") ?? ""
        let start = try #require(comment.range(of: "{\"name\": \"cam1\""))
        let example = comment[start.lowerBound...].prefix { $0 != "}" } + "}"
        let rule = String(example).replacingOccurrences(of: "\n", with: " ")
        let parsed = try ConfigFile.parse(Data("{\"rules\": [\(rule)]}".utf8), origin: "example")
        #expect(parsed.rules.first?.name == "cam1" && parsed.rules.first?.outputs.count == 2)
    }

    @Test func rulesInvalidTogetherAreRefusedWithTheSecondRuleNamed() {
        let text = """
            {"rules":[{"in":"eth0:239.1.1.1:1","out":["eth1:239.2.2.2:1"]},
                      {"name":"back","in":"eth1:239.2.2.2:1","out":["eth2:239.3.3.3:1"]}]}
            """
        #expect(message(text)?.hasPrefix("test.json: rules[1] (back): input eth1:239.2.2.2:1 is an output of rule") == true)
    }

    @Test func serialisedConfigParsesBackEqual() throws {
        let config = try load("""
            {"rules":[{"name":"a","in":"eth0:239.1.1.1:5001","out":["eth1:239.10.1.1:6001","eth2:198.18.3.3:7000:5"]},
                      {"in":"eth0:239.1.1.2:5001","source":"198.18.1.9","out":["eth1:239.10.1.2:6001:16"]}]}
            """).get()
        let again = try ConfigFile.parse(config.serialized())
        #expect(again == config)
    }

    /// IPv6 inputs are written back bracketed (`eth0:[ff3e::8000:1]:5000`): the unbracketed
    /// text did not parse back, so a flight recording's config.json of an IPv6 rule did not load.
    @Test func serialisedIPv6ConfigParsesBackEqual() throws {
        let config = try load("""
            {"rules":[{"name":"v6","in":"eth0:[ff3e::8000:1]:5000","source":"[2001:db8:1::1]",
                       "out":["eth1:[ff3e::10:1]:6000:16","eth2:239.10.1.1:6001"]},
                      {"in":"eth0:239.1.1.2:5001","out":["eth1:[ff05::10:2]:6001:7"]}]}
            """).get()
        let text = String(decoding: config.serialized(), as: UTF8.self)
        #expect(text.contains(#""in" : "eth0:[ff3e::8000:1]:5000""#), "\(text)")
        let again = try ConfigFile.parse(config.serialized())
        #expect(again == config)
        let rule = try #require(config.rules.first)
        #expect(RuleText(rule).in == "eth0:[ff3e::8000:1]:5000")
        #expect(try RuleText(rule).spec() == rule, "the control protocol's rule text parses back too")
    }

    @Test func jsonSyntaxCheckerAcceptsValidJSON() {
        for valid in ["{}", "[]", "[1, -2.5e3, true, false, null, \"a\\u00e9\\n\"]", " {\"a\": {\"b\": [[]]}} "] {
            #expect(JSONSyntax.firstProblem(in: Array(valid.utf8)) == nil, "\(valid)")
        }
        for invalid in ["", "{", "[1,]", "{\"a\" 1}", "01x", "\"abc", "[1 2]", "tru", String(repeating: "[", count: 300)] {
            #expect(JSONSyntax.firstProblem(in: Array(invalid.utf8)) != nil, "\(invalid)")
        }
    }
}

@Suite struct WorkerProtocolTests {
    @Test func framedMessagesSurviveArbitrarySplits() throws {
        let plan = WorkerPlan(worker: WorkerID(1), version: 7,
                              ingress: [IngressAssignment(interface: InterfaceName("in0")!, fanoutGroup: 77)],
                              rules: [try RuleBook.validated(RuleSpec(
                                input: InputSpec(interface: InterfaceName("in0")!, group: IPv4Address("239.1.1.1")!, port: 5000),
                                outputs: [OutputSpec(interface: InterfaceName("out0")!, destination: IPv4Address("239.2.2.2")!, port: 6000)]))])
        let messages: [SupervisorMessage] = [.install(plan), .statisticsRequest(requestID: 3), .shutdown]
        let bytes = try messages.flatMap { try MessageFraming.encode($0) }
        for chunk in [1, 3, 7, 64, bytes.count] {
            var reassembler = MessageReassembler<SupervisorMessage>()
            var received: [SupervisorMessage] = []
            var offset = 0
            while offset < bytes.count {
                reassembler.append(bytes[offset..<min(offset + chunk, bytes.count)])
                offset += chunk
                while let message = try reassembler.next() { received.append(message) }
            }
            #expect(received == messages)
        }
    }

    @Test func oversizedOrCorruptFramesAreRejected() {
        var huge = MessageReassembler<SupervisorMessage>()
        huge.append([0x7F, 0xFF, 0xFF, 0xFF])
        #expect(throws: FramingError.tooLarge(0x7FFF_FFFF)) { try huge.next() }
        var corrupt = MessageReassembler<SupervisorMessage>()
        corrupt.append([0, 0, 0, 2] + Array("{]".utf8))
        #expect(throws: FramingError.self) { try corrupt.next() }
    }
}

@Suite struct QuerierConfigTests {
    func load(_ text: String) throws -> ConfigFile { try ConfigFile.parse(Data(text.utf8), origin: "q.json") }
    func refusal(_ text: String) -> String? {
        do { _ = try load(text); return nil } catch { return "\(error)" }
    }

    @Test func queriersParseWithRFCDefaultsAndRoundTrip() throws {
        let config = try load(#"{"rules": [], "queriers": [{"interface": "rout0"}, {"interface": "rout1", "families": ["ipv6"], "version": 2, "query_interval": 30, "query_response_interval": 2.5, "last_member_query_interval": 0.5, "querier": false}]}"#)
        #expect(config.queriers.count == 2)
        #expect(config.queriers[0].families == [.ipv4, .ipv6])
        #expect(config.queriers[0].configuration == ListenerConfiguration())
        let second = config.queriers[1]
        #expect(second.families == [.ipv6] && second.configuration.version == .v2 && !second.configuration.querierEnabled)
        #expect(second.configuration.queryInterval == .seconds(30) && second.configuration.queryResponseInterval == .milliseconds(2500))
        #expect(second.configuration.lastMemberQueryInterval == .milliseconds(500))
        #expect(try ConfigFile.parse(config.serialized()) == config)
    }

    @Test func badQuerierSettingsSayWhatAndWhere() {
        #expect(refusal(#"{"rules": [], "queriers": [{"interface": "rout0", "version": 1}]}"#)?.contains("q.json: queriers[0]: version 1") == true)
        #expect(refusal(#"{"rules": [], "queriers": [{"interface": "rout0", "families": ["ipx"]}]}"#)?.contains("\"ipx\" is not ipv4 or ipv6") == true)
        #expect(refusal(#"{"rules": [], "queriers": [{"interface": "rout0", "robustness": 9}]}"#)?.contains("robustness 9") == true)
        #expect(refusal(#"{"rules": [], "queriers": [{"interface": "rout0", "query_interval": 5, "query_response_interval": 6}]}"#)?.contains("shorter than query_interval") == true)
        #expect(refusal(#"{"rules": [], "queriers": [{"interface": "rout0"}, {"interface": "rout0"}]}"#)?.contains("listed twice") == true)
        #expect(refusal(#"{"rules": [], "queriers": [{"interface": "rout0", "quey_interval": 5}]}"#)?.contains("unknown key \"quey_interval\"") == true)
        #expect(refusal(#"{"rules": [], "queriers": [{"interface": "a/b"}]}"#)?.contains("not a valid interface name") == true)
    }

    @Test func followOutputsNeedListenerTrackingOnTheirInterfaceAndFamily() throws {
        let rule = #"{"name": "cam", "in": "in0:239.1.1.1:5000", "out": ["rout0:239.9.1.1:5000:listeners", "rout1:239.8.1.1:5000"]}"#
        let tracked = try load(#"{"rules": [\#(rule)], "queriers": [{"interface": "rout0", "families": ["ipv4"], "querier": false}]}"#)
        #expect(tracked.rules[0].outputs[0].followsListeners)
        #expect(try ConfigFile.parse(tracked.serialized()) == tracked, "the :listeners field round-trips")
        let untracked = refusal(#"{"rules": [\#(rule)]}"#)
        #expect(untracked?.contains("q.json: rules[0] (cam): output rout0:239.9.1.1:5000:64:listeners follows listeners, but rout0 has no IGMP listener tracking") == true, "\(untracked ?? "accepted")")
        let otherFamily = refusal(#"{"rules": [\#(rule)], "queriers": [{"interface": "rout0", "families": ["ipv6"]}]}"#)
        #expect(otherFamily?.contains("no IGMP listener tracking") == true)
        let unicast = refusal(#"{"rules": [{"in": "in0:239.1.1.1:5000", "out": ["rout0:198.18.0.9:5000:listeners"]}]}"#)
        #expect(unicast?.contains("only a multicast output can follow listeners") == true)
    }
}
