// ListenerTap (LinuxIO/Listeners): the kernel filter that keeps only IGMP and MLD frames on an
// AF_PACKET SOCK_RAW socket, and the all-multicast membership that makes a NIC deliver reports
// sent to any group.
#pragma once

#include <stdint.h>
#include <linux/filter.h>
#include <linux/if_packet.h>

/// Number of instructions of the listener filter (capacity `cln_listener_filter` needs).
static const unsigned int CLN_LISTENER_FILTER_LENGTH = 31;

/// auxdata tp_status bits (macros built with shifts do not import into Swift).
static const unsigned int CLN_TP_STATUS_VLAN_VALID = TP_STATUS_VLAN_VALID;
static const unsigned int CLN_TP_STATUS_VLAN_TPID_VALID = TP_STATUS_VLAN_TPID_VALID;

/// Copies the classic BPF program into `out` and returns its length (0 if `capacity` is too
/// small). It reads frames from the Ethernet header on and accepts, whole:
/// - IPv4 (version 4), protocol 2 (IGMP), any header length (options or not);
/// - IPv6 (version 6) whose next header is ICMPv6, or hop-by-hop options followed by ICMPv6
///   (the hop-by-hop length is honoured), with ICMPv6 type 130, 131, 132 or 143 (MLD);
/// - frames the kernel received with a VLAN tag only if `include_tagged` (the kernel strips the
///   tag before the tap and keeps it in skb metadata, so offset 12 is the inner EtherType).
/// Everything else, and anything shorter than the fields it reads, is dropped.
unsigned int cln_listener_filter(int include_tagged, struct sock_filter *out, unsigned int capacity);

/// Attaches that program to `fd` (SO_ATTACH_FILTER). Returns 0 or -errno.
int cln_attach_listener_filter(int fd, int include_tagged);

/// PACKET_ADD_MEMBERSHIP (add != 0) or PACKET_DROP_MEMBERSHIP of PACKET_MR_ALLMULTI on
/// interface `ifindex`. The kernel drops the membership itself when the socket closes.
/// Returns 0 or -errno.
int cln_packet_allmulti(int fd, int ifindex, int add);

/// SIOCGIFFLAGS (ioctl is variadic, which Swift cannot call): the interface's flags (IFF_UP 0x1,
/// IFF_RUNNING 0x40 = operationally up, IFF_ALLMULTI 0x200, ...) asked through any socket `fd` of
/// the namespace the interface lives in. Returns the flags or -errno.
int cln_interface_flags(int fd, const char *name);
