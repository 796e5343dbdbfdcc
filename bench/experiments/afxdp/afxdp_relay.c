// SPDX-License-Identifier: GPL-2.0
// AF_XDP multicast relay: an experiment for issue #14 ("AF_XDP with the user-space forwarder
// deciding"), measured beside the other relays by the bench harness (row afxdp-c). Not mcrelay:
// one thread, IPv4 only, static rules, no IGMP of its own beyond joining the input groups.
//
//   afxdp_relay --in rin0 --out rout0[,rout1...] [--queue 0] [--cpu N] [--ttl 16]
//               [--group G --port P [--out-group G2 --out-port P2]]... [--rules FILE]
//               [--stats FILE] [--obj afxdp_redirect.bpf.o] [--separate-umem] [--copy]
//
// Rules: each --group starts one (its --port, --out-group, --out-port follow; the output group
// and port default to the input's); --rules FILE adds one per line "IN_GROUP IN_PORT OUT_GROUP
// OUT_PORT" (# comments). Every rule is sent to every --out device.
//
// Data path: afxdp_redirect.bpf.o on --in (native XDP, a bpf link: it goes away with the
// process, even on SIGKILL) redirects IPv4 UDP to 224/4 into this program's AF_XDP socket
// (copy mode: veth has no zero copy). Per frame, user space finds the exact (group, port) rule
// and builds what mcrelay's EgressFrame builds (Sources/RelayCore/Egress/EgressFrame.swift):
// Ethernet to the group's MAC from the output's MAC, IPv4 from the output's address, TTL, DF,
// id 0, fresh IP checksum, UDP source port kept, destination port rewritten, UDP checksum over
// the payload. One AF_XDP TX socket per output device, all sharing the RX socket's UMEM
// (XDP_SHARED_UMEM, each with its own fill and completion rings, kernel >= 5.10): the first
// output's copy is the received frame itself with the new header written in front of the
// payload (no payload copy); every further output gets a memcpy into a free frame. If the
// kernel refuses the shared UMEM (or --separate-umem), each output gets a UMEM of its own and
// every copy is a memcpy. --copy: memcpy even where the frame could be sent in place.
//
// Counters: on SIGUSR1 written as one JSON line to --stats FILE (rename, so a reader never sees
// half a file; also written once when ready), and on SIGINT/SIGTERM printed to stderr before a
// clean exit.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "../common/relay_rules.h"

#ifndef SOL_XDP
#define SOL_XDP 283
#endif

#define FRAME_SIZE 2048      // aligned chunks: a power of two >= 2048; a 1500-byte frame fits
#define RX_RING 2048
#define FILL_RING 2048
#define TX_RING 1024
#define COMP_RING 1024       // >= TX_RING: the kernel reserves a completion slot per transmit
#define SMALL_RING 64        // the rings a socket must have but never uses
#define BATCH 64

// ---------------------------------------------------------------------------------------------
// Rings: the kernel's single-producer/single-consumer rings, mapped from the socket

struct ring {
    uint32_t *producer, *consumer, *flags;
    void *desc;
    uint32_t size, cached_prod, cached_cons;
};

// producer side (fill, tx): free slots as of the kernel's latest consumer index
static uint32_t ring_free(struct ring *r)
{
    return r->size - (r->cached_prod - __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE));
}
static void ring_submit(struct ring *r) { __atomic_store_n(r->producer, r->cached_prod, __ATOMIC_RELEASE); }
// consumer side (rx, completion)
static uint32_t ring_avail(struct ring *r)
{
    return __atomic_load_n(r->producer, __ATOMIC_ACQUIRE) - r->cached_cons;
}
static void ring_release(struct ring *r) { __atomic_store_n(r->consumer, r->cached_cons, __ATOMIC_RELEASE); }
static uint64_t *ring_addr(struct ring *r, uint32_t i) { return (uint64_t *)r->desc + (i & (r->size - 1)); }
static struct xdp_desc *ring_xdesc(struct ring *r, uint32_t i) { return (struct xdp_desc *)r->desc + (i & (r->size - 1)); }

// ---------------------------------------------------------------------------------------------
// UMEM and sockets

struct pool {                // one registered UMEM area and the frames user space holds
    uint8_t *area;
    uint64_t *free;
    uint32_t nfree, frames;
};

static uint64_t pool_get(struct pool *p) { return p->nfree ? p->free[--p->nfree] : UINT64_MAX; }
// any address inside a frame gives it back (rx descriptors point past the kernel's headroom)
static void pool_put(struct pool *p, uint64_t addr) { p->free[p->nfree++] = addr & ~(uint64_t)(FRAME_SIZE - 1); }

