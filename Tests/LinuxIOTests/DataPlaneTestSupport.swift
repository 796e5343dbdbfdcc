import Foundation
import Glibc
import CLinuxNet
import LinuxIO
import RelayControl
import RelayCore

/// Test harness for the data-plane tests: lab namespaces (scripts/netns-lab.sh), helper
/// processes (scripts/mcsend.py / mcrecv.py), threads inside a namespace, and a fake
/// supervisor end of the worker channel. Every helper fails loudly (throws with the tool's
/// output) when its own tooling fails, so a broken harness never looks like a relay bug.
enum DataPlaneTestSupport {
    /// The worker's send path without the worker: each frame through the Forwarder, its
    /// transmits queued, one flush. The frames stay alive (and unmoved) until the flush, as
    /// receive buffers do. Send problems go to `report`.
    static func forwardAndFlush(_ frames: [[UInt8]], forwarder: inout Forwarder, pool: EgressSocketPool, queue: TransmitQueue,
                                report: (String) -> Void) throws {
        let storage = frames.map { frame -> UnsafeMutableRawBufferPointer in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: frame.count, alignment: 8)
            buffer.copyBytes(from: frame)
            return buffer
        }
        defer { storage.forEach { $0.deallocate() } }
        for buffer in storage {
            guard case let .forward(forwarding) = forwarder.decide(UnsafeRawBufferPointer(buffer), link: .rawIPv4, ingress: 0) else {
                throw HarnessError("test frame not forwarded")
            }
            for transmit in forwarder.transmits(for: forwarding) { queue.append(transmit, pool: pool) }
        }
        queue.flush(pool: pool, forwarder: &forwarder, report: report)
    }

    static var isRoot: Bool { geteuid() == 0 }

    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func script(_ name: String) -> String { repositoryRoot.appendingPathComponent("scripts/\(name)").path }

    struct HarnessError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a command to completion (killed after `timeout` seconds).
    @discardableResult
    static func run(_ arguments: [String], timeout: Double = 30, check: Bool = true) throws -> Output {
        let process = try start(arguments)
        return try process.finish(timeout: timeout, check: check)
    }

    static func start(_ arguments: [String]) throws -> RunningProcess {
        try RunningProcess(arguments)
    }

    final class RunningProcess: @unchecked Sendable {
        let arguments: [String]
        private let process = Process()
        private let out = Pipe()
        private let err = Pipe()
        private var outData = Data()
        private var errData = Data()
        private let group = DispatchGroup()

        init(_ arguments: [String]) throws {
            self.arguments = arguments
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            process.standardOutput = out
            process.standardError = err
            var environment = ProcessInfo.processInfo.environment
            environment["SWIFT_BACKTRACE"] = "enable=no"
            process.environment = environment
            try process.run()
            // Drain both pipes concurrently so a chatty child never blocks on a full pipe.
            group.enter()
            DispatchQueue.global().async { [out] in
                let data = out.fileHandleForReading.readDataToEndOfFile()
                self.outData = data
                self.group.leave()
            }
            group.enter()
            DispatchQueue.global().async { [err] in
                let data = err.fileHandleForReading.readDataToEndOfFile()
                self.errData = data
                self.group.leave()
            }
        }

        var pid: Int32 { process.processIdentifier }

        func finish(timeout: Double, check: Bool = true) throws -> Output {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                _ = group.wait(timeout: .now() + 5)
                throw HarnessError("\(arguments.joined(separator: " ")) did not finish within \(timeout) s; stderr: \(String(decoding: errData, as: UTF8.self))")
            }
            process.waitUntilExit()
            _ = group.wait(timeout: .now() + 5)
            let output = Output(status: process.terminationStatus,
                                stdout: String(decoding: outData, as: UTF8.self),
                                stderr: String(decoding: errData, as: UTF8.self))
            if check && output.status != 0 {
                throw HarnessError("\(arguments.joined(separator: " ")) exited \(output.status)\nstdout: \(output.stdout)\nstderr: \(output.stderr)")
            }
            return output
        }

        func terminate() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
    }

    /// Runs `body` on a new thread that first enters network namespace `namespace`; the
    /// returned handle joins it. Thread-local namespace, so the test runner is unaffected.
    final class NamespaceThread<Result>: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var result: Swift.Result<Result, any Error>?

        init(namespace: String, _ body: @escaping @Sendable () throws -> Result) {
            let thread = Thread { [self] in
                do {
                    try NetworkNamespaceThread.enter(named: namespace)
                    result = .success(try body())
                } catch {
                    result = .failure(error)
                }
                done.signal()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }

        func join(timeout: Double = 30) throws -> Result {
            guard done.wait(timeout: .now() + timeout) == .success else {
                throw HarnessError("namespace thread did not finish within \(timeout) s")
            }
            return try result!.get()
        }
    }

    static func inNamespace<T>(_ namespace: String, _ body: @escaping @Sendable () throws -> T) throws -> T {
        try NamespaceThread(namespace: namespace, body).join()
    }

    /// Unique lab prefix (netns-lab.sh allows 11 characters).
    static func labPrefix(_ tag: String) -> String {
        counterLock.lock()
        defer { counterLock.unlock() }
        counter += 1
        return "dp\(tag)\(getpid() % 10000)\(counter)"
    }

    private static let counterLock = NSLock()
    nonisolated(unsafe) private static var counter = 0
}

