# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# hosts.sh - several "hosts" on this one machine for end-to-end tests and
# benchmarks: network namespaces joined by veth pairs to a Linux bridge,
# each host optionally running its own gridvm node agent, with optional
# rate shaping of each host's link. Needs root and iproute2 (ip, tc).
#
#   source tests/e2e/lib.sh      # optional (fail, wait_for, gv_setup, ...)
#   source tests/e2e/hosts.sh
#   hosts_up 3 [RATE]            # h1..h3, RATE e.g. 100mbit, 20mbit, 2mbit
#   hosts_agent_start 1; hosts_agent_start 2
#   hosts_gv 1 vm list           # the gridvm CLI against h1's agent
#   hosts_exec 2 ss -tln         # any command inside h2's namespace
#   ...                          # hosts_down runs on EXIT (also on failure)
#
# Functions (I is a host number, 1..N):
#   hosts_up N [RATE]     create the bridge and N hosts; register cleanup
#   hosts_down            kill agents/QEMUs/anything in the namespaces,
#                         delete namespaces, veths, bridge, HOSTS_DIR;
#                         idempotent (safe to run twice)
#   hosts_reap            remove leftovers of earlier runs whose owner died
#                         (hosts_up does this first)
#   hosts_attach          in a child bash script: use the parent's hosts
#   hosts_shape I RATE    shape both directions of I's link (tbf, replaces)
#   hosts_unshape I       remove the shaping of I's link
#   hosts_cut I           take I's link down (bridge-side veth down)
#   hosts_restore I       bring it up again
#   hosts_exec I CMD...   run CMD inside I's namespace
#   hosts_ping I IP       one ICMP echo from I to IP (ping, or python3)
#   hosts_agent_start I [ARGS...]  start gridvmd for I inside its namespace
#                         (ARGS: more gridvmd options, e.g. --controller)
#   hosts_agent_stop I    SIGTERM I's agent (VMs keep running)
#   hosts_gv I ARGS...    run the gridvm CLI against I's agent
#   hosts_wire_bytes I    tx+rx bytes so far on I's eth0 (ns side)
#
# Variables set by hosts_up (arrays are indexed 1..N; bash cannot export
# arrays, so child processes see only the exported scalars; a child bash
# script can rebuild the arrays with hosts_attach):
#   HOSTS_ID      short id of this run (exported), chosen from $$ mod 10000
#   HOSTS_N       number of hosts (exported)
#   HOSTS_DIR     private directory, mktemp -d /var/tmp/gvhosts.ID.XXXXXX;
#                 host I's agent data dir is $HOSTS_DIR/hI (exported)
#   HOSTS_BRIDGE  the bridge, gvbrID (root namespace)
#   HOSTS_IPS     "IP1 IP2 ..." (exported, for scripts in other languages)
#   HOST_NS[I]    namespace gvIDhI        HOST_IP[I]   its address
#   HOST_VETH[I]  bridge-side veth gvIDvI (the namespace side is "eth0")
#   HOST_DATA[I]  agent data dir          HOST_SOCK[I] agent API socket
#   HOST_AGENT_PID[I]  set by hosts_agent_start
#
# Addresses: all hosts of one run share the /24 10.(100 + ID/256).(ID%256),
# host I has .I (so at most 254 hosts). The bridge has no address and the
# namespaces have no default route: hosts reach each other and nothing
# else (not the root namespace, not the network; IPv6 is disabled on the
# links, so no link-local path either). In the root namespace the /24 gets
# an "unreachable" route, so a client that wrongly runs there fails at once
# instead of sending to the default gateway: run clients with hosts_exec.
# Different runs have different bridges, so even equal subnets could not
# mix; distinct ones keep routes, captures and logs unambiguous.
#
# Shaping (tbf, on the egress of eth0 in the namespace and on the egress of
# the bridge-side veth, so both directions): rate as given; burst =
# max(rate_in_bytes_per_s / 250, 4 * 1540) bytes, i.e. 4 ms worth of
# traffic but at least four full frames; latency 50ms (the queue holds
# 50 ms of traffic; beyond that packets are dropped, TCP backs off).
# RATE is an integer with a tc unit: bit kbit mbit gbit (decimal, bits/s)
# or bps kbps mbps gbps (bytes/s), case-insensitive; a bare number is bit/s.
#
# Cleanup and leftovers: hosts_up writes /run/gridvm-hosts/ID (owner pid and
# its start time) BEFORE it creates anything, and every object carries the
# id in its name (gvIDhI, gvIDvI, gvbrID, /var/tmp/gvhosts.ID.*). hosts_reap
# (run by every hosts_up, under a lock) destroys everything of an id whose
# owner process is gone (e.g. a test killed with SIGKILL), and any gv*
# namespace, link or directory whose id has no state file at all. /run is
# a tmpfs, like the namespaces it outlives nothing at a reboot.
#
# Combining with lib.sh: source lib.sh, then hosts.sh; call gv_setup (if
# the test also wants a single-host data dir) BEFORE hosts_up. hosts_up
# chains the EXIT trap it finds (gv_teardown): on exit hosts_down runs first,
# then the old trap with the original exit status. A trap set after hosts_up
# replaces ours; such a trap must call hosts_down itself (it is idempotent;
# gv_teardown does not know about it). Call hosts_up in the main shell, not
# in a subshell or $(...): its EXIT trap would fire when the subshell ends.
#
# Surprises:
# - If br_netfilter is loaded, bridged frames pass the iptables FORWARD
#   chain; a DROP policy there (Docker sets one) silently breaks traffic
#   between the hosts. Then use sysctl net.bridge.bridge-nf-call-iptables=0
#   or iptables -I FORWARD -i gvbrID -o gvbrID -j ACCEPT. net.ipv4.ip_forward
#   is not needed (bridging is layer 2) and left alone.
# - All links have MTU 1500 whatever the machine's own NIC has.
# - veth does GSO/GRO: unshaped, a 64 KiB super-packet is counted with one
#   set of headers, so hosts_wire_bytes is payload plus a little; tbf
#   splits super-packets larger than its burst, so shaped links count
#   per-segment headers (a few % more). No preamble/FCS is ever counted.
# - `ip netns exec` gives the command a private mount namespace with its
#   own /sys; files under /var/tmp and unix sockets in them are shared,
#   which is why the CLI can talk to an agent from the root namespace. Any
#   QEMU an agent starts inherits the namespace (so it has no way out).

