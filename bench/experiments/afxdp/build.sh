#!/usr/bin/env bash
# Builds the AF_XDP relay experiment (issue #14): the XDP program and the user-space relay.
#
#   bench/experiments/afxdp/build.sh [OUTDIR]     default OUTDIR: .build/afxdp (repository root)
#
# OUTDIR/afxdp_redirect.bpf.o (clang -target bpf; the Swift toolchain's clang has the BPF
# backend) and OUTDIR/afxdp_relay (cc, -lbpf: libbpf-dev, Debian 12's libbpf 1.1, which has no
# xsk.h, so the AF_XDP rings are set up in afxdp_relay.c itself). The relay loads the object
# from its own directory by default.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="${1:-$repo/.build/afxdp}"
mkdir -p "$out"
clang="${BPF_CLANG:-$(test -x /opt/swift/usr/bin/clang && echo /opt/swift/usr/bin/clang || echo clang)}"
test -f /usr/include/bpf/bpf_helpers.h || { echo "build.sh: /usr/include/bpf missing: apt-get install libbpf-dev" >&2; exit 1; }
"$clang" -O2 -g -Wall -Werror -target bpf -I"/usr/include/$(uname -m)-linux-gnu" \
    -c "$here/afxdp_redirect.bpf.c" -o "$out/afxdp_redirect.bpf.o"
cc="${CC:-$(command -v cc || echo "$clang")}"  # the Swift toolchain's clang when there is no cc
"$cc" -O2 -g -Wall -Wextra -Werror -std=gnu11 "$here/afxdp_relay.c" -o "$out/afxdp_relay" -lbpf
echo "built $out/afxdp_relay and $out/afxdp_redirect.bpf.o"
