// SPDX-License-Identifier: GPL-2.0
// AF_PACKET multicast relay with and without the kernel's packet rings: the experiment for
// issue #14's "the packet path's own next steps (TPACKET_V3 receive ring, transmit ring)",
// measured beside the other relays by the bench harness (rows packet-c and tpacket-c). Not
// mcrelay: one thread, IPv4 only, static rules. Both modes are the same C program, so the
// rings' gain is measured apart from the difference between mcrelay's Swift workers and C.
//
//   tpacket_relay --in rin0 --out rout0[,rout1...] [--rx ring|mmsg] [--tx ring|mmsg]
//                 [--cpu N] [--ttl 16] [--group G --port P [--out-group G2 --out-port P2]]...
//                 [--rules FILE] [--stats FILE] [--no-join]
//
// Input, as mcrelay's IngressSocket has it: an AF_PACKET socket created with protocol 0 (nothing
// queued before bind), PACKET_IGNORE_OUTGOING, a classic BPF filter keeping IPv4 UDP to 224/4,
// bound to the input with ETH_P_ALL. SOCK_RAW (frames start at Ethernet) where mcrelay uses
// SOCK_DGRAM: the same work in the kernel, 14 bytes more per frame copied.
//   --rx mmsg: recvmmsg in batches of 64 into the program's buffers, an 8 MiB receive buffer
//              (SO_RCVBUFFORCE, as mcrelay's); the copy into user memory is the kernel's.
//   --rx ring: TPACKET_V3, 64 blocks of 256 KiB (frames packed, a block retired after 1 ms at
//              the latest); the kernel copies each frame into the mapped ring, user space walks a
//              block's frames in place and hands the block back. No receive syscall per batch.
// Output, per device, an AF_PACKET SOCK_RAW socket bound with protocol 0 (it receives nothing),
// an 8 MiB send buffer (SO_SNDBUFFORCE), no PACKET_QDISC_BYPASS: as mcrelay's PacketEgressLink.
//   --tx mmsg: sendmmsg per device and batch, each message two iovecs: the header built from the
//              (rule, output) template and the payload where it was received (the kernel copies it
//              into the skb: one copy per output, as mcrelay's packet egress).
//   --tx ring: TPACKET_V2 transmit ring, 4096 frames of 2048 bytes: header and payload are
//              written into a free slot (a memcpy per output), the slot marked for sending, and
//              one send(fd, NULL, 0) per device and batch hands every marked slot to the device.
//              The kernel builds each skb around the ring's pages (no second copy); a slot comes
//              back to user space when its skb is freed. PACKET_LOSS: a slot the kernel cannot
//              send is skipped (counted from its WRONG_FORMAT status), never a stuck ring.
//
// Counters: on SIGUSR1 written as one JSON line to --stats FILE (renamed into place; also once
// when ready), on SIGINT/SIGTERM printed to stderr before a clean exit. The input socket's
// PACKET_STATISTICS (reset by each read) are added up.
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "../common/relay_rules.h"

#define BATCH 64
#define FRAME 2048
#define RX_BLOCK (256 << 10)
#define RX_BLOCKS 64
#define TX_FRAMES 4096
#define TX_BLOCK (64 << 10)
#define SOCKET_BUFFER (8 << 20)
// where a TPACKET_V2 transmit slot's frame starts (the kernel's tp_hdrlen - sizeof(sockaddr_ll))
#define TX_DATA (TPACKET_ALIGN(sizeof(struct tpacket2_hdr)))

enum mode { MMSG, RING };
static enum mode rx_mode = RING, tx_mode = RING;

struct out {
    int fd;
    uint8_t *ring;                    // --tx ring: TX_FRAMES slots of FRAME bytes
    uint32_t next;                    // the slot to try first
    uint32_t queued;                  // this batch: slots marked (ring) or messages built (mmsg)
    int pending;                      // --tx ring: the last send left marked slots (EAGAIN)
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH][2];
    uint8_t hdrs[BATCH][HDR];
    uint64_t tx, ring_full, wrong_format, send_errors, dropped;
};

static struct out outs[MAX_OUTS];
static int in_fd;
static volatile sig_atomic_t stop, dump;
static uint64_t c_rx, c_forwarded, c_unmatched, c_bad, c_syscalls, c_polls, seq;
static uint64_t k_packets, k_drops, k_freeze;

static void on_stop(int sig) { (void)sig; stop = 1; }
static void on_dump(int sig) { (void)sig; dump = 1; }

// ---------------------------------------------------------------------------------------------
// Sockets

static void set_int(int fd, int level, int name, int value, const char *what)
{
    if (setsockopt(fd, level, name, &value, sizeof value))
        die(what);
}

