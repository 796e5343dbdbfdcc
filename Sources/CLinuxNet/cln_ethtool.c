#include "cln_ethtool.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>

static int ethtool_value(const char *ifname, unsigned int cmd, unsigned int *value) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct ethtool_value request = { .cmd = cmd, .data = 0 };
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_data = (void *)&request;
    int result = ioctl(fd, SIOCETHTOOL, &ifr);
    int saved = errno;
    close(fd);
    if (result < 0) return -saved;
    *value = request.data;
    return 0;
}

int cln_ethtool_gro(const char *ifname) {
    unsigned int value = 0;
    int result = ethtool_value(ifname, ETHTOOL_GGRO, &value);
    return result < 0 ? result : (value != 0);
}

int cln_ethtool_lro(const char *ifname) {
    unsigned int value = 0;
    int result = ethtool_value(ifname, ETHTOOL_GFLAGS, &value);
    return result < 0 ? result : ((value & ETH_FLAG_LRO) != 0);
}
