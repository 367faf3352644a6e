#!/bin/bash
# SPDX-License-Identifier: MIT
# test-grid-learn.sh - what the controller learns from its agents, end to
# end on namespace hosts with real VMs under TCG:
# - locality from block samples: a job's image is on h1 only, which its
#   requirements exclude; h2 holds a close relative of the image, h3 only
#   unrelated ones: the controller estimates h2 lacks about 1 MiB of it
#   and h3 about 8 MiB, and places the job on h2;
# - a move for gain: a counting job runs on a speed-1 host; a host four
#   times faster joins; the re-plan moves the job there live (its count
#   goes on, no restart); the source agent reports the move's measured
#   time, pause and bytes; the controller writes them in the job's events
#   next to the estimate and calibrates its cost model from them, and a
#   restarted controller still has that model;
# - a live move that cannot be (a fault at the start of the live
#   migration): the move fails, the job runs on where it was, and the next
#   move is cold (suspend, copy, resume): the count goes on.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$ROOT/tests/e2e/lib.sh"
source "$ROOT/tests/e2e/hosts.sh"
source "$ROOT/tests/e2e/grid.sh"

same() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', want '$2'"; }
hosts_up_count() { # N: N hosts are up
	[ "$(G hosts --json | python3 -c 'import json,sys; print(sum(h["state"] == "up" for h in json.load(sys.stdin)))')" = "$1" ]
}
# the bytes host $1 is estimated to lack of image $2 (empty: not estimated)
lacks() {
	G hosts --json | python3 -c '
import json, sys
for h in json.load(sys.stdin):
    if h["name"] == sys.argv[1]: print(h.get("lacks", {}).get(sys.argv[2], ""))' "$1" "$2"
}
estimated() { [ -n "$(lacks "$1" "$2")" ]; }
last_count_ge() { [ "$(G job logs "$1" | tail -1)" -ge "$2" ] 2>/dev/null; }
moved_off() { [ "$(grid_field "$1" 'j["host"]')" != "$2" ] && [ "$(grid_state "$1")" = running ]; }
has_event() { G job events "$1" | grep -q -- "$2"; }
status_field() { G status --json | python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }

SYS=${GRIDVM_SYSDATA:-/var/lib/gridvm}
hosts_up 4

# --- three images: "base" is the default image with 8 MiB of its own;
# "derived" is base with 1 MiB of that rewritten; every host also holds
# the default image (which shares nothing of base's own 8 MiB)
IMG=$HOSTS_DIR/img
mkdir -p "$IMG"
cp --sparse=always "$SYS/images/default.img" "$IMG/base.img"
head -c $((8 << 20)) /dev/urandom | dd of="$IMG/base.img" bs=1M seek=40 conv=notrunc status=none
cp --sparse=always "$IMG/base.img" "$IMG/derived.img"
head -c $((1 << 20)) /dev/urandom | dd of="$IMG/derived.img" bs=1M seek=44 conv=notrunc status=none
for i in 1 2; do mkdir -p "${HOST_DATA[i]}/images"; done
mv "$IMG/base.img" "${HOST_DATA[1]}/images/base.img"
mv "$IMG/derived.img" "${HOST_DATA[2]}/images/derived.img"

grid_ctl_start --policy locality --replan-interval 2s
for i in 1 2 3; do
	grid_join "$i" --grid-cpus 2 --grid-memory 1G
done
wait_until 60 "three hosts up" hosts_up_count 3

# --- locality from samples
wait_until 120 "h2's lack of image base to be estimated" estimated h2 base
wait_until 120 "h3's lack of image base to be estimated" estimated h3 base
l2=$(lacks h2 base)
l3=$(lacks h3 base)
echo "estimated: h2 lacks $l2 bytes of base, h3 lacks $l3"
[ "$l2" -ge $((1 << 19)) ] && [ "$l2" -le $((2 << 20)) ] ||
	fail "h2 should lack about 1 MiB of base, estimated $l2 bytes"
[ "$l3" -ge $((7 << 20)) ] && [ "$l3" -le $((9 << 20)) ] ||
	fail "h3 should lack about 8 MiB of base, estimated $l3 bytes"
[ -z "$(lacks h1 base)" ] || fail "h1 holds base, yet is said to lack $(lacks h1 base) bytes of it"
loc=$(G submit --image base --memory 128M --requires 'name != "h1"' -- \
	sh -c 'echo from base; exit 5')
