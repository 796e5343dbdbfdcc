// SPDX-License-Identifier: GPL-2.0
// mcrelay's XDP forwarding path (issue #14), for the common rule shape: untagged Ethernet,
// IPv4 without options or IPv6 without extension headers, UDP to a multicast group.
//
//   mcrelay_xdp_ingress   on an input interface: finds the frame's rule (same lookup order as
//                         RelayCore's RouteTable: source-specific, then any source), takes the
//                         UDP checksum's shared part from the received checksum (RelayCore's
//                         EgressFrame.checksumCarry: no pass over the payload unless the field
//                         is 0 or an offload's partial sum), puts both in the frame's metadata
//                         (`struct carried`) and redirects it into the `egress` devmap; anything
//                         else goes to the kernel (XDP_PASS), where the packet path handles it.
//   mcrelay_xdp_ingress_no_meta
//                         the same without the metadata, for kernels whose verifier refuses
//                         bpf_xdp_adjust_meta to XDP programs (measured: 6.18.44-fc-v1300; the
//                         loader probes the helper and loads only the program the kernel takes).
//   mcrelay_xdp_egress    devmap egress program: per output device, rewrites the copy into
//                         the frame RelayCore's EgressFrame.writeHeader builds from the
//                         output's template, or drops the copy if the rule has no output there.
//                         It takes the rule and the checksum's shared part from the metadata:
//                         one rule lookup per frame, not per copy. A copy without that metadata
//                         (generic XDP, whose devmap programs run on an skb and lose it; a
//                         driver without metadata support) is parsed and looked up again here,
//                         giving the same bytes.
//   mcrelay_xdp_rewrite   the same rewrite as a plain XDP program taking the egress device
//                         from `test_egress`: BPF_PROG_TEST_RUN refuses devmap programs, and the
//                         differential test must run this code on frames.
//
// The maps are filled from RelayCore's XDPTables (Sources/RelayCore/Forwarding/XDPTables.swift),
// which defines the byte layout of every key and value below; templates are EgressFrame's own.
// Built by `make bpf` with clang -target bpf; see docs/xdp-facts.md.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TEMPLATE_BYTES 80
#define TEMPLATE_IP_SUM 64
#define TEMPLATE_UDP_SUM 68
#define TEMPLATE_HEADER_LENGTH 72
// Longest payload carried (a received checksum of 0 or an offload's partial sum is summed
// from the payload, and the verifier walks each loop iteration); a 1500-byte MTU needs at most
// 1472 bytes. Longer payloads take the packet path.
#define MAX_PAYLOAD 2048

struct rule_key {
    __u32 ifindex;
    __u16 port;        // network order, as in the UDP header
    __u8 family;       // 4 or 6
    __u8 has_source;   // 1: a source-specific rule
    __u8 group[16];    // IPv4: first 4 bytes, rest zero
    __u8 source[16];   // zero unless has_source
};

struct rule_value {
    __u32 rule;         // index of the rule in the plan
    __u32 max_payload;  // smallest payload limit over the rule's outputs
    __u32 single_egress;  // ifindex when the rule has one output, else 0 (broadcast)
    __u32 reserved;
};

struct output_key {
    __u32 rule;
    __u32 ifindex;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, struct rule_key);
    __type(value, struct rule_value);
} rules SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct output_key);
    __type(value, __u8[TEMPLATE_BYTES]);
} outputs SEC(".maps");

// Every output device of the plan, with mcrelay_xdp_egress attached to each entry.
struct {
    __uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
    __uint(max_entries, 256);
    __type(key, __u32);
    __type(value, struct bpf_devmap_val);
} egress SEC(".maps");

// Forwarder's counters (TrafficCounter, OutputCounter): packets and payload bytes per rule
// accepted (indexed by the rule's index in the plan) and per output sent (by output_key).
struct traffic {
    __u64 packets;
    __u64 bytes;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct traffic);
} rule_counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct output_key);
    __type(value, struct traffic);
} output_counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} test_egress SEC(".maps");

struct datagram {
    struct rule_key key;  // ifindex, port, family, group, source filled; has_source 0
    __u32 payload_offset;
    __u32 payload_length;
    __u16 source_port;    // network order
    __u16 checksum;       // the UDP checksum field as received (network order)
};

