import Foundation
import FuzzChecks
import Glibc
import LinuxIO
import RelayCore
import Sim
import Testing

/// The XDP program (bpf/mcrelay_xdp.c) against RelayCore (issue #14's key proof): every frame
/// goes through `Forwarder.decide` + `transmits` + EgressFrame's per-datagram path and through
/// the BPF program with BPF_PROG_TEST_RUN, with maps filled by `XDPTables` from the same plan.
/// A frame the program redirects must be one the Forwarder forwards, and the per-device rewrite
/// must produce exactly the Forwarder's transmits (device, bytes); a frame it passes to the
/// kernel must be one the packet path is left (another shape, a refused rule, a drop). A
/// common-shape frame of a rule it carries must be redirected, so passing everything fails.
/// The program's per-rule and per-output counters must equal the Forwarder's.
///
/// Each redirected frame's rewrite runs twice per device: with the metadata the ingress program
/// left in front of the frame (the rule and the UDP checksum's shared part, what a native devmap
/// egress program gets) and without it (what a copy without metadata gets: generic XDP, a driver
/// without metadata support), where the egress program finds both itself. Both
/// must give the Forwarder's bytes; each counts the copy once, so the output counters are twice
/// the Forwarder's. Both ingress programs run on every frame (the one with metadata and the one
/// without, for kernels that refuse bpf_xdp_adjust_meta) and must agree; on such a kernel only
/// the second loads, and the test says so.
///
/// Needs root (BPF); skipped with the reason otherwise. The object comes from `make bpf`.
@Suite struct XDPDifferentialTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    struct Tally: CustomStringConvertible {
        var frames = 0, redirected = 0, passed = 0, transmitsCompared = 0, refusedRules = 0, oversize = 0
        /// Whether the ingress program left metadata (false: the kernel refuses the helper, and
        /// both rewrites of each copy ran without it).
        var metadata = true
        var description: String {
            "\(frames) frames: \(redirected) redirected (\(transmitsCompared) transmits compared byte for byte, "
                + (metadata ? "each with and without the ingress program's metadata), "
                    : "each twice without metadata: this kernel refuses the helper), ")
                + "\(passed) passed to the kernel (\(oversize) over an output's payload limit); "
                + "\(refusedRules) rules left to the packet path"
        }
    }

    /// The program, or nil with the reason printed (not root); a missing or refused object fails.
    static func program() -> XDPProgram? {
        guard geteuid() == 0 else {
            print("XDPDifferentialTests skipped: not running as root (BPF_PROG_TEST_RUN needs CAP_BPF and CAP_NET_ADMIN)")
            return nil
        }
        do {
            let program = try XDPProgram(path: XDPProgram.objectPath(repositoryRoot: root))
            if !program.carriesMetadata {
                print("XDPDifferentialTests: \(XDPProgram.metadataRefused); only the ingress program without metadata is tested")
            }
            return program
        } catch {
            Issue.record("XDP program unavailable: \(error)")
            return nil
        }
    }

    /// A network namespace holding veth devices with the output interfaces' indices (1001-1003),
    /// because the kernel accepts only real devices into a devmap; no traffic, no other setting.
    /// Removed when the test ends, failed or not.
    final class DeviceNamespace {
        let name: String
        var path: String { "/run/netns/" + name }

        init(_ name: String) throws {
            self.name = name
            _ = try? Self.ip(["netns", "del", name])  // a leftover of this suite's own earlier run
            try Self.ip(["netns", "add", name])
            for position in 0..<3 {
                try Self.ip(["-n", name, "link", "add", "out\(position)", "index", "\(1001 + position)", "type", "veth",
                             "peer", "name", "out\(position)p", "index", "\(1101 + position)"])
            }
        }

        deinit { _ = try? Self.ip(["netns", "del", name]) }

        @discardableResult
        static func ip(_ arguments: [String]) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            process.arguments = arguments
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw XDPProgram.Failure.failed("ip \(arguments.joined(separator: " ")) failed: \(text)")
            }
            return text
        }
    }

    /// Facts for the fuzz target's interfaces: the frame's ingress is `lo` (test runs need a real
    /// device), the others and the outputs carry indices no device here has.
    static func facts(ingress: Int) -> [InterfaceName: InterfaceFacts] {
        var facts: [InterfaceName: InterfaceFacts] = [:]
        let loopback = Int32(if_nametoindex("lo"))
        for (position, name) in (FrameFuzzInput.ingressInterfaces + [InterfaceName("in3")!]).enumerated() {
            var entry = InterfaceFacts.simulated(name, position: position)
            entry.index = position == ingress ? loopback : Int32(2001 + position)
            facts[name] = entry
        }
        for position in 0..<3 {
            let name = InterfaceName("out\(position)")!
            var entry = InterfaceFacts.simulated(name, position: 10 + position)
            entry.index = Int32(1001 + position)
            facts[name] = entry
        }
        return facts
    }

    /// Untagged Ethernet, IPv4 without options or IPv6 with UDP next: what the program handles.
    static func commonShape(_ frame: [UInt8]) -> Bool {
        guard frame.count >= 34 else { return false }
        if frame[12] == 0x08, frame[13] == 0x00 { return frame[14] == 0x45 }
        if frame[12] == 0x86, frame[13] == 0xDD, frame.count >= 54 { return frame[20] == 17 }
        return false
    }

    /// One case through both; records an issue per disagreement.
    static func check(_ program: XDPProgram, devices: DeviceNamespace, plan: WorkerPlan, facts: [InterfaceName: InterfaceFacts],
                      ingress ingressName: InterfaceName, frame: [UInt8], name: String, tally: inout Tally) throws {
        let tables = XDPTables(plan: plan, facts: facts)
        try program.install(tables, namespacePath: devices.path)
        tally.frames += 1
        tally.metadata = program.carriesMetadata
        tally.refusedRules += tables.fallbacks.count
        var forwarder = Forwarder(plan: plan)
        let slot = forwarder.ingressSlot(of: ingressName)!
        let expected: [(InterfaceName, [UInt8])]? = frame.withUnsafeBytes { bytes in
            guard case let .forward(forwarding) = forwarder.decide(bytes, link: .ethernet, ingress: slot) else { return nil }
            return forwarder.transmits(for: forwarding).map { transmit in
                let interface = forwarder.egress[transmit.egress]
                let out = facts[interface]!
                let source = out.source(for: transmit.destination) ?? transmit.destination
                return (interface, EgressFrame.templatedBytes(
                    sourceMAC: out.mac!, source: source, destination: transmit.destination, sourcePort: transmit.sourcePort,
                    destinationPort: transmit.port, ttl: transmit.ttl, payload: Array(transmit.payload),
                    checksumCarry: transmit.checksumCarry))
            }
        }
        let ifindex = UInt32(bitPattern: facts[ingressName]!.index)
        let (action, after, metadata) = try program.run(program.ingress, frame: frame, ingressIfindex: ifindex)
        var ingressRuns: UInt64 = 1
        if program.ingressWithoutMetadata != program.ingress {
            let plain = try program.run(program.ingressWithoutMetadata, frame: frame, ingressIfindex: ifindex)
            ingressRuns = 2
            if plain.action != action || plain.frame != after || !plain.metadata.isEmpty {
                let differs = plain.frame != after ? ", and another frame" : ""
                Issue.record("\(name): the ingress program without metadata gives action \(plain.action) and \(plain.metadata.count) bytes of metadata, the one with it \(action)\(differs)")
            }
        }
        switch action {
        case XDPProgram.pass:
            tally.passed += 1
            guard let expected else { return }
            // The rule it would carry, on a frame of its shape: the program should have taken it.
            let refused = Set(tables.fallbacks.map(\.rule))
            let found = frame.withUnsafeBytes { bytes -> (Rule, Int)? in
                guard case let .forward(forwarding) = forwarder.decide(bytes, link: .ethernet, ingress: slot) else { return nil }
                return (plan.rules[Int(forwarding.route.index)], forwarding.payload.count)
            }
            guard let (rule, payload) = found, !refused.contains(rule.id), commonShape(frame) else { return }
            let limit = rule.outputs.map { facts[$0.interface]!.payloadLimit(for: $0.destination.family) }.min() ?? 0
            if payload > min(limit, XDPTables.maximumPayload) {
                tally.oversize += 1  // the packet path's own limits apply
            } else {
                Issue.record("\(name): XDP passed a frame the Forwarder forwards by carried rule \(rule.id) (\(expected.count) transmits)")
            }
        case XDPProgram.redirect:
            tally.redirected += 1
            guard let expected else {
                Issue.record("\(name): XDP redirected a frame the Forwarder drops")
                return
            }
            // The ingress program leaves the frame as it is and its finding in front of it.
            #expect(after == frame, "\(name): the ingress program changed the frame it redirected")
            let wanted = program.carriesMetadata ? 16 : 0
            #expect(metadata.count == wanted, "\(name): \(metadata.count) bytes of metadata, want \(wanted) (struct carried)")
            var actual: [(InterfaceName, [UInt8])] = []
            for device in tables.devices {
                let (rewriteAction, bytes) = try program.runRewrite(frame: frame, metadata: metadata, ingressIfindex: ifindex,
                                                                    egressIfindex: device)
                let (unaidedAction, unaided) = try program.runRewrite(frame: frame, ingressIfindex: ifindex, egressIfindex: device)
                if unaidedAction != rewriteAction || (rewriteAction == XDPProgram.pass && unaided != bytes) {
                    let differs = unaided != bytes ? ", and other bytes" : ""
                    Issue.record("\(name): device \(device): the rewrite without metadata gives action \(unaidedAction), with it \(rewriteAction)\(differs)")
                }
                switch rewriteAction {
                case XDPProgram.pass: actual.append((facts.first { $0.value.index == device }!.key, bytes))
                case XDPProgram.drop: break
                default: Issue.record("\(name): rewrite for device \(device) returned action \(rewriteAction)")
                }
            }
            // The program's counters against the Forwarder's, for every carried rule and output
            // (the decisions above ran once on this frame in the Forwarder, once per ingress
            // program in BPF).
            let statistics = forwarder.statistics()
            for entry in tables.rules {
                let index = Int(entry.value[0]) | Int(entry.value[1]) << 8
                let (packets, bytes) = try program.accepted(entry)
                let want = statistics.rules[index].accepted
                #expect(packets == ingressRuns * want.packets && bytes == ingressRuns * want.bytes,
                        "\(name): rule \(index) counted \(packets)/\(bytes), want \(ingressRuns) × \(want.packets)/\(want.bytes)")
            }
            for entry in tables.outputs {
                let index = Int(entry.key[0]) | Int(entry.key[1]) << 8
                let device = entry.key[4..<8].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }
                let position = plan.rules[index].outputs.firstIndex { facts[$0.interface]?.index == device }!
                let want = statistics.rules[index].outputs[position]
                let (packets, bytes) = try program.sent(entry)
                // every copy ran through the rewrite twice (with and without metadata)
                #expect(packets == 2 * want.packets && bytes == 2 * want.bytes,
                        "\(name): output \(index)/\(device) counted \(packets)/\(bytes), want twice \(want.packets)/\(want.bytes)")
            }
            let sortedExpected = expected.sorted { $0.0 < $1.0 }, sortedActual = actual.sorted { $0.0 < $1.0 }
            #expect(sortedActual.map(\.0) == sortedExpected.map(\.0), "\(name): transmit devices")
            for (want, got) in zip(sortedExpected, sortedActual) where want.0 == got.0 {
                tally.transmitsCompared += 1
                if want.1 != got.1 {
                    let at = zip(want.1, got.1).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(want.1.count, got.1.count)
                    Issue.record("\(name): \(want.0) frame differs at byte \(at) (lengths \(want.1.count) and \(got.1.count))")
                }
            }
        default:
            Issue.record("\(name): ingress program returned action \(action)")
        }
    }

    @Test func fuzzSeedFramesMatchTheForwarder() throws {
        guard let program = Self.program() else { return }
        let devices = try DeviceNamespace("mcxdpfuzz")
        let directory = Self.root + "/Fuzz/corpus/frame"
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        try #require(names.count > 50, "frame seeds in \(directory)")
        var tally = Tally()
        var ethernet = 0
        for name in names {
            let input = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
            let decoded = input.withUnsafeBytes { FrameFuzzCase($0) }
            guard decoded.link == .ethernet else { continue }  // XDP sees Ethernet frames only
            ethernet += 1
            try Self.check(program, devices: devices, plan: decoded.plan, facts: Self.facts(ingress: decoded.ingress),
                           ingress: FrameFuzzInput.ingressInterfaces[decoded.ingress],
                           frame: decoded.frame, name: name, tally: &tally)
        }
        print("XDPDifferentialTests fuzz seeds: \(ethernet) Ethernet seeds of \(names.count); \(tally)")
        #expect(tally.redirected >= 5, "the seeds exercise the redirect path")
        #expect(tally.transmitsCompared >= 5)
    }

    /// Payload lengths around every word boundary of the checksum loop, both families, one and
    /// three outputs, source-specific and any-source rules, padding and trailing bytes.
    @Test func builtFramesMatchTheForwarder() throws {
        guard let program = Self.program() else { return }
        let devices = try DeviceNamespace("mcxdpbuilt")
        let in0 = FrameFuzzInput.ingressInterfaces[0]
        let sender4 = IPAddress.v4(IPv4Address(198, 18, 7, 9)), sender6 = IPAddress.v6(IPv6Address(0x2001, 0xdb8, 0, 7, 0, 0, 0, 9))
        let group4 = IPAddress.v4(IPv4Address(239, 1, 2, 3)), group6 = IPAddress.v6(IPv6Address(0xff3e, 0, 0, 0, 0, 0, 0, 0x123))
        func outputs(_ count: Int, v6: Bool) -> [OutputSpec] {
            (0..<count).map { (index: Int) -> OutputSpec in
                let destination: IPAddress = v6 ? .v6(IPv6Address(0xff3e, 0, 0, 0, 0, 0, 9, UInt16(index)))
                    : .v4(IPv4Address(239, 9, 9, UInt8(index)))
                let ttl = UInt8(1 + 31 * index)
                return OutputSpec(interface: InterfaceName("out\(index)")!, destination: destination, port: UInt16(7000 + index), ttl: ttl)
            }
        }
        var tally = Tally()
        let lengths = Array(0...9) + [31, 63, 64, 65, 255, 1316, 1471, 1472]
        for v6 in [false, true] {
            let group = v6 ? group6 : group4, sender = v6 ? sender6 : sender4
            let shapes: [(outputs: Int, specific: Bool, remap: Bool)] = [(1, false, false), (3, false, false), (2, true, false), (3, true, true)]
            for (outputCount, specific, remapFamily) in shapes {
                var book = RuleBook()
                try book.add(RuleSpec(input: InputSpec(interface: in0, group: group, port: 5000, source: specific ? sender : nil),
                                      outputs: outputs(outputCount, v6: remapFamily ? !v6 : v6)))
                let plan = WorkerPlan(worker: WorkerID(0), version: 1,
                                      ingress: FrameFuzzInput.ingressInterfaces.map { IngressAssignment(interface: $0, fanoutGroup: nil) },
                                      rules: Array(book.rules.values))
                for length in lengths {
                    let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ length) }
                    let fields = EgressFrame.Fields(sourceMAC: MACAddress(2, 0, 0, 0, 0, 9), source: sender, destination: group,
                                                    sourcePort: UInt16(40000 + length), destinationPort: 5000, ttl: 3)
                    var frame = EgressFrame.bytes(fields, payload: payload)
                    let name = "v\(v6 ? 6 : 4) outputs \(outputCount) specific \(specific) remap \(remapFamily) payload \(length)"
                    try Self.check(program, devices: devices, plan: plan, facts: Self.facts(ingress: 0), ingress: in0, frame: frame, name: name, tally: &tally)
                    if frame.count < 60 {  // as Ethernet pads it
                        frame += [UInt8](repeating: 0, count: 60 - frame.count)
                        try Self.check(program, devices: devices, plan: plan, facts: Self.facts(ingress: 0), ingress: in0, frame: frame,
                                       name: name + " padded", tally: &tally)
                    }
                    // The UDP checksum field as a sender may leave it: without one (IPv4), with only
                    // the pseudo header's sum (offload left to a NIC), or wrong (corrupted on the way):
                    // summed from the payload, completed, carried on as wrong.
                    let field = v6 ? 60 : 40
                    let good = (frame[field], frame[field + 1])
                    if !v6 {
                        (frame[field], frame[field + 1]) = (0, 0)
                        try Self.check(program, devices: devices, plan: plan, facts: Self.facts(ingress: 0), ingress: in0, frame: frame,
                                       name: name + " no udp checksum", tally: &tally)
                    }
                    let partial = partialPseudoSum(frame)  // FuzzChecks
                    (frame[field], frame[field + 1]) = (UInt8(partial >> 8), UInt8(partial & 0xFF))
                    try Self.check(program, devices: devices, plan: plan, facts: Self.facts(ingress: 0), ingress: in0, frame: frame,
                                   name: name + " partial udp checksum", tally: &tally)
                    (frame[field], frame[field + 1]) = (good.0 ^ 0x5A, good.1)
                    try Self.check(program, devices: devices, plan: plan, facts: Self.facts(ingress: 0), ingress: in0, frame: frame,
                                   name: name + " bad udp checksum", tally: &tally)
                }
            }
        }
        print("XDPDifferentialTests built frames: \(tally)")
        #expect(tally.redirected + tally.oversize == tally.frames, "every built frame is of the common shape and carried")
        #expect(tally.oversize < tally.frames / 10)
    }

    /// The simulator's checked-in cases (`traces/`, TraceCases): their rules and every Ethernet
    /// frame they feed the relay, valid or malformed, through both. Inputs on eth0 arrive on `lo`;
    /// the outputs eth1 and eth2 are the namespace's devices 1001 and 1002.
    @Test func simulatorCaseFramesMatchTheForwarder() throws {
        guard let program = Self.program() else { return }
        let devices = try DeviceNamespace("mcxdpsim")
        let loopback = Int32(if_nametoindex("lo"))
        var facts: [InterfaceName: InterfaceFacts] = [:]
        for (position, name) in ["eth0", "eth1", "eth2"].enumerated() {
            let interface = InterfaceName(name)!
            var entry = InterfaceFacts.simulated(interface, position: position)
            entry.index = position == 0 ? loopback : Int32(1000 + position)
            facts[interface] = entry
        }
        var tally = Tally()
        var cases: [String] = []
        var shorterThanEthernet = 0
        for trace in TraceCases.all {
            var book = RuleBook()
            for spec in trace.simCase.input.rules { try book.add(spec) }
            let ingress = Set(trace.simCase.input.store.frames.map(\.interface))
            guard ingress == [InterfaceName("eth0")!],
                  book.rules.values.allSatisfy({ $0.outputs.allSatisfy { facts[$0.interface] != nil && $0.interface.rawValue != "eth0" } })
            else { continue }  // a case with other interfaces would need other devices
            let plan = WorkerPlan(worker: WorkerID(0), version: 1, ingress: [IngressAssignment(interface: InterfaceName("eth0")!, fanoutGroup: nil)],
                                  rules: Array(book.rules.values))
            let store = trace.simCase.input.store
            var checked = 0
            for index in store.frames.indices where store.frames[index].link == .ethernet {
                // A device hands XDP whole Ethernet headers (BPF_PROG_TEST_RUN refuses less).
                guard store.frames[index].length >= 14 else { shorterThanEthernet += 1; continue }
                try Self.check(program, devices: devices, plan: plan, facts: facts, ingress: InterfaceName("eth0")!,
                               frame: store.bytes(index), name: "\(trace.name) frame \(index)", tally: &tally)
                checked += 1
            }
            cases.append("\(trace.name) (\(checked) frames)")
        }
        print("XDPDifferentialTests simulator cases \(cases): \(tally); \(shorterThanEthernet) frames shorter than an Ethernet header not run")
        #expect(cases.count >= 3, "simulator cases checked: \(cases)")
        #expect(tally.redirected >= 100 && tally.transmitsCompared >= 100)
    }
}
