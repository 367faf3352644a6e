#!/bin/bash
# SPDX-License-Identifier: MIT
# check-layers.sh - the architecture of lib/, checked (docs/architecture.md).
#
#  1. lib/ holds only layer folders (and meson.build).
#  2. A file of layer L (lib/L/*, include/gridvm/L/*) includes public
#     headers only of L and the layers L may call (the table below), and
#     quoted headers only from its own folder.
#  3. Inside the node layer, modules are ordered bottom-up by their
#     internal headers: a file includes no internal header of a module
#     above its own.
#  4. The sched layer is pure: no I/O, no clock, no threads, no
#     environment, no randomness (so the simulator runs the same code).
#  5. No lib/ file is longer than 1000 lines, unless it says why on a line
#     "layer-check: long file: REASON".
#
# Prints each violation as FILE:LINE: message; exits 1 if there is one.
set -uo pipefail
cd "$(dirname "$0")/.."

declare -A MAY=(
	[base]="base"
	[sched]="base sched"
	[vmm]="base vmm"
	[blocks]="base blocks"
	[xfer]="base blocks xfer"
	[node]="base vmm blocks xfer node"
	[api]="base vmm blocks xfer node api"
	[grid]="base sched vmm blocks xfer api grid"
)
# node modules, bottom-up: the rank of a file and of an internal header
node_rank() {
	case "$1" in
	host.c | store.c | image.c | host_internal.h) echo 0 ;;
	vm.c | vmsave.c | vmspawn.c | monitor.c | dirtytrack.c | template.c | vm_internal.h | dirty_internal.h) echo 1 ;;
	checkpoint*.c | imagefetch.c | checkpoint_internal.h) echo 2 ;;
	migrate_*.c | migrate_internal.h) echo 3 ;;
	node.c) echo 4 ;;
	*) echo -1 ;;
	esac
}
MAX_LINES=1000
bad=0
say() { echo "$1"; bad=1; }

for f in lib/*; do
	n=$(basename "$f")
	[ "$n" = meson.build ] && continue
	[ -d "$f" ] && [ -n "${MAY[$n]:-}" ] && continue
	say "$f: lib/ holds only layer folders (${!MAY[*]}); what is this?"
done
for d in include/gridvm/*; do
	[ -n "${MAY[$(basename "$d")]:-}" ] || say "$d: public headers live in a layer folder"
done

check_file() { # file layer
	local f=$1 layer=$2 allowed=" ${MAY[$2]} " ln inc to
	while IFS=: read -r ln inc; do
		to=${inc#*<gridvm/}
		to=${to%%/*}
		if [ "$to" = "$inc" ] || [[ "$inc" != *"<gridvm/$to/"* ]]; then
			say "$f:$ln: $inc: public headers are named by layer (<gridvm/LAYER/x.h>)"
		elif [[ "$allowed" != *" $to "* ]]; then
			say "$f:$ln: layer $layer may not include $inc (it may use: ${MAY[$layer]})"
		fi
	done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*<gridvm/' "$f" |
		 sed 's/:[[:space:]]*#[[:space:]]*include[[:space:]]*/:/')
	while IFS=: read -r ln inc; do
		local h=${inc//\"/}
		if [[ "$h" == */* ]] || [ ! -f "$(dirname "$f")/$h" ]; then
			say "$f:$ln: \"$h\" is not a header of layer $layer's own folder"
		elif [ "$layer" = node ] && [[ "$f" == lib/* ]]; then
			local me them
			me=$(node_rank "$(basename "$f")")
			them=$(node_rank "$h")
			if [ "$me" -lt 0 ] || [ "$them" -lt 0 ]; then
				say "$f:$ln: node module order unknown for $(basename "$f") or $h (tests/check-layers.sh)"
			elif [ "$them" -gt "$me" ]; then
				say "$f:$ln: $(basename "$f") is below $h in the node layer and may not include it"
			fi
		fi
	done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
		 sed 's/:[[:space:]]*#[[:space:]]*include[[:space:]]*/:/')
	if [[ "$f" == lib/* ]]; then
		local lines
		lines=$(wc -l <"$f")
		if [ "$lines" -gt $MAX_LINES ] && ! grep -q 'layer-check: long file: ..*' "$f"; then
			say "$f: $lines lines (more than $MAX_LINES): split it, or say why with 'layer-check: long file: REASON'"
		fi
	fi
}

for layer in "${!MAY[@]}"; do
	for f in lib/$layer/*.c lib/$layer/*.h include/gridvm/$layer/*.h; do
		[ -f "$f" ] && check_file "$f" "$layer"
	done
done

# the pure scheduling layer: calls that would make a decision depend on
# something other than its inputs
IMPURE='\b(fopen|fread|fwrite|fprintf|printf|puts|open|read|write|close|socket|connect|time|clock|clock_gettime|gettimeofday|sleep|usleep|nanosleep|getenv|rand|random|srand|pthread_[a-z_]+|gv_now_ms|gv_now_s|gv_run|system|popen)[[:space:]]*\('
for f in lib/sched/*.c lib/sched/*.h include/gridvm/sched/*.h; do
	[ -f "$f" ] || continue
	# strip comments and string literals before looking
	hits=$(sed -e 's://.*$::' -e 's:"[^"]*":"":g' "$f" | awk '
		{ line = $0
		  while (1) {
			if (inc) { e = index(line, "*/"); if (!e) { line = ""; break } line = substr(line, e + 2); inc = 0 }
			s = index(line, "/*"); if (!s) break
			rest = substr(line, s + 2); e = index(rest, "*/")
			if (e) line = substr(line, 1, s - 1) " " substr(rest, e + 2)
			else { line = substr(line, 1, s - 1); inc = 1; break }
		  }
		  print NR ":" line }' | grep -E "$IMPURE")
	while IFS=: read -r ln code; do
		[ -n "$ln" ] && say "$f:$ln: the sched layer is pure (no I/O, clock, threads, environment): $code"
	done <<<"$hits"
done

if [ $bad = 0 ]; then
	echo "layers: ok ($(ls -d lib/*/ | wc -l) layers, $(find lib -name '*.[ch]' | wc -l) files)"
fi
exit $bad
