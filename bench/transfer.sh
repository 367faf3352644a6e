#!/bin/bash
# SPDX-License-Identifier: MIT
# images phase only (work in progress)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GV=$ROOT/build/programs/gridvm
GVD=$ROOT/build/programs/gridvmd
SYSDATA=${GRIDVM_SYSDATA:-/var/lib/gridvm}
CACHE=${GRIDVM_BENCH_IMAGES:-/var/tmp/gridvm-bench-images}
PLUS_PACKAGES=${PLUS_PACKAGES:-python3,perl}
IMAGES=(bullseye bookworm trixie bookworm-plus)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { echo "FAILED: $*" >&2; exit 1; }

# wait_bin PATH: another engineer may be rebuilding; retry up to 2 minutes
wait_bin() {
	local i
	for i in $(seq 120); do [ -x "$1" ] && return 0; sleep 1; done
	fail "no binary $1 (is the tree built?)"
}

# pids_of_agent SOCK: gridvmd processes started with --socket SOCK
pids_of_agent() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = gridvmd ] || continue
		tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "--socket $1 " && echo "${p#/proc/}"
	done
	return 0
}

build_images() {
	local missing=() n suite pk d pid pids=() rc=0 t0
	mkdir -p "$CACHE"
	for n in "${IMAGES[@]}"; do [ -f "$CACHE/$n.img" ] || missing+=("$n"); done
	[ ${#missing[@]} -gt 0 ] || { log "images: all cached in $CACHE"; return 0; }
	wait_bin "$GV"; wait_bin "$GVD"
	d=$(mktemp -d /var/tmp/gvbench-build.XXXXXX)
	mkdir -p "$d/images"
	ln -s "$SYSDATA/guest" "$d/guest"
	GRIDVM_DATA=$d "$GVD" --daemon --socket "$d/gridvmd.sock" >>"$d/gridvmd.log" 2>&1 ||
		fail "private agent did not start: $(tail -5 "$d/gridvmd.log")"
	for _ in $(seq 100); do [ -S "$d/gridvmd.sock" ] && break; sleep 0.1; done
	t0=$SECONDS
	log "images: building ${missing[*]} (debootstrap, in parallel; minutes)"
	for n in "${missing[@]}"; do
		suite=${n%-plus}; pk=()
		[ "$n" = "$suite" ] || pk=(--packages "$PLUS_PACKAGES")
		GRIDVM_DATA=$d GRIDVM_SOCKET=$d/gridvmd.sock GRIDVM_NO_AUTOSTART=1 \
			"$GV" image build "$n" --suite "$suite" "${pk[@]}" >"$d/build-$n.log" 2>&1 &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
	for n in "${missing[@]}"; do
		if [ -f "$d/images/$n.img" ]; then
			cp --sparse=always "$d/images/$n.img" "$CACHE/.$n.img.tmp"
			mv "$CACHE/.$n.img.tmp" "$CACHE/$n.img"
		else
			echo "--- build log of $n:" >&2; tail -20 "$d/build-$n.log" >&2
		fi
	done
	for pid in $(pids_of_agent "$d/gridvmd.sock"); do kill "$pid"; done
	sleep 0.5
	rm -rf --one-file-system "$d"
	[ $rc = 0 ] || fail "image build failed"
	log "images: built in $((SECONDS - t0)) s"
	echo $((SECONDS - t0)) >"$CACHE/.build-seconds"
}

build_images
