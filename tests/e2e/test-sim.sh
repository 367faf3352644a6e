#!/bin/bash
# SPDX-License-Identifier: MIT
# test-sim.sh - gridvm-sim as a user runs it (no VMs): a generated trace is
# the same for a seed; a small comparison on one trace, checked at every
# event (every job ends once, no host over its capacity): EASY backfill
# waits less than FCFS, locality stages fewer bytes than pack; --json has
# every metric the issue names; bad input gets one clear line naming the
# line and field, and exit status 2.
set -uo pipefail
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SIM=${SIM:-"$ROOT/build/programs/gridvm-sim"}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAILED: $*" >&2; exit 1; }
[ -x "$SIM" ] || fail "no $SIM (build first)"

"$SIM" --help | grep -q "generate" || fail "--help"
"$SIM" generate --jobs 600 --seed 4 --rate 120 >"$T/a.swf" || fail "generate"
"$SIM" generate --jobs 600 --seed 4 --rate 120 >"$T/b.swf"
"$SIM" generate --jobs 600 --seed 5 --rate 120 >"$T/c.swf"
cmp -s "$T/a.swf" "$T/b.swf" || fail "one seed gave two traces"
cmp -s "$T/a.swf" "$T/c.swf" && fail "two seeds gave one trace"
[ "$(grep -vc '^;' "$T/a.swf")" = 600 ] || fail "not 600 jobs"
echo "ok: generate: 600 jobs, the same for a seed"

run() { # NAME ARGS...: the metrics as JSON in $T/NAME.json
	local name=$1
	shift
	"$SIM" run --swf "$T/a.swf" --hosts 8 --check --json "$@" >"$T/$name.json" ||
		fail "run $name: $(cat "$T/$name.json")"
}
run fcfs --policy fcfs
run easy --policy easy
run pack --policy pack
run locality --policy locality
run batch --policy pack --mode batch --heuristic sufferage
run replan --policy easy --replan
run fail --policy easy --fail-rate 2 --checkpoint-every 20m --replan
python3 - "$T" <<'PY' || fail "metrics"
import json, sys
t = sys.argv[1]
r = {n: json.load(open(f"{t}/{n}.json")) for n in
     ["fcfs", "easy", "pack", "locality", "batch", "replan", "fail"]}
keys = ["jobs", "jobs_completed", "decisions_per_second", "decision_ms_p50",
        "decision_ms_p99", "utilization", "makespan_s", "wait_s_mean", "wait_s_p95",
        "bounded_slowdown_mean", "migrations", "bytes_staged", "bytes_migrated",
        "host_hours", "work_lost_s"]
for n, m in r.items():
    missing = [k for k in keys if k not in m]
    assert not missing, f"{n}: no {missing}"
    assert m["jobs"] == 600 and m["jobs_completed"] == 600, f"{n}: {m['jobs_completed']} of 600 ended"
    assert m["capacity_violations"] == 0, n
    assert 0 < m["utilization"] <= 1, n
    print(f"ok: {n}: wait {m['wait_s_mean']:.0f} s, slowdown {m['bounded_slowdown_mean']:.2f}, "
          f"staged {m['bytes_staged'] / 1e9:.1f} GB, moves {m['migrations']}, lost {m['work_lost_s']:.0f} s")
assert r["easy"]["bounded_slowdown_mean"] < r["fcfs"]["bounded_slowdown_mean"], "EASY not better than FCFS"
assert r["locality"]["bytes_staged"] < r["pack"]["bytes_staged"], "locality staged no less than pack"
assert r["replan"]["migrations"] > 0, "no move with --replan"
assert r["fail"]["work_lost_s"] > 0 and r["fail"]["failures"] > 0, "no failure"
assert r["easy"]["migrations"] == 0 and r["easy"]["work_lost_s"] == 0
PY

# the table form
"$SIM" run --swf "$T/a.swf" --hosts 8 | grep -q "^bounded slowdown" || fail "table"

expect_err() { # WHAT PATTERN ARGS...
	local what=$1 pat=$2 rc
	shift 2
	"$SIM" "$@" >/dev/null 2>"$T/err" && rc=0 || rc=$?
	[ $rc = 2 ] || fail "$what: exit $rc"
	[ "$(wc -l <"$T/err")" = 1 ] || fail "$what: not one line: $(cat "$T/err")"
	grep -qE -- "$pat" "$T/err" || fail "$what: error was '$(cat "$T/err")'"
	echo "ok: $what: $(cat "$T/err")"
}
{ head -20 "$T/a.swf"; echo "9999 100 -1 abc 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1"; } >"$T/bad.swf"
expect_err "bad field" "bad.swf:21: field 4 \(run time\): \"abc\" is not a number" \
	run --swf "$T/bad.swf" --hosts 2
echo "1 0 -1 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1" >"$T/short.swf"
expect_err "short line" "short.swf:1: 16 fields, an SWF line has 18" run --swf "$T/short.swf" --hosts 2
expect_err "no file" "nosuch.swf: No such file" run --swf "$T/nosuch.swf" --hosts 2
expect_err "no hosts" "--hosts N is required" run --swf "$T/a.swf"
expect_err "bad policy" "--policy: 'fifo'" run --swf "$T/a.swf" --hosts 2 --policy fifo
expect_err "bad mode" "--mode" run --swf "$T/a.swf" --hosts 2 --mode later
expect_err "bad duration" "--checkpoint-every: 'soon' is not a duration" \
	run --swf "$T/a.swf" --hosts 2 --checkpoint-every soon
expect_err "bad jobs" "--jobs: 'many'" generate --jobs many
expect_err "no jobs" "--jobs N is required" generate
expect_err "unknown verb" "unknown command 'simulate'" simulate
echo "ok: gridvm-sim"
