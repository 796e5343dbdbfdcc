// Data-plane glue for LinuxIO/DataPlane (worker processes): the batched socket calls that
// glibc declares only under _GNU_SOURCE, which Swift's Glibc module does not see.
// Swift must not define _GNU_SOURCE itself (it changes bind/getsockname argument types), so
// this header declares a layout-identical `struct ldp_mmsghdr` and thin wrappers; the .c file
// checks the layout against glibc's `struct mmsghdr` at compile time.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/// Same layout as glibc's `struct mmsghdr`.
struct ldp_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

/// recvmmsg(2) without a timeout. Returns the number of messages received, or -errno.
int ldp_recvmmsg(int fd, struct ldp_mmsghdr *messages, unsigned int count, int flags);

/// sendmmsg(2). Returns the number of messages sent (possibly fewer than `count`: the error
/// belongs to the first unsent one), or -errno when not even the first could be sent.
int ldp_sendmmsg(int fd, struct ldp_mmsghdr *messages, unsigned int count, int flags);

/// SIOCGIFMTU (ioctl is variadic, which Swift cannot call): the MTU of interface `name`, asked
/// through any socket `fd` of the caller's network namespace. Returns the MTU or -errno.
int ldp_interface_mtu(int fd, const char *name);

/// Writes one UDP_SEGMENT control message (GSO segment size) into `buffer` (at least
/// ldp_udp_segment_cmsg_space() bytes) and returns its length for msg_controllen.
size_t ldp_udp_segment_cmsg(void *buffer, uint16_t segment_size);
size_t ldp_udp_segment_cmsg_space(void);

/// Moves the calling *thread* into the network namespace at `path` (e.g. /var/run/netns/NAME,
/// as `ip netns add` creates). Sockets it opens afterwards live in that namespace. Used to run
/// a worker on a thread inside a lab namespace. Returns 0 or -errno.
int ldp_enter_network_namespace(const char *path);
