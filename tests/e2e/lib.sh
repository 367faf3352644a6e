# SPDX-License-Identifier: MIT
# lib.sh - shared by the end-to-end tests: a private data directory with
# its own agent, the guest prepared by setup.sh, cleanup on exit.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
GV=${GV:-"$ROOT/build/programs/gridvm"}
GVD=${GVD:-"$ROOT/build/programs/gridvmd"}
SYSDATA=${GRIDVM_SYSDATA:-/var/lib/gridvm}
# debootstrap images are slow to build: keep them between runs
IMGCACHE=${GRIDVM_TEST_IMAGES:-/var/tmp/gridvm-test-images}

fail() { echo "FAILED: $*" >&2; exit 1; }
expect_eq() { # what got want
	[ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
	echo "ok: $1"
}

gv_setup() {
	export GRIDVM_DATA
	GRIDVM_DATA=$(mktemp -d /var/tmp/gvtest.XXXXXX)
	export GRIDVM_SOCKET="$GRIDVM_DATA/gridvmd.sock"
	export GRIDVMD="$GVD"
	[ -f "$SYSDATA/guest/vmlinuz" ] || fail "no guest in $SYSDATA (run scripts/setup.sh)"
	ln -s "$SYSDATA/guest" "$GRIDVM_DATA/guest"
	mkdir -p "$GRIDVM_DATA/images"
	ln -s "$SYSDATA/images/default.img" "$GRIDVM_DATA/images/default.img"
	trap gv_teardown EXIT
}

agent_pid() {
	pgrep -f "gridvmd --daemon --socket $GRIDVM_SOCKET" | head -1 || true
}

gv_teardown() {
	local rc=$?
	pkill -f "gridvmd --daemon --socket $GRIDVM_SOCKET" 2>/dev/null || true
	pkill -9 -f "$GRIDVM_DATA/vms/" 2>/dev/null || true
	sleep 0.3
	rm -rf "$GRIDVM_DATA"
	exit $rc
}

# wait_for SECONDS CMD...: retry CMD until it succeeds (1 if it never did)
wait_for() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}

# wait_until SECONDS WHAT CMD...: wait for an event instead of sleeping: retry
# CMD until it succeeds; fail the test, naming WHAT, if it never does. Give
# SECONDS generously (a loaded machine is slow): it only bounds a failure.
wait_until() {
	local secs=$1 what=$2
	shift 2
	wait_for "$secs" "$@" || fail "waited ${secs} s for $what: it did not happen"
}

# Waiting for a line in a log that grows (an agent's log, kept across its
# restarts): take a mark before the action, then look only after it.
#   mark=$(log_mark FILE); ...; wait_until 60 "..." log_has FILE "$mark" TEXT
log_mark() { stat -c %s "$1" 2>/dev/null || echo 0; }
# log_has FILE MARK TEXT: TEXT (a fixed string) is in FILE after byte MARK
# (not tail | grep -q: with pipefail, tail killed by SIGPIPE would make a
# found line look missing)
log_has() { grep -qF -- "$3" < <(tail -c "+$(($2 + 1))" "$1" 2>/dev/null); }

vm_state() { "$GV" vm show "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
vm_field() { "$GV" vm show "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)$2)"; }
last_count() { local n; n=$("$GV" vm logs "$1" | tail -1); echo "${n:-0}"; }
# count_reaches VM N SECONDS: the counter job of VM prints N or more
count_reaches() { wait_for "$3" sh -c "[ \"\$('$GV' vm logs $1 | tail -1)\" -ge $2 ] 2>/dev/null"; }
# proc_alive PID: the process exists and is not a zombie
proc_alive() { [ -r /proc/$1/stat ] && ! awk '{exit !($3 == "Z" || $3 == "X")}' /proc/$1/stat; }
# proc_gone PID: it is not (wait_until 30 "PID to end" proc_gone PID)
proc_gone() { ! proc_alive "$1"; }
