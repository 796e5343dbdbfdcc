/*
 * mcgen: paced frame generator for the end-to-end benchmark (one process, all streams).
 *
 *   mcgen IFACE FRAMES_FILE COUNT RATE_PPS [BATCH [DEADLINE_S [REFUSED]]]
 *
 * FRAMES_FILE holds ready-made Ethernet frames (bench/e2e/generator.py writes it: per frame a
 * little-endian u16 length, then the bytes). mcgen sends COUNT frames round robin through an
 * AF_PACKET socket bound to IFACE (qdisc bypassed, as trafgen does), paced against a
 * cumulative schedule, in bursts of BATCH frames (default 16, one sendmmsg): a burst goes out
 * when the schedule (t * RATE frames by time t since the start) has reached its last frame.
 * Bursts are what a NIC with interrupt coalescing hands the kernel, and on this VM they matter:
 * the inter-processor interrupt that steers received frames to the relay's core (RPS) then
 * comes once per burst instead of once per frame. BATCH 1 paces frame by frame. Ahead of
 * schedule it spins, or sleeps when the next burst is more than 200 us away. RATE 0 means as
 * fast as it goes.
 *
 * Why not trafgen's own pacing (measured here, netsniff-ng 0.6.8): `-b Npps` sends N frames at
 * full speed and then sleeps out the rest of each second (1 s bursts, not a rate), and `-t GAP`
 * nanosleeps per frame, which tops out near 50k pps on this machine even with 1 ns timer slack.
 * trafgen stays available unpaced (`--generator trafgen`).
 *
 * DEADLINE_S (default none) stops sending after that many seconds even if fewer than COUNT
 * frames went out: softirq work charged to the sender (wakeups, RPS IPIs) can slow it far
 * below the asked rate, and a trial must stay bounded in time. Frames always start at the
 * file's first frame, so the harness knows exactly how many each stream got.
 *
 * REFUSED says what happens to a frame the link refuses (ENOBUFS: a veth drops it when the
 * receiving side's backlog or NAPI ring is full): "retry" (default) sends it again, so the
 * receiver's pace slows the sender, which no real network does; "drop" counts it as sent and
 * lost, as a NIC's full receive ring drops a frame the wire delivered (the delivered-versus-
 * offered curves use it, so that the offered rate is the schedule's).
 *
 * Prints one line at the end: "sent N seconds S enobufs E refused R" (R: frames dropped on
 * refusal, counted in N).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif
#define MAX_FRAMES 65536
#define MAX_BATCH 64

static void die(const char *what) { fprintf(stderr, "mcgen: %s: %s\n", what, strerror(errno)); exit(1); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 8) { fprintf(stderr, "usage: mcgen IFACE FRAMES_FILE COUNT RATE_PPS [BATCH [DEADLINE_S [retry|drop]]]\n"); return 2; }
    unsigned ifindex = if_nametoindex(argv[1]);
    if (!ifindex) die(argv[1]);
    unsigned long long count = strtoull(argv[3], NULL, 10);
    double rate = strtod(argv[4], NULL);
    int batch = argc >= 6 ? atoi(argv[5]) : 16;
    double deadline = argc >= 7 ? strtod(argv[6], NULL) : 0;
    int drop_refused = 0;
    if (argc >= 8) {
        if (strcmp(argv[7], "drop") == 0) drop_refused = 1;
        else if (strcmp(argv[7], "retry") != 0) { fprintf(stderr, "mcgen: REFUSED must be retry or drop\n"); return 2; }
    }
    if (batch < 1 || batch > MAX_BATCH) { fprintf(stderr, "mcgen: BATCH must be 1...%d\n", MAX_BATCH); return 2; }

    FILE *f = fopen(argv[2], "rb");
    if (!f) die(argv[2]);
    static struct iovec frames[MAX_FRAMES];
    unsigned nframes = 0;
    uint8_t lenbuf[2];
    while (fread(lenbuf, 1, 2, f) == 2) {
        unsigned len = lenbuf[0] | (lenbuf[1] << 8);
        if (nframes == MAX_FRAMES || len < 14 || len > 9000) { fprintf(stderr, "mcgen: bad frames file\n"); return 2; }
        void *p = malloc(len);
        if (!p || fread(p, 1, len, f) != len) { fprintf(stderr, "mcgen: truncated frames file\n"); return 2; }
        frames[nframes].iov_base = p;
        frames[nframes].iov_len = len;
        nframes++;
    }
    fclose(f);
    if (nframes == 0) { fprintf(stderr, "mcgen: no frames in %s\n", argv[2]); return 2; }

    int fd = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: transmit only, never receives */
    if (fd < 0) die("socket(AF_PACKET)");
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) die("PACKET_QDISC_BYPASS");
    /* A frame sent into a veth keeps charging this socket's send buffer until the receiving
     * side has processed it (the skb keeps its socket across namespaces), so with the default
     * 208 KiB a slow relay core would throttle the generator: that is backpressure no real
     * network gives. A large buffer (root: SO_SNDBUFFORCE) lets the relay's backlog overflow
     * and drop instead, which the harness counts as loss. */
    int sndbuf = 256 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0) die("SO_SNDBUFFORCE");
    struct sockaddr_ll sll = {0};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = (int)ifindex;
    sll.sll_halen = 6;

    struct mmsghdr msgs[MAX_BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < MAX_BATCH; i++) {
        msgs[i].msg_hdr.msg_name = &sll;
        msgs[i].msg_hdr.msg_namelen = sizeof sll;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }

    unsigned long long sent = 0, enobufs = 0, refused = 0;
    unsigned next = 0;
    double start = now();
    unsigned loops = 0;
    while (sent < count) {
        if (deadline > 0 && (++loops & 63) == 0 && now() - start > deadline) break;
        unsigned long long due = count;
        if (rate > 0) {
            double t = now() - start;
            due = (unsigned long long)(t * rate) + 1;
            if (due > count) due = count;
            unsigned long long burst_end = sent + (unsigned long long)batch;
            if (burst_end > count) burst_end = count;
            if (due < burst_end) {
                double wait = (double)burst_end / rate - t;  /* seconds until the burst's last frame is due */
                if (wait > 200e-6) {
                    struct timespec ts = { 0, (long)((wait - 100e-6) * 1e9) };
                    nanosleep(&ts, NULL);
                }
                continue;
            }
        }
        unsigned long long want = due - sent;
        int k = want > (unsigned long long)batch ? batch : (int)want;
        for (int i = 0; i < k; i++) {
            msgs[i].msg_hdr.msg_iov = &frames[(next + (unsigned)i) % nframes];
        }
        int n = sendmmsg(fd, msgs, (unsigned)k, 0);
        if (n < 0) {
            if (errno == ENOBUFS && drop_refused) {
                /* the burst's first frame was refused (those before it went out: n > 0 then): lost */
                refused++;
                sent++;
                next = (next + 1) % nframes;
                continue;
            }
            if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) { enobufs++; continue; }
            die("sendmmsg");
        }
        if (drop_refused && n < k) {
            /* sendmmsg stops at the first message that fails and, having sent some, returns their
             * number and drops the error: that message was refused (the harness checks the count
             * against snd0's tx_dropped) */
            refused++;
            n++;
        }
        sent += (unsigned long long)n;
        next = (next + (unsigned)n) % nframes;
    }
    double seconds = now() - start;
    printf("sent %llu seconds %.6f enobufs %llu refused %llu\n", sent, seconds, enobufs, refused);
    return 0;
}
