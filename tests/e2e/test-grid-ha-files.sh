#!/bin/bash
# SPDX-License-Identifier: MIT
# test-grid-ha-files.sh - a job's files survive the loss of the leading
# controller with its data directory (docs/grid.md, "Several
# controllers"): three gridvmctld on namespace hosts h1..h3 share an etcd.
# A job with an input and an output completes; another with an input
# waits for a label no host has. The standbys hold copies of both inputs
# and of the first job's log and output, made at the leader's request
# (their own background copying is off until the old leader comes back). The leader is SIGKILLed and its
# data directory deleted: under the new leader the waiting job, once a
# host has the label, gets its input (its output is its input, byte for
# byte), and `job output` / `job logs` of the first job give the exact
# bytes. The old leader restarted on an empty data directory copies the
# files it lacks from the others; then the two others are lost with their
# data directories, and under it alone both jobs' outputs and logs are
# still there.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$ROOT/tests/e2e/lib.sh"
source "$ROOT/tests/e2e/hosts.sh"
source "$ROOT/tests/e2e/grid.sh"

same() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', want '$2'"; }
hosts_up_count() { # N: N hosts are up
	[ "$(G hosts --json | python3 -c 'import json,sys; print(sum(h["state"] == "up" for h in json.load(sys.stdin)))')" = "$1" ]
}
same_file() { # A B WHAT
	cmp -s "$1" "$2" || fail "$3: $1 and $2 differ ($(stat -c %s "$1" 2>&1) / $(stat -c %s "$2" 2>&1) bytes)"
}
holds_files() { # I DIR: controller I holds the log and output of both jobs as DIR does
	local f
	for f in "jobs/$j1/job.out" "jobs/$j1/output.tar" "jobs/$j2/job.out" "jobs/$j2/output.tar"; do
		cmp -s "$HOSTS_DIR/ctl$1/$f" "$2/$f" || return 1
	done
}
ended() { # ID: wait until the job ends; it must have completed
	grid_wait_state 300 "$1" completed failed cancelled
	same "$(grid_state "$1")" completed "job $1's state ($(grid_field "$1" 'j.get("error", "")'))"
}
kill_leader() { # I: SIGKILL controller I and delete its data directory
	local pid
	pid=$(grid_ha_pid "$1")
	[ -n "$pid" ] || fail "no gridvmctld in h$1"
	kill -KILL "$pid"
	wait_until 30 "controller $1 to die" proc_gone "$pid"
	rm -rf "$HOSTS_DIR/ctl$1"
}
check_outputs() { # WHY: both jobs' outputs and logs, exact, through the leader
	local o
	o=$(mktemp -d "$HOSTS_DIR/out.XXXXXX")
	G job output "$j1" "$o/1" || fail "job output $j1 $1"
	same_file "$o/1/out1.bin" "$T/in1.bin" "job $j1's output $1"
	same "$(G job logs "$j1" | tr '\n' ' ')" "one two " "job $j1's log $1"
	G job output "$j2" "$o/2" || fail "job output $j2 $1"
	same_file "$o/2/out2.bin" "$T/in2.bin" "job $j2's output $1"
	same "$(G job logs "$j2")" "three" "job $j2's log $1"
}

hosts_up 3
grid_etcd_start 1
GRID_CTL=${HOST_IP[1]}:$GRID_PORT,${HOST_IP[2]}:$GRID_PORT,${HOST_IP[3]}:$GRID_PORT
GRID_DIR=$HOSTS_DIR/cli # the CLI's (the controllers' go away)
mkdir -p "$GRID_DIR"
# their background copying off (a fault point): what the standbys hold
# until the old leader comes back is what the leader had them copy
for i in 1 2 3; do grid_ha_start "$i" GRIDVM_FAULT=grid.ctl.files-sync=fail; done
wait_until 60 "a controller to lead" grid_leader_is_not none
first=$(grid_ctl_of "$(grid_leader_addr)")
for i in 1 2 3; do grid_join "$i" --grid-cpus 2 --grid-memory 1G; done
wait_until 60 "three hosts up" hosts_up_count 3
echo "ok: three controllers on one etcd (h$first leads), three agents"

T=$HOSTS_DIR/files
mkdir -p "$T"
head -c 300017 /dev/urandom >"$T/in1.bin"
head -c 200003 /dev/urandom >"$T/in2.bin"
j1=$(G submit --memory 128M --input "$T/in1.bin" --output out1.bin -- \
	sh -c 'cp in1.bin out1.bin && echo one && echo two')
j2=$(G submit --memory 128M --requires '"ready" in labels' --input "$T/in2.bin" \
	--output out2.bin -- sh -c 'cp in2.bin out2.bin && echo three')
ended "$j1"
grid_in_state "$j2" queued || fail "job $j2 should wait for the label: $(grid_state "$j2")"
lead=$HOSTS_DIR/ctl$first
for i in 1 2 3; do
	[ "$i" = "$first" ] && continue
	for k in "$j1" "$j2"; do
		tok=$(grid_field "$k" 'j["upload"]')
		same_file "$HOSTS_DIR/ctl$i/inputs/$tok.tar" "$lead/inputs/$tok.tar" "controller $i's copy of job $k's input"
	done
	same_file "$HOSTS_DIR/ctl$i/jobs/$j1/job.out" "$lead/jobs/$j1/job.out" "controller $i's copy of job $j1's log"
	same_file "$HOSTS_DIR/ctl$i/jobs/$j1/output.tar" "$lead/jobs/$j1/output.tar" "controller $i's copy of job $j1's output"
done
echo "ok: job $j1 completed, job $j2 waits; both standbys hold both inputs and job $j1's log and output"

# --- the leader and its data directory lost
old=$(grid_leader_addr)
kill_leader "$first"
wait_until 60 "another controller to lead" grid_leader_is_not "$old"
second=$(grid_ctl_of "$(grid_leader_addr)")
G host label h2 ready=yes
ended "$j2"
same "$(grid_field "$j2" 'j["exit_code"]')" 0 "job $j2's exit code"
check_outputs "after the loss of h$first's controller"
echo "ok: h$first's controller SIGKILLed and its data directory deleted; under h$second job $j2 got its input; both jobs' outputs and logs exact"

# --- the old leader back on an empty data directory; then the second lost
grid_ha_start "$first"
wait_until 60 "h$first's controller to copy the jobs' files" holds_files "$first" "$HOSTS_DIR/ctl$second"
echo "ok: h$first's controller, started on an empty data directory, copied both jobs' logs and outputs"
# the two others lost with their data directories: it alone is left, with
# what it copied
third=$((6 - first - second))
kill_leader "$second"
kill_leader "$third"
wait_until 60 "h$first's controller to lead" grid_leader_is_not "${HOST_IP[second]}:$GRID_PORT"
same "$(grid_leader_addr)" "${HOST_IP[first]}:$GRID_PORT" "the leader"
check_outputs "with h$first's controller alone"
echo "ok: h$second's and h$third's controllers lost with their data directories too; h$first's alone serves both jobs' outputs and logs, exact"
echo "PASS test-grid-ha-files"
