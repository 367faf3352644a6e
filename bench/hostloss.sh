#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/hostloss.sh - what surviving the loss of a host or of the
# controller costs (docs/host-loss.md, docs/grid.md "Several
# controllers"), on namespace hosts (tests/e2e/hosts.sh, grid.sh) with
# real VMs under TCG. Three parts, each on a grid of its own:
#
#  overhead  checkpoint replication on a running job: a counting job
#            (nearly idle) on h2 and a job that writes 8 MiB of fresh
#            random data into its tmpfs every second on h4, checkpoints
#            every OVER_EVERY s, one replica each (h3 and h5: hosts that
#            hold nothing of either job). Per checkpoint: the
#            guest's pause and the checkpoint's time (its manifest), the
#            chunks copied to the replica and how long (the agent's log),
#            and the bytes on the link between the two hosts (HTB class
#            counters on both hosts' eth0, one class per peer, rate far
#            above what the link carries: they count, never shape).
#  recovery  ROUNDS rounds: four counting jobs on one host (checkpoints
#            every 5, 10 and 20 s, and one without checkpoints), then,
#            a random 0..20 s after each has a checkpoint on another
#            host, that host's agent and QEMUs are SIGKILLed. Per job:
#            kill -> the controller declares the host lost, kill -> the
#            job running again elsewhere (the controller's events), kill
#            -> the job back to the count it had reached when its host
#            died (its log on the new host), and the work lost: the
#            lines the dead host had printed past the checkpoint the job
#            went on from (the jobs print one line a second).
#  failover  three gridvmctld on an etcd of ETCD_MEMBERS members, agents
#            given all three. FAILOVER_ROUNDS times: SIGKILL the leader;
#            at that instant a `gridvm jobs` and a `gridvm submit` are
#            started; measured: kill -> another controller holds the
#            leader key, -> the CLI answered, -> the submit returned, ->
#            every agent's report answered by the new leader, -> the job
#            submitted at the kill running. A counting job runs through
#            all of it and must keep running where it was.
#
# Usage (root, the tree built, the guest prepared: GRIDVM_SYSDATA):
#   bench/hostloss.sh [--rounds N] [--failover-rounds N] [--ckpts N]
#       [--only overhead,recovery,failover] [--seed N] [--lease S]
#       [--leader-lease S] [--etcd-members N] [--results DIR]
# Defaults: 3 recovery rounds, 5 failovers, 6 checkpoints per job, seed 1,
# the product's defaults for the timings (host lease 10 s = grace, reports
# every 2 s, leader lease 5 s), 3 etcd members. About 12-15 minutes.
# Prints markdown tables (also in RESULTS/report.md); raw records in
# RESULTS/*.jsonl (default /var/tmp/gridvm-bench-hostloss). Binaries: GV,
# GVD, GVC (default build/programs/*).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export ROOT
ROUNDS=3
FROUNDS=5
OVER_CKPTS=6
OVER_EVERY=10
ONLY=overhead,recovery,failover
SEED=1
LEASE=10
LEADER_LEASE=5
ETCD_MEMBERS=3
RES=/var/tmp/gridvm-bench-hostloss
INTERVALS="5 10 20"
usage() { sed -n '/^# Usage/,/^# GVD/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
num() { [[ $2 =~ ^[0-9]+$ ]] || { echo "hostloss.sh: $1 wants a whole number, got '$2'" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
	[ $# -ge 2 ] || usage
	case $1 in
	--rounds) num "$1" "$2"; ROUNDS=$2 ;;
	--failover-rounds) num "$1" "$2"; FROUNDS=$2 ;;
	--ckpts) num "$1" "$2"; OVER_CKPTS=$2 ;;
	--seed) num "$1" "$2"; SEED=$2 ;;
	--lease) num "$1" "$2"; LEASE=$2 ;;
	--leader-lease) num "$1" "$2"; LEADER_LEASE=$2 ;;
	--etcd-members) num "$1" "$2"; ETCD_MEMBERS=$2 ;;
	--only) ONLY=$2 ;;
	--results) RES=$2 ;;
	*) usage ;;
	esac
	shift 2
done
for p in ${ONLY//,/ }; do
	case $p in overhead | recovery | failover) ;; *) echo "hostloss.sh: no part '$p' (overhead, recovery, failover)" >&2; exit 2 ;; esac
