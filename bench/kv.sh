#!/bin/bash
# SPDX-License-Identifier: MIT
# kv.sh - the controller's store per backend, side by side (kv_bench.c):
# SQLite on disk, SQLite on tmpfs, and a one-member etcd (Debian's
# etcd-server) started here on loopback with its data on disk, then on
# tmpfs. Prints the machine, then one table.
#
#   bench/kv.sh [N]      (BUILD=dir of a build, default build/)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BUILD:-$ROOT/build}/bench/gridvm-kv-bench
N=${1:-1000}
[ -x "$BIN" ] || { echo "kv.sh: no $BIN (build first)" >&2; exit 1; }
command -v etcd >/dev/null || { echo "kv.sh: no etcd (apt-get install etcd-server)" >&2; exit 1; }
DISK=$(mktemp -d /var/tmp/gv-kvbench.XXXXXX)
SHM=$(mktemp -d /dev/shm/gv-kvbench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$DISK" "$SHM"
}
trap cleanup EXIT

etcd_on() { # DIR PORT: an etcd with its data in DIR, clients on PORT
	etcd --name b --data-dir "$1/etcd" --listen-client-urls "http://127.0.0.1:$2" \
		--advertise-client-urls "http://127.0.0.1:$2" \
		--listen-peer-urls "http://127.0.0.1:$(($2 + 1))" \
		--initial-advertise-peer-urls "http://127.0.0.1:$(($2 + 1))" \
		--initial-cluster "b=http://127.0.0.1:$(($2 + 1))" --logger zap \
		--log-outputs stderr >"$1/etcd.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 1 100); do
		etcdctl --endpoints "http://127.0.0.1:$2" endpoint health >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "kv.sh: etcd on $1 did not start" >&2
	exit 1
}
etcd_on "$DISK" 23979
etcd_on "$SHM" 23989

echo "machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
echo "etcd: $(etcd --version | head -1), one member, default timings; N=$N"
"$BIN" -n "$N" "sqlite:$DISK/kv.db" "sqlite:$SHM/kv.db" \
	"etcd://127.0.0.1:23979" "etcd://127.0.0.1:23989"
