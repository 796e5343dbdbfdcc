import Foundation
@testable import LinuxIO
import RelayControl
@testable import RelayCore
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// The pieces of `daemon --metrics` without a daemon: address syntax, the HTTP request parser
/// (bad, oversize and piecewise requests), one connection over a real socketpair (partial
/// reads, timeouts), the stats-to-metrics mapping, the registry bridge and the restart ledger.
@Suite("Metrics endpoint parts")
struct MetricsEndpointTests {
    // MARK: --metrics syntax

    @Test("IPv4:PORT and [IPv6]:PORT are accepted", arguments: [
        ("127.0.0.1:9464", 9464), ("[::1]:9464", 9464), ("0.0.0.0:1", 1), ("[2001:db8::1]:65535", 65535),
    ])
    func goodAddresses(text: String, port: Int) throws {
        let address = try MetricsAddress.parse(text)
        #expect(Int(address.port) == port)
        #expect(address.description == text)
    }

    @Test("the loopback addresses decode to the right bytes")
    func addressBytes() throws {
        #expect(try MetricsAddress.parse("127.0.0.1:80").host == .ipv4(UInt32(0x7F00_0001).bigEndian))
        #expect(try MetricsAddress.parse("[::1]:80").host == .ipv6(Array(repeating: 0, count: 15) + [1]))
    }

