import Testing
@testable import RelayCore

/// The bytes of the netdev napi-get exchange (`NAPIThreadDump`): which threads do an input's
/// receive work, so the daemon can put them below its workers. The live test
/// (EndToEndInputNAPITests) checks the same reader against the running kernel.
@Suite struct NAPIThreadDumpTests {
    let family: UInt16 = 0x1f

    @Test func readsTheAskedDevicesThreadsUntilDone() {
        let dump = NAPIThreadDump.record(family: family, ifindex: 3, napiID: 8190, pid: 999, sequence: 2)
            + NAPIThreadDump.record(family: family, ifindex: 7, napiID: 8193, pid: 1234, sequence: 2)
            + NAPIThreadDump.record(family: family, ifindex: 7, napiID: 8194, pid: nil, sequence: 2)  // not threaded
            + NAPIThreadDump.record(family: family, ifindex: 7, napiID: 8195, pid: 1235, sequence: 2)
            + NAPIThreadDump.doneMessage(sequence: 2)
        #expect(NAPIThreadDump.parseDump(dump, family: family, ifindex: 7) == .success(.init(pids: [1234, 1235], done: true)))
        // without NLMSG_DONE the dump goes on in the next datagram
        let first = NAPIThreadDump.record(family: family, ifindex: 7, napiID: 8193, pid: 1234, sequence: 2)
        #expect(NAPIThreadDump.parseDump(first, family: family, ifindex: 7) == .success(.init(pids: [1234], done: false)))
    }

    @Test func aRefusalIsTheKernelsErrorCode() {
        // NLMSG_ERROR: error -95 (EOPNOTSUPP) and the request's header
        let refusal: [UInt8] = NetlinkBytes.header(length: 36, type: 2, flags: 0, sequence: 2) + NetlinkBytes.le32(UInt32(bitPattern: -95))
            + NetlinkBytes.header(length: 36, type: family, flags: 0x301, sequence: 2)
        #expect(NAPIThreadDump.parseDump(refusal, family: family, ifindex: 7) == .success(.init(error: -95)))
    }

    /// Found by the fuzzer in CI (Fuzz/regressions/napidump/error-code-int32-min): an error
    /// message whose code is Int32.min trapped on negation in `familyID`, and `parseDump` passed
    /// it on to the daemon, which negated it too. A code that is no negative errno is malformed.
    @Test(arguments: [Int32.min, -4096, 1, Int32.max])
    func anErrorCodeThatIsNoErrnoIsAProblem(code: Int32) {
        let message: [UInt8] = NetlinkBytes.header(length: 20, type: 2, flags: 0, sequence: 2) + NetlinkBytes.le32(UInt32(bitPattern: code))
        #expect(throws: NAPIThreadDump.Problem.self) { try NAPIThreadDump.parseDump(message, family: family, ifindex: 7).get() }
        #expect(throws: NAPIThreadDump.Problem.self) { try NAPIThreadDump.familyID(message).get() }
        let edge: [UInt8] = NetlinkBytes.header(length: 20, type: 2, flags: 0, sequence: 2) + NetlinkBytes.le32(UInt32(bitPattern: -4095))
        #expect(NAPIThreadDump.parseDump(edge, family: family, ifindex: 7) == .success(.init(error: -4095)))
    }

    @Test func readsTheFamilyID() {
        let reply = NAPIThreadDump.message(type: 0x10, flags: 0, sequence: 1, command: 1,
                                           attributes: [(2, Array("netdev".utf8) + [0]), (1, [0x1f, 0])])
        #expect(NAPIThreadDump.familyID(reply) == .success(0x1f))
        let noID = NAPIThreadDump.message(type: 0x10, flags: 0, sequence: 1, command: 1, attributes: [(2, Array("netdev".utf8) + [0])])
        #expect(throws: NAPIThreadDump.Problem.self) { try NAPIThreadDump.familyID(noID).get() }
    }

    @Test func theRequestsAreWhatTheKernelExpects() {
        let request = NAPIThreadDump.dumpRequest(family: family, ifindex: 7, sequence: 2)
        // nlmsghdr: length 28, type = family, flags REQUEST | DUMP; genlmsghdr: napi-get (11), version 1;
        // one attribute: length 8, NETDEV_A_NAPI_IFINDEX (1), 7
        #expect(request == [28, 0, 0, 0, 0x1f, 0, 0x01, 0x03, 2, 0, 0, 0, 0, 0, 0, 0, 11, 1, 0, 0, 8, 0, 1, 0, 7, 0, 0, 0])
        let familyRequest = NAPIThreadDump.familyRequest(sequence: 1)
        #expect(familyRequest.count == 16 + 4 + 12)  // "netdev\0" is 7 bytes, padded to 8, plus its header
        #expect(Array(familyRequest[4..<6]) == [0x10, 0])
    }

    @Test func malformedAnswersAreProblemsNotPids() {
        let good = NAPIThreadDump.record(family: family, ifindex: 7, napiID: 8193, pid: 1234, sequence: 2)
        for cut in 1..<good.count {  // every truncation
            switch NAPIThreadDump.parseDump(good.prefix(cut), family: family, ifindex: 7) {
            case let .failure(problem): #expect(!problem.message.isEmpty)
            case let .success(part): Issue.record("a record cut to \(cut) bytes read as \(part)")
            }
        }
        // a pid attribute of 2 bytes
        let short = NAPIThreadDump.message(type: family, flags: 2, sequence: 2, command: 11, attributes: [(1, [7, 0, 0, 0]), (4, [1, 2])])
        #expect(throws: NAPIThreadDump.Problem.self) { try NAPIThreadDump.parseDump(short, family: family, ifindex: 7).get() }
    }
}
