import Foundation
@testable import LinuxIO
import RelayControl
import RelayCore
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// The supervisor's pieces against the real kernel, without namespaces or root.
@Suite("Supervisor parts")
struct SupervisorPartsTests {
    /// A connected pair: the daemon's end (non-blocking, wrapped) and the client's.
    func connectionPair() throws -> (ControlConnection, Int32) {
        var fds: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        try Descriptors.setNonBlocking(fds[0])
        return (ControlConnection(fd: fds[0], serial: 1), fds[1])
    }

    @Test("control connection: lines split across reads, CRLF, blank lines, last line without newline")
    func lineSplitting() throws {
        let (connection, client) = try connectionPair()
        defer { connection.close(); close(client) }
        try Descriptors.writeAll(client, Array("{\"op\":\"li".utf8))
        #expect(connection.receive() == .ok)
        #expect(connection.nextLine() == nil)
        try Descriptors.writeAll(client, Array("st\"}\r\n\n  \n{\"op\":\"stats\"}".utf8))
        #expect(connection.receive() == .ok)
        #expect(connection.nextLine().map { String(decoding: $0, as: UTF8.self) } == #"{"op":"list"}"#)
        #expect(connection.nextLine() == nil)
        shutdown(client, Int32(SHUT_WR))
        #expect(connection.receive() == .ok)
        #expect(connection.nextLine().map { String(decoding: $0, as: UTF8.self) } == #"{"op":"stats"}"#)
        #expect(connection.closing)
    }

    @Test("control connection: a line over 64 KiB is refused")
    func oversized() throws {
        let (connection, client) = try connectionPair()
        defer { connection.close(); close(client) }
        let big = [UInt8](repeating: UInt8(ascii: "x"), count: ControlProtocol.maximumRequestSize + 10)
        var status = ControlConnection.ReceiveStatus.ok
        var offset = 0
        while offset < big.count && status == .ok {
            let n = big[offset...].withUnsafeBytes { write(client, $0.baseAddress, min($0.count, 32 * 1024)) }
            if n > 0 { offset += n }
            status = connection.receive()
        }
        #expect(status == .tooLong)
    }

    @Test("control connection: replies queue while the client does not read, and flush later")
    func slowReader() throws {
        let (connection, client) = try connectionPair()
        defer { connection.close(); close(client) }
        let reply = ControlReply(ok: false, error: String(repeating: "e", count: 4000))
        for _ in 0..<200 { connection.send(reply) }  // ~800 KB: more than the socket buffer
        #expect(connection.wantsWrite)
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        while connection.wantsWrite || received < 200 * (ControlProtocol.encodeLine(reply).count) {
            connection.flush()
            let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { received += n } else if !connection.wantsWrite { break }
        }
        #expect(received == 200 * ControlProtocol.encodeLine(reply).count)
    }

    @Test("link monitor: the initial dump reports lo as usable")
    func linkDump() throws {
        let monitor = try LinkMonitor()
        defer { monitor.close() }
        var changes: [LinkMonitor.Change] = []
        let found = waitUntil(timeout: .seconds(5)) {
            var descriptor = pollfd(fd: monitor.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, 100)
            changes += monitor.receive()
            return changes.contains(.up(InterfaceName("lo")!))
        }
        #expect(found, "changes: \(changes)")
        #expect(monitor.usable.contains("lo"))
    }

    @Test("helper socket: the kernel's per-socket membership limit surfaces as .socketFull")
    func membershipLimit() throws {
        let limit = Supervisor.kernelMembershipLimit()
        try #require(limit <= 64, "igmp_max_memberships is \(limit) here; the test joins limit+1 groups")
        let pool = HelperSocketPool()
        let socket = HelperSocketID(interface: InterfaceName("lo")!, ordinal: 0)
        try pool.open(socket)
        defer { pool.close(socket) }
        var outcomes: [JoinOutcome] = []
        for index in 0...limit {
            let key = MembershipKey(interface: InterfaceName("lo")!, group: IPv4Address(239, 255, 77, UInt8(index + 1)))
            outcomes.append(pool.join(key, on: socket))
        }
        #expect(outcomes.prefix(limit).allSatisfy { $0 == .joined }, "\(outcomes)")
        #expect(outcomes.last == .failed(.socketFull))
        let unknown = MembershipKey(interface: InterfaceName("nosuch0")!, group: IPv4Address(239, 255, 77, 200))
        #expect(pool.join(unknown, on: socket) == .failed(.noSuchDevice))
        #expect(pool.leaveAllAndClose() == limit)
    }
}