    @Test("bad syntax is refused with one line naming the problem", arguments: [
        ("localhost:9464", "\"localhost\" is not an IPv4 address (host names are not resolved)"),
        ("127.0.0.1", "missing \":PORT\""),
        ("127.0.0.1:", "port \"\" is not a number in 1...65535"),
        ("127.0.0.1:0", "port \"0\" is not a number in 1...65535"),
        ("127.0.0.1:65536", "port \"65536\" is not a number in 1...65535"),
        ("127.0.0.1:+80", "port \"+80\" is not a number"),
        ("127.0.0.1:80x", "port \"80x\" is not a number"),
        (":9464", "missing address before the port"),
        ("1.2.3:80", "\"1.2.3\" is not an IPv4 address; expected"),
        ("256.1.1.1:80", "\"256.1.1.1\" is not an IPv4 address"),
        ("::1:9464", "an IPv6 address needs brackets"),
        ("[::1:9464", "missing \"]\""),
        ("[::1]9464", "missing \":PORT\" after \"]\""),
        ("[127.0.0.1]:80", "\"127.0.0.1\" is not an IPv6 address"),
        ("", "missing \":PORT\""),
    ])
    func badAddresses(text: String, message: String) {
        #expect {
            _ = try MetricsAddress.parse(text)
        } throws: { error in
            let description = (error as? MetricsAddressError)?.description ?? ""
            return description.contains(message) && !description.contains("\n")
        }
    }

    // MARK: HTTP request parser

    static let scrape = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9464\r\nAccept: text/plain;version=0.0.4\r\nUser-Agent: Prometheus/2.53\r\n\r\n"

    @Test("a whole request in one piece")
    func wholeRequest() throws {
        var parser = HTTPRequestParser()
        guard case let .complete(head) = parser.append(Array(Self.scrape.utf8)) else {
            Issue.record("not complete")
            return
        }
        #expect(head.method == "GET" && head.target == "/metrics" && head.version == "HTTP/1.1")
        #expect(head.headers.map(\.name) == ["Host", "Accept", "User-Agent"])
        #expect(head.headers.first?.value == "127.0.0.1:9464")
    }

    @Test("byte by byte: incomplete until the blank line, then complete (partial reads)")
    func byteByByte() {
        var parser = HTTPRequestParser()
        let bytes = Array(Self.scrape.utf8)
        for (index, byte) in bytes.enumerated() {
            let result = parser.append([byte])
            if index < bytes.count - 1 {
                #expect(result == .incomplete, "complete early at byte \(index)")
            } else if case let .complete(head) = result {
                #expect(head.path == "/metrics")
            } else {
                Issue.record("not complete after the last byte: \(result)")
            }
        }
    }

    @Test("bare LF line ends, leading blank lines and a query string are accepted")
    func lenient() {
        var parser = HTTPRequestParser()
        guard case let .complete(head) = parser.append(Array("\r\n\nGET /metrics?x=1 HTTP/1.0\nHost: a\n\n".utf8)) else {
            Issue.record("not complete")
            return
        }
        #expect(head.path == "/metrics" && head.target == "/metrics?x=1" && head.version == "HTTP/1.0")
    }

    @Test("malformed request heads get a status and a reason", arguments: [
        ("\u{16}\u{3}\u{1}\u{0}\u{1}garbage\r\n\r\n", 400, "control or non-ASCII"),
        ("GET /metrics\r\n\r\n", 400, "METHOD TARGET HTTP/VERSION"),
        ("GET  /metrics HTTP/1.1\r\n\r\n", 400, "METHOD TARGET HTTP/VERSION"),
        ("GET /metrics HTTP/1.1 extra\r\n\r\n", 400, "METHOD TARGET HTTP/VERSION"),
        ("GET /metrics FTP/1.1\r\n\r\n", 400, "METHOD TARGET HTTP/VERSION"),
        ("GET /metrics HTTP/2.0\r\n\r\n", 505, "HTTP/2.0 is not supported"),
        ("G(T /metrics HTTP/1.1\r\n\r\n", 400, "is not a token"),
        ("GET metrics HTTP/1.1\r\n\r\n", 400, "starting with /"),
        ("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400, "without a field name"),
        ("GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n", 400, "without a field name"),
        ("GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, "not a token"),
        ("GET /metrics HTTP/1.1\r\nX: a\u{1}b\r\n\r\n", 400, "control bytes"),
        ("GET /m\u{E9}trics HTTP/1.1\r\n\r\n", 400, "non-ASCII"),
    ])
    func malformed(request: String, status: Int, reason: String) {
        var parser = HTTPRequestParser()
        let result = parser.append(Array(request.utf8))
        guard case let .invalid(got, text) = result else {
            Issue.record("\(request.debugDescription): \(result)")
            return
        }
        #expect(got == status, "\(request.debugDescription): \(text)")
        #expect(text.contains(reason), "\(request.debugDescription): \(text)")
        // The outcome is final: more bytes do not change it.
        #expect(parser.append(Array("GET /metrics HTTP/1.1\r\n\r\n".utf8)) == result)
    }

    @Test("oversize: a head that never ends is refused as soon as it passes the limit, and not buffered further")
    func oversize() {
        var parser = HTTPRequestParser(maximumHeadSize: 1024)
        #expect(parser.append(Array("GET /metrics HTTP/1.1\r\nX: ".utf8)) == .incomplete)
        var result = HTTPParseResult.incomplete
        var fed = 0
        while case .incomplete = result, fed < 10_000 {
            result = parser.append(Array(repeating: UInt8(ascii: "a"), count: 100))
            fed += 100
        }
        #expect(result == .invalid(status: 431, reason: "request head larger than 1024 bytes"))
        #expect(fed <= 1100, "refused only after \(fed) bytes")
        #expect(parser.bufferedCount == 0)
        // A complete head that is too long in one piece is refused too.
        var whole = HTTPRequestParser(maximumHeadSize: 64)
        #expect(whole.append(Array(("GET /metrics HTTP/1.1\r\nX: " + String(repeating: "b", count: 100) + "\r\n\r\n").utf8))
                == .invalid(status: 431, reason: "request head larger than 64 bytes"))
    }

    @Test("the blank line split across pieces is found", arguments: [1, 2, 3])
    func terminatorAcrossPieces(split: Int) {
        var parser = HTTPRequestParser()
        let bytes = Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        #expect(parser.append(bytes.dropLast(split)) == .incomplete)
        guard case .complete = parser.append(bytes.suffix(split)) else {
            Issue.record("not complete")
            return
        }
    }

    // MARK: Responses

    func parse(_ request: String) -> HTTPRequestHead {
        var parser = HTTPRequestParser()
        guard case let .complete(head) = parser.append(Array(request.utf8)) else { fatalError("test request does not parse") }
        return head
    }

    @Test("GET /metrics: 200 with the 0.0.4 content type; other paths 404, other methods 405, HEAD has no body")
    func routing() {
        var rendered = 0
        let body = { rendered += 1; return Array("x 1\n".utf8) }
        let ok = MetricsHTTPResponse.answer(parse("GET /metrics HTTP/1.1\r\n\r\n"), body: body)
        let okText = String(decoding: ok.bytes, as: UTF8.self)
        #expect(ok.status == 200)
        #expect(okText.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(okText.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
        #expect(okText.contains("\r\nContent-Length: 4\r\n") && okText.contains("\r\nConnection: close\r\n"))
        #expect(okText.hasSuffix("\r\n\r\nx 1\n"))

        let head = MetricsHTTPResponse.answer(parse("HEAD /metrics HTTP/1.1\r\n\r\n"), body: body)
        #expect(head.status == 200 && String(decoding: head.bytes, as: UTF8.self).hasSuffix("Content-Length: 4\r\nConnection: close\r\n\r\n"))
        #expect(rendered == 2)

        let notFound = MetricsHTTPResponse.answer(parse("GET /other HTTP/1.1\r\n\r\n"), body: body)
        #expect(notFound.status == 404)
        let post = MetricsHTTPResponse.answer(parse("POST /metrics HTTP/1.1\r\n\r\n"), body: body)
        #expect(post.status == 405 && String(decoding: post.bytes, as: UTF8.self).contains("\r\nAllow: GET, HEAD\r\n"))
        #expect(rendered == 2, "errors never render the exposition")
    }

    // MARK: One connection over a real socketpair

    final class Pair {
        let connection: MetricsHTTPConnection
        let client: Int32
        init(limits: MetricsHTTPLimits = MetricsHTTPLimits(), now: Instant) throws {
            var fds: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw SystemError.last("socketpair") }
            try Descriptors.setNonBlocking(fds[0])
            try Descriptors.setNonBlocking(fds[1])
            connection = MetricsHTTPConnection(fd: fds[0], now: now, limits: limits)
            client = fds[1]
        }
        deinit {
            connection.close()
            Descriptors.close(client)
        }
        func send(_ text: String) { _ = Array(text.utf8).withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, 0) } }
        func receive() -> String {
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
                guard n > 0 else { break }
                bytes += chunk[0..<n]
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    static let start = Instant(nanoseconds: 1_000_000_000)

    @Test("a request arriving in pieces over several wake-ups gets one response, then the connection lingers and closes")
    func piecewise() throws {
        let pair = try Pair(now: Self.start)
        let render = { Array("mcrelay_rules 1\n".utf8) }
        for piece in ["GE", "T /metr", "ics HTTP/1.1\r\nHo", "st: x\r\n", "\r"] {
            pair.send(piece)
            pair.connection.handle(revents: Int16(POLLIN), now: Self.start, render: render)
            #expect(pair.connection.phase == .reading)
            #expect(pair.receive().isEmpty)
        }
        pair.send("\n")
        pair.connection.handle(revents: Int16(POLLIN), now: Self.start, render: render)
        #expect(pair.connection.status == 200)
        #expect(pair.connection.phase == .lingering, "response written, waiting for the client to close")
        let response = pair.receive()
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n") && response.hasSuffix("\r\n\r\nmcrelay_rules 1\n"), "\(response)")
        shutdown(pair.client, Int32(SHUT_WR))
        pair.connection.handle(revents: Int16(POLLIN), now: Self.start, render: render)
        #expect(pair.connection.phase == .done)
    }

    @Test("a stalled request head gets 408 at the head timeout; a client that never closes is dropped at the linger timeout")
    func stalledHead() throws {
        let pair = try Pair(now: Self.start)
        pair.send("GET /metrics HTTP/1.1\r\n")
        pair.connection.handle(revents: Int16(POLLIN), now: Self.start, render: { [] })
        #expect(pair.connection.deadline == Self.start + .seconds(5))
        pair.connection.expire(now: Self.start + .seconds(4))
        #expect(pair.connection.phase == .reading, "not before the deadline")
        pair.connection.expire(now: Self.start + .seconds(5))
        #expect(pair.connection.status == 408)
        #expect(pair.receive().hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        #expect(pair.connection.phase == .lingering)
        pair.connection.expire(now: Self.start + .seconds(7))
        #expect(pair.connection.phase == .done)
    }

    @Test("a client that leaves before a whole head gets nothing and costs nothing")
    func clientLeaves() throws {
        let pair = try Pair(now: Self.start)
        pair.send("GET /met")
        shutdown(pair.client, Int32(SHUT_WR))
        pair.connection.handle(revents: Int16(POLLIN | POLLHUP), now: Self.start, render: { [] })
        #expect(pair.connection.phase == .done && pair.connection.status == nil)
    }

    @Test("a client that does not read a large response is dropped at the write timeout")
    func slowReader() throws {
        let pair = try Pair(now: Self.start)
        pair.send("GET /metrics HTTP/1.1\r\n\r\n")
        let big = Array(repeating: UInt8(ascii: "x"), count: 8 << 20)
        pair.connection.handle(revents: Int16(POLLIN), now: Self.start, render: { big })
        #expect(pair.connection.status == 200)
        #expect(pair.connection.phase == .writing, "8 MiB does not fit in the socket buffer")
        #expect(pair.connection.deadline == Self.start + .seconds(10))
        pair.connection.expire(now: Self.start + .seconds(10))
        #expect(pair.connection.phase == .done)
    }

    @Test("garbage gets 400 at once, even with more bytes behind it")
    func garbage() throws {
        let pair = try Pair(now: Self.start)
        pair.send("\u{0}\u{1}\u{2}\u{3} binary junk\r\n\r\nand more after it")
        pair.connection.handle(revents: Int16(POLLIN), now: Self.start, render: { [] })
        #expect(pair.connection.status == 400)
        #expect(pair.receive().hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
    }

    // MARK: From stats to metrics

    static func rule(_ input: String, _ outputs: [String], name: String?) throws -> Rule {
        let spec = try RuleText(name: name, in: input, out: outputs).spec()
        return Rule(id: RuleID(deriving: spec.input), name: name, input: spec.input, outputs: spec.outputs)
    }

    static func statistics(_ rule: Rule, packets: UInt64, size: UInt64 = 100, drops: UInt64 = 0, queue: UInt64 = 0) -> ForwardingStatistics {
        var stats = ForwardingStatistics(rules: [RuleStatistics(
            rule: rule, accepted: TrafficCounter(packets: packets, bytes: packets * size),
            outputs: rule.outputs.map { _ in OutputCounter(packets: packets, bytes: packets * size, sendErrors: 0) })])
        stats.drops[.noMatchingRule] = drops
        stats.ingressQueueDrops = queue
        return stats
    }

    static func view(_ rules: [Rule], _ merged: ForwardingStatistics, restarts: Int = 0) -> StatsView {
        var byID: [RuleID: RuleStatistics] = [:]
        for stats in merged.rules { byID[stats.rule.id] = stats }
        var view = StatsView(
            rules: rules.map { rule in byID[rule.id].map(RuleStatsView.init) ?? RuleStatsView(unused: rule) },
            drops: merged.drops,
            workers: [WorkerView(id: 0, pid: 42, alive: true, planVersion: 3, restarts: restarts, answered: true)],
            planVersion: 3, joined: [], outstanding: [], helperSockets: [], interfacesUp: ["rin0"])
        view.ingressQueueDrops = merged.ingressQueueDrops
        return view
    }

    static func control(_ rules: [Rule], joinFailures: UInt64 = 0) -> MetricsSnapshot.ControlState {
        MetricsSnapshot.ControlState(
            ruleInputs: rules.map(\.input.interface),
            joined: rules.map { MembershipKey(interface: $0.input.interface, group: $0.input.group) },
            outstanding: [], helperSockets: [HelperSocketID(interface: InterfaceName("rin0")!, ordinal: 0)],
            joinFailures: joinFailures, version: "test")
    }

    /// Parses an exposition into "name{labels}" -> value, recording malformed lines.
    static func samples(_ text: String) -> [String: Double] {
        var result: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                Issue.record("malformed sample line: \(line)")
                continue
            }
            result[String(line[..<space])] = value
        }
        return result
    }

    @Test("the snapshot names follow Prometheus conventions and carry the stats' numbers")
    func snapshotMapping() throws {
        let cam = try Self.rule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001:16", "rout1:239.20.1.1:6001"], name: "cam1")
        let stats = Self.statistics(cam, packets: 7, drops: 3, queue: 2)
        let snapshot = MetricsSnapshot(stats: Self.view([cam], stats, restarts: 1), control: Self.control([cam], joinFailures: 4),
                                       httpResponses: [200: 5, 400: 1])
        let counters = Dictionary(snapshot.counters.map { ($0.description.split(separator: " ")[0], $0.value) }, uniquingKeysWith: +)
        let id = cam.id.description
        #expect(counters["mcrelay_rule_received_packets_total{rule=\"\(id)\",name=\"cam1\"}"] == 7)
        #expect(counters["mcrelay_rule_received_bytes_total{rule=\"\(id)\",name=\"cam1\"}"] == 700)
        #expect(counters["mcrelay_output_sent_packets_total{rule=\"\(id)\",name=\"cam1\",output=\"rout0:239.10.1.1:6001:16\"}"] == 7)
        #expect(counters["mcrelay_output_sent_bytes_total{rule=\"\(id)\",name=\"cam1\",output=\"rout1:239.20.1.1:6001:64\"}"] == 700)
        #expect(counters["mcrelay_output_send_errors_total{rule=\"\(id)\",name=\"cam1\",output=\"rout1:239.20.1.1:6001:64\"}"] == 0)
        #expect(counters["mcrelay_dropped_packets_total{reason=\"no_matching_rule\"}"] == 3)
        #expect(counters["mcrelay_dropped_packets_total{reason=\"fragment\"}"] == 0)
        #expect(counters["mcrelay_ingress_queue_drops_total"] == 2)
        #expect(counters["mcrelay_worker_restarts_total{worker=\"0\"}"] == 1)
        #expect(counters["mcrelay_join_failures_total"] == 4)
        #expect(counters["mcrelay_metrics_http_responses_total{code=\"400\"}"] == 1)
        let gauges = Dictionary(snapshot.gauges.map { ($0.description.split(separator: " ")[0], $0.value) }, uniquingKeysWith: +)
        #expect(gauges["mcrelay_rules"] == 1 && gauges["mcrelay_workers"] == 1 && gauges["mcrelay_workers_configured"] == 1)
        #expect(gauges["mcrelay_igmp_memberships{interface=\"rin0\"}"] == 1)
        #expect(gauges["mcrelay_helper_sockets{interface=\"rin0\"}"] == 1)
        #expect(gauges["mcrelay_interface_up{interface=\"rin0\"}"] == 1)
        #expect(gauges["mcrelay_build_info{version=\"test\"}"] == 1)
        #expect(gauges["mcrelay_rule_info{rule=\"\(id)\",name=\"cam1\",input=\"rin0:239.1.1.1:5001\",source=\"\",kind=\"rule\"}"] == 1)
        for sample in snapshot.counters { #expect(sample.name.hasSuffix("_total"), "counter \(sample.name) without _total") }
        for name in Set(snapshot.counters.map(\.name) + snapshot.gauges.map(\.name)) {
            #expect(MetricsSnapshot.help[name] != nil, "no HELP text for \(name)")
        }
    }

    @Test("the registry bridge: increments to the new totals, removed rules' series disappear, sorted output with HELP and TYPE")
    func registryBridge() throws {
        let cam = try Self.rule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"], name: "cam1")
        let other = try Self.rule("rin0:239.1.1.2:5002", ["rout0:239.10.1.2:6002"], name: nil)
        let metrics = RelayMetrics()
        let both = ForwardingStatistics.merged([Self.statistics(cam, packets: 10), Self.statistics(other, packets: 5)])
        metrics.update(MetricsSnapshot(stats: Self.view([cam, other], both), control: Self.control([cam, other])))
        var text = String(decoding: metrics.exposition(), as: UTF8.self)
        var values = Self.samples(text)
        #expect(values["mcrelay_rule_received_packets_total{rule=\"\(cam.id)\",name=\"cam1\"}"] == 10)
        #expect(values["mcrelay_rule_received_packets_total{rule=\"\(other.id)\",name=\"\"}"] == 5)
        #expect(text.contains("# HELP mcrelay_rule_received_packets_total Datagrams a rule accepted from its input.\n# TYPE mcrelay_rule_received_packets_total counter\n"))
        let types = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        #expect(types == types.sorted(), "families sorted by name")
        #expect(text == String(decoding: metrics.exposition(), as: UTF8.self), "same state, same bytes")

        // Later: cam counted more, `other` was removed.
        metrics.update(MetricsSnapshot(stats: Self.view([cam], Self.statistics(cam, packets: 25)), control: Self.control([cam])))
        text = String(decoding: metrics.exposition(), as: UTF8.self)
        values = Self.samples(text)
        #expect(values["mcrelay_rule_received_packets_total{rule=\"\(cam.id)\",name=\"cam1\"}"] == 25)
        #expect(!text.contains(other.id.description), "the removed rule's series are gone:\n\(text)")
        #expect(values["mcrelay_rules"] == 1)

        // A total that goes down (what the ledger cannot hide) is published as a reset.
        metrics.update(MetricsSnapshot(stats: Self.view([cam], Self.statistics(cam, packets: 3)), control: Self.control([cam])))
        values = Self.samples(String(decoding: metrics.exposition(), as: UTF8.self))
        #expect(values["mcrelay_rule_received_packets_total{rule=\"\(cam.id)\",name=\"cam1\"}"] == 3)
        #expect(metrics.resets > 0)
    }

    @Test("label values with quotes, backslashes and newlines are escaped")
    func labelEscaping() {
        let metrics = RelayMetrics()
        metrics.update(MetricsSnapshot(counters: [MetricSample("mcrelay_rule_received_packets_total",
                                                               [MetricSample.Label("name", "a\"b\\c\nd")], 1)]))
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(text.contains(#"mcrelay_rule_received_packets_total{name="a\"b\\c\nd"} 1"#), "\(text)")
    }

    // MARK: Monotonic across worker restarts

    @Test("a restarted worker's counters are added to what its previous process counted")
    func ledgerAcrossRestart() throws {
        let cam = try Self.rule("rin0:239.1.1.1:5001", ["rout0:239.10.1.1:6001"], name: "cam1")
        var ledger = WorkerCounterLedger()
        let w0 = WorkerID(0), w1 = WorkerID(1)
        func total() -> UInt64 {
            ForwardingStatistics.merged(ledger.totals.sorted { $0.key < $1.key }.map(\.value)).rules.first?.accepted.packets ?? 0
        }
        ledger.record(w0, pid: 100, Self.statistics(cam, packets: 40, drops: 2), rules: [cam])
        ledger.record(w1, pid: 101, Self.statistics(cam, packets: 60), rules: [cam])
        #expect(total() == 100)
        // w0 died; this round only w1 answered: w0's last answer still counts.
        ledger.record(w1, pid: 101, Self.statistics(cam, packets: 70), rules: [cam])
        #expect(total() == 110)
        // w0's new process starts from zero.
        ledger.record(w0, pid: 200, Self.statistics(cam, packets: 5, drops: 1), rules: [cam])
        #expect(total() == 115)
        ledger.record(w0, pid: 200, Self.statistics(cam, packets: 9, drops: 1), rules: [cam])
        #expect(total() == 119)
        let drops = ForwardingStatistics.merged(Array(ledger.totals.values)).drops[.noMatchingRule]
        #expect(drops == 3)
        // The rule is removed: its retired counts are forgotten (drops stay).
        ledger.prune(rules: [])
        ledger.record(w0, pid: 200, ForwardingStatistics(), rules: [])
        ledger.record(w1, pid: 101, ForwardingStatistics(), rules: [])
        #expect(total() == 0)
        #expect(ForwardingStatistics.merged(Array(ledger.totals.values)).drops[.noMatchingRule] == 2)
    }
}
