# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# hostvm.sh - checks on a VM across the namespace hosts of hosts.sh, for
# tests whose job counts 1, 2, 3... one number per line (or "MISSING i n"
# when a file it wrote is gone). Source after lib.sh and hosts.sh.
#   state_on I VM        the VM's state on host I, or "absent"
#   last_on I VM         the last line of its job output there (0 if none)
#   reaches_on I VM N    wait (90 s) until it has counted to N there
#   check_log I VM       its output is exactly 1..N; prints N
#   only_on I VM         running on I, absent on the other of h1/h2, no QEMU
#                        of it left on that other host

state_on() { hosts_gv "$1" vm show "$2" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])' 2>/dev/null || echo absent; }
last_on() { local n; n=$(hosts_gv "$1" vm logs "$2" 2>/dev/null | tail -1); echo "${n:-0}"; }
reaches_on() { # HOST VM N
	local end=$((SECONDS + 90))
	while [ $SECONDS -lt $end ]; do
		local n; n=$(last_on "$1" "$2")
		case $n in MISSING*) fail "the job lost files: $n" ;; esac
		[ "$n" -ge "$3" ] 2>/dev/null && return 0
		sleep 0.3
	done
	# what a reader of the failure needs: where the VM is, what it printed
	echo "  h$1: $2 is $(state_on "$1" "$2"), job at '$(last_on "$1" "$2")' (wanted $3); console:" >&2
	tail -5 "${HOST_DATA[$1]}/vms/$2/console.log" 2>/dev/null | sed 's/^/    /' >&2
	return 1
}
check_log() { # HOST VM: output is 1..N exactly
	hosts_gv "$1" vm logs "$2" | python3 -c '
import sys
lines = sys.stdin.read().split()
assert not any(l.startswith("MISSING") for l in lines), lines
nums = [int(l) for l in lines]
assert nums == list(range(1, len(nums) + 1)), nums
print(len(nums))'
}
only_on() { # HOST VM: running there, absent on the other agent
	local other=$(( $1 == 1 ? 2 : 1 ))
	expect_eq "$2 runs on h$1" "$(state_on "$1" "$2")" running
	expect_eq "$2 is gone from h$other" "$(state_on "$other" "$2")" absent
	pgrep -f "${HOST_DATA[$other]}/vms/$2/" >/dev/null && fail "a QEMU of $2 is left on h$other"
	return 0
}

