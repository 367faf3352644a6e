#!/bin/bash
# SPDX-License-Identifier: MIT
# Local users (issue 12; docs/security.md#users): two users of one agent's
# socket, each attributed by the kernel (SO_PEERCRED). One cannot list,
# show, stop, read the logs of, checkpoint, migrate or delete the other's
# VMs (they answer "no such VM"), nor read the host's files through the
# agent; root sees everything; a quota exceeded is a clear error and starts
# no QEMU; a member of group gridvm-admin sees everything; where group
# gridvm exists, only its members reach the socket. The users (useradd)
# and groups are made here if absent and removed after.
source "$(dirname "$0")/lib.sh"
gv_setup
chmod 755 "$GRIDVM_DATA" # mktemp made it the owner's only

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
MADE_GROUPS=()
TMPU=$(mktemp -d /tmp/gvt-users.XXXXXX)
chmod 755 "$TMPU"
users_teardown() {
	local rc=$?
	set +e # (exit $rc) below must not end the trap before gv_teardown
	rm -rf "$TMPU"
	for g in "${MADE_GROUPS[@]}"; do groupdel "$g" 2>/dev/null || true; done
	for u in "${MADE[@]}"; do userdel "$u" 2>/dev/null || true; done
	(exit $rc)
	gv_teardown
}
trap users_teardown EXIT

