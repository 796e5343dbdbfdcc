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

// Sums are kept in "native order over network-order data" (RFC 1071 section 2(B)): 16-bit
// words are loaded as they lie in memory, and the folded result is stored the same way, so no
// byte swapping is needed on either endianness. Constants added to such a sum must be in
// network byte order too.
static inline uint64_t sum_bytes(const uint8_t *data, size_t length, uint64_t sum) {
    while (length >= 8) {
        uint32_t a, b;
        memcpy(&a, data, 4);
        memcpy(&b, data + 4, 4);
        sum += (uint64_t)a + b;
        data += 8;
        length -= 8;
    }
    if (length >= 4) {
        uint32_t a;
        memcpy(&a, data, 4);
        sum += a;
        data += 4;
        length -= 4;
    }
    if (length >= 2) {
        uint16_t a;
        memcpy(&a, data, 2);
        sum += a;
        data += 2;
        length -= 2;
    }
    if (length == 1) {
        // The odd byte is the first byte of a word whose second byte is zero.
        uint8_t last[2] = {data[0], 0};
        uint16_t a;
        memcpy(&a, last, 2);
        sum += a;
    }
    return sum;
}

static inline uint16_t fold(uint64_t sum) {
    sum = (sum & 0xffffffffu) + (sum >> 32);
    sum = (sum & 0xffffffffu) + (sum >> 32);
    sum = (sum & 0xffffu) + (sum >> 16);
    sum = (sum & 0xffffu) + (sum >> 16);
    sum = (sum & 0xffffu) + (sum >> 16);
    return (uint16_t)sum;
}

// Template layout: bytes 0..41 the header, 44..47 the IPv4 header's partial sum, 48..51 the
// UDP partial sum (pseudo header without length, plus the destination port).
enum { IP = 14, UDP = 34, IP_SUM = 44, UDP_SUM = 48 };

void ldp_packet_template(uint8_t *t, const uint8_t source_mac[6], uint32_t source, uint32_t destination,
                         uint16_t source_port, uint16_t destination_port, uint8_t ttl) {
    memset(t, 0, LDP_PACKET_TEMPLATE_BYTES);
    // 01:00:5e + the low 23 bits of the group (RFC 1112 section 6.4).
    const uint8_t *group = (const uint8_t *)&destination;
    t[0] = 0x01; t[1] = 0x00; t[2] = 0x5e;
    t[3] = group[1] & 0x7f; t[4] = group[2]; t[5] = group[3];
    memcpy(t + 6, source_mac, 6);
    t[12] = 0x08; t[13] = 0x00;
    uint8_t *ip = t + IP;
    ip[0] = 0x45;
    ip[6] = 0x40;  // DF (as the UDP path sends), ID 0 (RFC 6864: any value for atomic datagrams)
    ip[8] = ttl;
    ip[9] = IPPROTO_UDP;
    memcpy(ip + 12, &source, 4);
    memcpy(ip + 16, &destination, 4);
    uint16_t sport = htons(source_port);
    uint16_t port = htons(destination_port);
    memcpy(t + UDP, &sport, 2);
    memcpy(t + UDP + 2, &port, 2);

    uint32_t ip_sum = (uint32_t)fold(sum_bytes(ip, 20, 0));
    memcpy(t + IP_SUM, &ip_sum, 4);
    uint64_t pseudo = sum_bytes(ip + 12, 8, 0) + htons(IPPROTO_UDP);
    uint32_t udp_sum = (uint32_t)fold(pseudo + sport + port);
    memcpy(t + UDP_SUM, &udp_sum, 4);
}

void ldp_packet_header(uint8_t *out, const uint8_t *t, const void *payload, size_t length, int udp_checksum) {
    memcpy(out, t, LDP_PACKET_HEADER_BYTES);
    uint16_t total = htons((uint16_t)(length + 28));
    uint16_t udp_length = htons((uint16_t)(length + 8));
    uint32_t ip_sum, udp_sum;
    memcpy(&ip_sum, t + IP_SUM, 4);
    memcpy(&udp_sum, t + UDP_SUM, 4);

    memcpy(out + IP + 2, &total, 2);
    uint16_t ip_check = (uint16_t)~fold((uint64_t)ip_sum + total);
    memcpy(out + IP + 10, &ip_check, 2);

    memcpy(out + UDP + 4, &udp_length, 2);
    uint16_t udp_check = 0;  // 0: no checksum (legal for UDP over IPv4)
    if (udp_checksum) {
        // The UDP length counts twice: in the pseudo header and in the UDP header.
        uint64_t sum = sum_bytes((const uint8_t *)payload, length, (uint64_t)udp_sum + udp_length + udp_length);
        udp_check = (uint16_t)~fold(sum);
        if (udp_check == 0) udp_check = 0xffff;  // a computed 0 is sent as all ones (RFC 768)
    }
    memcpy(out + UDP + 6, &udp_check, 2);
}

uint16_t ldp_internet_checksum(const void *data, size_t length) {
    return (uint16_t)~fold(sum_bytes((const uint8_t *)data, length, 0));
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