/// The three-namespace lab of scripts/netns-lab.sh (snd0 -> rin0 [relay] rout0/rout1 -> rcv0/rcv1).
final class DataPlaneLab {
    let prefix: String
    var sender: String { "\(prefix)-snd" }
    var relay: String { "\(prefix)-rly" }
    var receiver: String { "\(prefix)-rcv" }
    static let senderAddress = "198.18.1.1"
    static let receiver0Address = "198.18.2.2"
    static let receiver1Address = "198.18.3.2"

    /// Holds the live lease (`LiveLease`) until `down()`: live tests never overlap.
    init(tag: String) throws {
        prefix = DataPlaneTestSupport.labPrefix(tag)
        try LiveLease.acquire(prefix)
        do {
            try DataPlaneTestSupport.run([DataPlaneTestSupport.script("netns-lab.sh"), "up", prefix])
        } catch {
            down()
            throw error
        }
    }

    func down() {
        _ = try? DataPlaneTestSupport.run([DataPlaneTestSupport.script("netns-lab.sh"), "down", prefix], check: false)
        LiveLease.release(prefix)
    }

    /// Sends `count` datagrams per stream from the sender namespace; returns mcsend's JSON.
    @discardableResult
    func send(streams: [String], count: Int, rate: Int, size: Int, startSeq: Int = 0) throws -> [String: Any] {
        var arguments = ["ip", "netns", "exec", sender, "python3", DataPlaneTestSupport.script("mcsend.py"),
                         "--source", Self.senderAddress, "--count", "\(count)", "--rate", "\(rate)", "--size", "\(size)",
                         "--start-seq", "\(startSeq)"]
        for stream in streams { arguments += ["--stream", stream] }
        let output = try DataPlaneTestSupport.run(arguments, timeout: 60)
        return try Self.json(output.stdout, from: "mcsend")
    }

    /// Starts mcrecv in the receiver namespace and waits until it has joined.
    func startReceiver(interfaceAddress: String, streams: [String], expect: Int, size: Int?, duration: Double = 20,
                       startSeq: Int = 0) throws -> DataPlaneTestSupport.RunningProcess {
        let ready = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(interfaceAddress)-ready").path
        unlink(ready)
        var arguments = ["ip", "netns", "exec", receiver, "python3", DataPlaneTestSupport.script("mcrecv.py"),
                         "--iface-addr", interfaceAddress, "--expect", "\(expect)",
                         "--duration", "\(duration)", "--idle", "2", "--strict", "--ready-file", ready,
                         "--start-seq", "\(startSeq)"]
        if let size { arguments += ["--size", "\(size)"] }
        for stream in streams { arguments += ["--stream", stream] }
        let process = try DataPlaneTestSupport.start(arguments)
        for _ in 0..<200 {
            if access(ready, F_OK) == 0 { unlink(ready); return process }
            usleep(25_000)
        }
        let output = try? process.finish(timeout: 1, check: false)
        throw DataPlaneTestSupport.HarnessError("mcrecv did not get ready: \(output?.stderr ?? "?")")
    }

    /// Waits until an AF_PACKET socket in the relay namespace is bound to `interface`
    /// (/proc/net/packet lists each with its interface index): a worker opened its input.
    func waitForPacketSocket(on interface: String, timeout: Duration) throws {
        let index = try DataPlaneTestSupport.run(["ip", "netns", "exec", relay, "cat", "/sys/class/net/\(interface)/ifindex"])
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        var table = ""
        let bound = try waitUntil(timeout: timeout) {
            // sk RefCnt Type Proto Iface R Rmem User Inode
            table = try DataPlaneTestSupport.run(["ip", "netns", "exec", relay, "cat", "/proc/net/packet"]).stdout
            return table.split(separator: "\n").dropFirst().contains { line in
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                return fields.count > 4 && fields[4] == index
            }
        }
        guard bound else {
            throw DataPlaneTestSupport.HarnessError("no AF_PACKET socket on \(interface) (index \(index)) within \(timeout):\n\(table)")
        }
    }

    static func json(_ text: String, from tool: String) throws -> [String: Any] {
        guard let data = text.data(using: .utf8),
              let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw DataPlaneTestSupport.HarnessError("\(tool) printed no JSON object: \(text)")
        }
        return object
    }
}

