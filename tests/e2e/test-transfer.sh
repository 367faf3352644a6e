#!/bin/bash
# The deduplicating image transfer between two hosts (network namespaces,
# each with its own agent): identical result, zero blocks as holes, local
# blocks not sent (counted on the wire), resume after SIGKILL of either
# side and after a cut link, an unauthenticated peer refused, a tampered
# block rejected.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/hosts.sh"
hosts_up 3
for i in 1 2 3; do hosts_agent_start $i; done
W=$HOSTS_DIR/work
mkdir -p "$W"

# src: 2048 random blocks (8 MiB), 2048 zero blocks, 512 copies of one block;
# near: the same with every other random block different
python3 - "$W/src.img" "$W/near.img" <<'PY'
import os, sys
rnd = [os.urandom(4096) for _ in range(2048)]
same = b"gridvm" * 682 + b"...."
with open(sys.argv[1], "wb") as a, open(sys.argv[2], "wb") as b:
    for i, r in enumerate(rnd):
        a.write(r); b.write(r if i % 2 == 0 else os.urandom(4096))
    for _ in range(2048):
        a.write(bytes(4096)); b.write(bytes(4096))
    for _ in range(512):
        a.write(same); b.write(same)
PY
hosts_gv 1 image import src "$W/src.img" >/dev/null
want=$(sha256sum <"$W/src.img" | cut -d' ' -f1)
sum_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])" <"$2"; }

# 1. a plain fetch: identical, zero blocks are holes, the repeated block once
before=$(hosts_wire_bytes 2)
hosts_gv 2 image fetch src --from "${HOST_IP[1]}" --json >"$W/s1.json"
after=$(hosts_wire_bytes 2)
expect_eq "sha256 after fetch" "$(sha256sum <"${HOST_DATA[2]}/images/src.img" | cut -d' ' -f1)" "$want"
expect_eq "image_sha256 reported" "$(sum_field image_sha256 "$W/s1.json")" "$want"
expect_eq "zero blocks" "$(sum_field blocks_zero "$W/s1.json")" 2048
expect_eq "blocks sent" "$(sum_field blocks_remote "$W/s1.json")" 2049
alloc=$(( $(stat -c %b "${HOST_DATA[2]}/images/src.img") * 512 ))
[ "$alloc" -le $(( 2560 * 4096 + 65536 )) ] || fail "zero blocks were written ($alloc bytes allocated)"
echo "ok: sparse result ($alloc bytes allocated of $(stat -c %s "${HOST_DATA[2]}/images/src.img"))"
wire=$((after - before)); app=$(sum_field bytes_on_wire "$W/s1.json")
[ "$wire" -ge "$app" ] || fail "less on the wire ($wire) than the transfer counted ($app)"
echo "ok: $wire bytes on the wire for $app bytes of protocol"

# 2. with a similar image on the destination only the differing blocks travel
hosts_gv 3 image import near "$W/near.img" >/dev/null
hosts_gv 3 image index near >/dev/null
before=$(hosts_wire_bytes 3)
hosts_gv 3 image fetch src --from "${HOST_IP[1]}" --json >"$W/s2.json"
after=$(hosts_wire_bytes 3)
expect_eq "sha256 with local blocks" "$(sha256sum <"${HOST_DATA[3]}/images/src.img" | cut -d' ' -f1)" "$want"
expect_eq "blocks sent with local blocks" "$(sum_field blocks_remote "$W/s2.json")" 1024
expect_eq "blocks found locally" "$(sum_field blocks_local "$W/s2.json")" 1536
[ $((after - before)) -lt $(( 1024 * 4096 * 11 / 10 + 200000 )) ] \
	|| fail "too much on the wire: $((after - before)) bytes for 1024 blocks"
echo "ok: $((after - before)) bytes on the wire for 1024 missing blocks"
hosts_gv 3 image delete src >/dev/null

# 3. resume after SIGKILL of the destination's agent, then of the source's
hosts_shape 2 16mbit
hosts_gv 2 image delete src >/dev/null
for victim in 2 1; do
	( hosts_gv 2 image fetch src --from "${HOST_IP[1]}" --timeout 5s >/dev/null 2>&1 || true ) &
	fetcher=$!
	# kill at a random point after the first blocks have landed: once
	# 1 to 4 MiB of the 8 MiB of data are on the destination's disk (a
	# point in bytes received, not in time)
	part="${HOST_DATA[2]}/images/src.img.partial"
	at=$((2048 + RANDOM % 6144)) # 512-byte sectors allocated
	wait_until 120 "the transfer to write $((at / 2)) KiB into $part" \
		sh -c "[ -f $part ] && [ \$(stat -c %b $part) -gt $at ]"
	kill -9 "${HOST_AGENT_PID[$victim]}"
	wait $fetcher
	[ -f "${HOST_DATA[2]}/images/src.img" ] && fail "image complete although its transfer was killed"
	[ -f "${HOST_DATA[2]}/images/src.img.partial" ] || fail "no partial file kept"
	hosts_agent_start "$victim"
	hosts_gv 2 image fetch src --from "${HOST_IP[1]}" --json >"$W/s3.json"
	expect_eq "sha256 after killing h$victim" "$(sha256sum <"${HOST_DATA[2]}/images/src.img" | cut -d' ' -f1)" "$want"
	resumed=$(sum_field blocks_resumed "$W/s3.json")
	[ "$resumed" -gt 0 ] || fail "nothing resumed after killing h$victim"
	echo "ok: resumed $resumed blocks after SIGKILL of h$victim"
	expect_eq "resumed + sent covers the rest" \
		$(( resumed + $(sum_field blocks_remote "$W/s3.json") + $(sum_field blocks_local "$W/s3.json") )) 2560
	hosts_gv 2 image delete src >/dev/null
