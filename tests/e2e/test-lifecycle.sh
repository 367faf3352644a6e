#!/bin/bash
# create/start/pause/resume/save/restore/stop/delete of a counting VM; the
# restored VM continues counting from where it was saved.
source "$(dirname "$0")/lib.sh"
gv_setup

"$GV" vm create calc --image default --memory 256M \
	--job 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.5; done' >/dev/null
expect_eq "created" "$(vm_state calc)" defined
"$GV" vm start calc >/dev/null
expect_eq "running" "$(vm_state calc)" running
count_reaches calc 3 60 || fail "counter never reached 3"

"$GV" vm pause calc >/dev/null
expect_eq "paused" "$(vm_state calc)" paused
a=$(last_count calc); sleep 2; b=$(last_count calc)
expect_eq "no progress while paused" "$b" "$a"
"$GV" vm resume calc >/dev/null
count_reaches calc $((b + 1)) 30 || fail "no progress after resume"

pid=$(vm_field calc '["pid"]')
"$GV" vm save calc "$GRIDVM_DATA/calc.state" >/dev/null
expect_eq "saved" "$(vm_state calc)" saved
proc_alive "$pid" && fail "QEMU still running after save"
[ -s "$GRIDVM_DATA/calc.state" ] || fail "no state file"
saved=$(last_count calc)
sleep 1
expect_eq "nothing printed while saved" "$(last_count calc)" "$saved"

"$GV" vm restore calc "$GRIDVM_DATA/calc.state" >/dev/null
expect_eq "restored" "$(vm_state calc)" running
count_reaches calc $((saved + 3)) 60 || fail "no progress after restore"
# the whole output is 1, 2, 3, ... without a restart from 1
"$GV" vm logs calc | python3 -c '
import sys
nums = [int(l) for l in sys.stdin.read().split()]
assert nums == list(range(1, len(nums) + 1)), nums
print("ok: counted 1..%d without a gap or restart" % len(nums))'

"$GV" vm stop calc --timeout 1s >/dev/null
expect_eq "stopped" "$(vm_state calc)" stopped
"$GV" vm start calc >/dev/null
expect_eq "started again" "$(vm_state calc)" running
"$GV" vm delete calc 2>/dev/null && fail "deleted a running VM without --force"
"$GV" vm delete calc --force >/dev/null
[ -e "$GRIDVM_DATA/vms/calc" ] && fail "VM directory left behind"
"$GV" vm show calc 2>/dev/null && fail "VM still known"
echo "ok: deleted"
