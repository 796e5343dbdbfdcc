// See include/linuxio_dataplane.h.
#define _GNU_SOURCE
#include "linuxio_dataplane.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

_Static_assert(sizeof(struct ldp_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");
_Static_assert(offsetof(struct ldp_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "mmsghdr layout");

int ldp_recvmmsg(int fd, struct ldp_mmsghdr *messages, unsigned int count, int flags) {
    int n = recvmmsg(fd, (struct mmsghdr *)messages, count, flags, NULL);
    return n < 0 ? -errno : n;
}

int ldp_sendmmsg(int fd, struct ldp_mmsghdr *messages, unsigned int count, int flags) {
    int n = sendmmsg(fd, (struct mmsghdr *)messages, count, flags);
    return n < 0 ? -errno : n;
}

int ldp_enter_network_namespace(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = setns(fd, CLONE_NEWNET);
    int saved = errno;
    close(fd);
    return rc == 0 ? 0 : -saved;
}

int ldp_interface_mtu(int fd, const char *name) {
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    size_t length = strlen(name);
    if (length >= IFNAMSIZ) return -ENAMETOOLONG;
    memcpy(request.ifr_name, name, length);
    if (ioctl(fd, SIOCGIFMTU, &request) != 0) return -errno;
    return request.ifr_mtu;
}

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

size_t ldp_udp_segment_cmsg_space(void) { return CMSG_SPACE(sizeof(uint16_t)); }

size_t ldp_udp_segment_cmsg(void *buffer, uint16_t segment_size) {
    memset(buffer, 0, CMSG_SPACE(sizeof(uint16_t)));
    struct cmsghdr *header = (struct cmsghdr *)buffer;
    header->cmsg_level = IPPROTO_UDP;  // SOL_UDP
    header->cmsg_type = UDP_SEGMENT;
    header->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(header), &segment_size, sizeof(segment_size));
    return CMSG_SPACE(sizeof(uint16_t));
}
