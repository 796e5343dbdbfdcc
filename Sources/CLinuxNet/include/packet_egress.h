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
/// length and checksum left for later) and UDP (destination port; source port, length and
/// checksum left for later), plus the partial checksums of its constant fields.
/// Addresses in network byte order, ports in host order.
void ldp_packet_template(uint8_t *template_bytes, const uint8_t source_mac[6], uint32_t source,
                         uint32_t destination, uint16_t destination_port, uint8_t ttl);

/// Writes the header of one datagram of `length` payload bytes from `source_port` into `out`
/// (LDP_PACKET_HEADER_BYTES), from a template: total length, IPv4 header checksum, UDP length
/// and, when `udp_checksum` is non-zero, the UDP checksum over pseudo header, header and payload.
void ldp_packet_header(uint8_t *out, const uint8_t *template_bytes, uint16_t source_port,
                       const void *payload, size_t length, int udp_checksum);

/// Bytes of the struct virtio_net_hdr a packet socket with PACKET_VNET_HDR expects in front of
/// every frame.
#define LDP_VNET_HEADER_BYTES 10

/// A virtio_net_hdr that asks for nothing (a plain frame).
void ldp_packet_vnet_plain(uint8_t *out);

/// A virtio_net_hdr asking for UDP segmentation (VIRTIO_NET_HDR_GSO_UDP_L4, `segment` payload
/// bytes per datagram, checksums completed per segment), followed by the Ethernet/IPv4/UDP
/// header of the whole run of `total` payload bytes: LDP_VNET_HEADER_BYTES +
/// LDP_PACKET_HEADER_BYTES bytes into `out`. The kernel (or a NIC with USO) cuts it into
/// datagrams exactly as it does a UDP GSO send.
void ldp_packet_gso_header(uint8_t *out, const uint8_t *template_bytes, uint16_t source_port, size_t total,
                           uint16_t segment);

/// The Internet checksum (RFC 1071) of `length` bytes, for tests: 0 over a valid header.
uint16_t ldp_internet_checksum(const void *data, size_t length);
