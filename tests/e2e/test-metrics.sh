#!/bin/bash
# SPDX-License-Identifier: MIT
# test-metrics.sh - the Prometheus metrics of the controller and of the
# agents (--metrics ADDR:PORT) on namespace hosts with real VMs: every
# scrape passes `promtool check metrics`, and the values are what the grid
# is: hosts up and what they offer, a job that completed, a running VM on
# its agent and the resources it takes on the controller, a live move by
# a drain (counted as started and completed, the VM now on the other
# agent), a cancelled job, a job no host can run; other paths are 404;
# a bad or busy --metrics address stops the program with a clear error.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$ROOT/tests/e2e/lib.sh"
source "$ROOT/tests/e2e/hosts.sh"
source "$ROOT/tests/e2e/grid.sh"

command -v promtool >/dev/null || fail "no promtool (Debian package prometheus: run scripts/setup.sh)"

same() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', want '$2'"; }

# scrape I ADDR:PORT FILE: GET /metrics from inside host I into FILE, and
# check it with promtool (a failed check fails the test, whatever called)
scrape() {
	hosts_exec "$1" python3 -c '
import sys, urllib.request
with urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=20) as r:
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
    sys.stdout.write(r.read().decode())' "$2" >"$3" || return 1
	if ! promtool check metrics <"$3" >"$3.promtool" 2>&1; then
		{ echo "on $2: $(cat "$3.promtool")"; cat "$3"; } >"$HOSTS_DIR/promtool.failed"
		fail "promtool check metrics failed on $2: $(cat "$3.promtool")"
	fi
}
scrape_now() { scrape "$@" || fail "cannot GET http://$2/metrics from h$1"; }
# a check that failed in a subshell ($(...)) fails the test here
promtool_ok() {
	[ ! -e "$HOSTS_DIR/promtool.failed" ] ||
		fail "promtool check metrics failed $(cat "$HOSTS_DIR/promtool.failed")"
}

# value FILE SAMPLE: the value of the sample (name and labels exactly as
# written), or "absent"
value() {
	awk -v s="$2" '!/^#/ { i = match($0, / [^ ]+$/); if (i && substr($0, 1, i - 1) == s) { v = substr($0, i + 1); n++ } }
		END { print n == 1 ? v : n ? "duplicate" : "absent" }' "$1"
}

# ctl SAMPLE / agent I SAMPLE: one value, from a fresh scrape
ctl() { scrape 1 "$CTL_M" "$M" && value "$M" "$1"; }
agent() { scrape "$1" "${HOST_IP[$1]}:9465" "$M" && value "$M" "$2"; }
# for wait_until: ctl_is SAMPLE WANT / agent_is I SAMPLE WANT
ctl_is() { local v; v=$(ctl "$1") || v="(no scrape)"; promtool_ok; [ "$v" = "$2" ]; }
agent_is() { local v; v=$(agent "$1" "$2") || v="(no scrape)"; promtool_ok; [ "$v" = "$3" ]; }
# expect_ctl / expect_agent: the value now, or fail naming it
expect_ctl() {
	local v
	v=$(ctl "$1") || v="(no scrape)"
	promtool_ok
	same "$v" "$2" "controller: $1"
}
expect_agent() {
	local v
	v=$(agent "$1" "$2") || v="(no scrape)"
	promtool_ok
	same "$v" "$3" "agent h$1: $2"
}
last_count_ge() { [ "$(G job logs "$1" | tail -1)" -ge "$2" ] 2>/dev/null; }
moved_off() { [ "$(grid_field "$1" 'j["host"]')" != "$2" ] && [ "$(grid_state "$1")" = running ]; }

hosts_up 2
M=$HOSTS_DIR/metrics.txt # the last scrape
CTL_M=${HOST_IP[1]}:9464
grid_ctl_start --metrics "$CTL_M"
for i in 1 2; do
	grid_join "$i" --grid-cpus 2 --grid-memory 1G --metrics "${HOST_IP[i]}:9465"
done
wait_until 60 "two hosts up in the metrics" ctl_is 'gridvm_hosts{state="up"}' 2

