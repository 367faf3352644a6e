#!/bin/bash
# Instant start (lib/node/template.c): a VM started from a template (a
# guest booted and saved while its init waits for a job) gives its job's
# output and exit code as a cold boot does; two of them differ where they
# must (random numbers, hostname) and have the host's time; a stale
# template (the guest changed) is rebuilt, a corrupt one is deleted and the
# VM boots cold, saying why.
source "$(dirname "$0")/lib.sh"
gv_setup
# a guest of our own: the stale check changes its initramfs
rm "$GRIDVM_DATA/guest"
cp -r "$SYSDATA/guest" "$GRIDVM_DATA/guest"
grep -qx templates "$GRIDVM_DATA/guest/features" 2>/dev/null ||
	fail "the guest in $SYSDATA has no template support (run scripts/setup.sh)"
unset GRIDVM_START

# tmpl_field NAME KEY: KEY of template NAME in 'template list --json' ("" if none)
tmpl_field() {
	"$GV" template list --json | python3 -c "import json,sys
t=[t for t in json.load(sys.stdin) if t['name']=='$1']
print(t[0]['$2'] if t else '')"
}

name=$("$GV" template build --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
expect_eq "template name" "${name#*-}" "1c-256m"
expect_eq "template listed ready" "$(tmpl_field "$name" state)" ready
created=$(tmpl_field "$name" created)
mem=$GRIDVM_DATA/templates/$name/mem

# the same output, stderr and exit code, from a template and cold
job='echo out $(uname -r); echo err >&2; cat /etc/hostname; exit 7'
for mode in cold template; do
	"$GV" run --start $mode --name same --keep -- sh -c "$job" >"$GRIDVM_DATA/out.$mode" \
		2>"$GRIDVM_DATA/err.$mode" && rc=0 || rc=$?
	expect_eq "exit code ($mode)" "$rc" 7
	boot=$(vm_field same '["boot"]')
	case $mode in
	cold) expect_eq "booted cold" "$boot" "cold boot (asked for)" ;;
	template) expect_eq "started from the template" "$boot" "template $name" ;;
	esac
	"$GV" vm delete same >/dev/null
done
expect_eq "same stdout" "$(cat "$GRIDVM_DATA/out.template")" "$(cat "$GRIDVM_DATA/out.cold")"
expect_eq "same stderr" "$(cat "$GRIDVM_DATA/err.template")" "err"

# two instances of one template: their own random numbers, hostname, and
# the host's time (the template's clock stopped when it was saved, at
# least a cold boot ago: a stale clock would be behind by that)
t0=$(date +%s)
[ $((t0 - created)) -ge 2 ] || fail "the template is too young for the clock check"
probe='head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"; echo; hostname; date +%s'
a=$("$GV" run --start template --name one -- sh -c "$probe")
b=$("$GV" run --start template --name two -- sh -c "$probe")
t1=$(date +%s)
ra=$(sed -n 1p <<<"$a") rb=$(sed -n 1p <<<"$b")
[ ${#ra} = 32 ] && [ ${#rb} = 32 ] || fail "random bytes: got '$ra' and '$rb'"
[ "$ra" != "$rb" ] || fail "two instances read the same random bytes $ra"
echo "ok: different random bytes ($ra, $rb)"
expect_eq "hostnames" "$(sed -n 2p <<<"$a") $(sed -n 2p <<<"$b")" "one two"
for t in "$(sed -n 3p <<<"$a")" "$(sed -n 3p <<<"$b")"; do
	[ "$t" -ge $((t0 - 1)) ] && [ "$t" -le $((t1 + 1)) ] ||
		fail "guest time $t is not the host's ($t0..$t1; template saved at $created)"
done
echo "ok: guest clocks are the host's ($t0..$t1)"

# a stale template (the guest's initramfs changed) is rebuilt, not used
ino=$(stat -c %i "$mem")
touch "$GRIDVM_DATA/guest/initrd.img"
expect_eq "template stale" "$(tmpl_field "$name" state)" stale
out=$("$GV" run --name stale --keep -- sh -c 'echo fresh; exit 4') && rc=0 || rc=$?
expect_eq "run after the guest changed" "$rc:$out" "4:fresh"
expect_eq "it started from the template" "$(vm_field stale '["boot"]')" "template $name"
"$GV" vm delete stale >/dev/null
[ "$(stat -c %i "$mem")" != "$ino" ] || fail "the stale template was used, not rebuilt"
expect_eq "template ready again" "$(tmpl_field "$name" state)" ready
echo "ok: stale template rebuilt"

# a corrupt template: a clear message, a cold boot, the template deleted
head -c 4096 "$GRIDVM_DATA/templates/$name/state" >"$GRIDVM_DATA/state.cut"
cp "$GRIDVM_DATA/state.cut" "$GRIDVM_DATA/templates/$name/state"
out=$("$GV" run -- sh -c 'echo still runs; exit 5' 2>"$GRIDVM_DATA/err") && rc=0 || rc=$?
expect_eq "run with a corrupt template" "$rc:$out" "5:still runs"
grep -q "warning: cold boot: template $name is corrupt (.*); it was deleted" "$GRIDVM_DATA/err" ||
	fail "no clear message about the corrupt template: $(cat "$GRIDVM_DATA/err")"
echo "ok: $(cat "$GRIDVM_DATA/err")"
expect_eq "corrupt template deleted" "$(tmpl_field "$name" state)" ""
out=$("$GV" run --name again --keep -- sh -c 'echo again') && rc=0 || rc=$?
expect_eq "next run" "$rc:$out" "0:again"
expect_eq "from a new template" "$(vm_field again '["boot"]')" "template $name"
"$GV" vm delete again >/dev/null

# --cold, and VMs no template can serve, boot cold
expect_eq "--cold" "$("$GV" run --cold -- echo cold)" cold
"$GV" template delete "$name"
expect_eq "deleted" "$("$GV" template list --json)" "[]"
"$GV" template delete "$name" 2>/dev/null && fail "deleting a missing template succeeded"
echo "ok: template delete"
