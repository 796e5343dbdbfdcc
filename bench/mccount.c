/*
 * mccount: per-group packet counter for the end-to-end benchmark's receiver namespace.
 *
 *   mccount IFACE
 *
 * Reads every frame arriving on IFACE through an AF_PACKET TPACKET_V3 ring (a classic BPF
 * filter truncates each copy to 64 bytes, so 1316-byte payloads cost the same as 64-byte
 * ones) and counts IPv4/UDP and IPv6/UDP frames and UDP payload bytes per (destination
 * address, port). IPv6 hop-by-hop, routing and destination-options headers are walked to the
 * UDP header; an IPv6 fragment, or a UDP header beyond the copy, counts as "other". ICMPv6
 * (after any of those headers) is counted as "other" and also as "icmp6": it is what a host's
 * own IPv6 stack sends on its own (router/neighbour solicitations, MLD reports), which the
 * harness tells apart from relayed traffic.
 * Payload bytes matter because a relay sending with UDP GSO over veth delivers one large
 * frame per send (veth never segments): datagrams = payload bytes / payload size.
 * Why C and a ring: a Python recv() loop tops out far below the 300k pps the relays reach;
 * this counter must never be the bottleneck, and when it is, it says so (ring drops).
 *
 * Protocol (line based, stdin -> stdout), driven by bench/e2e/counter.py:
 *   "snap\n"  -> one JSON line: {"ring_packets":N,"ring_drops":N,"udp":N,"other":N,"icmp6":N,
 *                                "groups":[["239.10.0.1",6001,FRAMES,LEN,BYTES],...]}
 *                cumulative since start; LEN is the last seen frame length, BYTES the
 *                sum of UDP payload bytes (frame length - Ethernet, IP and UDP headers).
 *                IPv6 groups are printed by inet_ntop (RFC 5952: "ff3e::10:1").
 *   EOF       -> exit 0
 * Prints "ready\n" once the ring is bound and the filter attached.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif
#define BLOCK_SIZE (1u << 18)  /* 256 KiB */
#define BLOCK_COUNT 256u       /* 64 MiB ring: ~1.7 s of 300k pps at 64-byte snaps */
#define FRAME_SIZE 2048u
#define SLOTS 8192u            /* open-addressing table; power of two */

/* addr: 16 bytes; an IPv4 address is stored IPv4-mapped (::ffff:a.b.c.d) and printed dotted */
struct slot { uint8_t addr[16]; uint16_t port; uint8_t used; uint64_t count; uint32_t len; uint64_t bytes; };
static struct slot table[SLOTS];
static uint64_t udp_total, other_total, icmp6_total, ring_packets, ring_drops;
static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
static int table_full;

static void die(const char *what) { fprintf(stderr, "mccount: %s: %s\n", what, strerror(errno)); exit(1); }

static void count(const uint8_t addr[16], uint16_t port, uint32_t len, uint32_t payload) {
    uint32_t a; memcpy(&a, addr + 12, 4);
    uint32_t b; memcpy(&b, addr + 8, 4);
    uint32_t h = (a * 2654435761u) ^ (b * 2246822519u) ^ (port * 40503u);
    for (uint32_t i = 0; i < SLOTS; i++) {
        struct slot *s = &table[(h + i) & (SLOTS - 1)];
        if (!s->used) { s->used = 1; memcpy(s->addr, addr, 16); s->port = port; s->count = 0; s->bytes = 0; }
        if (s->port == port && memcmp(s->addr, addr, 16) == 0) { s->count++; s->len = len; s->bytes += payload; return; }
    }
    table_full = 1;
    other_total++;
}

static void frame4(const uint8_t *p, uint32_t snap, uint32_t len) {
    if (snap < 14 + 20 + 8) { other_total++; return; }
    const uint8_t *ip = p + 14;
    uint32_t ihl = (uint32_t)(ip[0] & 0x0f) * 4;
    if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 17 || snap < 14 + ihl + 8) { other_total++; return; }
    /* a non-first fragment carries no UDP header */
    if (((ip[6] & 0x1f) | ip[7]) != 0) { other_total++; return; }
    uint8_t addr[16]; memcpy(addr, v4mapped, 12); memcpy(addr + 12, ip + 16, 4);
    uint16_t dport; memcpy(&dport, ip + ihl + 2, 2);
    udp_total++;
    uint32_t headers = 14 + ihl + 8;
    count(addr, ntohs(dport), len, len > headers ? len - headers : 0);
}

static void frame6(const uint8_t *p, uint32_t snap, uint32_t len) {
    if (snap < 14 + 40) { other_total++; return; }
    const uint8_t *ip = p + 14;
    if ((ip[0] >> 4) != 6) { other_total++; return; }
    uint32_t next = ip[6], off = 14 + 40;
    /* hop-by-hop (0), routing (43), destination options (60): length in 8-byte units, +8 */
    while (next == 0 || next == 43 || next == 60) {
        if (snap < off + 8) { other_total++; return; }
        uint32_t hlen = ((uint32_t)p[off + 1] + 1) * 8;
        next = p[off];
        off += hlen;
    }
    if (next == 58) { icmp6_total++; other_total++; return; }
    if (next != 17 || snap < off + 8) { other_total++; return; }  /* fragment (44) included */
    uint16_t dport; memcpy(&dport, p + off + 2, 2);
    udp_total++;
    uint32_t headers = off + 8;
    count(ip + 24, ntohs(dport), len, len > headers ? len - headers : 0);
}

