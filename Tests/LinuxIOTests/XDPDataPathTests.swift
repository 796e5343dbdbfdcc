@testable import LinuxIO
import RelayCore
import Testing

/// The pure parts of the daemon's XDP path (the live ones: EndToEndXDPTests).
@Suite("XDP data path parts")
struct XDPDataPathTests {
    static func rule(_ input: String, _ output: String) throws -> Rule {
        let parts = input.split(separator: ":")
        let out = output.split(separator: ":")
        let spec = RuleSpec(input: InputSpec(interface: InterfaceName(String(parts[0]))!, group: IPAddress(String(parts[1]))!, port: UInt16(parts[2])!),
                            outputs: [OutputSpec(interface: InterfaceName(String(out[0]))!, destination: IPAddress(String(out[1]))!, port: UInt16(out[2])!)])
        var book = RuleBook()
        _ = try book.add(spec)
        return book.rules.values.first!
    }

    @Test("merged plans: fanout workers' shared rules once, partition workers' inputs and rules in worker order")
    func mergedPlans() throws {
        let a = try Self.rule("eth0:239.1.1.1:5001", "eth1:239.10.1.1:6001")
        let b = try Self.rule("eth2:239.1.1.2:5001", "eth1:239.10.1.2:6001")
        let eth0 = IngressAssignment(interface: InterfaceName("eth0")!, fanoutGroup: 7)
        let eth2 = IngressAssignment(interface: InterfaceName("eth2")!, fanoutGroup: nil)
        let fanout = XDPDataPath.merged([WorkerID(1): WorkerPlan(worker: WorkerID(1), version: 4, ingress: [eth0], rules: [a]),
                                         WorkerID(0): WorkerPlan(worker: WorkerID(0), version: 3, ingress: [eth0], rules: [a])])
        #expect(fanout.rules == [a] && fanout.ingress == [eth0] && fanout.version == 4)
        let partition = XDPDataPath.merged([WorkerID(1): WorkerPlan(worker: WorkerID(1), version: 2, ingress: [eth2], rules: [b]),
                                            WorkerID(0): WorkerPlan(worker: WorkerID(0), version: 2, ingress: [eth0], rules: [a])])
        #expect(partition.rules == [a, b] && partition.ingress == [eth0, eth2])
        #expect(XDPDataPath.merged([:]).rules.isEmpty)
    }

    @Test("the object path: --xdp-object, else $MCRELAY_XDP_OBJECT, else the installed path")
    func objectPath() {
        #expect(XDPDataPath.objectPath(option: "/tmp/x.o") == "/tmp/x.o")
        #expect(XDPDataPath.installedObjectPath == "/usr/lib/mcrelay/mcrelay_xdp.o")
    }
}
