#!/bin/bash
# SPDX-License-Identifier: MIT
#
# prepare-guest.sh: build the gridvm guest artefacts from Debian packages.
#
# Usage: prepare-guest.sh DATADIR INIT_BINARY
#
# Produces:
#   DATADIR/guest/vmlinuz         kernel of the package behind linux-image-cloud-amd64
#   DATADIR/guest/kernel-version  its version, e.g. 6.1.0-56-cloud-amd64
#   DATADIR/guest/initrd.img      gzip'd newc cpio: /init (INIT_BINARY), busybox,
#                                 the virtio/fw_cfg/ACPI button/evdev modules in
#                                 /lib/modules (flat)
#   DATADIR/guest/build-id        kernel version + sha256 of init + recipe version
#   DATADIR/guest/features        what this guest's init can do, one a line
#                                 ("templates": instant start, lib/node/template.c)
#   DATADIR/images/default.img    64 MiB raw ext4 job root with busybox
#
# The kernel package is fetched with `apt-get download` and unpacked with
# `dpkg -x`; nothing is installed.  Run `apt-get update` once beforehand.
# Idempotent: nothing is done when the outputs exist and the build id
# matches.  default.img is only ever built when missing, because qcow2
# overlays of existing VMs use it as their backing file.  Every output is
# written to a temporary name beside it and renamed into place.
set -euo pipefail

RECIPE=3 # bump when the initrd layout changes (2: button, evdev; 3: features)
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev
	virtio_pci virtio_blk virtio_console qemu_fw_cfg button evdev)
BUSYBOX=/bin/busybox
IMAGE_SIZE=64M
export PATH="$PATH:/usr/sbin:/sbin"

die() {
	echo "prepare-guest: $*" >&2
	exit 1
}

[ $# -eq 2 ] || die "usage: prepare-guest.sh DATADIR INIT_BINARY"
datadir=$1
init_bin=$2
[ -f "$init_bin" ] || die "no init binary at $init_bin"
[ -x "$BUSYBOX" ] || die "no $BUSYBOX (apt-get install busybox-static)"
for tool in apt-cache apt-get dpkg cpio gzip mkfs.ext4 sha256sum; do
	command -v "$tool" >/dev/null || die "missing tool: $tool"
done

pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }') || true
[ -n "$pkg" ] || die "cannot resolve linux-image-cloud-amd64 (run apt-get update?)"
kver=${pkg#linux-image-}
build_id="kernel=$kver init=$(sha256sum <"$init_bin" | cut -d' ' -f1) recipe=$RECIPE"

guest=$datadir/guest
images=$datadir/images
mkdir -p "$guest" "$images"

tmp=$(mktemp -d)
tmp_outputs=()
cleanup() {
	rm -rf "$tmp"
	for f in "${tmp_outputs[@]}"; do rm -f "$f"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# install_output SRC DEST: copy SRC beside DEST, then rename it into place.
install_output() {
	local part
	part="$(dirname "$2")/.$(basename "$2").part.$$"
	tmp_outputs+=("$part")
	cp "$1" "$part"
	mv -f "$part" "$2"
}

# populate_busybox DIR: DIR/bin/busybox plus one symlink per applet.
populate_busybox() {
	mkdir -p "$1/bin"
	cp "$BUSYBOX" "$1/bin/busybox"
	local applet
	for applet in $("$BUSYBOX" --list); do
		[ "$applet" = busybox ] || ln -sf busybox "$1/bin/$applet"
	done
}

# make_cpio DIR OUT: gzip'd newc archive of DIR, owned by root, stable order.
make_cpio() {
	(cd "$1" && find . -mindepth 1 -exec touch -h -d @0 {} + &&
		find . -mindepth 1 | LC_ALL=C sort |
		cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n >"$2"
}

build_kernel_and_initrd() {
	local dl=$tmp/dl kroot=$tmp/kroot root=$tmp/initrd m ko
	mkdir -p "$dl" "$kroot" "$root"
	chmod 755 "$tmp"
	chmod 777 "$dl" # apt-get download runs as _apt and writes here
	echo "prepare-guest: fetching $pkg"
	(cd "$dl" && apt-get download -q "$pkg" >/dev/null)
	dpkg -x "$dl"/"${pkg}"_*.deb "$kroot"
	[ -f "$kroot/boot/vmlinuz-$kver" ] || die "no vmlinuz in $pkg"

	mkdir -p "$root"/{dev,proc,sys,newroot,tmp,lib/modules}
	install -m 0755 "$init_bin" "$root/init"
	populate_busybox "$root"
	ln -s bin "$root/sbin"
	for m in "${MODULES[@]}"; do
		ko=$(find "$kroot/lib/modules/$kver" -name "$m.ko" -print -quit)
		[ -n "$ko" ] || die "module $m.ko not found in $pkg"
		cp "$ko" "$root/lib/modules/"
	done
	make_cpio "$root" "$tmp/initrd.img"

	install_output "$kroot/boot/vmlinuz-$kver" "$guest/vmlinuz"
	install_output "$tmp/initrd.img" "$guest/initrd.img"
	echo "$kver" >"$tmp/kernel-version"
	install_output "$tmp/kernel-version" "$guest/kernel-version"
	echo templates >"$tmp/features"
	install_output "$tmp/features" "$guest/features"
	echo "$build_id" >"$tmp/build-id"
	install_output "$tmp/build-id" "$guest/build-id"
	echo "prepare-guest: built kernel $kver and initrd in $guest"
}

build_default_image() {
	local root=$tmp/rootfs part
	mkdir -p "$root"/{dev,proc,sys,etc,usr} "$root/root" "$root/tmp"
	chmod 0700 "$root/root"
	chmod 1777 "$root/tmp"
	populate_busybox "$root"
	ln -s bin "$root/sbin"
	ln -s ../bin "$root/usr/bin"
	ln -s ../bin "$root/usr/sbin"
	echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
	echo "root:x:0:" >"$root/etc/group"
	echo "gridvm" >"$root/etc/hostname"

	part="$images/.default.img.part.$$"
	tmp_outputs+=("$part")
	truncate -s "$IMAGE_SIZE" "$part"
	mkfs.ext4 -q -F -L gridvm-root -E root_owner=0:0 -d "$root" "$part"
	mv -f "$part" "$images/default.img"
	echo "prepare-guest: built $images/default.img"
}

if [ -f "$guest/vmlinuz" ] && [ -f "$guest/initrd.img" ] &&
	[ "$(cat "$guest/kernel-version" 2>/dev/null)" = "$kver" ] &&
	[ "$(cat "$guest/build-id" 2>/dev/null)" = "$build_id" ]; then
	echo "prepare-guest: kernel $kver and initrd up to date in $guest"
else
	build_kernel_and_initrd
fi
if [ -f "$images/default.img" ]; then
	echo "prepare-guest: $images/default.img exists, left as is"
else
	build_default_image
fi
