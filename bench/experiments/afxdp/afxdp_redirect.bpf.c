// SPDX-License-Identifier: GPL-2.0
// The XDP half of the AF_XDP relay experiment (issue #14, afxdp_relay.c): hand every IPv4 UDP
// frame to a multicast group (224.0.0.0/4) to the AF_XDP socket of the queue it arrived on, and
// everything else to the kernel. Deliberately coarse: the user-space side matches the exact
// (group, port) and counts what it does not carry, so the program needs no table of its own.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// one slot per rx queue; the relay puts its socket at its queue's index
struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u32);
} xsks SEC(".maps");

SEC("xdp")
int afxdp_redirect(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP)
        return XDP_PASS;
    if ((ip->daddr & bpf_htonl(0xf0000000)) != bpf_htonl(0xe0000000))
        return XDP_PASS;
    // no socket on this queue: the flags argument is the action, so the kernel keeps the frame
    return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
