#!/bin/bash
# SPDX-License-Identifier: MIT
# ctl.sh - the controller end to end: a real gridvmctld (SQLite store in a
# temporary directory, a grid key made as the tests make it) under
# gridvm-ctl-load's fake agents and submits, for several grid sizes; side
# by side the scheduling library alone and the SQLite store alone on the
# same hosts and jobs. Prints a markdown table (and, with --json FILE, the
# raw numbers); docs/bench-controller.md records a run.
#   [SIZES='HOSTS:JOBS ...'] [RUNS=N] bench/ctl.sh [--quick] [--json FILE]
#       [--baseline GRIDVMCTLD] [-- EXTRA gridvmctld OPTIONS]
# RUNS=N repeats every size N times and ends with the median and the
# spread of each; --baseline runs another gridvmctld (an older build) on
# the same sizes in the same minutes, alternating with this one.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=0 JSON= BASELINE=
RUNS=${RUNS:-1}
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--json) JSON=$2; shift ;;
	--baseline) BASELINE=$2; shift ;;
	--) shift; break ;;
	*) echo "usage: bench/ctl.sh [--quick] [--json FILE] [--baseline GRIDVMCTLD] [-- gridvmctld options]" >&2; exit 2 ;;
	esac
	shift
done
[ -d "$BUILD" ] || meson setup "$BUILD" -Dwerror=true >/dev/null
ninja -C "$BUILD" programs/gridvmctld bench/gridvm-ctl-load >/dev/null
CTLD=$BUILD/programs/gridvmctld LOAD=$BUILD/bench/gridvm-ctl-load
if [ -n "$BASELINE" ] && [ ! -x "$BASELINE" ]; then
	echo "ctl.sh: --baseline $BASELINE: not an executable gridvmctld" >&2
	exit 2
fi
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
[ -z "$BASELINE" ] || echo "# controllers: this = $CTLD, baseline = $BASELINE (alternating)"
echo
echo "| controller | hosts | jobs | load | submits/s | bindings/s (agents saw) | bindings/s (controller) | bound p50 s | p99 s | completions/s (agents) | completions/s (controller) | reports | report mean ms | library alone placements/s | store alone puts/s | store alone bindings/s | store alone, grouped bindings/s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
: >"$TMP/all.json"
port=17990
# one run of controller NAME (binary BIN) on HOSTS:JOBS; ALONE the side
# by side numbers of this size
run_one() {
	local name=$1 bin=$2 hosts=$3 jobs=$4 alone=$5 d load0 load1 ok=1
	port=$((port + 1))
	d=$TMP/run-$name-$hosts-$port
	mkdir -p "$d"
	load0=$(cut -d' ' -f1 /proc/loadavg)
	"$bin" --listen "127.0.0.1:$port" --store "sqlite:$d/controller.db" --data-dir "$d" \
		--grid-key "$TMP/grid.key" --report-interval 2s --max-moves 0 "${CTLD_OPTS[@]}" 2>"$d/ctl.log" &
	CTL_PID=$!
	for _ in $(seq 50); do grep -q "controller on" "$d/ctl.log" && break; sleep 0.1; done
	"$LOAD" --controller "127.0.0.1:$port" --key "$TMP/grid.key" --hosts "$hosts" \
		--jobs "$jobs" --interval 2 --json >"$d/load.json" || ok=0
	load1=$(cut -d' ' -f1 /proc/loadavg)
	kill "$CTL_PID"; wait "$CTL_PID" 2>/dev/null || true; CTL_PID=
	if [ "$ok" = 0 ]; then
		echo "| $name | $hosts | $jobs | $load0-$load1 | the run failed (gridvm-ctl-load said why above) |"
		rm -rf "$d"
		return
	fi
	python3 - "$d/load.json" "$alone" "$name" "$load0" "$load1" <<'EOF' | tee -a "$TMP/rows"
import json, sys
l = json.load(open(sys.argv[1])); a = json.load(open(sys.argv[2]))
print(f"| {sys.argv[3]} | {l['hosts']:,} | {l['jobs']:,} | {sys.argv[4]}-{sys.argv[5]} | "
      f"{l['submits_per_s']:,.0f} | {l['bindings_per_s']:,.0f} | "
      f"{l['ctl_bindings_per_s']:,.0f} | {l['bind_latency_p50_s']:.2f} | {l['bind_latency_p99_s']:.2f} | "
      f"{l['completions_per_s']:,.0f} | {l['ctl_completions_per_s']:,.0f} | {l['reports']:,} | "
      f"{l['report_ms_mean']:.1f} | {a['library_placements_per_s']:,.0f} | {a['store_puts_per_s']:,.0f} | "
      f"{a['store_bindings_per_s']:,.0f} | {a['store_grouped_bindings_per_s']:,.0f} |")
EOF
	python3 -c 'import json,sys; l=json.load(open(sys.argv[1])); l["alone"]=json.load(open(sys.argv[2])); l["controller"]=sys.argv[3]; l["load"]=[float(sys.argv[4]), float(sys.argv[5])]; print(json.dumps(l))' \
		"$d/load.json" "$alone" "$name" "$load0" "$load1" >>"$TMP/all.json"
	rm -rf "$d"
}
CTLD_OPTS=("$@")
for r in $(seq "$RUNS"); do
	for s in $SIZES; do
		hosts=${s%:*} jobs=${s#*:}
		alone=$TMP/alone-$hosts-$r.json
		mkdir -p "$TMP/alone"
		"$LOAD" --alone --hosts "$hosts" --jobs "$jobs" --store-dir "$TMP/alone" --json >"$alone"
		rm -rf "$TMP/alone"
		if [ -z "$BASELINE" ]; then
			run_one this "$CTLD" "$hosts" "$jobs" "$alone"
		elif [ $((r % 2)) = 1 ]; then
			run_one this "$CTLD" "$hosts" "$jobs" "$alone"
			run_one baseline "$BASELINE" "$hosts" "$jobs" "$alone"
		else
			run_one baseline "$BASELINE" "$hosts" "$jobs" "$alone"
			run_one this "$CTLD" "$hosts" "$jobs" "$alone"
		fi
	done
done
echo "# load after: $(cut -d' ' -f1 /proc/loadavg)"
if [ "$RUNS" -gt 1 ] || [ -n "$BASELINE" ]; then
	echo
	echo "Median (min-max) over the runs:"
	echo
	python3 - "$TMP/all.json" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
keys = [("submits_per_s", "submits/s"), ("bindings_per_s", "bindings/s (agents saw)"),
        ("ctl_bindings_per_s", "bindings/s (controller)"), ("completions_per_s", "completions/s (agents)")]
print("| controller | hosts | jobs | runs | load | " + " | ".join(k[1] for k in keys) + " |")
print("|---|---:|---:|---:|---:|" + "---:|" * len(keys))
groups = {}
for r in runs:
    groups.setdefault((r["controller"], r["hosts"], r["jobs"]), []).append(r)
def cell(v):
    return f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})"
for (c, h, j), rs in sorted(groups.items(), key=lambda x: (x[0][1], x[0][0])):
    loads = [x for r in rs for x in r["load"]]
    print(f"| {c} | {h:,} | {j:,} | {len(rs)} | {min(loads):.1f}-{max(loads):.1f} | " +
          " | ".join(cell([r[k] for r in rs]) for k, _ in keys) + " |")
EOF
fi
[ -z "$JSON" ] || cp "$TMP/all.json" "$JSON"
