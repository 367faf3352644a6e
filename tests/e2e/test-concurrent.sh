#!/bin/bash
# Four VMs at once, each with its own output and exit code.
source "$(dirname "$0")/lib.sh"
gv_setup
"$GV" host info >/dev/null   # start the agent once

for i in 1 2 3 4; do
	(rc=0; "$GV" run --memory 192M -- sh -c "sleep 2; echo vm $i; exit $((10 + i))" \
		>"$GRIDVM_DATA/out.$i" 2>&1 || rc=$?; echo $rc >"$GRIDVM_DATA/rc.$i") &
done
wait
for i in 1 2 3 4; do
	expect_eq "vm $i output" "$(cat "$GRIDVM_DATA/out.$i")" "vm $i"
	expect_eq "vm $i exit" "$(cat "$GRIDVM_DATA/rc.$i")" $((10 + i))
done