# as USER CMD...: gridvm as USER (its own uid and groups, no agent of its own)
as() {
	local u=$1
	shift
	(cd "$TMPU" && runuser -u "$u" -- env GRIDVM_DATA="$GRIDVM_DATA" \
		GRIDVM_SOCKET="$GRIDVM_SOCKET" GRIDVM_NO_AUTOSTART=1 "$GV" "$@")
}
# Checks go on after a failure (each one is seen failing on its own when
# the code it checks is broken on purpose); the test fails at the end.
FAILED=0
bad() { echo "FAILED: $*" >&2; FAILED=$((FAILED + 1)); }
ck_eq() { if [ "$2" = "$3" ]; then echo "ok: $1"; else bad "$1: got '$2', want '$3'"; fi; }
# ck_err WHAT PATTERN CMD...: CMD fails and says PATTERN
ck_err() {
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
names() { python3 -c 'import json,sys; print(" ".join(sorted(v["name"] for v in json.load(sys.stdin))))'; }
qemus() { pgrep -fc -- "qemu-system.*$GRIDVM_DATA/vms/" || true; }

"$GV" host info >/dev/null # root starts the agent
ck_eq "the socket is every local user's (no group gridvm here)" \
	"$(stat -c %a "$GRIDVM_SOCKET")" 666

as $ALICE vm create a1 --memory 128M --job 'i=0; while :; do i=$((i+1)); echo $i; sleep 1; done' >/dev/null ||
	fail "alice cannot create a VM"
as $ALICE vm start a1 >/dev/null || fail "alice cannot start her VM"
as $BOB vm create b1 --memory 128M -- true >/dev/null || fail "bob cannot create a VM"
wait_until 120 "alice's VM to count" count_reaches a1 2 1

ck_eq "alice's VM is hers (owner name)" "$(vm_field a1 '["owner"]["name"]')" $ALICE
ck_eq "alice's VM is hers (owner uid)" "$(vm_field a1 '["owner"]["uid"]')" "$(id -u $ALICE)"
ck_eq "alice lists her VMs only" "$(as $ALICE vm list --json | names)" a1
ck_eq "bob lists his VMs only" "$(as $BOB vm list --json | names)" b1
ck_eq "root lists every VM" "$("$GV" vm list --json | names)" "a1 b1"
ck_err "bob shows alice's VM" "no such VM: a1" as $BOB vm show a1
ck_err "bob stops alice's VM" "no such VM: a1" as $BOB vm stop a1 --force
ck_err "bob pauses alice's VM" "no such VM: a1" as $BOB vm pause a1
ck_err "bob reads alice's job log" "no such VM: a1" as $BOB vm logs a1
ck_err "bob reads alice's console" "no such VM: a1" as $BOB vm console a1
ck_err "bob migrates alice's VM" "no such VM: a1" as $BOB migrate a1 --to 127.0.0.1:9
ck_err "bob checkpoints alice's VM" "no such VM: a1" as $BOB checkpoint create a1
ck_err "bob deletes alice's VM" "no such VM: a1" as $BOB vm delete a1 --force
ck_eq "alice's VM still runs after bob's attempts" "$(vm_state a1)" running
ck_eq "alice reads her own log" "$(as $ALICE vm logs a1 | head -1)" 1
ck_eq "root reads alice's log" "$("$GV" vm logs a1 | head -1)" 1

# checkpoints are their VM's owner's
as $ALICE checkpoint create a1 >/dev/null || fail "alice cannot checkpoint her VM"
ck_eq "alice lists her checkpoint" \
	"$(as $ALICE checkpoint list --json | python3 -c 'import json,sys; print(" ".join(c["vm"] for c in json.load(sys.stdin)))')" a1
ck_eq "bob lists none of alice's checkpoints" \
	"$(as $BOB checkpoint list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" 0

# what reads the host's files with the agent's rights
echo "alice's secret" >"$TMPU/secret"
chown $ALICE "$TMPU/secret"
chmod 600 "$TMPU/secret"
ck_err "bob imports a file he cannot read" "Permission denied \(opened as $BOB\)" \
	as $BOB image import stolen /etc/shadow
ck_err "bob sends alice's file as an input" "Permission denied" \
	as $BOB run --memory 128M --input "$TMPU/secret" -- cat secret
# the same asked of the API directly (not through gridvm, which packs a
# user's inputs with the user's own rights)
api_as() { # USER METHOD PATH BODY: prints the reply's "error"
	runuser -u "$1" -- curl -s --unix-socket "$GRIDVM_SOCKET" -X "$2" -H 'Content-Type: application/json' \
		-d "$4" "http://agent$3" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("error", "(none)"))'
}
ck_eq "bob's input by host path, through the API" \
	"$(api_as $BOB POST /v1/vms "{\"name\": \"bi\", \"job\": [\"true\"], \"inputs\": [{\"path\": \"$TMPU/secret\"}]}")" \
	"permission denied: an input given by host path (read with the agent's rights; gridvm sends yours packed, as input_tar) needs root or a member of group gridvm-admin (you are $BOB)"
ck_eq "bob's input_tar he cannot read, through the API" \
	"$(api_as $BOB POST /v1/vms "{\"name\": \"bi\", \"job\": [\"true\"], \"input_tar\": \"$TMPU/secret\", \"inputs\": [{\"guest\": \"s\"}]}")" \
	"input_tar $TMPU/secret: Permission denied (opened as $BOB)"
ck_eq "no image came of it" "$("$GV" image list --json | names)" default
ck_eq "no VM came of it" "$(as $BOB vm list --json | names)" b1
ck_err "bob's kernel from a host path" "permission denied: a kernel or an initrd" \
	as $BOB vm create bk --kernel /etc/shadow
ck_err "bob saves to a path of his choice" "permission denied: a state file" \
	as $BOB vm save b1 "$TMPU/b1.state"
ck_err "bob builds an image" "permission denied: building an image" \
	as $BOB image build deb --suite "no/such"
ck_err "bob deletes root's image" "permission denied: deleting one of root's images" \
	as $BOB image delete default
ck_eq "alice's input reaches her VM" \
	"$(as $ALICE run --memory 128M --input "$TMPU/secret" -- cat secret)" "alice's secret"

# quotas, before any QEMU starts
cat >"$GRIDVM_DATA/quotas.json" <<EOF
{"default": {"vms": 3, "vcpus": 4, "memory": "1G"},
 "users": {"$BOB": {"vcpus": 1, "vms": 2}}}
EOF
as $BOB vm create b2 --cpus 2 --memory 128M -- true >/dev/null || fail "bob cannot create b2"
before=$(qemus)
ck_err "bob over his vcpus quota" "quota exceeded: vcpus of user $BOB: limit 1, in use 0, this needs 2 more" \
	as $BOB vm start b2
ck_eq "no QEMU started for it" "$(qemus)" "$before"
ck_eq "b2 stays defined" "$(vm_state b2)" defined
ck_err "bob over his VM count" "quota exceeded: vms of user $BOB: limit 2, in use 2, this needs 1 more" \
	as $BOB vm create b3 -- true
ck_eq "bob still has two VMs" "$(as $BOB vm list --json | names)" "b1 b2"
as $ALICE vm create a2 --memory 1G --job 'sleep 600' >/dev/null || fail "alice cannot create a2"
ck_err "alice over her memory quota" "quota exceeded: memory of user $ALICE: limit 1 GiB, in use 128 MiB, this needs 1 GiB more" \
	as $ALICE vm start a2
ck_eq "no QEMU started for it either" "$(qemus)" "$before"
ck_eq "a2 stays defined" "$(vm_state a2)" defined
ck_eq "root has no quota (5 vcpus, over the default 4)" "$("$GV" run --cold --cpus 5 --memory 128M -- echo root)" root

# the groups: gridvm-admin's members administer; where group gridvm
# exists, only its members reach the socket (made here, removed after)
for g in gridvm-admin gridvm; do
	getent group $g >/dev/null && fail "group $g exists on this machine: this test makes its own"
done
groupadd gridvm-admin && MADE_GROUPS+=(gridvm-admin)
usermod -aG gridvm-admin $BOB
ck_eq "bob in group gridvm-admin lists every VM" "$(as $BOB vm list --json | names)" "a1 a2 b1 b2"
ck_eq "and sees alice's log" "$(as $BOB vm logs a1 | head -1)" 1
gpasswd -d $BOB gridvm-admin >/dev/null
ck_eq "bob out of the group again lists his own" "$(as $BOB vm list --json | names)" "b1 b2"
groupadd gridvm && MADE_GROUPS+=(gridvm)
usermod -aG gridvm $ALICE
pid=$(agent_pid)
kill "$pid"
wait_until 30 "the agent to stop" proc_gone "$pid"
"$GV" host info >/dev/null # root starts it again: the socket is the group's now
ck_eq "with group gridvm, the socket is root:gridvm 0660" "$(stat -c '%U:%G %a' "$GRIDVM_SOCKET")" "root:gridvm 660"
ck_eq "alice, a member, reaches it" "$(as $ALICE vm list --json | names)" "a1 a2"
ck_err "bob, not a member, cannot" "permission denied \(only root and the members of group gridvm may here\)" as $BOB vm list

[ $FAILED = 0 ] || fail "$FAILED checks failed"
echo "PASS: test-users"
