#!/bin/bash
# SPDX-License-Identifier: MIT
# test-grid-hostloss.sh - surviving the loss of a host (docs/host-loss.md):
# a controller (h1) and agents on h2..h4, real VMs under TCG.
#  1. partition: a counting job with checkpoints every 10 s runs on h2; its
#     checkpoints are copied to another host as they are made. h2's link
#     is cut: h2's agent pauses the VM (asked through h2's own agent API),
#     the controller declares h2 lost and the job goes on elsewhere from
#     the newest replicated checkpoint; the link comes back: h2 kills its
#     stale VM. At no moment do two hosts run the job; it completes once,
#     its log 1..N without a gap or a repeat.
#  2. an agent SIGKILLed with its QEMUs: the job goes on elsewhere from its
#     checkpoint; the agent restarted finds its dead VM stale.
#  3. a job without checkpoints on a host whose report thread hangs (fault
#     grid.agent.report=hold): the watchdog fences it all the same; the job
#     restarts from the beginning elsewhere, and its events say so.
#  4. an agent SIGKILLed while its link is cut, its QEMU left running: the
#     host's fence keeper pauses the VM when the lease runs out; the job
#     goes on elsewhere while the copy stays paused; the agent restarted
#     kills it.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$ROOT/tests/e2e/lib.sh"
source "$ROOT/tests/e2e/hosts.sh"
source "$ROOT/tests/e2e/grid.sh"

