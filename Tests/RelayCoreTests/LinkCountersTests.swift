import Testing
@testable import RelayCore

/// The bytes of the rtnetlink exchange that reads an input device's own receive counters
/// (`LinkCounters`, shown by `mcrelay stats`). The live test (EndToEndStatsTests) reads them from
/// the running kernel.
@Suite struct LinkCountersTests {
    let counters = LinkCounters.Receive(packets: 1_000_000, bytes: 64_000_000, errors: 1, dropped: 2, overruns: 3, fifo: 4, missed: 5)

    @Test func readsTheAskedDevicesCounters() {
        let answer = LinkCounters.record(ifindex: 7, name: "rin0", counters, sequence: 1)
        #expect(LinkCounters.parse(answer, ifindex: 7) == .success(.counters(counters)))
        // another device's record first (a kernel answering more than was asked) is skipped
        let other = LinkCounters.record(ifindex: 3, name: "eth0", .init(packets: 9), sequence: 1)
        #expect(LinkCounters.parse(other + answer, ifindex: 7) == .success(.counters(counters)))
        #expect(throws: LinkCounters.Problem.self) { try LinkCounters.parse(other, ifindex: 7).get() }
    }

    @Test func theFieldsAreTheKernelsOffsets() {
        // struct rtnl_link_stats64: counter i at byte 8 * i; each set to its own index + 1
        let stats = (0..<25).flatMap { NetlinkBytes.le64(UInt64($0 + 1)) }
        let body = LinkCounters.info(ifindex: 7) + NetlinkBytes.attribute(23, stats)
        let message = NetlinkBytes.header(length: 16 + body.count, type: 16, flags: 0, sequence: 1) + body
        #expect(LinkCounters.parse(message, ifindex: 7)
                == .success(.counters(.init(packets: 1, bytes: 3, errors: 5, dropped: 7, overruns: 12, fifo: 15, missed: 16))))
    }

    @Test func theRequestIsWhatTheKernelExpects() {
        // nlmsghdr: length 32, RTM_GETLINK (18), NLM_F_REQUEST; ifinfomsg: AF_UNSPEC, index 7
        #expect(LinkCounters.request(ifindex: 7, sequence: 2)
                == [32, 0, 0, 0, 18, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func aRefusalIsItsErrno() {
        let enodev = NetlinkBytes.header(length: 20, type: 2, flags: 0, sequence: 1) + NetlinkBytes.le32(UInt32(bitPattern: -19))
        #expect(LinkCounters.parse(enodev, ifindex: 7) == .success(.refused(errno: 19)))
        for code in [Int32.min, -4096, 5] {
            let bad = NetlinkBytes.header(length: 20, type: 2, flags: 0, sequence: 1) + NetlinkBytes.le32(UInt32(bitPattern: code))
            #expect(throws: LinkCounters.Problem.self) { try LinkCounters.parse(bad, ifindex: 7).get() }
        }
    }

    @Test func malformedAnswersAreProblemsNotCounters() {
        let good = LinkCounters.record(ifindex: 7, name: "rin0", counters, sequence: 1)
        for cut in 0..<good.count {  // every truncation
            switch LinkCounters.parse(good.prefix(cut), ifindex: 7) {
            case let .failure(problem): #expect(!problem.message.isEmpty)
            case let .success(answer): Issue.record("a record cut to \(cut) bytes read as \(answer)")
            }
        }
        // IFLA_STATS64 of 15 counters: short of rx_missed_errors
        let body = LinkCounters.info(ifindex: 7) + NetlinkBytes.attribute(23, [UInt8](repeating: 0, count: 15 * 8))
        let short = NetlinkBytes.header(length: 16 + body.count, type: 16, flags: 0, sequence: 1) + body
        #expect(throws: LinkCounters.Problem.self) { try LinkCounters.parse(short, ifindex: 7).get() }
        // a link message without IFLA_STATS64
        let bare = NetlinkBytes.header(length: 32, type: 16, flags: 0, sequence: 1) + LinkCounters.info(ifindex: 7)
        #expect(throws: LinkCounters.Problem.self) { try LinkCounters.parse(bare, ifindex: 7).get() }
    }
}
