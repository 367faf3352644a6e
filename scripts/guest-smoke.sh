#!/bin/bash
# SPDX-License-Identifier: MIT
#
# guest-smoke.sh: boot the gridvm guest by hand and print the job frames.
#
# Usage: guest-smoke.sh [-d DATADIR] [-r ROOTDEV|-n] [-w WORKDIR] [-e NAME=VALUE]...
#                       [-H HOSTNAME] [-a APPEND] [-Q QEMU_ARG]... [-k] [-t SECONDS]
#                       [-p SECONDS] -- COMMAND [ARG]...
#        guest-smoke.sh [options] -s SPECFILE
#   -d DATADIR   output of prepare-guest.sh (default /tmp/gvdata)
#   -r ROOTDEV   root= for the job spec (default /dev/vda); -n: no root, run in
#                the initramfs (the disk is still attached)
#   -a APPEND    extra kernel command line options
#   -Q QEMU_ARG  extra QEMU argument, repeatable (e.g. -Q -bios -Q qboot.rom)
#   -s SPECFILE  use this raw job spec instead of building one (no COMMAND)
#   -k           keep the VM directory (console.log, job.spec, job.out, stdout, stderr)
#   -t SECONDS   kill QEMU after this long (default 300)
#   -p SECONDS   press the power button (QMP system_powerdown) this long after
#                the 'S' frame, as a graceful stop does; repeat -p for more presses
# Prints each frame with the time since QEMU was started, then a summary.
# Exits with the job's exit code, or 124 if QEMU did not exit by itself in time.
# A manual check for developers; needs qemu-system-x86, qemu-utils and python3.
set -euo pipefail

datadir=/tmp/gvdata
root=/dev/vda
workdir=
hostname=
append=
keep=
limit=300
specfile=
presses=
envs=()
extra=()
while getopts "d:r:nw:e:H:a:Q:s:kt:p:h" opt; do
	case $opt in
	d) datadir=$OPTARG ;;
	r) root=$OPTARG ;;
	n) root= ;;
	w) workdir=$OPTARG ;;
	e) envs+=("$OPTARG") ;;
	H) hostname=$OPTARG ;;
	a) append=" $OPTARG" ;;
	Q) extra+=("$OPTARG") ;;
	s) specfile=$OPTARG ;;
	k) keep=1 ;;
	t) limit=$OPTARG ;;
	p) presses+=" $OPTARG" ;;
	*) sed -n '4,22s/^# \{0,1\}//p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ] && [ -z "$specfile" ]; then
	echo "guest-smoke: no command given" >&2
	exit 2
fi

vmdir=$(mktemp -d /tmp/gvsmoke.XXXXXX)
if [ -z "$keep" ]; then trap 'rm -rf "$vmdir"' EXIT; else echo "vmdir: $vmdir"; fi

# write_spec ARG...: the job spec (see guest/init.c) on stdout.
write_spec() {
	[ -z "$root" ] || printf 'root=%s\n' "$root"
	[ -z "$workdir" ] || printf 'workdir=%s\n' "$workdir"
	[ -z "$hostname" ] || printf 'hostname=%s\n' "$hostname"
	for e in ${envs[@]+"${envs[@]}"}; do printf 'env=%s\n' "$e"; done
	printf '\n'
	printf '%s\0' "$@"
}
if [ -n "$specfile" ]; then
	cp "$specfile" "$vmdir/job.spec"
else
	write_spec "$@" >"$vmdir/job.spec"
fi
qemu-img create -q -f qcow2 -F raw -b "$datadir/images/default.img" "$vmdir/disk.qcow2"
: >"$vmdir/job.out"

# shellcheck disable=SC2054 # the commas are QEMU option syntax
qemu_argv=(
	qemu-system-x86_64 -machine q35 -accel tcg,thread=multi -m 256M -smp 1
	-nodefaults -no-user-config -display none -no-reboot
	-kernel "$datadir/guest/vmlinuz" -initrd "$datadir/guest/initrd.img"
	-append "console=ttyS0 quiet panic=-1$append"
	-chardev "file,id=con0,path=$vmdir/console.log,append=on" -serial chardev:con0
	-fw_cfg "name=opt/gridvm/job,file=$vmdir/job.spec"
	-device virtio-serial-pci,id=vser0
	-chardev "file,id=gvjob,path=$vmdir/job.out,append=on"
	-device virtserialport,bus=vser0.0,chardev=gvjob,name=org.gridvm.job
	-blockdev "driver=file,filename=$vmdir/disk.qcow2,node-name=file0"
	-blockdev driver=qcow2,file=file0,node-name=disk0
	-device virtio-blk-pci,drive=disk0
	-qmp "unix:$vmdir/qmp.sock,server=on,wait=off"
	${extra[@]+"${extra[@]}"}
)
start=$(date +%s.%N)
timeout "$limit" "${qemu_argv[@]}" &
qpid=$!