# --- a fresh grid
expect_ctl 'gridvm_hosts{state="down"}' 0
expect_ctl 'gridvm_hosts{state="drained"}' 0
for h in h1 h2; do
	expect_ctl "gridvm_grid_host_cpus{host=\"$h\"}" 2
	expect_ctl "gridvm_grid_host_cpus_free{host=\"$h\"}" 2
	expect_ctl "gridvm_grid_host_memory_bytes{host=\"$h\"}" 1073741824
	expect_ctl "gridvm_grid_host_jobs{host=\"$h\"}" 0
	expect_ctl "gridvm_grid_host_up{host=\"$h\"}" 1
done
expect_ctl 'gridvm_jobs{state="queued"}' 0
expect_ctl 'gridvm_jobs_submitted_total' 0
expect_ctl 'gridvm_placements_total' 0
img_bytes=$(stat -L -c %s "$SYSDATA/images/default.img")
for i in 1 2; do
	wait_until 30 "h$i's agent to say it joined" agent_is "$i" gridvm_grid_joined 1
	expect_agent "$i" 'gridvm_vms{state="running"}' 0
	expect_agent "$i" gridvm_vms_vcpus 0
	expect_agent "$i" gridvm_images 1
	expect_agent "$i" gridvm_images_bytes "$img_bytes"
	expect_agent "$i" gridvm_host_cpus "$(getconf _NPROCESSORS_ONLN)"
