import Foundation
import LinuxIO
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// The sd_notify client against real AF_UNIX datagram sockets (no root needed).
@Suite("sd_notify client")
struct ServiceNotifierTests {
    /// A datagram socket bound to `name` (abstract when it starts with "@"); returns its fd.
    func listen(_ name: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (abstract ? 0 : 1))
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else {
            close(fd)
            throw HarnessError("bind \(name): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    func receive(_ fd: Int32) -> String? {
        var pending = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pending, 1, 2000) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n >= 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
    }

    @Test("an abstract @name (exactly its bytes, no trailing NUL) receives the lines joined by newlines")
    func abstractSocket() throws {
        let name = "@mcrelay-notify-test-\(getpid())-\(UniqueNumbers.next())"
        let fd = try listen(name)
        defer { close(fd) }
        let notifier = try ServiceNotifier(socket: name)
        #expect(notifier.send(["READY=1", "STATUS=Forwarding 1 rule"]) == nil)
        #expect(receive(fd) == "READY=1\nSTATUS=Forwarding 1 rule")
        // A name with one more byte is another socket: the kernel compares the exact length.
        let other = try ServiceNotifier(socket: name + "x")
        #expect(other.send(["READY=1"])?.errno == ECONNREFUSED)
    }

    @Test("a path socket receives the notification; a missing one is an error naming it")
    func pathSocket() throws {
        let directory = try E2E.temporaryDirectory("ntf")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/notify"
        let fd = try listen(path)
        defer { close(fd) }
        #expect(try ServiceNotifier(socket: path).send(["STOPPING=1"]) == nil)
        #expect(receive(fd) == "STOPPING=1")
        let missing = try ServiceNotifier(socket: directory + "/nothing").send(["READY=1"])
        #expect(missing?.errno == ENOENT)
        #expect(missing?.description.contains(directory + "/nothing") == true)
    }

    @Test("unusable NOTIFY_SOCKET values are refused with the variable named")
    func badNames() {
        #expect(throws: SystemError.self) { try ServiceNotifier(socket: "relative/notify") }
        #expect(throws: SystemError.self) { try ServiceNotifier(socket: "vsock:2:1234") }
        #expect(throws: SystemError.self) { try ServiceNotifier(socket: "/" + String(repeating: "x", count: 200)) }
        do { _ = try ServiceNotifier(socket: "relative/notify") } catch {
            #expect(error.description.contains("NOTIFY_SOCKET=relative/notify"))
        }
    }

    @Test("WATCHDOG_USEC applies only to the process WATCHDOG_PID names (or to any without it)")
    func watchdogVariables() {
        #expect(ServiceNotifier.watchdogInterval(microseconds: "500000", pid: nil, ownPID: 42) == .milliseconds(500))
        #expect(ServiceNotifier.watchdogInterval(microseconds: "500000", pid: "42", ownPID: 42) == .milliseconds(500))
        #expect(ServiceNotifier.watchdogInterval(microseconds: "500000", pid: "43", ownPID: 42) == nil)
        #expect(ServiceNotifier.watchdogInterval(microseconds: "0", pid: nil, ownPID: 42) == nil)
        #expect(ServiceNotifier.watchdogInterval(microseconds: "soon", pid: nil, ownPID: 42) == nil)
        #expect(ServiceNotifier.watchdogInterval(microseconds: nil, pid: "42", ownPID: 42) == nil)
    }
}
