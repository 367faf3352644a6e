#!/bin/bash
# SPDX-License-Identifier: MIT
# test-grid-users.sh - users of the grid (issue 12; docs/security.md#users):
# two local users submit through the controller's unix socket, each known
# by the kernel. One cannot list, show, read the logs or events of, cancel
# or fetch the outputs of the other's jobs (they answer "no such job"), nor
# drain or label hosts; root (and a host holding the grid key) sees all; a
# quota exceeded is a clear error that makes no job and starts no QEMU.
# Over TCP, a user's certificate (gridvm ca issue USER --role user) is the
# same user; without one a user has no way in.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$ROOT/tests/e2e/lib.sh"
source "$ROOT/tests/e2e/hosts.sh"
source "$ROOT/tests/e2e/grid.sh"

ALICE=gvt-alice
BOB=gvt-bob
MADE=()
for u in $ALICE $BOB; do
	if ! id "$u" >/dev/null 2>&1; then
		useradd --system --no-create-home --shell /usr/sbin/nologin "$u" ||
			fail "cannot create user $u"
		MADE+=("$u")
	fi
done
TMPU=$(mktemp -d /tmp/gvt-gusers.XXXXXX)
chmod 755 "$TMPU"
users_cleanup() {
	rm -rf "$TMPU"
	for u in "${MADE[@]}"; do userdel "$u" 2>/dev/null || true; done
}
trap users_cleanup EXIT # hosts_up chains its own cleanup after this one

hosts_up 1
chmod 755 "$HOSTS_DIR" # the controller's socket is in it
SOCK=$HOSTS_DIR/gridvmctld.sock
# a grid CA: the controller's certificate (its agents keep the grid key:
# the controller takes both), and the two users'
CA=$HOSTS_DIR/ca-home
mkdir -p "$CA" "$HOSTS_DIR/ctl"
GRIDVM_DATA=$CA "$GV" ca init >/dev/null
GRIDVM_DATA=$CA "$GV" ca issue ctl --role controller --addr "${HOST_IP[1]}" \
	--out "$HOSTS_DIR/ctl/tls" >/dev/null
for u in $ALICE $BOB; do
	GRIDVM_DATA=$CA "$GV" ca issue $u --role user --out "$TMPU/$u-tls" >/dev/null
	chown -R $u "$TMPU/$u-tls"
done
grid_ctl_start --socket "$SOCK"
grid_join 1 --grid-cpus 2 --grid-memory 1G
wait_until 60 "the host to be up" sh -c "'$GV' --controller '$SOCK' hosts 2>/dev/null | grep -q ' up '"

