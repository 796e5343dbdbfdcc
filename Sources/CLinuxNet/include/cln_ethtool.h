// Interface offload queries for `mcrelay doctor` (SIOCETHTOOL is a variadic ioctl Swift cannot call).
#pragma once

// Reads an ethtool feature of `ifname`: returns 1 (on), 0 (off) or -errno (e.g. -EOPNOTSUPP).
int cln_ethtool_gro(const char *ifname);
int cln_ethtool_lro(const char *ifname);