static void frame(const uint8_t *p, uint32_t snap, uint32_t len) {
    if (snap >= 14 && p[12] == 0x08 && p[13] == 0x00) frame4(p, snap, len);
    else if (snap >= 14 && p[12] == 0x86 && p[13] == 0xdd) frame6(p, snap, len);
    else other_total++;
}

static void read_stats(int fd) {
    struct tpacket_stats_v3 st; socklen_t sl = sizeof st;
    if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) < 0) die("PACKET_STATISTICS");
    /* the kernel resets these on every read: accumulate */
    ring_packets += st.tp_packets;
    ring_drops += st.tp_drops;
}

static void snap(int fd) {
    read_stats(fd);
    printf("{\"ring_packets\":%llu,\"ring_drops\":%llu,\"udp\":%llu,\"other\":%llu,\"icmp6\":%llu,"
           "\"table_full\":%d,\"groups\":[",
           (unsigned long long)ring_packets, (unsigned long long)ring_drops,
           (unsigned long long)udp_total, (unsigned long long)other_total, (unsigned long long)icmp6_total, table_full);
    int first = 1;
    char text[INET6_ADDRSTRLEN];
    for (uint32_t i = 0; i < SLOTS; i++) {
        if (!table[i].used) continue;
        if (memcmp(table[i].addr, v4mapped, 12) == 0) inet_ntop(AF_INET, table[i].addr + 12, text, sizeof text);
        else inet_ntop(AF_INET6, table[i].addr, text, sizeof text);
        printf("%s[\"%s\",%u,%llu,%u,%llu]", first ? "" : ",", text, table[i].port,
               (unsigned long long)table[i].count, table[i].len, (unsigned long long)table[i].bytes);
        first = 0;
    }
    printf("]}\n");
    fflush(stdout);
}

/* Hands every block the kernel has retired to frame(), returns the next block to look at. */
static unsigned drain(uint8_t *ring, unsigned block) {
    struct tpacket_block_desc *bd = (struct tpacket_block_desc *)(ring + (size_t)block * BLOCK_SIZE);
    while (bd->hdr.bh1.block_status & TP_STATUS_USER) {
        __sync_synchronize();
        struct tpacket3_hdr *h = (struct tpacket3_hdr *)((uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt);
        for (uint32_t i = 0; i < bd->hdr.bh1.num_pkts; i++) {
            frame((uint8_t *)h + h->tp_mac, h->tp_snaplen, h->tp_len);
            h = (struct tpacket3_hdr *)((uint8_t *)h + h->tp_next_offset);
        }
        __sync_synchronize();
        bd->hdr.bh1.block_status = TP_STATUS_KERNEL;
        block = (block + 1) % BLOCK_COUNT;
        bd = (struct tpacket_block_desc *)(ring + (size_t)block * BLOCK_SIZE);
    }
    return block;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: mccount IFACE\n"); return 2; }
    unsigned ifindex = if_nametoindex(argv[1]);
    if (!ifindex) die(argv[1]);
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (fd < 0) die("socket(AF_PACKET)");
    /* only what arrives: the receiver's own transmissions (the IPv6 lab's rcv0 sends router
     * solicitations and MLD reports) would otherwise be counted too, and never by rx_packets */
    int ignore = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &ignore, sizeof ignore) < 0) die("PACKET_IGNORE_OUTGOING");
    int v = TPACKET_V3;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) die("PACKET_VERSION");
    /* accept everything, keep the first 64 bytes (headers) of each frame: Ethernet + IPv6 +
     * UDP is 62 (an IPv6 UDP frame with an extension header before UDP then counts as
     * "other"; the generator sends none, and MLD's hop-by-hop header still shows ICMPv6) */
    struct sock_filter code[] = { { 0x06, 0, 0, 64 } };
    struct sock_fprog prog = { 1, code };
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) die("SO_ATTACH_FILTER");
    struct tpacket_req3 req = {0};
    req.tp_block_size = BLOCK_SIZE;
    req.tp_block_nr = BLOCK_COUNT;
    req.tp_frame_size = FRAME_SIZE;
    req.tp_frame_nr = (BLOCK_SIZE / FRAME_SIZE) * BLOCK_COUNT;
    req.tp_retire_blk_tov = 2; /* ms: a snapshot taken after a short settle sees every frame */
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) die("PACKET_RX_RING");
    uint8_t *ring = mmap(NULL, (size_t)BLOCK_SIZE * BLOCK_COUNT, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd, 0);
    if (ring == MAP_FAILED) ring = mmap(NULL, (size_t)BLOCK_SIZE * BLOCK_COUNT, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED) die("mmap ring");
    struct sockaddr_ll sll = {0};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) die("bind");
    read_stats(fd); ring_packets = 0; ring_drops = 0; /* clear anything counted before bind */
    printf("ready\n");
    fflush(stdout);

    unsigned block = 0;
    char line[64];
    for (;;) {
        block = drain(ring, block);
        struct pollfd pfd[2] = { { fd, POLLIN | POLLERR, 0 }, { 0, POLLIN, 0 } };
        if (poll(pfd, 2, 50) < 0 && errno != EINTR) die("poll");
        if (pfd[1].revents) {
            if (!fgets(line, sizeof line, stdin)) return 0;
            if (strncmp(line, "snap", 4) == 0) {
                /* take the blocks retired by now (2 ms timer) so the snapshot includes them */
                usleep(5000);
                block = drain(ring, block);
                snap(fd);
            } else {
                fprintf(stderr, "mccount: unknown command: %s", line);
            }
        }
    }
}
