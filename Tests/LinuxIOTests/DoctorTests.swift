import Foundation
import Testing

/// `mcrelay doctor` against real interfaces in a namespace: a healthy output passes, and each
/// trap it knows is reported as a failure with its fix (and exit status 1).
@Suite("mcrelay doctor (root, network namespaces)", .serialized,
       .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
struct DoctorTests {
    struct Finding: Decodable { var severity: String; var subject: String; var message: String; var fix: String? }

    func doctor(_ lab: Lab, _ arguments: [String]) throws -> (status: Int32, findings: [Finding]) {
        let result = try run(lab.exec(lab.relay, [E2E.binary, "doctor", "--json"] + arguments), in: lab.directory)
        let findings = try JSONDecoder().decode([Finding].self, from: Data(result.stdout.utf8))
        return (result.status, findings)
    }

    @Test func healthyInterfacesPassAndEachTrapIsReportedWithItsFix() throws {
        let lab = try Lab("doc")
        defer { lab.down() }

        let healthy = try doctor(lab, ["--in", "rin0", "--out", "rout0"])
        #expect(healthy.status == 0)
        #expect(healthy.findings.contains { $0.subject == "output rout0" && $0.severity == "OK" })
        #expect(!healthy.findings.contains { $0.severity == "FAIL" })
        // The input's receive work (README "Overload"): the lab's veth is in softirq, no RPS.
        #expect(healthy.findings.contains { $0.subject == "input rin0" && $0.severity == "INFO" && $0.message.hasPrefix("receive work in softirq") },
                "\(healthy.findings.filter { $0.subject == "input rin0" })")
        #expect(!healthy.findings.contains { $0.subject == "input rin0" && $0.message.hasPrefix("RPS is on") })
        // The input's ring (a veth reports none) and its own counters, read from the kernel.
        #expect(healthy.findings.contains { $0.subject == "input rin0" && $0.severity == "INFO"
                    && $0.message.hasPrefix("a veth's receive ring is fixed") && $0.message.hasSuffix("no frames lost at the device since it was created") },
                "\(healthy.findings.filter { $0.subject == "input rin0" })")
        try lab.must(lab.relay, ["sh", "-c", "echo 2 > /sys/class/net/rin0/queues/rx-0/rps_cpus"])
        let steered = try doctor(lab, ["--in", "rin0", "--out", "rout0"])
        #expect(steered.findings.contains { $0.subject == "input rin0" && $0.severity == "WARN" && $0.message.hasPrefix("RPS is on (rps_cpus 2)") },
                "\(steered.findings.filter { $0.subject == "input rin0" })")

        try lab.must(lab.relay, ["ip", "addr", "flush", "dev", "rout1"])
        try lab.must(lab.relay, ["ip", "link", "set", "rout1", "multicast", "off"])
        try lab.must(lab.relay, ["sysctl", "-qw", "net.ipv4.igmp_max_memberships=0"])
        let broken = try doctor(lab, ["--in", "rin0", "--out", "rout1", "--out", "nosuch0"])
        #expect(broken.status == 1)
        let failures = broken.findings.filter { $0.severity == "FAIL" }
        #expect(failures.contains { $0.subject == "output rout1" && $0.message.contains("MULTICAST") && $0.fix == "ip link set rout1 multicast on" })
        #expect(failures.contains { $0.subject == "output rout1" && $0.message.contains("no IPv4 address") })
        #expect(failures.contains { $0.subject == "output nosuch0" && $0.message.contains("does not exist") })
        #expect(failures.contains { $0.subject == "igmp_max_memberships" && $0.fix?.contains("igmp_max_memberships=20") == true })
    }
}
