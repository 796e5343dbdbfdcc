#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl
import RelayCore

/// Checks a host for the known traps of multicast relaying and says how to fix each.
/// Read-only: it inspects /proc, /sys and interface state and changes nothing.
public struct HostDoctor {
    public enum Severity: String, Sendable, Codable, Comparable {
        case ok = "OK", info = "INFO", warning = "WARN", problem = "FAIL"
        var rank: Int { [.ok: 0, .info: 1, .warning: 2, .problem: 3][self]! }
        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rank < rhs.rank }
    }

    public struct Finding: Sendable, Codable, Equatable {
        public var severity: Severity
        public var subject: String
        public var message: String
        public var fix: String?
    }

    /// Interfaces the rules read from and send to, and how many groups each input needs.
    public var inputs: [InterfaceName: Int]
    public var outputs: Set<InterfaceName>
    public var multicastOutputs: Set<InterfaceName>
    /// The address families the rules send in per output interface (an interface named only
    /// with `--out` is checked for IPv4, as before IPv6).
    public var outputFamilies: [InterfaceName: Set<AddressFamily>] = [:]
    /// Where to read /proc and /sys (a test can point these at a fake tree).
    public var procRoot = "/proc"
    public var sysRoot = "/sys"
    /// The daemon settings the egress findings assume (its defaults unless told).
    public var egressMode: EgressMode = .default
    public var segmentation: SegmentationSetting = .default

    public init(rules: [RuleSpec], extraInputs: [InterfaceName] = [], extraOutputs: [InterfaceName] = []) {
        var inputs: [InterfaceName: Set<IPAddress>] = [:]
        for rule in rules { inputs[rule.input.interface, default: []].insert(rule.input.group) }
        for name in extraInputs where inputs[name] == nil { inputs[name] = [] }
        self.inputs = inputs.mapValues(\.count)
        outputs = Set(rules.flatMap { $0.outputs.map(\.interface) } + extraOutputs)
        multicastOutputs = Set(rules.flatMap { $0.outputs.filter { $0.destination.isMulticast }.map(\.interface) } + extraOutputs)
        for rule in rules { for output in rule.outputs { outputFamilies[output.interface, default: []].insert(output.family) } }
        for name in extraOutputs where outputFamilies[name] == nil { outputFamilies[name] = [.ipv4] }
    }

    public func run() -> [Finding] {
        var findings: [Finding] = []
        findings += privileges()
        findings += membershipLimits()
        findings += ioUring()
        for name in inputs.keys.sorted() { findings += input(name, groups: inputs[name]!) }
        for name in outputs.sorted() { findings += output(name) }
        return findings
    }

    // MARK: - Checks

    func privileges() -> [Finding] {
        guard let status = readText("\(procRoot)/self/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: " \t"), radix: 16)
        else { return [Finding(severity: .info, subject: "privileges", message: "cannot read capabilities from \(procRoot)/self/status", fix: nil)] }
        let netAdmin = mask & (1 << 12) != 0
        let netRaw = mask & (1 << 13) != 0
        if netAdmin && netRaw {
            return [Finding(severity: .ok, subject: "privileges", message: "CAP_NET_RAW and CAP_NET_ADMIN present (AF_PACKET sockets, fanout, buffer sizes)", fix: nil)]
        }
        let missing = [netRaw ? nil : "CAP_NET_RAW", netAdmin ? nil : "CAP_NET_ADMIN"].compactMap { $0 }
        let effect = [netRaw ? nil : "the workers cannot open AF_PACKET sockets",
                      netAdmin ? nil : "socket buffers are capped by net.core.rmem_max/wmem_max"].compactMap { $0 }
        return [Finding(severity: .problem, subject: "privileges",
                        message: "missing \(missing.joined(separator: " and ")): \(effect.joined(separator: "; "))",
                        fix: "grant them: AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN in the systemd unit (packaging/mcrelay.service), or start the daemon as root with --user NAME (it keeps only those two)")]
    }

    func membershipLimits() -> [Finding] {
        guard let limit = readInt("\(procRoot)/sys/net/ipv4/igmp_max_memberships") else {
            return [Finding(severity: .warning, subject: "igmp_max_memberships", message: "cannot read \(procRoot)/sys/net/ipv4/igmp_max_memberships", fix: nil)]
        }
        var findings: [Finding] = []
        let biggest = inputs.values.max() ?? 0
        let sockets = limit > 0 ? (biggest + limit - 1) / limit : 0
        if limit <= 0 {
            findings.append(Finding(severity: .problem, subject: "igmp_max_memberships",
                                    message: "net.ipv4.igmp_max_memberships is \(limit): no socket can join any group",
                                    fix: "sysctl -w net.ipv4.igmp_max_memberships=20"))
        } else {
            findings.append(Finding(severity: .ok, subject: "igmp_max_memberships",
                                    message: "\(limit) groups per socket; mcrelay pools helper sockets" +
                                        (biggest > 0 ? " (\(biggest) groups on the busiest input -> \(sockets) helper socket(s))" : ""),
                                    fix: nil))
        }
        // Each membership costs about 48 bytes of socket option memory: raising the group
        // limit past optmem_max / 48 has no effect, joins fail with ENOBUFS earlier instead.
        if let optmem = readInt("\(procRoot)/sys/net/core/optmem_max"), limit > 0, limit * 48 > optmem {
            findings.append(Finding(severity: .warning, subject: "optmem_max",
                                    message: "net.core.optmem_max is \(optmem) bytes: a socket fits only ~\(optmem / 48) memberships, fewer than igmp_max_memberships (\(limit)); mcrelay adapts, but the limit you set is not the one in force",
                                    fix: "sysctl -w net.core.optmem_max=\(limit * 48 + 4096)"))
        }
        return findings
    }

    func ioUring() -> [Finding] {
        guard let disabled = readInt("\(procRoot)/sys/kernel/io_uring_disabled") else { return [] }
        switch disabled {
        case 0: return [Finding(severity: .ok, subject: "io_uring", message: "enabled", fix: nil)]
        case 1: return [Finding(severity: .warning, subject: "io_uring", message: "restricted to the io_uring_group (kernel.io_uring_disabled=1); the daemon falls back to recvmmsg unless it is in that group", fix: "sysctl -w kernel.io_uring_disabled=0")]
        default: return [Finding(severity: .warning, subject: "io_uring", message: "disabled (kernel.io_uring_disabled=\(disabled)); the daemon uses recvmmsg", fix: "sysctl -w kernel.io_uring_disabled=0")]
        }
    }

    func input(_ name: InterfaceName, groups: Int) -> [Finding] {
        let subject = "input \(name)"
        guard let flags = interfaceFlags(name) else {
            return [Finding(severity: .warning, subject: subject, message: "does not exist (yet); the daemon will join its groups when it appears", fix: nil)]
        }
        var findings: [Finding] = []
        if flags & UInt32(IFF_UP) == 0 {
            findings.append(Finding(severity: .warning, subject: subject, message: "is down: nothing arrives until it is up", fix: "ip link set \(name) up"))
        }
        let lro = cln_ethtool_lro(name.rawValue)
        if lro == 1 {
            findings.append(Finding(severity: .warning, subject: subject, message: "LRO is on: the NIC may merge received packets before the relay sees them", fix: "ethtool -K \(name) lro off"))
        }
        let gro = cln_ethtool_gro(name.rawValue)
        if gro == 1 {
            findings.append(Finding(severity: .info, subject: subject,
                                    message: "GRO is on: harmless for plain UDP, but with rx-udp-gro-forwarding or UDP fraglist enabled datagrams can arrive merged (seen as bad_length drops or oversized payloads)",
                                    fix: "ethtool -K \(name) gro off   # only if stats show bad_length drops"))
        }
        if findings.isEmpty {
            findings.append(Finding(severity: .ok, subject: subject, message: "up" + (lro == 0 ? ", LRO off" : "") + (gro == 0 ? ", GRO off" : ""), fix: nil))
        }
        findings += receiveWork(name, subject: subject)
        findings.append(receiveRing(name, subject: subject))
        return findings
    }

    /// The input's receive ring and what the device lost so far (its own counters, as `mcrelay
    /// stats` shows them): a frame the device had no room for never reaches the relay, on the
    /// packet path or the XDP path. On the bench's veth every frame lost at the zero-loss rate was
    /// such a frame (BENCHMARKS.md), so it is the first thing to look at when a stream loses.
    func receiveRing(_ name: InterfaceName, subject: String) -> Finding {
        var pending: UInt32 = 0, maximum: UInt32 = 0
        let ring = cln_ethtool_rx_ring(name.rawValue, &pending, &maximum) == 0 ? (pending: pending, maximum: maximum) : nil
        return Self.ringFinding(subject: subject, name: name.rawValue, ring: ring, driver: InterfaceFactsReader.driver(name.rawValue),
                                device: InputDeviceCounters.read([name.rawValue]).first)
    }

    /// The finding for `receiveRing`, from what was read (pure: DoctorRingTests).
    static func ringFinding(subject: String, name: String, ring: (pending: UInt32, maximum: UInt32)?, driver: String,
                            device: InputDeviceView?) -> Finding {
        var lostText = "its own counters not read"
        var lost: UInt64 = 0
        if let device, device.problem == nil {
            // bad frames (errors) are not frames lost for want of room
            let counts = device.losses.filter { $0.counter != "errors" && $0.frames > 0 }
            lost = counts.reduce(0) { $0 &+ $1.frames }
            lostText = lost == 0 ? "no frames lost at the device since it was created"
                : "the device lost \(lost) frames before the relay could see them (" + counts.map { "\($0.counter)=\($0.frames)" }.joined(separator: " ") + ")"
        } else if let problem = device?.problem {
            lostText = "its own counters not read (\(problem))"
        }
        let elsewhere = "give \(name)'s interrupts and receive work a CPU the workers do not use (README \"Overload\")"
        guard let ring else {
            let what = driver == "veth"
                ? "a veth's receive ring is fixed: 256 frames with NAPI (GRO or XDP on it), else the CPU's backlog (netdev_max_backlog); a veth counts a full one at its peer (tx_dropped)"
                : "the driver does not report its receive ring (ethtool -g)"
            return Finding(severity: lost > 0 ? .warning : .info, subject: subject, message: "\(what); \(lostText)", fix: lost > 0 ? elsewhere : nil)
        }
        if ring.pending < ring.maximum {
            return Finding(severity: lost > 0 ? .warning : .info, subject: subject,
                           message: "receive ring of \(ring.pending) frames, at most \(ring.maximum): a larger one rides out longer waits of its receive work; \(lostText)",
                           fix: "ethtool -G \(name) rx \(ring.maximum)")
        }
        return Finding(severity: lost > 0 ? .warning : .ok, subject: subject,
                       message: "receive ring at its maximum, \(ring.pending) frames; \(lostText)", fix: lost > 0 ? elsewhere : nil)
    }

    /// Where the input's receive work runs (README "Overload", InputNAPIThreads.swift), and RPS,
    /// which would hand frames back to a CPU's softirq after the receive thread.
    func receiveWork(_ name: InterfaceName, subject: String) -> [Finding] {
        var findings: [Finding] = []
        switch Descriptors.readSmallFile("/sys/class/net/\(name.rawValue)/threaded")?.filter({ !$0.isWhitespace }) {
        case "1"?:
            findings.append(Finding(severity: .ok, subject: subject, message: "receive work in a kernel thread (threaded NAPI)", fix: nil))
            findings += receiveThreads(name, subject: subject)
            if InterfaceFactsReader.driver(name.rawValue) == "veth" {
                findings.append(Finding(severity: .info, subject: subject, message: InputNAPIThreads.vethCaveat, fix: nil))
            }
        case "0"?:
            findings.append(Finding(severity: .info, subject: subject,
                                    message: "receive work in softirq; the daemon makes it threaded while it runs (--input-napi threaded, the default), so that overload cannot starve the workers"
                                        + (InterfaceFactsReader.driver(name.rawValue) == "veth" ? "; " + InputNAPIThreads.vethCaveat : ""),
                                    fix: nil))
        default:
            findings.append(Finding(severity: .info, subject: subject, message: "no threaded NAPI here: receive work stays in softirq", fix: nil))
        }
        // rx-0, rx-1, ... are numbered without gaps: read until the first that is not there.
        var steered: [String] = []
        var queue = 0
        while let mask = Descriptors.readSmallFile("/sys/class/net/\(name.rawValue)/queues/rx-\(queue)/rps_cpus")?.filter({ !$0.isWhitespace }) {
            if !mask.allSatisfy({ $0 == "0" || $0 == "," }) { steered.append(mask) }
            queue += 1
        }
        if !steered.isEmpty {
            findings.append(Finding(severity: .warning, subject: subject,
                                    message: "RPS is on (rps_cpus \(steered.first!)): received frames go on to those CPUs' softirq; on the workers' CPUs an overloaded input can starve them (receive livelock)",
                                    fix: "for q in /sys/class/net/\(name)/queues/rx-*/rps_cpus; do echo 0 > $q; done"))
        }
        return findings
    }

    /// The nice values of a threaded input's receive threads (InputNAPIThreadPriority.swift): one
    /// below the daemon's default weighs as much against the workers as the daemon's whole session.
    func receiveThreads(_ name: InterfaceName, subject: String) -> [Finding] {
        let index = Int32(bitPattern: if_nametoindex(name.rawValue))
        guard index > 0, case let .success(pids) = InputNAPIThreadPriority.threads(ofDevice: index), !pids.isEmpty else { return [] }
        let nices = pids.map { pid -> (Int32, Int32?) in
            errno = 0
            let nice = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid))
            return (pid, errno == 0 ? nice : nil)
        }
        let listed = nices.map { "pid \($0.0) at nice \($0.1.map(String.init) ?? "?")" }.joined(separator: ", ")
        let strong = nices.filter { ($0.1 ?? 0) < InputNAPIThreadPriority.defaultNice }
        guard !strong.isEmpty else {
            return [Finding(severity: .ok, subject: subject, message: "receive threads below the workers (\(listed))", fix: nil)]
        }
        return [Finding(severity: .info, subject: subject,
                        message: "receive threads \(listed): below nice \(InputNAPIThreadPriority.defaultNice) a receive thread weighs against the workers as much as the daemon's whole session does, so overload can starve them (the daemon renices the threads it creates itself; README \"Overload\")",
                        fix: strong.map { "renice -n \(InputNAPIThreadPriority.defaultNice) -p \($0.0)" }.joined(separator: "; "))]
    }

    func output(_ name: InterfaceName) -> [Finding] {
        let subject = "output \(name)"
        guard let flags = interfaceFlags(name) else {
            return [Finding(severity: .problem, subject: subject, message: "does not exist: sends to it fail and are counted as send errors", fix: nil)]
        }
        var findings: [Finding] = []
        if flags & UInt32(IFF_UP) == 0 {
            findings.append(Finding(severity: .problem, subject: subject, message: "is down: sends fail", fix: "ip link set \(name) up"))
        }
        if multicastOutputs.contains(name), flags & UInt32(IFF_MULTICAST) == 0 {
            findings.append(Finding(severity: .problem, subject: subject, message: "lacks the MULTICAST flag: multicast sent out of it is refused", fix: "ip link set \(name) multicast on"))
        }
        let families = outputFamilies[name] ?? [.ipv4]
        var addresses: [String] = []
        if families.contains(.ipv4) {
            if ipv4Addresses(of: name).isEmpty {
                findings.append(Finding(severity: .problem, subject: subject, message: "has no IPv4 address: relayed packets would have no usable source address", fix: "ip addr add ADDRESS/PREFIX dev \(name)"))
            }
            addresses.append("IPv4 \(ipv4Addresses(of: name).map(\.description).joined(separator: ", "))")
        }
        if families.contains(.ipv6) {
            let index = Int32(bitPattern: if_nametoindex(name.rawValue))
            let v6 = IPv6InterfaceAddresses.read(index: index, path: "\(procRoot)/net/if_inet6")
            if v6.global == nil && v6.linkLocal == nil {
                findings.append(Finding(severity: .problem, subject: subject,
                                        message: "has no usable IPv6 address (none, still tentative, or IPv6 disabled): its IPv6 outputs cannot be sent",
                                        fix: "sysctl -w net.ipv6.conf.\(name).disable_ipv6=0; ip -6 addr add ADDRESS/PREFIX dev \(name)"))
            } else if v6.global == nil {
                findings.append(Finding(severity: .info, subject: subject,
                                        message: "has no global IPv6 address: IPv6 outputs leave from its link-local address \(v6.linkLocal!), which receivers beyond a router cannot answer or filter by",
                                        fix: "ip -6 addr add ADDRESS/PREFIX dev \(name)"))
            }
            addresses.append("IPv6 " + [v6.global, v6.linkLocal].compactMap { $0?.description }.joined(separator: ", "))
        }
        if findings.isEmpty {
            findings.append(Finding(severity: .ok, subject: subject, message: "up, multicast, " + addresses.joined(separator: "; "), fix: nil))
        }
        findings += egress(name)
        return findings
    }

    /// The egress decisions the daemon takes for this interface (`EgressPolicy`, from the same
    /// facts a worker reads), at `egressMode` and `segmentation`.
    func egress(_ name: InterfaceName) -> [Finding] {
        let probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { if probe >= 0 { close(probe) } }
        guard probe >= 0, case let .success(facts) = InterfaceFactsReader.read(name, probe: probe) else { return [] }
        let decision = EgressPolicy.decide(name, facts: facts, mode: egressMode, segmentation: segmentation)
        let driver = facts.driver.isEmpty ? "" : "\(facts.driver), "
        return [Finding(severity: .info, subject: "output \(name)",
                        message: "egress: multicast \(decision.path) (\(decision.pathReason)); UDP GSO \(decision.segmentation ? "on" : "off") "
                            + "(\(decision.segmentationReason)); \(driver)MTU \(facts.mtu), MAC \(facts.mac?.description ?? "none")",
                        fix: nil)]
    }

    // MARK: - Host access

    func readText(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var text = ""
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            text += String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return text
    }

    func readInt(_ path: String) -> Int? {
        readText(path).flatMap { Int($0.trimmingCharacters(in: " \n\t")) }
    }

    func interfaceFlags(_ name: InterfaceName) -> UInt32? {
        guard let text = readText("\(sysRoot)/class/net/\(name)/flags") else { return nil }
        let trimmed = text.trimmingCharacters(in: " \n\t")
        return UInt32(trimmed.hasPrefix("0x") ? String(trimmed.dropFirst(2)) : trimmed, radix: 16)
    }

    func ipv4Addresses(of name: InterfaceName) -> [IPv4Address] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var addresses: [IPv4Address] = []
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET),
                  String(cString: entry.pointee.ifa_name) == name.rawValue else { continue }
            address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { socketAddress in
                addresses.append(IPv4Address(UInt32(bigEndian: socketAddress.pointee.sin_addr.s_addr)))
            }
        }
        return addresses
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        var slice = Substring(self)
        while let first = slice.first, characters.contains(first) { slice.removeFirst() }
        while let last = slice.last, characters.contains(last) { slice.removeLast() }
        return String(slice)
    }
}
