// SPDX-License-Identifier: GPL-2.0
// What the C relay experiments of issue #14 share (bench/experiments/afxdp, .../tpacket): static
// IPv4 rules, the exact (group, port) lookup, mcrelay's output header built from a template per
// rule and output (Sources/RelayCore/Egress/EgressFrame.swift: constant fields and partial sums
// once, lengths, source port and the payload's sum per datagram), the input frame's checks, the
// output devices' facts, the input groups' joins and the counters file. Header-only: each
// experiment is one translation unit, so everything here is static.
#ifndef RELAY_RULES_H
#define RELAY_RULES_H

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the checksum code below assumes a little-endian machine"
#endif

#define HDR 42               // Ethernet + IPv4 (no options) + UDP, what the relays send
#define MAX_OUTS 16

static const char *relay_name = "relay";   // set by main: the prefix of every message

static void die(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", relay_name, what, strerror(errno));
    exit(1);
}

struct rule {
    uint32_t in_group, out_group;     // network order
    uint16_t in_port, out_port;       // host order
};

struct egress_if {                    // an output device, as the header needs it
    char name[IF_NAMESIZE];
    int ifindex;
    uint8_t mac[6];
    uint32_t addr;                    // network order
};

struct tmpl {
    uint8_t hdr[HDR];
    uint32_t ip_sum, udp_sum;
};

static struct rule *rules;
static uint32_t nrules, rules_cap;
static uint32_t *table, table_mask;   // open addressing: rule index + 1, 0 empty
static struct tmpl *tmpls;            // [rule * nouts + out]
static struct egress_if ifs[MAX_OUTS];
static int nouts;
static uint8_t ttl = 16;

static uint32_t rule_hash(uint32_t group, uint16_t port) { return (group * 0x9e3779b1u) ^ (port * 0x85ebca6bu); }

static int rule_find(uint32_t group, uint16_t port)
{
    for (uint32_t h = rule_hash(group, port);; h++) {
        uint32_t i = table[h & table_mask];
        if (!i)
            return -1;
        if (rules[i - 1].in_group == group && rules[i - 1].in_port == port)
            return (int)i - 1;
    }
}

// one's complement sum of 32-bit words (folded to 16 bits by fold(): 2^16 = 1 mod 0xffff)
static uint64_t sum_bytes(const uint8_t *p, size_t n, uint64_t acc)
{
    uint32_t w;
    for (; n >= 4; p += 4, n -= 4) {
        memcpy(&w, p, 4);
        acc += w;
    }
    if (n >= 2) {
        uint16_t h;
        memcpy(&h, p, 2);
        acc += h;
        p += 2;
        n -= 2;
    }
    if (n)
        acc += *p;                    // the odd byte is the high-address half of a zero-padded word
    return acc;
}

