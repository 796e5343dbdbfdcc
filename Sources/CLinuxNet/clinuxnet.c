#include "clinuxnet.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>

const void *cln_cmsg_find(const struct msghdr *msg, int level, int type, size_t *data_len) {
    struct msghdr *m = (struct msghdr *)msg;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == level && c->cmsg_type == type) {
            if (c->cmsg_len < CMSG_LEN(0)) return NULL;
            if (data_len) *data_len = c->cmsg_len - CMSG_LEN(0);
            return CMSG_DATA(c);
        }
    }
    return NULL;
}

#define LDH_ABS(k) BPF_STMT(BPF_LD | BPF_H | BPF_ABS, (k))
#define LDB_ABS(k) BPF_STMT(BPF_LD | BPF_B | BPF_ABS, (k))
#define LDW_ABS(k) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (k))
#define AND_K(k) BPF_STMT(BPF_ALU | BPF_AND | BPF_K, (k))
#define JEQ_K(k, jt, jf) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (jt), (jf))
#define RET_K(k) BPF_STMT(BPF_RET | BPF_K, (k))

// For a SOCK_DGRAM socket bound to ETH_P_ALL: frames start at the network header and the
// EtherType is skb->protocol. Keeps IPv4 UDP to 224.0.0.0/4, and IPv6 to ff00::/8 whose first
// next header is UDP or an extension header that may precede it (hop-by-hop, routing,
// destination options); the core's parser decides the rest (and counts what it drops).
static const struct sock_filter cooked_prog[] = {
    /* 0 */ LDH_ABS((uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL)),
    /* 1 */ JEQ_K(ETH_P_IP, 0, 10),       // IPv4, else -> 12
    /* 2 */ LDB_ABS(0),
    /* 3 */ AND_K(0xf0),
    /* 4 */ JEQ_K(0x40, 0, 6),            // version 4, else -> 11 drop
    /* 5 */ LDB_ABS(9),
    /* 6 */ JEQ_K(17, 0, 4),              // UDP, else -> 11
    /* 7 */ LDW_ABS(16),
    /* 8 */ AND_K(0xf0000000u),
    /* 9 */ JEQ_K(0xe0000000u, 0, 1),     // 224.0.0.0/4, else -> 11
    /* 10 */ RET_K(0xffffffffu),
    /* 11 */ RET_K(0),
    /* 12 */ JEQ_K(ETH_P_IPV6, 0, 10),    // IPv6, else -> 23 drop
    /* 13 */ LDB_ABS(0),
    /* 14 */ AND_K(0xf0),
    /* 15 */ JEQ_K(0x60, 0, 7),           // version 6, else -> 23
    /* 16 */ LDB_ABS(24),
    /* 17 */ JEQ_K(0xff, 0, 5),           // ff00::/8, else -> 23
    /* 18 */ LDB_ABS(6),
    /* 19 */ JEQ_K(17, 4, 0),             // UDP -> 24 accept
    /* 20 */ JEQ_K(0, 3, 0),              // hop-by-hop -> 24
    /* 21 */ JEQ_K(43, 2, 0),             // routing -> 24
    /* 22 */ JEQ_K(60, 1, 0),             // destination options -> 24
    /* 23 */ RET_K(0),
    /* 24 */ RET_K(0xffffffffu),
};

static const struct sock_filter ethernet_prog[] = {
    /* 0 */ LDH_ABS(12),
    /* 1 */ JEQ_K(ETH_P_IP, 0, 9),
    /* 2 */ LDB_ABS(14),
    /* 3 */ AND_K(0xf0),
    /* 4 */ JEQ_K(0x40, 0, 6),
    /* 5 */ LDB_ABS(14 + 9),
    /* 6 */ JEQ_K(17, 0, 4),
    /* 7 */ LDW_ABS(14 + 16),
    /* 8 */ AND_K(0xf0000000u),
    /* 9 */ JEQ_K(0xe0000000u, 0, 1),
    /* 10 */ RET_K(0xffffffffu),
    /* 11 */ RET_K(0),
};

const struct sock_filter *cln_bpf_udp_multicast_cooked(unsigned int *count) {
    if (count) *count = (unsigned int)(sizeof(cooked_prog) / sizeof(cooked_prog[0]));
    return cooked_prog;
}

const struct sock_filter *cln_bpf_udp_multicast_ethernet(unsigned int *count) {
    if (count) *count = (unsigned int)(sizeof(ethernet_prog) / sizeof(ethernet_prog[0]));
    return ethernet_prog;
}

int cln_attach_udp_multicast_filter(int fd, int cooked) {
    struct sock_fprog prog;
    unsigned int n = 0;
    const struct sock_filter *f = cooked ? cln_bpf_udp_multicast_cooked(&n)
                                         : cln_bpf_udp_multicast_ethernet(&n);
    prog.len = (unsigned short)n;
    prog.filter = (struct sock_filter *)f;
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) return -errno;
    return 0;
}

int cln_attach_drop_all_filter(int fd) {
    struct sock_filter drop = RET_K(0);
    struct sock_fprog prog = { .len = 1, .filter = &drop };
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) return -errno;
    return 0;
}

int cln_detach_filter(int fd) {
    int dummy = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &dummy, sizeof(dummy)) != 0) return -errno;
    return 0;
}

int cln_mcast_ipv6(int fd, int join, int ifindex, const uint8_t group[16], const uint8_t *source) {
    struct sockaddr_in6 *g, *s;
    int rc;
    if (source == NULL) {
        struct group_req req;
        memset(&req, 0, sizeof(req));
        req.gr_interface = (uint32_t)ifindex;
        g = (struct sockaddr_in6 *)&req.gr_group;
        g->sin6_family = AF_INET6;
        memcpy(&g->sin6_addr, group, 16);
        rc = setsockopt(fd, IPPROTO_IPV6, join ? MCAST_JOIN_GROUP : MCAST_LEAVE_GROUP, &req, sizeof(req));
    } else {
        struct group_source_req req;
        memset(&req, 0, sizeof(req));
        req.gsr_interface = (uint32_t)ifindex;
        g = (struct sockaddr_in6 *)&req.gsr_group;
        g->sin6_family = AF_INET6;
        memcpy(&g->sin6_addr, group, 16);
        s = (struct sockaddr_in6 *)&req.gsr_source;
        s->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, source, 16);
        rc = setsockopt(fd, IPPROTO_IPV6, join ? MCAST_JOIN_SOURCE_GROUP : MCAST_LEAVE_SOURCE_GROUP, &req, sizeof(req));
    }
    return rc == 0 ? 0 : errno;
}
