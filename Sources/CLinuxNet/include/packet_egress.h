// Interface lookups through ioctl (variadic, so Swift cannot call it) for InterfaceFactsReader;
// the frames themselves are built by RelayCore's EgressFrame.
#pragma once

#include <stddef.h>
#include <stdint.h>

/// SIOCGIFHWADDR: the hardware type (ARPHRD_*) and the 6-byte address of interface `name`,
/// asked through any socket `fd` of the caller's network namespace. Returns 0 or -errno.
int ldp_interface_hardware(int fd, const char *name, uint16_t *type, uint8_t address[6]);

/// SIOCGIFADDR: the interface's primary IPv4 address in network byte order. Returns 0, or
/// -EADDRNOTAVAIL when it has none, or -errno.
int ldp_interface_ipv4(int fd, const char *name, uint32_t *address);

/// Turns the interface's transmit checksum offload on or off (legacy ETHTOOL_STXCSUM through
/// SIOCETHTOOL; ethtool(8) is not always installed). Tests use it to make a veth behave like a
/// NIC without checksum offload. Returns 0 or -errno.
int ldp_interface_set_tx_checksum(int fd, const char *name, int on);