static int pool_init(struct pool *p, uint32_t frames)
{
    p->frames = frames;
    p->area = mmap(NULL, (size_t)frames * FRAME_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    p->free = calloc(frames, sizeof(uint64_t));
    if (p->area == MAP_FAILED || !p->free)
        return -1;
    for (uint32_t i = 0; i < frames; i++)
        p->free[i] = (uint64_t)(frames - 1 - i) * FRAME_SIZE;
    p->nfree = frames;
    return 0;
}

struct xsk {
    int fd;
    struct ring rx, tx, fill, comp;
};

static int map_ring(int fd, struct ring *r, const struct xdp_ring_offset *off, uint32_t size, size_t desc_size, off_t pgoff)
{
    void *m = mmap(NULL, off->desc + size * desc_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
    if (m == MAP_FAILED)
        return -1;
    r->producer = (uint32_t *)((uint8_t *)m + off->producer);
    r->consumer = (uint32_t *)((uint8_t *)m + off->consumer);
    r->flags = (uint32_t *)((uint8_t *)m + off->flags);
    r->desc = (uint8_t *)m + off->desc;
    r->size = size;
    r->cached_prod = *r->producer;
    r->cached_cons = *r->consumer;
    return 0;
}

// One AF_XDP socket bound to (ifindex, queue). reg: register this UMEM on it (the first socket
// of a UMEM); else share_fd's UMEM. Every socket of a UMEM on another device or queue needs
// fill and completion rings of its own, so every socket gets both (SMALL_RING where unused).
static int xsk_open(struct xsk *x, int ifindex, uint32_t queue, struct pool *reg, int share_fd, int rx, int tx)
{
    memset(x, 0, sizeof *x);
    x->fd = socket(AF_XDP, SOCK_RAW, 0);
    if (x->fd < 0)
        return -1;
    if (reg) {
        struct xdp_umem_reg mr = {.addr = (uintptr_t)reg->area, .len = (uint64_t)reg->frames * FRAME_SIZE,
                                  .chunk_size = FRAME_SIZE, .headroom = 0};
        if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof mr))
            return -1;
    }
    int fill = rx ? FILL_RING : SMALL_RING, comp = tx ? COMP_RING : SMALL_RING, rxs = RX_RING, txs = TX_RING;
    if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_FILL_RING, &fill, sizeof fill) ||
        setsockopt(x->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &comp, sizeof comp) ||
        (rx && setsockopt(x->fd, SOL_XDP, XDP_RX_RING, &rxs, sizeof rxs)) ||
        (tx && setsockopt(x->fd, SOL_XDP, XDP_TX_RING, &txs, sizeof txs)))
        return -1;
    struct xdp_mmap_offsets off;
    socklen_t len = sizeof off;
    if (getsockopt(x->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &len))
        return -1;
    if (map_ring(x->fd, &x->fill, &off.fr, fill, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING) ||
        map_ring(x->fd, &x->comp, &off.cr, comp, sizeof(uint64_t), XDP_UMEM_PGOFF_COMPLETION_RING) ||
        (rx && map_ring(x->fd, &x->rx, &off.rx, rxs, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING)) ||
        (tx && map_ring(x->fd, &x->tx, &off.tx, txs, sizeof(struct xdp_desc), XDP_PGOFF_TX_RING)))
        return -1;
    // a socket sharing a UMEM takes its mode from the UMEM's first socket (flags must be 0)
    struct sockaddr_xdp sa = {.sxdp_family = AF_XDP, .sxdp_ifindex = ifindex, .sxdp_queue_id = queue};
    if (share_fd >= 0) {
        sa.sxdp_flags = XDP_SHARED_UMEM;
        sa.sxdp_shared_umem_fd = share_fd;
    } else {
        sa.sxdp_flags = XDP_COPY | XDP_USE_NEED_WAKEUP;
    }
    return bind(x->fd, (struct sockaddr *)&sa, sizeof sa);
}

// ---------------------------------------------------------------------------------------------
// Outputs (the rules, templates and checksums are in ../common/relay_rules.h)

struct out {                          // beside ifs[k], the device's facts
    struct xsk x;
    struct pool *pool;                // the UMEM its TX frames live in
    uint32_t queued;                  // descriptors put on the TX ring in this batch
    uint64_t tx, completed, no_frame, ring_full;
};

static struct out outs[MAX_OUTS];

// ---------------------------------------------------------------------------------------------
// Counters

