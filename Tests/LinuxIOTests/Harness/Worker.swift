import Foundation
import Glibc
import CLinuxNet  // SOCK_STREAM and SOCK_CLOEXEC: a clean build does not find them through Glibc alone here
import LinuxIO
import RelayControl
import RelayCore

/// The supervisor's end of a worker channel, with a worker running on a thread in a namespace.
final class WorkerUnderTest {
    let worker: WorkerID
    let supervisorFD: Int32
    private let thread: NamespaceThread<DataPlaneWorker.Exit>
    private var reassembler = MessageReassembler<WorkerMessage>()
    private(set) var problems: [String] = []

    /// `preload`: messages written (and, with `endAfterPreload`, the supervisor's side shut for
    /// writing) before the worker starts, so its very first read sees them together.
    init(namespace: String, worker: WorkerID = WorkerID(0), mode: IngressMode,
         receiveBufferBytes: Int32 = IngressSocket.receiveBufferBytes,
         preload: [SupervisorMessage] = [], endAfterPreload: Bool = false) throws {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw HarnessError("socketpair failed: errno \(errno)")
        }
        self.worker = worker
        supervisorFD = fds[0]
        let workerFD = fds[1]
        for message in preload {
            let bytes = try MessageFraming.encode(message)
            guard bytes.withUnsafeBytes({ Glibc.send(fds[0], $0.baseAddress, $0.count, 0) }) == bytes.count else {
                throw HarnessError("preload send failed: errno \(errno)")
            }
        }
        if endAfterPreload { _ = Glibc.shutdown(fds[0], Int32(SHUT_WR)) }
        thread = NamespaceThread(namespace: namespace) {
            DataPlaneWorker(worker: worker, channelFD: workerFD, ingressMode: mode,
                            receiveBufferBytes: receiveBufferBytes).run()
        }
    }

    func send(_ message: SupervisorMessage) throws {
        let bytes = try MessageFraming.encode(message)
        let sent = bytes.withUnsafeBytes { Glibc.send(supervisorFD, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { throw HarnessError("channel send returned \(sent), errno \(errno)") }
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
                throw HarnessError("waiting for a problem \"\(text)\", the worker sent \(message)")
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
            throw HarnessError("worker did not acknowledge plan \(plan.version); problems: \(problems)")
        }
    }

    func statistics() throws -> ForwardingStatistics {
        try send(.statisticsRequest(requestID: 7))
        guard case let .statistics(7, statistics)? = try next() else {
            throw HarnessError("worker did not answer the statistics request")
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
            input: EndpointSyntax.parseInput(input, source: source.map(IPAddress.v4)),
            outputs: outputs.map { try EndpointSyntax.parseOutput($0) }))
    }

    static func interface(_ name: String) -> InterfaceName { InterfaceName(name)! }
}
