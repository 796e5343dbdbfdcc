import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// Two namespaces joined by one veth, with IPv4 and IPv6 on (the three-namespace lab has IPv6
/// off): a Linux host (`host`, interface `lh0`) whose sockets join groups, so its kernel sends
/// IGMP and MLD, and the router side (`router`, interface `lr0`) where the ListenerTap runs.
///
///     ${prefix}-h  lh0 198.18.77.1/24 2001:db8:77::1/64 nodad  <--->  lr0 198.18.77.2/24 2001:db8:77::2/64 nodad  ${prefix}-r
///
/// Holds the live lease until `down()`. Setup waits until both carriers are up and both
/// automatic fe80:: addresses have finished DAD (not tentative in /proc/net/if_inet6): until
/// then the host's MLD reports come from `::` (docs/ipv6-linux-facts.md, 2) and the router has
/// no link-local to send queries from. Host settings (`hostSysctl`) are applied in the host
/// namespace only, before the link comes up.
final class ListenerLab {
    let prefix: String
    let directory: String
    var host: String { "\(prefix)-h" }
    var router: String { "\(prefix)-r" }
    let hostInterface = "lh0"
    let routerInterface = "lr0"
    static let hostAddress = "198.18.77.1"
    static let routerAddress = "198.18.77.2"
    static let hostAddress6 = "2001:db8:77::1"
    static let routerAddress6 = "2001:db8:77::2"

    /// Time from link-up until both link-local addresses were usable.
    private(set) var linkLocalReady: Duration = .zero

    /// `tag`: up to 2 characters; the prefix is "mlt" + pid % 100000 + tag (at most 10 characters).
    init(tag: String, hostSysctl: [String] = []) throws {
        prefix = "mlt\(getpid() % 100000)\(tag)"
        precondition(prefix.count <= 11)
        directory = try E2E.temporaryDirectory(prefix)
        try LiveLease.acquire(prefix)
        do {
            try up(hostSysctl: hostSysctl)
        } catch {
            down()
            throw error
        }
    }

    private func up(hostSysctl: [String]) throws {
        removeNamespaces()
        try must(["ip", "netns", "add", host])
        try must(["ip", "netns", "add", router])
        try must(["ip", "-n", host, "link", "set", "lo", "up"])
        try must(["ip", "-n", router, "link", "set", "lo", "up"])
        try must(["ip", "-n", host, "link", "add", hostInterface, "type", "veth", "peer", "name", routerInterface, "netns", router])
        try must(["ip", "-n", host, "addr", "add", Self.hostAddress + "/24", "dev", hostInterface])
        try must(["ip", "-n", router, "addr", "add", Self.routerAddress + "/24", "dev", routerInterface])
        try must(["ip", "-n", host, "addr", "add", Self.hostAddress6 + "/64", "dev", hostInterface, "nodad"])
        try must(["ip", "-n", router, "addr", "add", Self.routerAddress6 + "/64", "dev", routerInterface, "nodad"])
        for setting in hostSysctl { try must(["ip", "netns", "exec", host, "sysctl", "-qw", setting]) }
        let started = ContinuousClock.now
        try must(["ip", "-n", router, "link", "set", routerInterface, "up"])
        try must(["ip", "-n", host, "link", "set", hostInterface, "up"])
        try waitUntilReady(started: started)
    }

    /// Carrier on both ends and both link-locals past DAD (bounded: 10 s). Polls from threads
    /// inside the namespaces (no process per poll: a loaded machine starves `ip netns exec`).
    func waitUntilReady(started: ContinuousClock.Instant = .now) throws {
        for (namespace, interface) in [(host, hostInterface), (router, routerInterface)] {
            var state: Int32 = 0
            let up = try waitUntil(timeout: .seconds(10)) {
                state = try flags(namespace, interface)
                return state & 0x41 == 0x41  // IFF_UP | IFF_RUNNING
            }
            guard up else { throw HarnessError("\(interface) in \(namespace) not running after 10 s (flags 0x\(String(state, radix: 16)))") }
        }
        var last = ""
        let ready = try waitUntil(timeout: .seconds(10)) {
            let h = try linkLocal(host, hostInterface)
            let r = try linkLocal(router, routerInterface)
            last = "host \(h.map { "\($0)" } ?? "none"), router \(r.map { "\($0)" } ?? "none")"
            return h?.usable == true && r?.usable == true
        }
        guard ready else { throw HarnessError("link-local addresses not usable 10 s after link-up: \(last)") }
        linkLocalReady = ContinuousClock.now - started
    }

