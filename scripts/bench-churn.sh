#!/usr/bin/env bash
# Listener-churn benchmark (issue #13 "Cost"): receiver hosts on many links join and leave
# follow-output groups while static streams forward; static streams must lose nothing. See
# bench/README.md "Listener churn".
#
#   scripts/bench-churn.sh            16 links × 8 groups, 80 joins+leaves/s for 30 s (~45 s)
#   scripts/bench-churn.sh --smoke    4 links × 4 groups, 20/s for 10 s (< 30 s); exit 1 on loss
#   scripts/bench-churn.sh --help     every knob
#
# Needs root, a C compiler, python3 and an mcrelay binary (--mcrelay PATH, default .build/release/mcrelay).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SWIFT_BACKTRACE=enable=no PYTHONDONTWRITEBYTECODE=1
PYTHONPATH="$here/bench${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m e2e.churn "$@"
