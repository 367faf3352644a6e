#!/bin/bash
# SPDX-License-Identifier: MIT
# test.sh - the whole test suite: unit tests (also under ASan+UBSan) and
# end-to-end tests with real VMs under TCG. Needs scripts/setup.sh first.
# The last line is "N passed, N failed".
#
#   scripts/test.sh [--quick] [E2E_NAME...]   (--quick: unit tests only)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PASS=0
FAIL=0
FAILED=()
QUICK=0
[ "${1:-}" = "--quick" ] && { QUICK=1; shift; }

result() { # name rc
	if [ "$2" = 0 ]; then
		PASS=$((PASS + 1)); echo "PASS $1"
	else
		FAIL=$((FAIL + 1)); FAILED+=("$1"); echo "FAIL $1"
	fi
}

# every tests/unit/test-NAME.c must have its binary DIR/tests/test-NAME: a
# test that was not built (a missing dependency, a name left out of
# tests/meson.build) fails instead of passing by being absent; a binary
# whose source is gone is not run
# setup.sh installs etcd: the store's etcd tests (tests/unit/test-kv.c)
# must run here, never be skipped for want of it
export GV_TEST_ETCD=require

unit_tests() { # builddir label
	local dir=$1 label=$2 src t
	for src in tests/unit/test-*.c; do
		t=$dir/tests/$(basename "$src" .c)
		if ! [ -f "$t" ] || ! [ -x "$t" ]; then
			echo "    no executable $t for $src (not built: see tests/meson.build)"
			result "$label/$(basename "$t") (missing)" 1
			continue
		fi
		local log
		log=$(mktemp)
		timeout 300 "$t" >"$log" 2>&1
		local rc=$?
		if [ $rc != 0 ]; then
			# what failed first (a sanitizer's report can fill the
			# tail), then the end
			echo "    -- first failures:"
			grep -E -m 12 -A 3 '\[  (FAILED|ERROR) |ERROR: |runtime error|SUMMARY: ' "$log" |
				sed 's/^/    /'
			echo "    -- the end:"
			sed 's/^/    /' "$log" | tail -30
		fi
		rm -f "$log"
		result "$label/$(basename "$t")" $rc
	done
}

echo "== layers (tests/check-layers.sh)"
log=$(mktemp)
bash tests/check-layers.sh >"$log" 2>&1
rc=$?
sed 's/^/    /' "$log" | tail -40
rm -f "$log"
result layers $rc

echo "== build"
[ -d build ] || meson setup build --prefix=/usr/local -Dwerror=true >/dev/null
ninja -C build >/dev/null || { result build 1; echo "$PASS passed, $FAIL failed"; exit 1; }
unit_tests build unit

echo "== sanitizer build (ASan+UBSan)"
[ -d build-asan ] || meson setup build-asan -Db_sanitize=address,undefined \
	-Db_lundef=false -Dwerror=true >/dev/null
if ninja -C build-asan >/dev/null; then
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 unit_tests build-asan asan
else
	result asan-build 1
fi

echo "== fuzzers (libFuzzer, ${FUZZ_SECONDS:-20}s each)"
log=$(mktemp)
FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash fuzz/run.sh >"$log" 2>&1
rc=$?
[ $rc = 0 ] || tail -40 "$log" | sed 's/^/    /'
rm -f "$log"
result fuzz $rc

if [ $QUICK = 0 ]; then
	echo "== end-to-end tests (real VMs under TCG)"
	tests=("$@")
	[ ${#tests[@]} = 0 ] && tests=($(cd tests/e2e && ls test-*.sh | sed 's/\.sh$//'))
	for t in "${tests[@]}"; do
		start=$(date +%s)
		log=$(mktemp)
		ROOT=$ROOT timeout 1800 bash "tests/e2e/$t.sh" >"$log" 2>&1
		rc=$?
		[ $rc = 0 ] || sed 's/^/    /' "$log" | tail -40
		rm -f "$log"
		result "e2e/$t ($(( $(date +%s) - start ))s)" $rc
	done
fi

[ ${#FAILED[@]} = 0 ] || printf 'failed: %s\n' "${FAILED[@]}"
echo "$PASS passed, $FAIL failed"
[ $FAIL = 0 ]
