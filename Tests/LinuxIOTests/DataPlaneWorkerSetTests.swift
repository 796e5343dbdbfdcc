import Foundation
import Glibc
import CLinuxNet
import LinuxIO
import RelayControl
import RelayCore
import Testing

/// Several workers, unicast outputs: what only shows with more than one socket or process.
@Suite("DataPlane worker sets and unicast", .serialized,
       .enabled(if: E2E.available, "needs root, `ip netns` and python3"))
struct DataPlaneWorkerSetTests {
    /// Two workers share rin0 through one fanout group: every datagram is forwarded exactly
    /// once, and each flow is carried whole by one of them (hash fanout keeps a flow on one
    /// socket; which one depends on the kernel's flow hash, seeded per boot, so only that is
    /// asserted, not which worker). One worker then dies (its channel closes) and the survivor
    /// carries every stream alone; a restarted worker rejoins the group and the pair is again
    /// exactly-once, each flow on one worker.
    @Test("two workers in one fanout group forward each datagram once, each flow on one worker, across a worker restart",
          arguments: IngressMode.allCases)
    func fanoutAcrossRestart(mode: IngressMode) throws {
        let lab = try DataPlaneLab(tag: mode == .uring ? "wu" : "wr")
        defer { lab.down() }
        let count = 120, size = 90
        let streamCount = 6
        var rules: [Rule] = []
        var inputs: [String] = []
        var outputs: [String] = []
        for index in 0..<streamCount {
            rules.append(try DataPlaneRules.rule("rin0:239.1.3.\(index + 1):5000", ["rout0:239.9.3.\(index + 1):6000:5"]))
            inputs.append("239.1.3.\(index + 1):5000:\(index + 1)")
            outputs.append("239.9.3.\(index + 1):6000:\(index + 1)")
        }
        let ingress = [IngressAssignment(interface: DataPlaneRules.interface("rin0"), fanoutGroup: 0x4D43)]
        func start(_ id: Int, version: UInt64) throws -> WorkerUnderTest {
            let worker = try WorkerUnderTest(namespace: lab.relay, worker: WorkerID(id), mode: mode)
            guard case .ready(WorkerID(id), _)? = try worker.next() else { throw DataPlaneTestSupport.HarnessError("worker \(id) not ready") }
            try worker.install(WorkerPlan(worker: WorkerID(id), version: version, ingress: ingress, rules: rules))
            return worker
        }
        /// Datagrams each worker accepted so far, per rule (in `rules` order).
        func accepted(_ worker: WorkerUnderTest) throws -> [UInt64] {
            let statistics = try worker.statistics()
            return rules.map { rule in statistics.rules.first { $0.rule.id == rule.id }?.accepted.packets ?? 0 }
        }
        func round(_ workers: [WorkerUnderTest], startSeq: Int) throws -> [[UInt64]] {
            let receiver = try lab.startReceiver(interfaceAddress: DataPlaneLab.receiver0Address, streams: outputs,
                                                 expect: count, size: size, startSeq: startSeq)
            defer { receiver.terminate() }
            try lab.send(streams: inputs, count: count, rate: 1000, size: size, startSeq: startSeq)
            let output = try receiver.finish(timeout: 30, check: false)
            #expect(output.status == 0, "mcrecv (strict: no loss, duplicate or corruption): \(output.stdout) \(output.stderr)")
            return try workers.map(accepted)
        }
        /// Per rule, what two workers accepted in one round: all of the flow on one, none on the other.
        func expectEachFlowOnOneWorker(_ first: [UInt64], _ second: [UInt64], _ round: String,
                                       sourceLocation: SourceLocation = #_sourceLocation) {
            for (index, pair) in zip(first, second).enumerated() {
                #expect(pair == (UInt64(count), 0) || pair == (0, UInt64(count)),
                        "\(round): flow \(inputs[index]) accepted \(pair.0) by worker 0 and \(pair.1) by worker 1, not \(count) by one of them",
                        sourceLocation: sourceLocation)
            }
        }
        func minus(_ a: [UInt64], _ b: [UInt64]) -> [UInt64] { zip(a, b).map { $0 &- $1 } }

        let first = try start(0, version: 1)
        var second = try start(1, version: 1)
        let both = try round([first, second], startSeq: 0)
        expectEachFlowOnOneWorker(both[0], both[1], "two workers")
        print("fanout split across two \(mode) workers (flows per worker): \(both.map { $0.filter { $0 > 0 }.count })")

