import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The DataPlane tests' side of `Lab`: mcsend/mcrecv with stream strings ("GROUP:PORT[:ID]")
/// and their JSON as dictionaries, and the worker's sockets seen from the relay namespace.
extension Lab {
    static let receiver0Address = receiverAddress0
    static let receiver1Address = receiverAddress1

    /// A lab named `dp<tag><pid><n>` (the DataPlane tests' names; `n` counts labs in this
    /// process). netns-lab.sh takes at most 11 characters: the tag is cut to what is left after
    /// the unique part, which alone keeps names apart.
    convenience init(tag: String) throws {
        let unique = "\(getpid() % 10000)\(UniqueNumbers.next())"
        try self.init(prefix: "dp" + String(tag.prefix(max(0, 9 - unique.count))) + unique)
    }

    /// Sends `count` datagrams per stream from the sender namespace; returns mcsend's JSON.
    @discardableResult
    func send(streams: [String], count: Int, rate: Int, size: Int, startSeq: Int = 0) throws -> [String: Any] {
        // IPv6 streams ("[GROUP]:PORT[:ID]") go from snd0's IPv6 address (labs made with ipv6: true).
        var sources = ["--source", Self.senderAddress]
        if streams.contains(where: { $0.hasPrefix("[") }) {
            sources = (streams.allSatisfy { $0.hasPrefix("[") } ? [] : sources) + ["--source", Self.senderAddress6]
        }
        var arguments = ["ip", "netns", "exec", sender, "python3", E2E.scripts + "/mcsend.py"] + sources + ["--count", "\(count)", "--rate", "\(rate)", "--size", "\(size)",
                         "--start-seq", "\(startSeq)"]
        for stream in streams { arguments += ["--stream", stream] }
        let output = try RunningProcess(arguments, outputDirectory: directory).finish(timeout: 60)
        return try Self.json(output.stdout, from: "mcsend")
    }

    /// Starts mcrecv (strict: any loss, duplicate or corruption is exit 1) in the receiver
    /// namespace and waits until it has joined.
    func startReceiver(interfaceAddress: String, streams: [String], expect: Int, size: Int?, duration: Double = 20,
                       startSeq: Int = 0) throws -> RunningProcess {
        let ready = "\(directory)/recv-\(interfaceAddress)-\(UniqueNumbers.next()).ready"
        var arguments = ["ip", "netns", "exec", receiver, "python3", E2E.scripts + "/mcrecv.py",
                         "--iface-addr", interfaceAddress, "--expect", "\(expect)",
                         "--duration", "\(duration)", "--idle", "2", "--strict", "--ready-file", ready,
                         "--start-seq", "\(startSeq)"]
        if let size { arguments += ["--size", "\(size)"] }
        for stream in streams { arguments += ["--stream", stream] }
        let process = try RunningProcess(arguments, outputDirectory: directory)
        let isReady = waitUntil(timeout: .seconds(15)) { access(ready, F_OK) == 0 || !process.child.isRunning }
        guard isReady, access(ready, F_OK) == 0 else {
            let output = try? process.finish(timeout: 1, check: false)
            throw HarnessError("mcrecv did not get ready within 15 s: \(output?.stderr ?? "?")")
        }
        return process
    }

    static func json(_ text: String, from tool: String) throws -> [String: Any] {
        guard let data = text.data(using: .utf8),
              let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw HarnessError("\(tool) printed no JSON object: \(text)")
        }
        return object
    }

    /// Waits until an AF_PACKET socket in the relay namespace is bound to `interface`
    /// (/proc/net/packet lists each with its interface index): a worker opened its input.
    func waitForPacketSocket(on interface: String, timeout: Duration) throws {
        let index = try must(relay, ["cat", "/sys/class/net/\(interface)/ifindex"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var table = ""
        let bound = try waitUntil(timeout: timeout) {
            // sk RefCnt Type Proto Iface R Rmem User Inode
            table = try must(relay, ["cat", "/proc/net/packet"]).stdout
            return table.split(separator: "\n").dropFirst().contains { line in
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                return fields.count > 4 && fields[4] == index
            }
        }
        guard bound else {
            throw HarnessError("no AF_PACKET socket on \(interface) (index \(index)) within \(timeout):\n\(table)")
        }
    }
}
