#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/migration.py - the migration benchmark's runs and report.

Started by bench/migration.sh, which sets up two network-namespace hosts
(tests/e2e/hosts.sh) with an agent each, both holding the base image, and
exports HOSTS_ID, HOSTS_DIR, HOSTS_IPS, ROOT, GV. Standard library only.

Runs, for each link rate:
  gridvm-live   gridvm migrate (dedup disk copy in passes + QEMU pre-copy,
                memory over multifd channels with zstd: the default)
  gridvm-live-plain  the same with --compress none (one plain channel)
  qemu-blk      QEMU's own storage migration (the `block` capability) of the
                whole disk to a blank disk on the destination
  qemu-blk-inc  the same, incremental (`block-incremental`): only the
                overlay, onto an overlay of the destination's base image
  qemu-shared   QEMU's memory migration with the disk shared (both hosts
                see the same file): the downtime baseline, no disk copied
The QEMU runs use the command line gridvm gives QEMU (read from a VM
gridvm started; the disk as a named -drive, which QEMU's block migration
needs), started by hand in the namespaces, driven over QMP.
Every run: the same image, the same job (it copies a directory of the
image, writes fresh random data, then reports its progress every 10 ms
while dirtying memory), wall time, bytes on h2's link, QEMU's downtime
figure, and the gap the job's output shows (the longest time between two
consecutive progress lines arriving on the hosts).

Then checkpoints: 5 successive checkpoints of a job that, in rounds,
rewrites part of its memory and writes a file with fresh random data;
storage added by each against the bytes the job changed.
"""
import argparse, html, json, os, platform, re, shutil, socket, statistics, struct
import subprocess, sys, threading, time

ROOT = os.environ.get("ROOT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GV = os.environ.get("GV", ROOT + "/build/programs/gridvm")
HID = os.environ.get("HOSTS_ID", "")
HDIR = os.environ.get("HOSTS_DIR", "")
IPS = os.environ.get("HOSTS_IPS", "").split()
IMAGE = "bookworm"
WS_MB = 2            # memory the job keeps dirtying
PAGES_PER_TICK = 5   # pages it dirties every 10 ms
DISK_RANDOM_MB = 24  # fresh random data it writes to its disk
# the job: disk changes (a copy of a directory of the image, which the
# destination has in its base image, plus fresh random data), then READY,
# then every 10 ms one line "step work" while dirtying memory
PY = f"""import os, time
ws = {WS_MB} << 20
buf = bytearray(ws)
step = work = 0
t = time.monotonic()
while True:
    for k in range(50):
        work += 1
    now = time.monotonic()
    if now - t >= 0.01:
        t = now
        step += 1
        for k in range({PAGES_PER_TICK}):
            buf[((step * {PAGES_PER_TICK} + k) * 4096) % ws] = step & 255
        print(step, work, flush=True)