// What the ingress program found, handed to every copy's egress program in the frame's XDP
// metadata (in front of the frame; the devmap's clones copy it, bpf_xdp_adjust_head moves it).
struct carried {
    __u32 rule;             // index of the rule in the plan
    __u16 payload_offset;   // 42 or 62, in the frame as received
    __u16 payload_length;
    __u16 source_port;      // network order
    __u16 checksum_carry;   // EgressFrame.checksumCarry: the UDP checksum's part every copy shares
    __u32 tag;              // CARRIED_TAG: this program's metadata, in this layout
};
#define CARRIED_TAG 0x6d637832  // "mcx2"

static __always_inline __u16 fold(__u64 sum)
{
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)sum;
}

// The payload's sum as EgressFrame.sum takes it: 32-bit words as they lie in memory, then a
// 16-bit word, then the odd byte as the first byte of a zero-padded word. `offset` and `length`
// come from parse(), which checked that the payload lies inside the frame.
static __always_inline __u16 sum_payload(struct xdp_md *ctx, __u32 offset, __u32 length)
{
    __u8 *p = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    if (offset != 42 && offset != 62)
        return 0;
    p += offset;
    __u32 words = length / 4;
    __u64 sum = 0;
    for (int i = 0; i < MAX_PAYLOAD / 4; i++) {
        if (i >= words || (void *)(p + 4) > end)
            break;
        sum += *(__u32 *)p;
        p += 4;
    }
    if ((length & 2) && (void *)(p + 2) <= end) {
        sum += *(__u16 *)p;
        p += 2;
    }
    if ((length & 1) && (void *)(p + 1) <= end)
        sum += *p;
    return fold(sum);
}

// The checks of RelayCore's FrameParser for this shape; 0 when the frame is something else
// (which the packet path then parses, counts and drops or forwards itself).
static __always_inline int parse(struct xdp_md *ctx, struct datagram *out)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return 0;
    __u8 *ip = (__u8 *)(eth + 1);
    __u32 frame = (__u32)bpf_xdp_get_buff_len(ctx);
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        if ((void *)(ip + 28) > end || ip[0] != 0x45)  // options: packet path
            return 0;
        __u64 sum = 0;
        for (int i = 0; i < 20; i += 4)
            sum += *(__u32 *)(ip + i);
        if (fold(sum) != 0xffff)
            return 0;
        __u32 total = (__u32)ip[2] << 8 | ip[3];
        if (total < 28 || 14 + total > frame)
            return 0;
        if ((ip[6] & 0x3f) || ip[7])  // more fragments or an offset
            return 0;
        if (ip[9] != 17 || (ip[16] & 0xf0) != 0xe0)
            return 0;
        __u8 *udp = ip + 20;
        __u32 udp_length = (__u32)udp[4] << 8 | udp[5];
        if (udp_length < 8 || udp_length > total - 20)
            return 0;
        out->key.family = 4;
        __builtin_memcpy(out->key.group, ip + 16, 4);
        __builtin_memcpy(out->key.source, ip + 12, 4);
        out->key.port = *(__u16 *)(udp + 2);
        out->source_port = *(__u16 *)udp;
        out->checksum = *(__u16 *)(udp + 6);
        out->payload_offset = 42;
        out->payload_length = udp_length - 8;
        return 1;
    }
    if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        if ((void *)(ip + 48) > end || (ip[0] >> 4) != 6 || ip[6] != 17 || ip[24] != 0xff)
            return 0;
        __u32 length = (__u32)ip[4] << 8 | ip[5];
        if (length < 8 || 54 + length > frame)
            return 0;
        __u8 *udp = ip + 40;
        __u32 udp_length = (__u32)udp[4] << 8 | udp[5];
        if (udp_length != length || *(__u16 *)(udp + 6) == 0)
            return 0;
        out->key.family = 6;
        __builtin_memcpy(out->key.group, ip + 24, 16);
        __builtin_memcpy(out->key.source, ip + 8, 16);
        out->key.port = *(__u16 *)(udp + 2);
        out->source_port = *(__u16 *)udp;
        out->checksum = *(__u16 *)(udp + 6);
        out->payload_offset = 62;
        out->payload_length = udp_length - 8;
        return 1;
    }
    return 0;
}