done

# 4. a cut link: the fetch fails within its timeout, a re-run resumes
( hosts_gv 2 image fetch src --from "${HOST_IP[1]}" --timeout 3s 2>"$W/cut.err" >/dev/null || true ) &
fetcher=$!
part="${HOST_DATA[2]}/images/src.img.partial"
wait_until 120 "the transfer to write 1 MiB into $part" \
	sh -c "[ -f $part ] && [ \$(stat -c %b $part) -gt 2048 ]"
hosts_cut 2
wait $fetcher
grep -qE "stopped answering|closed|cannot" "$W/cut.err" || fail "no clear error for a cut link: $(cat "$W/cut.err")"
echo "ok: cut link: $(head -1 "$W/cut.err")"
hosts_restore 2
hosts_gv 2 image fetch src --from "${HOST_IP[1]}" --json >"$W/s4.json"
expect_eq "sha256 after a cut link" "$(sha256sum <"${HOST_DATA[2]}/images/src.img" | cut -d' ' -f1)" "$want"
[ "$(sum_field blocks_resumed "$W/s4.json")" -gt 0 ] || fail "nothing resumed after the cut"
hosts_unshape 2

# 4b. iterative mode: the source image is written during the transfer; the
# last pass runs with the writer frozen, and the result equals the source
# as it was at that moment
cp --sparse=always "$W/src.img" "${HOST_DATA[1]}/images/live.img"
python3 - "${HOST_DATA[1]}/images/live.img" "$W/writing" <<'PY' &
import os, random, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
n = os.fstat(fd).st_size // 4096
first = True
while True:
    os.pwrite(fd, os.urandom(4096), random.randrange(n) * 4096)
    if first:  # the transfer may start: the image is changing
        open(sys.argv[2], "w").close()
        first = False
    time.sleep(0.002)
PY
writer=$!
wait_until 60 "the writer to change live.img" test -e "$W/writing"
hosts_gv 2 image fetch live --from "${HOST_IP[1]}" --iterative --max-passes 4 \
	--freeze-cmd "sh -c 'kill -STOP $writer && sha256sum <${HOST_DATA[1]}/images/live.img >$W/frozen.sha'" \
	--thaw-cmd "kill -CONT $writer" --json >"$W/it.json"
kill "$writer"; wait "$writer" 2>/dev/null || true
expect_eq "iterative result = source when frozen" \
	"$(sha256sum <"${HOST_DATA[2]}/images/live.img")" "$(cat "$W/frozen.sha")"
python3 - "$W/it.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
p = s["passes"]
assert len(p) >= 2 and p[-1]["frozen"] and not p[0]["frozen"], p
for x in p:
    print("ok: pass %d%s: %d blocks changed, %d sent, %d bytes, %.2f s" % (
        x["pass"], " (frozen)" if x["frozen"] else "", x["blocks_changed"],
        x["blocks_sent"], x["bytes_on_wire"], x["seconds"]))
PY

# 5. a peer without the grid key gets nothing
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"${HOST_DATA[3]}/other.key"
hosts_agent_stop 3
HOSTS_KEY_OVERRIDE="${HOST_DATA[3]}/other.key" hosts_agent_start 3 2>/dev/null || true
if hosts_gv 3 image fetch src --from "${HOST_IP[1]}" --as stolen 2>"$W/auth.err"; then
	fail "a host with another key fetched the image"
fi
grep -q "authentication failed" "$W/auth.err" || fail "unclear error: $(cat "$W/auth.err")"
[ -e "${HOST_DATA[3]}/images/stolen.img" ] && fail "image created without authentication"
echo "ok: unauthenticated peer refused: $(head -1 "$W/auth.err")"

# 6. a block that does not match its hash is rejected, the image not created
python3 - "${HOST_DATA[1]}/images/src.img" <<'PY'
import os, sys
p = sys.argv[1]; st = os.stat(p)
with open(p, "r+b") as f:
    f.seek(4096 * 5); f.write(b"tampered!")
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # the index still looks current
PY
if hosts_gv 2 image fetch src --from "${HOST_IP[1]}" --as tampered --no-local 2>"$W/tamper.err"; then
	fail "a tampered block was accepted"
fi
grep -q "does not match its SHA-256" "$W/tamper.err" || fail "unclear error: $(cat "$W/tamper.err")"
[ -e "${HOST_DATA[2]}/images/tampered.img" ] && fail "tampered image created"
echo "ok: tampered block rejected: $(head -1 "$W/tamper.err")"

# 7. bad input
hosts_gv 2 image fetch nosuch --from "${HOST_IP[1]}" 2>"$W/e" && fail "fetched a missing image"
grep -q "no such image: nosuch" "$W/e" || fail "unclear: $(cat "$W/e")"
hosts_gv 2 image fetch src --from "${HOST_IP[1]}" 2>"$W/e" && fail "fetched over an existing image"
grep -q "exists already" "$W/e" || fail "unclear: $(cat "$W/e")"
hosts_gv 2 image fetch src --from 10.255.255.1 --as y --timeout 2s 2>"$W/e" && fail "fetched from nowhere"
echo "ok: unreachable host: $(head -1 "$W/e")"
hosts_gv 2 image fetch src --from "${HOST_IP[1]}" --as z --compress brotli 2>"$W/e" && fail "unknown codec"
grep -q "unknown compression" "$W/e" || fail "unclear: $(cat "$W/e")"
echo "ok: bad input refused"
