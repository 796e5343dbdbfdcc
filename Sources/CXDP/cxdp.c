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

struct cxdp_object { struct bpf_object *object; };

cxdp_object *cxdp_open(const char *path)
{
    struct bpf_object *object = bpf_object__open_file(path, NULL);
    if (!object)
        return NULL;
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

int cxdp_link_attach(int program, uint32_t ifindex)
{
    LIBBPF_OPTS(bpf_link_create_opts, options, .flags = XDP_FLAGS_DRV_MODE);
    int fd = bpf_link_create(program, (int)ifindex, BPF_XDP, &options);
    return fd < 0 ? -errno : fd;
}

int cxdp_test_run(int fd, const void *frame, uint32_t length, uint32_t ingress_ifindex,
                  void *out, uint32_t out_capacity, uint32_t *out_length, uint32_t *action)
{
    // The kernel takes data_end as the frame's length and needs a real device for the ingress.
    struct xdp_md context = { .data_end = length, .ingress_ifindex = ingress_ifindex };
    LIBBPF_OPTS(bpf_test_run_opts, options,
        .data_in = frame, .data_size_in = length,
        .data_out = out, .data_size_out = out_capacity,
        .ctx_in = &context, .ctx_size_in = sizeof(context),
        .repeat = 1);
    int err = bpf_prog_test_run_opts(fd, &options);
    if (err)
        return err;
    *out_length = options.data_size_out;
    *action = options.retval;
    return 0;
}