static void open_input(const char *dev)
{
    int ifindex = if_nametoindex(dev);
    if (!ifindex)
        die(dev);
    if ((in_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)) < 0)
        die("socket(AF_PACKET)");
    set_int(in_fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING");
    // IPv4 (ethertype 0x0800), UDP, destination in 224.0.0.0/4; no options assumed for the
    // protocol byte's place, as mcrelay's filter checks the fixed header
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 5),
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 23),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 30),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xf0000000),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xe0000000, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 0x40000),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    if (setsockopt(in_fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog))
        die("SO_ATTACH_FILTER");
    if (rx_mode == MMSG) {
        set_int(in_fd, SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER, "SO_RCVBUFFORCE");
    } else {
        set_int(in_fd, SOL_PACKET, PACKET_VERSION, TPACKET_V3, "PACKET_VERSION V3");
        struct tpacket_req3 req = {.tp_block_size = RX_BLOCK, .tp_block_nr = RX_BLOCKS, .tp_frame_size = FRAME,
                                   .tp_frame_nr = RX_BLOCK / FRAME * RX_BLOCKS, .tp_retire_blk_tov = 1};
        if (setsockopt(in_fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req))
            die("PACKET_RX_RING");
    }
    struct sockaddr_ll sa = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = ifindex};
    if (bind(in_fd, (struct sockaddr *)&sa, sizeof sa))
        die("bind(input)");
}

static void open_output(struct out *o, const struct egress_if *e)
{
    if ((o->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)) < 0)
        die("socket(AF_PACKET) for an output");
    set_int(o->fd, SOL_SOCKET, SO_SNDBUFFORCE, SOCKET_BUFFER, "SO_SNDBUFFORCE");
    if (tx_mode == RING) {
        set_int(o->fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "PACKET_VERSION V2");
        set_int(o->fd, SOL_PACKET, PACKET_LOSS, 1, "PACKET_LOSS");
        struct tpacket_req req = {.tp_block_size = TX_BLOCK, .tp_block_nr = TX_FRAMES * FRAME / TX_BLOCK,
                                  .tp_frame_size = FRAME, .tp_frame_nr = TX_FRAMES};
        if (setsockopt(o->fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req))
            die("PACKET_TX_RING");
        o->ring = mmap(NULL, (size_t)TX_FRAMES * FRAME, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, o->fd, 0);
        if (o->ring == MAP_FAILED)
            die("mmap(TX ring)");
    }
    struct sockaddr_ll sa = {.sll_family = AF_PACKET, .sll_ifindex = e->ifindex};   // protocol 0
    if (bind(o->fd, (struct sockaddr *)&sa, sizeof sa))
        die("bind(output)");
    for (int i = 0; i < BATCH; i++) {
        o->iov[i][0].iov_base = o->hdrs[i];
        o->iov[i][0].iov_len = HDR;
        o->msgs[i].msg_hdr.msg_iov = o->iov[i];
        o->msgs[i].msg_hdr.msg_iovlen = 2;
    }
}

// ---------------------------------------------------------------------------------------------
// Counters

static void take_kernel_stats(void)
{
    struct tpacket_stats_v3 s = {0};
    socklen_t len = sizeof s;
    if (getsockopt(in_fd, SOL_PACKET, PACKET_STATISTICS, &s, &len) == 0) {
        k_packets += s.tp_packets;
        k_drops += s.tp_drops;
        if (len >= sizeof s)
            k_freeze += s.tp_freeze_q_cnt;
    }
}

// tx: copies the kernel took (sendmmsg's count, or ring slots marked and handed over);
// ring_full: copies dropped for want of a free slot; dropped: copies sendmmsg refused
static void write_stats(FILE *f)
{
    uint64_t tx = 0, rf = 0, wf = 0, se = 0, dr = 0;
    for (int k = 0; k < nouts; k++) {
        tx += outs[k].tx;
        rf += outs[k].ring_full;
        wf += outs[k].wrong_format;
        se += outs[k].send_errors;
        dr += outs[k].dropped;
    }
    take_kernel_stats();
    fprintf(f, "{\"seq\":%llu,\"rx_mode\":\"%s\",\"tx_mode\":\"%s\",\"rx\":%llu,\"forwarded\":%llu,\"unmatched\":%llu,"
               "\"bad\":%llu,\"tx\":%llu,\"ring_full\":%llu,\"wrong_format\":%llu,\"send_errors\":%llu,\"dropped\":%llu,"
               "\"syscalls\":%llu,\"polls\":%llu,\"kernel_packets\":%llu,\"kernel_drops\":%llu,\"kernel_freeze_q\":%llu,"
               "\"outputs\":[",
            (unsigned long long)seq, rx_mode == RING ? "ring" : "mmsg", tx_mode == RING ? "ring" : "mmsg",
            (unsigned long long)c_rx, (unsigned long long)c_forwarded, (unsigned long long)c_unmatched,
            (unsigned long long)c_bad, (unsigned long long)tx, (unsigned long long)rf, (unsigned long long)wf,
            (unsigned long long)se, (unsigned long long)dr, (unsigned long long)c_syscalls, (unsigned long long)c_polls,
            (unsigned long long)k_packets, (unsigned long long)k_drops, (unsigned long long)k_freeze);
    for (int k = 0; k < nouts; k++)
        fprintf(f, "%s{\"dev\":\"%s\",\"tx\":%llu,\"ring_full\":%llu,\"wrong_format\":%llu,\"send_errors\":%llu,"
                   "\"dropped\":%llu}",
                k ? "," : "", ifs[k].name, (unsigned long long)outs[k].tx, (unsigned long long)outs[k].ring_full,
                (unsigned long long)outs[k].wrong_format, (unsigned long long)outs[k].send_errors,
                (unsigned long long)outs[k].dropped);
    fprintf(f, "]}\n");
}

