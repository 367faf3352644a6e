#!/bin/bash
# Eight VMs at once on one host, each with its own output and exit code.
source "$(dirname "$0")/lib.sh"
gv_setup
"$GV" host info >/dev/null   # start the agent once

N=8
for i in $(seq 1 $N); do
	(rc=0; "$GV" run --memory 128M -- sh -c "sleep 6; echo vm $i; exit $((10 + i))" \
		>"$GRIDVM_DATA/out.$i" 2>&1 || rc=$?; echo $rc >"$GRIDVM_DATA/rc.$i") &
done
# all eight are up at the same time. Counted by the VMs' pid files: a
# qemu.pid whose process is alive and is that VM's QEMU (its command line
# names the VM's directory; a recycled pid does not). Not by pgrep -f in a
# sh -c, which also counts the shell whose own command line holds the pattern.
# (bash builtins only: it is polled while eight guests boot on few cores)
qemus_alive() {
	local f pid stat args n=0
	for f in "$GRIDVM_DATA"/vms/*/qemu.pid; do
		pid="" stat=""
		{ read -r pid <"$f"; } 2>/dev/null
		[[ $pid =~ ^[0-9]+$ ]] || continue
		{ read -r stat <"/proc/$pid/stat"; } 2>/dev/null
		[ -n "$stat" ] || continue
		stat=${stat##*) }
		[[ ${stat:0:1} != [ZX] ]] || continue    # a zombie is no QEMU
		{ mapfile -d '' -t args <"/proc/$pid/cmdline"; } 2>/dev/null || continue
		[[ " ${args[*]-} " == *"${f%/qemu.pid}/"* ]] || continue
		n=$((n + 1))
	done
	echo $n
}
most=0
all_up() {
	local n; n=$(qemus_alive)
	[ "$n" -le "$most" ] || most=$n
	[ "$n" -ge $N ]
}
wait_for 300 all_up || fail "never $N QEMUs at once (at most $most)"
echo "ok: $N VMs running at once ($most live QEMUs by their pid files)"
wait
for i in $(seq 1 $N); do
	expect_eq "vm $i output" "$(cat "$GRIDVM_DATA/out.$i")" "vm $i"
	expect_eq "vm $i exit" "$(cat "$GRIDVM_DATA/rc.$i")" $((10 + i))
done
