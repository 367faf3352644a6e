# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# grid.sh - a grid on namespace hosts for end-to-end tests and benchmarks:
# a controller (gridvmctld) in h1's namespace and agents that join it.
# Source after lib.sh and hosts.sh, after hosts_up.
#
#   grid_ctl_start [ARGS...]     start the controller (more gridvmctld options)
#   grid_ctl_stop                SIGTERM it (jobs keep running on their hosts)
#   grid_join I [ARGS...]        start I's agent joined to the controller
#   G ARGS...                    the gridvm CLI against the controller
#   grid_field ID EXPR           a field of `job show ID --json` (python expr on j)
#   grid_state ID                the job's state
#   grid_wait_state SECS ID STATE...   until the job is in one of the states
#   grid_etcd_start [N]          an etcd of N members (default 1) in h1..hN's
#                                namespaces; from then on the controller's store
#   grid_etcd_kill I             SIGKILL the etcd member in hI's namespace
# Several controllers on one etcd (test-grid-ha*.sh; after grid_etcd_start,
# which sets ETCDCTL_URL):
#   grid_ha_start I [VAR=VALUE...]  a controller in hI's namespace on hI's
#                                address (data in $HOSTS_DIR/ctlI, lease 3 s)
#   grid_ha_pid I                the pid of the gridvmctld in hI's namespace
#   grid_leader_addr             the leader key's address ("" when none leads)
#   grid_leader_is_not ADDR      a leader other than ADDR (or "none")
#   grid_ctl_of ADDR             the number of the host whose controller that is
#
# Variables: GRID_CTL (ADDR:PORT), GRID_DIR (the controller's data dir),
# GRID_STORE (--store URL for the controller; empty: its default, SQLite;
# "etcd": grid_ctl_start first starts an etcd with grid_etcd_start, so
# `GRID_STORE=etcd tests/e2e/test-grid.sh` runs a whole test on etcd),
# ETCD (the etcd binary).

GVC=${GVC:-"$ROOT/build/programs/gridvmctld"}
GRID_PORT=${GRID_PORT:-7900}
GRID_STORE=${GRID_STORE:-}
ETCD=${ETCD:-etcd}

grid_ctl_start() {
	GRID_CTL=${HOST_IP[1]}:$GRID_PORT
	GRID_DIR=$HOSTS_DIR/ctl
	mkdir -p "$GRID_DIR"
	if [ "$GRID_STORE" = etcd ]; then grid_etcd_start; fi
	ip netns exec "${HOST_NS[1]}" env GRIDVM_DATA="$GRID_DIR" "$GVC" --listen "$GRID_CTL" \
		--grid-key "$HOSTS_DIR/grid.key" --data-dir "$GRID_DIR" --daemon \
		--report-interval 1s ${GRID_STORE:+--store "$GRID_STORE"} "$@" \
		>>"$GRID_DIR/gridvmctld.log" 2>&1 ||
		fail "the controller did not start: $(tail -5 "$GRID_DIR/gridvmctld.log")"
	wait_until 30 "the controller answers" grid_answers
}

grid_answers() { G jobs >/dev/null 2>&1; }

grid_ctl_pid() {
	local pid
	for pid in $(ip netns pids "${HOST_NS[1]}"); do
		if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = gridvmctld ]; then echo "$pid"; fi
	done
	return 0
}

grid_ctl_stop() {
	local pid
	pid=$(grid_ctl_pid)
	[ -n "$pid" ] || return 0
	kill -TERM "$pid"
	wait_until 30 "the controller stops" proc_gone "$pid"
}

grid_join() {
	local i=$1
	shift
	hosts_agent_start "$i" --controller "$GRID_CTL" --name "h$i" "$@"
}

G() {
	ip netns exec "${HOST_NS[1]}" env GRIDVM_DATA="$GRID_DIR" "$GV" --controller "$GRID_CTL" \
		--grid-key "$HOSTS_DIR/grid.key" "$@"
}

grid_field() {
	G job show "$1" --json | python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"
}

grid_state() { grid_field "$1" 'j["state"]'; }

grid_in_state() { # ID STATE...
	local s id=$1
	shift
	s=$(grid_state "$id") || return 1
	for want in "$@"; do [ "$s" = "$want" ] && return 0; done
	return 1
}