LEASE=4
same() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', want '$2'"; }
host_state() { G hosts --json | python3 -c 'import json,sys; print([h["state"] for h in json.load(sys.stdin) if h["name"] == sys.argv[1]][0])' "$1"; }
host_state_is() { [ "$(host_state "$1")" = "$2" ]; }
vm_state_on() { # I VM: the VM's state as host I's own agent says ("none": no such VM)
	hosts_gv "$1" vm show "$2" --json 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])' 2>/dev/null || echo none
}
vm_state_on_is() { [ "$(vm_state_on "$1" "$2")" = "$3" ]; }
last_on() { hosts_gv "$1" vm logs "$2" 2>/dev/null | tail -1; }
count_on_ge() { local n; n=$(last_on "$1" "$2"); [ -n "$n" ] && [ "$n" -ge "$3" ]; }
events_have() { G job events "$1" | grep -q -- "$2"; }
bound_off() { local h; h=$(grid_field "$1" 'j.get("host") or ""'); [ -n "$h" ] && [ "$h" != "$2" ]; }
host_num() { echo "${1#h}"; }
replicated_id() { grid_field "$1" '(j.get("replicated") or {}).get("id", "")'; }
replicated_after() { local r; r=$(replicated_id "$1"); [ -n "$r" ] && [[ "$r" > "$2" ]]; }
agent_log() { echo "${HOST_DATA[$1]}/gridvmd.log"; }
now() { date +%s.%N; }
since() { python3 -c 'import sys; print("%.1f s" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$(now)"; }
# the stdout lines of the job output in FILE's first BYTES bytes (the frames
# of include/gridvm/vmm/jobout.h)
frames_lines() {
	python3 - "$1" "$2" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()[: int(sys.argv[2])]
out, i = b"", 0
while i + 5 <= len(b):
    t, n = b[i:i + 1], struct.unpack(">I", b[i + 1:i + 5])[0]
    if t == b"O":
        out += b[i + 5:i + 5 + n]
    i += 5 + n
print(len(out.decode().split()))
EOF
}

no_twice() { [ ! -s "$WATCH" ] || fail "$(sort -u "$WATCH" | head -3)"; }

hosts_up 4
grid_ctl_start --host-lease ${LEASE}s --max-moves 0

# --- never two running copies: every host's own agent, sampled back to
# back the whole time (a cut host's agent is still asked, over its socket)
WATCH=$HOSTS_DIR/twice
: >"$WATCH"
watch_twice() {
	while [ -d "$HOSTS_DIR" ]; do
		local all="" i
		for i in 2 3 4; do
			all+=$(hosts_gv "$i" vm list --json 2>/dev/null | python3 -c '
import json, sys
for v in json.load(sys.stdin):
    if v["name"].startswith("job-") and v["state"] == "running": print(v["name"])
' 2>/dev/null || true)$'\n'
		done
		echo "$all" | grep . | sort | uniq -d | sed 's/$/ ran on two hosts at once/' >>"$WATCH" || true
	done
}

# === 1. partition ========================================================
grid_join 2 --grid-cpus 2 --grid-memory 1G
N=75
job=$(G submit --name part --memory 256M --checkpoint-every 10s -- \
	sh -c "i=0; while [ \$i -lt $N ]; do i=\$((i+1)); echo \$i; sleep 1; done")
vm=job-$job
grid_wait_state 300 "$job" running
same "$(grid_field "$job" 'j["host"]')" h2 "the host the job runs on"
grid_join 3 --grid-cpus 2 --grid-memory 1G
grid_join 4 --grid-cpus 2 --grid-memory 1G
watch_twice &
WATCH_PID=$!
# a checkpoint on another host, then a fresher one: cut right after it
wait_until 120 "a checkpoint of the job on another host" replicated_after "$job" ""
first=$(replicated_id "$job")
wait_until 120 "a newer replicated checkpoint" replicated_after "$job" "$first"
at_cut=$(replicated_id "$job")
holders=$(grid_field "$job" '",".join(j["replicated"]["on"])')
echo "ok: checkpoint $at_cut of the running job is held by $holders"
grep "copied to" "$(agent_log 2)" | sed 's/^/measured: /' || true # the copies' cost
mark2=$(log_mark "$(agent_log 2)")
markc=$(log_mark "$GRID_DIR/gridvmctld.log")
hosts_cut 2
t_cut=$(now)
wait_until 60 "h2's agent to fence the job" log_has "$(agent_log 2)" "$mark2" "fenced $vm (paused)"
echo "measured: fenced $(since "$t_cut") after the cut (lease ${LEASE} s)"
same "$(vm_state_on 2 "$vm")" paused "the job's VM on h2, as h2's agent says"
fenced_at=$(last_on 2 "$vm")
echo "ok: h2 cut off: its agent paused the job at $fenced_at"
wait_until 120 "the controller to declare h2 lost" log_has "$GRID_DIR/gridvmctld.log" "$markc" "host h2 is lost"
echo "measured: h2 declared lost $(since "$t_cut") after the cut (lease + grace $((2 * LEASE)) s)"
# the fence came first: the VM on h2 printed nothing more since
same "$(last_on 2 "$vm")" "$fenced_at" "h2's count after the fence"
wait_until 120 "the job to be bound off h2" bound_off "$job" h2
grid_wait_state 300 "$job" running
echo "measured: the job runs again $(since "$t_cut") after the cut"
to=$(grid_field "$job" 'j["host"]')
events_have "$job" "goes on from its checkpoint" || fail "no recovery event: $(G job events "$job")"
ck=$(G job events "$job" | sed -n 's/.*goes on from its checkpoint \([^,]*\),.*/\1/p' | tail -1)
[[ ! "$ck" < "$at_cut" ]] || fail "restored from $ck, older than $at_cut (replicated before the cut)"
t=$(host_num "$to")
wait_until 120 "the count on $to to pass $fenced_at" count_on_ge "$t" "$vm" $((fenced_at + 2))
same "$(vm_state_on 2 "$vm")" paused "h2's copy while the job runs on $to"
# the work lost, from the logs: the checkpoint's count against h2's last
jb=$(hosts_gv "$t" checkpoint show "$vm" "$ck" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobout_bytes"])')
k=$(frames_lines "${HOST_DATA[$t]}/vms/$vm/job.out" "$jb")
lost=$((fenced_at - k))
[ "$lost" -ge 0 ] || fail "the checkpoint's count $k is past h2's last $fenced_at"
echo "ok: the job goes on on $to from checkpoint $ck (count $k); h2 had counted to $fenced_at: $lost lines lost; the controller says $(grid_field "$job" 'round(j["work_lost_s"], 1)') s"
mark2=$(log_mark "$(agent_log 2)")
hosts_restore 2
wait_until 120 "h2 to kill its stale copy" log_has "$(agent_log 2)" "$mark2" "killed $vm"
same "$(vm_state_on 2 "$vm")" none "the job's VM on h2 after the link came back"
wait_until 60 "h2 to be up again" host_state_is h2 up
echo "ok: the link back: h2 killed its stale copy and rejoined"
grid_wait_state 600 "$job" completed
same "$(G job logs "$job" | tr '\n' ' ')" "$(seq 1 $N | tr '\n' ' ')" "the job's log"
rc=0
G job wait "$job" || rc=$?
same "$rc" 0 "exit code"
same "$(grid_field "$job" 'j["recoveries"]')" 1 "recoveries"
G job show "$job" | grep -E '^(recoveries|work_lost_s) '
no_twice
echo "ok: partition: completed once on $to, its log 1..$N without a gap or a repeat"

# === 2. an agent SIGKILLed with its QEMUs ================================
# (its checkpoints go to two hosts: submit --checkpoint-replicas)
job2=$(G submit --name crash --memory 256M --checkpoint-every 10s --checkpoint-replicas 2 -- \
	sh -c "i=0; while [ \$i -lt 50 ]; do i=\$((i+1)); echo \$i; sleep 1; done")
vm2=job-$job2
grid_wait_state 300 "$job2" running
from=$(grid_field "$job2" 'j["host"]')
f=$(host_num "$from")
wait_until 120 "a checkpoint of job 2 on another host" replicated_after "$job2" ""
replicas_of() { grid_field "$1" 'len((j.get("replicated") or {}).get("on", []))'; }
replicas_are() { [ "$(replicas_of "$1")" = "$2" ]; }
wait_until 120 "job 2's checkpoint on two other hosts" replicas_are "$job2" 2
echo "ok: job 2's checkpoint $(replicated_id "$job2") is held by $(grid_field "$job2" '",".join(j["replicated"]["on"])') (--checkpoint-replicas 2)"
markc=$(log_mark "$GRID_DIR/gridvmctld.log")
killed=$(ip netns pids "${HOST_NS[$f]}" | tr '\n' ' ')
# shellcheck disable=SC2086
kill -KILL $killed
t_kill=$(now)
wait_until 120 "the controller to declare $from lost" log_has "$GRID_DIR/gridvmctld.log" "$markc" "host $from is lost"
wait_until 120 "job 2 to be bound off $from" bound_off "$job2" "$from"
grid_wait_state 300 "$job2" running
echo "measured: job 2 runs again $(since "$t_kill") after its host was killed"
grid_wait_state 600 "$job2" completed
same "$(G job logs "$job2" | tr '\n' ' ')" "$(seq 1 50 | tr '\n' ' ')" "job 2's log"
rc=0
G job wait "$job2" || rc=$?
same "$rc" 0 "job 2's exit code"
events_have "$job2" "goes on from its checkpoint" || fail "job 2 did not go on from a checkpoint: $(G job events "$job2")"
echo "ok: $from SIGKILLed with its QEMUs: job 2 went on on $(grid_field "$job2" 'j["host"]') from its checkpoint and completed, log 1..50 (work lost $(grid_field "$job2" 'round(j["work_lost_s"], 1)') s)"
markf=$(log_mark "$(agent_log "$f")")
grid_join "$f" --grid-cpus 2 --grid-memory 1G
wait_until 60 "$from to be up again" host_state_is "$from" up
[ "$(vm_state_on "$f" "$vm2")" = none ] || wait_until 60 "$from to drop its dead copy" log_has "$(agent_log "$f")" "$markf" "$vm2"
echo "ok: $from's agent restarted and rejoined"

# === 3. no checkpoint; the report thread hangs (the watchdog fences) ======
hosts_agent_stop 4
G host drain h2
G host drain h3
job3=$(G submit --name nockpt --memory 256M -- \
	sh -c 'i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo $i; sleep 1; done')
mark4=$(log_mark "$(agent_log 4)")
# its 15th report hangs for 60 s: it reaches the controller no more
GRIDVM_FAULT="grid.agent.report=hold:60@15" grid_join 4 --grid-cpus 2 --grid-memory 1G
grid_wait_state 300 "$job3" running
same "$(grid_field "$job3" 'j["host"]')" h4 "job 3's host"
G host undrain h2
G host undrain h3
wait_until 120 "h4's report thread to hang" log_has "$(agent_log 4)" "$mark4" "grid.agent.report: hold"
wait_until 60 "h4's watchdog to fence job 3" log_has "$(agent_log 4)" "$mark4" "fenced job-$job3 (paused)"
wait_until 120 "job 3 to be bound off h4" bound_off "$job3" h4
events_have "$job3" "restarts from the beginning" || fail "no restart event: $(G job events "$job3")"
G job events "$job3" | grep "restarts from the beginning"
grid_wait_state 600 "$job3" completed
same "$(G job logs "$job3" | tr '\n' ' ')" "$(seq 1 40 | tr '\n' ' ')" "job 3's log"
# (killed as stale, or released if the job ended meanwhile)
wait_until 120 "h4 to drop its copy after the hang" vm_state_on_is 4 "job-$job3" none
echo "ok: no checkpoint: job 3 restarted from the beginning on $(grid_field "$job3" 'j["host"]') (said in its events) and completed once"

# === 4. the agent SIGKILLed while cut off, its QEMU left running =========
# no agent is left to pause the VM: its fence keeper does, when the lease
# runs out, before the job goes on elsewhere
qmp_status() { # SOCKET: the VM's run state, asked on its fence monitor
	python3 - "$1" <<'EOF2'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
json.loads(f.readline())
for cmd in ("qmp_capabilities", "query-status"):
    f.write(json.dumps({"execute": cmd}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r: break
print(r["return"]["status"])
EOF2
}
job4=$(G submit --name keeper --memory 256M --checkpoint-every 10s -- \
	sh -c 'i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo $i; sleep 1; done')
vm4=job-$job4
grid_wait_state 300 "$job4" running
from=$(grid_field "$job4" 'j["host"]')
f=$(host_num "$from")
wait_until 120 "a checkpoint of job 4 on another host" replicated_after "$job4" ""
keeper_log=${HOST_DATA[$f]}/grid/keeper.log
out4=${HOST_DATA[$f]}/vms/$vm4/job.out
qpid=$(cat "${HOST_DATA[$f]}/vms/$vm4/qemu.pid")
markk=$(log_mark "$keeper_log")
markf=$(log_mark "$(agent_log "$f")")
markc=$(log_mark "$GRID_DIR/gridvmctld.log")
hosts_cut "$f"
kill -KILL "${HOST_AGENT_PID[$f]}"
HOST_AGENT_PID[$f]=""
t_cut=$(now)
wait_until 60 "the fence keeper on $from to pause job 4" log_has "$keeper_log" "$markk" "paused $vm4"
echo "measured: the keeper paused job 4 $(since "$t_cut") after the cut (lease ${LEASE} s)"
! log_has "$(agent_log "$f")" "$markf" "fenced $vm4" || fail "the agent fenced job 4 itself: it was to be killed first"
same "$(qmp_status "${HOST_DATA[$f]}/vms/$vm4/fence.sock")" paused "job 4's QEMU on $from"
kill -0 "$qpid" || fail "job 4's QEMU on $from is gone: it was to be paused"
bytes_at=$(stat -c %s "$out4")
paused_at=$(frames_lines "$out4" "$bytes_at")
echo "ok: $from's agent killed while cut off: its fence keeper paused job 4 at $paused_at"
wait_until 120 "the controller to declare $from lost" log_has "$GRID_DIR/gridvmctld.log" "$markc" "host $from is lost"
wait_until 120 "job 4 to be bound off $from" bound_off "$job4" "$from"
grid_wait_state 300 "$job4" running
to=$(grid_field "$job4" 'j["host"]')
wait_until 120 "the count on $to to pass $paused_at" count_on_ge "$(host_num "$to")" "$vm4" $((paused_at + 2))
same "$(stat -c %s "$out4")" "$bytes_at" "the output of the paused copy on $from while job 4 runs on $to"
same "$(qmp_status "${HOST_DATA[$f]}/vms/$vm4/fence.sock")" paused "job 4's QEMU on $from while it runs on $to"
echo "ok: job 4 goes on on $to; the copy on $from stayed paused at $paused_at"
markf=$(log_mark "$(agent_log "$f")")
hosts_restore "$f"
grid_join "$f" --grid-cpus 2 --grid-memory 1G
wait_until 120 "$from to kill its stale copy of job 4" log_has "$(agent_log "$f")" "$markf" "killed $vm4"
wait_until 60 "job 4's old QEMU to end" sh -c "! kill -0 $qpid 2>/dev/null"
grid_wait_state 600 "$job4" completed
same "$(G job logs "$job4" | tr '\n' ' ')" "$(seq 1 60 | tr '\n' ' ')" "job 4's log"
rc=0
G job wait "$job4" || rc=$?
same "$rc" 0 "job 4's exit code"
echo "ok: agent killed while cut off: job 4 completed once on $to, its log 1..60; the paused copy was killed when $from came back"

kill "$WATCH_PID" 2>/dev/null || true
wait "$WATCH_PID" 2>/dev/null || true
no_twice
echo "ok: no job ran on two hosts at once"
