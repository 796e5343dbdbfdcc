// See include/packet_egress.h.
#include "packet_egress.h"

#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static int copy_name(struct ifreq *request, const char *name) {
    memset(request, 0, sizeof(*request));
    size_t length = strlen(name);
    if (length >= IFNAMSIZ) return -ENAMETOOLONG;
    memcpy(request->ifr_name, name, length);
    return 0;
}

int ldp_interface_hardware(int fd, const char *name, uint16_t *type, uint8_t address[6]) {
    struct ifreq request;
    int rc = copy_name(&request, name);
    if (rc != 0) return rc;
    if (ioctl(fd, SIOCGIFHWADDR, &request) != 0) return -errno;
    *type = request.ifr_hwaddr.sa_family;
    memcpy(address, request.ifr_hwaddr.sa_data, 6);
    return 0;
}

int ldp_interface_ipv4(int fd, const char *name, uint32_t *address) {
    struct ifreq request;
    int rc = copy_name(&request, name);
    if (rc != 0) return rc;
    request.ifr_addr.sa_family = AF_INET;
    if (ioctl(fd, SIOCGIFADDR, &request) != 0) return -errno;
    struct sockaddr_in in;
    memcpy(&in, &request.ifr_addr, sizeof(in));
    *address = in.sin_addr.s_addr;
    return 0;
}

#include <linux/ethtool.h>
#include <linux/sockios.h>

int ldp_interface_set_tx_checksum(int fd, const char *name, int on) {
    struct ifreq request;
    int rc = copy_name(&request, name);
    if (rc != 0) return rc;
    struct ethtool_value value = {.cmd = ETHTOOL_STXCSUM, .data = on ? 1 : 0};
    request.ifr_data = (void *)&value;
    if (ioctl(fd, SIOCETHTOOL, &request) != 0) return -errno;
    return 0;
}
