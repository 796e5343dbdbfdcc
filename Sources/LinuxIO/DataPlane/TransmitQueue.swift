import CLinuxNet
import Glibc
import RelayCore

/// Collects the transmits of one receive batch and sends them with one `sendmmsg` per egress
/// socket. The iovecs point straight into the receive buffers (no payload copy), so the queue
/// must be flushed before those buffers are reused. Everything is preallocated: appending and
/// flushing allocate nothing.
///
/// Where an output's interface allows it (`EgressPolicy.segmentation`: by default only toward
/// a device that splits the super-frame before the wire, so every link carries one datagram per
/// frame), consecutive datagrams of one output with the same payload size (a stream at a high
/// rate: several of its frames arrive in one receive batch) go out through its UDP socket as a
/// single UDP GSO message: one iovec per datagram (still no copy) and a UDP_SEGMENT control
/// message; the kernel or the NIC splits it back into the very same datagrams, for a fraction of
/// the per-datagram cost of the UDP send path. Only the last datagram of a group may be
/// shorter; a group never exceeds `SegmentationRun.maximumSegments` datagrams,
/// `SegmentationRun.maximumBytes`, or a segment size that does not fit the interface MTU.
///
/// Transmits of outputs on AF_PACKET egress go out on their interface's packet socket, always
/// one frame per datagram: the header written by `EgressFrame.writeHeader` into a preallocated
/// slot per queue entry, then the payload, still a view into the receive buffer. (UDP GSO runs
/// through the output's UDP socket would carry that socket's source port, not the sender's the
/// frames keep; GSO on the packet socket itself, PACKET_VNET_HDR, is not done.)
public final class TransmitQueue {
    struct Pending {
        var rank: Int32
        var socket: Int32
        var output: OutputHandle
        var base: UnsafeRawPointer?
        var length: Int
        var sourcePort: UInt16
        var checksumCarry: UInt16
        var packet: Bool
        /// A proxy's routed datagram: its received IP and UDP headers (`Transmit.headers`).
        var headers: UnsafeRawPointer?
        var headersLength: Int
    }

    /// sendmmsg takes at most UIO_MAXIOV (1024) messages per call.
    static let capacity = 1024
    static let ipv4AndUDPHeaderBytes = 28
    static let ipv6AndUDPHeaderBytes = 48
    /// Room for a routed header (a received IP header with options or extension headers).
    static let headerSlotBytes = EgressFrame.maximumRoutedHeaderBytes

    /// Whether frames on the packet path carry a UDP checksum. It is carried on from the
    /// received one (`Transmit.checksumCarry`: no pass over the payload; one per datagram when
    /// the sender sent none) and keeps corruption detectable end to end, before the relay too.
    static let packetUDPChecksum = true

    private let pending: UnsafeMutablePointer<Pending>
    private(set) var count = 0
    /// Pending entries reordered by output rank (grouped by socket, then output, arrival order kept).
    private let sorted: UnsafeMutablePointer<Int32>
    /// `capacity` iovecs for UDP messages (one per datagram, contiguous per GSO group), then two
    /// per queue position for packet messages (header, payload).
    private let iovecs: UnsafeMutablePointer<iovec>
    private let headers: UnsafeMutableRawPointer
    private let messages: UnsafeMutablePointer<ldp_mmsghdr>
    private let messageOutput: UnsafeMutablePointer<OutputHandle>
    private let messageSocket: UnsafeMutablePointer<Int32>
    private let messageDatagrams: UnsafeMutablePointer<Int32>
    private let controlSpace: Int
    private let control: UnsafeMutableRawPointer
    private var rankSlots: UnsafeMutablePointer<Int32>
    private var rankSlotCapacity = 0

    /// Datagrams handed to sendmmsg and accepted, datagrams whose send failed, and GSO messages
    /// sent (each carrying two or more datagrams), since the start.
    public private(set) var sent: UInt64 = 0
    public private(set) var failed: UInt64 = 0
    public private(set) var segmentedMessages: UInt64 = 0
    /// Datagrams accepted by AF_PACKET sockets (included in `sent`).
    public private(set) var packetSent: UInt64 = 0