    struct LinkLocal: CustomStringConvertible {
        var bytes: [UInt8]
        var flags: UInt32
        var usable: Bool { flags & (0x40 | 0x08) == 0 }  // not tentative, not DAD-failed
        var text: String { ListenerFrames.ipv6Text(bytes[...]) }
        var description: String { "\(text) flags 0x\(String(flags, radix: 16))" }
    }

    /// The fe80:: address of `interface` from the namespace's /proc/net/if_inet6, read by a
    /// thread inside it (/proc/thread-self/net: /proc/net would show the process's namespace).
    func linkLocal(_ namespace: String, _ interface: String) throws -> LinkLocal? {
        let text = try inNamespace(namespace) { () throws -> String in
            guard let text = try? String(contentsOfFile: "/proc/thread-self/net/if_inet6", encoding: .utf8) else {
                throw HarnessError("cannot read /proc/thread-self/net/if_inet6 in \(namespace)")
            }
            return text
        }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[5] == interface, fields[3] == "20", fields[0].count == 32,
                  let flags = UInt32(fields[4], radix: 16) else { continue }
            let hex = Array(fields[0].utf8)
            let bytes = stride(from: 0, to: 32, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
            return LinkLocal(bytes: bytes, flags: flags)
        }
        return nil
    }

    /// The interface's MAC (SIOCGIFHWADDR from a socket inside the namespace).
    func mac(_ namespace: String, _ interface: String) throws -> [UInt8] {
        try inNamespace(namespace) { () throws -> [UInt8] in
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var type: UInt16 = 0
            var address = [UInt8](repeating: 0, count: 6)
            let rc = ldp_interface_hardware(fd, interface, &type, &address)
            guard rc == 0 else { throw HarnessError("SIOCGIFHWADDR \(interface) in \(namespace): \(String(cString: strerror(-rc)))") }
            return address
        }
    }

    /// The interface's flags (SIOCGIFFLAGS from a socket inside the namespace), e.g.
    /// IFF_UP 0x1, IFF_RUNNING 0x40. Its IFF_ALLMULTI is only the user-set one (`ip link set
    /// allmulticast on`, dev->gflags): the count a packet socket's PACKET_MR_ALLMULTI adds shows
    /// in `deviceFlags` only (SIOCGIFFLAGS and `ip link` both report dev_get_flags()).
    func flags(_ namespace: String, _ interface: String) throws -> Int32 {
        try inNamespace(namespace) { () throws -> Int32 in
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            let flags = cln_interface_flags(fd, interface)
            guard flags >= 0 else { throw HarnessError("SIOCGIFFLAGS \(interface) in \(namespace): \(String(cString: strerror(-flags)))") }
            return flags
        }
    }

    /// dev->flags as /sys/class/net/IF/flags shows them (with the IFF_ALLMULTI 0x200 that
    /// packet-socket memberships turn on). One `ip netns exec` (sysfs is per mount namespace).
    func deviceFlags(_ namespace: String, _ interface: String) throws -> Int32 {
        let text = try must(["ip", "netns", "exec", namespace, "cat", "/sys/class/net/\(interface)/flags"]).stdout
        guard let value = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst(2), radix: 16) else {
            throw HarnessError("flags of \(interface) in \(namespace): '\(text)'")
        }
        return value
    }

    @discardableResult
    func must(_ arguments: [String], timeout: Duration = .seconds(60)) throws -> CommandResult {
        let result = try run(arguments, in: directory, timeout: timeout)
        guard result.status == 0 else { throw HarnessError("command failed: \(result)") }
        return result
    }

    private func removeNamespaces() {
        for namespace in [host, router] {
            _ = try? run(["ip", "netns", "del", namespace], in: directory, timeout: .seconds(10))
        }
    }

    /// Deletes both namespaces (the veth goes with them). Nothing runs inside them: the tests'
    /// sockets belong to the test process and the commands are short-lived.
    func down() {
        removeNamespaces()
        LiveLease.release(prefix)
    }
}
