#!/bin/bash
# Block indexes of images and the similarity report, through the CLI:
# hashes agree with sha256sum, a copy is 100% similar, an image with half
# its blocks changed about 50%, a damaged index is rebuilt, bad input fails.
source "$(dirname "$0")/lib.sh"
gv_setup

# a 16 MiB image: 2048 distinct 4 KiB blocks of random data, 2048 zero blocks
python3 - "$GRIDVM_DATA/a.img" "$GRIDVM_DATA/b.img" <<'PY'
import os, sys
blocks = [os.urandom(4096) for _ in range(2048)]
zero = bytes(4096)
with open(sys.argv[1], "wb") as f:
    for i, b in enumerate(blocks):
        f.write(b); f.write(zero)
with open(sys.argv[2], "wb") as f:   # every other data block replaced
    for i, b in enumerate(blocks):
        f.write(b if i % 2 == 0 else os.urandom(4096)); f.write(zero)
PY
cp --sparse=always "$GRIDVM_DATA/a.img" "$GRIDVM_DATA/a-copy.img"
for n in a b a-copy; do "$GV" image import "$n" "$GRIDVM_DATA/$n.img" >/dev/null; done

j=$("$GV" image index a --json)
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)" <<<"$j"; }
expect_eq "blocks" "$(field '["blocks"]')" 4096
expect_eq "zero blocks" "$(field '["zero_blocks"]')" 2048
expect_eq "image sha256 = sha256sum" "$(field '["image_sha256"]')" "$(sha256sum <"$GRIDVM_DATA/a.img" | cut -d' ' -f1)"
[ -f "$GRIDVM_DATA/images/a.gvidx" ] || fail "no index file next to the image"

sim=$("$GV" image similarity a b a-copy --json)
share() { python3 -c "
import json,sys
rows = {r['name']: r for r in json.load(sys.stdin)['rows']}
print(round(100 * rows['$1']$2))" <<<"$sim"; }
expect_eq "a in a-copy" "$(share a '["in"]["a-copy"]')" 100
expect_eq "a in b" "$(share a '["in"]["b"]')" 50
expect_eq "b in all others" "$(share b '["in_all_others"]')" 50
expect_eq "non-zero blocks counted" "$(share a '["nonzero_blocks"] / 100')" 2048
"$GV" image similarity a b a-copy | grep -q "all others" || fail "no table"
echo "ok: table printed"

# a damaged index is rebuilt, not trusted: a block hash is overwritten and
# the index file afterwards is byte for byte the good one again
good=$(sha256sum <"$GRIDVM_DATA/images/a.gvidx")
printf 'garbage' | dd of="$GRIDVM_DATA/images/a.gvidx" bs=1 seek=200 conv=notrunc 2>/dev/null
[ "$(sha256sum <"$GRIDVM_DATA/images/a.gvidx")" != "$good" ] || fail "damage not applied"
j=$("$GV" image index a --json)
expect_eq "an index file existed" "$(field '["was_indexed"]')" True
expect_eq "rebuilt index = the good one" "$(sha256sum <"$GRIDVM_DATA/images/a.gvidx")" "$good"

# bad input
"$GV" image index nosuch 2>"$GRIDVM_DATA/err" && fail "indexed a missing image"
grep -q "no such image" "$GRIDVM_DATA/err" || fail "unclear error: $(cat "$GRIDVM_DATA/err")"
qemu-img convert -O qcow2 "$GRIDVM_DATA/a.img" "$GRIDVM_DATA/q.qcow2"
"$GV" image import q "$GRIDVM_DATA/q.qcow2" >/dev/null
"$GV" image index q 2>"$GRIDVM_DATA/err" && fail "indexed a qcow2"
grep -q "raw images" "$GRIDVM_DATA/err" || fail "unclear error: $(cat "$GRIDVM_DATA/err")"
"$GV" image similarity a 2>/dev/null && fail "similarity of one image"
echo "ok: bad input refused"

# deleting an image drops it from the host-wide index
"$GV" image delete a-copy >/dev/null
grep -q '"a-copy"' "$GRIDVM_DATA/hostidx/hostidx.sources" && fail "a-copy still in the host index"
grep -q '"name": "a"' "$GRIDVM_DATA/hostidx/hostidx.sources" || fail "a missing from the host index"
[ -f "$GRIDVM_DATA/images/a-copy.gvidx" ] && fail "index file of a deleted image left"
echo "ok: host index follows the store"
