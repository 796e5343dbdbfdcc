// CLinuxNet: Linux networking definitions and helpers Swift cannot import or express itself.
//
// - Kernel structs from <linux/if_packet.h> / <linux/if_ether.h> / <linux/filter.h>
//   (sockaddr_ll, packet_mreq, tpacket_*, tpacket_auxdata, sock_filter, sock_fprog) import as is.
// - Function-like macros (CMSG_*) and composite constants are re-exported as functions and
//   `static const` values with a CLN_ / cln_ prefix.
// - Never include <netpacket/packet.h> alongside this header: it redefines sockaddr_ll.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <linux/filter.h>

// ---- Socket levels and options --------------------------------------------------------------

static const int CLN_SOL_PACKET = 263;          // SOL_PACKET
static const int CLN_SOL_UDP = 17;             // SOL_UDP
static const int CLN_UDP_SEGMENT = 103;        // UDP GSO segment size (int)
static const int CLN_IP_MULTICAST_ALL = 49;    // IP_MULTICAST_ALL (int, default 1)

static const int CLN_PACKET_ADD_MEMBERSHIP = PACKET_ADD_MEMBERSHIP;
static const int CLN_PACKET_DROP_MEMBERSHIP = PACKET_DROP_MEMBERSHIP;
static const int CLN_PACKET_RX_RING = PACKET_RX_RING;
static const int CLN_PACKET_TX_RING = PACKET_TX_RING;
static const int CLN_PACKET_STATISTICS = PACKET_STATISTICS;
static const int CLN_PACKET_AUXDATA = PACKET_AUXDATA;
static const int CLN_PACKET_ORIGDEV = PACKET_ORIGDEV;
static const int CLN_PACKET_VERSION = PACKET_VERSION;
static const int CLN_PACKET_RESERVE = PACKET_RESERVE;
static const int CLN_PACKET_TIMESTAMP = PACKET_TIMESTAMP;
static const int CLN_PACKET_FANOUT = PACKET_FANOUT;                 // 18
static const int CLN_PACKET_QDISC_BYPASS = PACKET_QDISC_BYPASS;     // 20
static const int CLN_PACKET_IGNORE_OUTGOING = 23;                   // PACKET_IGNORE_OUTGOING

// Membership types for packet_mreq.mr_type.
static const int CLN_PACKET_MR_MULTICAST = PACKET_MR_MULTICAST;
static const int CLN_PACKET_MR_PROMISC = PACKET_MR_PROMISC;
static const int CLN_PACKET_MR_ALLMULTI = PACKET_MR_ALLMULTI;

// sockaddr_ll.sll_pkttype values.
static const int CLN_PACKET_HOST = PACKET_HOST;
static const int CLN_PACKET_BROADCAST = PACKET_BROADCAST;
static const int CLN_PACKET_MULTICAST = PACKET_MULTICAST;
static const int CLN_PACKET_OTHERHOST = PACKET_OTHERHOST;
static const int CLN_PACKET_OUTGOING = PACKET_OUTGOING;

// TPACKET versions (tpacket_versions is a named enum; these are plain ints).
static const int CLN_TPACKET_V1 = 0;
static const int CLN_TPACKET_V2 = 1;
static const int CLN_TPACKET_V3 = 2;

// ---- PACKET_FANOUT modes and flags ----------------------------------------------------------

static const int CLN_PACKET_FANOUT_HASH = 0;
static const int CLN_PACKET_FANOUT_LB = 1;
static const int CLN_PACKET_FANOUT_CPU = 2;
static const int CLN_PACKET_FANOUT_ROLLOVER = 3;
static const int CLN_PACKET_FANOUT_RND = 4;
static const int CLN_PACKET_FANOUT_QM = 5;
static const int CLN_PACKET_FANOUT_CBPF = 6;
static const int CLN_PACKET_FANOUT_EBPF = 7;
static const int CLN_PACKET_FANOUT_FLAG_ROLLOVER = 0x1000;
static const int CLN_PACKET_FANOUT_FLAG_UNIQUEID = 0x2000;
static const int CLN_PACKET_FANOUT_FLAG_IGNORE_OUTGOING = 0x4000;  // not in Debian 12 headers
static const int CLN_PACKET_FANOUT_FLAG_DEFRAG = 0x8000;

/// The int argument of setsockopt(SOL_PACKET, PACKET_FANOUT): group id in the low 16 bits,
/// mode | flags in the high 16 bits.
static inline int cln_fanout_arg(uint16_t group_id, int mode, int flags) {
    return (int)((uint32_t)group_id | ((uint32_t)(mode | flags) << 16));
}

