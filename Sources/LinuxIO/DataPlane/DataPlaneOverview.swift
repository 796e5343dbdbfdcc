import CLinuxNet
// The worker data plane (`mcrelay worker --id N --channel-fd FD`), in one page.
//
// Process: the supervisor spawns one worker per core and talks to it over a socketpair
// (RelayControl/WorkerProtocol.swift). `WorkerProcess.run` sends `.ready`, then runs
// `DataPlaneWorker`'s single-threaded loop until `.shutdown` or until the channel closes (the
// supervisor died: a worker never outlives it). Plans are installed into a `RelayCore.Forwarder`,
// which keeps the counters of unchanged rules across plans; sockets still needed stay open.
//
// Ingress (`IngressSocket`): one AF_PACKET SOCK_DGRAM socket per assigned input interface, bound
// to ETH_P_ALL on that interface (one socket for IPv4 and IPv6: a fanout group cannot mix
// protocols, measured in docs/ipv6-linux-facts.md). Frames start at the IP header
// (`LinkType.rawIP`); VLAN tags are already stripped by the kernel. A classic BPF filter keeps
// only IPv4 UDP to 224.0.0.0/4 and IPv6 to ff00::/8 (UDP or an extension header first).
// PACKET_IGNORE_OUTGOING is set, because an ETH_P_ALL socket would otherwise see the host's own
// transmissions, and PACKET_FANOUT_FLAG_IGNORE_OUTGOING on the fanout group (whose hook replaces
// the socket's once joined; the daemon's workers are always fanout members): the relay cannot
// read its own output (the loop the reference relay hit); DataPlaneForwardingTests proves it by
// sending an output back out of the input interface and counting drops, EndToEndIPv6Tests
// through the daemon. Workers sharing an interface join one PACKET_FANOUT group (hash
// mode: a flow stays on one worker, so its order is kept; every frame reaches one worker). A
// missing or down interface is reported (`.problem`) and retried every 500 ms, and at once when
// the supervisor forwards netlink's word that it is up (`.linkUp`). Frames the kernel
// drops because a worker falls behind (PACKET_STATISTICS) are reported too, never silent.
//
// Two read paths, selectable with MCRELAY_INGRESS (both stay tested):
// - `recvmmsg` (default): poll over the channel and the sockets, then non-blocking recvmmsg in
//   batches of 64 into preallocated buffers (`RecvmmsgReceiver`).
// - `uring`: one io_uring per worker (SINGLE_ISSUER | DEFER_TASKRUN where the kernel has it),
//   a multishot recv per socket into a provided-buffer ring mmap'd and registered here
//   (liburing 2.3 has no io_uring_setup_buf_ring), the channel watched by a multishot poll on
//   the same ring; the worker sleeps in io_uring_enter (`URingReceiver`).
// Measured on the 2-core lab (sender CPU 0, worker CPU 1, 64-byte payloads, one stream, shared
// and heavily loaded machine): both paths cost about 1 us of worker CPU per received frame
// that matches no rule, and the same per forwarded frame (4.2-4.5 us with one datagram per
// send, 1.3-1.9 us with UDP GSO); their loss figures overlapped run to run. With no measurable
// difference, the simpler path is the default.
//
// Egress (`EgressSocketPool`, `TransmitQueue`): what an output interface gets is decided by
// RelayCore's `EgressPolicy` from `InterfaceFacts` the pool reads (`InterfaceFactsReader`: MAC,
// IPv4 address, MTU, index, driver, tx-udp-segmentation, bus device), re-read every second and on
// a link change. With `EgressMode.packet` (the default) each multicast output interface gets an
// AF_PACKET socket, and every datagram of its outputs goes out as its own frame, the header
// written by RelayCore's `EgressFrame` (the same code the simulator writes its pcaps with),
// skipping the kernel's per-datagram UDP/IP send path. UDP sockets (one per output interface, TTL
// and unicast/multicast: IP_MULTICAST_IF by index, IP_MULTICAST_TTL, IP_MULTICAST_LOOP off;
// unicast: IP_TTL and SO_BINDTODEVICE) carry unicast outputs, oversized datagrams, interfaces
// without packet egress, and everything with `--egress udp`. The transmits of a receive batch are
// sorted by output and sent with one sendmmsg per socket, iovecs pointing into the receive
// buffers (no copy). On the UDP path, consecutive same-size datagrams of one output are coalesced
// into one UDP GSO message only where the policy allows it (by default only toward a device that
// segments before the wire: never a super-frame onto a veth). EAGAIN/ENOBUFS are counted drops
// (`Forwarder.recordSendFailures`), never a blocked worker; other send errors are counted and
// reported once per socket and errno.
//
// Hot path: nothing allocates per frame (checked with an LD_PRELOAD malloc counter: the count
// is the same after 10 000 and 200 000 forwarded frames, in both ingress modes).
