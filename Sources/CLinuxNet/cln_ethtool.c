#include "cln_ethtool.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>

// One ethtool_value request: *value goes in (a set command's argument) and comes back (a get's answer).
static int ethtool_value(const char *ifname, unsigned int cmd, unsigned int *value) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct ethtool_value request = { .cmd = cmd, .data = *value };
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

int cln_ethtool_set_gro(const char *ifname, int on) {
    unsigned int value = on ? 1 : 0;
    return ethtool_value(ifname, ETHTOOL_SGRO, &value);
}

int cln_ethtool_lro(const char *ifname) {
    unsigned int value = 0;
    int result = ethtool_value(ifname, ETHTOOL_GFLAGS, &value);
    return result < 0 ? result : ((value & ETH_FLAG_LRO) != 0);
}

#include <stdint.h>
#include <stdlib.h>

static int ethtool_request(int fd, const char *ifname, void *data) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (strlen(ifname) >= IFNAMSIZ) return -ENAMETOOLONG;
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_data = data;
    return ioctl(fd, SIOCETHTOOL, &ifr) < 0 ? -errno : 0;
}

// One request on a socket of its own (for the commands asked once).
static int ethtool_query(const char *ifname, void *data) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int result = ethtool_request(fd, ifname, data);
    close(fd);
    return result;
}

int cln_ethtool_driver(const char *ifname, char *driver, int capacity) {
    struct ethtool_drvinfo info;
    memset(&info, 0, sizeof(info));
    info.cmd = ETHTOOL_GDRVINFO;
    int result = ethtool_query(ifname, &info);
    if (result < 0) return result;
    info.driver[sizeof(info.driver) - 1] = 0;
    if (capacity <= 0) return -EINVAL;
    strncpy(driver, info.driver, (size_t)capacity - 1);
    driver[capacity - 1] = 0;
    return 0;
}

int cln_ethtool_feature(const char *ifname, const char *feature) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int result = 0;
    // How many feature names there are, then the names, then the feature words.
    // struct ethtool_sset_info ends in a flexible array: one u32 per set asked for.
    uint64_t sset_storage[(sizeof(struct ethtool_sset_info) + sizeof(uint32_t) + 7) / 8];
    memset(sset_storage, 0, sizeof(sset_storage));
    struct ethtool_sset_info *sset = (struct ethtool_sset_info *)sset_storage;
    sset->cmd = ETHTOOL_GSSET_INFO;
    sset->sset_mask = 1ULL << ETH_SS_FEATURES;
    result = ethtool_request(fd, ifname, sset);
    if (result < 0) { close(fd); return result; }
    uint32_t count = sset->sset_mask ? sset->data[0] : 0;
    if (count == 0 || count > 4096) { close(fd); return -EOPNOTSUPP; }
    struct ethtool_gstrings *names = calloc(1, sizeof(*names) + (size_t)count * ETH_GSTRING_LEN);
    if (!names) { close(fd); return -ENOMEM; }
    names->cmd = ETHTOOL_GSTRINGS;
    names->string_set = ETH_SS_FEATURES;
    names->len = count;
    result = ethtool_request(fd, ifname, names);
    int bit = -1;
    if (result == 0) {
        for (uint32_t index = 0; index < names->len && index < count; index++) {
            const char *name = (const char *)names->data + (size_t)index * ETH_GSTRING_LEN;
            if (strncmp(name, feature, ETH_GSTRING_LEN) == 0) { bit = (int)index; break; }
        }
    }
    free(names);
    if (result < 0) { close(fd); return result; }
    if (bit < 0) { close(fd); return -ENOENT; }
    uint32_t blocks = (count + 31) / 32;
    struct ethtool_gfeatures *features = calloc(1, sizeof(*features) + blocks * sizeof(struct ethtool_get_features_block));
    if (!features) { close(fd); return -ENOMEM; }
    features->cmd = ETHTOOL_GFEATURES;
    features->size = blocks;
    result = ethtool_request(fd, ifname, features);
    int active = 0;
    if (result == 0) active = (features->features[bit / 32].active >> (bit % 32)) & 1;
    free(features);
    close(fd);
    return result < 0 ? result : active;
}

int cln_ethtool_rx_ring(const char *ifname, unsigned int *pending, unsigned int *maximum) {
    struct ethtool_ringparam ring;
    memset(&ring, 0, sizeof(ring));
    ring.cmd = ETHTOOL_GRINGPARAM;
    int result = ethtool_query(ifname, &ring);
    if (result < 0) return result;
    *pending = ring.rx_pending;
    *maximum = ring.rx_max_pending;
    return 0;
}