static uint16_t fold(uint64_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

static void build_template(struct tmpl *t, const struct rule *r, const struct egress_if *o)
{
    uint8_t *h = t->hdr;
    const uint8_t *g = (const uint8_t *)&r->out_group;
    memset(t, 0, sizeof *t);
    uint8_t mac[6] = {0x01, 0x00, 0x5e, g[1] & 0x7f, g[2], g[3]};   // RFC 1112 6.4
    memcpy(h, mac, 6);
    memcpy(h + 6, o->mac, 6);
    h[12] = 0x08;
    h[13] = 0x00;
    h[14] = 0x45;                      // IPv4, no options; tos 0; length and checksum per datagram
    h[20] = 0x40;                      // DF, id 0 (RFC 6864: atomic datagram)
    h[22] = ttl;
    h[23] = 17;
    memcpy(h + 26, &o->addr, 4);
    memcpy(h + 30, &r->out_group, 4);
    uint16_t dport = htons(r->out_port);
    memcpy(h + 36, &dport, 2);
    t->ip_sum = fold(sum_bytes(h + 14, 20, 0));
    t->udp_sum = fold(sum_bytes(h + 26, 8, 0) + htons(17) + dport);   // pseudo header minus length
}

// EgressFrame.writeHeader: the header of one datagram at `out` from the template
static void write_header(uint8_t *out, const struct tmpl *t, uint16_t sport_be, uint32_t plen, uint64_t payload_sum)
{
    memcpy(out, t->hdr, HDR);
    uint16_t total = htons(plen + 28), ulen = htons(plen + 8);
    uint16_t ipc = ~fold((uint64_t)t->ip_sum + total);
    memcpy(out + 16, &total, 2);
    memcpy(out + 24, &ipc, 2);
    memcpy(out + 34, &sport_be, 2);
    memcpy(out + 38, &ulen, 2);
    uint16_t uc = ~fold((uint64_t)t->udp_sum + sport_be + ulen + ulen + payload_sum);
    if (!uc)
        uc = 0xffff;                   // RFC 768: a computed 0 is sent as all ones
    memcpy(out + 40, &uc, 2);
}

// One received Ethernet frame, checked: an IPv4 UDP datagram, not a fragment, lengths inside
// the frame. 0 and the fields when it is; -1 when it is not (counted as bad by the caller).
struct datagram {
    uint32_t group;                    // network order
    uint16_t dport, sport;             // dport host order, sport network order (copied as is)
    uint8_t *payload;
    uint32_t plen;
};

static int parse_frame(uint8_t *f, uint32_t len, struct datagram *d)
{
    if (len < HDR || f[12] != 0x08 || f[13] != 0x00 || (f[14] >> 4) != 4)
        return -1;
    uint32_t ihl = (f[14] & 0x0f) * 4;
    uint16_t frag, ulen, dport;
    memcpy(&frag, f + 20, 2);
    // fragments (MF or an offset) cannot be relayed datagram by datagram
    if (ihl < 20 || 14 + ihl + 8 > len || f[23] != 17 || (ntohs(frag) & 0x3fff))
        return -1;
    uint8_t *udp = f + 14 + ihl;
    memcpy(&ulen, udp + 4, 2);
    ulen = ntohs(ulen);
    if (ulen < 8 || 14 + ihl + ulen > len)
        return -1;
    memcpy(&d->group, f + 30, 4);
    memcpy(&dport, udp + 2, 2);
    memcpy(&d->sport, udp, 2);
    d->dport = ntohs(dport);
    d->payload = udp + 8;
    d->plen = ulen - 8;
    return 0;
}

static void add_rule(const char *in_g, long in_p, const char *out_g, long out_p)
{
    struct rule r;
    if (inet_pton(AF_INET, in_g, &r.in_group) != 1 || inet_pton(AF_INET, out_g, &r.out_group) != 1 ||
        in_p < 1 || in_p > 65535 || out_p < 1 || out_p > 65535 ||
        (ntohl(r.in_group) >> 28) != 14 || (ntohl(r.out_group) >> 28) != 14) {
        fprintf(stderr, "%s: bad rule %s:%ld -> %s:%ld (IPv4 multicast groups, ports 1-65535)\n",
                relay_name, in_g, in_p, out_g, out_p);
        exit(2);
    }
    r.in_port = in_p;
    r.out_port = out_p;
    if (nrules == rules_cap) {
        rules_cap = rules_cap ? 2 * rules_cap : 64;
        rules = realloc(rules, rules_cap * sizeof *rules);
    }
    rules[nrules++] = r;
}

// the lookup table and every (rule, output) template; after the outputs are known
static void build_table(void)
{
    uint32_t size = 16;
    while (size < 4 * nrules)
        size *= 2;
    table = calloc(size, sizeof *table);
    table_mask = size - 1;
    for (uint32_t i = 0; i < nrules; i++) {
        if (rule_find(rules[i].in_group, rules[i].in_port) >= 0) {
            fprintf(stderr, "%s: rule %u repeats an input (group, port)\n", relay_name, i);
            exit(2);
        }
        uint32_t h = rule_hash(rules[i].in_group, rules[i].in_port);
        while (table[h & table_mask])
            h++;
        table[h & table_mask] = i + 1;
    }
    tmpls = calloc((size_t)nrules * nouts, sizeof *tmpls);
    for (uint32_t i = 0; i < nrules; i++)
        for (int k = 0; k < nouts; k++)
            build_template(&tmpls[i * nouts + k], &rules[i], &ifs[k]);
}

static void read_rules(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die(path);
    char line[512], a[64], b[64];
    long p, q;
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        if (sscanf(line, "%63s %ld %63s %ld", a, &p, b, &q) == 4)
            add_rule(a, p, b, q);
        else if (strspn(line, " \t\r\n") != strlen(line)) {
            fprintf(stderr, "%s: %s: bad line: %s", relay_name, path, line);
            exit(2);
        }
    }
    fclose(f);
}