// ---- Ethertypes (host byte order; use cln_htons for socket()/bind() protocol fields) --------

static const int CLN_ETH_P_ALL = ETH_P_ALL;       // 0x0003
static const int CLN_ETH_P_IP = ETH_P_IP;         // 0x0800
static const int CLN_ETH_P_IPV6 = ETH_P_IPV6;     // 0x86DD
static const int CLN_ETH_P_8021Q = ETH_P_8021Q;   // 0x8100
static const int CLN_ETH_P_ARP = ETH_P_ARP;       // 0x0806
static const int CLN_ETH_HLEN = ETH_HLEN;         // 14
static const int CLN_ETH_ALEN = ETH_ALEN;         // 6

static inline uint16_t cln_htons(uint16_t v) { return (uint16_t)((v >> 8) | (v << 8)); }

// ---- io_uring SQE flags (IOSQE_* macros do not import into Swift) ---------------------------
// Values equal (1 << IOSQE_*_BIT) from <liburing/io_uring.h>; checked by InfraTests.

static const uint8_t CLN_IOSQE_FIXED_FILE = 1u << 0;
static const uint8_t CLN_IOSQE_IO_DRAIN = 1u << 1;
static const uint8_t CLN_IOSQE_IO_LINK = 1u << 2;
static const uint8_t CLN_IOSQE_IO_HARDLINK = 1u << 3;
static const uint8_t CLN_IOSQE_ASYNC = 1u << 4;
static const uint8_t CLN_IOSQE_BUFFER_SELECT = 1u << 5;
static const uint8_t CLN_IOSQE_CQE_SKIP_SUCCESS = 1u << 6;

// ---- Control messages (CMSG_* are macros) --------------------------------------------------

static inline struct cmsghdr *cln_cmsg_firsthdr(struct msghdr *msg) { return CMSG_FIRSTHDR(msg); }
static inline struct cmsghdr *cln_cmsg_nxthdr(struct msghdr *msg, struct cmsghdr *cmsg) {
    return CMSG_NXTHDR(msg, cmsg);
}
static inline unsigned char *cln_cmsg_data(struct cmsghdr *cmsg) { return CMSG_DATA(cmsg); }
static inline size_t cln_cmsg_space(size_t len) { return CMSG_SPACE(len); }
static inline size_t cln_cmsg_len(size_t len) { return CMSG_LEN(len); }

/// Finds the first control message with the given level and type in `msg` and returns a pointer
/// to its data (and its data length in *data_len), or NULL.
const void *cln_cmsg_find(const struct msghdr *msg, int level, int type, size_t *data_len);

// ---- Classic BPF filters (SO_ATTACH_FILTER) -------------------------------------------------
// Both keep only IPv4 (version 4) UDP packets whose destination is in 224.0.0.0/4 and accept the
// whole packet; everything else is dropped in the kernel. IP fragments pass (every fragment
// carries protocol and destination).

/// For an AF_PACKET SOCK_DGRAM (cooked) socket: data starts at the IPv4 header; the ethertype is
/// read from the skb protocol (ancillary load SKF_AD_PROTOCOL).
const struct sock_filter *cln_bpf_udp_multicast_cooked(unsigned int *count);
/// For an AF_PACKET SOCK_RAW socket on an Ethernet device: data starts at the Ethernet header
/// (untagged; the kernel strips VLAN tags before the tap).
const struct sock_filter *cln_bpf_udp_multicast_ethernet(unsigned int *count);

/// Attaches one of the filters above to `fd` (cooked != 0 selects the SOCK_DGRAM variant).
/// Returns 0 or -errno.
int cln_attach_udp_multicast_filter(int fd, int cooked);
/// Removes any attached classic filter (SO_DETACH_FILTER). Returns 0 or -errno.
int cln_detach_filter(int fd);
/// Attaches a filter that accepts nothing: a socket about to join a PACKET_FANOUT group must be
/// bound (running) first, and until it has joined it would receive every frame the group also
/// receives; with this filter it queues none. Returns 0 or -errno.
int cln_attach_drop_all_filter(int fd);

// Joins (join=1) or leaves (join=0) an IPv6 group on interface `ifindex` with the protocol-
// independent MCAST_(JOIN|LEAVE)_GROUP, or MCAST_(JOIN|LEAVE)_SOURCE_GROUP when `source` is
// given (16 bytes each, network order). Returns 0 or the errno.
int cln_mcast_ipv6(int fd, int join, int ifindex, const uint8_t group[16], const uint8_t *source);
static const int CLN_IPV6_MULTICAST_ALL = 29;  // IPV6_MULTICAST_ALL (int, default 1)
