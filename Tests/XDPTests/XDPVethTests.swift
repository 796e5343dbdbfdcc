import Foundation
import FuzzChecks
import Glibc
import LinuxIO
import RelayCore
import Testing

/// The XDP program forwarding real traffic on veth, with no relay process at all: the lab of
/// scripts/netns-lab.sh (snd0 -> rin0 [relay] rout0/rout1 -> rcv0/rcv1), the ingress program
/// attached natively to rin0, the devmap holding rout0/rout1 with the egress program, maps from
/// `XDPTables`. mcrecv.py on the receivers checks every datagram (count, payload, size; the
/// receivers' kernels check the IP and UDP checksums the program wrote).
///
/// Test-host setting, not the relay's: GRO on rcv0/rcv1, because a veth drops frames
/// redirected into it unless its peer has NAPI (an XDP program or GRO) (docs/xdp-facts.md).
/// A live suite (LIVE_SUITES): runs alone, after the pure pass. Root; skipped with the reason otherwise.
@Suite struct XDPVethTests {
    static let scripts = XDPDifferentialTests.root + "/scripts"

    @discardableResult
    static func sh(_ arguments: [String], timeout: Double = 60) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        let text = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = errors.fileHandleForReading.readDataToEndOfFile()
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { process.terminate(); throw XDPProgram.Failure.failed("\(arguments) timed out") }
        guard process.terminationStatus == 0 else {
            throw XDPProgram.Failure.failed("\(arguments.joined(separator: " ")) exited \(process.terminationStatus): "
                + String(decoding: text + errorText, as: UTF8.self))
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// An interface's facts from `ip -j addr` in a namespace.
    static func facts(_ namespace: String, _ name: String) throws -> InterfaceFacts {
        let json = try sh(["ip", "-n", namespace, "-j", "addr", "show", "dev", name])
        guard let list = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]], let link = list.first,
              let index = link["ifindex"] as? Int, let mac = (link["address"] as? String).flatMap(MACAddress.init),
              let mtu = link["mtu"] as? Int else { throw XDPProgram.Failure.failed("ip -j addr of \(name): \(json)") }
        let addresses = link["addr_info"] as? [[String: Any]] ?? []
        func address(_ family: String, _ scope: String) -> String? {
            addresses.first { $0["family"] as? String == family && $0["scope"] as? String == scope }?["local"] as? String
        }
        return InterfaceFacts(name: InterfaceName(name)!, index: Int32(index), mac: mac,
                              ipv4: address("inet", "global").flatMap(IPv4Address.init),
                              ipv6: address("inet6", "global").flatMap(IPv6Address.init),
                              ipv6LinkLocal: address("inet6", "link").flatMap(IPv6Address.init), mtu: mtu, driver: "veth")
    }

    /// One rule set and its streams: (input endpoint, outputs); receivers by (address, stream).
    struct Case {
        var rules: [(group: IPAddress, outputs: [OutputSpec])]
        var streams: [String]        // mcsend --stream
        var receivers: [(String, String)]  // mcrecv --iface-addr, --stream
    }

    static func output(_ interface: String, _ destination: String, _ port: UInt16, _ ttl: UInt8) -> OutputSpec {
        OutputSpec(interface: InterfaceName(interface)!, destination: IPAddress(destination)!, port: port, ttl: ttl)
    }

    @Test func fanOutAndSingleOutputRulesForwardWithoutARelayProcess() throws {
        try Self.run(ipv6: false, Case(
            rules: [(IPAddress("239.1.2.3")!, [Self.output("rout0", "239.20.0.1", 6000, 8), Self.output("rout1", "239.21.0.1", 6001, 9)]),
                    (IPAddress("239.1.2.4")!, [Self.output("rout0", "239.22.0.1", 6002, 7)])],
            streams: ["239.1.2.3:5000:1", "239.1.2.4:5000:2"],
            receivers: [("198.18.2.2", "239.20.0.1:6000:1"), ("198.18.3.2", "239.21.0.1:6001:1"), ("198.18.2.2", "239.22.0.1:6002:2")]))
    }

    /// IPv6 fan-out, and an IPv4 stream carried into IPv6 (the header grows by 20 bytes in place).
    @Test func ipv6AndAnIPv4StreamRemappedToIPv6() throws {
        try Self.run(ipv6: true, Case(
            rules: [(IPAddress("ff3e::8000:1")!, [Self.output("rout0", "ff3e::10:1", 6000, 8), Self.output("rout1", "ff3e::11:1", 6001, 9)]),
                    (IPAddress("239.1.2.4")!, [Self.output("rout0", "ff3e::12:1", 6002, 7)])],
            streams: ["[ff3e::8000:1]:5000:1", "239.1.2.4:5000:2"],
            receivers: [("2001:db8:2::2", "[ff3e::10:1]:6000:1"), ("2001:db8:3::2", "[ff3e::11:1]:6001:1"),
                        ("2001:db8:2::2", "[ff3e::12:1]:6002:2")]))
    }

    static func run(ipv6: Bool, _ scenario: Case) throws {
        guard geteuid() == 0 else {
            print("XDPVethTests skipped: not running as root (namespaces and XDP need it)")
            return
        }
        // The live tests' cross-process lock (LinuxIOTests' LiveLease): never beside another live test.
        _ = mkdir("/run/lock", 0o755)
        let lock = open("/run/lock/mcrelay-live-tests.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o666)
        try #require(lock >= 0, "live test lock: \(String(cString: strerror(errno)))")
        defer { close(lock) }
        var waited = 0
        while flock(lock, LOCK_EX | LOCK_NB) != 0 {
            try #require(waited < 3000, "live test lock held for 5 minutes")
            usleep(100_000)  // flock has no timed wait
            waited += 1
        }
        let prefix = "mxdpv\(getpid() % 10000)"
        let relay = prefix + "-rly", receiver = prefix + "-rcv", sender = prefix + "-snd"
        try Self.sh(["bash", Self.scripts + "/netns-lab.sh", "up", prefix] + (ipv6 ? ["--ipv6"] : []))
        defer { _ = try? Self.sh(["bash", Self.scripts + "/netns-lab.sh", "down", prefix]) }
        for device in ["rcv0", "rcv1"] { try Self.sh(["ip", "netns", "exec", receiver, "ethtool", "-K", device, "gro", "on"]) }

        let program = try XDPProgram(path: XDPProgram.objectPath(repositoryRoot: XDPDifferentialTests.root))
        var facts: [InterfaceName: InterfaceFacts] = [:]
        for name in ["rin0", "rout0", "rout1"] { facts[InterfaceName(name)!] = try Self.facts(relay, name) }
        var book = RuleBook()
        let rin0 = InterfaceName("rin0")!
        for rule in scenario.rules {
            try book.add(RuleSpec(input: InputSpec(interface: rin0, group: rule.group, port: 5000), outputs: rule.outputs))
        }
        let plan = WorkerPlan(worker: WorkerID(0), version: 1, ingress: [IngressAssignment(interface: rin0, fanoutGroup: nil)],
                              rules: Array(book.rules.values))
        let tables = XDPTables(plan: plan, facts: facts)
        try #require(tables.fallbacks.isEmpty, "both rules carried: \(tables.fallbacks)")
        try program.install(tables, namespacePath: "/run/netns/" + relay)
        let attached = cxdpAttach(facts[rin0]!.index, program.ingress, relay)
        try #require(attached == 0, "native XDP on rin0: \(String(cString: strerror(-attached)))")
        defer { _ = cxdpAttach(facts[rin0]!.index, -1, relay) }
        #expect(try Self.sh(["ip", "-n", relay, "link", "show", "rin0"]).contains("xdp"))

        let count = 2000, size = 200
        let outputs = scenario.receivers
        func send(_ count: Int) throws {
            let sources = ["--source", "198.18.1.1"] + (ipv6 ? ["--source", "2001:db8:1::1"] : [])
            let sent = try Self.sh(["ip", "netns", "exec", sender, "python3", Self.scripts + "/mcsend.py"] + sources
                                   + ["--count", "\(count)", "--rate", "2000", "--size", "\(size)", "--ttl", "4", "--source-port", "41000"]
                                   + scenario.streams.flatMap { ["--stream", $0] }, timeout: 60)
            try #require(sent.contains("\"errors\": 0"), "sender: \(sent)")
        }
        var receivers = try outputs.map { try Receiver(receiver, address: $0.0, stream: $0.1, expect: count, size: size, prefix: prefix) }
        try send(count)
        for receiver in receivers {
            let (got, corrupt, duplicates) = try receiver.finish()
            print("XDPVethTests: \(receiver.stream): \(got) of \(count) received, corrupt \(corrupt), duplicates \(duplicates)")
            #expect(got == count && corrupt == 0 && duplicates == 0, "\(receiver.stream)")
        }

        // Forwarder's counters, kept by the program: every datagram counted once per rule and output.
        for rule in tables.rules {
            let (packets, bytes) = try program.accepted(rule)
            #expect(packets == UInt64(count) && bytes == UInt64(count * size), "rule counter \(packets) packets, \(bytes) bytes")
        }
        for output in tables.outputs {
            let (packets, bytes) = try program.sent(output)
            #expect(packets == UInt64(count) && bytes == UInt64(count * size), "output counter \(packets) packets, \(bytes) bytes")
        }
        print("XDPVethTests: counters: \(tables.rules.count) rules and \(tables.outputs.count) outputs at \(count) datagrams each")

        // The control: without the program nothing forwards (no relay runs, the kernel does not
        // route multicast here), so what arrived above was the program's doing.
        try #require(cxdpAttach(facts[rin0]!.index, -1, relay) == 0)
        receivers = try outputs.prefix(1).map { try Receiver(receiver, address: $0.0, stream: $0.1, expect: 200, size: size, prefix: prefix, duration: 4) }
        try send(200)
        let (got, _, _) = try receivers[0].finish()
        print("XDPVethTests: control without the program: \(got) of 200 received")
        #expect(got == 0)
    }

    /// mcrecv.py on one stream, joined before `init` returns.
    struct Receiver {
        let process: Process
        let output: Pipe
        let stream: String

        init(_ namespace: String, address: String, stream: String, expect: Int, size: Int, prefix: String, duration: Int = 30) throws {
            let ready = NSTemporaryDirectory() + "/\(prefix)-\(stream).ready"
            unlink(ready)
            process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            process.arguments = ["netns", "exec", namespace, "python3", XDPVethTests.scripts + "/mcrecv.py", "--iface-addr", address,
                                 "--stream", stream, "--expect", "\(expect)", "--size", "\(size)", "--duration", "\(duration)",
                                 "--idle", "2", "--ready-file", ready]
            output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            var waited = 0
            while access(ready, F_OK) != 0 && process.isRunning && waited < 1500 { usleep(10_000); waited += 1 }
            guard access(ready, F_OK) == 0 else {
                process.terminate()
                throw XDPProgram.Failure.failed("receiver for \(stream) did not get ready")
            }
            unlink(ready)
            self.stream = String(stream[..<stream.lastIndex(of: ":")!])  // GROUP:PORT, as mcrecv reports it
        }

        /// received, corrupt, duplicates; a receiver that failed to run (exit not 0 or 1) throws.
        func finish() throws -> (Int, Int, Int) {
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus <= 1,
                  let summary = try JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let received = (summary["received"] as? [String: [String: Any]])?[stream] else {
                throw XDPProgram.Failure.failed("receiver for \(stream) failed (\(process.terminationStatus)): \(String(decoding: data, as: UTF8.self))")
            }
            return (received["received"] as? Int ?? -1, received["corrupt"] as? Int ?? -1, received["duplicates"] as? Int ?? -1)
        }
    }
}
