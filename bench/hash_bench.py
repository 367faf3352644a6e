#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Block index hashing throughput: gridvm against sha256sum, side by side.

For each test file (random data with zero regions, in /var/tmp, page cache
warmed first) it times, alternating the tools within each round:
  gridvm index t=1    gv_blockidx_build with 1 thread (block hashes + the
                      whole-image SHA-256, all on one core)
  gridvm index t=all  the same with threads = online CPUs
  sha256sum           coreutils, the whole-image SHA-256 only
  openssl dgst        OpenSSL's CLI, the whole-image SHA-256 only (SHA-NI)
Every tool is timed the same way: wall clock around the process. The
index's image SHA-256 is checked against sha256sum's. Also printed: one
core's SHA-256 speed (`openssl speed -evp sha256 -bytes 4096`), the bound
it puts on the index build, and the 2006 study's figure as a reference.

  bench/hash_bench.py [--sizes 256M,1G,2G] [--runs 3] [--markdown] [--keep]
"""
import argparse, datetime, os, platform, re, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_BIN = os.path.join(ROOT, "build/bench-hash")
MIB = 1 << 20
ZERO_EVERY = 8  # one 4 MiB region in 8 is zeros: 12.5 % zero blocks


def sh(argv):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True).stdout


def build_bench():
    subprocess.run(["ninja", "-C", os.path.join(ROOT, "build")], check=True,
                   stdout=subprocess.DEVNULL)
    sh(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(ROOT, "include"),
        "-o", BENCH_BIN, os.path.join(ROOT, "bench/hash_bench.c"),
        os.path.join(ROOT, "build/lib/libgridvm.a"), "-lcrypto", "-lm", "-lpthread"])


def parse_size(s):
    m = re.fullmatch(r"(\d+)([MG])", s)
    return int(m.group(1)) << (20 if m.group(2) == "M" else 30)


def make_file(size):
    path = f"/var/tmp/gvbench-hash-{size >> 20}M.img"
    if os.path.exists(path) and os.path.getsize(path) == size:
        return path
    with open(path, "wb") as f:
        for i in range(size // (4 * MIB)):
            f.write(bytes(4 * MIB) if i % ZERO_EVERY == 3 else os.urandom(4 * MIB))
        f.write(os.urandom(size % (4 * MIB)))
    return path


def warm(path):
    with open(path, "rb") as f:
        while f.read(16 * MIB):
            pass


def timed(argv):
    t0 = time.perf_counter()
    out = sh(argv)
    return time.perf_counter() - t0, out


def tools(path):
    return [
        ("gridvm index t=1", [BENCH_BIN, path, "1"]),
        ("gridvm index t=all", [BENCH_BIN, path, "0"]),
        ("sha256sum", ["sha256sum", path]),
        ("openssl dgst -sha256", ["openssl", "dgst", "-sha256", "-r", path]),
    ]


def bench_file(path, runs):
    times = {name: [] for name, _ in tools(path)}
    digests = {}
    for _ in range(runs):
        for name, argv in tools(path):
            t, out = timed(argv)
            times[name].append(t)
            digests[name] = out.split()[0]
    if len(set(digests.values())) != 1:
        sys.exit(f"digest mismatch on {path}: {digests}")
    return times


def openssl_speed():
    out = sh(["openssl", "speed", "-evp", "sha256", "-bytes", "4096", "-seconds", "3"])
    kbs = float(out.strip().splitlines()[-1].split()[-1].rstrip("k"))
    return kbs * 1000  # bytes per second


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    mem = int(next(l.split()[1] for l in open("/proc/meminfo")
                   if l.startswith("MemTotal"))) * 1024
    shani = "sha_ni" in open("/proc/cpuinfo").read()
    return (f"{cpu}, {os.cpu_count()} CPUs{' (sha_ni)' if shani else ''}, "
            f"{mem / 2**30:.0f} GiB RAM, Linux {platform.release()}, "
            f"{sh(['openssl', 'version']).strip()}, "
            f"{sh(['sha256sum', '--version']).splitlines()[0]}")


def table(rows, md):
    head = ["size", "tool", "seconds (median)", "min", "GB/s (median)", "GB/s (best)"]
    if md:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        fmt = "{:>9}  {:<30} {:>16} {:>8} {:>13} {:>11}"
        for r in [head] + rows:
            print(fmt.format(*r))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256M,1G,2G")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the test files")
    a = ap.parse_args()
    build_bench()
    load0 = open("/proc/loadavg").read().split()[0]
    speed = openssl_speed()
    ncpu = os.cpu_count()
    rows, paths = [], []
    for size in map(parse_size, a.sizes.split(",")):
        path = make_file(size)
        paths.append(path)
        warm(path)
        times = bench_file(path, a.runs)
        label = f"{size >> 20} MiB"
        for name, ts in times.items():
            med = statistics.median(ts)
            rows.append([label, name, f"{med:.3f}", f"{min(ts):.3f}", f"{size / med / 1e9:.2f}",
                         f"{size / min(ts) / 1e9:.2f}"])
        nz = 1 - 1 / ZERO_EVERY
        one = size * (1 + nz) / speed
        rows.append([label, "bound t=1 (SHA work / 1 core)", f"{one:.3f}", "", "",
                     f"{size / one / 1e9:.2f}"])
        allb = max(size / speed, size * (1 + nz) / speed / ncpu)
        rows.append([label, f"bound t={ncpu} (whole-image SHA)", f"{allb:.3f}", "", "",
                     f"{size / allb / 1e9:.2f}"])
    rate = f"{706e6 / 15.9 / 1e9:.3f}"
    rows.append(["706 MB", "2006 study (reference)", "15.900", "", rate, rate])
    when = datetime.date.today().isoformat()
    print(f"{'Recorded ' + when + ': ' if a.markdown else ''}Machine: {machine()}")
    print(f"One core, openssl speed -evp sha256 -bytes 4096: {speed / 1e9:.2f} GB/s; "
          f"files {100 / ZERO_EVERY:.1f} % zero blocks, 4 KiB blocks; "
          f"{a.runs} runs each, page cache warm\n")
    table(rows, a.markdown)
    print(f"\nload average before / after: {load0} / {open('/proc/loadavg').read().split()[0]}")
    if not a.keep:
        for p in paths:
            os.unlink(p)


if __name__ == "__main__":
    main()
