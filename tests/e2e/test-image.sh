#!/bin/bash
# A real Debian image (debootstrap) with python3: the job uses the image's
# own software. Import of raw and qcow2 files. The built image is cached in
# $IMGCACHE between runs because debootstrap takes minutes.
source "$(dirname "$0")/lib.sh"
gv_setup
mkdir -p "$IMGCACHE"

if [ ! -f "$IMGCACHE/bookworm.img" ]; then
	"$GV" image build bookworm --suite bookworm --packages python3 || fail "image build"
	cp --sparse=always "$GRIDVM_DATA/images/bookworm.img" "$IMGCACHE/bookworm.img.tmp"
	mv "$IMGCACHE/bookworm.img.tmp" "$IMGCACHE/bookworm.img"
else
	ln -s "$IMGCACHE/bookworm.img" "$GRIDVM_DATA/images/bookworm.img"
fi
"$GV" image list | grep -q '^bookworm ' || fail "bookworm not listed"

out=$("$GV" run --image bookworm --cpus 2 --memory 1G -- python3 -c 'print(2**100)')
expect_eq "python3 in the image" "$out" 1267650600228229401496703205376
out=$("$GV" run --image bookworm -- sh -c '. /etc/os-release; echo $VERSION_CODENAME')
expect_eq "the image's own userland" "$out" bookworm

# import raw and qcow2; the imported image boots
cp --sparse=always "$SYSDATA/images/default.img" "$GRIDVM_DATA/raw.img"
qemu-img convert -O qcow2 "$GRIDVM_DATA/raw.img" "$GRIDVM_DATA/q.qcow2"
"$GV" image import imp-raw "$GRIDVM_DATA/raw.img" >/dev/null
"$GV" image import imp-q "$GRIDVM_DATA/q.qcow2" >/dev/null
fmts=$("$GV" image list --json | python3 -c 'import json,sys; print(" ".join(i["name"]+":"+i["format"] for i in json.load(sys.stdin) if i["name"].startswith("imp")))')
expect_eq "imported formats" "$fmts" "imp-q:qcow2 imp-raw:raw"
expect_eq "boot an imported qcow2" "$("$GV" run --image imp-q -- echo fine)" fine
"$GV" image import imp-raw "$GRIDVM_DATA/raw.img" 2>/dev/null && fail "imported over an existing name"
"$GV" image delete imp-raw >/dev/null
"$GV" image list | grep -q imp-raw && fail "image not deleted"
echo "ok: delete"
