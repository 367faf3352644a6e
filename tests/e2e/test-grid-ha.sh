#!/bin/bash
# SPDX-License-Identifier: MIT
# test-grid-ha.sh - several controllers on one etcd (docs/grid.md,
# "Several controllers"): three gridvmctld on namespace hosts h1..h3 share
# an etcd; one leads, the others stand by. The CLI and the agents are
# given all three and find the leader. SIGKILL the leader while jobs run:
# another takes over within seconds and every job, submitted before or
# after, completes exactly once with its exact output. SIGSTOP the new
# leader past its lease (cut off): it is deposed, stands by when it comes
# back, and the grid carries on under a third. Then one etcd member of
# the three is SIGKILLed: jobs submitted after that run too.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$ROOT/tests/e2e/lib.sh"
source "$ROOT/tests/e2e/hosts.sh"
source "$ROOT/tests/e2e/grid.sh"

same() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', want '$2'"; }
hosts_up_count() { # N: N hosts are up
	[ "$(G hosts --json | python3 -c 'import json,sys; print(sum(h["state"] == "up" for h in json.load(sys.stdin)))')" = "$1" ]
}
starts_of() { G job events "$1" | grep -cE '(scheduled|staging) -> running' || true; }
counts() { # K N: lines K.1 .. K.N
	seq 1 "$2" | sed "s/^/$1./" | tr '\n' ' '
}

hosts_up 3
grid_etcd_start 3
ETCDCTL_URL=http://${HOST_IP[1]}:2379,http://${HOST_IP[2]}:2379,http://${HOST_IP[3]}:2379
GRID_CTL=${HOST_IP[1]}:$GRID_PORT,${HOST_IP[2]}:$GRID_PORT,${HOST_IP[3]}:$GRID_PORT
GRID_DIR=$HOSTS_DIR/ctl1
for i in 1 2 3; do grid_ha_start "$i"; done
wait_until 60 "a controller to lead" grid_leader_is_not none
first=$(grid_ctl_of "$(grid_leader_addr)")
wait_until 30 "the grid to answer" grid_answers
for i in 1 2 3; do
	[ "$i" = "$first" ] ||
		wait_until 30 "controller $i to stand by" log_has "$HOSTS_DIR/ctl$i/gridvmctld.log" 0 "stands by"
done
echo "ok: three controllers on one etcd: h$first leads, the others stand by"
# a standby alone redirects: the CLI given only a standby reaches the leader
standby=$((first % 3 + 1))
out=$(ip netns exec "${HOST_NS[1]}" env GRIDVM_DATA="$GRID_DIR" "$GV" \
	--controller "${HOST_IP[standby]}:$GRID_PORT" --grid-key "$HOSTS_DIR/grid.key" jobs) ||
	fail "the CLI given only the standby h$standby: $out"
echo "ok: the CLI given only the standby h$standby was redirected to the leader"

for i in 1 2 3; do grid_join "$i" --grid-cpus 2 --grid-memory 1G; done
wait_until 60 "three hosts up" hosts_up_count 3
echo "ok: three agents joined (given all three controllers)"

# --- SIGKILL the leader while jobs run and wait
declare -a J
for k in 1 2 3 4; do
	J[k]=$(G submit --memory 128M -- sh -c "i=0; while [ \$i -lt 15 ]; do i=\$((i+1)); echo $k.\$i; sleep 1; done")
done
for k in 1 2; do grid_wait_state 300 "${J[k]}" running; done
old=$(grid_leader_addr)
pid=$(grid_ha_pid "$first")
[ -n "$pid" ] || fail "no gridvmctld in h$first"
t0=$(date +%s%N)
kill -KILL "$pid"
wait_until 60 "another controller to lead" grid_leader_is_not "$old"
t1=$(date +%s%N)
G jobs >/dev/null
t2=$(date +%s%N)
second=$(grid_ctl_of "$(grid_leader_addr)")
echo "ok: SIGKILL of the leader h$first: h$second leads after $(((t1 - t0) / 1000000)) ms, answers after $(((t2 - t0) / 1000000)) ms (lease 3 s)"
for k in 5 6; do
	J[k]=$(G submit --memory 128M -- sh -c "i=0; while [ \$i -lt 5 ]; do i=\$((i+1)); echo $k.\$i; sleep 1; done")
done

# --- the new leader cut off (SIGSTOP past its lease): deposed, a third leads
pid=$(grid_ha_pid "$second")
kill -STOP "$pid"
wait_until 60 "a third controller to lead" grid_leader_is_not "$(grid_leader_addr)"
third=$(grid_ctl_of "$(grid_leader_addr)")
mark=$(log_mark "$HOSTS_DIR/ctl$second/gridvmctld.log")
kill -CONT "$pid"
wait_until 120 "h$second to know it was deposed" \
	log_has "$HOSTS_DIR/ctl$second/gridvmctld.log" "$mark" "stands by"
echo "ok: h$second, stopped past its lease, was deposed and stands by again; h$third leads"

# --- one etcd member of three dies: the grid keeps working
grid_etcd_kill 1
for k in 7 8; do
	J[k]=$(G submit --memory 128M -- sh -c "i=0; while [ \$i -lt 5 ]; do i=\$((i+1)); echo $k.\$i; sleep 1; done")
done
echo "ok: etcd member e1 SIGKILLed; jobs submitted after it: ${J[7]} ${J[8]}"

# --- every job exactly once, with its whole output
for k in 1 2 3 4 5 6 7 8; do
	grid_wait_state 600 "${J[k]}" completed
	n=15
	[ "$k" -ge 5 ] && n=5
	same "$(G job logs "${J[k]}" | tr '\n' ' ')" "$(counts "$k" "$n")" "job $k's output"
	same "$(starts_of "${J[k]}")" 1 "job $k's starts"
done
echo "ok: 8 jobs (4 before the failovers, 2 between, 2 after an etcd member died) completed, each ran exactly once"
echo "PASS test-grid-ha"
