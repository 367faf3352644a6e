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

# "Nothing happens" cannot be waited for, only watched for a while: long
# enough to see a running counter move however slow this machine is now,
# i.e. three of its counting periods as just measured (at least 2 s). A
# fixed interval would let a slow guest look paused.
t0=$(date +%s%N); c0=$(last_count calc)
count_reaches calc $((c0 + 2)) 60 || fail "counter stopped at $c0"
quiet_ms=$(( ($(date +%s%N) - t0) / 1000000 * 3 / 2 ))
[ "$quiet_ms" -ge 2000 ] || quiet_ms=2000
quiet() { sleep "$((quiet_ms / 1000)).$(printf %03d $((quiet_ms % 1000)))"; }

"$GV" vm pause calc >/dev/null
expect_eq "paused" "$(vm_state calc)" paused
a=$(last_count calc); quiet; b=$(last_count calc)
expect_eq "no progress while paused (watched for $quiet_ms ms)" "$b" "$a"
"$GV" vm resume calc >/dev/null
count_reaches calc $((b + 1)) 30 || fail "no progress after resume"

pid=$(vm_field calc '["pid"]')
# the agent opens the state file and hands QEMU the descriptor: a name a
# shell would act on is just a name (no exec:cat '...' any more)
STATE="$GRIDVM_DATA/calc it's \$HOME; \$(id) x.state"
"$GV" vm save calc "$STATE" >/dev/null
expect_eq "saved" "$(vm_state calc)" saved
proc_alive "$pid" && fail "QEMU still running after save"
[ -s "$STATE" ] || fail "no state file"
expect_eq "state file readable by root only" "$(stat -c %a "$STATE")" 600
saved=$(last_count calc)
quiet
expect_eq "nothing printed while saved (watched for $quiet_ms ms)" "$(last_count calc)" "$saved"

"$GV" vm restore calc "$STATE" >/dev/null
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

# graceful stop: the job gets SIGTERM through the ACPI power button
"$GV" vm create term --job 'trap "echo got TERM; exit 7" TERM; echo up; while :; do sleep 0.2; done' >/dev/null
"$GV" vm start term >/dev/null
wait_for 60 sh -c "'$GV' vm logs term | grep -q up" || fail "term job never started"
# (the init loads the power-button driver before it starts the job)
"$GV" vm stop term --timeout 60s >/dev/null
expect_eq "stopped" "$(vm_state term)" stopped
expect_eq "the job saw SIGTERM and chose its exit code" "$(vm_field term '["exit_code"]')" 7
"$GV" vm logs term 2>/dev/null | grep -q "got TERM" || fail "no TERM output"
echo "ok: graceful stop"
"$GV" vm delete term >/dev/null
