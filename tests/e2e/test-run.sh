#!/bin/bash
# gridvm run: the job's exact output, stderr, and exit code come back.
source "$(dirname "$0")/lib.sh"
gv_setup
KVER=$(cat "$SYSDATA/guest/kernel-version")

out=$("$GV" run -- sh -c 'echo hello from $(uname -r); echo to-stderr >&2; exit 3' 2>"$GRIDVM_DATA/err") && rc=0 || rc=$?
expect_eq "exit code" "$rc" 3
expect_eq "stdout" "$out" "hello from $KVER"
expect_eq "stderr" "$(cat "$GRIDVM_DATA/err")" "to-stderr"

out=$("$GV" run -- true) && rc=0 || rc=$?
expect_eq "exit 0" "$rc" 0
expect_eq "no output" "$out" ""

# argv passes through untouched (no shell re-splitting)
out=$("$GV" run -- printf '%s|' 'a b' "c'd" '$HOME') && rc=0 || rc=$?
expect_eq "argv" "$out" "a b|c'd|\$HOME|"

# a large output arrives intact
want=$(seq 1 200000 | md5sum)
got=$("$GV" run --memory 256M -- seq 1 200000 | md5sum)
expect_eq "200000 lines intact" "$got" "$want"

# a job killed by a signal reports 128+signal
"$GV" run -- sh -c 'kill -9 $$' && rc=0 || rc=$?
expect_eq "killed job" "$rc" 137

# a command that does not exist
"$GV" run -- /no/such/command 2>/dev/null && rc=0 || rc=$?
expect_eq "missing command" "$rc" 127

# --env, --workdir, --cpus, --memory reach the guest
out=$("$GV" run --cpus 2 --memory 300M --env FOO=bar --workdir /tmp -- \
	sh -c 'echo $FOO $(pwd) $(grep -c ^processor /proc/cpuinfo) $(( $(sed -n "s/MemTotal: *\([0-9]*\).*/\1/p" /proc/meminfo) > 200000 ))')
expect_eq "env/workdir/cpus/memory" "$out" "bar /tmp 2 1"

# ephemeral VMs are gone afterwards
expect_eq "no VMs left" "$("$GV" vm list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" 0

# Ctrl-C on gridvm run: exit 130, and the VM is gone
"$GV" run --name intr -- sleep 100 >/dev/null 2>&1 &
runpid=$!
wait_for 60 sh -c "'$GV' vm show intr --json 2>/dev/null | grep -q '\"state\": \"running\"'" || fail "intr never ran"
kill -INT $runpid
wait $runpid && rc=0 || rc=$?
expect_eq "interrupted run" "$rc" 130
"$GV" vm show intr >/dev/null 2>&1 && fail "interrupted VM left behind"
pgrep -f "$GRIDVM_DATA/vms/intr/" >/dev/null && fail "QEMU of the interrupted VM still runs"
echo "ok: nothing left after Ctrl-C"

# a reader that goes away (`| head -1`): the VM is removed, not left running
set +o pipefail
first=$("$GV" run --name piped -- seq 1 1000000 | head -1)
set -o pipefail
expect_eq "first line through a pipe" "$first" 1
wait_for 30 sh -c "! '$GV' vm show piped >/dev/null 2>&1" || fail "VM of a closed pipe left behind"
pgrep -f "$GRIDVM_DATA/vms/piped/" >/dev/null && fail "its QEMU still runs"
echo "ok: nothing left after the reader closed the pipe"
