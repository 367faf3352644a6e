#!/bin/bash
# SPDX-License-Identifier: MIT
# start-template.sh - instant start against a cold boot (bench/start_template.py):
# first output and exit over 20 runs (cold, template, the template restored
# by hand with plain QEMU), PSS per idle VM for 8 VMs, jobs per minute for
# 200 one-second jobs. Results go to docs/bench-template.md by hand.
#   bench/start-template.sh [--runs N] [--idle N] [--jobs N] [--parallel N]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export GV=${GV:-$ROOT/build/programs/gridvm} GVD=${GVD:-$ROOT/build/programs/gridvmd}
exec python3 "$ROOT/bench/start_template.py" --markdown "$@"
