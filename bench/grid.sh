#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/grid.sh - what the grid layer costs and what it gains: submit-to-
# running latency against `gridvm run` on one host, jobs per minute for
# short jobs against the same jobs run by hand round-robin over the hosts,
# and the makespan of one mixed batch under each policy and mode.
#
# How to run (root, Debian 12, the tree built, the guest prepared by
# scripts/setup.sh):
#
#   bench/grid.sh                  # everything (about 20 minutes); writes
#                                  # docs/bench-grid.md and docs/bench-grid.svg
#   bench/grid.sh --quick          # fewer jobs and runs (about 6 minutes)
#   bench/grid.sh --report-only    # re-write the doc from the last results
#   options (passed to bench/grid.py): --only latency,throughput,makespan
#     --latency-jobs 20 --throughput-jobs 100 --batch-jobs 24
#     --combos pack/online,spread/batch:min-min,...  --results DIR --doc FILE
#
# Binaries: GV, GVD and GVC (the CLI, the agent, the controller; default
# build/programs/*), e.g. GV=/tmp/b/programs/gridvm GVD=... GVC=... .
#
# The grid: four network-namespace hosts (tests/e2e/hosts.sh), unshaped
# links, a controller in h1's namespace (tests/e2e/grid.sh) and an agent on
# every host joined with --grid-cpus 2 --grid-memory 1G; the controller
# runs with its defaults (report interval 2 s) unless a part says
# otherwise. What each part does and measures: bench/grid.py. Raw results:
# /var/tmp/gridvm-bench-grid/results.json.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export ROOT
for a in "$@"; do
	if [ "$a" = --report-only ]; then exec python3 "$ROOT/bench/grid.py" "$@"; fi
done
# shellcheck source=../tests/e2e/lib.sh
source "$ROOT/tests/e2e/lib.sh"
# shellcheck source=../tests/e2e/hosts.sh
source "$ROOT/tests/e2e/hosts.sh"
GVC=${GVC:-"$ROOT/build/programs/gridvmctld"}
# shellcheck source=../tests/e2e/grid.sh
source "$ROOT/tests/e2e/grid.sh"

# Internal, for bench/grid.py: restart the controller of the parent's grid
# with other options (the store is kept: job ids go on, nothing is lost).
if [ "${1:-}" = --ctl-restart ]; then
	shift
	hosts_attach
	grid_ctl_stop
	grid_ctl_start "$@"
	exit 0
fi

GRID_AGENT_OPTS=(--grid-cpus 2 --grid-memory 1G)
hosts_up 4
grid_ctl_start --report-interval 2s
for i in 1 2 3 4; do
	grid_join "$i" "${GRID_AGENT_OPTS[@]}"
done
export GV GVD GVC GRID_CTL GRID_DIR HOSTS_ID HOSTS_DIR HOSTS_IPS HOSTS_N
export GRID_AGENT_OPTS_TEXT="${GRID_AGENT_OPTS[*]}"
python3 "$ROOT/bench/grid.py" "$@"
