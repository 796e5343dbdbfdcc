#define _GNU_SOURCE  // setns
#include "cxdp.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <stdlib.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

struct cxdp_object { struct bpf_object *object; };

cxdp_object *cxdp_open(const char *path, const char *skip)
{
    struct bpf_object *object = bpf_object__open_file(path, NULL);
    if (!object)
        return NULL;
    struct bpf_program *skipped = skip ? bpf_object__find_program_by_name(object, skip) : NULL;
    if (skipped)
        bpf_program__set_autoload(skipped, false);
    int err = bpf_object__load(object);
    if (err) {
        bpf_object__close(object);
        errno = -err;
        return NULL;
    }
    struct cxdp_object *handle = malloc(sizeof(*handle));
    if (!handle) {
        bpf_object__close(object);
        errno = ENOMEM;
        return NULL;
    }
    handle->object = object;
    return handle;
}

int cxdp_xdp_metadata_helper(void)
{
    // Not libbpf_probe_bpf_helper: libbpf 1.1 reads only "invalid func"/"unknown func" as
    // unsupported, and newer verifiers say "program of this type cannot use helper" (it then
    // answers "supported"). The call the ingress program makes, loaded on its own, is exact.
    struct bpf_insn program[] = {
        { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_2, .imm = 0 },
        { .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_xdp_adjust_meta },
        { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = XDP_PASS },
        { .code = BPF_JMP | BPF_EXIT },
    };
    int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, NULL, "GPL", program, sizeof(program) / sizeof(program[0]), NULL);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    // EINVAL is the verifier's refusal; EPERM and the like say nothing about the helper
    return errno == EINVAL ? 0 : -errno;
}

void cxdp_strerror(int err, char *buffer, size_t size)
{
    if (libbpf_strerror(err, buffer, size) != 0)
        snprintf(buffer, size, "error %d", err);
}

void cxdp_close(cxdp_object *object)
{
    if (!object)
        return;
    bpf_object__close(object->object);
    free(object);
}

int cxdp_program_fd(cxdp_object *object, const char *name)
{
    struct bpf_program *program = bpf_object__find_program_by_name(object->object, name);
    return program ? bpf_program__fd(program) : -1;
}

int cxdp_map_fd(cxdp_object *object, const char *name)
{
    return bpf_object__find_map_fd_by_name(object->object, name);
}

int cxdp_map_update(int map, const void *key, const void *value)
{
    return bpf_map_update_elem(map, key, value, BPF_ANY);
}

int cxdp_map_delete(int map, const void *key)
{
    return bpf_map_delete_elem(map, key);
}

struct traffic { uint64_t packets, bytes; };

int cxdp_traffic_zero(int map, const void *key)
{
    int cpus = libbpf_num_possible_cpus();
    if (cpus < 0)
        return cpus;
    struct traffic *values = calloc((size_t)cpus, sizeof(*values));
    if (!values)
        return -ENOMEM;
    int err = bpf_map_update_elem(map, key, values, BPF_ANY);
    free(values);
    return err;
}

int cxdp_traffic_sum(int map, const void *key, uint64_t *packets, uint64_t *bytes)
{
    int cpus = libbpf_num_possible_cpus();
    if (cpus < 0)
        return cpus;
    struct traffic *values = calloc((size_t)cpus, sizeof(*values));
    if (!values)
        return -ENOMEM;
    int err = bpf_map_lookup_elem(map, key, values);
    *packets = *bytes = 0;
    for (int cpu = 0; !err && cpu < cpus; cpu++) {
        *packets += values[cpu].packets;
        *bytes += values[cpu].bytes;
    }
    free(values);
    return err;
}

// Runs `body(argument)` with this thread in the namespace at `path` (NULL: where it is).
static int in_namespace(const char *path, int (*body)(void *), void *argument)
{
    if (!path)
        return body(argument);
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = open(path, O_RDONLY | O_CLOEXEC);
    int err = 0;
    if (home < 0 || target < 0 || setns(target, CLONE_NEWNET) != 0) {
        err = -errno;
    } else {
        err = body(argument);
        if (setns(home, CLONE_NEWNET) != 0)
            abort();  // this thread would stay in the wrong namespace: nothing sane to continue with
    }
    if (home >= 0)
        close(home);
    if (target >= 0)
        close(target);
    return err;
}

struct devmap_update { int map; uint32_t ifindex; int program; };

static int devmap_update(void *argument)
{
    struct devmap_update *u = argument;
    struct bpf_devmap_val value = { .ifindex = u->ifindex, .bpf_prog.fd = u->program };
    return bpf_map_update_elem(u->map, &u->ifindex, &value, BPF_ANY);
}

int cxdp_devmap_add(int map, uint32_t ifindex, int program, const char *netns_path)
{
    struct devmap_update u = { map, ifindex, program };
    return in_namespace(netns_path, devmap_update, &u);
}

struct attach { uint32_t ifindex; int program; };

static int attach(void *argument)
{
    struct attach *a = argument;
    return bpf_xdp_attach((int)a->ifindex, a->program, XDP_FLAGS_DRV_MODE, NULL);
}

int cxdp_attach(uint32_t ifindex, int program, const char *netns_path)
{
    struct attach a = { ifindex, program };
    return in_namespace(netns_path, attach, &a);
}

