// See include/listener_tap.h.
#include "listener_tap.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/filter.h>
#include <linux/if_ether.h>

// Instruction indices of the program below, so each jump is written as "to label X".
enum {
    L_VLAN = 0, L_VLAN_JUMP, L_ETHERTYPE, L_IS_IPV4,
    L_V4_VERSION, L_V4_VERSION_MASK, L_V4_VERSION_JUMP, L_V4_PROTOCOL, L_V4_PROTOCOL_JUMP,
    L_IS_IPV6, L_V6_VERSION, L_V6_VERSION_MASK, L_V6_VERSION_JUMP,
    L_V6_NEXT, L_V6_NEXT_ICMP, L_V6_NEXT_HBH, L_HBH_NEXT, L_HBH_NEXT_ICMP,
    L_HBH_LENGTH, L_HBH_LENGTH_PLUS1, L_HBH_LENGTH_BYTES, L_HBH_TAX, L_HBH_TO_TYPE,
    L_DIRECT, L_TYPE, L_TYPE_130, L_TYPE_131, L_TYPE_132, L_TYPE_143,
    L_DROP, L_ACCEPT, L_COUNT
};

// Relative jump offset from instruction `from` to label `to` (cBPF jumps count from the next one).
#define TO(from, to) ((uint8_t)((to) - (from) - 1))
#define J(from, k, t, f) [from] = BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), TO(from, t), TO(from, f))
#define S(from, code, k) [from] = BPF_STMT((code), (k))

// Data starts at the Ethernet header (SOCK_RAW). The kernel has already removed a VLAN tag it
// found (into skb metadata, visible through SKF_AD_VLAN_TAG_PRESENT), so offset 12 is the inner
// EtherType either way.
static const struct sock_filter listener_prog[L_COUNT] = {
    S(L_VLAN, BPF_LD | BPF_B | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT)),
    J(L_VLAN_JUMP, 0, L_ETHERTYPE, L_DROP),                 // patched for include_tagged
    S(L_ETHERTYPE, BPF_LD | BPF_H | BPF_ABS, 12),
    J(L_IS_IPV4, ETH_P_IP, L_V4_VERSION, L_IS_IPV6),
    S(L_V4_VERSION, BPF_LD | BPF_B | BPF_ABS, 14),
    S(L_V4_VERSION_MASK, BPF_ALU | BPF_AND | BPF_K, 0xf0),
    J(L_V4_VERSION_JUMP, 0x40, L_V4_PROTOCOL, L_DROP),
    S(L_V4_PROTOCOL, BPF_LD | BPF_B | BPF_ABS, 14 + 9),     // protocol: same offset for any IHL
    J(L_V4_PROTOCOL_JUMP, 2, L_ACCEPT, L_DROP),             // IGMP
    J(L_IS_IPV6, ETH_P_IPV6, L_V6_VERSION, L_DROP),
    S(L_V6_VERSION, BPF_LD | BPF_B | BPF_ABS, 14),
    S(L_V6_VERSION_MASK, BPF_ALU | BPF_AND | BPF_K, 0xf0),
    J(L_V6_VERSION_JUMP, 0x60, L_V6_NEXT, L_DROP),
    S(L_V6_NEXT, BPF_LD | BPF_B | BPF_ABS, 14 + 6),
    J(L_V6_NEXT_ICMP, 58, L_DIRECT, L_V6_NEXT_HBH),         // ICMPv6 right after the header
    J(L_V6_NEXT_HBH, 0, L_HBH_NEXT, L_DROP),                // hop-by-hop options
    S(L_HBH_NEXT, BPF_LD | BPF_B | BPF_ABS, 14 + 40),
    J(L_HBH_NEXT_ICMP, 58, L_HBH_LENGTH, L_DROP),
    S(L_HBH_LENGTH, BPF_LD | BPF_B | BPF_ABS, 14 + 41),     // in 8-byte units, not counting the first 8
    S(L_HBH_LENGTH_PLUS1, BPF_ALU | BPF_ADD | BPF_K, 1),
    S(L_HBH_LENGTH_BYTES, BPF_ALU | BPF_LSH | BPF_K, 3),
    S(L_HBH_TAX, BPF_MISC | BPF_TAX, 0),
    [L_HBH_TO_TYPE] = BPF_JUMP(BPF_JMP | BPF_JA, TO(L_HBH_TO_TYPE, L_TYPE), 0, 0),
    S(L_DIRECT, BPF_LDX | BPF_W | BPF_IMM, 0),
    S(L_TYPE, BPF_LD | BPF_B | BPF_IND, 14 + 40),           // ICMPv6 type (out of bounds: dropped)
    J(L_TYPE_130, 130, L_ACCEPT, L_TYPE_131),               // MLD query
    J(L_TYPE_131, 131, L_ACCEPT, L_TYPE_132),               // MLDv1 report
    J(L_TYPE_132, 132, L_ACCEPT, L_TYPE_143),               // MLDv1 done
    J(L_TYPE_143, 143, L_ACCEPT, L_DROP),                   // MLDv2 report
    S(L_DROP, BPF_RET | BPF_K, 0),
    S(L_ACCEPT, BPF_RET | BPF_K, 0xffffffffu),
};

unsigned int cln_listener_filter(int include_tagged, struct sock_filter *out, unsigned int capacity) {
    if (capacity < L_COUNT) return 0;
    memcpy(out, listener_prog, sizeof(listener_prog));
    if (include_tagged) out[L_VLAN_JUMP].jf = TO(L_VLAN_JUMP, L_ETHERTYPE);
    return L_COUNT;
}

int cln_attach_listener_filter(int fd, int include_tagged) {
    struct sock_filter program[L_COUNT];
    struct sock_fprog prog;
    prog.len = (unsigned short)cln_listener_filter(include_tagged, program, L_COUNT);
    prog.filter = program;
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) return -errno;
    return 0;
}

_Static_assert(L_COUNT == 31, "CLN_LISTENER_FILTER_LENGTH in listener_tap.h");

int cln_packet_allmulti(int fd, int ifindex, int add) {
    struct packet_mreq request;
    memset(&request, 0, sizeof(request));
    request.mr_ifindex = ifindex;
    request.mr_type = PACKET_MR_ALLMULTI;
    if (setsockopt(fd, SOL_PACKET, add ? PACKET_ADD_MEMBERSHIP : PACKET_DROP_MEMBERSHIP, &request, sizeof(request)) != 0)
        return -errno;
    return 0;
}

#include <net/if.h>
#include <sys/ioctl.h>

int cln_interface_flags(int fd, const char *name) {
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    size_t length = strlen(name);
    if (length >= IFNAMSIZ) return -ENAMETOOLONG;
    memcpy(request.ifr_name, name, length);
    if (ioctl(fd, SIOCGIFFLAGS, &request) != 0) return -errno;
    return (int)(unsigned short)request.ifr_flags;
}
