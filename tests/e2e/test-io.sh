#!/bin/bash
# A job's files in and out (--input, --output): the exact bytes of a file
# and a directory reach the guest and come back, also when the job fails;
# a missing input is refused before any VM is made; a missing output is
# named and the exit code stays the job's; outputs that do not fit; a VM
# created with them fetches them again (vm output) and is checkpointed,
# saved and restored on the way.
source "$(dirname "$0")/lib.sh"
gv_setup
W=$GRIDVM_DATA/work
mkdir -p "$W/in/dir/sub"
cd "$W"
head -c 300000 /dev/urandom >in/data.bin
printf 'one\ntwo\nthree\n' >in/dir/a.txt
printf 'x y\n' >"in/dir/sub/b c.txt"
# files_of DIR: every path below DIR, sorted, one a line
files_of() { (cd "$1" && find . | LC_ALL=C sort); }
# expect_rc WHAT GOT WANT ERRFILE: an exit code, with the command's stderr if wrong
expect_rc() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'; its stderr: $(cat "$4")"; echo "ok: $1"; }
vm_count() { "$GV" vm list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
qemus() { pgrep -fc "$GRIDVM_DATA/vms/" || true; }

# 1. a file, a directory, and the file again to an absolute guest path on
# another file system (/tmp, a tmpfs); two outputs; the job exits 3
"$GV" run --input in/data.bin --input in/dir --input "$W/in/data.bin:/tmp/copy.bin" \
	--output result.txt --output /root/results --output-dir "$W/out1" -- sh -c '
	sha256sum data.bin > result.txt
	cmp data.bin /tmp/copy.bin && echo same >> result.txt
	mkdir results; cp data.bin results/; wc -l < dir/a.txt > results/lines
	cat "dir/sub/b c.txt" > results/b; exit 3' 2>"$W/err1" && rc=0 || rc=$?
expect_rc "the job's exit code" "$rc" 3 "$W/err1"
expect_eq "nothing on stderr" "$(cat "$W/err1")" ""
expect_eq "result.txt" "$(cat out1/result.txt)" "$(cd in && sha256sum data.bin)
same"
cmp in/data.bin out1/results/data.bin || fail "results/data.bin differs from the input"
echo "ok: results/data.bin has the input's exact bytes"
expect_eq "results/lines" "$(cat out1/results/lines)" 3
expect_eq "results/b" "$(cat out1/results/b)" "x y"
expect_eq "what arrived" "$(files_of out1 | tr '\n' ' ')" \
	". ./result.txt ./results ./results/b ./results/data.bin ./results/lines "

# 2. a missing input: one line, before any VM is made (the CLI), and the
# agent refuses one too (an API client), leaving nothing behind
before=$(qemus)
"$GV" run --input in/nope.txt --output x -- true 2>"$W/err2" && rc=0 || rc=$?
expect_rc "missing input: exit code" "$rc" 2 "$W/err2"
expect_eq "missing input: the error" "$(cat "$W/err2")" \
	"gridvm: error: --input in/nope.txt: No such file or directory"
expect_eq "missing input: no VM" "$(vm_count)" 0
expect_eq "missing input: no QEMU started" "$(qemus)" "$before"
reply=$(curl -s --unix-socket "$GRIDVM_SOCKET" -X POST http://gridvmd/v1/vms \
	-d '{"name":"apimiss","job":["true"],"inputs":[{"path":"/nonexistent/x"}]}')
expect_eq "missing input (API): the error" \
	"$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["error"])' "$reply")" \
	"input /nonexistent/x: No such file or directory"
expect_eq "missing input (API): no VM" "$(vm_count)" 0
[ ! -e "$GRIDVM_DATA/vms/apimiss" ] || fail "the refused VM left its directory"
echo "ok: nothing left of the refused VM"

# 3. a missing output is named; the others arrive; the exit code is the job's
"$GV" run --output there.txt --output not-there --output-dir "$W/out3" -- \
	sh -c 'echo hi > there.txt' 2>"$W/err3" && rc=0 || rc=$?
expect_rc "missing output: exit code" "$rc" 0 "$W/err3"
expect_eq "missing output: named" "$(cat "$W/err3")" \
	"gridvm: output not-there: not found in the guest"
expect_eq "missing output: the other arrived" "$(files_of out3 | tr '\n' ' ')" ". ./there.txt "
expect_eq "missing output: its bytes" "$(cat out3/there.txt)" hi

# 4. outputs also after a job killed by a signal; one that does not fit
# (--output-max) is named, the next one still arrives
"$GV" run --output big --output small --output-max 1M --output-dir "$W/out4" -- \
	sh -c 'head -c 2000000 /dev/urandom > big; echo s > small; kill -9 $$' 2>"$W/err4" &&
	rc=0 || rc=$?
expect_rc "killed job: exit code" "$rc" 137 "$W/err4"
expect_eq "too large: named" "$(grep -v '^gridvm: guest: ' "$W/err4")" \
	"gridvm: output big: did not fit on the output disk (see --output-max)"
expect_eq "too large: the other arrived" "$(files_of out4 | tr '\n' ' ')" ". ./small "

# 5. a VM created with inputs and outputs: its job counts, is checkpointed,
# saved, restored and rolled back to the checkpoint, ends, and its outputs
# arrive (and arrive again); a second boot places the inputs again
"$GV" vm create keep --input in/dir:work/dir --output work/count.txt --output work/dir \
	--job 'i=0; while [ $i -lt 30 ]; do i=$((i+1)); echo $i; sleep 0.3; done
	       echo "counted $i" > work/count.txt; echo new >> work/dir/added' >/dev/null
expect_eq "vm show: outputs" "$(vm_field keep '["outputs"]')" "['work/count.txt', 'work/dir']"
"$GV" vm start keep >/dev/null
count_reaches keep 5 90 || fail "the counting job did not start"
"$GV" checkpoint create keep >/dev/null
"$GV" vm save keep "$W/keep.state" >/dev/null
"$GV" vm restore keep "$W/keep.state" >/dev/null
count_reaches keep 10 90 || fail "the job did not go on after the restore"
"$GV" checkpoint restore keep >/dev/null
wait_until 180 "the job of keep to end" sh -c "[ \"\$('$GV' vm show keep --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])')\" = stopped ]"
expect_eq "keep: exit code" "$(vm_field keep '["exit_code"]')" 0
expect_eq "keep: no output missing" "$(vm_field keep '["outputs_missing"]')" "[]"
"$GV" vm output keep "$W/out5" 2>"$W/err5" || fail "vm output keep failed: $(cat "$W/err5")"
expect_eq "keep: count.txt" "$(cat out5/count.txt)" "counted 30"
expect_eq "keep: the directory" "$(files_of out5/dir | tr '\n' ' ')" \
	". ./a.txt ./added ./sub ./sub/b c.txt "
cmp in/dir/a.txt out5/dir/a.txt || fail "keep: dir/a.txt differs"
"$GV" vm output keep "$W/out5b" 2>/dev/null || fail "vm output keep failed the second time"
expect_eq "keep: again" "$(cat out5b/count.txt)" "counted 30"
# a second boot: the inputs replace what the first run left (its "added")
"$GV" vm start keep >/dev/null
wait_until 180 "the second run of keep to end" sh -c "[ \"\$('$GV' vm show keep --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])')\" = stopped ]"
expect_eq "keep, second run: exit code" "$(vm_field keep '["exit_code"]')" 0
"$GV" vm output keep "$W/out5c" 2>/dev/null || fail "vm output keep failed after the second run"
expect_eq "keep, second run: the directory" "$(files_of out5c/dir | tr '\n' ' ')" \
	". ./a.txt ./added ./sub ./sub/b c.txt "
expect_eq "keep, second run: the input replaced the first run's directory" \
	"$(cat out5c/dir/added)" new
# a third boot stopped by force: its outputs were never collected, and
# what the second run left is not served as if it were this run's
"$GV" vm start keep >/dev/null
count_reaches keep 2 90 || fail "the third run did not start"
"$GV" vm stop keep --force >/dev/null
"$GV" vm output keep "$W/out5d" 2>"$W/err5d" && fail "outputs of a run stopped by force"
grep -q "outputs of VM keep were not collected" "$W/err5d" || fail "stopped by force: $(cat "$W/err5d")"
echo "ok: a run stopped by force has no outputs (not the last run's)"
"$GV" vm delete keep >/dev/null

# 6. outputs of a VM that never ran: a clear error
"$GV" vm create idle --output x --job true >/dev/null
"$GV" vm output idle "$W/out6" 2>"$W/err6" && rc=0 || rc=$?
expect_eq "never ran: exit code" "$rc" 1
grep -q "outputs of VM idle were not collected" "$W/err6" || fail "never ran: $(cat "$W/err6")"
echo "ok: never ran: not collected"
"$GV" vm delete idle >/dev/null
expect_eq "no VMs left" "$(vm_count)" 0