done
want() { [[ ,$ONLY, == *,$1,* ]]; }
[ "$(id -u)" = 0 ] || { echo "hostloss.sh: needs root (network namespaces)" >&2; exit 2; }

# shellcheck source=../tests/e2e/lib.sh
source "$ROOT/tests/e2e/lib.sh"
# shellcheck source=../tests/e2e/hosts.sh
source "$ROOT/tests/e2e/hosts.sh"
GVC=${GVC:-"$ROOT/build/programs/gridvmctld"}
# shellcheck source=../tests/e2e/grid.sh
source "$ROOT/tests/e2e/grid.sh"
for b in "$GV" "$GVD" "$GVC"; do [ -x "$b" ] || fail "no $b (build first)"; done

mkdir -p "$RES"
rm -f "$RES"/*.jsonl "$RES"/load.tsv "$RES"/report.md
RANDOM=$SEED
now() { date +%s.%N; }
# rec FILE K=V...: one JSON line (numbers where they parse)
rec() {
	local f=$1
	shift
	python3 - "$@" >>"$RES/$f" <<'EOF'
import json, sys
o = {}
for a in sys.argv[1:]:
    k, v = a.split("=", 1)
    try:
        o[k] = int(v)
    except ValueError:
        try:
            o[k] = float(v)
        except ValueError:
            o[k] = v
print(json.dumps(o))
EOF
}
phase() { echo "$1" >"$RES/phase"; }

# --- the machine while it runs: every 2 s the 1-minute load, the CPU
# busy share, QEMUs not ours (other sessions' tests), other host sets
sampler() {
	local last_t last_i t i busy foreign runs p c f
	read -r _ a b c d e f g h _ </proc/stat
	last_t=$((a + b + c + d + e + f + g + h)) last_i=$((d + e))
	while :; do
		sleep 2
		read -r _ a b c d e f g h _ </proc/stat
		t=$((a + b + c + d + e + f + g + h)) i=$((d + e))
		busy=$((100 - 100 * (i - last_i) / (t - last_t > 0 ? t - last_t : 1)))
		last_t=$t last_i=$i
		foreign=0
		for p in /proc/[0-9]*; do
			[ "$(cat "$p/comm" 2>/dev/null)" = qemu-system-x86 ] || continue
			c=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
			[[ $c == *"/var/tmp/gvhosts.$(cat "$RES/hostsid" 2>/dev/null)."* ]] || foreign=$((foreign + 1))
		done
		runs=0
		for f in /run/gridvm-hosts/[0-9]*; do
			[ -f "$f" ] && [ "${f##*/}" != "$(cat "$RES/hostsid" 2>/dev/null)" ] && runs=$((runs + 1))
		done
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%s)" "$(cat "$RES/phase" 2>/dev/null)" \
			"$(cut -d' ' -f1 /proc/loadavg)" "$busy" "$foreign" "$runs" >>"$RES/load.tsv"
	done
}
SAMPLER=""
bench_cleanup() {
	[ -z "$SAMPLER" ] || { kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; } || true
	rm -f "$RES/phase" "$RES/hostsid"
}
trap bench_cleanup EXIT # hosts_up chains it after hosts_down
trap 'exit 130' INT TERM
phase setup
sampler &
SAMPLER=$!
T_START=$(now)

host_state() { G hosts --json | python3 -c 'import json,sys; print([h["state"] for h in json.load(sys.stdin) if h["name"] == sys.argv[1]][0])' "$1"; }
host_state_is() { [ "$(host_state "$1")" = "$2" ]; }
grid_up() { # START END: hosts hSTART..hEND are up
	local i
	for i in $(seq "$1" "$2"); do host_state_is "h$i" up || return 1; done
}
last_on() { hosts_gv "$1" vm logs "$2" 2>/dev/null | tail -1; }
replicated_id() { grid_field "$1" '(j.get("replicated") or {}).get("id", "")'; }
has_replica() { [ -n "$(replicated_id "$1")" ]; }
bound_off() { local h; h=$(grid_field "$1" 'j.get("host") or ""'); [ -n "$h" ] && [ "$h" != "$2" ]; }
# frames_lines FILE [BYTES]: the count of stdout lines in a job output
# file (include/gridvm/vmm/jobout.h frames), up to BYTES
frames_lines() {
	python3 - "$1" "${2:--1}" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
if int(sys.argv[2]) >= 0:
    b = b[: int(sys.argv[2])]
out, i = b"", 0
while i + 5 <= len(b):
    t, n = b[i:i + 1], struct.unpack(">I", b[i + 1:i + 5])[0]
    if t == b"O":
        out += b[i + 5:i + 5 + n]
    i += 5 + n
print(len(out.decode(errors="replace").split()))
EOF
}
count_job() { # NAME LINES [EXTRA]: a job printing 1..LINES, a line a second
	echo "i=0; while [ \$i -lt $2 ]; do i=\$((i+1)); ${3:-}echo \$i; sleep 1; done"
}

