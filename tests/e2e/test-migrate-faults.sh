#!/bin/bash
# Live migration failures at later phases: the source agent killed during
# the memory copy and after the switch, and the link cut while the source
# waits for the destination's confirmation. Each time the VM must end up
# running on exactly one host, never on both, and its job (which writes a
# file per step and checks they are all there) must go on without a gap.
# GRIDVM_FAULT=migrate.src.PHASE=hold:SECONDS makes the source agent stop at a phase;
# the test waits for the line the agent logs there ("gridvm-fault: POINT:
# hold S s"), not for a time. Holds the test ends by killing the agent are
# long (a loaded machine never races them); one that must end by itself is
# short, and the test waits for what follows it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/hosts.sh"
source "$(dirname "$0")/hostvm.sh"
hosts_up 2
GRIDVM_FAULT=migrate.src.memory=hold:120 hosts_agent_start 1
hosts_agent_start 2
JOB='i=0; while :; do i=$((i+1)); echo $i >/root/f$i; sync; n=$(ls /root | grep -c "^f"); if [ $n -eq $i ]; then echo $i; else echo "MISSING $i $n"; fi; sleep 0.3; done'
phase_on() { # HOST VM: the phase of its migration record there, or "none"
	hosts_gv "$1" migrate status --json | python3 -c '
import json, sys
m = [x for x in json.load(sys.stdin) if x["vm"] == sys.argv[1]]
print(m[0]["phase"] if m else "none")' "$2"
}
agent_log() { echo "${HOST_DATA[$1]}/gridvmd.log"; }
held_at() { # HOST VM PHASE MARK: host's agent holds VM's migration at PHASE
	wait_until 180 "the migration of $2 on h$1 to hold at $3" \
		log_has "$(agent_log "$1")" "$4" "gridvm-fault: migrate.src.$3: hold"
	expect_eq "h$1 records $2 at $3 while it holds" "$(phase_on "$1" "$2")" "$3"
}
qemu_migration() { # HOST VM: QEMU's own migration status, asked on its
	# monitor (only while no agent of that host holds the monitor)
	python3 - "${HOST_DATA[$1]}/vms/$2/qmp.sock" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
def call(cmd):
    f.write(json.dumps({"execute": cmd}) + "\n"); f.flush()
    while True:
        m = json.loads(f.readline())
        if "return" in m or "error" in m:
            return m
json.loads(f.readline())  # the greeting
call("qmp_capabilities")
print(call("query-migrate").get("return", {}).get("status", "none"))
PY
}
qemu_migration_is() { [ "$(qemu_migration "$1" "$2" 2>/dev/null)" = "$3" ]; }
settles_on() { # HOST VM: wait until it runs there only
	local other=$(( $1 == 1 ? 2 : 1 )) end=$((SECONDS + 90))
	until [ "$(state_on "$1" "$2")" = running ] && [ "$(state_on "$other" "$2")" = absent ]; do
		[ $SECONDS -lt $end ] || fail "$2 did not settle on h$1 (h1: $(state_on 1 "$2"), h2: $(state_on 2 "$2"))"
		sleep 0.5
	done
	only_on "$1" "$2"
	local at; at=$(last_on "$1" "$2")
	reaches_on "$1" "$2" $((at + 3)) || fail "no progress on h$1"
	echo "ok: counted 1..$(check_log "$1" "$2") on h$1"
}

hosts_gv 1 vm create c --memory 256M --job "$JOB" >/dev/null
hosts_gv 1 vm start c >/dev/null
reaches_on 1 c 4 || fail "the job does not count"

# 1. the source agent dies during the memory copy: QEMU goes on alone up
# to the pause before switchover; the restarted agent backs out
mark=$(log_mark "$(agent_log 1)")
( hosts_gv 1 migrate c --to "${HOST_IP[2]}" >/dev/null 2>&1 || true ) &
mig=$!
held_at 1 c memory "$mark"
kill -9 "${HOST_AGENT_PID[1]}"
wait $mig
# the guest reaches pre-switchover meanwhile, paused: QEMU says so
wait_for 180 qemu_migration_is 1 c pre-switchover ||
	fail "QEMU of c on h1 did not stop before the switchover (its migration: $(qemu_migration 1 c 2>&1))"
echo "ok: QEMU alone went on to pre-switchover"
hosts_agent_start 1
settles_on 1 c
echo "ok: source agent killed during the memory copy: the VM runs on h1 only"