"""
JOB = ("cp -a /usr/lib/python3.11 /root/copy && "
       f"dd if=/dev/urandom of=/root/fresh bs=1M count={DISK_RANDOM_MB} 2>/dev/null && sync && "
       f"echo READY && exec python3 -u -c '{PY}'")


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def ns(i):
    return "gv%sh%d" % (HID, i)


def data(i):
    return "%s/h%d" % (HDIR, i)


def gv(i, *args, check=True):
    env = dict(os.environ, GRIDVM_DATA=data(i), GRIDVM_SOCKET=data(i) + "/gridvmd.sock",
               GRIDVM_NO_AUTOSTART="1")
    p = subprocess.run([GV, *args], env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("gridvm %s on h%d: %s" % (" ".join(args), i, p.stderr.strip()))
    return p


def hosts(cmd):
    subprocess.run(["bash", "-c", 'source "%s/tests/e2e/hosts.sh"; hosts_attach; %s'
                    % (ROOT, cmd)], check=True)


def wire(i):
    p = subprocess.run(["ip", "netns", "exec", ns(i), "cat",
                        "/sys/class/net/eth0/statistics/rx_bytes",
                        "/sys/class/net/eth0/statistics/tx_bytes"],
                       capture_output=True, text=True, check=True)
    return sum(int(x) for x in p.stdout.split())


# --- the job's output as the hosts see it ----------------------------------

class Observer:
    """Polls job.out files (gridvm's frame format: type, u32 length,
    payload) every 2 ms; records when each progress line first arrives."""

    def __init__(self, paths):
        self.paths = list(paths)
        self.off = {p: 0 for p in self.paths}
        self.buf = {p: b"" for p in self.paths}
        self.text = {p: b"" for p in self.paths}
        self.seen = {}      # step -> (host time, work)
        self.lines = []     # other lines (READY, ROUND ...)
        self.stop = False
        self.lock = threading.Lock()
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def add(self, path):
        with self.lock:
            if path not in self.paths:
                self.paths.append(path)
                self.off[path] = 0
                self.buf[path] = self.text[path] = b""

    def poll(self, p, now):
        try:
            with open(p, "rb") as f:
                f.seek(self.off[p])
                new = f.read()
        except OSError:
            return
        self.off[p] += len(new)
        b = self.buf[p] + new
        while len(b) >= 5:
            if b[0:1] not in (b"S", b"O", b"E", b"M", b"X"):
                # not a frame: the file was being rewritten (a copy in
                # progress) when read; read it again from the start
                self.off[p], self.buf[p], self.text[p] = 0, b"", b""
                return
            n = struct.unpack(">I", b[1:5])[0]
            if len(b) < 5 + n:
                break
            if b[0:1] == b"O":
                self.text[p] += b[5:5 + n]
            b = b[5 + n:]
        self.buf[p] = b
        *done, self.text[p] = self.text[p].split(b"\n")
        for line in done:
            f = line.split()
            if len(f) == 2 and f[0].isdigit() and f[1].isdigit():
                s = int(f[0])
                if s not in self.seen:
                    self.seen[s] = (now, int(f[1]))
            elif line.strip():
                self.lines.append((now, line.decode(errors="replace").strip()))

    def run(self):
        while not self.stop:
            now = time.monotonic()
            with self.lock:
                for p in self.paths:
                    self.poll(p, now)
            time.sleep(0.002)

    def wait_line(self, pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if any(pred(l) for _, l in self.lines):
                    return True
            time.sleep(0.05)
        return False

    def last_step(self):
        with self.lock:
            return max(self.seen) if self.seen else 0

    def finish(self):
        self.stop = True
        self.th.join()

    def gap(self, t0, t1):
        """Longest time between consecutive steps arriving in [t0, t1]."""
        return gap_of([[s, t] for s, (t, _) in self.seen.items() if t0 <= t <= t1])

    def arrivals(self, t0, t1):
        """[step, seconds since t0, work, file index] of each line in [t0, t1]."""
        return sorted([s, round(t - t0, 4), w] for s, (t, w) in self.seen.items() if t0 <= t <= t1)

    def series(self, t0, t1, bin_s=0.1):
        """Work done per bin (by arrival time) from t0 to t1."""
        pts = sorted((t, w) for s, (t, w) in self.seen.items() if t0 <= t <= t1)
        nb = int((t1 - t0) / bin_s) + 1
        out = [0] * nb
        for (ta, wa), (tb, wb) in zip(pts, pts[1:]):
            out[min(nb - 1, int((tb - t0) / bin_s))] += max(0, wb - wa)
        return out


def gap_of(arrivals):
    """The longest time between two lines arriving one after the other (by
    step; a line lost at the switch does not hide the gap around it)."""
    pts = sorted((a[0], a[1]) for a in arrivals)
    return max([b - a for (_, a), (_, b) in zip(pts, pts[1:])] or [0.0])


# --- a minimal QMP client ---------------------------------------------------

class QMP:
    def __init__(self, path, timeout=30):
        end = time.monotonic() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        self.f = self.s.makefile("rb")
        self.read()  # greeting
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.f.readline()
        if not line:
            raise RuntimeError("QMP closed")
        return json.loads(line)

    def cmd(self, name, **args):
        self.s.sendall(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        while True:
            r = self.read()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError("%s: %s" % (name, r["error"].get("desc")))

    def close(self):
        self.s.close()


# --- the runs ---------------------------------------------------------------

def vm_info(i, name):
    return json.loads(gv(i, "vm", "show", name, "--json").stdout)


def wait_ready(obs, what):
    if not obs.wait_line(lambda l: l == "READY", 600):
        raise RuntimeError("%s: the job never got ready" % what)
    end = time.monotonic() + 60
    while obs.last_step() < 100 and time.monotonic() < end:
        time.sleep(0.1)


def run_gridvm(rate, n, method="gridvm-live"):
    name = "g%d" % n
    gv(1, "vm", "create", name, "--image", IMAGE, "--memory", ARGS.memory, "--job", JOB)
    gv(1, "vm", "start", name)
    src = "%s/vms/%s/job.out" % (data(1), name)
    dst = "%s/vms/%s/job.out" % (data(2), name)
    obs = Observer([src, dst])
    wait_ready(obs, name)
    overlay = vm_info(1, name).get("disk_overlay_bytes", 0)
    w0, t0 = wire(2), time.monotonic()
    p = gv(1, "migrate", name, "--to", IPS[1], "--json",
           *(["--compress", "none"] if method == "gridvm-live-plain" else []))
    t1 = time.monotonic()
    w1 = wire(2)
    time.sleep(2)
    obs.finish()
    s = json.loads(p.stdout)
    if vm_info(2, name)["state"] != "running":
        raise RuntimeError("gridvm-live: the VM does not run on h2")
    after = obs.last_step()
    gv(2, "vm", "delete", "--force", name)
    return dict(method=method, rate=rate, seconds=t1 - t0, wire=w1 - w0,
                qemu_downtime_ms=s.get("qemu_downtime_ms"), paused_ms=s.get("paused_ms"),
                job_gap_ms=obs.gap(t0, t1 + 2) * 1000, overlay_bytes=overlay,
                steps_after=after, series=obs.series(t0 - 1, t1 + 2), t_mig=[1.0, t1 - t0 + 1],
                arrivals=obs.arrivals(t0, t1 + 2), summary=s)


TEMPLATE = {}


def template():
    """gridvm's QEMU command line for this VM (from a VM it started)."""
    if TEMPLATE:
        return TEMPLATE
    gv(1, "vm", "create", "tmpl", "--image", IMAGE, "--memory", ARGS.memory, "--job", JOB)
    gv(1, "vm", "start", "tmpl")
    info = vm_info(1, "tmpl")
    with open("/proc/%d/cmdline" % info["pid"], "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    vmdir = info["dir"]
    keep = os.path.join(HDIR, "tmpl")
    os.makedirs(keep, exist_ok=True)
    shutil.copy(os.path.join(vmdir, "job.spec"), keep)
    gv(1, "vm", "delete", "--force", "tmpl")
    TEMPLATE.update(argv=argv, vmdir=vmdir.rstrip("/") + "/", jobspec=keep + "/job.spec")
    return TEMPLATE


def qemu_start(i, d, disk, incoming):
    t = template()
    os.makedirs(d, exist_ok=True)
    argv = []
    for a in t["argv"]:
        a = a.replace(t["vmdir"] + "disk.qcow2", disk).replace(t["vmdir"] + "job.spec", t["jobspec"])
        argv.append(a.replace(t["vmdir"], d + "/"))
    # QEMU's block migration moves named drives only: the same disk as a
    # -drive with an id instead of gridvm's anonymous -blockdev nodes
    out, k = [], 0
    while k < len(argv):
        if argv[k] == "-blockdev":
            k += 2
            continue
        out.append(argv[k].replace("virtio-blk-pci,drive=qcow0", "virtio-blk-pci,drive=drive0"))
        k += 1
    argv = out + ["-drive", "if=none,id=drive0,format=qcow2,file=" + disk]
    if incoming:  # the destination runs as soon as the state is in, as QEMU does
        argv = [a for a in argv if a != "-S"] + ["-incoming", "defer"]
    argv = [a for a in argv if a != "-daemonize"]  # keep its errors
    subprocess.Popen(["ip", "netns", "exec", ns(i), *argv], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=open(d + "/qemu.err", "w"),
                     start_new_session=True)
    return QMP(d + "/qmp.sock")


def qemu_kill(d):
    try:
        pid = int(open(d + "/qemu.pid").read())
        os.kill(pid, 9)
    except (OSError, ValueError):
        pass


def image_path(i):
    return "%s/images/%s.img" % (data(i), IMAGE)


def run_qemu(rate, n, mode):
    src = "%s/bench/%s-%d-src" % (data(1), mode, n)
    dst = "%s/bench/%s-%d-dst" % (data(2), mode, n)
    for d in (src, dst):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    sdisk = src + "/disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", image_path(1),
                    sdisk], check=True)
    size = os.path.getsize(image_path(1))
    if mode == "qemu-blk":
        ddisk = dst + "/disk.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", ddisk, str(size)], check=True)
    elif mode == "qemu-blk-inc":
        ddisk = dst + "/disk.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        image_path(2), ddisk], check=True)
    else:
        ddisk = sdisk
    obs = Observer([src + "/job.out", dst + "/job.out"])
    qs = qd = None
    try:
        qs = qemu_start(1, src, sdisk, False)
        qs.cmd("cont")
        wait_ready(obs, mode)
        overlay = os.stat(sdisk).st_blocks * 512
        qd = qemu_start(2, dst, ddisk, True)
        port = 49000 + n
        qd.cmd("migrate-incoming", uri="tcp:%s:%d" % (IPS[1], port))
        caps = [{"capability": "auto-converge", "state": True}]
        if mode != "qemu-shared":
            caps.append({"capability": "block", "state": True})
        qs.cmd("migrate-set-capabilities", capabilities=caps)
        if mode == "qemu-blk-inc":
            qs.cmd("migrate-set-parameters", **{"block-incremental": True})
        w0, t0 = wire(2), time.monotonic()
        qs.cmd("migrate", uri="tcp:%s:%d" % (IPS[1], port))
        while True:
            st = qs.cmd("query-migrate")
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.02)
        t1 = time.monotonic()
        w1 = wire(2)
        if st["status"] != "completed":
            err = open(dst + "/qemu.err").read().strip()[-500:]
            raise RuntimeError("%s: migration %s: %s; destination QEMU said: %s" % (
                mode, st["status"], st.get("error-desc"), err))
        time.sleep(2)
        if not qd.cmd("query-status").get("running"):
            raise RuntimeError("%s: the destination does not run" % mode)
        obs.finish()
        return dict(method=mode, rate=rate, seconds=t1 - t0, wire=w1 - w0,
                    qemu_downtime_ms=st.get("downtime"), paused_ms=None,
                    job_gap_ms=obs.gap(t0, t1 + 2) * 1000, overlay_bytes=overlay,
                    steps_after=obs.last_step(), series=obs.series(t0 - 1, t1 + 2),
                    t_mig=[1.0, t1 - t0 + 1], disk_bytes=st.get("disk", {}).get("transferred"),
                    arrivals=obs.arrivals(t0, t1 + 2), summary=st)
    finally:
        obs.stop = True
        for q in (qs, qd):
            if q:
                q.close()
        qemu_kill(src)
        qemu_kill(dst)
        time.sleep(0.3)
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(dst, ignore_errors=True)


