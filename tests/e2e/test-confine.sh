#!/bin/bash
# QEMU confined (issue 12, docs/security.md): each VM's QEMU runs as a
# non-zero uid of its own under seccomp, in a mount namespace of its own;
# it cannot open another VM's disk, nor write its template's RAM, nor
# create files in its VM's directory; its VM works all the same. Without
# the QEMU user, a VM start says what to do and starts no QEMU.
source "$(dirname "$0")/lib.sh"
gv_setup
# the data directory searchable (not readable) by the QEMUs' users, so
# that what stops them below is each VM's directory and files, not the
# path to them
chmod 711 "$GRIDVM_DATA"
command -v setpriv >/dev/null || fail "setpriv (util-linux) is missing"

"$GV" host info --json >"$GRIDVM_DATA/info.json"
expect_eq "host info: QEMU confined" \
	"$(python3 -c 'import json,sys; print(json.load(sys.stdin)["qemu_confined"])' <"$GRIDVM_DATA/info.json")" True

# both on an image only root can read (a user's image is 0600): QEMU
# gets it open from the agent; a from a template (its RAM a sealed copy
# of the template's, its disks hot-plugged), b booted
cp --sparse=always "$SYSDATA/images/default.img" "$GRIDVM_DATA/private.img"
"$GV" image import private "$GRIDVM_DATA/private.img" >/dev/null
chmod 600 "$GRIDVM_DATA/images/private.img"
"$GV" vm create a --image private --job 'while :; do echo tick; sleep 1; done' >/dev/null
"$GV" vm create b --image private --cold --job 'echo started; sleep 3600' >/dev/null
"$GV" vm start a >/dev/null
"$GV" vm start b >/dev/null
wait_until 120 "a's job to print" sh -c "'$GV' vm logs a | grep -q tick"
wait_until 120 "b's job to start" sh -c "'$GV' vm logs b | grep -q started"
pa=$(vm_field a '["pid"]'); pb=$(vm_field b '["pid"]')
ua=$(awk '/^Uid:/ { print $2 }' /proc/$pa/status); ub=$(awk '/^Uid:/ { print $2 }' /proc/$pb/status)
ga=$(awk '/^Gid:/ { print $2 }' /proc/$pa/status)

for v in a b; do
	pid=$(vm_field $v '["pid"]')
	st=/proc/$pid/status
	[ "$(awk '/^Uid:/ { print ($2 && $3 && $4 && $5) }' $st)" = 1 ] ||
		fail "$v's QEMU runs as uid 0: $(grep ^Uid: $st)"
	[ "$(awk '/^Gid:/ { print ($2 && $3 && $4 && $5) }' $st)" = 1 ] ||
		fail "$v's QEMU runs as gid 0: $(grep ^Gid: $st)"
	expect_eq "$v: Seccomp" "$(grep ^Seccomp: $st)" "$(printf 'Seccomp:\t2')"
	expect_eq "$v: no capabilities" "$(awk '/^CapEff:/ { print $2 }' $st)" 0000000000000000
	expect_eq "$v: no supplementary groups" "$(awk '/^Groups:/ { print NF - 1 }' $st)" 0
	tr '\0' '\n' </proc/$pid/cmdline | grep -qx 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny' ||
		fail "$v's QEMU has no -sandbox"
done
[ "$ua" != "$ub" ] || fail "a and b run as the same uid $ua"
echo "ok: a runs as $ua, b as $ub"

# as a's QEMU's uid: its own disk opens, b's does not (DATA/vms is the
# agent's alone, 0700; made searchable here, so that what stops a's uid
# is each VM's own directory and files)
chmod 711 "$GRIDVM_DATA/vms"
as_a() { setpriv --reuid="$ua" --regid="$ga" --clear-groups "$@"; }
as_a head -c 4 "$GRIDVM_DATA/vms/a/disk.qcow2" >/dev/null || fail "a's uid cannot read a's own disk"
for f in disk.qcow2 job.spec job.out console.log; do
	if as_a cat "$GRIDVM_DATA/vms/b/$f" >/dev/null 2>"$GRIDVM_DATA/err"; then
		fail "a's QEMU user read b's $f"
	fi
	grep -q "Permission denied" "$GRIDVM_DATA/err" || fail "unclear refusal: $(cat "$GRIDVM_DATA/err")"