// EgressFrame.checksumCarry: the part of the UDP checksum's sum every copy shares (source port,
// the UDP length twice, the payload), from the received checksum (RFC 1624): its complement less
// the received addresses, protocol and destination port. So a datagram corrupted on the way
// still fails at the receiver. A field of 0 (IPv4 without a checksum) or equal to the received
// pseudo header's sum (a local sender's checksum left to offload) is summed from the payload.
// The group and source are 16 bytes each in the key, zero past an IPv4 address's 4.
static __always_inline __u16 checksum_carry(struct xdp_md *ctx, struct datagram *d)
{
    __u64 addresses = bpf_htons(17);
    for (int i = 0; i < 16; i += 4)
        addresses += (__u64)*(__u32 *)(d->key.group + i) + *(__u32 *)(d->key.source + i);
    __u16 udp_length = bpf_htons((__u16)(d->payload_length + 8));
    __u16 field = d->checksum;
    if (field == 0 || field == fold(addresses + udp_length)) {
        __u64 sum = (__u64)d->source_port + udp_length + udp_length;
        return fold(sum + sum_payload(ctx, d->payload_offset, d->payload_length));
    }
    __u16 received = fold(addresses + d->key.port);
    return fold((__u64)(__u16)~received + (__u16)~field);
}

// RouteTable's order: the first source-specific rule for the source, else the any-source rule.
static __always_inline struct rule_value *find_rule(struct datagram *d, __u32 ifindex)
{
    d->key.ifindex = ifindex;
    d->key.has_source = 1;
    struct rule_value *rule = bpf_map_lookup_elem(&rules, &d->key);
    if (rule)
        return rule;
    struct rule_key any = d->key;
    any.has_source = 0;
    __builtin_memset(any.source, 0, sizeof(any.source));
    return bpf_map_lookup_elem(&rules, &any);
}

// `carry_metadata` is a constant at each call: the program without it never names the helper.
static __always_inline int ingress(struct xdp_md *ctx, const int carry_metadata)
{
    struct datagram d = {};
    if (!parse(ctx, &d))
        return XDP_PASS;
    struct rule_value *rule = find_rule(&d, ctx->ingress_ifindex);
    if (!rule || d.payload_length > rule->max_payload)
        return XDP_PASS;
    if (d.payload_length > MAX_PAYLOAD)
        return XDP_PASS;
    __u32 index = rule->rule;
    __u32 single_egress = rule->single_egress;
    struct traffic *accepted = bpf_map_lookup_elem(&rule_counters, &index);
    if (accepted) {  // per CPU: no atomics needed
        accepted->packets++;
        accepted->bytes += d.payload_length;
    }
    // (only worth summing for the metadata: without it each copy's egress program sums it)
    __u16 carry = carry_metadata ? checksum_carry(ctx, &d) : 0;
    // Without room for metadata (a driver that does not support it, a kernel that refuses the
    // helper) every copy's egress program finds the rule and the checksum's shared part itself.
    if (carry_metadata && bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct carried)) == 0) {
        struct carried *meta = (void *)(long)ctx->data_meta;
        if ((void *)(meta + 1) <= (void *)(long)ctx->data) {
            meta->rule = index;
            meta->payload_offset = (__u16)d.payload_offset;
            meta->payload_length = (__u16)d.payload_length;
            meta->source_port = d.source_port;
            meta->checksum_carry = carry;
            meta->tag = CARRIED_TAG;
        }
    }
    if (single_egress)
        return bpf_redirect_map(&egress, single_egress, XDP_PASS);
    // Every device of the map gets a copy; each device's egress program drops the copies of
    // rules without an output there. The input device never gets one (XDPTables refuses
    // rules that output to their input).
    return bpf_redirect_map(&egress, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS);
}

SEC("xdp")
int mcrelay_xdp_ingress(struct xdp_md *ctx)
{
    return ingress(ctx, 1);
}

SEC("xdp")
int mcrelay_xdp_ingress_no_meta(struct xdp_md *ctx)
{
    return ingress(ctx, 0);
}

