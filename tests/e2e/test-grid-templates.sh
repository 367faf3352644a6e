#!/bin/bash
# SPDX-License-Identifier: MIT
# test-grid-templates.sh - the grid keeps templates warm: the controller
# names the job sizes in demand; every agent builds a template of a size it
# lacks before a job of that size reaches it, so the job starts from the
# template instead of booting (real VMs under TCG, namespace hosts).
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$ROOT/tests/e2e/lib.sh"
source "$ROOT/tests/e2e/hosts.sh"
source "$ROOT/tests/e2e/grid.sh"

SYS=${GRIDVM_SYSDATA:-/var/lib/gridvm}
if ! grep -qw templates "$SYS/guest/features" 2>/dev/null; then
	fail "the guest in $SYS cannot start from templates (no 'templates' in guest/features: run scripts/setup.sh)"
fi
same() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', want '$2'"; }
hosts_up_count() {
	[ "$(G hosts --json | python3 -c 'import json,sys; print(sum(h["state"] == "up" for h in json.load(sys.stdin)))')" = "$1" ]
}
# host I holds a ready template of VCPUS and MIB
template_ready() {
	hosts_gv "$1" template list --json | python3 -c '
import json, sys
c, m = int(sys.argv[1]), int(sys.argv[2])
sys.exit(0 if any(t["vcpus"] == c and t["memory_mib"] == m and t["state"] == "ready"
                  for t in json.load(sys.stdin)) else 1)' "$2" "$3"
}
vm_boot() { hosts_gv "$1" vm show "$2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("boot", ""))'; }

hosts_up 2
grid_ctl_start
for i in 1 2; do grid_join "$i" --grid-cpus 2 --grid-memory 1G; done
wait_until 60 "two hosts up" hosts_up_count 2
for i in 1 2; do
	! template_ready "$i" 1 384 || fail "h$i holds a 384 MiB template before any job asked for one"
done

# a job of a new size waits (no host has its label): the size is in demand
job=$(G submit --memory 384M --requires '"warm" in labels' -- \
	sh -c 'i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo $i; sleep 1; done; echo from a template')
for i in 1 2; do
	wait_until 300 "h$i to keep a 1-cpu 384 MiB template warm" template_ready "$i" 1 384
	grep -q "template tcg-1c-384m ready for the grid's jobs" "${HOST_DATA[i]}/gridvmd.log" ||
		fail "h$i's log does not say why it built the template"
done
echo "ok: both hosts built the template of the size in demand before any job of it ran"

# the job reaches a host: it starts from the template, not from a boot
G host label h2 warm=1
grid_wait_state 300 "$job" running
same "$(grid_field "$job" 'j["host"]')" h2
boot=$(vm_boot 2 "job-$job")
echo "the job's VM: $boot"
case $boot in template*) ;; *) fail "the job's VM did not start from a template: $boot" ;; esac
grid_wait_state 300 "$job" completed
same "$(G job logs "$job" | tail -1)" "from a template"
same "$(G job logs "$job" | head -20 | tr '\n' ' ')" "$(seq 1 20 | tr '\n' ' ')" "the job's count"
echo "ok: the job started from the warm template ($boot) and ran to its end"