int cxdp_link_attach(int program, uint32_t ifindex, int generic)
{
    LIBBPF_OPTS(bpf_link_create_opts, options, .flags = generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE);
    int fd = bpf_link_create(program, (int)ifindex, BPF_XDP, &options);
    return fd < 0 ? -errno : fd;
}

int cxdp_test_run(int fd, const void *frame, uint32_t length, uint32_t meta_length, uint32_t ingress_ifindex,
                  void *out, uint32_t out_capacity, uint32_t *out_length, uint32_t *out_meta_length,
                  uint32_t *action)
{
    // The kernel takes data_end as the input's length (metadata included), data as where the
    // frame starts after `meta_length` bytes of XDP metadata, and needs a real device for the
    // ingress. The output starts at the metadata too; ctx_out.data says how long it is.
    struct xdp_md context = { .data = meta_length, .data_end = length, .ingress_ifindex = ingress_ifindex };
    struct xdp_md after = {};
    LIBBPF_OPTS(bpf_test_run_opts, options,
        .data_in = frame, .data_size_in = length,
        .data_out = out, .data_size_out = out_capacity,
        .ctx_in = &context, .ctx_size_in = sizeof(context),
        .ctx_out = &after, .ctx_size_out = sizeof(after),
        .repeat = 1);
    int err = bpf_prog_test_run_opts(fd, &options);
    if (err)
        return err;
    *out_length = options.data_size_out;
    *out_meta_length = after.data;
    *action = options.retval;
    return 0;
}

// Generic netlink, one request and its answer, on a socket of its own.
struct nl_request { struct nlmsghdr header; struct genlmsghdr genl; char attributes[64]; };

static int nl_transact(int fd, struct nl_request *request, char *answer, size_t capacity)
{
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    if (sendto(fd, request, request->header.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return -errno;
    ssize_t length = recv(fd, answer, capacity, 0);
    if (length < 0)
        return -errno;
    struct nlmsghdr *header = (struct nlmsghdr *)answer;
    if (length < (ssize_t)sizeof(*header) || !NLMSG_OK(header, (unsigned)length))
        return -EBADMSG;
    if (header->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *error = NLMSG_DATA(header);
        return error->error ? error->error : -EBADMSG;
    }
    return (int)length;
}

static void nl_put(struct nl_request *request, uint16_t type, const void *value, uint16_t size)
{
    struct nlattr *attribute = (struct nlattr *)((char *)request + NLMSG_ALIGN(request->header.nlmsg_len));
    attribute->nla_type = type;
    attribute->nla_len = (uint16_t)(NLA_HDRLEN + size);
    memcpy((char *)attribute + NLA_HDRLEN, value, size);
    request->header.nlmsg_len = NLMSG_ALIGN(request->header.nlmsg_len) + NLA_ALIGN(attribute->nla_len);
}

// The first attribute `type` of a generic netlink answer, or NULL.
static struct nlattr *nl_find(char *answer, int length, uint16_t type)
{
    struct nlmsghdr *header = (struct nlmsghdr *)answer;
    int offset = NLMSG_HDRLEN + GENL_HDRLEN;
    while (offset + NLA_HDRLEN <= (int)header->nlmsg_len && offset + NLA_HDRLEN <= length) {
        struct nlattr *attribute = (struct nlattr *)(answer + offset);
        if (attribute->nla_len < NLA_HDRLEN)
            return NULL;
        if ((attribute->nla_type & NLA_TYPE_MASK) == type)
            return attribute;
        offset += NLA_ALIGN(attribute->nla_len);
    }
    return NULL;
}

int cxdp_xdp_features(uint32_t ifindex, uint64_t *features)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    if (fd < 0)
        return -errno;
    struct timeval timeout = { .tv_sec = 1 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    char answer[8192];
    struct nl_request request = {
        .header = { .nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN), .nlmsg_type = GENL_ID_CTRL, .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 1 },
        .genl = { .cmd = CTRL_CMD_GETFAMILY, .version = 1 },
    };
    nl_put(&request, CTRL_ATTR_FAMILY_NAME, "netdev", 7);
    int length = nl_transact(fd, &request, answer, sizeof(answer));
    struct nlattr *id = length > 0 ? nl_find(answer, length, CTRL_ATTR_FAMILY_ID) : NULL;
    if (!id) {
        close(fd);
        return length < 0 ? length : -ENOENT;
    }
    uint16_t family;
    memcpy(&family, (char *)id + NLA_HDRLEN, sizeof(family));
    // NETDEV_CMD_DEV_GET (1) with NETDEV_A_DEV_IFINDEX (1); the answer's NETDEV_A_DEV_XDP_FEATURES (3).
    struct nl_request get = {
        .header = { .nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN), .nlmsg_type = family, .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 2 },
        .genl = { .cmd = 1, .version = 1 },
    };
    nl_put(&get, 1, &ifindex, sizeof(ifindex));
    length = nl_transact(fd, &get, answer, sizeof(answer));
    close(fd);
    if (length < 0)
        return length;
    struct nlattr *mask = nl_find(answer, length, 3);
    if (!mask || mask->nla_len < NLA_HDRLEN + sizeof(uint64_t))
        return -ENOENT;
    memcpy(features, (char *)mask + NLA_HDRLEN, sizeof(*features));
    return 0;
}
