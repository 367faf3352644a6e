#!/bin/bash
# SPDX-License-Identifier: MIT
# test-grid.sh - the grid end to end: a controller and three agents on
# namespace hosts, real VMs under TCG. Jobs of mixed sizes all complete
# with their exact output and exit code and no host is ever given more
# than it offers; requirements and labels; a job no host can run waits
# with its reason; a drain moves a counting job live without a restart; a
# host that joins later gets the work that waited for it; the controller
# restarted mid-run loses nothing and runs nothing twice; batch mode and
# the locality policy; bad input.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$ROOT/tests/e2e/lib.sh"
source "$ROOT/tests/e2e/hosts.sh"
source "$ROOT/tests/e2e/grid.sh"

same() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', want '$2'"; }
hosts_up_count() { # N: N hosts are up
	[ "$(G hosts --json | python3 -c 'import json,sys; print(sum(h["state"] == "up" for h in json.load(sys.stdin)))')" = "$1" ]
}
job_line() { G jobs | grep -E "^$1 "; }
job_reason_has() { job_line "$1" | grep -q -- "$2"; }
job_line_has() { job_line "$1" | grep -q -- "$2"; }
host_state_is() { G hosts | grep -E "^$1 " | grep -q -- "$2"; }
last_count_ge() { [ "$(G job logs "$1" | tail -1)" -ge "$2" ] 2>/dev/null; }
moved_off() { [ "$(grid_field "$1" 'j["host"]')" != "$2" ] && [ "$(grid_state "$1")" = running ]; }
reports_image() { G hosts --json | grep -q "\"$1\""; }

hosts_up 4
grid_ctl_start
for i in 1 2 3; do
	grid_join "$i" --grid-cpus 2 --grid-memory 1G
done
wait_until 60 "three hosts up" hosts_up_count 3
echo "ok: three hosts joined"

# --- no host is ever given more than it offers: watch the agents' VMs
WATCH=$HOSTS_DIR/overcommit
: >"$WATCH"
watch_hosts() {
	while [ -d "$HOSTS_DIR" ]; do
		for i in 1 2 3; do
			hosts_gv "$i" vm list --json 2>/dev/null | python3 -c '
import json, sys
vms = [v for v in json.load(sys.stdin) if v.get("state") in ("running", "paused")]
cpus = sum(v["vcpus"] for v in vms); mem = sum(v["memory_mib"] for v in vms)
if cpus > 2 or mem > 1024: print("h%s: %d vcpus, %d MiB at once" % (sys.argv[1], cpus, mem))
' "$i" >>"$WATCH" 2>/dev/null || true
		done
	done # (each round is paced by the agents' answers; no sleep)
}
watch_hosts &
WATCH_PID=$!

# --- 16 jobs of mixed sizes at once
declare -a IDS
for k in $(seq 1 16); do
	cpus=$((k % 2 + 1))
	mem=$((128 << (k % 3)))M
	IDS[k]=$(G submit --name "mix$k" --cpus "$cpus" --memory "$mem" -- \
		sh -c "echo job $k says \$(( $k * $k )) with \$(nproc) cpus; exit $((k % 7))")
done
for k in $(seq 1 16); do
	grid_wait_state 900 "${IDS[k]}" completed failed
	same "$(grid_state "${IDS[k]}")" completed
	out=$(G job logs "${IDS[k]}")
	cpus=$((k % 2 + 1))
	same "$out" "job $k says $((k * k)) with $cpus cpus"
	rc=0
	G job wait "${IDS[k]}" || rc=$?
	same "$rc" "$((k % 7))"
done
kill "$WATCH_PID" 2>/dev/null || true
wait "$WATCH_PID" 2>/dev/null || true
[ ! -s "$WATCH" ] || fail "a host was given more than it offers: $(sort -u "$WATCH" | head -5)"
used=$(for k in $(seq 1 16); do grid_field "${IDS[k]}" 'j["host"]'; done | sort -u | wc -l)
[ "$used" -ge 2 ] || fail "16 jobs ran on $used host(s)"
echo "ok: 16 mixed jobs: exact output and exit code each, on $used hosts, never over a host's resources"