# --- checkpoints ------------------------------------------------------------

CK_MEM_MB = 4   # memory rewritten per round
CK_DISK_MB = 2  # disk written per round
CK_PY = f"""import mmap, os, time
# rewritten in place (no temporary copies): {CK_MEM_MB} MiB of a 64 MiB
# buffer, then a {CK_DISK_MB} MiB buffer written to a new file with O_DIRECT
# (no page-cache copy), both with fresh random data
keep = mmap.mmap(-1, 64 << 20)
fbuf = mmap.mmap(-1, {CK_DISK_MB} << 20)
rnd = open("/dev/urandom", "rb", buffering=0)
def fill(view):
    while len(view):
        view = view[rnd.readinto(view):]
if SCATTER:  # incompressible from the start: a changed page costs its chunk
    fill(memoryview(keep))
r = 0
while True:
    time.sleep(1)
    r += 1
    off = (r * {CK_MEM_MB} << 20) % len(keep)
    if SCATTER:  # one byte in each of SCATTER random pages
        idx = memoryview(os.urandom(4 * SCATTER)).cast("I")
        for i in idx:
            keep[(i % (len(keep) >> 12)) << 12] = r & 255 or 1
    else:
        fill(memoryview(keep)[off:off + ({CK_MEM_MB} << 20)])
        fill(memoryview(fbuf))
        fd = os.open("/root/round%d" % r, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
        os.write(fd, fbuf)
        os.fsync(fd)
        os.close(fd)
    print("ROUND", r, flush=True)
"""
SCATTER_PAGES = 1024
def ck_job(scatter):
    return "echo READY && exec python3 -u -c '%s'" % ("SCATTER = %d\n" % scatter + CK_PY)


