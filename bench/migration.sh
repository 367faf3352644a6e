#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/migration.sh - live migration against QEMU's own storage migration,
# the guest's throughput across a migration, and incremental checkpoints.
#
# How to run (root, Debian 12, the tree built in build/, the guest prepared
# by scripts/setup.sh):
#
#   bench/migration.sh                 # everything; writes docs/bench-migration.md
#                                      # and docs/bench-migration.svg
#   bench/migration.sh --report-only   # re-write the doc from the last results
#   options (passed to bench/migration.py): --rates 100mbit,20mbit
#     --methods gridvm-live,qemu-blk,qemu-blk-inc,qemu-shared --memory 384M
#     --checkpoints 5 --ck-interval 4 --results DIR --doc FILE
#
# The base image is bookworm with python3 from the end-to-end tests' cache
# (/var/tmp/gridvm-test-images/bookworm.img, built there by
# tests/e2e/test-image.sh); if it is missing it is built here with
# `gridvm image build` (debootstrap, a few minutes). What each run does and
# measures: see bench/migration.py. Raw results: /var/tmp/gridvm-bench-migration.
# How long: about 15 minutes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export ROOT
for a in "$@"; do
	if [ "$a" = --report-only ]; then exec python3 "$ROOT/bench/migration.py" "$@"; fi
done
# shellcheck source=../tests/e2e/hosts.sh
source "$ROOT/tests/e2e/hosts.sh"
export GV
CACHE=${GRIDVM_TEST_IMAGES:-/var/tmp/gridvm-test-images}
IMG=$CACHE/bookworm.img

if [ ! -f "$IMG" ]; then
	echo "building the bookworm image (debootstrap, a few minutes)" >&2
	d=$(mktemp -d /var/tmp/gvbench-build.XXXXXX)
	mkdir -p "$d/images" "$CACHE"
	ln -s "${GRIDVM_SYSDATA:-/var/lib/gridvm}/guest" "$d/guest"
	GRIDVM_DATA=$d "$GVD" --daemon --socket "$d/gridvmd.sock" >>"$d/gridvmd.log" 2>&1
	for _ in $(seq 100); do [ -S "$d/gridvmd.sock" ] && break; sleep 0.1; done
	GRIDVM_DATA=$d GRIDVM_SOCKET=$d/gridvmd.sock GRIDVM_NO_AUTOSTART=1 \
		"$GV" image build bookworm --suite bookworm --packages python3 >&2
	cp --sparse=always "$d/images/bookworm.img" "$IMG.tmp"
	mv "$IMG.tmp" "$IMG"
	pkill -f -- "--socket $d/gridvmd.sock" || true
	sleep 0.5
	rm -rf --one-file-system "$d"
fi

hosts_up 2
hosts_agent_start 1
hosts_agent_start 2
for i in 1 2; do
	hosts_gv "$i" image import bookworm "$IMG" >/dev/null
	hosts_gv "$i" image index bookworm >/dev/null
done
export HOSTS_ID HOSTS_DIR HOSTS_IPS HOSTS_N
python3 "$ROOT/bench/migration.py" "$@"
