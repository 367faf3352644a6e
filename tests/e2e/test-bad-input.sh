#!/bin/bash
# Bad input and failures: a clear one-line error, a non-zero exit, and no
# half-created VM left behind.
source "$(dirname "$0")/lib.sh"
gv_setup

# expect_err WHAT PATTERN CMD...: CMD fails, stderr matches PATTERN
expect_err() {
	local what=$1 pat=$2 rc
	shift 2
	"$@" >/dev/null 2>"$GRIDVM_DATA/err" && rc=0 || rc=$?
	[ $rc != 0 ] || fail "$what: succeeded"
	grep -qE "$pat" "$GRIDVM_DATA/err" || fail "$what: error was '$(cat "$GRIDVM_DATA/err")'"
	echo "ok: $what: $(head -1 "$GRIDVM_DATA/err")"
}
no_vms() {
	local n
	n=$("$GV" vm list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
	expect_eq "no VM left ($1)" "$n" 0
	expect_eq "no VM directory left ($1)" "$(ls "$GRIDVM_DATA/vms")" ""
}

expect_err "unknown image" "no such image: nosuch" "$GV" run --image nosuch -- true
no_vms "unknown image"
expect_err "memory beyond the host" "more than this host has" "$GV" run --memory 2T -- true
expect_err "absurd memory" "invalid memory size" "$GV" run --memory 100T -- true
expect_err "unparsable memory" "invalid memory size" "$GV" run --memory lots -- true
expect_err "tiny memory" "invalid memory size" "$GV" vm create tiny --memory 1M
no_vms "bad memory"
expect_err "invalid VM name" "invalid VM name" "$GV" vm create 'bad/name'
expect_err "no command" "no command given" "$GV" run
expect_err "unknown VM" "no such VM: ghost" "$GV" vm start ghost
expect_err "unknown subcommand" "unknown command" "$GV" vm frobnicate

"$GV" vm create dup --job 'sleep 1000' >/dev/null
expect_err "duplicate name" "exists already" "$GV" vm create dup
expect_err "restore a VM that was not saved" "not saved" "$GV" vm restore dup "$GRIDVM_DATA/x"
expect_err "save a VM that is not running" "cannot save VM dup: it is defined" "$GV" vm save dup "$GRIDVM_DATA/x"
"$GV" vm start dup >/dev/null
echo junk >"$GRIDVM_DATA/exists"
expect_err "save over an existing file" "exists already" "$GV" vm save dup "$GRIDVM_DATA/exists"
expect_err "delete a running VM" "stop it first" "$GV" vm delete dup
"$GV" vm save dup "$GRIDVM_DATA/dup.state" >/dev/null
expect_err "restore from another VM's or an older file" "was saved to" \
	"$GV" vm restore dup "$GRIDVM_DATA/exists"
cp "$GRIDVM_DATA/dup.state" "$GRIDVM_DATA/dup.good"
printf 'JUNK' | dd of="$GRIDVM_DATA/dup.state" conv=notrunc 2>/dev/null
expect_err "restore from a damaged state file" "not a saved VM state" \
	"$GV" vm restore dup "$GRIDVM_DATA/dup.state"
expect_eq "still saved after the bad restores" "$(vm_state dup)" saved
mv "$GRIDVM_DATA/dup.good" "$GRIDVM_DATA/dup.state"
"$GV" vm restore dup "$GRIDVM_DATA/dup.state" >/dev/null
expect_eq "good restore afterwards" "$(vm_state dup)" running

# QEMU crashing under a running VM
pid=$(vm_field dup '["pid"]')
kill -9 "$pid"
wait_for 10 sh -c "[ \"\$('$GV' vm show dup --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])')\" = failed ]" \
	|| fail "crash not noticed"
vm_field dup '["error"]' | grep -q "ended without reporting" || fail "no crash reason"
echo "ok: QEMU crash recorded: $(vm_field dup '["error"]')"
"$GV" vm delete dup >/dev/null

# gridvm run whose QEMU crashes midway: exit 125 and an error. Killed once
# the job has started (its first line), not after a fixed time.
(
	if ! wait_for 180 sh -c "'$GV' vm logs crash 2>/dev/null | grep -qx started"; then
		kill -9 "$(cat "$GRIDVM_DATA/vms/crash/qemu.pid" 2>/dev/null)" 2>/dev/null || true # end the run
		fail "waited 180 s for the job of VM crash to start: it did not"
	fi
	pid=$(vm_field crash '["pid"]')
	grep -qF "$GRIDVM_DATA/vms/crash/" < <(tr '\0' ' ' <"/proc/$pid/cmdline") ||
		fail "pid $pid is not the QEMU of VM crash"
	kill -9 "$pid"
) &
killer=$!
"$GV" run --name crash -- sh -c 'echo started; sleep 600' >/dev/null 2>"$GRIDVM_DATA/err" && rc=0 || rc=$?
wait $killer || fail "the QEMU of VM crash was not killed as planned"
expect_eq "crashed run exits 125" "$rc" 125
grep -q "VM crash failed" "$GRIDVM_DATA/err" || fail "no error for the crash: $(cat "$GRIDVM_DATA/err")"
no_vms "crashed run"

# QEMU failing to start (a broken disk overlay)
"$GV" vm create broken >/dev/null
: >"$GRIDVM_DATA/vms/broken/disk.qcow2"
expect_err "QEMU failing to start" "QEMU failed to start" "$GV" vm start broken
expect_eq "still defined" "$(vm_state broken)" defined
pgrep -f "$GRIDVM_DATA/vms/broken/" >/dev/null && fail "a QEMU was left running"
"$GV" vm delete broken >/dev/null

# missing kernel
mv "$GRIDVM_DATA/guest" "$GRIDVM_DATA/guest.away"
expect_err "missing kernel" "guest kernel or initramfs missing" "$GV" run -- true
mv "$GRIDVM_DATA/guest.away" "$GRIDVM_DATA/guest"
no_vms "missing kernel"

# a request body past the API's limit (16 MiB) is refused, and the agent
# goes on serving
out=$(python3 - "$GRIDVM_SOCKET" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = b'{"name": "' + b"x" * (20 << 20) + b'"}'
s.sendall(b"POST /v1/vms HTTP/1.1\r\nHost: gridvm\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n" % len(body) + body)
reply = b""
while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
    chunk = s.recv(65536)
    if not chunk:
        break
    reply += chunk
print(reply.split(b"\r\n")[0].decode(), reply.split(b"\r\n\r\n", 1)[-1].decode())
PY
)
echo "$out" | grep -q "413" || fail "a 20 MiB body was not refused with 413: $out"
echo "$out" | grep -q "request body too large" || fail "no reason given: $out"
"$GV" vm list >/dev/null || fail "the agent stopped serving after a large body"
echo "ok: a 20 MiB request body: $out"

# agent unreachable
GRIDVM_NO_AUTOSTART=1 GRIDVM_SOCKET=/nonexistent/sock expect_err "agent unreachable" \
	"agent is not running" "$GV" vm list
