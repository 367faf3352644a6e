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
# all eight are up at the same time
wait_for 120 sh -c "[ \$(pgrep -fc '$GRIDVM_DATA/vms/') -ge $N ]" || fail "never $N QEMUs at once"
echo "ok: $N VMs running at once"
wait
for i in $(seq 1 $N); do
	expect_eq "vm $i output" "$(cat "$GRIDVM_DATA/out.$i")" "vm $i"
	expect_eq "vm $i exit" "$(cat "$GRIDVM_DATA/rc.$i")" $((10 + i))
done
