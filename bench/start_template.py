#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Instant start: a VM started from a template against a cold boot.

1. Command to the job's first output and to its exit, N runs each, in
   rounds (one of each launcher per round, so machine noise hits all):
     cold      `gridvm run --cold -- echo hi`
     template  `gridvm run --start template -- echo hi`
     by hand   plain QEMU restoring the same template by hand: the argv
               of a template-started gridvm VM (read from /proc), a fresh
               qcow2 overlay, x-ignore-shared, migrate-incoming of the
               template's state file, the root disk hot-plugged, cont, the
               job on the control port; output read from the job channel.
2. PSS per idle VM: 8 VMs from one template, then 8 booted cold, each
   job idle in `sleep`; PSS of each QEMU (smaps_rollup) once all are up.
3. Jobs per minute: J jobs of `sleep 1` through `gridvm run`, P at a
   time, cold and from the template.

  bench/start_template.py [--runs 20] [--idle 8] [--jobs 200] [--parallel 4] [--markdown]
Uses GV/GVD (default build/programs/...) and GRIDVM_SYSDATA's guest.
"""
import argparse, json, os, platform, shutil, socket, statistics, struct
import subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GV = os.environ.get("GV", os.path.join(ROOT, "build/programs/gridvm"))
GVD = os.environ.get("GVD", os.path.join(ROOT, "build/programs/gridvmd"))
SYSDATA = os.environ.get("GRIDVM_SYSDATA", "/var/lib/gridvm")


def gv(*args, check=True, **kw):
    return subprocess.run([GV, *args], check=check, capture_output=True, text=True, **kw)


def timed_run(argv):
    """Seconds to the first stdout byte and to exit; the output."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = p.stdout.read(1)
    t1 = time.monotonic()
    rest = p.stdout.read()
    p.wait()
    return t1 - t0, time.monotonic() - t0, (first + rest).decode()


class QMP:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        for _ in range(5000):
            try:
                self.s.connect(path)
                break
            except OSError:
                time.sleep(0.001)
        self.f = self.s.makefile("rw")
        self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, c, **a):
        self.f.write(json.dumps({"execute": c, "arguments": a}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "error" in r:
                raise RuntimeError(f"{c}: {r['error']}")
            if "return" in r:
                return r["return"]

    def close(self):
        self.s.close()


def template_argv(data):
    """The argv of a VM started from the template, with its VM directory."""
    gv("vm", "create", "probe", "--start", "template", "--job", "sleep 1000")
    gv("vm", "start", "probe")
    pid = json.loads(gv("vm", "show", "probe", "--json").stdout)["pid"]
    argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:-1]
    gv("vm", "delete", "--force", "probe")
    return [a.decode() for a in argv], f"{data}/vms/probe/"


def frames(path):
    try:
        b = open(path, "rb").read()
    except FileNotFoundError:
        return b""
    types, off = b"", 0
    while off + 5 <= len(b):
        n = struct.unpack(">I", b[off + 1:off + 5])[0]
        if off + 5 + n > len(b):
            break
        types += b[off:off + 1]
        off += 5 + n
    return types


def by_hand(argv, vmdir, tmpl_dir, image):
    """Restore the template by hand; seconds to the first 'O' and the 'X'."""
    d = tempfile.mkdtemp(prefix="gvbench-hand.", dir="/var/tmp")
    t0 = time.monotonic()
    a = [x.replace(vmdir, d + "/") for x in argv]
    with open(f"{d}/job.spec", "w") as f:  # fw_cfg's; the guest read its own long ago
        f.write("\n")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", image,
                    f"{d}/disk.qcow2"], check=True)
    subprocess.run(a, check=True)
    pid = int(open(f"{d}/qemu.pid").read())  # QEMU removes it when it ends
    q = QMP(f"{d}/qmp.sock")
    caps = lambda on: q.cmd("migrate-set-capabilities", capabilities=[
        {"capability": "x-ignore-shared", "state": on}])
    caps(True)
    q.cmd("migrate-incoming", uri=f"exec:cat '{tmpl_dir}/state'")
    while q.cmd("query-migrate").get("status") != "completed":
        time.sleep(0.001)
    caps(False)
    q.cmd("blockdev-add", driver="file", filename=f"{d}/disk.qcow2", **{"node-name": "file0"})
    q.cmd("blockdev-add", driver="file", filename=image,
          **{"node-name": "base-file", "read-only": True})
    q.cmd("blockdev-add", driver="raw", file="base-file",
          **{"node-name": "base0", "read-only": True})
    q.cmd("blockdev-add", driver="qcow2", file="file0", backing="base0",
          **{"node-name": "qcow0"})
    q.cmd("device_add", driver="virtio-blk-pci", drive="qcow0", id="vda", bus="rp0",
          serial="gridvm-root")
    q.cmd("cont")
    q.close()
    now = time.time()
    spec = (f"clock={int(now)}.{int(now % 1 * 1e9):09d}\nseed={os.urandom(32).hex()}\n"
            "hostname=hand\nroot=serial:gridvm-root\n\necho\0hi\0").encode()
    s = socket.socket(socket.AF_UNIX)
    s.connect(f"{d}/ctl.sock")
    s.sendall(b"J" + struct.pack(">I", len(spec)) + spec)
    s.close()
    first = None
    while True:
        f = frames(f"{d}/job.out")
        if first is None and b"O" in f:
            first = time.monotonic() - t0
        if b"X" in f:
            break
        time.sleep(0.001)
    try:
        os.kill(pid, 9)  # as `gridvm run` deletes its VM once the job ended
    except ProcessLookupError:
        pass
    while alive(pid):
        time.sleep(0.001)
    end = time.monotonic() - t0
    shutil.rmtree(d)
    return first, end


