#!/bin/bash
# SPDX-License-Identifier: MIT
# test-grid-busy.sh - an agent keeps its lease while one of its VMs is
# held by a long operation (docs/host-loss.md): a start, a checkpoint or a
# move holds the VM's lock for seconds (on a loaded machine a cold start
# took over 20 s), and a report that waited for that lock went out too
# late: the agent fenced its VMs and the controller declared the host
# lost and recovered all its jobs elsewhere (found by bench/hostloss.sh).
# Its reports now list such a VM as last stored.
#
# A job runs on h2; h2 is drained, so the controller moves the job to h3;
# the live migration holds at its "prepare" phase (fault
# migrate.src.prepare=hold:14), the VM locked, for longer than the lease
# and the grace (4 s each). Meanwhile h2 must go on reporting: the
# controller never calls it down or lost, its agent never fences; then
# the move completes and the job ends once, its log 1..N.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$ROOT/tests/e2e/lib.sh"
source "$ROOT/tests/e2e/hosts.sh"
source "$ROOT/tests/e2e/grid.sh"

same() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', want '$2'"; }
host_state_is() { [ "$(G hosts --json | python3 -c 'import json,sys; print([h["state"] for h in json.load(sys.stdin) if h["name"] == sys.argv[1]][0])' "$1")" = "$2" ]; }
runs_on() { [ "$(grid_field "$1" 'j["state"] + " " + (j.get("host") or "")')" = "running $2" ]; }
N=50

hosts_up 3
grid_ctl_start --host-lease 4s
GRIDVM_FAULT="migrate.src.prepare=hold:14@1" grid_join 2 --grid-cpus 2 --grid-memory 1G
job=$(G submit --memory 256M -- sh -c "i=0; while [ \$i -lt $N ]; do i=\$((i+1)); echo \$i; sleep 1; done")
grid_wait_state 300 "$job" running
same "$(grid_field "$job" 'j["host"]')" h2 "the job's host"
grid_join 3 --grid-cpus 2 --grid-memory 1G
wait_until 60 "h3 to be up" host_state_is h3 up

log2=${HOST_DATA[2]}/gridvmd.log
logc=$GRID_DIR/gridvmctld.log
mark2=$(log_mark "$log2")
markc=$(log_mark "$logc")
G host drain h2 >/dev/null
wait_until 120 "the move to hold at prepare" log_has "$log2" "$mark2" "gridvm-fault: migrate.src.prepare: hold"
echo "ok: the move of job $job holds with its VM locked (14 s; lease 4 s, grace 4 s)"
wait_until 300 "the job to run on h3" runs_on "$job" h3
# the hold is over: h2 reported all along
! log_has "$logc" "$markc" "host h2 is down" ||
	fail "h2 stopped reporting while its VM was held: $(grep 'host h2' "$logc" | tail -3)"
! log_has "$logc" "$markc" "host h2 is lost" || fail "h2 was declared lost while its VM was held"
! log_has "$log2" "$mark2" "fencing the grid's VMs" || fail "h2's agent fenced its VMs while one was held"
same "$(grid_field "$job" 'j.get("recoveries", 0)')" 0 "recoveries"
echo "ok: h2 kept its lease while the VM was held; the job moved to h3"
grid_wait_state 300 "$job" completed
same "$(G job logs "$job" | tr '\n' ' ')" "$(seq 1 $N | tr '\n' ' ')" "the job's log"
echo "ok: the job completed once, its log 1..$N"
echo "PASS test-grid-busy"