// --out DEV[,DEV...]: each device's index, MAC and IPv4 address
static void add_outputs(const char *list)
{
    char *copy = strdup(list);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        if (nouts == MAX_OUTS) {
            fprintf(stderr, "%s: at most %d outputs\n", relay_name, MAX_OUTS);
            exit(2);
        }
        struct egress_if *o = &ifs[nouts++];
        snprintf(o->name, sizeof o->name, "%s", tok);
        if (!(o->ifindex = if_nametoindex(tok)))
            die(tok);
        struct ifreq ifr = {0};
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", tok);
        if (ioctl(s, SIOCGIFHWADDR, &ifr))
            die(tok);
        memcpy(o->mac, ifr.ifr_hwaddr.sa_data, 6);
        if (ioctl(s, SIOCGIFADDR, &ifr))
            die("output without an IPv4 address");
        o->addr = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr;
    }
    close(s);
    free(copy);
}

// a NIC delivers a group's frames only once it is joined; on veth this changes nothing, the
// relay sees every frame either way. Linux allows igmp_max_memberships (20) per socket.
static void join_groups(int ifindex)
{
    int s = -1;
    for (uint32_t i = 0; i < nrules; i++) {
        if (i % 20 == 0 && (s = socket(AF_INET, SOCK_DGRAM, 0)) < 0)
            die("socket");
        struct ip_mreqn m = {.imr_multiaddr.s_addr = rules[i].in_group, .imr_ifindex = ifindex};
        if (setsockopt(s, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) && errno != EADDRINUSE)
            die("IP_ADD_MEMBERSHIP");
    }
}

// The rule flags every experiment takes: --group G starts a rule, --port, --out-group and
// --out-port after it complete it (the output group and port default to the input's); --rules
// FILE; --ttl T. rule_arg: 1 when `a` was one of them (its value `v` taken); rules_done after
// the last argument.
static char arg_group[64], arg_out_group[64];
static long arg_port, arg_out_port;

static void rules_done(void)
{
    if (*arg_group)
        add_rule(arg_group, arg_port, *arg_out_group ? arg_out_group : arg_group, arg_out_port ? arg_out_port : arg_port);
    *arg_group = *arg_out_group = 0;
    arg_port = arg_out_port = 0;
}

static int rule_arg(const char *a, const char *v)
{
    if (!strcmp(a, "--group")) {
        rules_done();
        snprintf(arg_group, sizeof arg_group, "%s", v);
    } else if (!strcmp(a, "--port")) arg_port = atol(v);
    else if (!strcmp(a, "--out-group")) snprintf(arg_out_group, sizeof arg_out_group, "%s", v);
    else if (!strcmp(a, "--out-port")) arg_out_port = atol(v);
    else if (!strcmp(a, "--rules")) read_rules(v);
    else if (!strcmp(a, "--ttl")) ttl = atoi(v);
    else return 0;
    return 1;
}

static void pin_cpu(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set))
        die("sched_setaffinity");
}

// the counters as one JSON line in `path`, renamed into place so a reader never sees half a file
static void write_stats_file(const char *path, void (*write)(FILE *))
{
    if (!path)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    write(f);
    fclose(f);
    rename(tmp, path);
}

#endif