static volatile sig_atomic_t stop, dump;
static struct xsk in;
static struct pool rx_pool;
static uint64_t c_rx, c_forwarded, c_unmatched, c_bad, c_in_place, c_copied, c_kicks, c_kick_errors, seq;
static int shared = 1, copy_always;

static void on_stop(int sig) { (void)sig; stop = 1; }
static void on_dump(int sig) { (void)sig; dump = 1; }

static void xsk_stats_json(FILE *f, int fd)
{
    struct xdp_statistics s = {0};
    socklen_t len = sizeof s;
    getsockopt(fd, SOL_XDP, XDP_STATISTICS, &s, &len);
    fprintf(f, "{\"rx_dropped\":%llu,\"rx_invalid_descs\":%llu,\"tx_invalid_descs\":%llu,\"rx_ring_full\":%llu,"
               "\"rx_fill_ring_empty_descs\":%llu,\"tx_ring_empty_descs\":%llu}",
            (unsigned long long)s.rx_dropped, (unsigned long long)s.rx_invalid_descs,
            (unsigned long long)s.tx_invalid_descs, (unsigned long long)s.rx_ring_full,
            (unsigned long long)s.rx_fill_ring_empty_descs, (unsigned long long)s.tx_ring_empty_descs);
}

// tx: descriptors put on TX rings; completed: frames the kernel gave back after transmitting;
// no_frame / ring_full: copies dropped for want of a free frame or a TX ring slot
static void write_stats(FILE *f)
{
    uint64_t tx = 0, done = 0, nf = 0, rf = 0;
    for (int k = 0; k < nouts; k++) {
        tx += outs[k].tx;
        done += outs[k].completed;
        nf += outs[k].no_frame;
        rf += outs[k].ring_full;
    }
    fprintf(f, "{\"seq\":%llu,\"shared_umem\":%s,\"in_place\":%s,\"rx\":%llu,\"forwarded\":%llu,\"unmatched\":%llu,"
               "\"bad\":%llu,\"tx\":%llu,\"completed\":%llu,\"no_frame\":%llu,\"ring_full\":%llu,\"sent_in_place\":%llu,"
               "\"sent_copied\":%llu,\"kicks\":%llu,\"kick_errors\":%llu,\"rx_xsk\":",
            (unsigned long long)seq, shared ? "true" : "false", shared && !copy_always ? "true" : "false",
            (unsigned long long)c_rx, (unsigned long long)c_forwarded, (unsigned long long)c_unmatched,
            (unsigned long long)c_bad, (unsigned long long)tx, (unsigned long long)done, (unsigned long long)nf,
            (unsigned long long)rf, (unsigned long long)c_in_place, (unsigned long long)c_copied,
            (unsigned long long)c_kicks, (unsigned long long)c_kick_errors);
    xsk_stats_json(f, in.fd);
    fprintf(f, ",\"outputs\":[");
    for (int k = 0; k < nouts; k++) {
        struct out *o = &outs[k];
        fprintf(f, "%s{\"dev\":\"%s\",\"tx\":%llu,\"completed\":%llu,\"no_frame\":%llu,\"ring_full\":%llu,\"xsk\":",
                k ? "," : "", ifs[k].name, (unsigned long long)o->tx, (unsigned long long)o->completed,
                (unsigned long long)o->no_frame, (unsigned long long)o->ring_full);
        xsk_stats_json(f, o->x.fd);
        fprintf(f, "}");
    }
    fprintf(f, "]}\n");
}

static void dump_stats(const char *path)
{
    seq++;
    write_stats_file(path, write_stats);
}

// ---------------------------------------------------------------------------------------------
// The data path

static void reclaim(struct out *o)
{
    uint32_t n = ring_avail(&o->x.comp);
    for (uint32_t i = 0; i < n; i++)
        pool_put(o->pool, *ring_addr(&o->x.comp, o->x.comp.cached_cons++));
    if (n) {
        ring_release(&o->x.comp);
        o->completed += n;
    }
}

// keep the fill ring full, but leave fan-out copies their frames (else the kernel would hold
// every frame and each extra output would drop for want of one)
static void refill(void)
{
    uint32_t reserve = shared && (nouts > 1 || copy_always) ? (uint32_t)nouts * BATCH * 4 : 0;
    uint32_t n = ring_free(&in.fill);
    if (rx_pool.nfree <= reserve)
        return;
    if (n > rx_pool.nfree - reserve)
        n = rx_pool.nfree - reserve;
    for (uint32_t i = 0; i < n; i++)
        *ring_addr(&in.fill, in.fill.cached_prod++) = pool_get(&rx_pool);
    if (n)
        ring_submit(&in.fill);
}