# --- requirements over labels; a job no host can ever run
G host label h2 gpu=a100
lab=$(G submit --requires 'gpu == "a100" && memory >= 512M' -- sh -c 'echo labelled')
never=$(G submit --requires 'memory >= 1T' -- true)
grid_wait_state 300 "$lab" completed
same "$(grid_field "$lab" 'j["host"]')" h2
same "$(G job logs "$lab")" labelled
wait_until 30 "the impossible job's reason" job_reason_has "$never" "no host can ever"
same "$(grid_state "$never")" queued
echo "ok: a labelled job ran on the labelled host; an impossible one waits: $(G jobs | grep -E "^$never " | cut -c50-)"

# --- a host that joins later gets the work that waited for it
late=$(G submit --requires '"late" in labels' -- sh -c 'echo on a late host')
wait_until 30 "the late job waits" job_line_has "$late" queued
grid_join 4 --grid-cpus 2 --grid-memory 1G --label late
grid_wait_state 300 "$late" completed
same "$(grid_field "$late" 'j["host"]')" h4
echo "ok: a host that joined later received the job that waited for it"

# --- drain: a counting job moves live and counts on without a restart
# (with an input file and directory, and outputs collected at the end:
# also for a job that moved while it ran)
IN=$HOSTS_DIR/in
mkdir -p "$IN/data"
echo "the input says 41" >"$IN/note.txt"
head -c 300000 /dev/urandom >"$IN/data/blob"
seq 1 1000 >"$IN/data/numbers"
count=$(G submit --memory 256M --input "$IN/note.txt" --input "$IN/data:/work/data" \
	--output result.txt --output /work/sums --output never-written -- sh -c '
	i=0; while [ $i -lt 45 ]; do i=$((i+1)); echo $i; sleep 1; done
	cat note.txt > result.txt; echo "counted to $i" >> result.txt
	mkdir -p /work/sums; cd /work/data; md5sum blob numbers > /work/sums/md5')
grid_wait_state 300 "$count" running
# a follower started now must see every line, across the move
G job logs "$count" --follow >"$HOSTS_DIR/follow.out" 2>&1 &
FOLLOW=$!
wait_until 120 "the count to reach 5" last_count_ge "$count" 5
from=$(grid_field "$count" 'j["host"]')
G host drain "$from"
wait_until 300 "the job to leave $from" moved_off "$count" "$from"
to=$(grid_field "$count" 'j["host"]')
grid_wait_state 300 "$count" completed
same "$(G job logs "$count" | tr '\n' ' ')" "$(seq 1 45 | tr '\n' ' ')"
wait_until 60 "the follower to end with the job" proc_gone "$FOLLOW"
same "$(tr '\n' ' ' <"$HOSTS_DIR/follow.out")" "$(seq 1 45 | tr '\n' ' ')" "job logs --follow across the move"
same "$(grid_field "$count" 'j["moves"]')" 1
G job events "$count" | grep -q "is draining" || fail "no drain event: $(G job events "$count")"
G host undrain "$from"
OUT=$HOSTS_DIR/out
G job output "$count" "$OUT" 2>"$HOSTS_DIR/output.err"
same "$(cat "$OUT/result.txt")" "$(printf 'the input says 41\ncounted to 45')" "result.txt"
(cd "$IN/data" && md5sum blob numbers) >"$HOSTS_DIR/md5.want"
same "$(cat "$OUT/sums/md5")" "$(cat "$HOSTS_DIR/md5.want")" "the outputs' checksums of the inputs"
grep -q 'never-written' "$HOSTS_DIR/output.err" || fail "a missing output is not reported: $(cat "$HOSTS_DIR/output.err")"
[ ! -e "$OUT/never-written" ] || fail "a missing output appeared"
echo "ok: inputs arrived and outputs came back from a job that moved (the missing one named)"
echo "ok: drained $from: the counting job moved live to $to and counted 1..45 without a restart (followed across the move)"

# --- the controller restarted mid-run: nothing lost, nothing run twice
declare -a R
for k in 1 2 3 4 5; do
	R[k]=$(G submit --memory 128M -- sh -c "i=0; while [ \$i -lt 12 ]; do i=\$((i+1)); echo $k.\$i; sleep 1; done")
done
grid_wait_state 300 "${R[1]}" running
grid_ctl_stop
grid_ctl_start
for k in 1 2 3 4 5; do
	grid_wait_state 600 "${R[k]}" completed
	same "$(G job logs "${R[k]}" | tr '\n' ' ')" "$(seq 1 12 | sed "s/^/$k./" | tr '\n' ' ')"
	starts=$(G job events "${R[k]}" | grep -cE '(scheduled|staging) -> running' || true)
	same "$starts" 1
done
echo "ok: the controller restarted mid-run: 5 jobs completed, each ran once"

# --- bad input: clear one-line errors, nothing half-made
before=$(G jobs --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
bad() { # what ARGS...
	local what=$1 out
	shift
	if out=$(G "$@" 2>&1); then fail "$what was accepted: $out"; fi
	[ "$(echo "$out" | wc -l)" = 1 ] || fail "$what: not one line: $out"
	echo "ok: $what: $out"
}
bad "an unknown image" submit --image nosuch -- true
bad "zero cpus" submit --cpus 0 -- true
bad "too much memory" submit --memory 4T -- true
bad "a malformed expression" submit --requires 'memory >= && 1' -- true
bad "no command" submit
bad "an unknown job" job show 99999
bad "an unknown host" host drain nosuch
out=$(G submit --requires 'memory >= && 1' -- true 2>&1) || true
echo "$out" | grep -q 'at position 11' || fail "a malformed expression's error names no position: $out"
after=$(G jobs --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
same "$after" "$before"
out=$(ip netns exec "${HOST_NS[1]}" "$GV" --controller "${HOST_IP[1]}:7999" \
	--grid-key "$HOSTS_DIR/grid.key" jobs 2>&1) && fail "a controller that is down answered"
echo "ok: a controller that is down: $out"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$HOSTS_DIR/wrong.key"
mark=$(log_mark "${HOST_DATA[4]}/gridvmd.log")
hosts_agent_stop 4
HOSTS_KEY_OVERRIDE=$HOSTS_DIR/wrong.key grid_join 4
wait_until 60 "the agent with a wrong key to be refused" \
	log_has "${HOST_DATA[4]}/gridvmd.log" "$mark" "authentication failed"
wait_until 60 "h4 to be down" host_state_is h4 down
echo "ok: an agent with a wrong key is refused and h4 shows down"

# --- batch mode and the locality policy: same results
grid_ctl_stop
grid_ctl_start --mode batch --batch-wait 3s --policy locality
mkdir -p "${HOST_DATA[3]}/images"
cp --sparse=always "${GRIDVM_SYSDATA:-/var/lib/gridvm}/images/default.img" "${HOST_DATA[3]}/images/solo.img"
wait_until 60 "h3 to report image solo" reports_image solo
# the solo job first, in a batch of its own: h3 has room, and holds its image
solo=$(G submit --image solo --memory 128M -- sh -c 'echo from solo')
grid_wait_state 300 "$solo" scheduled staging running completed
declare -a B
for k in 1 2 3 4; do
	B[k]=$(G submit --memory 128M -- sh -c "echo batch $k; exit $k")
done
for k in 1 2 3 4; do
	grid_wait_state 600 "${B[k]}" completed
	same "$(G job logs "${B[k]}")" "batch $k"
	rc=0
	G job wait "${B[k]}" || rc=$?
	same "$rc" "$k"
done
grid_wait_state 600 "$solo" completed
same "$(grid_field "$solo" 'j["host"]')" h3
same "$(G job logs "$solo")" "from solo"
echo "ok: batch mode: 4 jobs with their output and exit code; locality put the solo image's job on h3"
echo "PASS test-grid"