def alive(pid):
    """The process exists and is no zombie (a daemon's parent may reap late)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def ours(data):
    """Pids of the processes whose command line names our data directory."""
    pids = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and data.encode() in open(f"/proc/{p}/cmdline", "rb").read():
                pids.append(int(p))
        except OSError:
            pass
    return [p for p in pids if p != os.getpid()]


def stats(xs):
    return (statistics.median(xs), min(xs), max(xs),
            statistics.stdev(xs) if len(xs) > 1 else 0.0)


def pss_mib(pid):
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_vms(n, mode):
    names = [f"idle-{mode}-{i}" for i in range(n)]
    for nm in names:
        gv("vm", "create", nm, "--start", mode, "--job", "echo up; sleep 100000")
        gv("vm", "start", nm)
    for nm in names:  # each job has started (its first line is out)
        while "up" not in gv("vm", "logs", nm).stdout:
            time.sleep(0.2)
    pids = [json.loads(gv("vm", "show", nm, "--json").stdout)["pid"] for nm in names]
    pss = [pss_mib(p) for p in pids]
    rss = []
    for p in pids:
        for line in open(f"/proc/{p}/smaps_rollup"):
            if line.startswith("Rss:"):
                rss.append(int(line.split()[1]) / 1024)
    for nm in names:
        gv("vm", "delete", "--force", nm)
    return pss, rss


def throughput(jobs, par, mode):
    def one(i):
        r = subprocess.run([GV, "run", "--start", mode, "--", "sh", "-c", f"sleep 1; echo {i}"],
                           capture_output=True, text=True)
        return r.returncode == 0 and r.stdout.strip() == str(i)
    t0 = time.monotonic()
    with ThreadPoolExecutor(par) as ex:
        ok = sum(ex.map(one, range(jobs)))
    dt = time.monotonic() - t0
    return ok, dt, jobs / dt * 60


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    q = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                       text=True).stdout.splitlines()[0]
    return f"{cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB RAM, {platform.platform()}, {q}, TCG"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--idle", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--markdown", action="store_true")
    o = ap.parse_args()
    data = tempfile.mkdtemp(prefix="gvbench-tmpl.", dir="/var/tmp")
    os.environ.update(GRIDVM_DATA=data, GRIDVM_SOCKET=f"{data}/gridvmd.sock", GRIDVMD=GVD)
    os.environ.pop("GRIDVM_START", None)
    os.symlink(f"{SYSDATA}/guest", f"{data}/guest")
    os.mkdir(f"{data}/images")
    image = f"{SYSDATA}/images/default.img"
    os.symlink(image, f"{data}/images/default.img")
    out = []
    say = out.append
    try:
        load0 = os.getloadavg()[0]  # other work on the machine skews everything
        b = json.loads(gv("template", "build", "--json").stdout)
        tmpl_dir = f"{data}/templates/{b['name']}"
        argv, vmdir = template_argv(data)
        res = {"cold": ([], []), "template": ([], []), "hand": ([], [])}
        for i in range(o.runs):
            for mode in ("cold", "template"):
                f, e, text = timed_run([GV, "run", "--start", mode, "--", "echo", "hi"])
                assert text == "hi\n", text
                res[mode][0].append(f)
                res[mode][1].append(e)
            f, e = by_hand(argv, vmdir, tmpl_dir, image)
            res["hand"][0].append(f)
            res["hand"][1].append(e)
        say(f"Machine: {machine()}; load average {load0:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} after the latency runs")
        say(f"Template {b['name']}: built in {b['build_ms'] / 1000:.1f} s, "
            f"{b['bytes'] / 2**20:.0f} MiB on disk (RAM file + {os.path.getsize(tmpl_dir + '/state') / 1024:.0f} KiB state)")
        say("")
        say(f"Command to first output and to exit, {o.runs} runs each, 256 MiB guest, job `echo hi`")
        say("")
        say("| launcher | first output median | min | max | stdev | to exit median | min | max |")
        say("|---|---|---|---|---|---|---|---|")
        names = {"cold": "gridvm run --cold (boot)", "template": "gridvm run (template)",
                 "hand": "plain QEMU restoring the template by hand"}
        for k in ("cold", "template", "hand"):
            f, e = stats(res[k][0]), stats(res[k][1])
            say(f"| {names[k]} | {f[0]:.3f} s | {f[1]:.3f} | {f[2]:.3f} | {f[3]:.3f} | "
                f"{e[0]:.3f} s | {e[1]:.3f} | {e[2]:.3f} |")
        cf, tf, hf = (statistics.median(res[k][0]) for k in ("cold", "template", "hand"))
        say("")
        say(f"first output: template {cf / tf:.1f}x sooner than cold; agent overhead over "
            f"the hand restore {1000 * (tf - hf):.0f} ms ({100 * (tf - hf) / hf:.0f}%)")
        say("")
        say(f"Memory per idle VM ({o.idle} of each, job idle in `sleep`, PSS and RSS of each QEMU)")
        say("")
        say("| VMs | PSS median | min | max | RSS median |")
        say("|---|---|---|---|---|")
        for mode in ("template", "cold"):
            pss, rss = idle_vms(o.idle, mode)
            p = stats(pss)
            say(f"| {o.idle} from the template | " if mode == "template" else f"| {o.idle} booted cold | ")
            out[-1] += f"{p[0]:.1f} MiB | {p[1]:.1f} | {p[2]:.1f} | {statistics.median(rss):.1f} MiB |"
        say("")
        say(f"Jobs per minute: {o.jobs} jobs of `sleep 1; echo N` through `gridvm run`, "
            f"{o.parallel} at a time")
        say("")
        say("| start | jobs right | wall time | jobs/minute |")
        say("|---|---|---|---|")
        for mode in ("template", "cold"):
            ok, dt, jpm = throughput(o.jobs, o.parallel, mode)
            say(f"| {mode} | {ok}/{o.jobs} | {dt:.1f} s | {jpm:.0f} |")
        say("")
        say(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        for pid in ours(data):  # the agent and QEMUs of this data directory only
            os.kill(pid, 9)
        time.sleep(0.5)
        shutil.rmtree(data, ignore_errors=True)
    print("\n".join(out) if o.markdown else "\n".join(out).replace("|---", "").replace("---|", ""))


if __name__ == "__main__":
    main()