# ======================================================================
# overhead
# ======================================================================
# HTB counters: on hI's eth0 one class per other agent host (dst), so the
# bytes hI sent to hJ are class 1:(10+J)
htb_setup() { # I HOSTS...
	local i=$1 j
	shift
	hosts_exec "$i" tc qdisc replace dev eth0 root handle 1: htb default 99
	hosts_exec "$i" tc class add dev eth0 parent 1: classid 1:99 htb rate 10gbit burst 1m cburst 1m 2>/dev/null
	for j in "$@"; do
		[ "$j" = "$i" ] && continue
		hosts_exec "$i" tc class add dev eth0 parent 1: classid "1:$((10 + j))" htb rate 10gbit burst 1m cburst 1m 2>/dev/null
		hosts_exec "$i" tc filter add dev eth0 parent 1: protocol ip prio 1 u32 \
			match ip dst "${HOST_IP[j]}/32" flowid "1:$((10 + j))"
	done
}
# LINK_PY OUT KIND:LOG:VM:NS_SRC:CLASS_SRC:NS_REP:CLASS_REP ...: for every
# line "checkpoint ID of VM copied to" that appears in LOG from now on, the
# line and the bytes of the two HTB classes (source -> replica, replica ->
# source) read at once; until killed
LINK_PY='
import json, os, subprocess, sys, time
out, specs = sys.argv[1], [a.split(":") for a in sys.argv[2:]]
pos = {s[1]: os.path.getsize(s[1]) for s in specs}
def sent(ns, cls):
    t = subprocess.run(["ip", "netns", "exec", ns, "tc", "-s", "class", "show", "dev", "eth0",
                        "classid", "1:" + cls], capture_output=True, text=True).stdout.split()
    return int(t[t.index("Sent") + 1])
with open(out, "a") as f:
    while True:
        for kind, log, vm, ns_s, c_s, ns_r, c_r in specs:
            with open(log, "rb") as lf:
                lf.seek(pos[log])
                data = lf.read()
            end = data.rfind(b"\n") + 1
            pos[log] += end
            for line in data[:end].decode(errors="replace").splitlines():
                if " of %s copied to " % vm in line:
                    b = sent(ns_s, c_s) + sent(ns_r, c_r)
                    f.write(json.dumps({"kind": kind, "t": time.time(), "line": line,
                                        "pair_bytes": b}) + "\n")
                    f.flush()
        time.sleep(0.1)
