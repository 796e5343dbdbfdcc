import Foundation
import LinuxIO
import Logging
import RelayControl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Operator tooling: `daemon --log-format json` and `stats --watch`.
@Suite("Operator tools: JSON logs and stats --watch")
struct OperatorTests {
    // MARK: JSON log lines (no root needed)

    /// Parses one line as a JSON object, failing the test with the line if it is not one.
    static func object(_ line: some StringProtocol, sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any]? {
        let parsed = try? JSONSerialization.jsonObject(with: Data(line.utf8))
        guard let object = parsed as? [String: Any] else {
            Issue.record("not a JSON object: \(line)", sourceLocation: sourceLocation)
            return nil
        }
        return object
    }

    @Test("a log event is one JSON line: ts, level, label, message, flattened metadata")
    func jsonLine() throws {
        let line = JSONLogHandler.line(
            seconds: 1_795_595_499, nanoseconds: 7_000_000, level: .notice, label: "mcrelay.daemon", message: "rule added",
            metadata: ["rule": "cam1", "worker": .stringConvertible(3), "peer": ["pid": "42", "addr": "198.18.1.1"],
                       "groups": ["239.1.1.1", "239.1.1.2"]])
        #expect(line.hasSuffix("}\n"))
        #expect(line.dropLast().contains("\n") == false)
        let json = try #require(Self.object(line))
        #expect(json["ts"] as? String == "2026-11-25T08:31:39.007Z")
        #expect(json["level"] as? String == "notice")
        #expect(json["label"] as? String == "mcrelay.daemon")
        #expect(json["message"] as? String == "rule added")
        #expect(json["rule"] as? String == "cam1")
        #expect(json["worker"] as? String == "3")
        #expect(json["peer.pid"] as? String == "42" && json["peer.addr"] as? String == "198.18.1.1")
        #expect(json["groups"] as? [String] == ["239.1.1.1", "239.1.1.2"])
        // Fixed field order, then sorted metadata keys: equal events give equal bytes.
        #expect(line.hasPrefix(#"{"ts":"2026-11-25T08:31:39.007Z","level":"notice","label":"mcrelay.daemon","message":"rule added","groups":"#))
    }

    @Test("quotes, backslashes, newlines and control characters are escaped; the line stays one line")
    func escaping() throws {
        let nasty = "say \"hi\"\\ now\nsecond line\r\t\u{1}\u{7F} é \u{2028}"
        let line = JSONLogHandler.line(seconds: 0, nanoseconds: 999_999_999, level: .error, label: "l\"x",
                                       message: nasty, metadata: ["k\n": .string(nasty), "message": "clash"])
        #expect(line.filter { $0 == "\n" }.count == 1)
        let json = try #require(Self.object(line))
        #expect(json["message"] as? String == nasty)
        #expect(json["label"] as? String == "l\"x")
        #expect(json["k\n"] as? String == nasty)
        #expect(json["meta.message"] as? String == "clash", "metadata never overwrites a fixed field")
        #expect(json["ts"] as? String == "1970-01-01T00:00:00.999Z")
    }

