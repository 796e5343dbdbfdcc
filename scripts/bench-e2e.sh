#!/usr/bin/env bash
# End-to-end relay benchmark: mcrelay vs socat vs the kernel's multicast forwarding (smcroute),
# in three network namespaces with one paced generator (bench/mcgen.c; trafgen optional). See
# bench/README.md.
#
#   scripts/bench-e2e.sh            full run (~8-15 min): zero-loss search for every relay ×
#                                   {1,100} streams × {64,1316} B; prints the table, writes
#                                   bench/results/e2e-latest.json and BENCHMARKS.md's generated block
#   scripts/bench-e2e.sh --smoke    ~20 s: one low-rate trial per relay; exits non-zero when
#                                   the harness is broken (3) or a relay carried nothing (1); never judges speed
#   scripts/bench-e2e.sh --family ipv4,ipv6
#                                   every case over IPv4, then over IPv6 (each in its own lab;
#                                   `make bench` does this, bench/README.md "IPv6")
#   scripts/bench-e2e.sh --help     every knob
#
# Needs root, socat, smcroute, a C compiler (trafgen only with --generator trafgen); mcrelay rows need
# .build/release/mcrelay (or --mcrelay PATH) and are reported "not measured" without it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SWIFT_BACKTRACE=enable=no PYTHONDONTWRITEBYTECODE=1
# no cd: relative paths in the arguments (--mcrelay, --json, --markdown) stay the caller's
PYTHONPATH="$here/bench${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m e2e.main "$@"