'
# N_REPLICATED I VM: its first N checkpoints are held by a replica
n_replicated() {
	local ids r
	ids=$(hosts_gv "$1" checkpoint list "$2" --json | python3 -c 'import json,sys; print(" ".join(sorted(m["id"] for m in json.load(sys.stdin))))')
	# shellcheck disable=SC2086 # (the ids, one word each)
	set -- $ids
	[ $# -ge "$OVER_CKPTS" ] || return 1
	r=$(replicated_id "$JOB_OF")
	eval "[[ ! \"\$r\" < \"\${$OVER_CKPTS}\" ]]"
}

part_overhead() {
	phase overhead
	echo "== overhead: checkpoints every ${OVER_EVERY} s, $OVER_CKPTS copied per job" >&2
	hosts_up 5
	echo "$HOSTS_ID" >"$RES/hostsid"
	grid_ctl_start --report-interval 2s --host-lease "${LEASE}s" --max-moves 0
	local i
	for i in 2 3 4 5; do grid_join "$i" --grid-cpus 2 --grid-memory 1G; done
	wait_until 60 "h2..h5 up" grid_up 2 5
	for i in 2 3 4 5; do htb_setup "$i" 2 3 4 5; done
	local n=$((3 * (OVER_CKPTS + 2) * OVER_EVERY)) idle dirty
	idle=$(G submit --name idle --memory 256M --requires 'name == "h2"' \
		--checkpoint-every "${OVER_EVERY}s" --checkpoint-keep all -- sh -c "$(count_job idle "$n")")
	dirty=$(G submit --name dirty --memory 256M --requires 'name == "h4"' \
		--checkpoint-every "${OVER_EVERY}s" --checkpoint-keep all -- \
		sh -c "$(count_job dirty "$n" 'dd if=/dev/urandom of=/tmp/dirty bs=1M count=8 conv=notrunc 2>/dev/null; ')")
	# each copy to the replica as it ends: the agent's line and the bytes
	# between the two hosts at that instant (h2's replica is h3, h4's is
	# h5: the hosts' order; neither holds anything of the other job)
	python3 -c "$LINK_PY" "$RES/overhead_link.jsonl" \
		"idle:${HOST_DATA[2]}/gridvmd.log:job-$idle:${HOST_NS[2]}:13:${HOST_NS[3]}:12" \
		"dirty:${HOST_DATA[4]}/gridvmd.log:job-$dirty:${HOST_NS[4]}:15:${HOST_NS[5]}:14" &
	local p_link=$!
	grid_wait_state 300 "$idle" running
	grid_wait_state 300 "$dirty" running
	JOB_OF=$idle wait_until $(((OVER_CKPTS + 4) * OVER_EVERY * 4)) \
		"$OVER_CKPTS checkpoints of the idle job on its replica" n_replicated 2 "job-$idle"
	JOB_OF=$dirty wait_until $(((OVER_CKPTS + 4) * OVER_EVERY * 4)) \
		"$OVER_CKPTS checkpoints of the dirty job on its replica" n_replicated 4 "job-$dirty"
	kill "$p_link"
	wait "$p_link" 2>/dev/null || true
	local kind src id
	# the manifests and the agents' lines of the copies
	for kind in idle dirty; do
		if [ $kind = idle ]; then src=2 id=$idle; else src=4 id=$dirty; fi
		hosts_gv "$src" checkpoint list "job-$id" --json >"$RES/overhead_$kind.manifests.json"
		grep "of job-$id copied to" "${HOST_DATA[$src]}/gridvmd.log" >"$RES/overhead_$kind.copies.log" || true
	done
	G job cancel "$idle" >/dev/null
	G job cancel "$dirty" >/dev/null
	hosts_down
}

# ======================================================================
# recovery
# ======================================================================
part_recovery() {
	phase recovery
	echo "== recovery: $ROUNDS rounds, checkpoints every ${INTERVALS// /, } s and none; lease ${LEASE} s" >&2
	hosts_up 4
	echo "$HOSTS_ID" >"$RES/hostsid"
	grid_ctl_start --report-interval 2s --host-lease "${LEASE}s" --max-moves 0
	local i r v h
	for i in 2 3 4; do grid_join "$i" --grid-cpus 4 --grid-memory 2G; done
	wait_until 60 "h2..h4 up" grid_up 2 4
	for r in $(seq 1 "$ROUNDS"); do
		v=$((2 + (r - 1) % 3))
		echo "-- round $r: jobs on h$v" >&2
		for h in 2 3 4; do [ "$h" = "$v" ] || G host drain "h$h" >/dev/null; done
		local -a ids=() every=()
		local k=0 e
		for e in $INTERVALS 0; do
			k=$((k + 1))
			every[k]=$e
			if [ "$e" = 0 ]; then
				ids[k]=$(G submit --name "r$r-none" --memory 256M -- sh -c "$(count_job x 100000)")
			else
				ids[k]=$(G submit --name "r$r-every$e" --memory 256M --checkpoint-every "${e}s" \
					-- sh -c "$(count_job x 100000)")
			fi
		done
		for k in "${!ids[@]}"; do grid_wait_state 600 "${ids[k]}" running; done
		for k in "${!ids[@]}"; do
			[ "$(grid_field "${ids[k]}" 'j["host"]')" = "h$v" ] || fail "job ${ids[k]} not on h$v"
		done
		for h in 2 3 4; do [ "$h" = "$v" ] || G host undrain "h$h" >/dev/null; done
		for k in "${!ids[@]}"; do
			[ "${every[k]}" = 0 ] || wait_until 300 "a replicated checkpoint of job ${ids[k]}" has_replica "${ids[k]}"
		done
		local delay=$((RANDOM % 200))
		sleep "$((delay / 10)).$((delay % 10))"
		local markc t_kill
		markc=$(log_mark "$GRID_DIR/gridvmctld.log")
		# shellcheck disable=SC2046
		kill -KILL $(ip netns pids "${HOST_NS[v]}")
		t_kill=$(now)
		# what the dead host's VMs had printed (its files stay until its
		# agent restarts)
		local -a dead=()
		for k in "${!ids[@]}"; do
			dead[k]=$(frames_lines "${HOST_DATA[v]}/vms/job-${ids[k]}/job.out")
		done
		wait_until 180 "h$v to be lost" log_has "$GRID_DIR/gridvmctld.log" "$markc" "host h$v is lost"
		local -a to=() t_back=()
		for k in "${!ids[@]}"; do
			wait_until 300 "job ${ids[k]} to be bound off h$v" bound_off "${ids[k]}" "h$v"
		done
		# back where it was: the count on the new host reaches the dead one's
		local left=${#ids[@]} n end=$((SECONDS + 600))
		while [ "$left" -gt 0 ]; do
			[ $SECONDS -lt $end ] || fail "round $r: the jobs did not get back to their counts"
			left=0
			for k in "${!ids[@]}"; do
				[ -z "${t_back[k]:-}" ] || continue
				left=$((left + 1))
				if [ -z "${to[k]:-}" ]; then
					grid_in_state "${ids[k]}" running || continue
					to[k]=$(grid_field "${ids[k]}" 'j["host"]')
				fi
				n=$(last_on "${to[k]#h}" "job-${ids[k]}")
				if [ -n "$n" ] && [ "$n" -ge "${dead[k]}" ]; then t_back[k]=$(now); fi
			done
			sleep 0.3
		done
		for k in "${!ids[@]}"; do
			local id=${ids[k]} ev ck="" kk=0 jb holder=""
			ev=$(G job events "$id" --json | python3 -c '
import json, sys
t0 = float(sys.argv[1]); lost = run = None; text = ""
for e in json.load(sys.stdin):
    if e["time"] < t0 - 1: continue
    if e["kind"] == "recover" and lost is None: lost, text = e["time"], e["text"]
    if lost is not None and run is None and e["kind"] == "state" and "-> running" in e["text"]: run = e["time"]
print(lost, run, text.replace(" ", "_"))' "$t_kill")
			read -r t_lost t_run text <<<"$ev"
			if [[ $text == *goes_on_from_its_checkpoint_* ]]; then
				ck=${text#*goes_on_from_its_checkpoint_}
				ck=${ck%%,*}
				holder=${text#*held_by_}
				holder=${holder%%;*}
				jb=$(hosts_gv "${to[k]#h}" checkpoint show "job-$id" "$ck" --json |
					python3 -c 'import json,sys; print(json.load(sys.stdin)["jobout_bytes"])')
				kk=$(frames_lines "${HOST_DATA[${to[k]#h}]}/vms/job-$id/job.out" "$jb")
			fi
			rec recovery.jsonl round="$r" victim="h$v" job="$id" every="${every[k]}" \
				t_kill="$t_kill" t_lost="$t_lost" t_running="$t_run" t_back="${t_back[k]}" \
				dead_count="${dead[k]}" ckpt_count="$kk" lost_lines=$((dead[k] - kk)) \
				bound_s="$(grid_field "$id" 'round(j.get("work_lost_s", 0), 2)')" to="${to[k]}" \
				checkpoint="${ck:-none}" holder="${holder:-none}" delay_s="$((delay / 10)).$((delay % 10))"
		done
		for k in "${!ids[@]}"; do G job cancel "${ids[k]}" >/dev/null; done
		grid_join "$v" --grid-cpus 4 --grid-memory 2G
		wait_until 120 "h$v to be up again" host_state_is "h$v" up
		for k in "${!ids[@]}"; do grid_wait_state 120 "${ids[k]}" cancelled; done
	done
	hosts_down
}

# ======================================================================
# failover
# ======================================================================
leader_addr() {
	hosts_exec 1 etcdctl --endpoints "$ETCDCTL_URL" get /grid/leader --print-value-only 2>/dev/null |
		python3 -c 'import json,sys; t=sys.stdin.read().strip(); print(json.loads(t)["addr"] if t else "")'
}
leader_other() { local a; a=$(leader_addr) && [ -n "$a" ] && [ "$a" != "$1" ]; }
ctl_of() { local i; for i in 1 2 3; do [ "$1" != "${HOST_IP[i]}:$GRID_PORT" ] || echo "$i"; done; }
ctl_pid() {
	local pid
	for pid in $(ip netns pids "${HOST_NS[$1]}"); do
		[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != gridvmctld ] || echo "$pid"
	done
	return 0
}
ctl_start() {
	local dir=$HOSTS_DIR/ctl$1
	mkdir -p "$dir"
	hosts_exec "$1" env GRIDVM_DATA="$dir" "$GVC" --listen "${HOST_IP[$1]}:$GRID_PORT" \
		--store "$GRID_STORE" --leader-lease "${LEADER_LEASE}s" --host-lease "${LEASE}s" \
		--grid-key "$HOSTS_DIR/grid.key" --data-dir "$dir" --daemon --report-interval 2s \
		>>"$dir/gridvmctld.log" 2>&1 || fail "controller $1 did not start: $(tail -5 "$dir/gridvmctld.log")"
}
# agents_since T: every agent has been heard by the leader after T; prints
# the latest first-report time
agents_since() {
	G hosts --json 2>/dev/null | python3 -c '
import json, sys, time
t0, now = float(sys.argv[1]), time.time()
hs = json.load(sys.stdin)
seen = [now - h["seen_s_ago"] for h in hs if "seen_s_ago" in h]
if len(seen) < len(hs) or min(seen) <= t0: sys.exit(1)
print(max(seen))' "$1"
}

# the leader key's changes, each line stamped as it arrives: ARGS OUT NS URL
WATCH_PY='
import subprocess, sys, time
out, ns, url = sys.argv[1:]
p = subprocess.Popen(["ip", "netns", "exec", ns, "etcdctl", "--endpoints", url, "watch",
                      "/grid/leader"], stdout=subprocess.PIPE, text=True)
end = time.time() + 120
try:
    with open(out, "w") as f:
        f.write("ready\n")
        f.flush()
        for line in p.stdout:
            f.write("%.6f %s" % (time.time(), line))
            f.flush()
            if line.startswith("PUT") or time.time() > end:
                break
finally:
    p.kill()
    p.wait()
'
agents_quiet() { agents_since "$1" >/dev/null; }
count_on_ge() { local n; n=$(last_on "$1" "$2"); [ -n "$n" ] && [ "$n" -ge "$3" ]; }

part_failover() {
	phase failover
	echo "== failover: $FROUNDS SIGKILLs of the leader; $ETCD_MEMBERS etcd member(s), leader lease ${LEADER_LEASE} s" >&2
	hosts_up 3
	echo "$HOSTS_ID" >"$RES/hostsid"
	grid_etcd_start "$ETCD_MEMBERS" >&2
	local i
	ETCDCTL_URL=""
	for i in $(seq 1 "$ETCD_MEMBERS"); do ETCDCTL_URL+="${ETCDCTL_URL:+,}http://${HOST_IP[i]}:2379"; done
	# shellcheck disable=SC2034 # (grid.sh's G uses it)
	GRID_CTL=${HOST_IP[1]}:$GRID_PORT,${HOST_IP[2]}:$GRID_PORT,${HOST_IP[3]}:$GRID_PORT
	GRID_DIR=$HOSTS_DIR/ctl1
	for i in 1 2 3; do ctl_start "$i"; done
	wait_until 60 "a controller to lead" leader_other none
	wait_until 60 "the grid to answer" grid_answers
	for i in 1 2 3; do grid_join "$i" --grid-cpus 2 --grid-memory 1G; done
	wait_until 60 "three hosts up" grid_up 1 3
	local long long_host
	long=$(G submit --name through --memory 256M -- sh -c "$(count_job x 100000)")
	grid_wait_state 300 "$long" running
	long_host=$(grid_field "$long" 'j["host"]')
	wait_until 120 "the long job to count" count_on_ge "${long_host#h}" "job-$long" 1
	# one job of the size submitted at each kill, before: the first of a
	# size on a host may boot cold (no template of that size there yet)
	grid_wait_state 300 "$(G submit --memory 128M -- echo warm-up)" completed
	local r old n pid t0 t_lead t_del t_agents sub c_before c_after p_cli p_sub p_watch
	for r in $(seq 1 "$FROUNDS"); do
		old=$(leader_addr)
		n=$(ctl_of "$old")
		pid=$(ctl_pid "$n")
		[ -n "$pid" ] || fail "no gridvmctld in h$n"
		c_before=$(last_on "${long_host#h}" "job-$long")
		rm -f "$RES"/.f_*
		# the leader key's changes, each stamped as it arrives
		python3 -c "$WATCH_PY" "$RES/.f_watch" "${HOST_NS[1]}" "$ETCDCTL_URL" &
		p_watch=$!
		wait_until 30 "the watch to start" test -s "$RES/.f_watch"
		sleep 1 # (for etcdctl to register its watch)
		t0=$(now)
		kill -KILL "$pid"
		(G jobs >/dev/null 2>&1 && now >"$RES/.f_cli") &
		p_cli=$!
		(id=$(G submit --memory 128M -- echo "round $r") && now >"$RES/.f_sub" && echo "$id" >"$RES/.f_subid") &
		p_sub=$!
		wait_until 60 "another controller to lead" leader_other "$old"
		wait_until 60 "every agent to report to the new leader" agents_quiet "$t0"
		t_agents=$(agents_since "$t0")
		wait "$p_cli" "$p_sub" || true
		wait_until 60 "the leader key's change" grep -q PUT "$RES/.f_watch"
		wait "$p_watch" || true
		t_del=$(awk '$2 == "DELETE" {print $1; exit}' "$RES/.f_watch")
		t_lead=$(awk '$2 == "PUT" {print $1; exit}' "$RES/.f_watch")
		[ -s "$RES/.f_cli" ] || fail "round $r: 'gridvm jobs' failed during the failover"
		[ -s "$RES/.f_subid" ] || fail "round $r: 'gridvm submit' failed during the failover"
		sub=$(cat "$RES/.f_subid")
		grid_wait_state 300 "$sub" completed
		c_after=$(last_on "${long_host#h}" "job-$long")
		local st
		st=$(grid_field "$long" 'j["state"] + " " + (j.get("host") or "")')
		[ "$st" = "running $long_host" ] ||
			fail "round $r: the long job no longer runs on $long_host ($st): $(G job events "$long" | tail -8)"
		[ "${c_after:-0}" -gt "${c_before:-0}" ] || fail "round $r: the long job stopped counting"
		rec failover.jsonl round="$r" old="h$n" new="h$(ctl_of "$(leader_addr)")" t_kill="$t0" \
			t_expired="${t_del:-}" t_lead="$t_lead" t_cli="$(cat "$RES/.f_cli")" \
			t_submit="$(cat "$RES/.f_sub")" t_agents="$t_agents" \
			t_sub_bound="$(grid_field "$sub" 'j["bound"]')" \
			t_sub_started="$(grid_field "$sub" 'j["started"]')" \
			sub_starts="$(G job events "$sub" | grep -c -- '-> running' || true)" \
			long_before="$c_before" long_after="$c_after"
		local mark
		mark=$(log_mark "$HOSTS_DIR/ctl$n/gridvmctld.log")
		ctl_start "$n"
		wait_until 60 "controller $n to stand by" log_has "$HOSTS_DIR/ctl$n/gridvmctld.log" "$mark" "stands by"
	done
	rm -f "$RES"/.f_*
	G job cancel "$long" >/dev/null
	hosts_down
}

want overhead && part_overhead
want recovery && part_recovery
want failover && part_failover
phase "done"
T_END=$(now)
{
	echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r), $(qemu-system-x86_64 --version | head -1), etcd $(etcd --version | head -1 | awk '{print $3}')"
	echo "command: bench/hostloss.sh --rounds $ROUNDS --failover-rounds $FROUNDS --ckpts $OVER_CKPTS --only $ONLY --seed $SEED --lease $LEASE --leader-lease $LEADER_LEASE --etcd-members $ETCD_MEMBERS"
	echo "started $(date -d "@${T_START%.*}" '+%F %T'), took $(python3 -c "import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) / 60, 1))" "$T_START" "$T_END") min"
	echo
	python3 "$ROOT/bench/hostloss.py" "$RES" "$LEASE" "$LEADER_LEASE"
} | tee "$RES/report.md"
