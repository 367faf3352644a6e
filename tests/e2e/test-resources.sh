#!/bin/bash
# CPU weight and cap through cgroups, disk throttling through QEMU; shown
# by vm show.
source "$(dirname "$0")/lib.sh"
gv_setup

"$GV" vm create res --cpus 2 --memory 256M --cpu-weight 200 --cpu-cap 50 \
	--disk-iops 200 --disk-bps 10M --job 'dd if=/bin/busybox of=/dev/null bs=4k 2>/dev/null; echo read-ok; sleep 60' >/dev/null
"$GV" vm start res >/dev/null
show=$("$GV" vm show res --json)
pid=$(vm_field res '["pid"]')
cg=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["cgroup"]["version"])' <<<"$show")
if [ "$cg" = v1 ]; then
	expect_eq "cpu.shares" "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["cgroup"]["cpu.shares"])' <<<"$show")" 2048
	expect_eq "cpu.cfs_quota_us" "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["cgroup"]["cpu.cfs_quota_us"])' <<<"$show")" 50000
	grep -qE "gridvm/[0-9a-f]{8}-res" /proc/$pid/cgroup || fail "QEMU is not in its cgroup"
else
	expect_eq "cpu.weight" "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["cgroup"]["cpu.weight"])' <<<"$show")" 200
	expect_eq "cpu.max" "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["cgroup"]["cpu.max"])' <<<"$show")" "50000 100000"
fi
tr '\0' ' ' </proc/$pid/cmdline | grep -q "throttle-group,id=thr0,x-iops-total=200,x-bps-total=10485760" \
	|| fail "no disk throttling on the QEMU command line"
echo "ok: disk throttle group"
wait_for 60 sh -c "'$GV' vm logs res | grep -q read-ok" || fail "throttled disk unreadable"
echo "ok: throttled disk readable"
"$GV" vm delete --force res >/dev/null