grid_wait_state() { # SECS ID STATE...
	local secs=$1 id=$2
	shift 2
	wait_until "$secs" "job $id to be $*" grid_in_state "$id" "$@"
}

etcd_answers() { ip netns exec "${HOST_NS[1]}" etcdctl --endpoints "$1" endpoint health >/dev/null 2>&1; }

# grid_etcd_start [N]: N members (default 1), member I in hI's namespace
# on hI's address; GRID_STORE names them all
grid_etcd_start() {
	local n=${1:-1} i cluster="" urls="" store=""
	command -v "$ETCD" >/dev/null || fail "no etcd binary '$ETCD' (scripts/setup.sh installs etcd-server)"
	for i in $(seq 1 "$n"); do
		cluster+="${cluster:+,}e$i=http://${HOST_IP[i]}:2380"
		urls+="${urls:+,}http://${HOST_IP[i]}:2379"
		store+="${store:+,}${HOST_IP[i]}:2379"
	done
	for i in $(seq 1 "$n"); do
		mkdir -p "$HOSTS_DIR/etcd$i"
		ip netns exec "${HOST_NS[i]}" "$ETCD" --name "e$i" --data-dir "$HOSTS_DIR/etcd$i/data" \
			--listen-client-urls "http://${HOST_IP[i]}:2379" \
			--advertise-client-urls "http://${HOST_IP[i]}:2379" \
			--listen-peer-urls "http://${HOST_IP[i]}:2380" \
			--initial-advertise-peer-urls "http://${HOST_IP[i]}:2380" \
			--initial-cluster "$cluster" --initial-cluster-token "$HOSTS_DIR" \
			--logger zap --log-outputs stderr >>"$HOSTS_DIR/etcd$i/etcd.log" 2>&1 &
	done
	wait_until 60 "etcd answers" etcd_answers "$urls"
	GRID_STORE=etcd://$store
	ETCDCTL_URL=$urls
	echo "ok: etcd $("$ETCD" --version | head -1 | cut -d' ' -f3), $n member(s) at $urls, is the controller's store"
}

# grid_etcd_kill I: SIGKILL the etcd member in hI's namespace
grid_etcd_kill() {
	local pid
	for pid in $(ip netns pids "${HOST_NS[$1]}"); do
		if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = etcd ]; then kill -KILL "$pid"; fi
	done
	return 0
}

# --- several controllers on one etcd

ETCDCTL_URL=${ETCDCTL_URL:-}

grid_ha_start() { # I [VAR=VALUE...] (its environment, e.g. GRIDVM_FAULT=...)
	local i=$1 dir=$HOSTS_DIR/ctl$1
	shift
	mkdir -p "$dir"
	ip netns exec "${HOST_NS[i]}" env GRIDVM_DATA="$dir" "$@" "$GVC" \
		--listen "${HOST_IP[i]}:$GRID_PORT" --store "$GRID_STORE" --leader-lease 3s \
		--grid-key "$HOSTS_DIR/grid.key" --data-dir "$dir" --daemon --report-interval 1s \
		>>"$dir/gridvmctld.log" 2>&1 || fail "controller $i did not start: $(tail -5 "$dir/gridvmctld.log")"
}

grid_ha_pid() { # I
	local pid
	for pid in $(ip netns pids "${HOST_NS[$1]}"); do
		if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = gridvmctld ]; then echo "$pid"; fi
	done
	return 0
}

grid_leader_addr() {
	ip netns exec "${HOST_NS[1]}" etcdctl --endpoints "$ETCDCTL_URL" get /grid/leader \
		--print-value-only 2>/dev/null |
		python3 -c 'import json,sys; t=sys.stdin.read().strip(); print(json.loads(t)["addr"] if t else "")'
}

grid_leader_is_not() { local a; a=$(grid_leader_addr) && [ -n "$a" ] && [ "$a" != "$1" ]; }

grid_ctl_of() { # ADDR
	local i
	for i in "${!HOST_IP[@]}"; do if [ "$1" = "${HOST_IP[i]}:$GRID_PORT" ]; then echo "$i"; fi; done
}