set -euo pipefail

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
GV=${GV:-"$ROOT/build/programs/gridvm"}
GVD=${GVD:-"$ROOT/build/programs/gridvmd"}
HOSTS_RUN=/run/gridvm-hosts        # state files, one per live run
HOSTS_TMPBASE=/var/tmp             # HOSTS_DIR is created here
HOSTS_PORT=${HOSTS_PORT:-7878}     # the agents' TCP port

declare -F fail >/dev/null || fail() { echo "FAILED: $*" >&2; exit 1; }

if [ -z "${HOSTS__SOURCED:-}" ]; then # sourcing twice keeps a live run
	HOSTS__SOURCED=1
	HOSTS_UP=0 # 0: down, 1: up (this shell owns it), 2: attached
	HOSTS__PREV_TRAP=""
	declare -ga HOST_NS=() HOST_IP=() HOST_VETH=() HOST_DATA=() HOST_SOCK=() HOST_AGENT_PID=()
fi

# --- internals ---------------------------------------------------------

# hosts__start_time PID: the start time of PID (field 22 of its stat), or ""
hosts__start_time() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	s=${s##*) }                  # the fields after "(comm) "
	# shellcheck disable=SC2086
	set -- $s
	echo "${20}"
}

# hosts__alive PID: exists and is not a zombie
hosts__alive() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	s=${s##*) }
	[ "${s:0:1}" != Z ] && [ "${s:0:1}" != X ]
}

