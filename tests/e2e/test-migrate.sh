#!/bin/bash
# Cold and live migration between two hosts (network namespaces, an agent
# each): a job that counts and writes a file per step keeps counting on the
# destination without a restart or a gap, every file it wrote is there, the
# VM is never left on both hosts or on neither; failures leave it running
# on the source; bad input gets clear errors.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/hosts.sh"
hosts_up 3
hosts_agent_start 1
hosts_agent_start 2
# each step: a new file on the VM's disk, then check that all are there
JOB='i=0; while :; do i=$((i+1)); echo $i >/root/f$i; sync; n=$(ls /root | grep -c "^f"); if [ $n -eq $i ]; then echo $i; else echo "MISSING $i $n"; fi; sleep 0.3; done'

source "$(dirname "$0")/hostvm.sh"

hosts_gv 1 vm create c --memory 256M --job "$JOB" >/dev/null
hosts_gv 1 vm start c >/dev/null
reaches_on 1 c 5 || fail "the job does not count"

# two checkpoints on h1: they follow the VM
ck_ids() { hosts_gv "$1" checkpoint list "$2" --json | python3 -c 'import json,sys; print(" ".join(c["id"] for c in json.load(sys.stdin)))'; }
hosts_gv 1 checkpoint create c >/dev/null
at=$(last_on 1 c)
reaches_on 1 c $((at + 2)) || fail "no progress after the first checkpoint"
hosts_gv 1 checkpoint create c >/dev/null
ids=$(ck_ids 1 c)
[ "$(echo "$ids" | wc -w)" = 2 ] || fail "expected two checkpoints on h1, got '$ids'"

# cold: h1 -> h2
hosts_gv 1 migrate c --to "${HOST_IP[2]}" --cold --json >"$HOSTS_DIR/cold.json"
only_on 2 c
at=$(last_on 2 c)
reaches_on 2 c $((at + 5)) || fail "no progress after the cold migration"
echo "ok: cold migration, counted 1..$(check_log 2 c) on h2"
expect_eq "the checkpoints followed c to h2" "$(ck_ids 2 c)" "$ids"
expect_eq "and left h1" "$(ck_ids 1 c)" ""
grep -q "2 checkpoints of c moved" "${HOST_DATA[1]}/gridvmd.log" || fail "no checkpoint move logged"
echo "ok: $(grep -o "2 checkpoints of c moved.*" "${HOST_DATA[1]}/gridvmd.log")"
# the first one restores on h2: the job goes on from where it was then
first=${ids%% *}
hosts_gv 2 checkpoint restore c "$first" >/dev/null || fail "cannot restore a moved checkpoint"
at=$(last_on 2 c)
reaches_on 2 c $((at + 3)) || fail "no progress after restoring the moved checkpoint"
echo "ok: restored moved checkpoint $first on h2, counted 1..$(check_log 2 c)"

# live: h2 -> h1
hosts_gv 2 migrate c --to "${HOST_IP[1]}" --json >"$HOSTS_DIR/live.json"
only_on 1 c
at=$(last_on 1 c)
reaches_on 1 c $((at + 5)) || fail "no progress after the live migration"
echo "ok: live migration, counted 1..$(check_log 1 c) on h1"
expect_eq "the checkpoints came back with c" "$(ck_ids 1 c)" "$ids"
expect_eq "and left h2" "$(ck_ids 2 c)" ""
# the later disk passes read QEMU's dirty bitmap instead of hashing the
# whole overlay again, and the switchover read the last ranges
grep -q "vm:c:disk: .* written since the last index (QEMU's dirty bitmap)" \
	"${HOST_DATA[2]}/gridvmd.log" || fail "no disk pass from the dirty bitmap: $(grep -i dirty "${HOST_DATA[2]}/gridvmd.log")"
grep -q "c: last dirty ranges read" "${HOST_DATA[2]}/gridvmd.log" ||
	fail "the switchover did not read the dirty bitmap"
echo "ok: $(grep -c "QEMU's dirty bitmap" "${HOST_DATA[2]}/gridvmd.log") disk passes from QEMU's dirty bitmap:"
grep -E "dirty|final copy" "${HOST_DATA[1]}/gridvmd.log" "${HOST_DATA[2]}/gridvmd.log" | sed 's/^/    /'
python3 - "$HOSTS_DIR/live.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["mode"] == "live", s
print("ok: QEMU downtime %s ms, guest paused %s ms (then confirm %s ms, of it cont on "
      "the destination %s ms), total %.2f s" % (
    s.get("qemu_downtime_ms"), s.get("paused_ms"), s.get("confirm_ms"), s.get("dest_cont_ms"),
    s["seconds"]))
PY