// What an egress program needs of its copy: from the ingress program's metadata, or (without
// it) found again from the frame.
static __always_inline int carried_of(struct xdp_md *ctx, __u32 ingress, struct carried *c)
{
    struct carried *meta = (void *)(long)ctx->data_meta;
    if ((void *)(meta + 1) <= (void *)(long)ctx->data && meta->tag == CARRIED_TAG) {
        *c = *meta;
        return 1;
    }
    struct datagram d = {};
    if (!parse(ctx, &d))
        return 0;
    struct rule_value *rule = find_rule(&d, ingress);
    if (!rule || d.payload_length > MAX_PAYLOAD)
        return 0;
    c->rule = rule->rule;
    c->payload_offset = (__u16)d.payload_offset;
    c->payload_length = (__u16)d.payload_length;
    c->source_port = d.source_port;
    c->checksum_carry = checksum_carry(ctx, &d);
    return 1;
}

// EgressFrame.writeHeader on the frame in place: the payload stays where it is, the headers in
// front of it are replaced by the template's and the tail past the payload is cut.
static __always_inline int rewrite(struct xdp_md *ctx, __u32 ingress, __u32 egress_ifindex)
{
    struct carried c = {};
    if (!carried_of(ctx, ingress, &c))
        return XDP_DROP;
    struct output_key okey = { .rule = c.rule, .ifindex = egress_ifindex };
    __u8 *template = bpf_map_lookup_elem(&outputs, &okey);
    if (!template)
        return XDP_DROP;
    __u32 header = template[TEMPLATE_HEADER_LENGTH] == 42 ? 42 : 62;
    __u32 frame = (__u32)bpf_xdp_get_buff_len(ctx);  // 5.18+; ctx arithmetic upsets the verifier
    __u32 payload = c.payload_length;
    __u32 offset = c.payload_offset;
    if (payload > MAX_PAYLOAD || (offset != 42 && offset != 62) || offset + payload > frame)
        return XDP_DROP;
    if (bpf_xdp_adjust_head(ctx, (int)offset - (int)header))
        return XDP_DROP;
    __u32 tail = frame - offset - payload;  // Ethernet padding, bytes past UDP's length
    if (tail && bpf_xdp_adjust_tail(ctx, -(int)tail))
        return XDP_DROP;

    __u8 *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    if ((void *)(data + 42) > end)
        return XDP_DROP;
    __u16 port = c.source_port;
    __u16 udp_length = __builtin_bswap16((__u16)(payload + 8));
    // The output's part (template) and the part every copy shares (source port, lengths, payload).
    __u64 sum = *(__u32 *)(template + TEMPLATE_UDP_SUM);
    sum += c.checksum_carry;
    __u16 check = (__u16)~fold(sum);
    if (check == 0)
        check = 0xffff;
    if (header == 42) {
        __builtin_memcpy(data, template, 42);
        __u16 total = __builtin_bswap16((__u16)(payload + 28));
        *(__u16 *)(data + 16) = total;
        *(__u16 *)(data + 24) = (__u16)~fold((__u64)*(__u32 *)(template + TEMPLATE_IP_SUM) + total);
        *(__u16 *)(data + 34) = port;
        *(__u16 *)(data + 38) = udp_length;
        *(__u16 *)(data + 40) = check;
    } else {
        if ((void *)(data + 62) > end)
            return XDP_DROP;
        __builtin_memcpy(data, template, 62);
        *(__u16 *)(data + 18) = udp_length;
        *(__u16 *)(data + 54) = port;
        *(__u16 *)(data + 58) = udp_length;
        *(__u16 *)(data + 60) = check;
    }
    struct traffic *sent = bpf_map_lookup_elem(&output_counters, &okey);
    if (sent) {
        sent->packets++;
        sent->bytes += payload;
    }
    return XDP_PASS;  // for a devmap program: transmit this copy
}

SEC("xdp/devmap")
int mcrelay_xdp_egress(struct xdp_md *ctx)
{
    return rewrite(ctx, ctx->ingress_ifindex, ctx->egress_ifindex);
}

SEC("xdp")
int mcrelay_xdp_rewrite(struct xdp_md *ctx)
{
    __u32 zero = 0;
    __u32 *ifindex = bpf_map_lookup_elem(&test_egress, &zero);
    if (!ifindex)
        return XDP_ABORTED;
    return rewrite(ctx, ctx->ingress_ifindex, *ifindex);
}

char LICENSE[] SEC("license") = "GPL";