# hosts__pids_using DIR: processes whose command line mentions DIR/
hosts__pids_using() {
	local p pid args
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" = $$ ] || [ "$pid" = "$BASHPID" ] && continue
		{ mapfile -d '' -t args <"$p/cmdline"; } 2>/dev/null || continue
		[[ " ${args[*]-} " == *"$1/"* ]] && echo "$pid"
	done
	return 0
}

# hosts__kill PID...: SIGTERM, up to 3 s grace, then SIGKILL
hosts__kill() {
	local p left i
	[ $# -gt 0 ] || return 0
	kill -TERM "$@" 2>/dev/null || true
	for i in $(seq 30); do
		left=()
		for p in "$@"; do hosts__alive "$p" && left+=("$p"); done
		[ ${#left[@]} -gt 0 ] || return 0
		[ "$i" -lt 30 ] && sleep 0.1
	done
	kill -KILL "${left[@]}" 2>/dev/null || true
	for i in $(seq 20); do
		left=()
		for p in "$@"; do hosts__alive "$p" && left+=("$p"); done
		[ ${#left[@]} -gt 0 ] || return 0
		sleep 0.1
	done
	echo "hosts: processes did not die: ${left[*]}" >&2
}

# hosts__subnet ID: the first three octets of run ID's /24
hosts__subnet() { echo "10.$((100 + $1 / 256)).$(($1 % 256))"; }

# hosts__namespaces ID: our namespaces of run ID (all runs if ID is "")
hosts__namespaces() {
	local re="^gv${1:-[0-9]+}h[0-9]+\$"
	ip netns list 2>/dev/null | awk '{print $1}' | grep -E "$re" || true
}

# hosts__links ID: our root-namespace links (bridge, veths) of run ID
hosts__links() {
	local re="^gv(br${1:-[0-9]+}|${1:-[0-9]+}v[0-9]+)\$" l
	for l in /sys/class/net/gv*; do
		[ -e "$l" ] || continue
		l=${l##*/}
		[[ $l =~ $re ]] && echo "$l"
	done
	return 0
}

# hosts__destroy ID: remove everything of run ID (safe to repeat)
hosts__destroy() {
	local id=$1 ns l d pids round
	# (again while any is found: a process being killed may have just
	# started another, e.g. an agent's QEMU that daemonizes)
	for round in 1 2 3 4 5; do
		pids=()
		for ns in $(hosts__namespaces "$id"); do
			# shellcheck disable=SC2207
			pids+=($(ip netns pids "$ns" 2>/dev/null || true))
		done
		for d in "$HOSTS_TMPBASE"/gvhosts."$id".*; do
			# shellcheck disable=SC2207
			[ -d "$d" ] && pids+=($(hosts__pids_using "$d"))
		done
		[ ${#pids[@]} -gt 0 ] || break
		hosts__kill "${pids[@]}"
	done
	for l in $(hosts__links "$id"); do   # veths first, deleting one end
		[[ $l == gvbr* ]] || ip link del "$l" 2>/dev/null || true
	done
	for l in $(hosts__links "$id"); do ip link del "$l" 2>/dev/null || true; done
	for ns in $(hosts__namespaces "$id"); do ip netns del "$ns" 2>/dev/null || true; done
	ip route del unreachable "$(hosts__subnet "$id").0/24" 2>/dev/null || true
	for d in "$HOSTS_TMPBASE"/gvhosts."$id".*; do
		[ -d "$d" ] && rm -rf --one-file-system "$d"
	done
	rm -f "$HOSTS_RUN/$id"
}

# hosts__owner_alive ID: the run ID's recorded owner still runs
hosts__owner_alive() {
	local k v pid="" start=""
	[ -f "$HOSTS_RUN/$1" ] || return 1
	while IFS='=' read -r k v; do
		case $k in owner_pid) pid=$v ;; owner_start) start=$v ;; esac
	done <"$HOSTS_RUN/$1"
	[ -n "$pid" ] && hosts__alive "$pid" && [ "$(hosts__start_time "$pid")" = "$start" ]
}

# hosts__ids_present: ids of all state files, namespaces, links and dirs
hosts__ids_present() {
	local f
	for f in "$HOSTS_RUN"/*; do
		[ -f "$f" ] && [[ ${f##*/} =~ ^[0-9]+$ ]] && echo "${f##*/}"
	done
	hosts__namespaces "" | sed -E 's/^gv([0-9]+)h.*/\1/'
	hosts__links "" | sed -E 's/^gv(br)?([0-9]+).*/\2/'
	for f in "$HOSTS_TMPBASE"/gvhosts.*.*; do
		[ -d "$f" ] && [[ $f =~ gvhosts\.([0-9]+)\. ]] && echo "${BASH_REMATCH[1]}"
	done
	return 0
}

# hosts__reap_locked: hosts_reap, the caller holds the lock
hosts__reap_locked() {
	local id
	for id in $(hosts__ids_present | sort -un); do
		[ "$id" = "${HOSTS_ID:-}" ] && [ "$HOSTS_UP" = 1 ] && continue
		hosts__owner_alive "$id" && continue
		echo "hosts: removing leftovers of run $id" >&2
		hosts__destroy "$id"
	done
}

# hosts__lock / hosts__unlock: serialize id allocation and reaping
hosts__lock() {
	mkdir -p "$HOSTS_RUN"
	exec {HOSTS__LOCKFD}>"$HOSTS_RUN/lock"
	flock -w 60 "$HOSTS__LOCKFD" || fail "hosts: cannot lock $HOSTS_RUN/lock"
}
hosts__unlock() { exec {HOSTS__LOCKFD}>&-; }

# hosts__fill: the names and addresses of run HOSTS_ID (HOSTS_N hosts)
hosts__fill() {
	local i net
	net=$(hosts__subnet "$HOSTS_ID")
	HOSTS_BRIDGE=gvbr$HOSTS_ID
	export HOSTS_IPS=""
	for ((i = 1; i <= HOSTS_N; i++)); do
		HOST_NS[i]=gv${HOSTS_ID}h$i
		HOST_VETH[i]=gv${HOSTS_ID}v$i
		HOST_IP[i]=$net.$i
		HOST_DATA[i]=$HOSTS_DIR/h$i
		HOST_SOCK[i]=$HOSTS_DIR/h$i/gridvmd.sock
		HOSTS_IPS="${HOSTS_IPS:+$HOSTS_IPS }${HOST_IP[i]}"
	done
}

# hosts__host I: check that host I exists
hosts__host() {
	[ "$HOSTS_UP" != 0 ] || fail "hosts: not up (call hosts_up first)"
	if ! [[ ${1:-} =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt "$HOSTS_N" ]; then
		fail "hosts: no host '${1:-}' (have 1..$HOSTS_N)"
	fi
}

# hosts__tbf_args RATE: tc arguments of a tbf for RATE (see the header);
# returns 1 for a malformed or zero rate
hosts__tbf_args() {
	local r=${1,,} n bits burst
	[[ $r =~ ^([0-9]+)([a-z]*)$ ]] || return 1
	n=$((10#${BASH_REMATCH[1]}))
	case ${BASH_REMATCH[2]} in
	"" | bit) bits=$n ;;
	kbit) bits=$((n * 1000)) ;;
	mbit) bits=$((n * 1000000)) ;;
	gbit) bits=$((n * 1000000000)) ;;
	bps) bits=$((n * 8)) ;;
	kbps) bits=$((n * 8000)) ;;
	mbps) bits=$((n * 8000000)) ;;
	gbps) bits=$((n * 8000000000)) ;;
	*) return 1 ;;
	esac
	[ "$bits" -gt 0 ] || return 1
	burst=$((bits / 8 / 250))
	[ "$burst" -ge $((4 * 1540)) ] || burst=$((4 * 1540))
	echo "tbf rate ${bits}bit burst $burst latency 50ms"
}

