// Interface offload queries for `mcrelay doctor` (and the one GRO switch of input NAPI threading) (SIOCETHTOOL is a variadic ioctl Swift cannot call).
#pragma once

// Reads an ethtool feature of `ifname`: returns 1 (on), 0 (off) or -errno (e.g. -EOPNOTSUPP).
int cln_ethtool_gro(const char *ifname);
int cln_ethtool_lro(const char *ifname);
// Turns GRO on or off (ETHTOOL_SGRO; needs CAP_NET_ADMIN). Returns 0 or -errno.
int cln_ethtool_set_gro(const char *ifname, int on);

// The driver name (ETHTOOL_GDRVINFO: "veth", "bridge", "macvlan", "tun", "vxlan", "e1000e",
// ...) into `driver` (NUL-terminated, at most capacity - 1 bytes). Returns 0 or -errno.
int cln_ethtool_driver(const char *ifname, char *driver, int capacity);

// Whether the named feature (as `ethtool -k` lists it, e.g. "tx-udp-segmentation") is active:
// 1 or 0, -ENOENT when the kernel has no such feature, or -errno.
int cln_ethtool_feature(const char *ifname, const char *feature);

// The receive ring of `ifname` (ETHTOOL_GRINGPARAM, as `ethtool -g` shows it): the frames it holds
// now and at most. Returns 0 or -errno (-EOPNOTSUPP: the driver does not report it, as veth).
int cln_ethtool_rx_ring(const char *ifname, unsigned int *pending, unsigned int *maximum);