def last_round(path, limit):
    b = open(path, "rb").read()[:limit]
    text, last = b"", 0
    while len(b) >= 5:
        n = struct.unpack(">I", b[1:5])[0]
        if b[0:1] == b"O":
            text += b[5:5 + n]
        b = b[5 + n:]
    for line in text.split(b"\n"):
        if line.startswith(b"ROUND "):
            last = int(line.split()[1])
    return last


def run_checkpoints(n_ck, scatter=0):
    """Checkpoints of a job that changes contiguous data, or (@scatter)
    one byte in each of that many random pages of its buffer per round."""
    gv(1, "vm", "create", "ck", "--image", IMAGE, "--memory", ARGS.memory, "--job", ck_job(scatter))
    gv(1, "vm", "start", "ck")
    obs = Observer(["%s/vms/ck/job.out" % data(1)])
    if not obs.wait_line(lambda l: l.startswith("ROUND"), 600):
        raise RuntimeError("checkpoint job never started its rounds")
    rows, prev_round = [], None
    for k in range(n_ck):
        time.sleep(ARGS.ck_interval)
        m = json.loads(gv(1, "checkpoint", "create", "ck", "--json").stdout)
        # the job output as of the checkpoint (its length is in the
        # manifest) tells exactly which rounds the checkpoint holds
        last = last_round("%s/vms/ck/job.out" % data(1), m["jobout_bytes"])
        # per round: the rewritten part of the buffer, the file buffer, the file
        per_round = SCATTER_PAGES * 4096 if scatter else (CK_MEM_MB + 2 * CK_DISK_MB) << 20
        changed = None if prev_round is None else (last - prev_round) * per_round
        rows.append(dict(n=k + 1, kind="scattered" if scatter else "contiguous", pause_ms=m.get("pause_ms"), qemu_downtime_ms=m.get("qemu_downtime_ms"),
                         bytes_added=m.get("bytes_added"), memory_bytes=m.get("memory", {}).get("bytes"),
                         rounds=None if prev_round is None else last - prev_round, changed=changed))
        prev_round = last
    obs.finish()
    gv(1, "vm", "delete", "--force", "ck")
    return rows


