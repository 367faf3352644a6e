#!/bin/bash
# Restarting (or killing) the agent does not disturb running VMs; the new
# agent reattaches to their QMP sockets.
source "$(dirname "$0")/lib.sh"
gv_setup

"$GV" vm create c1 --job 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.5; done' >/dev/null
"$GV" vm create c2 --job 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.5; done' >/dev/null
"$GV" vm start c1 >/dev/null
"$GV" vm start c2 >/dev/null
"$GV" vm pause c2 >/dev/null
count_reaches c1 2 60 || fail "c1 not counting"
pid1=$(vm_field c1 '["pid"]')

apid=$(agent_pid); [ -n "$apid" ] || fail "no agent"
kill -TERM "$apid"; wait_for 10 sh -c "! kill -0 $apid 2>/dev/null" || fail "agent did not stop"
proc_alive "$pid1" || fail "QEMU died with the agent"
a=$(last_count c1)   # this starts a new agent
[ "$(agent_pid)" != "$apid" ] || fail "agent not restarted"
expect_eq "c1 still running" "$(vm_state c1)" running
expect_eq "c2 still paused" "$(vm_state c2)" paused
count_reaches c1 $((a + 1)) 30 || fail "c1 stopped counting"

apid=$(agent_pid)
kill -KILL "$apid"; wait_until 30 "the killed agent $apid to be gone" proc_gone "$apid"
"$GV" vm resume c2 >/dev/null   # QMP through the third agent
expect_eq "c2 resumed by a new agent" "$(vm_state c2)" running
b=$(last_count c2)
count_reaches c2 $((b + 1)) 30 || fail "c2 not counting after resume"
expect_eq "same QEMU" "$(vm_field c1 '["pid"]')" "$pid1"
"$GV" vm delete --force c1 >/dev/null
"$GV" vm delete --force c2 >/dev/null
