#!/bin/bash
# SPDX-License-Identifier: MIT
# chaos-hostloss.sh [SEED] [ROUNDS] - random host faults while counting
# jobs run (docs/host-loss.md): a controller on h1, agents on h2..h4, four
# jobs with checkpoints every 10 s. Each round picks a host and a fault
# (from the seed): its link cut until one report is missed (under the lease: its VMs may be
# paused, then go on), its link cut until the controller declares it lost
# (its jobs go on elsewhere; the link comes back, its stale VMs die), or
# its agent SIGKILLed with its QEMUs (lost; the agent restarted later),
# its agent alone SIGKILLed while its link is cut until it is lost (the
# fence keeper pauses its VMs; the link back and the agent restarted, the
# stale ones die), or its agent alone SIGKILLed and restarted at once (its
# VMs go on).
# Between rounds every host is up again. At the end every job completed
# exactly once, its log 1..N without a gap or a repeat, and a watcher
# never saw a job running on two hosts at once.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$ROOT/tests/e2e/lib.sh"
source "$ROOT/tests/e2e/hosts.sh"
source "$ROOT/tests/e2e/grid.sh"

SEED=${1:-1}
ROUNDS=${2:-6}
JOBS=4
N=${CHAOS_LINES:-200}
RANDOM=$SEED
same() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', want '$2'"; }
host_state_is() { [ "$(G hosts --json | python3 -c 'import json,sys; print([h["state"] for h in json.load(sys.stdin) if h["name"] == sys.argv[1]][0])' "$1")" = "$2" ]; }
# the controller has missed a report of host $1 (the cut is felt, the lease
# of 4 s not yet run out)
missed_report() { G hosts --json | python3 -c 'import sys, json; sys.exit(0 if [h for h in json.load(sys.stdin) if h["name"] == sys.argv[1] and h.get("seen_s_ago", 0) >= 1.5] else 1)' "$1"; }
all_running() { for id in "${IDS[@]}"; do grid_in_state "$id" running completed || return 1; done; }

hosts_up 4
grid_ctl_start --host-lease 4s --max-moves 0
for i in 2 3 4; do grid_join "$i" --grid-cpus 2 --grid-memory 1G; done
WATCH=$HOSTS_DIR/twice
: >"$WATCH"
( while [ -d "$HOSTS_DIR" ]; do
	all=""
	for i in 2 3 4; do
		all+=$(hosts_gv "$i" vm list --json 2>/dev/null | python3 -c '
import json, sys
for v in json.load(sys.stdin):
    if v["name"].startswith("job-") and v["state"] == "running": print(v["name"])
' 2>/dev/null || true)$'\n'
	done
	echo "$all" | grep . | sort | uniq -d | sed 's/$/ ran on two hosts at once/' >>"$WATCH" || true
done ) &
WATCH_PID=$!

declare -a IDS
for k in $(seq 1 $JOBS); do
	IDS[k]=$(G submit --name "chaos$k" --memory 256M --checkpoint-every 10s -- \
		sh -c "i=0; while [ \$i -lt $N ]; do i=\$((i+1)); echo \$i; sleep 1; done")
done
wait_until 600 "every job to run" all_running
echo "chaos: seed $SEED, $ROUNDS rounds, $JOBS jobs of $N lines"

for r in $(seq 1 "$ROUNDS"); do
	i=$((2 + RANDOM % 3))
	f=$((RANDOM % 5))
	markc=$(log_mark "$GRID_DIR/gridvmctld.log")
	case $f in
	0)
		echo "round $r: h$i's link cut until a report is missed (under the lease)"
		hosts_cut "$i"
		wait_until 60 "the controller to miss a report of h$i" missed_report "h$i"
		hosts_restore "$i"
		;;
	1)
		echo "round $r: h$i's link cut until it is lost"
		hosts_cut "$i"
		wait_until 120 "h$i to be lost" log_has "$GRID_DIR/gridvmctld.log" "$markc" "host h$i is lost"
		hosts_restore "$i"
		;;
	2)
		echo "round $r: h$i's agent and QEMUs SIGKILLed"
		# shellcheck disable=SC2046
		kill -KILL $(ip netns pids "${HOST_NS[$i]}") 2>/dev/null || true
		wait_until 120 "h$i to be lost" log_has "$GRID_DIR/gridvmctld.log" "$markc" "host h$i is lost"
		grid_join "$i" --grid-cpus 2 --grid-memory 1G
		;;
	3)
		echo "round $r: h$i's link cut and its agent alone SIGKILLed, until it is lost"
		hosts_cut "$i"
		kill -KILL "${HOST_AGENT_PID[$i]}"
		wait_until 120 "h$i to be lost" log_has "$GRID_DIR/gridvmctld.log" "$markc" "host h$i is lost"
		hosts_restore "$i"
		grid_join "$i" --grid-cpus 2 --grid-memory 1G
		;;
	4)
		echo "round $r: h$i's agent alone SIGKILLed and restarted"
		pid=${HOST_AGENT_PID[$i]}
		kill -KILL "$pid"
		wait_until 30 "h$i's agent to die" sh -c "! kill -0 $pid 2>/dev/null"
		grid_join "$i" --grid-cpus 2 --grid-memory 1G
		;;
	esac
	for h in 2 3 4; do wait_until 120 "h$h to be up" host_state_is "h$h" up; done
	[ ! -s "$WATCH" ] || fail "round $r: $(sort -u "$WATCH" | head -3)"
done

for k in $(seq 1 $JOBS); do
	grid_wait_state 1200 "${IDS[k]}" completed failed
	if [ "$(grid_state "${IDS[k]}")" != completed ]; then # (what happened, for the log)
		G job events "${IDS[k]}" | tail -15 >&2
		grep -h "job-${IDS[k]}\|job ${IDS[k]}:" "${HOST_DATA[2]}/gridvmd.log" \
			"${HOST_DATA[3]}/gridvmd.log" "${HOST_DATA[4]}/gridvmd.log" | tail -15 >&2 || true
	fi
	same "$(grid_state "${IDS[k]}")" completed "job ${IDS[k]}"
	same "$(G job logs "${IDS[k]}" | tr '\n' ' ')" "$(seq 1 $N | tr '\n' ' ')" "job ${IDS[k]}'s log"
	echo "ok: job ${IDS[k]}: completed once, log 1..$N; recovered $(grid_field "${IDS[k]}" 'j.get("recoveries", 0)') times, work lost at most $(grid_field "${IDS[k]}" 'round(j.get("work_lost_s", 0), 1)') s"
done
kill "$WATCH_PID" 2>/dev/null || true
wait "$WATCH_PID" 2>/dev/null || true
[ ! -s "$WATCH" ] || fail "$(sort -u "$WATCH" | head -3)"
echo "ok: chaos seed $SEED, $ROUNDS rounds: every job completed exactly once; none ran on two hosts at once"