grid_wait_state 300 "$loc" completed failed
same "$(grid_field "$loc" 'j["host"]')" h2 "the host of the job whose image h2 nearly holds"
same "$(G job logs "$loc")" "from base"
rc=0
G job wait "$loc" || rc=$?
same "$rc" 5
G job events "$loc" | grep place
echo "ok: locality from block samples: the job went to h2, which lacked $l2 bytes of its image (h3: $l3)"

# --- a faster host joins: the counting job moves there for gain
count=$(G submit --memory 256M --walltime 30m -- sh -c \
	'i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo $i; sleep 1; done')
grid_wait_state 300 "$count" running
wait_until 120 "the count to reach 3" last_count_ge "$count" 3
from=$(grid_field "$count" 'j["host"]')
same "$(status_field 'j["moves"]["moves_measured"]')" 0 "moves measured before any"
grid_join 4 --grid-cpus 2 --grid-memory 1G --grid-speed 4
wait_until 300 "the job to leave $from" moved_off "$count" "$from"
same "$(grid_field "$count" 'j["host"]')" h4 "where the job moved for gain"
G job events "$count" | grep -E "move from $from to h4: gain" ||
	fail "no gain move event: $(G job events "$count")"
wait_until 120 "the move's measurement in the job's events" has_event "$count" "took"
G job events "$count" | grep -E "measured|took"
grid_wait_state 300 "$count" completed
same "$(G job logs "$count" | tr '\n' ' ')" "$(seq 1 60 | tr '\n' ' ')" "the count across the move"
same "$(grid_field "$count" 'j["moves"]')" 1

# --- the cost model took the measurement
same "$(status_field 'j["moves"]["moves_measured"]')" 1 "moves measured"
python3 - "$(G status --json)" <<'EOF' || fail "the cost model does not reflect the measured move"
import json, sys
st = json.loads(sys.argv[1])["moves"]
s = st["samples"][0]
assert s["total_s"] > 0 and s["bytes"] > 0 and s["memory"] == 256 << 20, s
# one measurement: the downtime is the measured pause, the rate factor the
# one that makes the model's time equal the measured time
assert abs(st["model"]["switchover_s"] - s["downtime_s"]) < 1e-6, st
print("cost model:", st["model"], "from", s)
EOF
G status
model=$(status_field 'json.dumps(j["moves"]["model"], sort_keys=True)')
grid_ctl_stop
grid_ctl_start --policy locality --replan-interval 2s
same "$(status_field 'json.dumps(j["moves"]["model"], sort_keys=True)')" "$model" \
	"the cost model after a restart"
echo "ok: a faster host joined: the job moved there for gain, counted 1..60 without a restart; the measured move calibrated the cost model, which survives a restart"

# --- a live move that cannot be: the job moves cold and counts on
hosts_agent_stop 4
GRIDVM_FAULT="migrate.src.live=fail" grid_join 4 --grid-cpus 2 --grid-memory 1G --grid-speed 4
wait_until 60 "four hosts up" hosts_up_count 4
for h in h1 h2 h3; do G host drain "$h"; done
cold=$(G submit --memory 256M -- sh -c \
	'i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo $i; sleep 1; done')
grid_wait_state 300 "$cold" running
same "$(grid_field "$cold" 'j["host"]')" h4 "the host of the job while the others drain"
wait_until 120 "the count to reach 3" last_count_ge "$cold" 3
for h in h1 h2 h3; do G host undrain "$h"; done
G host drain h4
wait_until 300 "the job to leave h4" moved_off "$cold" h4
G job events "$cold" | grep -E "move|measured"
G job events "$cold" | grep -q "the live move to .* failed: .*fault injected at migrate.src.live" ||
	fail "no failed live move in the events"
G job events "$cold" | grep -q "cold, since its live move failed" || fail "no cold move ordered"
G job events "$cold" | grep -qE "now runs on h[123] \(from h4, cold\)" || fail "no cold move made"
grid_wait_state 300 "$cold" completed
same "$(G job logs "$cold" | tr '\n' ' ')" "$(seq 1 40 | tr '\n' ' ')" "the count across the cold move"
same "$(status_field 'j["moves"]["moves_measured"]')" 1 "moves measured (a cold one is not a sample)"
echo "ok: a live move that could not be: the job moved cold and counted 1..40 without a restart"