        #expect(try second.closeChannel() == .channelClosed)  // a crash, as seen from the data plane
        let alone = try round([first], startSeq: count)
        #expect(minus(alone[0], both[0]) == Array(repeating: UInt64(count), count: streamCount),
                "the survivor must carry every stream whole: accepted per flow \(minus(alone[0], both[0]))")

        second = try start(1, version: 2)
        let again = try round([first, second], startSeq: 2 * count)
        expectEachFlowOnOneWorker(minus(again[0], alone[0]), again[1], "after the restart")
        #expect(try first.shutdown() == .shutdown)
        #expect(try second.shutdown() == .shutdown)
    }

    /// A unicast destination: IP_TTL and SO_BINDTODEVICE instead of the multicast options.
    @Test("relays to a unicast destination with its TTL, byte-exact", arguments: IngressMode.allCases)
    func unicastOutput(mode: IngressMode) throws {
        let lab = try DataPlaneLab(tag: mode == .uring ? "nu" : "nr")
        defer { lab.down() }
        let count = 150, size = 200
        let rule = try DataPlaneRules.rule("rin0:239.1.2.3:5000", ["rout0:198.18.2.2:7000:9"])
        let worker = try WorkerUnderTest(namespace: lab.relay, mode: mode)
        _ = try worker.next()
        try worker.install(WorkerPlan(worker: WorkerID(0), version: 1,
                                      ingress: [IngressAssignment(interface: DataPlaneRules.interface("rin0"), fanoutGroup: nil)],
                                      rules: [rule]))
        let receiver = try UnicastReceiver(namespace: lab.receiver, address: "198.18.2.2", port: 7000)
        try lab.send(streams: ["239.1.2.3:5000:4"], count: count, rate: 2000, size: size)
        let result = try receiver.collect(expect: count, timeout: 10)
        #expect(result.datagrams == count)
        #expect(result.mismatched == 0, "payloads differing from what was sent")
        #expect(result.ttls == [9])
        #expect(Set(result.sequences) == Set(0..<UInt64(count)))
        #expect(try worker.statistics().rules.first?.outputs.first?.sendErrors == 0)
        #expect(try worker.shutdown() == .shutdown)
    }
}

/// A UDP receiver on a thread in a namespace, checking payloads against the mcstream format.
final class UnicastReceiver: @unchecked Sendable {
    struct Result: Sendable {
        var datagrams = 0
        var mismatched = 0
        var ttls: Set<Int32> = []
        var sequences: [UInt64] = []
    }

    private let fd: Int32

    init(namespace: String, address: String, port: UInt16) throws {
        fd = try DataPlaneTestSupport.inNamespace(namespace) { () throws -> Int32 in
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var on: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_IP), IP_RECVTTL, &on, socklen_t(MemoryLayout<Int32>.size))
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_port = port.bigEndian
            inet_pton(AF_INET, address, &local.sin_addr)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw DataPlaneTestSupport.HarnessError("bind \(address):\(port) failed: errno \(errno)") }
            return fd
        }
    }

    deinit { close(fd) }

    func collect(expect: Int, timeout: Double) throws -> Result {
        var result = Result()
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        var control = [UInt8](repeating: 0, count: 64)
        while result.datagrams < expect, Date() < deadline {
            var waiting = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&waiting, 1, 100) > 0 else { continue }
            let received = buffer.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { control in
                    var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &vector) { vector in
                        var message = msghdr()
                        message.msg_iov = vector
                        message.msg_iovlen = 1
                        message.msg_control = control.baseAddress
                        message.msg_controllen = control.count
                        let count = recvmsg(fd, &message, 0)
                        // IP_TTL control message: cmsghdr (16 bytes on 64-bit) then an int.
                        if count > 0, message.msg_controllen >= 20 {
                            let level = control.load(fromByteOffset: 8, as: Int32.self)
                            let type = control.load(fromByteOffset: 12, as: Int32.self)
                            if level == Int32(IPPROTO_IP), type == IP_TTL {
                                result.ttls.insert(control.load(fromByteOffset: 16, as: Int32.self))
                            }
                        }
                        return count
                    }
                }
            }
            guard received > 0 else { continue }
            let payload = Array(buffer[0..<received])
            result.datagrams += 1
            guard payload.count >= 12 else { result.mismatched += 1; continue }
            let stream = payload[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let sequence = payload[4..<12].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            result.sequences.append(sequence)
            if payload != MCStream.payload(stream: stream, sequence: sequence, size: payload.count) { result.mismatched += 1 }
        }
        return result
    }
}

/// scripts/mcstream.py's payload format, to check relayed bytes exactly.
enum MCStream {
    static let pattern: [UInt8] = (0..<256).map { UInt8(($0 * 167 + 13) % 256) }

    static func payload(stream: UInt32, sequence: UInt64, size: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: stream >> UInt32(shift))) }
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: sequence >> UInt64(shift))) }
        let start = Int((UInt64(stream) * 131 + sequence * 31) % 256)
        for index in 0..<max(0, size - 12) { bytes.append(pattern[(start + index) % 256]) }
        return bytes
    }
}
