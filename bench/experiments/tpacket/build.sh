#!/usr/bin/env bash
# Builds the AF_PACKET ring relay experiment (issue #14, bench rows packet-c and tpacket-c).
#
#   bench/experiments/tpacket/build.sh [OUTDIR]     default OUTDIR: .build/tpacket (repository root)
#
# OUTDIR/tpacket_relay: one C file and the shared ../common/relay_rules.h; no library beyond libc.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="${1:-$repo/.build/tpacket}"
mkdir -p "$out"
clang="$(test -x /opt/swift/usr/bin/clang && echo /opt/swift/usr/bin/clang || echo clang)"
cc="${CC:-$(command -v cc || echo "$clang")}"  # the Swift toolchain's clang when there is no cc
"$cc" -O2 -g -Wall -Wextra -Werror -std=gnu11 "$here/tpacket_relay.c" -o "$out/tpacket_relay"
echo "built $out/tpacket_relay"
