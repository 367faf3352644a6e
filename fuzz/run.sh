#!/bin/bash
# SPDX-License-Identifier: MIT
# run.sh - build the libFuzzer harnesses from the real sources and run each
# briefly (FUZZ_SECONDS, default 20). Exit status non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${FUZZ_OUT:-build-fuzz}
SECS=${FUZZ_SECONDS:-20}
mkdir -p "$OUT"
CFLAGS=(-std=c17 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude)
clang "${CFLAGS[@]}" -o "$OUT/fuzz-qmp" fuzz/fuzz-qmp.c lib/vmm/qmp.c lib/base/err.c -ljansson
clang "${CFLAGS[@]}" -o "$OUT/fuzz-jobout" fuzz/fuzz-jobout.c lib/vmm/jobout.c lib/base/util.c -lm
clang "${CFLAGS[@]}" -o "$OUT/fuzz-jobio" fuzz/fuzz-jobio.c lib/vmm/jobio.c lib/base/util.c lib/base/err.c \
	-ljansson -lm
clang "${CFLAGS[@]}" -o "$OUT/fuzz-blockidx" fuzz/fuzz-blockidx.c lib/blocks/blockidx.c lib/base/util.c \
	-lcrypto -lm -lpthread
XFER_SRC=(lib/xfer/xfer_dst.c lib/xfer/xfer_dst_blocks.c lib/xfer/xfer_proto.c lib/xfer/xfer_tls.c
	lib/blocks/blockidx.c lib/blocks/hostidx.c
	lib/base/util.c lib/base/err.c lib/base/user.c)
clang "${CFLAGS[@]}" -o "$OUT/fuzz-xfer" fuzz/fuzz-xfer.c "${XFER_SRC[@]}" \
	-ljansson -lssl -lcrypto -lzstd -llz4 -lz -lm -lpthread
clang "${CFLAGS[@]}" -o "$OUT/fuzz-expr" fuzz/fuzz-expr.c lib/sched/expr_parse.c lib/sched/expr_eval.c \
	lib/base/err.c -ljansson -lm
# libFuzzer writes what it finds (crash-*, leak-*, timeout-*, slow-unit-*)
# into the current directory unless told otherwise: into $OUT/artifacts/NAME/
# instead, never into the source tree. A finding worth keeping as a
# regression input goes into fuzz/seeds/NAME/ by hand.
for f in qmp jobout jobio blockidx xfer expr; do
	mkdir -p "$OUT/corpus-$f" "$OUT/artifacts/$f"
	cp fuzz/seeds/$f/* "$OUT/corpus-$f/" 2>/dev/null || true
	echo "fuzz-$f: ${SECS}s"
	"$OUT/fuzz-$f" -max_total_time="$SECS" -max_len=4096 -timeout=5 -seed=${FUZZ_SEED:-1} \
		-artifact_prefix="$OUT/artifacts/$f/" \
		-print_final_stats=0 "$OUT/corpus-$f" 2>&1 | tail -2
done