static int tx_put(struct out *o, uint64_t addr, uint32_t len)
{
    if (!ring_free(&o->x.tx)) {
        o->ring_full++;
        return -1;
    }
    struct xdp_desc *d = ring_xdesc(&o->x.tx, o->x.tx.cached_prod++);
    d->addr = addr;
    d->len = len;
    d->options = 0;
    o->queued++;
    o->tx++;
    return 0;
}

// copy mode transmits inside sendto (a bounded batch per call): kick until the kernel has taken
// every descriptor or says to come back later (completion ring full, device busy)
static int kick(struct out *o)
{
    for (int tries = 0; tries < 8; tries++) {
        if (__atomic_load_n(o->x.tx.consumer, __ATOMIC_ACQUIRE) == o->x.tx.cached_prod)
            return 0;
        c_kicks++;
        if (sendto(o->x.fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN && errno != EBUSY &&
            errno != ENOBUFS && errno != EINTR) {
            c_kick_errors++;
            return 1;
        }
    }
    return __atomic_load_n(o->x.tx.consumer, __ATOMIC_ACQUIRE) != o->x.tx.cached_prod;
}

static void handle(uint64_t addr, uint32_t len)
{
    uint8_t *f = rx_pool.area + addr;
    c_rx++;
    // the program checked Ethernet type, IPv4, UDP and 224/4; here the rest
    struct datagram d;
    if (parse_frame(f, len, &d)) {
        c_bad++;
        goto drop;
    }
    int r = rule_find(d.group, d.dport);
    if (r < 0) {
        c_unmatched++;
        goto drop;
    }
    c_forwarded++;
    uint8_t *payload = d.payload;
    uint32_t plen = d.plen;
    uint16_t sport = d.sport;
    uint64_t psum = sum_bytes(payload, plen, 0);    // once for every output
    int in_place = shared && !copy_always;
    // outputs 1.. (and 0 when it cannot take the frame itself): a copy each
    for (int k = in_place ? 1 : 0; k < nouts; k++) {
        struct out *o = &outs[k];
        uint64_t a = pool_get(o->pool);
        if (a == UINT64_MAX) {
            o->no_frame++;
            continue;
        }
        uint8_t *c = o->pool->area + a;
        write_header(c, &tmpls[r * nouts + k], sport, plen, psum);
        memcpy(c + HDR, payload, plen);
        if (tx_put(o, a, HDR + plen))
            pool_put(o->pool, a);
        else
            c_copied++;
    }
    if (in_place) {
        // the header goes right in front of the payload (never before the frame: the input
        // header is at least as long), so the frame is sent where it was received
        uint8_t *h = payload - HDR;
        write_header(h, &tmpls[r * nouts], sport, plen, psum);
        if (!tx_put(&outs[0], addr + (uint64_t)(h - f), HDR + plen)) {
            c_in_place++;
            return;   // the frame comes back through rout0's completion ring
        }
    }
drop:
    pool_put(&rx_pool, addr);
}

static void run(void)
{
    while (!stop) {
        if (dump) {
            dump = 0;
            return;   // the caller writes the counters and comes back
        }
        for (int k = 0; k < nouts; k++)
            reclaim(&outs[k]);
        refill();
        uint32_t n = ring_avail(&in.rx);
        if (!n) {
            int pending = 0;
            for (int k = 0; k < nouts; k++)
                pending |= kick(&outs[k]);
            // sleep until frames arrive (the NAPI thread on this core then gets the CPU);
            // 1 ms when a TX ring still holds frames the kernel refused for now
            struct pollfd p = {.fd = in.fd, .events = POLLIN};
            poll(&p, 1, pending ? 1 : 100);
            continue;
        }
        if (n > BATCH)
            n = BATCH;
        for (uint32_t i = 0; i < n; i++) {
            struct xdp_desc *d = ring_xdesc(&in.rx, in.rx.cached_cons++);
            handle(d->addr, d->len);
        }
        ring_release(&in.rx);
        for (int k = 0; k < nouts; k++) {
            if (outs[k].queued) {
                ring_submit(&outs[k].x.tx);
                outs[k].queued = 0;
            }
            kick(&outs[k]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Setup

static void usage(void)
{
    fprintf(stderr, "usage: afxdp_relay --in DEV --out DEV[,DEV...] [--queue Q] [--cpu N] [--ttl T]\n"
                    "       [--group G --port P [--out-group G --out-port P]]... [--rules FILE]\n"
                    "       [--stats FILE] [--obj FILE] [--separate-umem] [--copy] [--no-join]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *in_dev = NULL, *out_devs = NULL, *stats = NULL, *obj_path = NULL;
    int cpu = -1, join = 1;
    uint32_t queue = 0;
    relay_name = "afxdp_relay";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--separate-umem")) { shared = 0; continue; }
        if (!strcmp(a, "--copy")) { copy_always = 1; continue; }
        if (!strcmp(a, "--no-join")) { join = 0; continue; }
        if (!v)
            usage();
        i++;
        if (rule_arg(a, v)) continue;
        else if (!strcmp(a, "--in")) in_dev = v;
        else if (!strcmp(a, "--out")) out_devs = v;
        else if (!strcmp(a, "--queue")) queue = atoi(v);
        else if (!strcmp(a, "--cpu")) cpu = atoi(v);
        else if (!strcmp(a, "--stats")) stats = v;
        else if (!strcmp(a, "--obj")) obj_path = v;
        else usage();
    }
    rules_done();
    if (!in_dev || !out_devs || !nrules)
        usage();
    char default_obj[4096];
    if (!obj_path) {
        // next to the binary (build.sh puts both in one directory)
        ssize_t n = readlink("/proc/self/exe", default_obj, sizeof default_obj - 32);
        if (n < 0)
            die("readlink /proc/self/exe");
        default_obj[n] = 0;
        strcpy(strrchr(default_obj, '/') + 1, "afxdp_redirect.bpf.o");
        obj_path = default_obj;
    }
    pin_cpu(cpu);
    add_outputs(out_devs);
    int in_ifindex = if_nametoindex(in_dev);
    if (!in_ifindex)
        die(in_dev);
    build_table();

    // the receive socket registers the UMEM: frames for the fill ring and rx, and (shared) for
    // every output's TX: per output up to a TX ring plus a completion ring's worth in flight
    if (pool_init(&rx_pool, FILL_RING + RX_RING + (uint32_t)nouts * (TX_RING + COMP_RING)))
        die("UMEM area");
    if (xsk_open(&in, in_ifindex, queue, &rx_pool, -1, 1, 0))
        die("AF_XDP socket on the input (copy mode)");
    for (int k = 0; k < nouts; k++) {
        struct out *o = &outs[k];
        o->pool = &rx_pool;
        if (shared && xsk_open(&o->x, ifs[k].ifindex, 0, NULL, in.fd, 0, 1) == 0)
            continue;
        if (shared) {
            // the first output decides: all outputs share, or none does
            if (k > 0)
                die("XDP_SHARED_UMEM on a further output");
            fprintf(stderr, "afxdp_relay: shared UMEM refused on %s (%s): one UMEM per output, every copy a memcpy\n",
                    ifs[k].name, strerror(errno));
            close(o->x.fd);
            shared = 0;
        }
        o->pool = calloc(1, sizeof *o->pool);
        if (pool_init(o->pool, TX_RING + COMP_RING) || xsk_open(&o->x, ifs[k].ifindex, 0, o->pool, -1, 0, 1))
            die("AF_XDP socket on an output");
    }

    struct bpf_object *obj = bpf_object__open_file(obj_path, NULL);
    if (!obj || bpf_object__load(obj))
        die(obj_path);
    struct bpf_program *prog = bpf_object__find_program_by_name(obj, "afxdp_redirect");
    int map = bpf_object__find_map_fd_by_name(obj, "xsks");
    if (!prog || map < 0)
        die("program afxdp_redirect or map xsks missing from the object");
    if (bpf_map_update_elem(map, &queue, &in.fd, 0))
        die("xsks[queue] = socket");
    // a link, not a netlink attach: the kernel detaches the program when the last fd closes,
    // also when the process is killed. Native (driver) mode, as the experiment asks.
    LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = XDP_FLAGS_DRV_MODE);
    int link = bpf_link_create(bpf_program__fd(prog), in_ifindex, BPF_XDP, &lo);
    if (link < 0) {
        errno = -link;
        die("native XDP attach on the input");
    }
    if (join)
        join_groups(in_ifindex);

    struct sigaction sa = {.sa_handler = on_stop};   // no SA_RESTART: poll returns on a signal
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_dump;
    sigaction(SIGUSR1, &sa, NULL);
    refill();
    dump_stats(stats);
    fprintf(stderr, "afxdp_relay: ready: %s queue %u -> %d output(s), %u rule(s), %s UMEM%s, cpu %d\n", in_dev, queue,
            nouts, nrules, shared ? "shared" : "separate", shared && !copy_always ? ", first output in place" : "", cpu);
    while (!stop) {
        run();
        dump_stats(stats);
    }
    close(link);   // detaches the program before the counters are printed
    bpf_object__close(obj);
    write_stats(stderr);
    return 0;
}
