#!/bin/bash
# A checkpoint restored on another host: the job (which writes a file per
# step on its disk and checks they are all there) continues there from the
# checkpoint's count, with its disk as of that instant; the instance on the
# first host runs on until then and is gone afterwards. A restore that
# cannot happen leaves the VM running untouched where it was. Checkpoints
# are in the host-wide block index: moving the VM back to the first host
# does not send the disk blocks its checkpoint holds there.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/hosts.sh"
source "$(dirname "$0")/hostvm.sh"
hosts_up 3
hosts_agent_start 1
hosts_agent_start 2
# 48 MiB of random data on the disk first (not in memory: caches dropped)
JOB='[ -f /root/blob ] || { dd if=/dev/urandom of=/root/blob bs=1M count=48 2>/dev/null; sync; echo 3 >/proc/sys/vm/drop_caches; }; i=$(ls /root | grep -c "^f"); while :; do i=$((i+1)); echo $i >/root/f$i; sync; n=$(ls /root | grep -c "^f"); if [ $n -eq $i ]; then echo $i; else echo "MISSING $i $n"; fi; sleep 0.3; done'
ck_ids() { hosts_gv "$1" checkpoint list "$2" --json | python3 -c 'import json,sys; print(" ".join(c["id"] for c in json.load(sys.stdin)))'; }

hosts_gv 1 vm create c --memory 256M --job "$JOB" >/dev/null
hosts_gv 1 vm start c >/dev/null
reaches_on 1 c 4 || fail "the job does not count"
hosts_gv 1 checkpoint create c >/dev/null
at=$(hosts_gv 1 vm logs c | wc -l)
reaches_on 1 c $((at + 6)) || fail "the job stopped after the checkpoint"
id=$(ck_ids 1 c)

# failures first: the VM must be left running on h1, untouched
hosts_gv 1 checkpoint restore c --on "${HOST_IP[3]}" 2>"$HOSTS_DIR/e" && fail "restored on a host without an agent"
grep -q "unchanged" "$HOSTS_DIR/e" || fail "unclear: $(cat "$HOSTS_DIR/e")"
echo "ok: unreachable host: $(head -1 "$HOSTS_DIR/e")"
hosts_gv 1 checkpoint restore c nosuchid --on "${HOST_IP[2]}" 2>"$HOSTS_DIR/e" && fail "restored a missing checkpoint"
grep -qi "no such checkpoint\|no checkpoint" "$HOSTS_DIR/e" || fail "unclear: $(cat "$HOSTS_DIR/e")"
echo "ok: unknown checkpoint: $(head -1 "$HOSTS_DIR/e")"
hosts_gv 1 checkpoint restore c --on "${HOST_IP[1]}" 2>"$HOSTS_DIR/e" && fail "restored 'on' its own host"
echo "ok: own host: $(head -1 "$HOSTS_DIR/e")"
ls "${HOST_DATA[1]}/vms/c/" | grep -q '^ckpt\.' && fail "exported checkpoint files left behind"
only_on 1 c
before=$(last_on 1 c)
reaches_on 1 c $((before + 2)) || fail "the job stopped after the failed restores"
check_log 1 c >/dev/null

# restore on h2: the output there is the checkpoint's, then goes on
w0=$(hosts_wire_bytes 2)
# (--keep-checkpoints: h1 keeps its checkpoint, which the way back below uses)
hosts_gv 1 checkpoint restore c "$id" --on "${HOST_IP[2]}" --keep-checkpoints --json >"$HOSTS_DIR/r.json"
out=$(( $(hosts_wire_bytes 2) - w0 ))
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["mode"]=="checkpoint", s; print("ok: restored on h2 in %.2f s" % s["seconds"])' "$HOSTS_DIR/r.json"
first=$(hosts_gv 2 vm logs c | wc -l)
only_on 2 c
# h1 had counted past $before; h2 starts again near the checkpoint's count
[ "$first" -lt "$before" ] || fail "h2 did not start from the checkpoint: $first lines, h1 had $before"
reaches_on 2 c $((at + 4)) || fail "no progress on h2 after the restore"
n=$(check_log 2 c)
echo "ok: h2 continues from the checkpoint at $at: counted 1..$n without gap, repeat or lost file"
ls "${HOST_DATA[1]}/vms/" 2>/dev/null | grep -qx c && fail "h1 kept a directory for c"
echo "ok: c is gone from h1"

# back to h1 (cold): the disk blocks are in h1's checkpoint of c, so only
# the memory state and what changed since cross the link
w0=$(hosts_wire_bytes 1)
hosts_gv 2 migrate c --to "${HOST_IP[1]}" --cold >/dev/null
back=$(( $(hosts_wire_bytes 1) - w0 ))
only_on 1 c
at=$(last_on 1 c)
reaches_on 1 c $((at + 3)) || fail "no progress on h1 after the move back"
check_log 1 c >/dev/null
echo "ok: bytes on the link: $out to h2 (no checkpoint there), $back back to h1 (its checkpoint holds the disk)"
[ $((back + 32 * 1024 * 1024)) -lt "$out" ] || fail "the checkpoint's blocks were not reused: $back vs $out bytes"
