// Helpers for the AF_PACKET egress path (LinuxIO/DataPlane/PacketEgress*.swift): interface
// lookups through ioctl (variadic, so Swift cannot call it) and the per-datagram header write.
#pragma once

#include <stddef.h>
#include <stdint.h>

/// Bytes of the Ethernet + IPv4 (no options) + UDP header the relay writes in front of a payload.
#define LDP_PACKET_HEADER_BYTES 42
/// Bytes per output template: the header, then the partial sums `ldp_packet_template_finish` stores.
#define LDP_PACKET_TEMPLATE_BYTES 64

/// SIOCGIFHWADDR: the hardware type (ARPHRD_*) and the 6-byte address of interface `name`,
/// asked through any socket `fd` of the caller's network namespace. Returns 0 or -errno.
int ldp_interface_hardware(int fd, const char *name, uint16_t *type, uint8_t address[6]);

/// SIOCGIFADDR: the interface's primary IPv4 address in network byte order. Returns 0, or
/// -EADDRNOTAVAIL when it has none, or -errno.
int ldp_interface_ipv4(int fd, const char *name, uint32_t *address);

/// Fills a template: Ethernet (destination = the IPv4 multicast MAC of `destination`,
/// source = `source_mac`, type IPv4), IPv4 (DF like the kernel UDP path; ID 0, which RFC 6864
/// allows for atomic datagrams; `ttl`, UDP, `source` -> `destination`,
/// length and checksum left for later) and UDP (ports; length and checksum left for later),
/// plus the partial checksums of its constant fields.
/// Addresses in network byte order, ports in host order.
void ldp_packet_template(uint8_t *template_bytes, const uint8_t source_mac[6], uint32_t source,
                         uint32_t destination, uint16_t source_port, uint16_t destination_port, uint8_t ttl);

/// Writes the header of one datagram of `length` payload bytes into `out`
/// (LDP_PACKET_HEADER_BYTES), from a template: total length, IPv4 header checksum, UDP length
/// and, when `udp_checksum` is non-zero, the UDP checksum over pseudo header, header and payload.
void ldp_packet_header(uint8_t *out, const uint8_t *template_bytes, const void *payload, size_t length,
                       int udp_checksum);

/// The Internet checksum (RFC 1071) of `length` bytes, for tests: 0 over a valid header.
uint16_t ldp_internet_checksum(const void *data, size_t length);

/// Turns the interface's transmit checksum offload on or off (legacy ETHTOOL_STXCSUM through
/// SIOCETHTOOL; ethtool(8) is not always installed). Tests use it to make a veth behave like a
/// NIC without checksum offload. Returns 0 or -errno.
int ldp_interface_set_tx_checksum(int fd, const char *name, int on);