# Follow job.out while QEMU runs; decode frames as they arrive.
set +e
python3 - "$vmdir" "$start" "$qpid" "$presses" <<'EOF'
import hashlib, os, socket, struct, sys, time

vmdir, start, qpid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
presses = sorted(float(s) for s in sys.argv[4].split())  # seconds after 'S'
started = pressed = None
out = {b'O': open(os.path.join(vmdir, 'stdout'), 'wb'),
       b'E': open(os.path.join(vmdir, 'stderr'), 'wb')}
sums = {b'O': hashlib.sha256(), b'E': hashlib.sha256()}
sizes = {b'O': 0, b'E': 0}
exit_code = None
buf = b''

def powerdown():  # one QMP session: the greeting, two commands, their replies
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(os.path.join(vmdir, 'qmp.sock'))
        f = s.makefile('rwb')
        f.readline()
        for cmd in (b'qmp_capabilities', b'system_powerdown'):
            f.write(b'{"execute": "%s"}\n' % cmd)
            f.flush()
            while b'"return"' not in (line := f.readline()) and b'"error"' not in line:
                if not line:
                    break
    print('[%7.3fs] > system_powerdown %s' % (time.time() - start, line.strip().decode()))
    return time.time()

def alive():  # QEMU is the shell's child, not ours: look at /proc
    try:
        with open('/proc/%d/stat' % qpid) as st:
            return st.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False

with open(os.path.join(vmdir, 'job.out'), 'rb') as f:
    while True:
        running = alive()
        chunk = f.read()
        buf += chunk
        while len(buf) >= 5:
            t, n = buf[:1], struct.unpack('>I', buf[1:5])[0]
            if len(buf) < 5 + n:
                break
            payload, buf = buf[5:5 + n], buf[5 + n:]
            stamp = '[%7.3fs]' % (time.time() - start)
            if t in out:
                out[t].write(payload)
                sums[t].update(payload)
                sizes[t] += n
                shown = payload[:120].decode('utf-8', 'replace')
                more = '' if n <= 120 else ' ... (%d bytes)' % n
                print('%s %s %r%s' % (stamp, t.decode(), shown, more))
            elif t == b'X':
                exit_code = struct.unpack('>i', payload)[0]
                print('%s X %d' % (stamp, exit_code))
            elif t == b'S':
                print('%s S' % stamp)
                started = time.time()
            elif t == b'M':
                print('%s M %s' % (stamp, payload.decode('utf-8', 'replace')))
            else:
                print('%s %s (%d bytes)' % (stamp, t.decode('latin-1'), n))
        if not chunk and not running:
            break
        if running and presses and started and time.time() >= started + presses[0]:
            presses.pop(0)
            pressed = powerdown()
        if not chunk:
            time.sleep(0.02)
if buf:
    print('trailing partial frame: %d bytes' % len(buf))
for t, name in ((b'O', 'stdout'), (b'E', 'stderr')):
    print('%s: %d bytes sha256 %s' % (name, sizes[t], sums[t].hexdigest()))
print('exit: %s' % exit_code)
if pressed:
    print('QEMU exited %.3fs after the last system_powerdown' % (time.time() - pressed))
sys.exit(exit_code if exit_code is not None else 1)
EOF
job_rc=$?
wait "$qpid"
qemu_rc=$?
set -e
echo "qemu exited with $qemu_rc after $(python3 -c "import time; print('%.3f' % (time.time() - $start))")s"
if [ "$qemu_rc" -eq 124 ]; then
	echo "guest-smoke: QEMU did not exit within ${limit}s; console log:" >&2
	tail -n 40 "$vmdir/console.log" >&2
	exit 124
fi
exit "$job_rc"