// ---------------------------------------------------------------------------------------------
// Transmit

static struct tpacket2_hdr *slot(struct out *o, uint32_t i) { return (struct tpacket2_hdr *)(o->ring + (size_t)(i % TX_FRAMES) * FRAME); }

// a free slot of the ring (the kernel gives slots back in the order it took them, so the next
// one is free unless the ring is full); NULL when it is
static uint8_t *ring_slot(struct out *o, struct tpacket2_hdr **h)
{
    *h = slot(o, o->next);
    uint32_t status = __atomic_load_n(&(*h)->tp_status, __ATOMIC_ACQUIRE);
    if (status == TP_STATUS_WRONG_FORMAT) {
        o->wrong_format++;
        status = TP_STATUS_AVAILABLE;
    }
    if (status != TP_STATUS_AVAILABLE)
        return NULL;
    o->next++;
    return (uint8_t *)*h + TX_DATA;
}

static void send_copy(struct out *o, const struct tmpl *t, const struct datagram *d, uint64_t psum)
{
    if (tx_mode == RING) {
        struct tpacket2_hdr *h;
        uint8_t *frame = ring_slot(o, &h);
        if (!frame) {
            o->ring_full++;
            return;
        }
        write_header(frame, t, d->sport, d->plen, psum);
        memcpy(frame + HDR, d->payload, d->plen);
        h->tp_len = HDR + d->plen;
        __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
    } else {
        write_header(o->hdrs[o->queued], t, d->sport, d->plen, psum);
        o->iov[o->queued][1].iov_base = d->payload;
        o->iov[o->queued][1].iov_len = d->plen;
    }
    o->queued++;
}

// hands this batch's copies to the kernel: before the received frames they point into go back
static void flush(struct out *o)
{
    if (!o->queued && !o->pending)
        return;
    if (tx_mode == RING) {
        c_syscalls++;
        // non-blocking: the kernel sends every marked slot now; one it could not take for want of
        // send buffer stays marked and goes with the next call (also before the relay sleeps)
        o->pending = 0;
        if (send(o->fd, NULL, 0, MSG_DONTWAIT) < 0) {
            if (errno == EAGAIN || errno == ENOBUFS)
                o->pending = 1;
            else
                o->send_errors++;
        }
        o->tx += o->queued;
    } else {
        uint32_t done = 0;
        while (done < o->queued) {
            c_syscalls++;
            int n = sendmmsg(o->fd, o->msgs + done, o->queued - done, MSG_DONTWAIT);
            if (n <= 0) {
                o->send_errors++;
                break;
            }
            done += n;
        }
        o->tx += done;
        o->dropped += o->queued - done;
    }
    o->queued = 0;
}

static void flush_all(void)
{
    for (int k = 0; k < nouts; k++)
        flush(&outs[k]);
}

// ---------------------------------------------------------------------------------------------
// Receive

static void handle(uint8_t *f, uint32_t len)
{
    c_rx++;
    struct datagram d;
    if (parse_frame(f, len, &d)) {
        c_bad++;
        return;
    }
    int r = rule_find(d.group, d.dport);
    if (r < 0) {
        c_unmatched++;
        return;
    }
    c_forwarded++;
    uint64_t psum = sum_bytes(d.payload, d.plen, 0);   // once for every output
    for (int k = 0; k < nouts; k++)
        send_copy(&outs[k], &tmpls[r * nouts + k], &d, psum);
}

static void wait_input(void)
{
    int pending = 0;
    flush_all();   // slots a full send buffer left marked
    for (int k = 0; k < nouts; k++)
        pending |= outs[k].pending;
    c_polls++;
    struct pollfd p = {.fd = in_fd, .events = POLLIN | POLLERR};
    poll(&p, 1, pending ? 1 : 100);
}