# a destination that is not there: the VM stays and runs on the source
hosts_gv 1 migrate c --to "${HOST_IP[3]}" 2>"$HOSTS_DIR/e" && fail "migrated to a host without an agent"
grep -q "runs here still\|destination" "$HOSTS_DIR/e" || fail "unclear: $(cat "$HOSTS_DIR/e")"
echo "ok: unreachable destination: $(head -1 "$HOSTS_DIR/e")"
only_on 1 c
hosts_gv 1 migrate c --to "${HOST_IP[3]}" --cold 2>"$HOSTS_DIR/e" && fail "cold-migrated to nowhere"
echo "ok: cold to nowhere: $(head -1 "$HOSTS_DIR/e")"
only_on 1 c
at=$(last_on 1 c)
reaches_on 1 c $((at + 3)) || fail "no progress after the failed migrations"
check_log 1 c >/dev/null

hosts_gv 1 migrate status --json | python3 -c '
import json, sys
m = [x for x in json.load(sys.stdin) if x["vm"] == "c"][0]
assert m["phase"] == "aborted" and "error" in m["info"], m
print("ok: migrate status records the failed attempt:", m["info"]["error"][:60])'

# cancel in the middle of the memory copy (a slow link): the VM stays
hosts_shape 2 4mbit
( hosts_gv 1 migrate c --to "${HOST_IP[2]}" 2>"$HOSTS_DIR/cancel.err" >/dev/null || true ) &
mig=$!
wait_for 120 sh -c "'$GV' --help >/dev/null; GRIDVM_DATA='${HOST_DATA[1]}' GRIDVM_SOCKET='${HOST_SOCK[1]}' GRIDVM_NO_AUTOSTART=1 '$GV' migrate status --json | grep -q '\"phase\": \"memory\"'" \
	|| fail "the migration never reached the memory phase"
hosts_gv 1 migrate cancel c >/dev/null
wait $mig
grep -q "cancelled" "$HOSTS_DIR/cancel.err" || fail "not cancelled: $(cat "$HOSTS_DIR/cancel.err")"
echo "ok: cancelled during the memory copy: $(head -1 "$HOSTS_DIR/cancel.err")"
hosts_unshape 2
only_on 1 c
at=$(last_on 1 c)
reaches_on 1 c $((at + 3)) || fail "no progress after the cancel"
check_log 1 c >/dev/null

# the destination's agent killed during the memory copy: the source backs
# out and keeps the VM; the restarted destination agent drops its
# unconfirmed incoming copy
hosts_shape 2 4mbit
( hosts_gv 1 migrate c --to "${HOST_IP[2]}" 2>"$HOSTS_DIR/kill.err" >/dev/null || true ) &
mig=$!
wait_for 120 sh -c "GRIDVM_DATA='${HOST_DATA[1]}' GRIDVM_SOCKET='${HOST_SOCK[1]}' GRIDVM_NO_AUTOSTART=1 '$GV' migrate status --json | grep -q '\"phase\": \"memory\"'" \
	|| fail "the migration never reached the memory phase"
kill -9 "${HOST_AGENT_PID[2]}"
wait $mig
echo "ok: destination agent killed mid-copy: $(head -1 "$HOSTS_DIR/kill.err")"
grep -q "runs here still" "$HOSTS_DIR/kill.err" || fail "unclear: $(cat "$HOSTS_DIR/kill.err")"
hosts_unshape 2
expect_eq "c still runs on h1" "$(state_on 1 c)" running
hosts_agent_start 2
no_qemu_on_h2() { ! pgrep -f "${HOST_DATA[2]}/vms/c/" >/dev/null; }
wait_for 30 no_qemu_on_h2 || fail "the incoming QEMU on h2 was left"
only_on 1 c
at=$(last_on 1 c)
reaches_on 1 c $((at + 3)) || fail "no progress after the destination died"
check_log 1 c >/dev/null

# a destination without the grid key refuses; the VM stays
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$HOSTS_DIR/other.key"
HOSTS_KEY_OVERRIDE="$HOSTS_DIR/other.key" hosts_agent_start 3
hosts_gv 1 migrate c --to "${HOST_IP[3]}" 2>"$HOSTS_DIR/e" && fail "migrated to a host with another key"
grep -q "authentication failed" "$HOSTS_DIR/e" || fail "unclear: $(cat "$HOSTS_DIR/e")"
echo "ok: wrong key: $(head -1 "$HOSTS_DIR/e")"
only_on 1 c

# bad input
hosts_gv 1 migrate ghost --to "${HOST_IP[2]}" 2>"$HOSTS_DIR/e" && fail "migrated a missing VM"
grep -q "no such VM: ghost" "$HOSTS_DIR/e" || fail "unclear: $(cat "$HOSTS_DIR/e")"
hosts_gv 1 migrate c --to "${HOST_IP[1]}" 2>"$HOSTS_DIR/e" && fail "migrated to itself"
grep -q "is on .* already" "$HOSTS_DIR/e" || fail "unclear: $(cat "$HOSTS_DIR/e")"
hosts_gv 1 vm stop c --force >/dev/null
hosts_gv 1 migrate c --to "${HOST_IP[2]}" 2>"$HOSTS_DIR/e" && fail "migrated a stopped VM"
grep -q "cannot migrate VM c: it is stopped" "$HOSTS_DIR/e" || fail "unclear: $(cat "$HOSTS_DIR/e")"
echo "ok: bad input refused"
