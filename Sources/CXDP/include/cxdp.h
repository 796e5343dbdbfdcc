// A narrow face of libbpf (Debian: libbpf-dev) for loading bpf/mcrelay_xdp.o and running its
// programs with BPF_PROG_TEST_RUN. Plain types only: libbpf's headers pull in <linux/bpf.h>,
// whose struct bpf_insn clashes with libpcap's in any Swift module that sees both.
#ifndef CXDP_H
#define CXDP_H
#include <stdint.h>
#include <stddef.h>

typedef struct cxdp_object cxdp_object;

// NULL with errno set when the file cannot be opened or the kernel refuses a program
// (libbpf prints the verifier's log on stderr). Program `skip` (NULL: none) is not loaded.
cxdp_object *cxdp_open(const char *path, const char *skip);
// Whether the kernel lets XDP programs call bpf_xdp_adjust_meta (it loads a
// four-instruction program making that call): 1 yes, 0 no, or a negative errno when it could not tell.
int cxdp_xdp_metadata_helper(void);
void cxdp_close(cxdp_object *object);
// libbpf's text for an error of its own (errno 4000 and up) or a system errno, into `buffer`.
void cxdp_strerror(int err, char *buffer, size_t size);
// File descriptors, or -1 when the object has no such program or map.
int cxdp_program_fd(cxdp_object *object, const char *name);
int cxdp_map_fd(cxdp_object *object, const char *name);
// 0, or a negative errno.
int cxdp_map_update(int map, const void *key, const void *value);
int cxdp_map_delete(int map, const void *key);
// Puts device `ifindex` of the network namespace at `netns_path` (e.g. /run/netns/NAME; NULL:
// the caller's) into devmap `map`, with devmap egress program `program` (-1: none). The kernel
// resolves the index in the calling thread's namespace, so this thread enters it for the update.
int cxdp_devmap_add(int map, uint32_t ifindex, int program, const char *netns_path);
// Per-CPU maps of struct traffic { u64 packets, bytes } (the program's counters): sets the
// entry at `key` to zero on every CPU, or sums it over the CPUs. 0, or a negative errno.
int cxdp_traffic_zero(int map, const void *key);
int cxdp_traffic_sum(int map, const void *key, uint64_t *packets, uint64_t *bytes);
// Attaches XDP program `program` to device `ifindex` of the namespace at `netns_path` in
// native (driver) mode; `program` -1 detaches. 0, or a negative errno.
int cxdp_attach(uint32_t ifindex, int program, const char *netns_path);
// Attaches XDP program `program` to device `ifindex` of the caller's namespace in native
// (driver) mode, or generic (skb) mode when `generic` is not 0, through a BPF link: the link's file descriptor (close-on-exec), or a negative
// errno. The kernel detaches the program when the last descriptor of the link closes, so a
// daemon that dies, however it dies, leaves no program forwarding behind it.
int cxdp_link_attach(int program, uint32_t ifindex, int generic);
// The device's XDP features (netdev generic netlink, kernel 6.3+: NETDEV_A_DEV_XDP_FEATURES,
// a mask of enum netdev_xdp_act) in the caller's namespace. 0, or a negative errno (-ENOENT:
// the kernel has no netdev family, or no such device).
int cxdp_xdp_features(uint32_t ifindex, uint64_t *features);
// enum netdev_xdp_act bits (linux/netdev.h, absent from older userland headers).
#define CXDP_XDP_ACT_BASIC 1u
#define CXDP_XDP_ACT_REDIRECT 2u
#define CXDP_XDP_ACT_NDO_XMIT 4u
// Runs program `fd` once on `frame` (`length` bytes, of which the first `meta_length` are XDP
// metadata in front of the frame) as received on device `ingress_ifindex`; on success (0)
// `*action` is the XDP action and `out` holds `*out_length` bytes after it: `*out_meta_length`
// bytes of metadata, then the frame.
int cxdp_test_run(int fd, const void *frame, uint32_t length, uint32_t meta_length, uint32_t ingress_ifindex,
                  void *out, uint32_t out_capacity, uint32_t *out_length, uint32_t *out_meta_length,
                  uint32_t *action);
#endif
