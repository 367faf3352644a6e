#!/bin/bash
# SPDX-License-Identifier: MIT
# sim.sh - the scheduler simulator's benchmark: one synthetic trace, every
# policy side by side (FCFS, EASY backfill, each online policy, batch with
# each planner, with and without re-planning, failures with several
# checkpoint intervals), then the library's decision rate on 1,000 and
# 10,000 hosts. Writes docs/bench-sim.md, docs/bench-sim.json and
# docs/bench-sim.svg (bench/sim.py does the runs and the report).
#   bench/sim.sh [--quick]      (--quick: smaller traces, for a try)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -d "$BUILD" ] || meson setup "$BUILD" -Dwerror=true >/dev/null
ninja -C "$BUILD" programs/gridvm-sim >/dev/null
exec python3 bench/sim.py --sim "$BUILD/programs/gridvm-sim" "$@"
