#!/bin/bash
# Firmware boot of a bootable disk: a hybrid ISO made with grub-mkrescue
# holding our kernel and initramfs boots through SeaBIOS and GRUB, and the
# job still reports its output and exit code. A disk whose OS simply powers
# off ends as "stopped".
source "$(dirname "$0")/lib.sh"
gv_setup

iso=$GRIDVM_DATA/iso
mkdir -p "$iso/boot/grub"
cp "$SYSDATA/guest/vmlinuz" "$SYSDATA/guest/initrd.img" "$iso/boot/"
cat >"$iso/boot/grub/grub.cfg" <<'CFG'
set timeout=0
serial --unit=0 --speed=115200
terminal_output serial
menuentry "gridvm guest" {
  linux /boot/vmlinuz console=ttyS0 quiet panic=-1
  initrd /boot/initrd.img
}
CFG
grub-mkrescue -o "$GRIDVM_DATA/boot.iso" "$iso" >/dev/null 2>&1 || fail "grub-mkrescue"
"$GV" image import bootable "$GRIDVM_DATA/boot.iso" >/dev/null

out=$("$GV" run --boot disk --image bootable -- sh -c 'echo booted by firmware; exit 4') && rc=0 || rc=$?
expect_eq "output" "$out" "booted by firmware"
expect_eq "exit code" "$rc" 4

# the firmware and boot loader really ran (GRUB printed on the serial console)
"$GV" vm create fw --boot disk --image bootable -- sleep 100 >/dev/null
tr '\0' ' ' </proc/self/cmdline >/dev/null
"$GV" vm start fw >/dev/null
pid=$(vm_field fw '["pid"]')
tr '\0' '\n' </proc/$pid/cmdline | grep -q '^-kernel$' && fail "direct kernel boot used"
tr '\0' '\n' </proc/$pid/cmdline | grep -q 'bootindex=0' || fail "disk not the boot device"
echo "ok: no -kernel, disk has bootindex 0"
"$GV" vm delete --force fw >/dev/null

# a disk whose own OS just powers off
cat >"$iso/boot/grub/grub.cfg" <<'CFG'
set timeout=0
halt
CFG
grub-mkrescue -o "$GRIDVM_DATA/halt.iso" "$iso" >/dev/null 2>&1 || fail "grub-mkrescue"
"$GV" image import halting "$GRIDVM_DATA/halt.iso" >/dev/null
"$GV" vm create h --boot disk --image halting >/dev/null
"$GV" vm start h >/dev/null
wait_for 60 sh -c "[ \"\$('$GV' vm show h --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])')\" = stopped ]" \
	|| fail "the VM did not end as stopped: $(vm_state h)"
echo "ok: powered off by its own OS: stopped"

# bad combinations
"$GV" vm create bad --boot disk --image '' 2>/dev/null && fail "boot disk without an image"
"$GV" vm create bad --boot disk --image bootable --kernel /bin/true 2>/dev/null && fail "kernel with boot disk"
echo "ok: bad combinations refused"
