import Foundation
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// `mcrelay daemon --metrics` in a namespace lab, scraped over real TCP from inside the relay's
/// namespace (python3's socket module: a plain client that sends exactly the bytes given, so
/// garbage and stalled requests can be sent too).
@Suite("Metrics endpoint end to end (root, network namespaces)", .serialized,
       .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
struct MetricsEndToEndTests {
    static let port = 9464
    static let address = "127.0.0.1:\(port)"

    /// Connects, sends `request`, optionally waits, then reads until the server closes; stdout is the raw reply.
    static let client = """
        import socket, sys, time
        host, port, request, pause = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), float(sys.argv[4])
        s = socket.create_connection((host, port), timeout=20)
        s.sendall(request)
        time.sleep(pause)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b: break
            chunks.append(b)
        sys.stdout.buffer.write(b"".join(chunks))
        """

    /// Holds `limit` idle connections open, then opens one more and prints what it gets.
    static let crowd = """
        import socket, sys
        host, port, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        held = [socket.create_connection((host, port), timeout=10) for _ in range(limit)]
        extra = socket.create_connection((host, port), timeout=10)
        reply = b""
        while True:
            b = extra.recv(65536)
            if not b: break
            reply += b
        sys.stdout.buffer.write(reply)
        for s in held: s.close()
        """

    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    static func clientArguments(_ lab: Lab, _ request: String, pause: Double = 0) -> [String] {
        let hex = Array(request.utf8).map { String(format: "%02x", $0) }.joined()
        return lab.exec(lab.relay, ["python3", "-c", client, "127.0.0.1", String(port), hex, String(pause)])
    }

    static func parseReply(_ raw: String) throws -> Reply {
        guard let split = raw.range(of: "\r\n\r\n") else { throw HarnessError("not an HTTP reply: \(raw.prefix(300).debugDescription)") }
        let lines = raw[..<split.lowerBound].split(separator: "\r\n")
        let statusFields = lines.first?.split(separator: " ") ?? []
        guard statusFields.count >= 2, statusFields[0] == "HTTP/1.1", let status = Int(statusFields[1]) else {
            throw HarnessError("bad status line: \(lines.first ?? "")")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw HarnessError("bad header line: \(line)") }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = String(raw[split.upperBound...])
        if let length = headers["content-length"].flatMap(Int.init) {
            guard length == body.utf8.count else { throw HarnessError("Content-Length \(length), body \(body.utf8.count) bytes") }
        }
        return Reply(status: status, headers: headers, body: body)
    }

    /// One request over TCP from inside the relay namespace; a client that fails is a harness error.
    static func request(_ lab: Lab, _ request: String) throws -> Reply {
        let result = try run(clientArguments(lab, request), in: lab.directory, timeout: .seconds(30))
        guard result.status == 0 else { throw HarnessError("HTTP client failed: \(result)") }
        return try parseReply(result.stdout)
    }

    /// GET /metrics, checked as a 0.0.4 exposition and parsed into "name{labels}" -> value.
    static func scrape(_ lab: Lab, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Double] {
        let reply = try request(lab, "GET /metrics HTTP/1.1\r\nHost: \(address)\r\nAccept: text/plain\r\n\r\n")
        guard reply.status == 200 else { throw HarnessError("scrape: status \(reply.status): \(reply.body)") }
        #expect(reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8", sourceLocation: sourceLocation)
        var samples: [String: Double] = [:]
        for line in reply.body.split(separator: "\n") {
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") { continue }
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw HarnessError("malformed exposition line: \(line)")
            }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    /// Waits until the daemon's side holds exactly `count` connections on the metrics port
    /// (any state but LISTEN: a closed client's connection counts until the daemon closed it too).
    static func waitForServerConnections(_ lab: Lab, _ count: Int) throws -> Bool {
        try waitUntil(timeout: .seconds(10)) {
            let result = try run(lab.exec(lab.relay, ["ss", "-Htan", "( sport = :\(port) )"]), in: lab.directory)
            guard result.status == 0 else { throw HarnessError("ss failed: \(result)") }
            return result.stdout.split(separator: "\n").filter { !$0.hasPrefix("LISTEN") && !$0.hasPrefix("TIME-WAIT") }.count == count
        }
    }

    /// Scrapes until `condition` holds (the endpoint refreshes once a second); returns the last scrape.
    /// Callers check the returned scrape, which says what did not happen.
    static func scrape(_ lab: Lab, until condition: ([String: Double]) -> Bool, timeout: Duration = .seconds(10)) throws -> [String: Double] {
        var last: [String: Double] = [:]
        _ = try waitUntil(timeout: timeout) {
            last = try scrape(lab)
            return condition(last)
        }
        return last
    }

    @Test("scraped counters equal what the receiver counted, across a worker restart; bad requests get errors and forwarding goes on")
    func scrapeUnderTraffic() throws {
        let stream = Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)
        let first = 2000, second = 1500, third = 1000, size = 200
        try RelayEndToEndTests().withRelay("mtx", workers: 2, restartsExpected: true,
                                           daemonArguments: ["--metrics", Self.address]) { lab, daemon in
            let id = try daemon.addRule("rin0:\(stream.input)", ["rout0:\(stream.output)"], name: "cam1")
            try daemon.waitSettled()
            let received = "mcrelay_rule_received_packets_total{rule=\"\(id)\",name=\"cam1\"}"
            let sent = "mcrelay_output_sent_packets_total{rule=\"\(id)\",name=\"cam1\",output=\"rout0:239.10.1.1:6001:64\"}"
            let sentBytes = "mcrelay_output_sent_bytes_total{rule=\"\(id)\",name=\"cam1\",output=\"rout0:239.10.1.1:6001:64\"}"

            // Before traffic: the series exist at zero, and the gauges describe the daemon.
            let idle = try Self.scrape(lab) { $0[received] != nil }
            #expect(idle[received] == 0 && idle[sent] == 0, "\(idle)")
            #expect(idle["mcrelay_rules"] == 1 && idle["mcrelay_workers"] == 2, "\(idle)")
            #expect(idle["mcrelay_igmp_memberships{interface=\"rin0\"}"] == 1, "\(idle)")
            #expect(idle["mcrelay_helper_sockets{interface=\"rin0\"}"] == 1, "\(idle)")
            #expect(idle["mcrelay_dropped_packets_total{reason=\"fragment\"}"] == 0)
            #expect(idle.keys.contains { $0.hasPrefix("mcrelay_build_info{version=") })

            // Round 1: N packets; the scraped counter must equal what arrived at the receiver.
            var receiver = try Receiver(lab, streams: [stream], expect: first, size: size)
            try send(lab, streams: [stream], count: first, rate: 2000, size: size)
            var summary = try receiver.finish()
            expectDelivered(summary, [stream], count: first)
            let arrived1 = summary.received[stream.output]?.received ?? -1
            var metrics = try Self.scrape(lab) { $0[received] == Double(first) }
            #expect(metrics[received] == Double(arrived1), "scraped \(metrics[received] ?? -1), receiver counted \(arrived1)")
            #expect(metrics[sent] == Double(arrived1))
            #expect(metrics[sentBytes] == Double(arrived1 * size))
            let stats = try daemon.stats()
            #expect(stats.rules.first?.packets == UInt64(first), "mcrelay stats agrees")

            // Hostile clients: garbage, oversize, wrong method and path, a stalled head, a crowd.
            let garbage = try Self.request(lab, "\u{16}\u{3}\u{1}\u{2}\u{0}\u{1}\u{fc}\u{3}\u{3} not http\r\n\r\n")
            #expect(garbage.status == 400, "garbage: \(garbage)")
            let oversize = try Self.request(lab, "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 20_000) + "\r\n\r\n")
            #expect(oversize.status == 431, "oversize: \(oversize.status) \(oversize.body)")
            #expect(try Self.request(lab, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status == 405)
            #expect(try Self.request(lab, "GET /nope HTTP/1.1\r\n\r\n").status == 404)
            #expect(try Self.request(lab, "GET /metrics HTTP/3\r\n\r\n").status == 505)
            // A crowd: with the limit (16) held open, one more connection gets 503.
            #expect(try Self.waitForServerConnections(lab, 0), "connections still open before the crowd")
            let crowd = try run(lab.exec(lab.relay, ["python3", "-c", Self.crowd, "127.0.0.1", String(Self.port), "16"]),
                                in: lab.directory, timeout: .seconds(30))
            #expect(crowd.status == 0, "crowd client failed: \(crowd)")
            #expect(crowd.stdout.hasPrefix("HTTP/1.1 503 "), "the 17th connection gets 503: \(crowd.stdout.prefix(200))")
            // The stalled client holds its connection while round 2 flows; it gets 408 after 5 s.
            #expect(try Self.waitForServerConnections(lab, 0), "the crowd's connections were not closed")
            let stalled = try ChildProcess(Self.clientArguments(lab, "GET /metrics HTTP/1.1\r\nHost: x\r\n"),
                                           outputDirectory: lab.directory, name: "stalled")
            defer { stalled.terminate() }
            #expect(try Self.waitForServerConnections(lab, 1), "the stalled client did not connect: \(stalled.stderr)")

            // Round 2, with the stalled client still connected: forwarding is untouched.
            receiver = try Receiver(lab, streams: [stream], expect: second, size: size, startSeq: first, name: "recv2")
            try send(lab, streams: [stream], count: second, rate: 2000, size: size, startSeq: first)
            summary = try receiver.finish()
            expectDelivered(summary, [stream], count: second)
            let arrived2 = summary.received[stream.output]?.received ?? -1
            metrics = try Self.scrape(lab) { $0[received] == Double(first + second) }
            #expect(metrics[received] == Double(arrived1 + arrived2), "scraped \(metrics[received] ?? -1), receivers counted \(arrived1 + arrived2)")
            let stalledResult = try #require(stalled.wait(timeout: .seconds(15)), "stalled client still waiting after 15 s")
            #expect(stalledResult.status == 0, "\(stalledResult)")
            #expect(try Self.parseReply(stalledResult.stdout).status == 408, "\(stalledResult.stdout.prefix(200))")
            metrics = try Self.scrape(lab) { ($0["mcrelay_metrics_http_responses_total{code=\"408\"}"] ?? 0) >= 1 }
            for code in [400, 404, 405, 408, 431, 503, 505] {
                #expect((metrics["mcrelay_metrics_http_responses_total{code=\"\(code)\"}"] ?? 0) >= 1, "no \(code) counted: \(metrics.filter { $0.key.contains("http") })")
            }

            // Kill every worker: the daemon restarts them; the counters keep what was counted.
            let pids = try daemon.stats().workers.compactMap(\.pid)
            #expect(pids.count == 2)
            for pid in pids { kill(pid, SIGKILL) }
            let restarted = try waitUntil(timeout: .seconds(15)) {
                let now = try daemon.stats()
                return now.workers.allSatisfy { $0.alive && $0.restarts >= 1 && !pids.contains($0.pid ?? -1) && $0.planVersion == now.planVersion }
            }
            #expect(restarted, "workers did not come back")
            try daemon.waitSettled()
            metrics = try Self.scrape(lab) { ($0["mcrelay_worker_restarts_total{worker=\"0\"}"] ?? 0) >= 1 && ($0["mcrelay_worker_restarts_total{worker=\"1\"}"] ?? 0) >= 1 }
            #expect(metrics[received] == Double(first + second), "after the restart, before new traffic: \(metrics[received] ?? -1)")
            #expect(try daemon.stats().rules.first?.packets == 0, "mcrelay stats restarts from zero (the ledger is what keeps the metric monotonic)")

            // Round 3 after the restart: the metric adds up across both processes.
            receiver = try Receiver(lab, streams: [stream], expect: third, size: size, startSeq: first + second, name: "recv3")
            try send(lab, streams: [stream], count: third, rate: 2000, size: size, startSeq: first + second)
            summary = try receiver.finish()
            expectDelivered(summary, [stream], count: third)
            let arrived3 = summary.received[stream.output]?.received ?? -1
            metrics = try Self.scrape(lab) { $0[received] == Double(first + second + third) }
            #expect(metrics[received] == Double(arrived1 + arrived2 + arrived3), "scraped \(metrics[received] ?? -1) after the restart")
            #expect(metrics[sent] == Double(arrived1 + arrived2 + arrived3))

            // Removing the rule removes its series.
            try daemon.removeRule("cam1")
            metrics = try Self.scrape(lab) { $0["mcrelay_rules"] == 0 }
            #expect(metrics["mcrelay_rules"] == 0)
            #expect(!metrics.keys.contains { $0.contains(id) }, "series of the removed rule remain: \(metrics.keys.filter { $0.contains(id) })")
        }
    }

    @Test("a port already in use is one line on stderr and exit 1")
    func portInUse() throws {
        let lab = try Lab("mtxb")
        defer { lab.down() }
        // Something else holds the port in the relay namespace.
        let holder = try ChildProcess(lab.exec(lab.relay, ["python3", "-c", """
            import socket, time
            s = socket.socket(); s.bind(("127.0.0.1", \(Self.port))); s.listen(1); time.sleep(60)
            """]), outputDirectory: lab.directory, name: "holder")
        defer { holder.terminate() }
        let bound = waitUntil(timeout: .seconds(10)) {
            (try? run(lab.exec(lab.relay, ["ss", "-Hltn", "sport = :\(Self.port)"]), in: lab.directory))?.stdout.contains("127.0.0.1") ?? false
        }
        #expect(bound, "the port holder did not start: \(holder.stderr)")
        let result = try run(lab.exec(lab.relay, [E2E.binary, "daemon", "--control", lab.directory + "/c.sock", "--workers", "1",
                                                  "--metrics", Self.address]), in: lab.directory, timeout: .seconds(20))
        #expect(result.status == 1, "\(result)")
        let lines = result.stderr.split(separator: "\n").filter { !$0.contains(" info ") }
        #expect(lines.count == 1 && lines.first?.contains("--metrics \(Self.address): bind \(Self.address): Address already in use") == true,
                "\(result.stderr)")
    }
}

/// `--metrics` syntax errors from the real binary (no root needed: refused before anything starts).
@Suite("daemon --metrics syntax")
struct MetricsCommandLineTests {
    @Test("bad --metrics is one line on stderr, exit 1, before anything starts", arguments: [
        ("localhost:9464", "--metrics: \"localhost:9464\": \"localhost\" is not an IPv4 address (host names are not resolved)"),
        ("127.0.0.1", "--metrics: \"127.0.0.1\": missing \":PORT\""),
        ("127.0.0.1:70000", "port \"70000\" is not a number in 1...65535"),
        ("::1:9464", "an IPv6 address needs brackets"),
    ])
    func badSyntax(text: String, message: String) throws {
        guard FileManager.default.isExecutableFile(atPath: E2E.binary) else {
            throw HarnessError("mcrelay binary not found at \(E2E.binary): build it first (swift build), or set MCRELAY_BINARY")
        }
        let directory = try E2E.temporaryDirectory("mtxcli")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try run([E2E.binary, "daemon", "--metrics", text, "--control", directory + "/c.sock"], in: directory,
                             timeout: .seconds(20))
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/c.sock"), "the daemon must not have started")
    }
}

/// `--metrics [::1]:PORT`: the IPv6 listener, in a namespace of its own with only loopback
/// (the three-namespace lab has IPv6 off).
@Suite("Metrics endpoint over IPv6 (root, network namespace)", .serialized,
       .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
struct MetricsIPv6Tests {
    @Test("a daemon with --metrics [::1]:9464 answers a scrape over IPv6 loopback")
    func ipv6Loopback() throws {
        let namespace = "mtxv6-\(getpid() % 100000)"
        try LiveLease.with(namespace) { try ipv6Loopback(namespace: namespace) }
    }

    private func ipv6Loopback(namespace: String) throws {
        let directory = try E2E.temporaryDirectory(namespace)
        _ = try? run(["ip", "netns", "del", namespace], in: directory)
        let created = try run(["ip", "netns", "add", namespace], in: directory)
        #expect(created.status == 0, "\(created)")
        defer { _ = try? run(["ip", "netns", "del", namespace], in: directory) }
        let up = try run(["ip", "-n", namespace, "link", "set", "lo", "up"], in: directory)
        #expect(up.status == 0, "\(up)")

        let daemon = try ChildProcess(["ip", "netns", "exec", namespace, E2E.binary, "daemon", "--workers", "1",
                                       "--control", directory + "/c.sock", "--metrics", "[::1]:9464"],
                                      outputDirectory: directory, name: "daemon")
        defer { daemon.terminate() }
        let client = """
            import socket, sys
            s = socket.create_connection(("::1", 9464), timeout=10)
            s.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: [::1]:9464\\r\\n\\r\\n")
            reply = b""
            while True:
                b = s.recv(65536)
                if not b: break
                reply += b
            sys.stdout.buffer.write(reply)
            """
        var last: CommandResult?
        let answered = try waitUntil(timeout: .seconds(15)) {
            guard daemon.isRunning else { return true }
            let result = try run(["ip", "netns", "exec", namespace, "python3", "-c", client], in: directory)
            last = result
            return result.status == 0 && result.stdout.contains("\nmcrelay_workers 1")
        }
        #expect(answered && daemon.isRunning, "no scrape over [::1]: \(String(describing: last))\ndaemon: \(daemon.stderr.suffix(2000))")
        if let reply = last?.stdout {
            #expect(reply.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(reply.prefix(200))")
            #expect(reply.contains("\nmcrelay_rules 0"), "\(reply.suffix(500))")
        }
        daemon.signal(SIGTERM)
        let stopped = daemon.wait(timeout: .seconds(15))
        #expect(stopped?.status == 0, "daemon exit after SIGTERM: \(String(describing: stopped))")
        #expect(daemon.stderr.contains("serving Prometheus metrics at http://[::1]:9464/metrics"), "\(daemon.stderr)")
    }
}