done
for path in / /metrics/x /favicon.ico; do
	code=$(hosts_exec 1 python3 -c '
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen("http://%s%s" % (sys.argv[1], sys.argv[2]), timeout=20); print(200)
except urllib.error.HTTPError as e:
    print(e.code)' "$CTL_M" "$path")
	same "$code" 404 "GET $path"
done
echo "ok: a fresh grid: two hosts up with what they offer, agents joined, no jobs; promtool passes; other paths 404"

# --- one job that completed
done_id=$(G submit -- sh -c 'echo hello; exit 3')
grid_wait_state 600 "$done_id" completed failed
same "$(grid_state "$done_id")" completed
wait_until 30 "the completed job in the metrics" ctl_is 'gridvm_jobs{state="completed"}' 1
scrape_now 1 "$CTL_M" "$M"
same "$(value "$M" gridvm_jobs_submitted_total)" 1 gridvm_jobs_submitted_total
same "$(value "$M" gridvm_placements_total)" 1 gridvm_placements_total
same "$(value "$M" 'gridvm_jobs{state="running"}')" 0 'gridvm_jobs{state="running"}'
cycles=$(value "$M" 'gridvm_sched_cycles_total{kind="schedule"}')
decisions=$(value "$M" gridvm_sched_decision_seconds_count)
[ "$cycles" -ge 1 ] 2>/dev/null || fail "no scheduling cycle counted: '$cycles'"
same "$decisions" "$cycles" "decisions timed against scheduling cycles"
same "$(value "$M" 'gridvm_sched_decision_seconds_bucket{le="+Inf"}')" "$decisions" "the +Inf bucket"
python3 -c 'import sys; assert 0 <= float(sys.argv[1]) < float(sys.argv[2]) * 5' \
	"$(value "$M" gridvm_sched_decision_seconds_sum)" "$decisions" ||
	fail "implausible decision time: sum $(value "$M" gridvm_sched_decision_seconds_sum) s over $decisions"
echo "ok: a completed job: gridvm_jobs{state=\"completed\"} 1, one submitted, one placement, $cycles cycles timed"

# --- a running VM on its agent, and what it takes on the controller
cnt=$(G submit --cpus 1 --memory 256M -- sh -c 'i=0; while :; do i=$((i+1)); echo $i; sleep 1; done')
grid_wait_state 600 "$cnt" running
from=$(grid_field "$cnt" 'j["host"]')
fi=${from#h}
ti=$((3 - fi))
wait_until 30 "a running VM on $from" agent_is "$fi" 'gridvm_vms{state="running"}' 1
expect_agent "$fi" gridvm_vms_vcpus 1
expect_agent "$fi" gridvm_vms_memory_bytes 268435456
expect_agent "$ti" 'gridvm_vms{state="running"}' 0
expect_ctl 'gridvm_jobs{state="running"}' 1
expect_ctl "gridvm_grid_host_cpus_free{host=\"$from\"}" 1
expect_ctl "gridvm_grid_host_memory_free_bytes{host=\"$from\"}" $((1024 * 1048576 - 256 * 1048576))
expect_ctl "gridvm_grid_host_jobs{host=\"$from\"}" 1
echo "ok: a running job: its VM running on $from's agent (1 vCPU, 256 MiB), its resources taken on the controller"

# --- a drain moves it live: counted as a move started and completed
wait_until 120 "the count to reach 3" last_count_ge "$cnt" 3
G host drain "$from"
wait_until 30 "the drained host in the metrics" ctl_is 'gridvm_hosts{state="drained"}' 1
wait_for 600 moved_off "$cnt" "$from" ||
	fail "waited 600 s for the job to leave $from: $(G job events "$cnt" | tail -5)"
to=$(grid_field "$cnt" 'j["host"]')
same "$to" "h$ti" "the host it moved to"
wait_until 30 "the move counted" ctl_is gridvm_moves_completed_total 1
scrape_now 1 "$CTL_M" "$M"
same "$(value "$M" gridvm_moves_started_total)" 1 gridvm_moves_started_total
same "$(value "$M" gridvm_moves_failed_total)" 0 gridvm_moves_failed_total
same "$(value "$M" "gridvm_grid_host_jobs{host=\"$to\"}")" 1 "jobs on $to"
same "$(value "$M" "gridvm_grid_host_cpus_free{host=\"$from\"}")" 2 "cpus free on $from"
[ "$(value "$M" 'gridvm_sched_cycles_total{kind="replan"}')" -ge 1 ] || fail "no replan counted"
wait_until 60 "the VM running on $to's agent" agent_is "$ti" 'gridvm_vms{state="running"}' 1
wait_until 60 "no VM running on $from's agent" agent_is "$fi" 'gridvm_vms{state="running"}' 0
G host undrain "$from"
wait_until 30 "the undrained host up" ctl_is 'gridvm_hosts{state="up"}' 2
echo "ok: drained $from: the move counted as started and completed, the VM now on $to's agent"

# --- cancelled, and a job no host can ever run
G job cancel "$cnt" >/dev/null
wait_until 60 "the cancelled job in the metrics" ctl_is 'gridvm_jobs{state="cancelled"}' 1
wait_until 120 "the cancelled VM gone from $to's agent" agent_is "$ti" 'gridvm_vms{state="running"}' 0
never=$(G submit --requires 'memory >= 1T' -- true)
wait_until 30 "the unsatisfiable job in the metrics" ctl_is gridvm_jobs_unsatisfiable 1
scrape_now 1 "$CTL_M" "$M"
same "$(value "$M" 'gridvm_jobs{state="queued"}')" 1 'gridvm_jobs{state="queued"}'
same "$(value "$M" gridvm_jobs_submitted_total)" 3 gridvm_jobs_submitted_total
same "$(value "$M" gridvm_placements_total)" 2 gridvm_placements_total
G job cancel "$never" >/dev/null
wait_until 30 "no unsatisfiable job left" ctl_is gridvm_jobs_unsatisfiable 0
echo "ok: a cancelled job and one no host can run, counted"

# --- bad addresses: a clear error, no program left running
BAD=$HOSTS_DIR/bad
mkdir -p "$BAD"
rc=0
out=$(hosts_exec 2 env GRIDVM_DATA="$BAD" "$GVD" --socket "$BAD/s.sock" --metrics nonsense 2>&1) || rc=$?
same "$rc" 1 "gridvmd --metrics nonsense: exit code"
grep -q "bad metrics address 'nonsense'" <<<"$out" || fail "gridvmd --metrics nonsense said: $out"
rc=0
out=$(hosts_exec 1 env GRIDVM_DATA="$BAD" "$GVC" --listen "${HOST_IP[1]}:0" --data-dir "$BAD/ctl" \
	--grid-key "$HOSTS_DIR/grid.key" --metrics "$CTL_M" 2>&1) || rc=$?
same "$rc" 1 "gridvmctld --metrics on a busy port: exit code"
grep -q "cannot serve metrics on $CTL_M" <<<"$out" || fail "gridvmctld on a busy metrics port said: $out"
expect_ctl 'gridvm_hosts{state="up"}' 2
echo "ok: a bad and a busy --metrics address refused with a clear error"
echo "PASS test-metrics"