    @Test("the handler writes whole lines to its descriptor, honouring level and metadata")
    func handlerWrites() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        var handler = JSONLogHandler(label: "test", fileDescriptor: fds[1])
        handler.logLevel = .info
        handler[metadataKey: "component"] = "supervisor"
        let logger = Logger(label: "test", factory: { _ in handler })
        logger.debug("hidden")
        logger.info("shown \"once\"", metadata: ["n": "1"])
        close(fds[1])
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fds[0], &buffer, buffer.count)
            guard count > 0 else { break }
            bytes += buffer[0..<count]
        }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 1, "\(lines)")
        let json = try #require(lines.first.flatMap { Self.object($0) })
        #expect(json["message"] as? String == "shown \"once\"")
        #expect(json["component"] as? String == "supervisor" && json["n"] as? String == "1")
        #expect(json["level"] as? String == "info")
    }

    // MARK: command-line errors (no root needed)

    func mcrelay(_ arguments: [String]) throws -> CommandResult {
        guard FileManager.default.isExecutableFile(atPath: E2E.binary) else {
            throw HarnessError("mcrelay binary not found at \(E2E.binary): build it first (swift build), or set MCRELAY_BINARY")
        }
        let directory = try E2E.temporaryDirectory("ops")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try run([E2E.binary] + arguments, in: directory, timeout: .seconds(20))
    }

    @Test("bad --log-format, --interval, --count and a missing daemon are one line on stderr", arguments: [
        (["daemon", "--log-format", "xml", "--control", "/nonexistent/x.sock"], "--log-format: \"xml\" is not text or json"),
        (["stats", "--interval", "2", "--control", "/nonexistent/x.sock"], "--interval and --count need --watch"),
        (["stats", "--watch", "--interval", "0", "--control", "/nonexistent/x.sock"], "--interval: 0.0 is not between"),
        (["stats", "--watch", "--count", "0", "--control", "/nonexistent/x.sock"], "--count: 0 is not a positive number"),
        (["stats", "--watch", "--count", "2", "--control", "/nonexistent/x.sock"], "/nonexistent/x.sock"),
    ])
    func badArguments(arguments: [String], message: String) throws {
        let result = try mcrelay(arguments)
        #expect(result.status != 0, "\(result)")
        #expect(result.stderr.split(separator: "\n").count == 1, "stderr should be one line: \(result.stderr)")
        #expect(result.stderr.contains(message), "stderr should mention \(message): \(result.stderr)")
        #expect(result.stdout.isEmpty, "nothing on stdout on failure: \(result.stdout)")
    }

    // MARK: end to end (root)

    @Suite("end to end (root, network namespaces)", .serialized,
           .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
    struct EndToEnd {
        @Test("daemon --log-format json and stats --watch --json under real traffic")
        func watchUnderTraffic() throws {
            let rate = 500.0, count = 3000, size = 250
            let stream = Stream(input: "239.1.1.1:5001", output: "239.10.1.1:6001", id: 1)
            var daemonStderr = ""
            var ruleID = ""
            try RelayEndToEndTests().withRelay("ops", daemonArguments: ["--log-format", "json"]) { lab, daemon in
                daemonStderr = daemon.process.stderrPath
                ruleID = try daemon.addRule("rin0:\(stream.input)", ["rout0:\(stream.output)"], name: "cam1")
                try daemon.waitSettled()
                let receiver = try Receiver(lab, streams: [stream], expect: count, size: size)
                // The sender runs in the background (6 s at 500/s) while stats --watch samples it.
                var arguments = ["python3", E2E.scripts + "/mcsend.py", "--source", Lab.senderAddress, "--count", String(count),
                                 "--rate", String(rate), "--size", String(size), "--ttl", "4", "--stream", "\(stream.input):\(stream.id)"]
                arguments = lab.exec(lab.sender, arguments)
                let sender = try ChildProcess(arguments, outputDirectory: lab.directory, name: "send")
                defer { sender.terminate() }
                let flowing = try waitUntil(timeout: .seconds(10)) {
                    (try daemon.stats().rules.first { $0.id == ruleID }?.packets ?? 0) > 0 || !sender.isRunning
                }
                #expect(flowing && sender.isRunning, "traffic did not start: \(sender.stderr)")

                let watch = try daemon.cli(["stats", "--watch", "--count", "2", "--interval", "1", "--json"])
                #expect(watch.status == 0, "\(watch)")
                let lines = watch.stdout.split(separator: "\n")
                #expect(lines.count == 2, "one JSON line per refresh: \(watch.stdout)")
                #expect(sender.isRunning, "the sender finished before the second sample: the rate window saw no traffic")
                if lines.count == 2 {
                    let first = try JSONDecoder().decode(StatsRates.self, from: Data(lines[0].utf8))
                    let second = try JSONDecoder().decode(StatsRates.self, from: Data(lines[1].utf8))
                    #expect(first.intervalSeconds == nil && first.rules.first?.pps == nil, "first sample has no rates: \(lines[0])")
                    let interval = try #require(second.intervalSeconds)
                    #expect(interval > 0.8 && interval < 2.0, "interval \(interval) s for --interval 1")
                    let rule = try #require(second.rules.first { $0.id == ruleID }, "no rule \(ruleID): \(lines[1])")
                    let pps = try #require(rule.pps, "no rate: \(lines[1])")
                    // The sender paces at 500/s; over ~1 s the measured rate must be near that.
                    #expect(pps > rate * 0.5 && pps < rate * 1.5, "rule pps \(pps), sender paces \(rate)/s: \(lines[1])")
                    let output = try #require(rule.outputs.first)
                    let outPPS = try #require(output.pps)
                    #expect(outPPS > 0)
                    let mbps = try #require(output.mbps)
                    let expected = outPPS * Double(size) * 8 / 1e6
                    #expect(abs(mbps - expected) < expected * 0.01, "payload Mbit/s \(mbps), expected \(expected) from pps")
                    #expect(rule.packets >= first.rules[0].packets)
                }

                let finished = try #require(sender.wait(timeout: .seconds(30)), "sender did not finish")
                #expect(finished.status == 0, "sender failed: \(finished)")
                let summary = try JSONDecoder().decode(SendSummary.self, from: Data(finished.stdout.utf8))
                #expect(summary.errors == 0 && summary.sent[stream.input]?.sent == count, "sender: \(finished.stdout)")
                expectDelivered(try receiver.finish(), [stream], count: count)
                let totals = try daemon.stats()
                #expect(totals.rules.first { $0.id == ruleID }?.packets == UInt64(count))
            }
            // After SIGTERM (withRelay stops the daemon): every stderr line is a JSON log event.
            let text = try String(contentsOfFile: daemonStderr, encoding: .utf8)
            let lines = text.split(separator: "\n")
            #expect(lines.count >= 3, "expected startup, rule and shutdown events: \(text)")
            var messages: [String] = []
            for line in lines {
                guard let json = OperatorTests.object(line) else { continue }
                for field in ["ts", "level", "label", "message"] {
                    #expect(json[field] is String, "\(field) missing in \(line)")
                }
                messages.append(json["message"] as? String ?? "")
            }
            #expect(messages.contains { $0.contains("rule added") && $0.contains(ruleID) }, "\(messages)")
            #expect(messages.contains("stopped"), "\(messages)")
            #expect(text.hasSuffix("\n"))
        }
    }
}
