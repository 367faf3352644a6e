#!/bin/bash
# A VM with inputs and outputs moves between hosts while its job runs:
# cold (h1 -> h2), live (h2 -> h1), restored from a checkpoint on another
# host (h1 -> h2). Its input disk goes with it (the job reads its inputs
# again at the end, byte for byte), and when the job ends on the last host
# (stopped there: it writes its outputs on SIGTERM) its outputs are there,
# exact.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/hosts.sh"
source "$(dirname "$0")/hostvm.sh"
hosts_up 2
hosts_agent_start 1
hosts_agent_start 2
W=$HOSTS_DIR/io
mkdir -p "$W/in/tree/sub"
head -c 200000 /dev/urandom >"$W/in/data.bin"
printf 'alpha\nbeta\n' >"$W/in/tree/a.txt"
printf 'leaf\n' >"$W/in/tree/sub/b.txt"
# count until stopped (not to a number: the guest's clock is no timer for
# the host), then write the outputs from the inputs as they are then
JOB='trap "mkdir -p res; cp data.bin res/; cp -r tree res/; sha256sum data.bin > sum.txt; exit 5" TERM
i=0; while :; do i=$((i+1)); echo $i; sleep 0.3; done'
hosts_gv 1 vm create m --memory 256M --input "$W/in/data.bin" --input "$W/in/tree" \
	--output sum.txt --output res --output not-there --job "$JOB" >/dev/null
hosts_gv 1 vm start m >/dev/null
reaches_on 1 m 3 || fail "the job does not count"

hosts_gv 1 migrate m --to "${HOST_IP[2]}" --cold >/dev/null || fail "cold migration failed"
only_on 2 m
[ -f "${HOST_DATA[2]}/vms/m/input.tar" ] || fail "no input disk on h2 after the cold migration"
echo "ok: the input disk went with the VM (cold)"
at=$(last_on 2 m)
reaches_on 2 m $((at + 3)) || fail "no progress after the cold migration"

hosts_gv 2 migrate m --to "${HOST_IP[1]}" >/dev/null || fail "live migration failed"
only_on 1 m
at=$(last_on 1 m)
reaches_on 1 m $((at + 3)) || fail "no progress after the live migration"
echo "ok: live migration of a VM with an input and an output disk"

hosts_gv 1 checkpoint create m >/dev/null
at=$(last_on 1 m)
reaches_on 1 m $((at + 2)) || fail "no progress after the checkpoint"
hosts_gv 1 checkpoint restore m --on "${HOST_IP[2]}" >/dev/null || fail "restore on h2 failed"
only_on 2 m
echo "ok: restored from a checkpoint on h2"

at=$(last_on 2 m)
reaches_on 2 m $((at + 2)) || fail "no progress after the restore on h2"
hosts_gv 2 vm stop m --timeout 90s >/dev/null || fail "cannot stop m on h2"
expect_eq "m stopped on h2" "$(state_on 2 m)" stopped
expect_eq "exit code on h2" "$(hosts_gv 2 vm show m --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["exit_code"])')" 5
hosts_gv 2 vm output m "$W/out" 2>"$W/err" || fail "vm output failed: $(cat "$W/err")"
expect_eq "the missing output named" "$(cat "$W/err")" "gridvm: output not-there: not found in the guest"
expect_eq "sum.txt" "$(cat "$W/out/sum.txt")" "$(cd "$W/in" && sha256sum data.bin)"
cmp "$W/in/data.bin" "$W/out/res/data.bin" || fail "res/data.bin differs"
diff -r "$W/in/tree" "$W/out/res/tree" || fail "res/tree differs"
echo "ok: the outputs, exact, on the last host"