    public init() {
        pending = .allocate(capacity: Self.capacity)
        sorted = .allocate(capacity: Self.capacity)
        iovecs = .allocate(capacity: 3 * Self.capacity)
        iovecs.initialize(repeating: iovec(), count: 3 * Self.capacity)
        headers = .allocate(byteCount: Self.capacity * Self.headerSlotBytes, alignment: 16)
        messages = .allocate(capacity: Self.capacity)
        messages.initialize(repeating: ldp_mmsghdr(), count: Self.capacity)
        messageOutput = .allocate(capacity: Self.capacity)
        messageSocket = .allocate(capacity: Self.capacity)
        messageDatagrams = .allocate(capacity: Self.capacity)
        controlSpace = ldp_udp_segment_cmsg_space()
        control = .allocate(byteCount: Self.capacity * controlSpace, alignment: 8)
        rankSlots = .allocate(capacity: 1)
        rankSlotCapacity = 1
    }

    deinit {
        pending.deallocate()
        sorted.deallocate()
        iovecs.deallocate()
        headers.deallocate()
        messages.deallocate()
        messageOutput.deallocate()
        messageSocket.deallocate()
        messageDatagrams.deallocate()
        control.deallocate()
        rankSlots.deallocate()
    }

    public var isFull: Bool { count == Self.capacity }

    /// Queues one transmit on the socket the pool holds for its output (none, -1, while the
    /// pool and the plan disagree: the send is then counted as failed). An output on packet
    /// egress whose payload does not fit one frame takes its UDP socket.
    @inline(__always)
    public func append(_ transmit: Transmit, pool: EgressSocketPool) {
        let index = Int(transmit.output.index)
        var socket = pool.socketIndex(for: transmit)
        var rank: Int32 = -1
        var packet = false
        if socket >= 0 && transmit.routed {
            // Only as a frame: the packet socket, the datagram within the IP MTU, its headers
            // within a slot; otherwise a counted failure (a router would fragment or refuse).
            let packetSocket = Int(pool.outputPacketSocket[index])
            if packetSocket >= 0, transmit.headers.count + transmit.payload.count <= Int(pool.outputPayloadLimit[index]),
               EgressFrame.routedHeaderLength(headers: transmit.headers) <= Self.headerSlotBytes {
                socket = packetSocket
                rank = pool.outputPacketRank[index]
                packet = true
            }
        } else if socket >= 0 {
            let packetSocket = Int(pool.outputPacketSocket[index])
            if packetSocket >= 0 && transmit.payload.count <= Int(pool.outputPayloadLimit[index]) {
                socket = packetSocket
                rank = pool.outputPacketRank[index]
                packet = true
            } else {
                rank = pool.outputRank[index]
            }
        }
        pending[count] = Pending(rank: rank, socket: Int32(truncatingIfNeeded: socket), output: transmit.output,
                                 base: transmit.payload.baseAddress, length: transmit.payload.count,
                                 sourcePort: transmit.sourcePort, checksumCarry: transmit.checksumCarry, packet: packet,
                                 headers: transmit.routed ? transmit.headers.baseAddress : nil, headersLength: transmit.headers.count)
        count += 1
    }

    /// Sends everything queued. Failed sends are counted on their outputs: EAGAIN/ENOBUFS (a
    /// full socket or device queue) drop the rest of that socket's batch — retrying now would
    /// fail again, and blocking would stall every other stream of this worker; other errors
    /// drop only the message they belong to. `report` receives a description of errors other
    /// than a full queue, once per socket and errno.
    public func flush(pool: EgressSocketPool, forwarder: inout Forwarder, report: (String) -> Void) {
        guard count > 0 else { return }
        defer { count = 0 }
        let messageCount = buildMessages(pool: pool, forwarder: &forwarder)
        var start = 0
        while start < messageCount {
            var end = start + 1
            while end < messageCount && messageSocket[end] == messageSocket[start] { end += 1 }
            send(socket: Int(messageSocket[start]), range: start..<end, pool: pool, forwarder: &forwarder, report: report)
            start = end
        }
    }

