#!/bin/bash
# Checkpoints: a counting job continues from a restored checkpoint; the
# second checkpoint stores far less than the first; retention, periodic
# checkpoints and deletion on success; bad input.
source "$(dirname "$0")/lib.sh"
gv_setup
COUNTER='i=0; while :; do i=$((i+1)); echo $i; sleep 0.3; done'
ck_count() { "$GV" checkpoint list "$1" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
ck_field() { "$GV" checkpoint list "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)$2)"; }
contiguous() {
	"$GV" vm logs "$1" | python3 -c '
import sys
nums = [int(l) for l in sys.stdin.read().split()]
assert nums == list(range(1, len(nums) + 1)), nums
print(len(nums))'
}

"$GV" vm create c --memory 256M --job "$COUNTER" >/dev/null
"$GV" vm start c >/dev/null
count_reaches c 5 60 || fail "counter not running"
"$GV" checkpoint create c >/dev/null
at1=$(last_count c)
count_reaches c $((at1 + 5)) 60 || fail "counter stopped after the checkpoint"
"$GV" checkpoint create c >/dev/null
expect_eq "two checkpoints" "$(ck_count c)" 2
first=$(ck_field c '[0]["bytes_added"]'); second=$(ck_field c '[1]["bytes_added"]')
[ "$second" -lt $((first / 4)) ] || fail "second checkpoint stored $second bytes, first $first"
echo "ok: first checkpoint stored $first bytes, second $second"
pause=$(ck_field c '[1]["pause_ms"]')
echo "ok: pause of the second checkpoint: $pause ms"

# restore the first: the job's output goes back to that instant and goes on
id1=$(ck_field c '[0]["id"]')
"$GV" checkpoint restore c "$id1" >/dev/null
expect_eq "running after restore" "$(vm_state c)" running
n=$(contiguous c)
[ "$n" -le $((at1 + 1)) ] || fail "output not rolled back: $n lines, checkpoint at $at1"
count_reaches c $((at1 + 4)) 60 || fail "no progress after restore"
n=$(contiguous c)
echo "ok: restored at $at1, now counted 1..$n without a gap or repeat"
"$GV" checkpoint show c "$id1" | grep -q memory_chunks || fail "show"

# deleting checkpoints frees their chunks
before=$(du -sb "$GRIDVM_DATA/chunks" | cut -f1)
"$GV" checkpoint delete c "$id1" >/dev/null
"$GV" checkpoint delete c "$(ck_field c '[0]["id"]')" >/dev/null
after=$(du -sb "$GRIDVM_DATA/chunks" | cut -f1)
[ "$after" -lt $((before / 4)) ] || fail "chunks not freed: $before -> $after bytes"
echo "ok: chunk store $before -> $after bytes after deleting both"
"$GV" vm delete --force c >/dev/null

# retention: keep the last 2
"$GV" vm create k --memory 192M --checkpoint-keep 2 --job "$COUNTER" >/dev/null
"$GV" vm start k >/dev/null
count_reaches k 2 60 || fail "k not running"
for i in 1 2 3; do "$GV" checkpoint create k >/dev/null; done
expect_eq "kept the last 2" "$(ck_count k)" 2
"$GV" vm delete --force k >/dev/null

# periodic checkpoints, dropped when the job succeeds; kept when it fails
"$GV" vm create ok --memory 192M --checkpoint-every 2s --checkpoint-drop-on-success \
	--job 'sleep 9; exit 0' >/dev/null
"$GV" vm create bad --memory 192M --checkpoint-every 2s --checkpoint-drop-on-success \
	--job 'sleep 9; exit 3' >/dev/null
"$GV" vm start ok >/dev/null
"$GV" vm start bad >/dev/null
wait_for 60 sh -c "[ \$('$GV' checkpoint list ok --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') -ge 2 ]" \
	|| fail "no periodic checkpoints"
echo "ok: periodic checkpoints made"
wait_for 90 sh -c "[ \"\$('$GV' vm show ok --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])')\" = stopped ]" || fail "ok did not finish"
wait_for 90 sh -c "[ \"\$('$GV' vm show bad --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])')\" = stopped ]" || fail "bad did not finish"
expect_eq "checkpoints of the successful job dropped" "$(ck_count ok)" 0
[ "$(ck_count bad)" -ge 1 ] || fail "checkpoints of the failed job were dropped"
echo "ok: failed job keeps $(ck_count bad) checkpoints"

# bad input
"$GV" checkpoint create ok 2>"$GRIDVM_DATA/e" && fail "checkpointed a stopped VM"
grep -q "cannot checkpoint VM ok: it is stopped" "$GRIDVM_DATA/e" || fail "unclear: $(cat "$GRIDVM_DATA/e")"
"$GV" checkpoint create ghost 2>"$GRIDVM_DATA/e" && fail "checkpointed a missing VM"
grep -q "no such VM: ghost" "$GRIDVM_DATA/e" || fail "unclear: $(cat "$GRIDVM_DATA/e")"
"$GV" checkpoint restore ok 2>"$GRIDVM_DATA/e" && fail "restored without checkpoints"
grep -q "has no checkpoints" "$GRIDVM_DATA/e" || fail "unclear: $(cat "$GRIDVM_DATA/e")"
"$GV" checkpoint show bad nosuch-id 2>"$GRIDVM_DATA/e" && fail "showed a missing checkpoint"
grep -q "no such checkpoint" "$GRIDVM_DATA/e" || fail "unclear: $(cat "$GRIDVM_DATA/e")"
echo "ok: bad input refused"