# as USER ARGS...: gridvm as USER against the controller's socket (no key)
as() {
	local u=$1
	shift
	(cd "$TMPU" && runuser -u "$u" -- env GRIDVM_DATA="$TMPU" "$GV" --controller "$SOCK" "$@")
}
FAILED=0
bad() { echo "FAILED: $*" >&2; FAILED=$((FAILED + 1)); }
ck_eq() { if [ "$2" = "$3" ]; then echo "ok: $1"; else bad "$1: got '$2', want '$3'"; fi; }
ck_err() { # WHAT PATTERN CMD...: CMD fails and says PATTERN
	local what=$1 pat=$2 rc
	shift 2
	"$@" >/dev/null 2>"$TMPU/err" && rc=0 || rc=$?
	if [ $rc = 0 ]; then
		bad "$what: succeeded"
	elif ! grep -qE "$pat" "$TMPU/err"; then
		bad "$what: error was '$(cat "$TMPU/err")'"
	else
		echo "ok: $what: $(head -1 "$TMPU/err")"
	fi
}
ids() { python3 -c 'import json,sys; print(" ".join(str(j["id"]) for j in json.load(sys.stdin)))'; }
njobs() { G jobs --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
qemus() { pgrep -fc -- "qemu-system.*$HOSTS_DIR/" || true; }

ck_eq "the socket is every local user's" "$(stat -c %a "$SOCK")" 666
echo "alice's input" >"$TMPU/alice-in.txt"
chown $ALICE "$TMPU/alice-in.txt"
chmod 600 "$TMPU/alice-in.txt"
a=$(as $ALICE submit --memory 256M --input "$TMPU/alice-in.txt" -- sh -c 'i=0; while :; do i=$((i+1)); echo $i; sleep 1; done') ||
	fail "alice cannot submit"
b=$(as $BOB submit --memory 256M -- echo bob) || fail "bob cannot submit"
wait_for 180 grid_in_state "$a" running || { G job events "$a" >&2; G jobs >&2; fail "job $a did not run"; }
grid_wait_state 180 "$b" completed

ck_eq "alice's job is hers" "$(as $ALICE job show "$a" --json | python3 -c 'import json,sys; o=json.load(sys.stdin)["owner"]; print(o["name"], o["uid"])')" \
	"$ALICE $(id -u $ALICE)"
ck_eq "alice lists her jobs only" "$(as $ALICE jobs --json | ids)" "$a"
ck_eq "bob lists his jobs only" "$(as $BOB jobs --json | ids)" "$b"
ck_eq "root (the grid key) lists every job" "$(G jobs --json | ids)" "$a $b"
ck_eq "root on the socket lists every job" "$("$GV" --controller "$SOCK" jobs --json | ids)" "$a $b"
ck_err "bob shows alice's job" "no such job: $a" as $BOB job show "$a"
ck_err "bob reads alice's job log" "no such job: $a" as $BOB job logs "$a"
ck_err "bob reads alice's job events" "no such job: $a" as $BOB job events "$a"
ck_err "bob cancels alice's job" "no such job: $a" as $BOB job cancel "$a"
mkdir "$TMPU/bob-out" && chown $BOB "$TMPU/bob-out"
ck_err "bob fetches alice's job outputs" "no such job: $a" as $BOB job output "$a" "$TMPU/bob-out"
# the transfer itself, as a user's client would speak it on the socket:
# OPEN job:ID:input, and the first frame back ('I': its index; 'E': refused)
xfer_open() { # USER NAME
	runuser -u "$1" -- python3 - "$SOCK" "$2" <<'PY'
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
p = json.dumps({"image": sys.argv[2], "codec": "none"}).encode()
s.sendall(struct.pack(">I", 1 + len(p)) + b"O" + p)
def recv(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            break
        b += c
    return b
n, = struct.unpack(">I", recv(4))
body = recv(n)
print(chr(body[0]), body[1:].decode(errors="replace") if body[:1] == b"E" else "")
PY
}
ck_eq "bob fetches alice's job input by the transfer" "$(xfer_open $BOB "job:$a:input")" \
	"E no such image: job:$a:input"
ck_eq "alice fetches her job's input by the transfer" "$(xfer_open $ALICE "job:$a:input")" "I "
ck_err "bob drains the host" "permission denied: draining a host" as $BOB host drain h1
ck_err "bob labels the host" "permission denied: labelling a host" as $BOB host label h1 mine=1
G host undrain h1 >/dev/null # (had bob's drain gone through, the rest would wait)
ck_eq "alice's job still runs" "$(grid_state "$a")" running
ck_eq "alice reads her own job's log" "$(as $ALICE job logs "$a" | head -1)" 1
ck_eq "bob reads his own job's log" "$(as $BOB job logs "$b")" bob

# quotas on jobs, before anything runs
cat >"$GRID_DIR/quotas.json" <<EOF
{"default": {"jobs": 5, "vcpus": 4, "memory": "1G"}, "users": {"$BOB": {"jobs": 1}}}
EOF
c=$(as $BOB submit --memory 256M -- sh -c 'sleep 600') || fail "bob cannot submit his second job"
grid_wait_state 180 "$c" running
n=$(njobs)
before=$(qemus)
ck_err "bob over his jobs quota" "quota exceeded: jobs of user $BOB: limit 1, in use 1, this needs 1 more" \
	as $BOB submit --memory 256M -- echo more
ck_err "alice over her memory quota" "quota exceeded: memory of user $ALICE: limit 1 GiB, in use 256 MiB, this needs 1 GiB more" \
	as $ALICE submit --memory 1G -- echo big
ck_eq "no job was made" "$(njobs)" "$n"
ck_eq "no QEMU started" "$(qemus)" "$before"
as $ALICE job cancel "$a" >/dev/null || bad "alice cannot cancel her job"
as $BOB job cancel "$c" >/dev/null || bad "bob cannot cancel his job"
grid_wait_state 60 "$a" cancelled

# over TCP: a user's certificate is that user (by name), in h1's namespace
tcp_as() { # USER ARGS...: with USER's certificate
	local u=$1
	shift
	(cd "$TMPU" && ip netns exec "${HOST_NS[1]}" runuser -u "$u" -- env GRIDVM_DATA="$TMPU" \
		GRIDVM_TLS_DIR="$TMPU/$u-tls" "$GV" --controller "$GRID_CTL" "$@")
}
ck_eq "alice's certificate lists her jobs only" "$(tcp_as $ALICE jobs --json | ids)" "$a"
ck_eq "bob's certificate lists his jobs only" "$(tcp_as $BOB jobs --json | ids)" "$b $c"
ck_err "bob's certificate shows alice's job" "no such job: $a" tcp_as $BOB job show "$a"
ck_err "bob's certificate drains the host" "permission denied: draining a host" \
	tcp_as $BOB host drain h1
ck_err "a user without a certificate over TCP" "cannot read the grid key" \
	ip netns exec "${HOST_NS[1]}" runuser -u $BOB -- env GRIDVM_DATA="$TMPU" "$GV" \
	--controller "$GRID_CTL" jobs

[ $FAILED = 0 ] || fail "$FAILED checks failed"
echo "PASS: test-grid-users"
