#if canImport(Glibc)
import Glibc
#endif
import RelayCore

/// `mcrelay doctor --data-path xdp`: whether the BPF object loads here, and which path each
/// rule of the config would take (XDPTables' own decision, from this host's interface facts).
/// Loading the object puts nothing on any interface; it is released at once.
extension HostDoctor {
    public func xdp(object: String, rules specs: [RuleSpec]) -> [Finding] {
        var findings: [Finding] = []
        do {
            let program = try XDPProgram(path: object)
            findings.append(Finding(severity: .ok, subject: "xdp object", message: "\(object) loads (the kernel's verifier accepts its programs)", fix: nil))
            if !program.carriesMetadata {
                findings.append(Finding(severity: .info, subject: "xdp metadata", message: XDPProgram.metadataRefused, fix: nil))
            }
        } catch {
            findings.append(Finding(severity: .problem, subject: "xdp object", message: "\(error)",
                                    fix: "install the object (the Debian package ships \(XDPDataPath.installedObjectPath); `make bpf` builds it) or pass --xdp-object PATH"))
        }
        var book = RuleBook()
        for spec in specs { _ = try? book.add(spec) }
        let rules = Array(book.rules.values)
        var inputs: [InterfaceName] = []
        for rule in rules where !inputs.contains(rule.input.interface) { inputs.append(rule.input.interface) }
        let plan = WorkerPlan(worker: WorkerID(0), version: 0, ingress: inputs.map { IngressAssignment(interface: $0, fanoutGroup: nil) },
                              rules: rules)
        let facts = XDPDataPath.readFacts(for: plan)
        let unavailable = XDPDataPath.outputsWithoutRedirects(plan, facts)
        let tables = XDPTables(plan: plan, facts: facts, unavailableOutputs: unavailable)
        let reasons = Dictionary(tables.fallbacks.map { ($0.rule, $0.reason) }, uniquingKeysWith: { first, _ in first })
        for rule in rules {
            let subject = "xdp rule \(rule.input)"
            if let reason = reasons[rule.id] {
                findings.append(Finding(severity: .info, subject: subject, message: "packet path: \(reason)", fix: nil))
            } else {
                findings.append(Finding(severity: .ok, subject: subject, message: "carried by the XDP program", fix: nil))
            }
        }
        for (name, why) in unavailable.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            findings.append(Finding(severity: .warning, subject: "xdp output \(name)",
                                    message: "cannot take XDP redirects (native mode): \(why); its rules use the packet path",
                                    fix: facts[name]?.driver == "veth" ? "on the peer (in its namespace): ethtool -K PEER gro on; or run the daemon with --xdp-mode generic" : nil))
        }
        return findings
    }
}