/// The supervisor's end of a worker channel, with a worker running on a thread in a namespace.
final class WorkerUnderTest {
    let worker: WorkerID
    let supervisorFD: Int32
    private let thread: DataPlaneTestSupport.NamespaceThread<DataPlaneWorker.Exit>
    private var reassembler = MessageReassembler<WorkerMessage>()
    private(set) var problems: [String] = []

    /// `preload`: messages written (and, with `endAfterPreload`, the supervisor's side shut for
    /// writing) before the worker starts, so its very first read sees them together.
    init(namespace: String, worker: WorkerID = WorkerID(0), mode: IngressMode,
         receiveBufferBytes: Int32 = IngressSocket.receiveBufferBytes,
         preload: [SupervisorMessage] = [], endAfterPreload: Bool = false) throws {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw DataPlaneTestSupport.HarnessError("socketpair failed: errno \(errno)")
        }
        self.worker = worker
        supervisorFD = fds[0]
        let workerFD = fds[1]
        for message in preload {
            let bytes = try MessageFraming.encode(message)
            guard bytes.withUnsafeBytes({ Glibc.send(fds[0], $0.baseAddress, $0.count, 0) }) == bytes.count else {
                throw DataPlaneTestSupport.HarnessError("preload send failed: errno \(errno)")
            }
        }
        if endAfterPreload { _ = Glibc.shutdown(fds[0], Int32(SHUT_WR)) }
        thread = DataPlaneTestSupport.NamespaceThread(namespace: namespace) {
            DataPlaneWorker(worker: worker, channelFD: workerFD, ingressMode: mode,
                            receiveBufferBytes: receiveBufferBytes).run()
        }
    }

    func send(_ message: SupervisorMessage) throws {
        let bytes = try MessageFraming.encode(message)
        let sent = bytes.withUnsafeBytes { Glibc.send(supervisorFD, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { throw DataPlaneTestSupport.HarnessError("channel send returned \(sent), errno \(errno)") }
    }

    /// The next message other than `.problem` (problems are collected), or nil on timeout.
    func next(timeout: Double = 5) throws -> WorkerMessage? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let message = try reassembler.next() {
                if case let .problem(text) = message { problems.append(text); continue }
                return message
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return nil }
            var waiting = pollfd(fd: supervisorFD, events: Int16(POLLIN), revents: 0)
            guard poll(&waiting, 1, Int32(remaining * 1000) + 1) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let count = read(supervisorFD, &buffer, buffer.count)
            guard count > 0 else { return nil }
            reassembler.append(buffer[0..<count])
        }
    }

    /// Waits up to `timeout` seconds for a problem report containing `text` (one already
    /// collected counts); false if none came.
    func waitForProblem(containing text: String, timeout: Double) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while !problems.contains(where: { $0.contains(text) }) {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return false }
            if let message = try next(timeout: left) {
                throw DataPlaneTestSupport.HarnessError("waiting for a problem \"\(text)\", the worker sent \(message)")
            }
        }
        return true
    }

    /// Collects problems that arrive within `timeout` seconds.
    func drainProblems(timeout: Double) throws -> [String] {
        _ = try next(timeout: timeout)
        return problems
    }

    func install(_ plan: WorkerPlan) throws {
        try send(.install(plan))
        guard case .installed(plan.version)? = try next() else {
            throw DataPlaneTestSupport.HarnessError("worker did not acknowledge plan \(plan.version); problems: \(problems)")
        }
    }

    func statistics() throws -> ForwardingStatistics {
        try send(.statisticsRequest(requestID: 7))
        guard case let .statistics(7, statistics)? = try next() else {
            throw DataPlaneTestSupport.HarnessError("worker did not answer the statistics request")
        }
        return statistics
    }

    func shutdown() throws -> DataPlaneWorker.Exit {
        try send(.shutdown)
        defer { close(supervisorFD) }
        return try thread.join(timeout: 10)
    }

    /// Waits for the worker to end by itself.
    func join() throws -> DataPlaneWorker.Exit {
        defer { close(supervisorFD) }
        return try thread.join(timeout: 10)
    }

    func closeChannel() throws -> DataPlaneWorker.Exit {
        close(supervisorFD)
        return try thread.join(timeout: 10)
    }
}

enum DataPlaneRules {
    static func rule(_ input: String, _ outputs: [String], source: IPv4Address? = nil) throws -> Rule {
        try RuleBook.validated(RuleSpec(
            input: EndpointSyntax.parseInput(input, source: source),
            outputs: outputs.map { try EndpointSyntax.parseOutput($0) }))
    }

    static func interface(_ name: String) -> InterfaceName { InterfaceName(name)! }
}