hosts__no_ipv6() { # DEV (root namespace)
	local f=/proc/sys/net/ipv6/conf/$1/disable_ipv6
	[ -w "$f" ] && echo 1 >"$f"
	return 0
}

hosts__on_exit() {
	local rc=$?
	set +e
	# HOSTS_KEEP_LOGS=DIR: a failed run's logs are copied there first
	if [ "$rc" != 0 ] && [ -n "${HOSTS_KEEP_LOGS:-}" ] && [ -d "${HOSTS_DIR:-}" ]; then
		mkdir -p "$HOSTS_KEEP_LOGS"
		(cd "$HOSTS_DIR" && find . -name '*.log' -exec cp --parents {} "$HOSTS_KEEP_LOGS" \;)
		echo "hosts: logs of the failed run kept in $HOSTS_KEEP_LOGS" >&2
	fi
	hosts_down
	if [ -n "$HOSTS__PREV_TRAP" ]; then
		(exit "$rc")             # the old trap sees the original $?
		eval "$HOSTS__PREV_TRAP"
	fi
	exit "$rc"
}

# --- API -----------------------------------------------------------------

hosts_reap() {
	hosts__lock
	hosts__reap_locked
	hosts__unlock
}

hosts_up() {
	local n=${1:-} rate=${2:-} i id me cur
	[ "$(id -u)" = 0 ] || fail "hosts_up: needs root"
	if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 254 ]; then
		fail "hosts_up: want 1..254 hosts, got '$n'"
	fi
	[ "$HOSTS_UP" = 0 ] || fail "hosts_up: already up (run $HOSTS_ID)"
	[ -z "$rate" ] || hosts__tbf_args "$rate" >/dev/null ||
		fail "hosts_up: bad rate '$rate' (want e.g. 20mbit)"

	hosts__lock
	hosts__reap_locked
	id=$(($$ % 10000))
	while [ -e "$HOSTS_RUN/$id" ] || [ -n "$(hosts__namespaces "$id")$(hosts__links "$id")" ]; do
		id=$(((id + 1) % 10000))
	done
	me=$BASHPID   # not inside $(...): there BASHPID is the subshell's
	printf 'owner_pid=%s\nowner_start=%s\n' "$me" "$(hosts__start_time "$me")" >"$HOSTS_RUN/$id"
	hosts__unlock

	export HOSTS_ID=$id HOSTS_N=$n HOSTS_DIR=""
	HOSTS_UP=1
	# the cleanup is armed before the first object exists
	cur=$(trap -p EXIT)
	if [[ $cur != *hosts__on_exit* ]]; then
		HOSTS__PREV_TRAP=""
		if [ -n "$cur" ]; then
			eval "set -- $cur"
			HOSTS__PREV_TRAP=$3
		fi
		trap hosts__on_exit EXIT
	fi

	HOSTS_DIR=$(mktemp -d "$HOSTS_TMPBASE/gvhosts.$id.XXXXXX")
	echo "dir=$HOSTS_DIR" >>"$HOSTS_RUN/$id"
	hosts__fill
	(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$HOSTS_DIR/grid.key")
	chmod 600 "$HOSTS_DIR/grid.key"

	# root-namespace traffic to our subnet (a test bug: clients belong in
	# a host) fails at once instead of following the default route out
	ip route add unreachable "$(hosts__subnet "$id").0/24" 2>/dev/null || true

	ip link add "$HOSTS_BRIDGE" type bridge stp_state 0
	hosts__no_ipv6 "$HOSTS_BRIDGE"
	ip link set "$HOSTS_BRIDGE" up

	for ((i = 1; i <= n; i++)); do
		ip netns add "${HOST_NS[i]}"
		ip link add "${HOST_VETH[i]}" type veth peer name eth0 netns "${HOST_NS[i]}"
		hosts__no_ipv6 "${HOST_VETH[i]}"
		ip link set "${HOST_VETH[i]}" master "$HOSTS_BRIDGE" up
		ip netns exec "${HOST_NS[i]}" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
		ip -n "${HOST_NS[i]}" addr add "${HOST_IP[i]}/24" dev eth0
		ip -n "${HOST_NS[i]}" link set lo up
		ip -n "${HOST_NS[i]}" link set eth0 up
		[ -z "$rate" ] || hosts_shape "$i" "$rate"
	done
}