    /// Orders the pending transmits by output rank (a stable counting sort) and turns them into
    /// messages; returns the number of messages. Transmits without a socket fail right here.
    private func buildMessages(pool: EgressSocketPool, forwarder: inout Forwarder) -> Int {
        let ranks = pool.rankCount
        if rankSlotCapacity < ranks + 1 {
            rankSlots.deallocate()
            rankSlots = .allocate(capacity: ranks + 1)
            rankSlotCapacity = ranks + 1
        }
        for index in 0...ranks { rankSlots[index] = 0 }
        var placed = 0
        for index in 0..<count {
            let rank = Int(pending[index].rank)
            if rank >= 0 { rankSlots[rank + 1] &+= 1; placed += 1 }
        }
        for index in 0..<ranks { rankSlots[index + 1] &+= rankSlots[index] }
        for index in 0..<count {
            let rank = Int(pending[index].rank)
            guard rank >= 0 else {
                // No socket (the fallback lookup found none): a counted failure.
                forwarder.recordSendFailures(pending[index].output)
                failed &+= 1
                continue
            }
            let position = Int(rankSlots[rank])
            rankSlots[rank] = Int32(position + 1)
            sorted[position] = Int32(index)
        }

        var messageCount = 0
        var position = 0
        while position < placed {
            let first = pending[Int(sorted[position])]
            let socket = Int(first.socket)
            if first.packet {
                buildPacketMessage(messageCount, position: position, entry: first, pool: pool)
                messageCount += 1
                position += 1
                continue
            }
            let size = first.length
            var end = position + 1
            let ipAndUDP = pool.sockets[socket].key.family == .ipv4 ? Self.ipv4AndUDPHeaderBytes : Self.ipv6AndUDPHeaderBytes
            if size > 0, pool.sockets[socket].segmentation, size + ipAndUDP <= pool.sockets[socket].mtu {
                end = groupEnd(position, placed: placed, first: first)
            }
            for slot in position..<end {
                let entry = pending[Int(sorted[slot])]
                iovecs[slot] = iovec(iov_base: UnsafeMutableRawPointer(mutating: entry.base), iov_len: entry.length)
            }
            let datagrams = end - position
            messages[messageCount].msg_hdr.msg_name = UnsafeMutableRawPointer(pool.outputAddress + Int(first.output.index))
            messages[messageCount].msg_hdr.msg_namelen = pool.outputAddressLength[Int(first.output.index)]
            messages[messageCount].msg_hdr.msg_iov = iovecs + position
            messages[messageCount].msg_hdr.msg_iovlen = datagrams
            if datagrams > 1 {
                let buffer = control + messageCount * controlSpace
                messages[messageCount].msg_hdr.msg_control = buffer
                messages[messageCount].msg_hdr.msg_controllen = ldp_udp_segment_cmsg(buffer, UInt16(size))
            } else {
                messages[messageCount].msg_hdr.msg_control = nil
                messages[messageCount].msg_hdr.msg_controllen = 0
            }
            messageOutput[messageCount] = first.output
            messageSocket[messageCount] = Int32(socket)
            messageDatagrams[messageCount] = Int32(datagrams)
            messageCount += 1
            position = end
        }
        return messageCount
    }

    /// The end of the run of datagrams starting at sorted `position` that may share one UDP GSO
    /// message (`SegmentationRun` decides which may follow).
    @inline(__always)
    private func groupEnd(_ position: Int, placed: Int, first: Pending) -> Int {
        var run = SegmentationRun(first: first.length)
        var end = position + 1
        while end < placed {
            let next = pending[Int(sorted[end])]
            guard next.rank == first.rank, run.admit(next.length) else { break }
            end += 1
            if run.closed { break }
        }
        return end
    }