# 2. the source agent dies after the switch, before the confirmation: the
# destination has all the state; the restarted agent completes the move
hosts_agent_stop 1
GRIDVM_FAULT=migrate.src.confirm=hold:120 hosts_agent_start 1
mark=$(log_mark "$(agent_log 1)")
( hosts_gv 1 migrate c --to "${HOST_IP[2]}" >/dev/null 2>&1 || true ) &
mig=$!
held_at 1 c confirm "$mark"
kill -9 "${HOST_AGENT_PID[1]}"
wait $mig
expect_eq "c runs nowhere yet (paused on h1, unconfirmed on h2)" "$(state_on 2 c)" paused
hosts_agent_start 1
settles_on 2 c
echo "ok: source agent killed after the switch: the VM moved to h2 and runs there only"

# 3. the link is cut while the source waits for the confirmation: no
# answer means the guest may run there, so it stays paused on h2 (the
# source now) until the link is back, then the move completes
# (this hold must end by itself with the link down: 10 s for the cut, which
# follows the hold's log line at once; then the migration's own end)
hosts_agent_stop 2
GRIDVM_FAULT=migrate.src.confirm=hold:10 hosts_agent_start 2
mark=$(log_mark "$(agent_log 2)")
( hosts_gv 2 migrate c --to "${HOST_IP[1]}" >/dev/null 2>"$HOSTS_DIR/cut.err" || true ) &
mig=$!
wait_until 180 "the migration of c on h2 to hold at confirm" \
	log_has "$(agent_log 2)" "$mark" "gridvm-fault: migrate.src.confirm: hold"
hosts_cut 1
expect_eq "h2 records c at confirm while it holds" "$(phase_on 2 c)" confirm
wait $mig
grep -q "stays paused here" "$HOSTS_DIR/cut.err" || fail "unclear: $(cat "$HOSTS_DIR/cut.err")"
echo "ok: link cut before the confirmation: $(head -c 160 "$HOSTS_DIR/cut.err")"
expect_eq "c is paused on h2 meanwhile" "$(state_on 2 c)" paused
hosts_gv 2 vm resume c 2>"$HOSTS_DIR/e" && fail "resumed a VM whose migration is unsettled"
grep -q "unsettled migration" "$HOSTS_DIR/e" || fail "unclear: $(cat "$HOSTS_DIR/e")"
echo "ok: resume refused meanwhile: $(head -1 "$HOSTS_DIR/e")"
hosts_restore 1
settles_on 1 c
echo "ok: link back: the VM moved to h1 and runs there only"

# 4. the source host is lost after the switch: the destination keeps the
# VM paused, also across its own agent's restart, refuses to run it while
# the source answers, and adopts it on request once the source is gone;
# the source, back, finds it running there and lets it go
hosts_agent_stop 1
GRIDVM_FAULT=migrate.src.confirm=hold:120 hosts_agent_start 1
mark=$(log_mark "$(agent_log 1)")
( hosts_gv 1 migrate c --to "${HOST_IP[2]}" >/dev/null 2>&1 || true ) &
mig=$!
held_at 1 c confirm "$mark"
expect_eq "h2 lists c as arrived, unconfirmed" "$(phase_on 2 c)" arrived
hosts_gv 2 migrate adopt c 2>"$HOSTS_DIR/e" && fail "adopted while the source answers"
grep -q "the source .* answers" "$HOSTS_DIR/e" || fail "unclear: $(cat "$HOSTS_DIR/e")"
echo "ok: adopt refused while the source answers: $(head -1 "$HOSTS_DIR/e")"
kill -9 "${HOST_AGENT_PID[1]}"
wait $mig
hosts_gv 2 vm resume c 2>"$HOSTS_DIR/e" && fail "resumed an unconfirmed incoming VM"
grep -q "migrate adopt c" "$HOSTS_DIR/e" || fail "unclear: $(cat "$HOSTS_DIR/e")"
echo "ok: resume refused on the destination: $(head -1 "$HOSTS_DIR/e")"
hosts_agent_stop 2
hosts_agent_start 2
expect_eq "c kept paused on h2 across its agent's restart" "$(state_on 2 c)" paused
hosts_gv 2 migrate adopt c >/dev/null || fail "adopt failed with the source gone"
expect_eq "c runs on h2 after adopt" "$(state_on 2 c)" running
at=$(last_on 2 c)
reaches_on 2 c $((at + 3)) || fail "no progress on h2 after adopt"
hosts_agent_start 1
settles_on 2 c
echo "ok: source lost after the switch: adopted on h2, the returning source let it go"
