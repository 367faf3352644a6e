#!/bin/bash
# SPDX-License-Identifier: MIT
# ctl.sh - the controller end to end: a real gridvmctld (SQLite store in a
# temporary directory, a grid key made as the tests make it) under
# gridvm-ctl-load's fake agents and submits, for several grid sizes; side
# by side the scheduling library alone and the SQLite store alone on the
# same hosts and jobs. Prints a markdown table (and, with --json FILE, the
# raw numbers); docs/bench-controller.md records a run.
#   [SIZES='HOSTS:JOBS ...'] bench/ctl.sh [--quick] [--json FILE] [-- EXTRA gridvmctld OPTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=0 JSON=
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--json) JSON=$2; shift ;;
	--) shift; break ;;
	*) echo "usage: bench/ctl.sh [--quick] [--json FILE] [-- gridvmctld options]" >&2; exit 2 ;;
	esac
	shift
done
[ -d "$BUILD" ] || meson setup "$BUILD" -Dwerror=true >/dev/null
ninja -C "$BUILD" programs/gridvmctld bench/gridvm-ctl-load >/dev/null
CTLD=$BUILD/programs/gridvmctld LOAD=$BUILD/bench/gridvm-ctl-load
TMP=$(mktemp -d /var/tmp/gridvm-ctl-bench.XXXXXX)
CTL_PID=
cleanup() {
	[ -n "$CTL_PID" ] && kill "$CTL_PID" 2>/dev/null && wait "$CTL_PID" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

# HOSTS:JOBS per run
if [ -n "${SIZES:-}" ]; then :
elif [ "$QUICK" = 1 ]; then
	SIZES="200:1000"
else
	SIZES="100:800 1000:5000 2000:8000"
fi
(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$TMP/grid.key")

echo "# $(date -u '+%F %H:%M') UTC, $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), load $(cut -d' ' -f1 /proc/loadavg)"
echo "# gridvmctld options: --report-interval 2s --max-moves 0 $*"
echo
echo "| hosts | jobs | submits/s | bindings/s (agents saw) | bindings/s (controller) | bound p50 s | p99 s | completions/s (agents) | completions/s (controller) | reports | report mean ms | library alone placements/s | store alone puts/s | store alone bindings/s |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
: >"$TMP/all.json"
port=17990
for s in $SIZES; do
	hosts=${s%:*} jobs=${s#*:}
	port=$((port + 1))
	d=$TMP/run-$hosts
	mkdir -p "$d"
	"$CTLD" --listen "127.0.0.1:$port" --store "sqlite:$d/controller.db" --data-dir "$d" \
		--grid-key "$TMP/grid.key" --report-interval 2s --max-moves 0 "$@" 2>"$d/ctl.log" &
	CTL_PID=$!
	for _ in $(seq 50); do grep -q "controller on" "$d/ctl.log" && break; sleep 0.1; done
	ok=1
	"$LOAD" --controller "127.0.0.1:$port" --key "$TMP/grid.key" --hosts "$hosts" \
		--jobs "$jobs" --interval 2 --json >"$d/load.json" || ok=0
	kill "$CTL_PID"; wait "$CTL_PID" 2>/dev/null || true; CTL_PID=
	if [ "$ok" = 0 ]; then
		echo "| $hosts | $jobs | the run failed (gridvm-ctl-load said why above) |"
		continue
	fi
	"$LOAD" --alone --hosts "$hosts" --jobs "$jobs" --store-dir "$d" --json >"$d/alone.json"
	python3 - "$d/load.json" "$d/alone.json" <<'EOF' | tee -a "$TMP/rows"
import json, sys
l = json.load(open(sys.argv[1])); a = json.load(open(sys.argv[2]))
print(f"| {l['hosts']:,} | {l['jobs']:,} | {l['submits_per_s']:,.0f} | {l['bindings_per_s']:,.0f} | "
      f"{l['ctl_bindings_per_s']:,.0f} | {l['bind_latency_p50_s']:.2f} | {l['bind_latency_p99_s']:.2f} | "
      f"{l['completions_per_s']:,.0f} | {l['ctl_completions_per_s']:,.0f} | {l['reports']:,} | "
      f"{l['report_ms_mean']:.1f} | {a['library_placements_per_s']:,.0f} | {a['store_puts_per_s']:,.0f} | "
      f"{a['store_bindings_per_s']:,.0f} |")
EOF
	python3 -c 'import json,sys; l=json.load(open(sys.argv[1])); l["alone"]=json.load(open(sys.argv[2])); print(json.dumps(l))' \
		"$d/load.json" "$d/alone.json" >>"$TMP/all.json"
done
echo "# load after: $(cut -d' ' -f1 /proc/loadavg)"
[ -z "$JSON" ] || cp "$TMP/all.json" "$JSON"
