import Foundation
import RelayControl
import RelayCore
import Testing

@Suite("Control protocol")
struct ControlProtocolTests {
    @Test("requests round-trip as one JSON line with sorted keys")
    func roundTrip() throws {
        let request = ControlRequest(op: .add, rule: RuleText(name: "cam1", in: "eth0:239.1.1.1:5001", out: ["eth1:239.2.2.2:6000:8"]))
        let line = ControlProtocol.encodeLine(request)
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(line.dropLast().contains(UInt8(ascii: "\n")) == false)
        #expect(String(decoding: line, as: UTF8.self).hasPrefix(#"{"op":"add","rule":{"in":"eth0:239.1.1.1:5001","name":"cam1""#))
        #expect(try ControlProtocol.decodeRequest(line.dropLast()).get() == request)
    }

    @Test("malformed requests are refused with a message naming the problem",
          arguments: [
            ("nonsense", "not valid JSON"),
            (#"{"op":"bogus"}"#, "op"),
            (#"{"rule":{}}"#, "\"op\""),
            (#"{"op":"add","rule":{"in":"x"}}"#, "rule.out"),
            (#"[1]"#, "request"),
          ])
    func malformed(line: String, mentions: String) {
        switch ControlProtocol.decodeRequest(Array(line.utf8)) {
        case .success(let request): Issue.record("accepted \(line) as \(request)")
        case .failure(let error): #expect(error.message.contains(mentions), "\(line): \(error.message)")
        }
    }

    @Test("rule text parses with the CLI's syntax; errors name the field")
    func ruleText() throws {
        let spec = try RuleText(in: "rin0:239.1.1.1:5001", source: "198.18.1.1", out: ["rout0:239.10.1.1:6001"]).spec()
        #expect(spec.input.source == .v4(IPv4Address(198, 18, 1, 1)))
        #expect(spec.outputs.first?.ttl == OutputSpec.defaultTTL)
        #expect(OutputSpec.defaultTTL != 1)
        #expect(throws: ControlProtocolError.self) { try RuleText(in: "rin0:239.1.1:5001", out: ["rout0:239.10.1.1:6001"]).spec() }
        do {
            _ = try RuleText(in: "rin0:239.1.1.1:5001", out: ["rout0:239.10.1.1:6001:0"]).spec()
            Issue.record("TTL 0 accepted")
        } catch { #expect(error.message.contains("TTL")) }
    }

    @Test("stats text shows rules, outputs, drops, workers and joins")
    func statsText() throws {
        let rule = try RuleBook.validated(RuleText(name: "cam1", in: "rin0:239.1.1.1:5001", out: ["rout0:239.10.1.1:6001"]).spec())
        var drops = DropCounters()
        drops.record(.badChecksum)
        let view = StatsView(rules: [RuleStatsView(unused: rule)], drops: drops,
                             workers: [WorkerView(id: 0, pid: 42, alive: true, planVersion: 3, restarts: 1, answered: true)],
                             planVersion: 3, joined: ["239.1.1.1 on rin0"], outstanding: [],
                             helperSockets: [HelperSocketView(socket: "rin0#0", groups: 1, capacity: 20)], interfacesUp: ["rin0"])
        let text = view.text
        #expect(text.contains("rule \(rule.id) (cam1) rin0:239.1.1.1:5001: 0 packets"))
        #expect(text.contains("-> rout0:239.10.1.1:6001:64: 0 packets, 0 bytes, 0 send errors"))
        #expect(text.contains("drops: bad_checksum=1"))
        #expect(text.contains("0=pid 42 v3 restarts 1"))
        #expect(text.contains("rin0#0 1/20"))
        let decoded = try JSONDecoder().decode(StatsView.self, from: Data(ControlProtocol.encodeLine(view)))
        #expect(decoded == view)
        #expect(!text.contains("data path"), "packet path only: no data path lines")
    }

    @Test("stats with --data-path xdp: a line per rule and input with its path and reason, in the text and the JSON")
    func statsDataPath() throws {
        var view = StatsView(rules: [], drops: DropCounters(), workers: [], planVersion: 1, joined: [], outstanding: [],
                             helperSockets: [], interfacesUp: [])
        var paths = DataPathView(mode: "xdp native", object: "/usr/lib/mcrelay/mcrelay_xdp.o")
        paths.rules = [.init(name: "0123456789ab", path: "xdp"), .init(name: "ba9876543210", path: "packet", reason: "two outputs on rout0")]
        paths.inputs = [.init(name: "rin0", path: "xdp", reason: "1 of 2 rules on the packet path")]
        paths.warnings = ["output rout1 cannot take XDP redirects"]
        view.dataPath = paths
        let text = view.text
        #expect(text.contains("data path xdp native (/usr/lib/mcrelay/mcrelay_xdp.o)\n  rule 0123456789ab: xdp\n  rule ba9876543210: packet (two outputs on rout0)\n  input rin0: xdp (1 of 2 rules on the packet path)\n  warning: output rout1 cannot take XDP redirects\n"), "\(text)")
        let json = String(decoding: ControlProtocol.encodeLine(view), as: UTF8.self)
        #expect(json.contains("\"data_path\":{"), "\(json)")
        #expect(try JSONDecoder().decode(StatsView.self, from: Data(json.utf8)) == view)
    }
}