    /// One frame: header slot `position` gets the output's template with this datagram's
    /// lengths, port and checksums; iovecs [header, payload] at `capacity + 2 * position`.
    @inline(__always)
    private func buildPacketMessage(_ message: Int, position: Int, entry: Pending, pool: EgressSocketPool) {
        let output = Int(entry.output.index)
        let header = headers + position * Self.headerSlotBytes
        let template = UnsafeRawPointer(pool.outputTemplate + output * EgressFrame.templateBytes)
        let headerLength = entry.headers != nil
            ? EgressFrame.writeRoutedHeader(header, template: template,
                                            headers: UnsafeRawBufferPointer(start: entry.headers, count: entry.headersLength),
                                            payload: UnsafeRawBufferPointer(start: entry.base, count: entry.length))
            : EgressFrame.writeHeader(header, template: template, sourcePort: entry.sourcePort, payloadCount: entry.length,
                                      checksumCarry: entry.checksumCarry, udpChecksum: Self.packetUDPChecksum)
        let vectors = iovecs + Self.capacity + 2 * position
        vectors[0] = iovec(iov_base: header, iov_len: headerLength)
        vectors[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: entry.base), iov_len: entry.length)
        messages[message].msg_hdr.msg_name = UnsafeMutableRawPointer(pool.outputLinkAddress + output)
        messages[message].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_ll>.size)
        messages[message].msg_hdr.msg_iov = vectors
        messages[message].msg_hdr.msg_iovlen = 2
        messages[message].msg_hdr.msg_control = nil
        messages[message].msg_hdr.msg_controllen = 0
        messageOutput[message] = entry.output
        messageSocket[message] = entry.socket
        messageDatagrams[message] = 1
    }

    private func fail(_ range: Range<Int>, forwarder: inout Forwarder) {
        for message in range {
            let datagrams = UInt64(messageDatagrams[message])
            forwarder.recordSendFailures(messageOutput[message], count: datagrams)
            failed &+= datagrams
        }
    }

    private func send(socket: Int, range: Range<Int>, pool: EgressSocketPool, forwarder: inout Forwarder, report: (String) -> Void) {
        let fd = pool.sockets[socket].fd
        guard fd >= 0 else {
            fail(range, forwarder: &forwarder)
            return
        }
        let packet = pool.sockets[socket].key.kind == .packet
        var next = range.lowerBound
        while next < range.upperBound {
            let result = Int(ldp_sendmmsg(fd, messages + next, UInt32(range.upperBound - next), 0))
            if result > 0 {
                for message in next..<next + result {
                    sent &+= UInt64(messageDatagrams[message])
                    if messageDatagrams[message] > 1 { segmentedMessages &+= 1 }
                }
                if packet {
                    for message in next..<next + result { packetSent &+= UInt64(messageDatagrams[message]) }
                }
                next += result
                continue
            }
            let code = Int32(-result)
            if code == EAGAIN || code == EWOULDBLOCK || code == ENOBUFS {
                fail(next..<range.upperBound, forwarder: &forwarder)
                return
            }
            fail(next..<next + 1, forwarder: &forwarder)
            if messageDatagrams[next] > 1 && (code == EINVAL || code == EIO || code == EMSGSIZE) {
                report(pool.disableSegmentation(socket: socket, code: code))
            } else if let problem = pool.sendProblem(socket: socket, code: code) {
                report(problem)
            }
            if code == ENODEV || (packet && code == ENXIO) {
                // The interface is gone: close the socket (the retry timer reopens it by name);
                // the rest of this run fails the same way.
                pool.invalidate(socket: socket)
                fail(next + 1..<range.upperBound, forwarder: &forwarder)
                return
            }
            if packet && code == ENETDOWN {
                // Every frame on this interface fails the same way until it is up again.
                fail(next + 1..<range.upperBound, forwarder: &forwarder)
                return
            }
            next += 1
        }
    }
}