# hosts_attach: in a child script of the shell that ran hosts_up, use its
# hosts (from the exported HOSTS_ID, HOSTS_N, HOSTS_DIR). hosts_down does
# nothing there: the owner cleans up.
hosts_attach() {
	[ "$HOSTS_UP" = 0 ] || fail "hosts_attach: already up"
	if [ -z "${HOSTS_ID:-}" ] || [ -z "${HOSTS_N:-}" ] || [ ! -d "${HOSTS_DIR:-}" ]; then
		fail "hosts_attach: no HOSTS_ID/HOSTS_N/HOSTS_DIR from a parent's hosts_up"
	fi
	hosts__fill
	HOSTS_UP=2
}

hosts_down() {
	[ "$HOSTS_UP" = 1 ] || return 0   # not up, or only attached
	hosts__destroy "$HOSTS_ID"
	HOSTS_UP=0
	HOST_NS=() HOST_IP=() HOST_VETH=() HOST_DATA=() HOST_SOCK=() HOST_AGENT_PID=()
	unset HOSTS_ID HOSTS_N HOSTS_DIR HOSTS_IPS HOSTS_BRIDGE
}

hosts_shape() {
	local i=${1:-} rate=${2:-} tbf
	hosts__host "$i"
	[ -n "$rate" ] || fail "usage: hosts_shape I RATE"
	tbf=$(hosts__tbf_args "$rate") || fail "hosts_shape: bad rate '$rate' (want e.g. 20mbit)"
	# shellcheck disable=SC2086
	tc -n "${HOST_NS[i]}" qdisc replace dev eth0 root $tbf
	# shellcheck disable=SC2086
	tc qdisc replace dev "${HOST_VETH[i]}" root $tbf
}