# --- report -----------------------------------------------------------------

def mb(b):
    return "%.1f MB" % (b / 1e6) if b is not None else "-"


def ms(x):
    return "%d ms" % round(x) if x is not None else "-"


def machine():
    cpu = ""
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            cpu = l.split(":", 1)[1].strip()
            break
    mem = int(open("/proc/meminfo").readline().split()[1]) // (1 << 20)
    qv = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return "%s, %d cores, %d GiB RAM, %s, %s, TCG" % (cpu, os.cpu_count(), mem, platform.platform(), qv)


def chart(runs, path):
    """The guest's work per 100 ms across each live migration (SVG)."""
    sel = [r for r in runs if r.get("series") and r["method"] in ("gridvm-live", "qemu-shared")]
    W, H, L, T, rowh = 860, 150 * len(sel) + 40, 70, 20, 150
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>']
    for k, r in enumerate(sel):
        s = r["series"]
        lead = next((i for i, v in enumerate(s) if v), 0)  # before the job's first line
        s = s[lead:]
        r = dict(r, t_mig=[x - lead * 0.1 for x in r["t_mig"]])
        y0 = T + k * rowh
        top = max(s) or 1
        pw = W - L - 20
        dx = pw / max(1, len(s))
        o.append('<text x="%d" y="%d" font-weight="bold">%s at %s: work per 100 ms (guest throughput); shaded: migration</text>' % (L, y0 + 10, r["method"], r["rate"]))
        a, b = r["t_mig"]
        o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#eee"/>' % (L + a / 0.1 * dx, y0 + 16, (b - a) / 0.1 * dx, rowh - 40))
        pts = " ".join("%.1f,%.1f" % (L + i * dx, y0 + rowh - 24 - v / top * (rowh - 44)) for i, v in enumerate(s))
        o.append('<polyline fill="none" stroke="#1f5fa8" stroke-width="1.2" points="%s"/>' % pts)
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (L, y0 + rowh - 24, W - 20, y0 + rowh - 24))
        for sec in range(0, int(len(s) * 0.1) + 1, max(1, int(len(s) * 0.1) // 10)):
            o.append('<text x="%.1f" y="%d" text-anchor="middle">%ds</text>' % (L + sec / 0.1 * dx, y0 + rowh - 12, sec))
        o.append('<text x="%d" y="%d" text-anchor="end">%d</text>' % (L - 4, y0 + 24, top))
        o.append('<text x="%d" y="%d" text-anchor="end">0</text>' % (L - 4, y0 + rowh - 24))
    o.append("</svg>")
    open(path, "w").write("\n".join(o))


def report(res, doc, svg):
    runs, cks = res["runs"], res.get("checkpoints", [])
    for r in runs:  # from the raw arrivals, so a report can be redone
        if r.get("arrivals"):
            r["job_gap_ms"] = gap_of(r["arrivals"]) * 1000
            steps = sorted(a[0] for a in r["arrivals"])
            r["lost_lines"] = steps[-1] - steps[0] + 1 - len(steps)
    o = ["# Benchmark: live migration and checkpoints", "",
         "Produced by `bench/migration.sh` on %s, %s." % (res["date"], res["machine"]), "",
         "Two network-namespace hosts on this machine (tests/e2e/hosts.sh), links shaped",
         "with tbf; both hosts hold the base image `%s` (debootstrap bookworm with" % IMAGE,
         "python3, %s). The VM: %s of memory, its disk an overlay of that image. The" % (mb(res.get("image_bytes")), res["memory"]),
         "job first copies `/usr/lib/python3.11` (blocks the destination has in its base",
         "image) and writes %d MiB of fresh random data to its disk, then prints a" % DISK_RANDOM_MB,
         "progress line every 10 ms while dirtying %d pages of a %d MiB buffer per line." % (PAGES_PER_TICK, WS_MB), "",
         "Methods, all in the same run:", "",
         "- **gridvm-live**: `gridvm migrate VM --to h2` (disk overlay copied with the",
         "  deduplicating transfer in passes, QEMU pre-copy with pause-before-switchover",
         "  and auto-converge over two multifd channels with zstd level 1, final disk",
         "  blocks while the last memory goes, confirm, cleanup);",
         "- **gridvm-live-plain**: the same with `--compress none` (one plain channel,",
         "  as the QEMU runs below);",
         "- **qemu-blk**: QEMU's own storage migration (`block` capability) of the whole",
         "  disk onto a blank disk: what a host without the base image must do;",
         "- **qemu-blk-inc**: the same with `block-incremental`: only the overlay, onto an",
         "  overlay of the destination's base image (QEMU's best case here);",
         "- **qemu-shared**: QEMU's memory migration with the disk shared (same file): no",
         "  disk copied; the downtime baseline.", "",
         "The QEMU runs use the command line gridvm gives QEMU (the disk as a named",
         "`-drive`, which block migration needs), started by hand in the namespaces and",
         "driven over QMP, with auto-converge like gridvm. *Bytes* are",
         "counted on h2's link (both directions). *QEMU downtime* is QEMU's own figure",
         "(`query-migrate`); *guest paused* is gridvm's time from the pause before",
         "switchover until QEMU completed and the final disk copy is done (the",
         "confirmation and the destination's `cont` follow); *job gap* is the longest time between two",
         "consecutive progress lines of the job arriving on the hosts (each line is",
         "printed 10 ms of guest time after the last), so it is the pause the job sees",
         "plus up to 10 ms.", ""]
    o += ["| link | method | total time | bytes on wire | QEMU downtime | guest paused | job gap |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        blank = r.get("summary", {}).get("total-time") == 0  # QEMU reported nothing
        o.append("| %s | %s | %.1f s | %s | %s | %s | %s |" % (
            r["rate"], r["method"], r["seconds"], mb(r["wire"]),
            "not reported" if blank else ms(r["qemu_downtime_ms"]),
            ms(r["paused_ms"]), ms(r["job_gap_ms"])))
    o += ["", "![guest throughput across live migrations](bench-migration.svg)", "",
          "The chart: the job's work (loop iterations) per 100 ms as its lines arrive,",
          "for gridvm-live and QEMU's own migration at each rate (from the job's first",
          "line up to 2 s after); the shaded span is the migration. As in the Xen paper's figures, the",
          "guest slows while its memory is copied (dirty tracking, auto-converge) and",
          "stops for the downtime.", ""]
    if cks:
        o += ["## Checkpoints", "",
              "A VM (%s) whose job every second rewrites in place %d MiB of a 64 MiB buffer" % (res["memory"], CK_MEM_MB),
              "and a %d MiB buffer with fresh random data (incompressible, unique) and writes" % CK_DISK_MB,
              "that buffer to a new file with O_DIRECT (no page-cache copy). %d checkpoints" % sum(1 for c in cks if c.get("kind") != "scattered"),
              "%s s apart with `gridvm checkpoint create`. *Changed* is what the job" % res.get("ck_interval"),
              "rewrote between two checkpoints (rounds x %d MiB: memory %d + %d MiB, disk %d MiB)," % (CK_MEM_MB + 2 * CK_DISK_MB, CK_MEM_MB, CK_DISK_MB, CK_DISK_MB),
              "the round count read from the job output each checkpoint holds; what the",
              "guest's kernel and the Python interpreter change besides is not in it.", "",
              "The *scattered* job instead fills its 64 MiB buffer with random data once, then",
              "sets one byte in each of %d random pages of it per round: changed counts those" % SCATTER_PAGES,
              "pages whole (%d KiB a round), as a page is what QEMU sends. This is the worst" % (SCATTER_PAGES * 4),
              "case for content-defined chunks of 64 KiB on average: one changed page makes",
              "its whole chunk new (gridvm stores such a chunk as a delta to the previous",
              "checkpoint's chunk at the same place).", "",
              "| job | # | pause | QEMU downtime | stored (added) | changed by the job | ratio |",
              "|---|---:|---:|---:|---:|---:|---:|"]
        for c in cks:
            ratio = "%.2fx" % (c["bytes_added"] / c["changed"]) if c.get("changed") else "-"
            o.append("| %s | %d | %s | %s | %s | %s | %s |" % (c.get("kind", ""), c["n"], ms(c["pause_ms"]), ms(c["qemu_downtime_ms"]),
                                                      mb(c["bytes_added"]), mb(c["changed"]) if c["changed"] else "(first)", ratio))
        o.append("")
    o += ["## Discussion", "", res.get("discussion", "(see docs/migration.md)"), ""]
    open(doc, "w").write("\n".join(o))
    chart(runs, svg)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="100mbit,20mbit")
    ap.add_argument("--methods", default="gridvm-live,gridvm-live-plain,qemu-blk,qemu-blk-inc,qemu-shared")
    ap.add_argument("--memory", default="384M")
    ap.add_argument("--checkpoints", type=int, default=5)
    ap.add_argument("--ck-interval", type=float, default=4)
    ap.add_argument("--results", default="/var/tmp/gridvm-bench-migration")
    ap.add_argument("--doc", default=ROOT + "/docs/bench-migration.md")
    ap.add_argument("--report-only", action="store_true")
    ARGS = ap.parse_args()
    os.makedirs(ARGS.results, exist_ok=True)
    resf = ARGS.results + "/results.json"
    if not ARGS.report_only:
        res = dict(date=time.strftime("%Y-%m-%d"), machine=machine(), memory=ARGS.memory,
                   ck_interval=ARGS.ck_interval, image_bytes=os.stat(image_path(1)).st_blocks * 512,
                   runs=[])
        n = 0
        for rate in ARGS.rates.split(","):
            hosts("hosts_shape 2 %s" % rate)
            for m in ARGS.methods.split(","):
                n += 1
                log("%s at %s" % (m, rate))
                r = run_gridvm(rate, n, m) if m.startswith("gridvm") else run_qemu(rate, n, m)
                log("  %.1f s, %s on the wire, QEMU downtime %s, job gap %s" % (
                    r["seconds"], mb(r["wire"]), ms(r["qemu_downtime_ms"]), ms(r["job_gap_ms"])))
                res["runs"].append(r)
                json.dump(res, open(resf, "w"), indent=1)
            hosts("hosts_unshape 2")
        if ARGS.checkpoints:
            log("checkpoints")
            res["checkpoints"] = (run_checkpoints(ARGS.checkpoints) +
                                  run_checkpoints(ARGS.checkpoints, SCATTER_PAGES))
            for c in res["checkpoints"]:
                log("  #%d pause %s, added %s, changed %s" % (c["n"], ms(c["pause_ms"]), mb(c["bytes_added"]), mb(c["changed"])))
        json.dump(res, open(resf, "w"), indent=1)
    res = json.load(open(resf))
    disc = ARGS.results + "/discussion.md"
    if os.path.exists(disc):
        res["discussion"] = open(disc).read().strip()
    report(res, ARGS.doc, ARGS.doc.replace(".md", ".svg"))
    log("wrote %s" % ARGS.doc)


if __name__ == "__main__":
    main()
