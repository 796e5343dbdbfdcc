#include "clinuxnet.h"

#include <errno.h>

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

static const struct sock_filter cooked_prog[] = {
    /* 0 */ LDH_ABS((uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL)),
    /* 1 */ JEQ_K(ETH_P_IP, 0, 9),        // -> 11 drop
    /* 2 */ LDB_ABS(0),
    /* 3 */ AND_K(0xf0),
    /* 4 */ JEQ_K(0x40, 0, 6),            // version 4, else -> 11
    /* 5 */ LDB_ABS(9),
    /* 6 */ JEQ_K(17, 0, 4),              // UDP, else -> 11
    /* 7 */ LDW_ABS(16),
    /* 8 */ AND_K(0xf0000000u),
    /* 9 */ JEQ_K(0xe0000000u, 0, 1),     // 224.0.0.0/4, else -> 11
    /* 10 */ RET_K(0xffffffffu),
    /* 11 */ RET_K(0),
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
