#!/bin/bash
# SPDX-License-Identifier: MIT
# Self-test of hosts.sh (several hosts on one machine): leftovers of a run
# killed with SIGKILL are removed by the next hosts_up; hosts reach each
# other and nothing else; an 8 MiB HTTP transfer between two hosts arrives
# intact and is counted on the wire; shaping installs tbf on both sides of
# a link; a cut link stops transfers and a restored one carries them again;
# agents start inside their namespaces (through a shim that drops --listen
# and --grid-key while gridvmd lacks them); hosts_down leaves nothing.
# No timing thresholds: throughputs are only printed.
# shellcheck source-path=SCRIPTDIR
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/hosts.sh"

# fetch I URL OUT [TIMEOUT]: HTTP GET from inside host I
fetch() {
	local t=${4:-30}
	hosts_exec "$1" timeout $((t + 5)) python3 -c '
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[3])) as r, \
        open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f)' "$2" "$3" "$t" 2>/dev/null
}
# tcp_open I IP PORT: a TCP connection from host I to IP:PORT succeeds
tcp_open() {
	hosts_exec "$1" python3 -c 'import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()' "$2" "$3"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
mbits() { python3 -c "import sys; print('%.1f' % ($1 * 8 / 1000 / max($2, 1)))"; }
# our_objects ID: namespaces and links of run ID that still exist
our_objects() {
	ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^gv$1h[0-9]+\$" || true
	ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 |
		grep -E "^gv(br$1|$1v[0-9]+)\$" || true
}
# tc_rate DEV [NS]: the rate (bit/s) of the tbf root qdisc of DEV
tc_rate() {
	tc ${2:+-n "$2"} -j qdisc show dev "$1" | python3 -c '
import json, sys
q = [q for q in json.load(sys.stdin) if q.get("root")][0]
print(q["options"]["rate"] * 8 if q["kind"] == "tbf" else q["kind"])'
}

# --- a run killed with SIGKILL; the next hosts_up cleans up after it ----
info=$(mktemp)
klog=$(mktemp)
bash -c 'source "$1"; hosts_up 2
	hosts_exec 1 sleep 600 &
	bash -c "exec -a $HOSTS_DIR/marker sleep 600" &
	echo "$HOSTS_ID $HOSTS_DIR" >"$2"; wait' _ "$HERE/hosts.sh" "$info" 2>"$klog" &
child=$!
wait_for 20 test -s "$info" || fail "the run to be killed did not come up: $(cat "$klog")"
read -r kid kdir <"$info"
rm -f "$info" "$klog"
kpids=$(ip netns pids "gv${kid}h1"; pgrep -f "^$kdir/marker")
[ "$(echo "$kpids" | wc -w)" = 2 ] || fail "killed run: want 2 processes, got '$kpids'"
nobj=$(our_objects "$kid" | wc -l)
if [ "$nobj" != 5 ] || [ ! -d "$kdir" ]; then
	fail "run $kid: want 2 namespaces, a bridge, 2 veths and $kdir, got $nobj objects"
fi
{ kill -KILL "$child" && wait "$child"; } 2>/dev/null || true   # no "Killed" job message
echo "ok: run $kid killed with SIGKILL, leaving $nobj objects, 2 processes and $kdir"

hosts_up 3   # reaps the killed run first
[ -z "$(our_objects "$kid")" ] || fail "leftovers of run $kid: $(our_objects "$kid" | xargs)"
[ ! -e "$kdir" ] || fail "leftover directory $kdir"
[ ! -e "/run/gridvm-hosts/$kid" ] || fail "leftover state of run $kid"
for p in $kpids; do proc_alive "$p" && fail "leftover process $p of run $kid"; done
echo "ok: hosts_up removed the namespaces, links, processes and directory of run $kid"
[ "$kid" != "$HOSTS_ID" ] || fail "the killed run's id was not retired"

# --- topology --------------------------------------------------------------
expect_eq "grid key is 64 hex chars" "$(grep -cE '^[0-9a-f]{64}$' "$HOSTS_DIR/grid.key")" 1
expect_eq "grid key mode" "$(stat -c %a "$HOSTS_DIR/grid.key")" 600
for i in 1 2 3; do
	expect_eq "h$i address" "$(hosts_exec "$i" ip -4 -o addr show dev eth0 | awk '{print $4}')" \
		"${HOST_IP[i]}/24"
	for j in 1 2 3; do
		[ "$i" = "$j" ] && continue
		hosts_ping "$i" "${HOST_IP[j]}" || fail "h$i cannot ping h$j (${HOST_IP[j]})"
	done
	hosts_exec "$i" ip route get 1.1.1.1 >/dev/null 2>&1 && fail "h$i has a route to 1.1.1.1"
	hosts_exec "$i" ping -c1 -W1 127.0.0.1 >/dev/null 2>&1 || hosts_ping "$i" 127.0.0.1 ||
		fail "h$i: loopback down"
done
echo "ok: the hosts ping each other, have loopback, and no route out"
ip route get "${HOST_IP[1]}" >/dev/null 2>&1 && fail "the root namespace routes to ${HOST_IP[1]}"
echo "ok: the root namespace has no route to the hosts"

# another process's reaper leaves a live run alone; a child script can
# attach to our hosts, and its hosts_down and exit leave them up
before=$(our_objects "$HOSTS_ID" | xargs)
bash -c 'source "$1"; hosts_reap' _ "$HERE/hosts.sh"
expect_eq "hosts_reap elsewhere keeps this live run" "$(our_objects "$HOSTS_ID" | xargs)" "$before"
bash -c 'source "$1"; hosts_attach; hosts_ping 3 "${HOST_IP[1]}"; hosts_down' _ "$HERE/hosts.sh" ||
	fail "hosts_attach in a child: h3 cannot ping h1"
expect_eq "hosts_attach in a child, then its hosts_down" "$(our_objects "$HOSTS_ID" | xargs)" "$before"

# --- an 8 MiB transfer h2 -> h1 ------------------------------------------------
www=$HOSTS_DIR/www
mkdir -p "$www"
head -c 8M /dev/urandom >"$www/big"
head -c 2M /dev/urandom >"$www/small"
hosts_exec 2 python3 -m http.server --bind "${HOST_IP[2]}" --directory "$www" 8000 \
	>"$HOSTS_DIR/http.log" 2>&1 &
disown   # hosts_down kills it; no "Terminated" from the job table
url=http://${HOST_IP[2]}:8000
wait_for 10 fetch 1 "$url/small" "$HOSTS_DIR/got" 2 ||
	fail "HTTP server in h2 not reachable from h1: $(tail "$HOSTS_DIR/http.log")"

w0=$(hosts_wire_bytes 1)
t0=$(now_ms)
fetch 1 "$url/big" "$HOSTS_DIR/got" || fail "fetching 8 MiB from h2 failed"
t1=$(now_ms)
w1=$(hosts_wire_bytes 1)
expect_eq "8 MiB arrive intact" "$(sha256sum <"$HOSTS_DIR/got")" "$(sha256sum <"$www/big")"
[ $((w1 - w0)) -ge $((8 << 20)) ] || fail "h1 wire bytes grew by $((w1 - w0)), want >= 8 MiB"
echo "ok: h1 wire bytes grew by $((w1 - w0)) (>= 8 MiB)"
echo "info: unshaped: 8 MiB in $((t1 - t0)) ms = $(mbits $((8 << 20)) $((t1 - t0))) Mbit/s"

# --- shaping --------------------------------------------------------------------
hosts_shape 1 8mbit
expect_eq "tbf on h1's eth0" "$(tc_rate eth0 "${HOST_NS[1]}")" 8000000
expect_eq "tbf on h1's bridge port" "$(tc_rate "${HOST_VETH[1]}")" 8000000
hosts_exec 1 tc qdisc show dev eth0 | grep -q "tbf .*rate 8Mbit" ||
	fail "tc qdisc show in h1: $(hosts_exec 1 tc qdisc show dev eth0)"
t0=$(now_ms)
fetch 1 "$url/small" "$HOSTS_DIR/got" || fail "shaped fetch failed"
t1=$(now_ms)
expect_eq "2 MiB arrive intact through tbf" "$(sha256sum <"$HOSTS_DIR/got")" "$(sha256sum <"$www/small")"
echo "info: shaped 8mbit: 2 MiB in $((t1 - t0)) ms = $(mbits $((2 << 20)) $((t1 - t0))) Mbit/s"
hosts_shape 1 2mbit
expect_eq "hosts_shape replaces the rate" "$(tc_rate eth0 "${HOST_NS[1]}")" 2000000
hosts_unshape 1
expect_eq "unshaped eth0" "$(tc_rate eth0 "${HOST_NS[1]}")" noqueue
expect_eq "unshaped bridge port" "$(tc_rate "${HOST_VETH[1]}")" noqueue

# --- cut and restore -----------------------------------------------------------
hosts_cut 1
fetch 1 "$url/small" "$HOSTS_DIR/got" 3 && fail "fetch through a cut link succeeded"
echo "ok: h1 cut: the fetch fails"
fetch 3 "$url/small" "$HOSTS_DIR/got3" 10 || fail "h3 lost h2 while h1 was cut"
echo "ok: h3 still reaches h2"
hosts_restore 1
wait_for 20 fetch 1 "$url/small" "$HOSTS_DIR/got" 5 || fail "no fetch after hosts_restore"
expect_eq "h1 restored: 2 MiB arrive intact" "$(sha256sum <"$HOSTS_DIR/got")" "$(sha256sum <"$www/small")"

# --- agents --------------------------------------------------------------------
agents=()
if [ ! -x "$GVD" ] || [ ! -f "${GRIDVM_SYSDATA:-/var/lib/gridvm}/guest/vmlinuz" ]; then
	echo "skip: agents (no $GVD or no guest; run scripts/setup.sh)"
else
	real=1
	if ! "$GVD" --help | grep -q -- --grid-key || ! "$GVD" --help | grep -q -- --listen; then
		real=0 # the agent does not know them yet: test the plumbing only
		# shellcheck disable=SC2016 # the shim's own code
		printf '#!/bin/bash\nargs=()\nwhile [ $# -gt 0 ]; do\n%s\ndone\nexec %q "${args[@]}"\n' \
			'case $1 in --listen | --grid-key) shift 2 ;; *) args+=("$1"); shift ;; esac' \
			"$GVD" >"$HOSTS_DIR/gridvmd-shim"
		chmod +x "$HOSTS_DIR/gridvmd-shim"
		GVD=$HOSTS_DIR/gridvmd-shim
		echo "info: gridvmd has no --listen/--grid-key yet; starting it through a shim"
	fi
	for i in 1 2; do
		hosts_agent_start "$i"
		pid=${HOST_AGENT_PID[i]}
		[ -n "$pid" ] || fail "no agent pid for h$i"
		ip netns pids "${HOST_NS[i]}" | grep -qx "$pid" || fail "agent of h$i not in ${HOST_NS[i]}"
		hosts_gv "$i" host info >/dev/null || fail "hosts_gv $i host info"
		agents+=("$pid")
		if [ $real = 1 ]; then
			j=$((3 - i))
			tcp_open "$j" "${HOST_IP[i]}" "$HOSTS_PORT" ||
				fail "h$j cannot connect to h$i's agent at ${HOST_IP[i]}:$HOSTS_PORT"
		fi
	done
	echo "ok: agents of h1 and h2 run in their namespaces and answer hosts_gv"
	[ $real = 1 ] && echo "ok: the agents accept TCP connections from the other host"
	expect_eq "hosts_gv 2 vm list" "$(hosts_gv 2 vm list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" 0
fi

# --- hosts_down -----------------------------------------------------------------
id=$HOSTS_ID dir=$HOSTS_DIR
hosts_down
[ -z "$(our_objects "$id")" ] || fail "after hosts_down: $(our_objects "$id" | xargs)"
[ ! -e "$dir" ] || fail "after hosts_down: $dir remains"
[ ! -e "/run/gridvm-hosts/$id" ] || fail "after hosts_down: state file remains"
ip route show | grep -q "$(hosts__subnet "$id")\." && fail "after hosts_down: route remains"
for p in ${agents[@]+"${agents[@]}"}; do proc_alive "$p" && fail "agent $p survived hosts_down"; done
pgrep -f "$dir/" >/dev/null && fail "processes under $dir survived hosts_down"
echo "ok: hosts_down removed namespaces, links, route, processes and $dir"
hosts_down
echo "ok: hosts_down twice is harmless"
