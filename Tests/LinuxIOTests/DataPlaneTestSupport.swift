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
            guard case let .forward(forwarding) = forwarder.decide(UnsafeRawBufferPointer(buffer), link: .rawIP, ingress: 0) else {
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

    // The rest is the live-test harness in Harness/ (one for every live test), under the names
    // the DataPlane tests use.
    typealias HarnessError = LinuxIOTests.HarnessError
    typealias Output = CommandResult
    typealias RunningProcess = LinuxIOTests.RunningProcess
    typealias NamespaceThread = LinuxIOTests.NamespaceThread

    /// Runs a command to completion (killed after `timeout` seconds); with `check`, a non-zero
    /// exit throws with its output.
    @discardableResult
    static func run(_ arguments: [String], timeout: Double = 30, check: Bool = true) throws -> Output {
        try start(arguments).finish(timeout: timeout, check: check)
    }

    static func start(_ arguments: [String]) throws -> RunningProcess {
        try RunningProcess(arguments)
    }

    static func inNamespace<T>(_ namespace: String, _ body: @escaping @Sendable () throws -> T) throws -> T {
        try LinuxIOTests.inNamespace(namespace, body)
    }
}

/// The DataPlane tests' name for the lab (`Lab(tag:)`, `send(streams:...)`, `startReceiver`).
typealias DataPlaneLab = Lab
