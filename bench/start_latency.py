#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""VM start latency and memory per idle VM: gridvm against plain QEMU.

Start latency is the time from running the command to the job's first
output line on our stdout:
  gridvm:     `gridvm run -- echo ready` (agent already running)
  plain QEMU: qemu-system-x86_64 started by hand with the same kernel,
              initramfs, job spec, job channel (to stdout) and a fresh
              qcow2 overlay on the same default image.
Memory per idle VM: PSS of each QEMU process running `sleep` in the
guest (gridvm VMs and hand-started ones side by side), plus the agent.

  bench/start_latency.py [--runs 10] [--idle 4] [--memory 256]
Prints tables; --markdown prints them as Markdown for docs/.
"""
import argparse, json, os, platform, shutil, signal, statistics, struct
import subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GV = os.path.join(ROOT, "build/programs/gridvm")
GVD = os.path.join(ROOT, "build/programs/gridvmd")
SYSDATA = os.environ.get("GRIDVM_SYSDATA", "/var/lib/gridvm")


def jobspec(argv):
    spec = b"hostname=plain\nroot=/dev/vda\n\n"
    return spec + b"".join(a.encode() + b"\0" for a in argv)


def plain_argv(d, mem, stdout_path):
    g = os.path.join(SYSDATA, "guest")
    return ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg,thread=multi",
            "-cpu", "max", "-smp", "1", "-m", f"{mem}M", "-nodefaults",
            "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", f"{g}/vmlinuz", "-initrd", f"{g}/initrd.img",
            "-append", "console=ttyS0 quiet panic=-1 cryptomgr.notests",
            "-chardev", f"file,id=con0,path={d}/console.log", "-serial", "chardev:con0",
            "-fw_cfg", f"name=opt/gridvm/job,file={d}/job.spec",
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", f"file,id=gvjob,path={stdout_path}",
            "-device", "virtserialport,bus=vser0.0,chardev=gvjob,name=org.gridvm.job",
            "-blockdev", f"driver=file,filename={d}/disk.qcow2,node-name=file0",
            "-blockdev", "driver=qcow2,file=file0,node-name=qcow0",
            "-device", "virtio-blk-pci,drive=qcow0,id=vda"]


def make_plain_dir(job, mem):
    d = tempfile.mkdtemp(prefix="gvbench-plain.", dir="/var/tmp")
    with open(f"{d}/job.spec", "wb") as f:
        f.write(jobspec(job))
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    f"{SYSDATA}/images/default.img", f"{d}/disk.qcow2"], check=True)
    return d


def first_frame_time(stream, t0, want=b"O"):
    """Read frames from a binary stream until the first of type `want`."""
    buf = b""
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            return None
        buf += chunk
        while len(buf) >= 5:
            t, n = buf[0:1], struct.unpack(">I", buf[1:5])[0]
            if len(buf) < 5 + n:
                break
            if t == want:
                return time.monotonic() - t0
            buf = buf[5 + n:]


def run_plain_once(mem):
    """Time from exec to the first job output; the disk overlay is created
    inside the timed region as gridvm does."""
    t0 = time.monotonic()
    d = make_plain_dir(["echo", "ready"], mem)
    p = subprocess.Popen(plain_argv(d, mem, "/dev/stdout"), stdout=subprocess.PIPE)
    first = first_frame_time(p.stdout, t0)
    p.wait()
    total = time.monotonic() - t0
    shutil.rmtree(d)
    return first, total


def run_gridvm_once(env):
    t0 = time.monotonic()
    p = subprocess.Popen([GV, "run", "--", "echo", "ready"], stdout=subprocess.PIPE, env=env)
    line = p.stdout.readline()
    first = time.monotonic() - t0
    p.wait()
    total = time.monotonic() - t0
    assert line == b"ready\n" and p.returncode == 0, (line, p.returncode)
    return first, total


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None


def stats(xs):
    xs = [x for x in xs if x is not None]
    med = statistics.median(xs)
    return med, min(xs), max(xs), statistics.pstdev(xs)


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGESIZE") >> 30
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                          text=True).stdout.splitlines()[0]
    return f"{cpu}, {os.cpu_count()} CPUs, {mem} GiB RAM, {platform.platform()}, {qemu}, TCG"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--idle", type=int, default=4)
    ap.add_argument("--memory", type=int, default=256)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()

    data = tempfile.mkdtemp(prefix="gvbench.", dir="/var/tmp")
    os.symlink(f"{SYSDATA}/guest", f"{data}/guest")
    os.makedirs(f"{data}/images")
    os.symlink(f"{SYSDATA}/images/default.img", f"{data}/images/default.img")
    env = dict(os.environ, GRIDVM_DATA=data, GRIDVM_SOCKET=f"{data}/gridvmd.sock",
               GRIDVMD=GVD)
    plain_procs, dirs = [], []
    try:
        subprocess.run([GV, "host", "info"], env=env, check=True, capture_output=True)
        gv_first, gv_total, pl_first, pl_total = [], [], [], []
        for i in range(a.runs):  # interleaved, so drift hits both alike
            f, t = run_gridvm_once(env); gv_first.append(f); gv_total.append(t)
            f, t = run_plain_once(a.memory); pl_first.append(f); pl_total.append(t)
            print(f"run {i + 1}/{a.runs}: gridvm {gv_first[-1]:.3f}s plain {pl_first[-1]:.3f}s",
                  file=sys.stderr)

        # idle VMs side by side
        for i in range(a.idle):
            subprocess.run([GV, "vm", "create", f"idle{i}", "--memory", f"{a.memory}M",
                            "--", "sleep", "100000"], env=env, check=True, capture_output=True)
            subprocess.run([GV, "vm", "start", f"idle{i}"], env=env, check=True,
                           capture_output=True)
            d = make_plain_dir(["sleep", "100000"], a.memory)
            dirs.append(d)
            plain_procs.append(subprocess.Popen(plain_argv(d, a.memory, f"{d}/job.out")))
        time.sleep(15)  # let every guest boot and settle
        gv_pss = []
        for i in range(a.idle):
            vm = json.loads(subprocess.run([GV, "vm", "show", f"idle{i}", "--json"], env=env,
                                           check=True, capture_output=True).stdout)
            gv_pss.append(pss_kib(vm["pid"]))
        pl_pss = [pss_kib(p.pid) for p in plain_procs]
        agent = subprocess.run(["pgrep", "-f", f"gridvmd --daemon --socket {data}"],
                               capture_output=True, text=True).stdout.split()
        agent_pss = pss_kib(int(agent[0])) if agent else None
    finally:
        for p in plain_procs:
            p.kill()
            p.wait()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        subprocess.run(["pkill", "-f", f"gridvmd --daemon --socket {data}"])
        subprocess.run(["pkill", "-9", "-f", f"{data}/vms/"])
        time.sleep(0.5)
        shutil.rmtree(data, ignore_errors=True)

    rows = [("gridvm run (via agent)", stats(gv_first), stats(gv_total)),
            ("plain qemu-system-x86_64", stats(pl_first), stats(pl_total))]
    md = a.markdown
    print(f"\nMachine: {machine()}")
    print(f"Start latency, {a.runs} runs each, {a.memory} MiB guest, job `echo ready`\n")
    hdr = ["launcher", "first output median", "min", "max", "stdev", "to exit median"]
    if md:
        print("| " + " | ".join(hdr) + " |\n|" + "---|" * len(hdr))
    else:
        print(f"{hdr[0]:<26} {hdr[1]:>20} {hdr[2]:>7} {hdr[3]:>7} {hdr[4]:>7} {hdr[5]:>15}")
    for name, f, t in rows:
        cells = [f"{f[0]:.3f} s", f"{f[1]:.3f}", f"{f[2]:.3f}", f"{f[3]:.3f}", f"{t[0]:.3f} s"]
        if md:
            print(f"| {name} | " + " | ".join(cells) + " |")
        else:
            print(f"{name:<26} {cells[0]:>20} {cells[1]:>7} {cells[2]:>7} {cells[3]:>7} {cells[4]:>15}")
    overhead = stats(gv_first)[0] - stats(pl_first)[0]
    print(f"\nagent overhead to first output (difference of medians): {overhead * 1000:.0f} ms\n")

    print(f"Memory per idle VM ({a.idle} of each running `sleep`, PSS after 15 s)\n")
    g, p = stats(gv_pss), stats(pl_pss)
    hdr = ["launcher", "PSS median", "min", "max"]
    if md:
        print("| " + " | ".join(hdr) + " |\n|---|---|---|---|")
        print(f"| gridvm VM (QEMU process) | {g[0] / 1024:.1f} MiB | {g[1] / 1024:.1f} | {g[2] / 1024:.1f} |")
        print(f"| plain QEMU | {p[0] / 1024:.1f} MiB | {p[1] / 1024:.1f} | {p[2] / 1024:.1f} |")
        if agent_pss:
            print(f"| gridvmd agent (once per host) | {agent_pss / 1024:.1f} MiB | | |")
    else:
        print(f"{'gridvm VM (QEMU process)':<30} {g[0] / 1024:8.1f} MiB  min {g[1] / 1024:.1f}  max {g[2] / 1024:.1f}")
        print(f"{'plain QEMU':<30} {p[0] / 1024:8.1f} MiB  min {p[1] / 1024:.1f}  max {p[2] / 1024:.1f}")
        if agent_pss:
            print(f"{'gridvmd agent (once per host)':<30} {agent_pss / 1024:8.1f} MiB")


if __name__ == "__main__":
    main()