done
echo "ok: a's uid cannot open b's disk, job spec, job output, console"
if as_a touch "$GRIDVM_DATA/vms/a/planted" 2>/dev/null; then
	fail "a's QEMU user created a file in its VM's directory"
fi
echo "ok: a's uid cannot create files in its VM's directory"

# its mount namespace: its VM's directory and what it reads, nothing else
root=/proc/$pa/root
[ -e "$root$GRIDVM_DATA/vms/a/disk.qcow2" ] || fail "a's disk is not in its jail"
for p in "$GRIDVM_DATA/vms/b" "$GRIDVM_DATA/gridvm.db" "$GRIDVM_DATA/templates" /etc/shadow /etc/passwd /root /home /tmp; do
	[ -e "$root$p" ] && fail "a's QEMU sees $p"
done
[ -e "$root/usr/bin/qemu-system-x86_64" ] || fail "a's jail has no QEMU binary"
# its /proc, as its uid sees it: its own process, not b's QEMU nor the agent
nsenter --target "$pa" --mount setpriv --reuid="$ua" --regid="$ga" --clear-groups \
	ls /proc >"$GRIDVM_DATA/procs"
grep -qx "$pa" "$GRIDVM_DATA/procs" || fail "a's QEMU does not see itself in its /proc"
for p in "$pb" "$(agent_pid)" 1; do
	grep -qx "$p" "$GRIDVM_DATA/procs" && fail "a's QEMU sees process $p"
done
echo "ok: a's QEMU sees its VM's directory, /usr and /dev, not b, the agent's files or /etc"

# the template's RAM: a sealed copy that a's uid cannot change
tmpl=$(vm_field a '.get("template")')
[ -n "$tmpl" ] && [ "$tmpl" != None ] || fail "a did not start from a template: $(vm_field a '.get("boot")')"
mfd=$(ls -l /proc/$pa/fd | awk '/memfd:gridvm-template/ && !f { print $9; f = 1 }')
[ -n "$mfd" ] || fail "a's QEMU holds no template memfd"
if as_a sh -c "printf X | dd of=/proc/$pa/fd/$mfd conv=notrunc bs=1 count=1" 2>"$GRIDVM_DATA/err"; then
	fail "a's uid wrote the template's RAM"
fi
grep -q "Operation not permitted" "$GRIDVM_DATA/err" || fail "unclear refusal: $(cat "$GRIDVM_DATA/err")"
as_a sh -c "echo x >>$GRIDVM_DATA/templates/$tmpl/mem" 2>/dev/null && fail "a's uid wrote the template file"
echo "ok: a's uid cannot write the template's RAM (sealed copy, root's file)"

# the VMs work: output, pause, checkpoint, stop
"$GV" vm pause a >/dev/null && "$GV" vm resume a >/dev/null
"$GV" checkpoint create b >/dev/null
"$GV" vm stop --force a >/dev/null
"$GV" vm stop --force b >/dev/null
expect_eq "a stopped" "$(vm_state a)" stopped
proc_gone "$pa" || fail "a's QEMU still runs"
echo "ok: pause, resume, checkpoint, stop"

# a host without the QEMU user: a clear error, no QEMU
agent=$(agent_pid)
kill "$agent"
wait_until 30 "the agent to stop" proc_gone "$agent"
if GRIDVM_QEMU_USER=gridvm-nosuchuser "$GV" vm start b 2>"$GRIDVM_DATA/err" >/dev/null; then
	fail "a VM started without its QEMU user"
fi
grep -q "QEMU runs as the unprivileged user gridvm-nosuchuser, which this host lacks: run scripts/setup.sh" \
	"$GRIDVM_DATA/err" || fail "unclear error: $(cat "$GRIDVM_DATA/err")"
pgrep -f "$GRIDVM_DATA/vms/b/" >/dev/null && fail "a QEMU of b runs"
expect_eq "b stays stopped" "$(vm_state b)" stopped
echo "ok: without its user: $(cat "$GRIDVM_DATA/err")"
