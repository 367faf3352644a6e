#!/bin/bash
# SPDX-License-Identifier: MIT
# test-grid-ha-burst.sh - the leading controller SIGKILLed during a burst
# of submissions and while a job recovers (docs/grid.md, "Several
# controllers"; docs/host-loss.md): three gridvmctld on a three-member
# etcd in h1..h3, agents in h4, h5 and h1. A counting job with replicated
# checkpoints runs on h4; a burst of submissions starts; h4's link is cut;
# the moment the leader declares h4 lost (it starts the job's recovery),
# it is SIGKILLed. A standby takes over: the job goes on from its
# checkpoint and completes once with its whole log; every submission that
# was answered with an id runs exactly once with its output; and no job
# exists that no submission was told of.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$ROOT/tests/e2e/lib.sh"
source "$ROOT/tests/e2e/hosts.sh"
source "$ROOT/tests/e2e/grid.sh"

same() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', want '$2'"; }
ETCDCTL_URL=
leader_addr() {
	ip netns exec "${HOST_NS[1]}" etcdctl --endpoints "$ETCDCTL_URL" get /grid/leader \
		--print-value-only 2>/dev/null |
		python3 -c 'import json,sys; t=sys.stdin.read().strip(); print(json.loads(t)["addr"] if t else "")'
}
leader_is_not() { local a; a=$(leader_addr) && [ -n "$a" ] && [ "$a" != "$1" ]; }
ctl_of() { for i in 1 2 3; do if [ "$1" = "${HOST_IP[i]}:$GRID_PORT" ]; then echo "$i"; fi; done; }
ctl_pid() {
	local pid
	for pid in $(ip netns pids "${HOST_NS[$1]}"); do
		if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = gridvmctld ]; then echo "$pid"; fi
	done
	return 0
}
ctl_start() {
	local dir=$HOSTS_DIR/ctl$1
	mkdir -p "$dir"
	ip netns exec "${HOST_NS[$1]}" env GRIDVM_DATA="$dir" "$GVC" \
		--listen "${HOST_IP[$1]}:$GRID_PORT" --store "$GRID_STORE" --leader-lease 3s \
		--grid-key "$HOSTS_DIR/grid.key" --data-dir "$dir" --daemon --report-interval 1s \
		--host-lease 4s >>"$dir/gridvmctld.log" 2>&1 ||
		fail "controller $1 did not start: $(tail -5 "$dir/gridvmctld.log")"
}
# bindings of a job (an agent starts a job at most once per binding; a
# short job may end before a report shows it running)
bindings_of() { G job events "$1" | grep -c 'queued -> scheduled' || true; }
answered() { ls "$B" | grep -c '\.rc$' || true; }
answered_at_least() { [ "$(answered)" -ge "$1" ]; }
hosts_up_count() {
	[ "$(G hosts --json | python3 -c 'import json,sys; print(sum(h["state"] == "up" for h in json.load(sys.stdin)))')" = "$1" ]
}
replicated() { [ -n "$(grid_field "$1" '(j.get("replicated") or {}).get("id", "")')" ]; }
job_count() { G jobs --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

hosts_up 5
grid_etcd_start 3
ETCDCTL_URL=http://${HOST_IP[1]}:2379,http://${HOST_IP[2]}:2379,http://${HOST_IP[3]}:2379
GRID_CTL=${HOST_IP[1]}:$GRID_PORT,${HOST_IP[2]}:$GRID_PORT,${HOST_IP[3]}:$GRID_PORT
GRID_DIR=$HOSTS_DIR/ctl1
for i in 1 2 3; do ctl_start "$i"; done
wait_until 60 "a controller to lead" leader_is_not none
wait_until 30 "the grid to answer" grid_answers

# the counting job on h4, its checkpoints copied to another host
grid_join 4 --grid-cpus 2 --grid-memory 1G
N=50
R=$(G submit --name count --memory 256M --checkpoint-every 10s -- \
	sh -c "i=0; while [ \$i -lt $N ]; do i=\$((i+1)); echo \$i; sleep 1; done")
grid_wait_state 300 "$R" running
same "$(grid_field "$R" 'j["host"]')" h4 "the counting job's host"
grid_join 5 --grid-cpus 2 --grid-memory 1G
grid_join 1 --grid-cpus 2 --grid-memory 1G
wait_until 60 "three hosts up" hosts_up_count 3
wait_until 120 "a checkpoint of the counting job on another host" replicated "$R"
echo "ok: job $R counts on h4; checkpoint $(grid_field "$R" 'j["replicated"]["id"]') held by $(grid_field "$R" '",".join(j["replicated"]["on"])')"

# the burst: one submission after the other, each one's answer kept,
# until told to stop (after the failover). (Paced, two a second: it is to
# span the failover without flooding two hosts with VMs.)
B=$HOSTS_DIR/burst
mkdir -p "$B"
(
	k=0
	while [ ! -e "$B/stop" ]; do
		k=$((k + 1))
		if G submit --memory 128M -- sh -c "echo burst $k" >"$B/$k.id" 2>"$B/$k.err"; then
			echo ok >"$B/$k.rc"
		else
			echo failed >"$B/$k.rc"
		fi
		sleep 0.5
	done
) &
BURST=$!
first=$(ctl_of "$(leader_addr)")
leader_log=$HOSTS_DIR/ctl$first/gridvmctld.log
mark=$(log_mark "$leader_log")
wait_until 120 "the burst to begin" test -s "$B/1.rc"
hosts_cut 4
wait_until 120 "the leader h$first to declare h4 lost" log_has "$leader_log" "$mark" "host h4 is lost"
old=$(leader_addr)
kill -KILL "$(ctl_pid "$first")"
at_kill=$(answered)
echo "ok: h4 cut off; the leader h$first SIGKILLed as it declared h4 lost ($at_kill submissions answered by then)"
wait_until 60 "another controller to lead" leader_is_not "$old"
n0=$(answered)
echo "ok: h$(ctl_of "$(leader_addr)") leads"
wait_until 120 "three more submissions after the failover" answered_at_least $((n0 + 3))
touch "$B/stop"
wait "$BURST"
total=$(answered)
[ "$at_kill" -ge 1 ] || fail "no submission was answered before the leader was killed"

# every answered submission: exactly once, its output
ids=()
recovered=()
for k in $(seq 1 "$total"); do
	if [ "$(cat "$B/$k.rc")" = ok ]; then
		ids+=("$(cat "$B/$k.id")")
	else
		echo "submission $k was refused: $(cat "$B/$k.err")"
	fi
done
[ "${#ids[@]}" -ge $((total / 2)) ] || fail "only ${#ids[@]} of $total submissions were answered with an id"
for k in $(seq 1 "$total"); do
	[ "$(cat "$B/$k.rc")" = ok ] || continue
	id=$(cat "$B/$k.id")
	grid_wait_state 900 "$id" completed
	same "$(G job logs "$id")" "burst $k" "burst job $k's output"
	# (once, or once more per recovery: a job bound to h4 restarts elsewhere)
	same "$(bindings_of "$id")" "$((1 + $(grid_field "$id" 'j.get("recoveries", 0)')))" \
		"burst job $k's bindings"
	[ "$(grid_field "$id" 'j.get("recoveries", 0)')" = 0 ] || recovered+=("$id")
done
echo "ok: ${#ids[@]} of $total submissions (before, during and after the failover) answered with an id: each completed once with its output, bound once (and once more per recovery: ${recovered[*]:-none} had been bound to h4)"
# ... and nothing else: the counting job and the answered ones
same "$(job_count)" "$((${#ids[@]} + 1))" "jobs in the grid"
echo "ok: no job was made that its submission was not told of"

# the counting job went on from its checkpoint, once
grid_wait_state 900 "$R" completed
same "$(G job logs "$R" | tr '\n' ' ')" "$(seq 1 $N | tr '\n' ' ')" "the counting job's log"
same "$(grid_field "$R" 'j["recoveries"]')" 1 "the counting job's recoveries"
G job events "$R" | grep -q "goes on from its checkpoint" ||
	fail "the counting job did not go on from its checkpoint: $(G job events "$R")"
echo "ok: job $R recovered once across the failover, from its checkpoint, and completed with its log 1..$N"
echo "PASS test-grid-ha-burst"