static void run_ring(uint8_t *ring)
{
    static uint32_t block;
    while (!stop && !dump) {
        struct tpacket_block_desc *b = (struct tpacket_block_desc *)(ring + (size_t)block * RX_BLOCK);
        if (!(__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            wait_input();
            continue;
        }
        struct tpacket3_hdr *h = (struct tpacket3_hdr *)((uint8_t *)b + b->hdr.bh1.offset_to_first_pkt);
        for (uint32_t i = 0, n = b->hdr.bh1.num_pkts; i < n; i++) {
            handle((uint8_t *)h + h->tp_mac, h->tp_snaplen);
            // a batch at most BATCH copies per output (the mmsg arrays' size)
            if ((i + 1) % BATCH == 0)
                flush_all();
            h = (struct tpacket3_hdr *)((uint8_t *)h + h->tp_next_offset);
        }
        flush_all();   // sendmmsg's payloads point into the block: sent before it goes back
        __atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        block = (block + 1) % RX_BLOCKS;
    }
}

static void run_mmsg(void)
{
    static uint8_t bufs[BATCH][FRAME];
    static struct iovec iov[BATCH];
    static struct mmsghdr msgs[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = FRAME};
        msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    while (!stop && !dump) {
        c_syscalls++;
        int n = recvmmsg(in_fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            wait_input();
            continue;
        }
        for (int i = 0; i < n; i++) {
            // a frame longer than the buffer is truncated: MSG_TRUNC says so, parse_frame's
            // length checks drop it
            uint32_t len = msgs[i].msg_len > FRAME ? FRAME : msgs[i].msg_len;
            handle(bufs[i], len);
        }
        flush_all();
    }
}

// ---------------------------------------------------------------------------------------------
// Setup

static void usage(void)
{
    fprintf(stderr, "usage: tpacket_relay --in DEV --out DEV[,DEV...] [--rx ring|mmsg] [--tx ring|mmsg] [--cpu N]\n"
                    "       [--ttl T] [--group G --port P [--out-group G --out-port P]]... [--rules FILE]\n"
                    "       [--stats FILE] [--no-join]\n");
    exit(2);
}

static enum mode parse_mode(const char *v)
{
    if (!strcmp(v, "ring"))
        return RING;
    if (!strcmp(v, "mmsg"))
        return MMSG;
    usage();
    return RING;
}

int main(int argc, char **argv)
{
    const char *in_dev = NULL, *out_devs = NULL, *stats = NULL;
    int cpu = -1, join = 1;
    relay_name = "tpacket_relay";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-join")) { join = 0; continue; }
        if (!v)
            usage();
        i++;
        if (rule_arg(a, v)) continue;
        else if (!strcmp(a, "--in")) in_dev = v;
        else if (!strcmp(a, "--out")) out_devs = v;
        else if (!strcmp(a, "--rx")) rx_mode = parse_mode(v);
        else if (!strcmp(a, "--tx")) tx_mode = parse_mode(v);
        else if (!strcmp(a, "--cpu")) cpu = atoi(v);
        else if (!strcmp(a, "--stats")) stats = v;
        else usage();
    }
    rules_done();
    if (!in_dev || !out_devs || !nrules)
        usage();
    pin_cpu(cpu);
    add_outputs(out_devs);
    build_table();
    for (int k = 0; k < nouts; k++)
        open_output(&outs[k], &ifs[k]);
    open_input(in_dev);
    uint8_t *ring = NULL;
    if (rx_mode == RING) {
        ring = mmap(NULL, (size_t)RX_BLOCK * RX_BLOCKS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, in_fd, 0);
        if (ring == MAP_FAILED)
            die("mmap(RX ring)");
    }
    if (join)
        join_groups(if_nametoindex(in_dev));

    struct sigaction sa = {.sa_handler = on_stop};   // no SA_RESTART: poll returns on a signal
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_dump;
    sigaction(SIGUSR1, &sa, NULL);
    seq++;
    write_stats_file(stats, write_stats);
    fprintf(stderr, "tpacket_relay: ready: %s -> %d output(s), %u rule(s), rx %s, tx %s, cpu %d\n", in_dev, nouts,
            nrules, rx_mode == RING ? "TPACKET_V3 ring" : "recvmmsg", tx_mode == RING ? "TPACKET_V2 ring" : "sendmmsg",
            cpu);
    while (!stop) {
        if (rx_mode == RING)
            run_ring(ring);
        else
            run_mmsg();
        if (dump) {
            dump = 0;
            seq++;
            write_stats_file(stats, write_stats);
        }
    }
    flush_all();
    write_stats(stderr);
    return 0;
}
