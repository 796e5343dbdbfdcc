// SPDX-License-Identifier: GPL-2.0
// The receivers' side of the benchmark's mcrelay-xdp rows with --xdp-receivers pass: an XDP
// program on rcvN that passes every frame. A native redirect into a veth needs the peer to have
// a NAPI, which GRO or an XDP program gives it; this gives it without GRO's per-frame work
// (for UDP to a group nothing coalesces, but GRO still parses each frame and looks up a UDP
// socket), which on veth runs on the relay's core. Built by bench/e2e/drivers.py with the
// BPF-capable clang `make bpf` uses.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int pass(struct xdp_md *ctx)
{
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