hosts_unshape() {
	hosts__host "${1:-}"
	tc -n "${HOST_NS[$1]}" qdisc del dev eth0 root 2>/dev/null || true
	tc qdisc del dev "${HOST_VETH[$1]}" root 2>/dev/null || true
}

hosts_cut() {
	hosts__host "${1:-}"
	ip link set "${HOST_VETH[$1]}" down
}

hosts_restore() {
	hosts__host "${1:-}"
	ip link set "${HOST_VETH[$1]}" up
	# the bridge port needs a moment before it forwards again: wait until
	# another host answers (up to 10 s)
	local j end=$((SECONDS + 10))
	for j in $(seq 1 "$HOSTS_N"); do
		[ "$j" = "$1" ] && continue
		until hosts_ping "$1" "${HOST_IP[$j]}" 2>/dev/null; do
			[ $SECONDS -lt $end ] || return 0
			sleep 0.2
		done
		return 0
	done
}

hosts_exec() {
	hosts__host "${1:-}"
	local ns=${HOST_NS[$1]}
	shift
	ip netns exec "$ns" "$@"
}

# hosts_ping I IP: one echo request, 2 s timeout; python3 if no ping(8)
hosts_ping() {
	hosts__host "${1:-}"
	if command -v ping >/dev/null; then
		ip netns exec "${HOST_NS[$1]}" ping -c1 -W2 -q "$2" >/dev/null
		return
	fi
	ip netns exec "${HOST_NS[$1]}" python3 - "$2" <<'EOF'
import os, select, socket, struct, sys, time
dst = sys.argv[1]
def csum(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
ident, data = os.getpid() & 0xFFFF, b"gridvm-hosts-ping"
pkt = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + data
pkt = pkt[:2] + struct.pack("!H", csum(pkt)) + pkt[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
try:
    s.sendto(pkt, (dst, 0))
except OSError:
    sys.exit(1)
end = time.monotonic() + 2
while (left := end - time.monotonic()) > 0:
    if not select.select([s], [], [], left)[0]:
        break
    buf, addr = s.recvfrom(4096)
    h = (buf[0] & 15) * 4
    typ, _, _, rid, _ = struct.unpack("!BBHHH", buf[h:h + 8])
    if typ == 0 and rid == ident and addr[0] == dst:
        sys.exit(0)
sys.exit(1)
EOF
}

hosts_gv() {
	hosts__host "${1:-}"
	local i=$1
	shift
	env GRIDVM_DATA="${HOST_DATA[i]}" GRIDVM_SOCKET="${HOST_SOCK[i]}" \
		GRIDVM_NO_AUTOSTART=1 "$GV" "$@"
}

hosts_agent_start() {
	hosts__host "${1:-}"
	local i=$1 sysdata=${GRIDVM_SYSDATA:-/var/lib/gridvm} data pid end
	shift
	data=${HOST_DATA[i]}
	[ -x "$GVD" ] || fail "hosts_agent_start: no agent binary $GVD"
	[ -f "$sysdata/guest/vmlinuz" ] || fail "no guest in $sysdata (run scripts/setup.sh)"
	mkdir -p "$data/images"
	ln -sfn "$sysdata/guest" "$data/guest"
	ln -sf "$sysdata/images/default.img" "$data/images/default.img"
	# --daemon: the foreground process returns once the agent forked, its
	# own errors (bad options, lock held) go to the same log
	ip netns exec "${HOST_NS[i]}" env GRIDVM_DATA="$data" "$GVD" --daemon \
		--socket "${HOST_SOCK[i]}" --listen "${HOST_IP[i]}:$HOSTS_PORT" \
		--grid-key "${HOSTS_KEY_OVERRIDE:-$HOSTS_DIR/grid.key}" "$@" >>"$data/gridvmd.log" 2>&1 ||
		fail "agent of h$i did not start: $(tail -20 "$data/gridvmd.log")"
	end=$((SECONDS + 10))
	until [ -S "${HOST_SOCK[i]}" ] && hosts_gv "$i" host info >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] ||
			fail "agent of h$i does not answer on ${HOST_SOCK[i]}: $(tail -20 "$data/gridvmd.log")"
		sleep 0.1
	done
	HOST_AGENT_PID[i]=""
	for pid in $(ip netns pids "${HOST_NS[i]}"); do
		if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = gridvmd ] &&
			tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "${HOST_SOCK[i]}"; then
			HOST_AGENT_PID[i]=$pid
		fi
	done
}

hosts_agent_stop() {
	hosts__host "${1:-}"
	local pid=${HOST_AGENT_PID[$1]:-} end=$((SECONDS + 10))
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	while hosts__alive "$pid"; do
		[ $SECONDS -lt $end ] || fail "agent of h$1 (pid $pid) does not stop"
		sleep 0.1
	done
	HOST_AGENT_PID[$1]=""
}

hosts_wire_bytes() {
	hosts__host "${1:-}"
	local rx tx
	read -r rx tx < <(ip netns exec "${HOST_NS[$1]}" \
		cat /sys/class/net/eth0/statistics/rx_bytes /sys/class/net/eth0/statistics/tx_bytes | paste -sd' ')
	echo $((rx + tx))
}
