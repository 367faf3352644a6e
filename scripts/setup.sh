#!/bin/bash
# SPDX-License-Identifier: MIT
# setup.sh - everything gridvm needs on a fresh Debian 12 machine (root):
# installs the Debian packages, creates QEMU's unprivileged user, builds and
# installs gridvm (and its systemd units, not enabled), prepares the
# default guest (Debian cloud kernel + our initramfs + a busybox image) and
# runs the demo: a VM boots, runs a job, its output and exit code come back.
#
#   scripts/setup.sh [--no-demo]
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO=1
[ "${1:-}" = "--no-demo" ] && DEMO=0
DATADIR=${GRIDVM_DATA:-/var/lib/gridvm}

PKGS=(build-essential meson ninja-build pkg-config
      libjansson-dev libsqlite3-dev libssl-dev libcmocka-dev libmicrohttpd-dev
      libcurl4-openssl-dev libzstd-dev liblz4-dev zlib1g-dev libnbd-dev
      qemu-system-x86 qemu-utils busybox-static debootstrap e2fsprogs cpio kmod
      iproute2 procps python3 grub-pc-bin grub-common xorriso mtools prometheus
      clang libclang-rt-14-dev etcd-server etcd-client curl jq openssl)

if [ "$(id -u)" != 0 ]; then
	echo "setup.sh: run as root (it installs packages and prepares $DATADIR)" >&2
	exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# QEMU's users (docs/security.md): gridvm-qemu, a system user without a
# login (it builds templates), and 65536 subordinate uids and gids (each
# VM's QEMU runs as one of them), from the first free block past every
# range /etc/subuid and /etc/subgid already hand out. Idempotent.
QEMU_USER=gridvm-qemu
if ! getent passwd "$QEMU_USER" >/dev/null; then
	echo "== creating the system user $QEMU_USER (QEMU runs unprivileged)"
	useradd --system --user-group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin --comment "gridvm QEMU (unprivileged)" "$QEMU_USER"
fi
touch /etc/subuid /etc/subgid
if ! grep -q "^$QEMU_USER:" /etc/subuid || ! grep -q "^$QEMU_USER:" /etc/subgid; then
	first=$(awk -F: 'BEGIN { m = 100000 } NF == 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' \
		/etc/subuid /etc/subgid)
	first=$(( (first + 65535) / 65536 * 65536 ))
	echo "== giving $QEMU_USER the ids $first-$((first + 65535)) for the VMs' QEMUs"
	grep -q "^$QEMU_USER:" /etc/subuid || usermod --add-subuids "$first-$((first + 65535))" "$QEMU_USER"
	grep -q "^$QEMU_USER:" /etc/subgid || usermod --add-subgids "$first-$((first + 65535))" "$QEMU_USER"
fi

echo "== building"
[ -d build ] || meson setup build --prefix=/usr/local -Dwerror=true
ninja -C build
ninja -C build install >/dev/null
# the units of gridvmd and gridvmctld (dist/systemd), installed with the
# rest into /usr/local/lib/systemd/system; enabled by the administrator
# (docs/security.md, "As a service"). A machine without systemd running
# (a container, CI) just has the files.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	systemctl daemon-reload || echo "setup.sh: systemctl daemon-reload failed (ignored)" >&2
fi

echo "== preparing the default guest in $DATADIR"
bash scripts/prepare-guest.sh "$DATADIR" build/guest/gridvm-init

if [ $DEMO = 1 ]; then
	echo "== demo: gridvm run -- sh -c 'echo hello from \$(uname -r); exit 3'"
	set +e
	/usr/local/bin/gridvm run -- sh -c 'echo hello from $(uname -r) in a gridvm VM; exit 3'
	rc=$?
	set -e
	echo "== the job exited with $rc (expected 3)"
	[ $rc = 3 ] || exit 1
fi
