#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/transfer.sh - the disk-migration study's experiments on real images.
#
# How to run (root, Debian 12, the tree built in build/, the guest prepared
# by scripts/setup.sh; Debian's apt mirror reachable for the first run):
#
#   bench/transfer.sh                  # everything; writes docs/bench-transfer.md
#                                      # and docs/bench-transfer.svg
#   bench/transfer.sh --report-only    # re-write the doc from the last results
#   options: --rates 100mbit,20mbit,2mbit  --max-measure SECONDS (300)
#            --hash-runs N (3)  --results DIR  --no-doc  --methods LIST
#
# How long: about 35 minutes (most of it at 2 Mbit/s), plus about 2 minutes
# the first time to build the four debootstrap images (cached in
# /var/tmp/gridvm-bench-images; delete a file there to rebuild it).
#
# What it does:
#  1. images bullseye, bookworm, trixie (debootstrap minbase) and
#     bookworm-plus (bookworm + $PLUS_PACKAGES, default python3,perl), built
#     with `gridvm image build` by a private agent in a private data dir;
#  2. two network-namespace hosts (tests/e2e/hosts.sh), each with its own
#     agent; h1 holds all four images (block similarity table), h2 holds and
#     indexes bullseye, bookworm and trixie;
#  3. moves bookworm-plus from h1 to h2 over links shaped with tbf to each
#     rate, with: a plain TCP copy (nc, the whole file, not sparse-aware),
#     gridvm without local blocks, gridvm with local blocks and each codec,
#     rsync (daemon on h1, the most similar image as the basis, -z), once
#     with --inplace --no-whole-file and once without --inplace, and
#     casync (store served over HTTP from h1, the local images as seeds);
#     wall time and bytes on h2's eth0 for each, plus a 16 MiB nc stream per
#     link for what TCP itself costs; methods whose transfer would take
#     longer than --max-measure (300 s: keeps the run near 35 minutes) are
#     computed from the bytes an earlier (faster) link measured and the
#     link rate, and marked as computed;
#  4. the ideal bytes (the missing unique blocks zstd-compressed in 1 MiB
#     groups plus the zstd-compressed block index) and a model of what the
#     gridvm protocol sends;
#  5. unshaped loopback runs with the agents' CPU time; page-cache read speed;
#  6. `gridvm image index` against sha256sum and openssl dgst on each image.
# Raw results stay in /var/tmp/gridvm-bench-transfer (results.jsonl, logs).
# Needs rsync, casync and netcat-openbsd (installed with apt-get if missing).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "FAILED: $*" >&2; exit 1; }
# shellcheck source=../tests/e2e/hosts.sh
source "$ROOT/tests/e2e/hosts.sh"   # GV, GVD, hosts_* (also set -euo pipefail)

SYSDATA=${GRIDVM_SYSDATA:-/var/lib/gridvm}
CACHE=${GRIDVM_BENCH_IMAGES:-/var/tmp/gridvm-bench-images}
PLUS_PACKAGES=${PLUS_PACKAGES:-python3,perl}
IMAGES=(bullseye bookworm trixie bookworm-plus)
LOCAL_IMAGES=(bullseye bookworm trixie)
PLUS=bookworm-plus
RATES=100mbit,20mbit,2mbit
MAX_MEASURE=300
HASH_RUNS=3
RES=/var/tmp/gridvm-bench-transfer
DOC=${BENCH_DOC:-$ROOT/docs/bench-transfer.md}
SVG=${BENCH_SVG:-$ROOT/docs/bench-transfer.svg}
REPORT_ONLY=0
WRITE_DOC=1
METHODS=(plain gridvm-nolocal gridvm-none gridvm-zlib gridvm-lz4 gridvm-zstd rsync rsync-tmp casync)
PY=/usr/bin/python3
NC_PORT=9000 RSYNC_PORT=8873 HTTP_PORT=8080

while [ $# -gt 0 ]; do
	case $1 in
	--rates) RATES=$2; shift ;;
	--max-measure) MAX_MEASURE=$2; shift ;;
	--hash-runs) HASH_RUNS=$2; shift ;;
	--results) RES=$2; shift ;;
	--methods) IFS=, read -r -a METHODS <<<"$2"; shift ;;
	--report-only) REPORT_ONLY=1 ;;
	--no-doc) WRITE_DOC=0 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) fail "unknown option $1 (see --help)" ;;
	esac
	shift
done

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# --- the Python helper (stdlib only; zstd and lz4 through ctypes) --------
write_helper() {
	mkdir -p "$RES"
	cat >"$RES/helper.py" <<'PYEOF'
import ctypes, datetime, html, json, math, os, platform, re, statistics, subprocess, sys, zlib

ZERO = bytes(32)
MB = 1e6


def rec(path, kvs):
    d = {}
    for kv in kvs:
        k, v = kv.split("=", 1)
        if k.startswith("s:"):
            d[k[2:]] = v
            continue
        if v in ("true", "false"):
            d[k] = v == "true"
            continue
        try:
            d[k] = int(v)
        except ValueError:
            try:
                d[k] = float(v)
            except ValueError:
                d[k] = v
    with open(path, "a") as f:
        f.write(json.dumps(d) + "\n")


# --- compression, as lib/xfer_proto.c does it ----------------------------
_zs = ctypes.CDLL("libzstd.so.1")
_zs.ZSTD_compressBound.restype = ctypes.c_size_t
_zs.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
_zs.ZSTD_compress.restype = ctypes.c_size_t
_zs.ZSTD_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
                              ctypes.c_size_t, ctypes.c_int]
_zs.ZSTD_isError.restype = ctypes.c_uint
_zs.ZSTD_isError.argtypes = [ctypes.c_size_t]
_l4 = ctypes.CDLL("liblz4.so.1")
_l4.LZ4_compressBound.restype = ctypes.c_int
_l4.LZ4_compress_fast.restype = ctypes.c_int
_l4.LZ4_compress_fast.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_int]


def clen(codec, data):
    if codec == "none":
        return len(data)
    if codec == "zlib":
        return len(zlib.compress(data, 6))
    if codec == "lz4":
        cap = _l4.LZ4_compressBound(len(data))
        out = ctypes.create_string_buffer(cap)
        n = _l4.LZ4_compress_fast(data, out, len(data), cap, 1)
        assert n > 0
        return n
    cap = _zs.ZSTD_compressBound(len(data))
    out = ctypes.create_string_buffer(cap)
    n = _zs.ZSTD_compress(out, cap, data, len(data), 3)
    assert not _zs.ZSTD_isError(n)
    return n


def load_idx(path):
    b = open(path, "rb").read()
    assert b[:8] == b"GVBIDX\0\1", path
    shift = int.from_bytes(b[12:16], "little")
    n = int.from_bytes(b[24:32], "little")
    assert len(b) == 160 + 32 * n, path
    return {"shift": shift, "size": int.from_bytes(b[16:24], "little"), "n": n,
            "zero": int.from_bytes(b[40:48], "little"), "hashes": b[128:128 + 32 * n],
            "raw": b}


def runs_of(blocks, maxrun=256):
    out = []
    for b in blocks:
        if out and out[-1][0] + out[-1][1] == b and out[-1][1] < maxrun:
            out[-1][1] += 1
        else:
            out.append([b, 1])
    return out


# Frame sizes (docs/transfer-protocol.md): u32 length + u8 type + payload
# + 16-byte MAC. DATA payload: 17-byte header + data; REQ: 12 bytes.
DATA_OVH, REQ_OVH = 4 + 1 + 17 + 16, 4 + 1 + 12 + 16
HANDSHAKE = (4 + 1 + 8 + 2 + 32) + (4 + 1 + 2 + 32 + 32) + (4 + 1 + 32) + (4 + 1 + 16) \
    + (4 + 1 + 16)  # H, h, A, a, Q


def ideal(img, plus_idx, out, *local_idx):
    P = load_idx(plus_idx)
    local = set()
    for p in local_idx:
        L = load_idx(p)
        h = L["hashes"]
        for i in range(L["n"]):
            x = h[32 * i:32 * i + 32]
            if x != ZERO:
                local.add(x)
    bs, n, h = 1 << P["shift"], P["n"], P["hashes"]
    seen, uniq, missing, nonzero = set(), [], [], 0
    for b in range(n):
        x = h[32 * b:32 * b + 32]
        if x == ZERO:
            continue
        nonzero += 1
        if x in seen:
            continue
        seen.add(x)
        uniq.append(b)
        if x not in local:
            missing.append(b)
    fd = os.open(img, os.O_RDONLY)

    def blocks_data(blocks):
        """the data of @blocks, read run by run, in order"""
        for first, cnt in runs_of(blocks, 4096):
            off = first * bs
            yield os.pread(fd, min(cnt * bs, P["size"] - off), off)

    def grouped(blocks, codecs):
        """the blocks concatenated, cut into 1 MiB groups, each compressed"""
        tot = {c: 0 for c in codecs}
        buf = b""
        for d in blocks_data(blocks):
            buf += d
            while len(buf) >= 256 * bs:
                g, buf = buf[:256 * bs], buf[256 * bs:]
                for c in codecs:
                    tot[c] += clen(c, g)
        if buf:
            for c in codecs:
                tot[c] += clen(c, buf)
        return tot

    def runwise(blocks, codecs):
        """what gridvm sends: one DATA frame per run of <= 256 consecutive
        needed blocks, compressed on its own, plus one REQ per run"""
        tot = {c: 0 for c in codecs}
        rs = runs_of(blocks, 256)
        for first, cnt in rs:
            off = first * bs
            d = os.pread(fd, min(cnt * bs, P["size"] - off), off)
            for c in codecs:
                tot[c] += clen(c, d) + DATA_OVH + REQ_OVH
        return tot, len(rs)

    codecs = ["none", "zlib", "lz4", "zstd"]
    idx_z = clen("zstd", P["raw"])
    idx_frame = 4 + 1 + 4 + idx_z + 16
    open_frame = 4 + 1 + 80 + 16  # the JSON request, about 80 bytes
    g = grouped(missing, codecs)
    m, nruns = runwise(missing, codecs)
    gn = grouped(uniq, ["zstd"])
    mn, nruns_nl = runwise(uniq, ["zstd"])
    r = {
        "block_size": bs, "blocks": n, "zero_blocks": P["zero"], "nonzero_blocks": nonzero,
        "unique_nonzero_blocks": len(uniq), "missing_unique_blocks": len(missing),
        "missing_raw_bytes": sum(len(d) for d in blocks_data(missing)),
        "missing_runs": nruns, "unique_runs": nruns_nl,
        "index_raw_bytes": len(P["raw"]), "index_zstd_bytes": idx_z,
        "data_groups": g,
        "ideal": {c: g[c] + idx_z for c in codecs},
        "ideal_nolocal_zstd": gn["zstd"] + idx_z,
        "model": {c: m[c] + idx_frame + open_frame + HANDSHAKE for c in codecs},
        "model_nolocal_zstd": mn["zstd"] + idx_frame + open_frame + HANDSHAKE,
    }
    os.close(fd)
    json.dump(r, open(out, "w"), indent=1)
    print("missing unique blocks %d (%.1f MB raw) in %d runs; ideal (zstd) %.2f MB; "
          "gridvm model %.2f MB" % (len(missing), r["missing_raw_bytes"] / MB, nruns,
                                    r["ideal"]["zstd"] / MB, r["model"]["zstd"] / MB))


def sh(*argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True).stdout.strip()
    except OSError:
        return "?"


def damon():
    """a DAMON pageout scheme (proactive reclaim of cold memory, page cache too)"""
    k = "/sys/kernel/mm/damon/admin/kdamonds"
    try:
        for d in sorted(os.listdir(k)):
            if not d.isdigit() or open(f"{k}/{d}/state").read().strip() != "on":
                continue
            c = f"{k}/{d}/contexts/0"
            aggr = int(open(f"{c}/monitoring_attrs/intervals/aggr_us").read())
            for sc in sorted(os.listdir(f"{c}/schemes")):
                if not sc.isdigit():
                    continue
                s = f"{c}/schemes/{sc}"
                if open(f"{s}/action").read().strip() == "pageout":
                    age = int(open(f"{s}/access_pattern/age/min").read())
                    return age * aggr / 1e6
    except (OSError, ValueError):
        pass
    return None


def machine(out):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    mem = int(next(l.split()[1] for l in open("/proc/meminfo")
                   if l.startswith("MemTotal"))) * 1024
    speed = sh("openssl", "speed", "-evp", "sha256", "-bytes", "4096", "-seconds", "3")
    try:
        sha = float(speed.splitlines()[-1].split()[-1].rstrip("k")) * 1000
    except (ValueError, IndexError):
        sha = 0
    d = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cores": os.cpu_count(), "sha_ni": "sha_ni" in open("/proc/cpuinfo").read(),
        "ram_gib": round(mem / 2**30, 1), "kernel": platform.release(),
        "debian": open("/etc/debian_version").read().strip(),
        "qemu": sh("qemu-system-x86_64", "--version").splitlines()[0],
        "rsync": sh("rsync", "--version").splitlines()[0],
        "casync": sh("dpkg-query", "-W", "-f", "casync ${Version}", "casync"),
        "netcat": sh("dpkg-query", "-W", "-f", "netcat-openbsd ${Version}", "netcat-openbsd"),
        "zstd": sh("dpkg-query", "-W", "-f", "libzstd1 ${Version}", "libzstd1"),
        "openssl": sh("openssl", "version"),
        "sha256_one_core": sha,
        "loadavg": open("/proc/loadavg").read().split()[0],
        "damon": damon(),
    }
    json.dump(d, open(out, "w"), indent=1)


# --- the report -------------------------------------------------------------
METHOD_LABEL = {
    "plain": "plain copy (nc, whole file)",
    "gridvm-nolocal": "gridvm --no-local, zstd",
    "gridvm-none": "gridvm, local blocks, none",
    "gridvm-zlib": "gridvm, local blocks, zlib",
    "gridvm-lz4": "gridvm, local blocks, lz4",
    "gridvm-zstd": "gridvm, local blocks, zstd",
    "rsync": "rsync -z --inplace, basis = %s",
    "rsync-tmp": "rsync -z (no --inplace), basis = %s",
    "casync": "casync extract, 3 seeds",
}
SHORT = {"plain": "plain", "gridvm-nolocal": "gv no-local", "gridvm-none": "gv none",
         "gridvm-zlib": "gv zlib", "gridvm-lz4": "gv lz4", "gridvm-zstd": "gv zstd",
         "rsync": "rsync inplace", "rsync-tmp": "rsync tmp", "casync": "casync"}
ORDER = list(METHOD_LABEL)
COLORS = ["#3b6ea5", "#e08a2c", "#4b9a4b", "#a04b8f"]


def label(m, basis):
    return METHOD_LABEL[m] % basis if "%s" in METHOD_LABEL[m] else METHOD_LABEL[m]


def rate_bits(r):
    m = re.fullmatch(r"(\d+)([a-z]*)", r.lower())
    mult = {"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[m.group(2)]
    return int(m.group(1)) * mult


def rate_label(r):
    return "%g Mbit/s" % (rate_bits(r) / 1e6)


def fmt_s(x):
    return "%.0f" % x if x >= 100 else "%.1f" % x if x >= 10 else "%.2f" % x


def fmt_mb(x):
    return "%.1f" % (x / MB) if x >= 10 * MB else "%.2f" % (x / MB)


def svg_chart(rows, rates, ideal, path):
    """two panels of grouped bars (log scale): wall time and bytes on the wire"""
    W, PH, L, R, T = 1000, 330, 60, 80, 40
    H = T + 2 * PH + 30
    meths = [m for m in ORDER if any(r["method"] == m for r in rows)]
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="11">' % (W, H),
           '<rect width="100%" height="100%" fill="white"/>',
           '<defs><pattern id="hatch" width="5" height="5" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="5" height="5" fill="white"/>'
           '<line x1="0" y1="0" x2="0" y2="5" stroke="#555" stroke-width="1.5"/>'
           '</pattern></defs>',
           '<text x="%d" y="18" font-size="14" font-weight="bold">bookworm-plus from h1 to h2 '
           '(h2 holds bullseye, bookworm, trixie)</text>' % L]
    gw = (W - L - R) / len(meths)
    bw = gw * 0.8 / len(rates)

    def panel(y0, title, get, label, hline=None):
        vals = [get(r) for r in rows if not r.get("error") and get(r) > 0]
        lo = 10 ** math.floor(math.log10(min(vals + ([hline] if hline else []))))
        hi = 10 ** math.ceil(math.log10(max(vals)))
        top, bot = y0 + 20, y0 + PH - 40

        def y(v):
            return bot - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) \
                * (bot - top)
        out.append('<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>'
                   % (L, y0 + 8, html.escape(title)))
        e = lo
        while e <= hi * 1.0001:
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
                       % (L, y(e), W - R, y(e)))
            out.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>'
                       % (L - 6, y(e) + 4, e))
            e *= 10
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000"/>' % (L, bot, W - R, bot))
        for i, m in enumerate(meths):
            x0 = L + i * gw + gw * 0.1
            for j, rt in enumerate(rates):
                r = next((r for r in rows if r["method"] == m and r["rate"] == rt), None)
                if not r or r.get("error") or get(r) <= 0:
                    continue
                v, x = get(r), x0 + j * bw
                fill = COLORS[j % len(COLORS)]
                meas = r["measured"]
                out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"%s>'
                           '<title>%s, %s: %s%s</title></rect>'
                           % (x, y(v), bw - 2, bot - y(v), fill if meas else "url(#hatch)",
                              "" if meas else ' stroke="%s" stroke-width="2"' % fill,
                              html.escape(METHOD_LABEL[m].split(",")[0]), rate_label(rt),
                              label(v), "" if meas else " (computed)"))
                out.append('<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle">%s</text>'
                           % (x + (bw - 2) / 2, y(v) - 3, label(v)))
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                       % (L + i * gw + gw / 2, bot + 16, html.escape(SHORT[m])))
        if hline:
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#c00" '
                       'stroke-dasharray="6,4"/>' % (L, y(hline), W - R, y(hline)))
            out.append('<text x="%d" y="%.1f" fill="#c00">ideal</text>'
                       '<text x="%d" y="%.1f" fill="#c00">%s MB</text>'
                       % (W - R + 4, y(hline) - 2, W - R + 4, y(hline) + 11, label(hline)))

    panel(T, "wall time (seconds, log scale)", lambda r: r["seconds"], fmt_s)
    panel(T + PH, "bytes on the wire at h2's eth0, rx + tx (MB, log scale)",
          lambda r: r["wire"] / MB,
          lambda v: ("%.0f" if v >= 100 else "%.1f" if v >= 10 else "%.2f") % v, ideal / MB)
    ly = T + 2 * PH - 5
    for j, rt in enumerate(rates):
        out.append('<rect x="%d" y="%d" width="14" height="12" fill="%s"/>'
                   % (L + j * 130, ly, COLORS[j % len(COLORS)]))
        out.append('<text x="%d" y="%d">%s</text>' % (L + j * 130 + 20, ly + 10, rate_label(rt)))
    out.append('<rect x="%d" y="%d" width="14" height="12" fill="url(#hatch)" stroke="#555"/>'
               % (L + len(rates) * 130, ly))
    out.append('<text x="%d" y="%d">computed from the bytes and the link rate, not measured</text>'
               % (L + len(rates) * 130 + 20, ly + 10))
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


def md_table(head, rows):
    s = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
    for r in rows:
        s += "| " + " | ".join(str(x) for x in r) + " |\n"
    return s


def report(res, doc, svg):
    R = [json.loads(l) for l in open(os.path.join(res, "results.jsonl"))]
    meta = {}
    for r in R:
        if r["kind"] == "meta":
            meta[r["key"]] = r["value"]
    mach = json.load(open(os.path.join(res, "machine.json")))
    ideal_ = json.load(open(os.path.join(res, "ideal.json")))
    sim = json.load(open(os.path.join(res, "similarity.json")))
    imgs = json.load(open(os.path.join(res, "images.json")))
    rates = meta["rates"].split(",")
    basis = meta["basis"]
    xf = [r for r in R if r["kind"] == "xfer"]
    for r in xf:
        r["wire"] = r.get("rx", 0) + r.get("tx", 0)
    ideal_z = ideal_["ideal"]["zstd"]
    o = []
    o.append("# Benchmark: moving a disk image between hosts\n")
    o.append("`bench/transfer.sh` (run: `bench/transfer.sh`, as root; about %d minutes, "
             "plus about 2 minutes the first time to build the images) reproduces the "
             "disk-migration study's experiments with real Debian images: how much of a new "
             "image the destination already holds, and how long moving it takes over slow "
             "links with gridvm's block transfer against a plain copy, rsync and casync. "
             "Everything below was written by the script; only the Discussion at the end is "
             "by hand.\n" % round(meta["total_seconds"] / 60))
    o.append("Recorded %s. The whole run took %.1f minutes%s; load average before: %s."
             % (mach["date"], meta["total_seconds"] / 60,
                " (images taken from the cache)" if not meta.get("built_images")
                else " (including %d s of image building)" % meta.get("build_seconds", 0),
                mach["loadavg"]) + (" Load average at the end: %s. Other sessions were "
                "using this machine at the same time (their load shows in the CPU-bound "
                "numbers: hashing and loopback)." % meta["loadavg_end"]
                if "loadavg_end" in meta else "") + "\n")
    o.append("## Machine\n")
    o.append(md_table(["", ""], [
        ["CPU", "%s, %d cores%s" % (mach["cpu"], mach["cores"], " (SHA-NI)" if mach["sha_ni"] else "")],
        ["RAM", "%s GiB" % mach["ram_gib"]],
        ["kernel", "Linux %s, Debian %s" % (mach["kernel"], mach["debian"])],
        ["QEMU", mach["qemu"]], ["rsync", mach["rsync"]], ["casync", mach["casync"]],
        ["netcat", mach["netcat"]], ["zstd", mach["zstd"]], ["OpenSSL", mach["openssl"]],
        ["SHA-256, one core", "%.2f GB/s (`openssl speed -evp sha256 -bytes 4096`)"
         % (mach["sha256_one_core"] / 1e9)],
    ]))
    if mach.get("damon"):
        o.append("\n**Page cache:** this VM runs DAMON with a `pageout` scheme: memory not "
                 "accessed for about %.0f s, page cache included, is reclaimed although most "
                 "RAM is free. A \"warm\" cache lasts only that long, so before every "
                 "transfer the script reads the source image (h1) and h2's three images once "
                 "(untimed), and the hashing runs read each file right before timing it.\n"
                 % mach["damon"])
    o.append("\nThe two hosts are network namespaces on this one machine "
             "(`tests/e2e/hosts.sh`), joined by veth pairs and a bridge, each with its own "
             "gridvm agent; \"shaped\" means tbf on both directions of both hosts' links "
             "(burst 4 ms of traffic, at least 4 frames; 50 ms queue). There is no added "
             "delay (the machine has no netem), so the round-trip time is well under a "
             "millisecond plus whatever the tbf queue holds.\n")

    o.append("## Images\n")
    o.append("Built with `gridvm image build NAME --suite SUITE` (debootstrap minbase, raw "
             "ext4 sized at used + 1/3 + 256 MiB); bookworm-plus adds `--packages %s`.\n"
             % meta["plus_packages"])
    rows = []
    for n in meta["images"].split(","):
        i = imgs[n]
        rows.append([n, "%.1f" % (i["size"] / MB), "%.1f" % (i["allocated"] / MB),
                     i["blocks"], i["blocks"] - i["zero_blocks"]])
    o.append(md_table(["image", "size (MB)", "allocated (MB)", "4 KiB blocks",
                       "non-zero blocks"], rows))
    o.append("\n## Similarity\n")
    o.append("`gridvm image similarity %s`: the share of each image's (row) non-zero 4 KiB "
             "blocks found in each other image (column), and in all the others together. "
             "The study's table compared Slackware 9.0, 9.1 and 10.0 the same way.\n"
             % " ".join(meta["images"].split(",")))
    names = [r["name"] for r in sim["rows"]]
    rows = []
    for r in sim["rows"]:
        rows.append([r["name"], r["nonzero_blocks"]] +
                    ["-" if c == r["name"] else "%.1f %%" % (100 * r["in"][c]) for c in names] +
                    ["%.1f %%" % (100 * r["in_all_others"])])
    o.append(md_table(["image", "non-zero blocks"] + names + ["all others"], rows))
    o.append("\nThe most similar image to %s is **%s**: rsync gets it as its basis file.\n"
             % (PLUS_NAME, basis))
    o.append("```\n%s\n```\n" % open(os.path.join(res, "similarity.txt")).read().rstrip())

    o.append("## Preparation (not in the transfer times)\n")
    prep = [r for r in R if r["kind"] == "prep"]
    o.append(md_table(["step", "seconds", "note"],
                      [[r["name"], fmt_s(r["seconds"]), r.get("note", "")] for r in prep]))

    o.append("\n## The ideal\n")
    I = ideal_
    o.append("What the destination must receive at the least: the non-zero blocks of "
             "bookworm-plus that are in none of h2's images, each distinct block once, "
             "compressed (the blocks concatenated and cut into 1 MiB groups, each group "
             "compressed on its own with the codec and level gridvm uses: zstd 3, zlib 6, "
             "lz4 acceleration 1), plus the hash list as gridvm sends it (the block index, "
             "%d bytes = 128-byte header + 32 per block + 32, zstd-compressed to %d "
             "bytes). \"Model\" is what the gridvm protocol sends for the same blocks by its "
             "rules: one request per run of up to 256 consecutive missing blocks, each run "
             "compressed on its own, plus framing (length, type, header, 16-byte MAC) and "
             "the handshake; it should match gridvm's own count.\n"
             % (I["index_raw_bytes"], I["index_zstd_bytes"]))
    o.append(md_table(["", "value"], [
        ["non-zero blocks of %s" % PLUS_NAME, I["nonzero_blocks"]],
        ["distinct non-zero blocks", I["unique_nonzero_blocks"]],
        ["missing on h2 (distinct)", "%d blocks, %.1f MB raw, in %d runs"
         % (I["missing_unique_blocks"], I["missing_raw_bytes"] / MB, I["missing_runs"])],
        ["ideal, zstd (the target's reference)", "**%s MB**" % fmt_mb(I["ideal"]["zstd"])],
        ["ideal, none / zlib / lz4", " / ".join(fmt_mb(I["ideal"][c]) + " MB"
                                                 for c in ("none", "zlib", "lz4"))],
        ["gridvm model, zstd / none / zlib / lz4", " / ".join(
            fmt_mb(I["model"][c]) + " MB" for c in ("zstd", "none", "zlib", "lz4"))],
        ["ideal without local blocks (all distinct blocks), zstd",
         fmt_mb(I["ideal_nolocal_zstd"]) + " MB"],
        ["gridvm model without local blocks, zstd", fmt_mb(I["model_nolocal_zstd"]) + " MB"],
    ]))

    o.append("\n## Transfers over shaped links\n")
    o.append("bookworm-plus (%.1f MB file) from h1 to h2, which holds and has indexed "
             "bullseye, bookworm and trixie. Wall time from the start of the client "
             "command to its end (for gridvm: `gridvm image fetch`, which also verifies the "
             "whole-image SHA-256 and indexes the result); bytes: `hosts_wire_bytes 2` "
             "(rx + tx of h2's eth0, Ethernet frames without preamble/FCS) before and "
             "after. \"app\" is the method's own count where it has one (gridvm: protocol "
             "bytes both ways; rsync: total bytes sent + received). The fetched image was "
             "deleted between methods. Every result was checked against the source's "
             "SHA-256. Rows marked *computed* were not run: their time is the bytes of "
             "the busier direction measured on a faster link × 8 / link rate, plus the part "
             "of that faster link's time that was not transfer (their transfer would take "
             "longer than %d s; measuring them at 2 Mbit/s would add about 25 minutes to "
             "the run; the second table below shows how well this rule predicts times that "
             "were measured).\n"
             % (imgs[PLUS_NAME]["size"] / MB, meta["max_measure"]))
    o.append("Methods:\n\n"
             "- **plain**: `nc -N` on h1 sends the whole file (%d bytes, zero blocks "
             "included: not sparse-aware, like any plain stream copy) to `nc -l` on h2, "
             "which writes it to a file.\n"
             "- **gridvm --no-local**: `gridvm image fetch --no-local --compress zstd`: "
             "every distinct non-zero block is sent; zero blocks and repeats are not.\n"
             "- **gridvm, local blocks**: `gridvm image fetch --compress none|zlib|lz4|zstd`.\n"
             "- **rsync --inplace**: `rsync --inplace --no-whole-file -z --stats` "
             "(compression on; it negotiated %s) from an rsync daemon in h1's namespace; "
             "before it runs, h2's %s image is copied (`cp --sparse=always`, untimed) to "
             "the destination file name as the basis.\n"
             "- **rsync (no --inplace)**: the same without `--inplace`, rsync's default: "
             "it writes a temporary file and renames it, so it can use a basis block "
             "wherever it lies. With `--inplace` rsync can only use basis data at or after "
             "the position it is writing (earlier data may already be overwritten); the "
             "extra packages push most of bookworm's files to later offsets in "
             "bookworm-plus, so `--inplace` finds almost nothing but zeros.\n"
             "- **casync**: `casync make` of bookworm-plus on h1 (index + chunk store, "
             "default chunking: 64 KiB average, zstd), served by `python3 -m http.server "
             "-p HTTP/1.1` in h1's namespace; on h2 `casync extract` with "
             "`--seed=` each of bullseye, bookworm and trixie. casync chunks its seeds "
             "during the extract, which is part of its time.\n"
             % (imgs[PLUS_NAME]["size"], meta.get("rsync_compress", "zstd"), basis))
    for rt in rates:
        o.append("\n### %s\n" % rate_label(rt))
        plain = next((r for r in xf if r["rate"] == rt and r["method"] == "plain"), None)
        rows = []
        for m in ORDER:
            r = next((r for r in xf if r["rate"] == rt and r["method"] == m), None)
            if not r:
                continue
            lab = label(m, basis)
            if r.get("error"):
                rows.append([lab, "failed: " + r["error"], "", "", "", "", ""])
                continue
            t = fmt_s(r["seconds"]) + ("" if r["measured"] else " *computed*")
            rows.append([
                lab, t, fmt_mb(r["wire"]), fmt_mb(r["rx"]) + " / " + fmt_mb(r["tx"]),
                fmt_mb(r["app"]) if r.get("app") else "",
                "%.0f %%" % (100 * r["wire"] / ideal_z),
                "%.1fx" % (plain["seconds"] / r["seconds"]) if plain else ""])
        o.append(md_table(["method", "wall (s)", "wire (MB)", "rx / tx (MB)", "app (MB)",
                           "wire / ideal zstd", "faster than plain"], rows))
        notes = [r for r in xf if r["rate"] == rt and r.get("note")]
        if notes:
            o.append("\n" + "".join("- %s: %s\n" % (r["method"], r["note"]) for r in notes))
    cal = {r["rate"]: (r["rx"] + r["tx"]) / r["payload"] for r in R if r["kind"] == "calib"}
    if cal:
        o.append("\nWhat TCP/IP and Ethernet cost on each link: a 16 MiB plain stream (`nc`, h1 "
                 "to h2, before the methods), wire bytes (rx + tx of h2) per byte of payload, "
                 "and the ideal carried that way:\n")
        o.append(md_table(["link", "wire bytes per payload byte", "ideal (zstd) on the wire"],
                          [[rate_label(k), "%.3f" % v, fmt_mb(ideal_z * v) + " MB"]
                           for k, v in cal.items()]))
    o.append("\n![wall time and bytes on the wire per method and link](bench-transfer.svg)\n")
    good = [r for r in xf if r["measured"] and r.get("wire")]
    svg_chart(xf, rates, ideal_z, svg)

    # how well the formula of the computed rows predicts measured times
    o.append("\nHow well the rule for the computed rows predicts a measured time: for each "
             "method measured on two links, the slower link's time predicted from the "
             "faster one's (its time beyond bytes × 8 / rate, taken as fixed, plus the "
             "busier direction's bytes × 8 / the slower rate):\n")
    rows = []
    for m in ORDER:
        ms = [r for r in good if r["method"] == m]
        ms.sort(key=lambda r: -rate_bits(r["rate"]))
        for a, b in zip(ms, ms[1:]):
            busy = max(a["rx"], a["tx"])
            fixed = max(a["seconds"] - busy * 8 / rate_bits(a["rate"]), 0)
            pred = fixed + busy * 8 / rate_bits(b["rate"])
            rows.append([SHORT[m], "%s → %s" % (rate_label(a["rate"]), rate_label(b["rate"])),
                         fmt_s(fixed), fmt_s(pred), fmt_s(b["seconds"]),
                         "%+.1f %%" % (100 * (pred / b["seconds"] - 1))])
    o.append(md_table(["method", "links", "fixed part (s)", "predicted (s)", "measured (s)",
                       "error"], rows))

    o.append("\n## Unshaped loopback\n")
    lp = [r for r in R if r["kind"] == "loop"]
    dd = [r for r in R if r["kind"] == "dd"]
    o.append("The same transfer with no tbf on the links (veth to veth through the "
             "bridge; GRO means the byte count has fewer headers). CPU: user + system "
             "time of each host's agent process during the fetch, from "
             "`/proc/PID/stat` (the source agent compresses, the destination agent "
             "decompresses, verifies, writes, hashes the result and indexes it). "
             "Throughput is the image size over the wall time.\n")
    rows = []
    for r in lp:
        lab = label(r["method"], basis)
        if r.get("error"):
            rows.append([lab, "failed: " + r["error"], "", "", "", ""])
            continue
        rows.append([lab, fmt_s(r["seconds"]), fmt_mb(r["rx"] + r["tx"]),
                     "%.0f" % (imgs[PLUS_NAME]["size"] / r["seconds"] / MB),
                     "%.2f" % r["cpu_src"] if r.get("cpu_src", -1) >= 0 else "",
                     "%.2f" % r["cpu_dst"] if r.get("cpu_dst", -1) >= 0 else ""])
    o.append(md_table(["method", "wall (s)", "wire (MB)", "image MB/s", "CPU s source agent",
                       "CPU s destination agent"], rows))
    ph = [r for r in R if r["kind"] == "phases"]
    if ph:
        o.append("\nWhere a gridvm fetch spends its time (unshaped; one more fetch each, "
                 "through the agent's API to get its progress lines, which come at most every "
                 "200 ms, so each phase is ±0.2 s): rebuilding blocks found on h2, receiving "
                 "the missing ones, syncing and checking the whole-image SHA-256; then, after "
                 "the fetch's own count of seconds, registering the new image in h2's block "
                 "index (`gv_image_index`, which hashes the image again unless the fetch left "
                 "a current `.gvidx`) plus the API round trip.\n")
        rows = []
        for r in ph:
            first, last, res = {}, {}, None
            for line in open(r["log"]):
                if line.startswith("PROGRESS "):
                    p = json.loads(line[9:])
                    first.setdefault(p["phase"], p["seconds"])
                    last[p["phase"]] = p["seconds"]
                elif line.startswith("GRIDVM-RESULT "):
                    res = json.loads(line[14:])
            if not res or not res.get("ok"):
                continue
            end = res["summary"]["seconds"]
            order = [x for x in ("local", "remote", "verify", "done") if x in first]
            cells = {}
            for a, b in zip(order, order[1:]):
                cells[a] = first[b] - first[a]
            rows.append([r["codec"].replace("--no-local", " --no-local"),
                         "%.1f" % cells["local"] if "local" in cells else "-",
                         "%.1f" % cells["remote"] if "remote" in cells else "-",
                         "%.1f" % (end - first["verify"]) if "verify" in first else "-",
                         "%.2f" % end, "%.2f" % (r["wall"] - end), "%.2f" % r["wall"]])
        o.append(md_table(["codec", "local blocks (s)", "remote blocks (s)",
                           "sync + verify (s)", "fetch total (s)",
                           "index the result + API (s)", "wall (s)"], rows))
    if dd:
        o.append("\nReading the image from the page cache (`dd bs=1M of=/dev/null`, warm): "
                 + ", ".join("%s %.2f GB/s" % (r["image"], r["bytes"] / r["seconds"] / 1e9)
                             for r in dd) + ".\n")

    o.append("\n## Hashing\n")
    hs = [r for r in R if r["kind"] == "hash"]
    o.append("Per image, page cache warm, %s runs each, median (min): `gridvm image index "
             "NAME` after deleting `NAME.gvidx` (wall time of the CLI, and the time the "
             "agent reports: the SHA-256 of every 4 KiB block and of the whole image on all "
             "cores, saving the index, and re-adding the image to the host-wide block index), "
             "`gv_blockidx_build` alone (bench/hash_bench.c, all cores: the hashing only), "
             "`sha256sum` and `openssl dgst -sha256` (the whole-image SHA-256 only). The "
             "bound is one core's SHA-256 speed over the whole image: the whole-image "
             "digest is sequential.%s\n"
             % (meta.get("hash_runs"), " See also [bench-hash.md](bench-hash.md) for the "
                "hashing benchmark on synthetic files." if os.path.exists(
                    os.path.join(os.path.dirname(doc), "bench-hash.md")) else ""))
    rows = []

    def med(n, tool, key="seconds"):
        v = [r[key] for r in hs if r["image"] == n and r["tool"] == tool and key in r]
        return (statistics.median(v), min(v)) if v else (None, None)
    for n in meta["images"].split(","):
        size = imgs[n]["size"]
        row = [n, "%.0f" % (size / MB)]
        for tool, key in (("gridvm-index", "seconds"), ("gridvm-index", "agent_seconds"),
                          ("blockidx-build", "seconds"),
                          ("sha256sum", "seconds"), ("openssl", "seconds")):
            md, mn = med(n, tool, key)
            row.append("%.3f (%.3f), %.2f GB/s" % (md, mn, size / md / 1e9) if md else "")
        md, _ = med(n, "gridvm-index-current")
        row.append("%.3f" % md if md else "")
        row.append("%.3f" % (size / mach["sha256_one_core"]) if mach["sha256_one_core"] else "")
        rows.append(row)
    o.append(md_table(["image", "MB", "gridvm image index, wall (s)",
                       "the agent's own time (s)", "gv_blockidx_build alone (s)",
                       "sha256sum (s)", "openssl dgst (s)",
                       "index already current (s)", "bound (s)"], rows))

    # --- targets ---------------------------------------------------------
    o.append("\n## Targets\n")
    rows = []
    for rt in rates:
        g = next((r for r in xf if r["rate"] == rt and r["method"] == "gridvm-zstd"
                  and not r.get("error")), None)
        if g:
            rows.append(["within 5 %% of ideal, %s: app bytes" % rate_label(rt),
                         "%.1f %%" % (100 * g["app"] / ideal_z),
                         "met" if g["app"] <= 1.05 * ideal_z else "**not met**"])
            rows.append(["within 5 %% of ideal, %s: wire bytes (h2 eth0)" % rate_label(rt),
                         "%.1f %%" % (100 * g["wire"] / ideal_z),
                         "met" if g["wire"] <= 1.05 * ideal_z else "**not met**"])
            if rt in cal:
                f = cal[rt]
                rows.append(["within 5 %% of ideal, %s: wire bytes against the ideal carried "
                             "by TCP (ideal × %.3f, from the 16 MiB stream)" % (rate_label(rt), f),
                             "%.1f %%" % (100 * g["wire"] / (ideal_z * f)),
                             "met" if g["wire"] <= 1.05 * ideal_z * f else "**not met**"])
    for rt in rates:
        g = next((r for r in xf if r["rate"] == rt and r["method"] == "gridvm-zstd"), None)
        for other in ("rsync", "rsync-tmp", "casync"):
            o_ = next((r for r in xf if r["rate"] == rt and r["method"] == other), None)
            if g and o_ and not g.get("error") and not o_.get("error"):
                rows.append(["gridvm (zstd) faster than %s, %s" % (SHORT[other], rate_label(rt)),
                             "%s s vs %s s (%.1fx)" % (fmt_s(g["seconds"]), fmt_s(o_["seconds"]),
                                                       o_["seconds"] / g["seconds"]),
                             "met" if g["seconds"] < o_["seconds"] else "**not met**"])
    if mach["sha256_one_core"]:
        for n in meta["images"].split(","):
            v = [r["seconds"] for r in hs if r["image"] == n and r["tool"] == "gridvm-index"]
            if v:
                frac = imgs[n]["size"] / min(v) / mach["sha256_one_core"]
                ossl = min(r["seconds"] for r in hs if r["image"] == n and r["tool"] == "openssl")
                rows.append(["hashing near the SHA-256 limit, %s" % n,
                             "%.0f %% of one core's SHA-256 speed (best run; median %.0f %%); "
                             "%.0f %% of openssl dgst's speed"
                             % (100 * frac, 100 * imgs[n]["size"] / statistics.median(v)
                                / mach["sha256_one_core"], 100 * ossl / min(v)),
                             "met" if frac >= 0.8 else "**not met**"])
    if mach["sha256_one_core"]:
        for n in meta["images"].split(","):
            v = [r["seconds"] for r in hs if r["image"] == n and r["tool"] == "blockidx-build"]
            if v:
                frac = imgs[n]["size"] / min(v) / mach["sha256_one_core"]
                ossl = min(r["seconds"] for r in hs if r["image"] == n and r["tool"] == "openssl")
                rows.append(["hashing alone (gv_blockidx_build) near the limit, %s" % n,
                             "%.0f %% of one core's SHA-256 speed (best run); %.0f %% of "
                             "openssl dgst's speed" % (100 * frac, 100 * ossl / min(v)),
                             "met" if frac >= 0.8 else "**not met**"])
    o.append("A hashing row is \"met\" at 80 % of one core's SHA-256 speed or more.\n")
    o.append(md_table(["target", "result", "verdict"], rows))

    old = open(doc).read() if os.path.exists(doc) else ""
    m = re.search(r"<!-- discussion -->.*?<!-- /discussion -->", old, re.S)
    o.append("\n## Discussion\n")
    o.append(m.group(0) if m else "<!-- discussion -->\n(to be written)\n<!-- /discussion -->")
    open(doc, "w").write("\n".join(o).rstrip() + "\n")
    print("wrote", doc, "and", svg)


PLUS_NAME = "bookworm-plus"

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "rec":
        rec(args[0], args[1:])
    elif cmd == "ideal":
        ideal(*args)
    elif cmd == "machine":
        machine(args[0])
    elif cmd == "report":
        report(*args)
    elif cmd == "get":  # get FILE EXPR: a field of a JSON file
        d = json.load(open(args[0]))
        print(eval(args[1], {"d": d}))
    else:
        sys.exit("unknown helper command " + cmd)
PYEOF
	HELPER=$RES/helper.py
}

rec() { $PY "$HELPER" rec "$RES/results.jsonl" kind="$@"; }
jget() { $PY "$HELPER" get "$1" "$2"; }

# --- dependencies and binaries ------------------------------------------------
ensure_deps() {
	local need=()
	command -v rsync >/dev/null || need+=(rsync)
	command -v casync >/dev/null || need+=(casync)
	nc -h 2>&1 | grep -q -- "-N" || need+=(netcat-openbsd)
	[ ${#need[@]} = 0 ] && return 0
	log "installing ${need[*]} with apt-get"
	apt-get install -y "${need[@]}" >/dev/null 2>&1 ||
		{ apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; } ||
		fail "cannot install ${need[*]}"
}

# wait_bin PATH: another engineer may be rebuilding; retry up to 2 minutes
wait_bin() {
	local i
	for i in $(seq 120); do [ -x "$1" ] && return 0; sleep 1; done
	fail "no binary $1 (is the tree built?)"
}

# pids_of_agent SOCK: gridvmd processes started with --socket SOCK
pids_of_agent() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = gridvmd ] || continue
		tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "--socket $1 " && echo "${p#/proc/}"
	done
	return 0
}

# --- 1. images ------------------------------------------------------------------
BUILT=0
build_images() {
	local missing=() n suite pk d pid pids=() rc=0 t0
	mkdir -p "$CACHE"
	for n in "${IMAGES[@]}"; do [ -f "$CACHE/$n.img" ] || missing+=("$n"); done
	[ ${#missing[@]} -gt 0 ] || { log "images: all cached in $CACHE"; return 0; }
	wait_bin "$GV"; wait_bin "$GVD"
	# a private data dir with its own agent (as tests/e2e/lib.sh gv_setup)
	d=$(mktemp -d /var/tmp/gvbench-build.XXXXXX)
	mkdir -p "$d/images"
	ln -s "$SYSDATA/guest" "$d/guest"
	GRIDVM_DATA=$d "$GVD" --daemon --socket "$d/gridvmd.sock" >>"$d/gridvmd.log" 2>&1 ||
		fail "private agent did not start: $(tail -5 "$d/gridvmd.log")"
	for _ in $(seq 100); do [ -S "$d/gridvmd.sock" ] && break; sleep 0.1; done
	t0=$SECONDS
	log "images: building ${missing[*]} (debootstrap, in parallel; a few minutes)"
	for n in "${missing[@]}"; do
		suite=${n%-plus}; pk=()
		[ "$n" = "$suite" ] || pk=(--packages "$PLUS_PACKAGES")
		GRIDVM_DATA=$d GRIDVM_SOCKET=$d/gridvmd.sock GRIDVM_NO_AUTOSTART=1 \
			"$GV" image build "$n" --suite "$suite" "${pk[@]}" >"$d/build-$n.log" 2>&1 &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
	for n in "${missing[@]}"; do
		if [ -f "$d/images/$n.img" ]; then
			cp --sparse=always "$d/images/$n.img" "$CACHE/.$n.img.tmp"
			mv "$CACHE/.$n.img.tmp" "$CACHE/$n.img"
			[ "$n" = "$PLUS" ] && echo "$PLUS_PACKAGES" >"$CACHE/$n.packages"
		else
			echo "--- build log of $n:" >&2; tail -20 "$d/build-$n.log" >&2
		fi
	done
	for pid in $(pids_of_agent "$d/gridvmd.sock"); do kill "$pid"; done
	sleep 0.5
	rm -rf --one-file-system "$d"
	[ $rc = 0 ] || fail "image build failed"
	BUILT=$((SECONDS - t0))
	log "images: built in $BUILT s"
}

# --- helpers for the hosts ----------------------------------------------------
rate_bits() {
	local r=${1,,}
	[[ $r =~ ^([0-9]+)([a-z]*)$ ]] || fail "bad rate $1"
	case ${BASH_REMATCH[2]} in
	"" | bit) echo "${BASH_REMATCH[1]}" ;;
	kbit) echo $((BASH_REMATCH[1] * 1000)) ;;
	mbit) echo $((BASH_REMATCH[1] * 1000000)) ;;
	gbit) echo $((BASH_REMATCH[1] * 1000000000)) ;;
	*) fail "use bit/kbit/mbit/gbit rates, not $1" ;;
	esac
}
rx_bytes() { ip netns exec "${HOST_NS[$1]}" cat /sys/class/net/eth0/statistics/rx_bytes; }
CLK_TCK=$(getconf CLK_TCK)
agent_ticks() { # I: utime + stime of I's agent, in clock ticks
	local s
	s=$(cat "/proc/${HOST_AGENT_PID[$1]}/stat")
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo $((${12} + ${13}))
}
wait_port() { # I PORT
	local i
	for i in $(seq 100); do
		[ -n "$(hosts_exec "$1" ss -Htln "sport = :$2")" ] && return 0
		sleep 0.1
	done
	fail "nothing listens on port $2 in h$1"
}
sha_of() { openssl dgst -sha256 -r "$1" | cut -d' ' -f1; }

# --- the methods: setup_M (untimed), run_M (timed), clean_M ------------------
# run_M sets APP (the method's own byte count, or empty) and NOTE
DST=""      # h2's scratch directory for non-gridvm results
SRC_IMG=""  # bookworm-plus on h1
SRC_SHA=""
BASIS=""
RSYNC_COMPRESS=""
TAG=""
OUT=""

setup_plain() {
	OUT=$DST/plain.img
	hosts_exec 2 nc -l "$NC_PORT" >"$OUT" </dev/null 2>"$RES/nc-$TAG.err" &
	NC_PID=$!
	wait_port 2 "$NC_PORT"
}
run_plain() {
	hosts_exec 1 nc -N "${HOST_IP[2]}" "$NC_PORT" <"$SRC_IMG" >/dev/null || return 1
	wait "$NC_PID" || return 1
	NOTE="not sparse-aware: all $(stat -c %s "$SRC_IMG") bytes sent and written"
}
clean_plain() { rm -f "$DST/plain.img"; }

gv_fetch() { # CODEC [--no-local]
	local j=$RES/fetch-$TAG.json
	hosts_gv 2 image fetch "$PLUS" --from "${HOST_IP[1]}" --compress "$1" ${2:-} --json >"$j" \
		2>"$RES/fetch-$TAG.err" || return 1
	APP=$(jget "$j" 'd["bytes_on_wire"]')
	NOTE="$(jget "$j" '"%d blocks sent, %d local, %d zero; gridvm reports %.2f s" % (d["blocks_remote"], d["blocks_local"], d["blocks_zero"], d["seconds"])')"
}
setup_gridvm() { hosts_gv 2 image delete "$PLUS" >/dev/null 2>&1 || true; OUT=""; }
clean_gridvm() { hosts_gv 2 image delete "$PLUS" >/dev/null; }
run_gridvm_nolocal() { gv_fetch zstd --no-local; }
run_gridvm_none() { gv_fetch none; }
run_gridvm_zlib() { gv_fetch zlib; }
run_gridvm_lz4() { gv_fetch lz4; }
run_gridvm_zstd() { gv_fetch zstd; }

setup_rsync() {
	local t0
	OUT=$DST/$PLUS.img
	t0=$(now)
	cp --sparse=always "${HOST_DATA[2]}/images/$BASIS.img" "$OUT"
	BASIS_COPY=$(sub "$t0" "$(now)")
}
run_rsync() {
	local l=$RES/rsync-$TAG.log
	hosts_exec 2 rsync $RSYNC_INPLACE --no-whole-file -z --stats --debug=NSTR \
		"rsync://${HOST_IP[1]}:$RSYNC_PORT/img/$PLUS.img" "$OUT" >"$l" 2>&1 || return 1
	APP=$(awk '/^Total bytes sent:/ { gsub(",", "", $4); s = $4 }
		/^Total bytes received:/ { gsub(",", "", $4); r = $4 } END { print s + r }' "$l")
	RSYNC_COMPRESS=$(grep -oiE "compress: [a-z0-9]+" "$l" | head -1 | awk '{print $2}')
	NOTE="$(awk '/^Literal data:/ { gsub(",", "", $3); l = $3 } /^Matched data:/ { gsub(",", "", $3); m = $3 }
		END { printf "literal data %.1f MB, matched %.1f MB", l / 1e6, m / 1e6 }' "$l"); basis copy $BASIS_COPY s (untimed)"
}
clean_rsync() { rm -f "$OUT"; }
# the same without --inplace: rsync's default, a temporary file renamed into
# place, so basis blocks can be used wherever they are
setup_rsync_tmp() { setup_rsync; }
run_rsync_tmp() { RSYNC_INPLACE="" run_rsync; }
clean_rsync_tmp() { rm -f "$OUT" "$DST"/.bookworm-plus.img.*; }
RSYNC_INPLACE=--inplace

setup_casync() { OUT=$DST/$PLUS.img; rm -f "$OUT"; }
run_casync() {
	local s seeds=()
	for s in "${LOCAL_IMAGES[@]}"; do seeds+=("--seed=${HOST_DATA[2]}/images/$s.img"); done
	hosts_exec 2 casync extract --store="http://${HOST_IP[1]}:$HTTP_PORT/store.castr" \
		"${seeds[@]}" "http://${HOST_IP[1]}:$HTTP_PORT/$PLUS.caibx" "$OUT" \
		>"$RES/casync-$TAG.log" 2>&1 || return 1
	NOTE=""
}
clean_casync() { rm -f "$OUT"; }

declare -A LAST_BUSY LAST_RX LAST_TX LAST_APP LAST_RATE LAST_SECS
# estimate METHOD: bytes of the busier direction, before any measurement
estimate() {
	case $1 in
	plain) stat -c %s "$SRC_IMG" ;;
	gridvm-nolocal) jget "$RES/ideal.json" 'd["model_nolocal_zstd"]' ;;
	gridvm-*) jget "$RES/ideal.json" "d['model']['${1#gridvm-}']" ;;
	*) jget "$RES/ideal.json" 'd["model"]["zstd"] * 3' ;;
	esac
}

# warm: read the source and h2's images so every method starts with them in
# the page cache (this machine evicts page cache untouched for ~30 s)
warm() {
	local n
	cat "$SRC_IMG" >/dev/null
	for n in "${LOCAL_IMAGES[@]}"; do cat "${HOST_DATA[2]}/images/$n.img" >/dev/null; done
}

# calibrate RATE: a plain TCP stream of 16 MiB from h1 to h2 (nc, to
# /dev/null): the wire bytes per payload byte that TCP/IP/Ethernet cost here
calibrate() {
	local n=16777216 b0 r0 t0 pid
	hosts_exec 2 nc -l "$NC_PORT" >/dev/null </dev/null &
	pid=$!
	wait_port 2 "$NC_PORT"
	b0=$(hosts_wire_bytes 2); r0=$(rx_bytes 2); t0=$(now)
	head -c $n "$SRC_IMG" | hosts_exec 1 nc -N "${HOST_IP[2]}" "$NC_PORT" >/dev/null
	wait "$pid"
	local secs rx b1
	secs=$(sub "$t0" "$(now)"); b1=$(hosts_wire_bytes 2); rx=$(($(rx_bytes 2) - r0))
	rec calib s:rate="$1" payload=$n seconds="$secs" rx="$rx" tx=$((b1 - b0 - rx))
	log "$1 calibration: $n bytes of payload, $((b1 - b0)) on the wire, $secs s"
}

# xfer RATE METHOD: measure (or compute) one method on the current link
xfer() {
	local rate=$1 m=$2 bits busy pred fn b0 r0 c1 c2 t0 t1 b1 r1 rx tx secs rc
	pred=0
	if [ "$rate" != loopback ]; then
		bits=$(rate_bits "$rate")
		busy=${LAST_BUSY[$m]:-$(estimate "$m")}
		pred=$(awk -v b="$busy" -v r="$bits" 'BEGIN { printf "%.1f", b * 8 / r }')
	fi
	if awk -v p="$pred" -v x="$MAX_MEASURE" 'BEGIN { exit !(p > x) }'; then
		if [ -z "${LAST_BUSY[$m]:-}" ]; then
			log "$rate $m: would take ~${pred} s, no faster link measured it: skipped"
			return 0
		fi
		secs=$(awk -v b="$busy" -v r="$bits" -v t="${LAST_SECS[$m]}" \
			-v r0="$(rate_bits "${LAST_RATE[$m]}")" \
			'BEGIN { o = t - b * 8 / r0; if (o < 0) o = 0; printf "%.1f", o + b * 8 / r }')
		log "$rate $m: would take ~${pred} s: computed from ${LAST_RATE[$m]}: $secs s"
		rec xfer s:rate="$rate" s:method="$m" measured=false seconds="$secs" \
			rx="${LAST_RX[$m]}" tx="${LAST_TX[$m]}" app="${LAST_APP[$m]:-0}" \
			s:from="${LAST_RATE[$m]}" \
			s:note="computed from ${LAST_RATE[$m]}: its time beyond bytes × 8 / rate, plus bytes × 8 / $rate"
		return 0
	fi
	fn=${m//-/_}
	TAG=$rate-$m APP="" NOTE=""
	warm
	case $m in gridvm-*) setup_gridvm ;; *) "setup_$fn" ;; esac
	b0=$(hosts_wire_bytes 2); r0=$(rx_bytes 2)
	c1=$(agent_ticks 1); c2=$(agent_ticks 2)
	log "$rate $m: running (~${pred} s of transfer)"
	t0=$(now)
	rc=0
	"run_$fn" || rc=$?
	if [ $rc != 0 ]; then
		log "$rate $m: FAILED (see $RES/*$TAG*)"
		rec "$([ "$rate" = loopback ] && echo loop || echo xfer)" s:rate="$rate" s:method="$m" \
			measured=true seconds=0 rx=0 tx=0 s:error="exit status $rc; logs in $RES"
		case $m in gridvm-*) hosts_gv 2 image delete "$PLUS" >/dev/null 2>&1 || true ;;
			*) "clean_$fn" ;; esac
		return 0
	fi
	t1=$(now)
	b1=$(hosts_wire_bytes 2); r1=$(rx_bytes 2)
	rx=$((r1 - r0)); tx=$((b1 - b0 - rx)); secs=$(sub "$t0" "$t1")
	c1=$(awk -v a="$c1" -v b="$(agent_ticks 1)" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
	c2=$(awk -v a="$c2" -v b="$(agent_ticks 2)" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
	if [ -n "$OUT" ] && [ "$(sha_of "$OUT")" != "$SRC_SHA" ]; then
		NOTE="RESULT DIFFERS FROM THE SOURCE (sha256); $NOTE"
		log "$rate $m: result differs from the source!"
	fi
	case $m in gridvm-*)
		[ "$(sha_of "${HOST_DATA[2]}/images/$PLUS.img")" = "$SRC_SHA" ] ||
			NOTE="RESULT DIFFERS FROM THE SOURCE (sha256); $NOTE"
		;;
	esac
	log "$rate $m: $secs s, $((b1 - b0)) bytes on the wire (rx $rx, tx $tx)${APP:+, app $APP}"
	case $m in gridvm-*) ;; *) c1=-1 c2=-1 ;; esac   # the agents are not involved
	if [ "$rate" = loopback ]; then
		rec loop s:method="$m" seconds="$secs" rx="$rx" tx="$tx" app="${APP:-0}" \
			cpu_src="$c1" cpu_dst="$c2" s:note="$NOTE"
	else
		rec xfer s:rate="$rate" s:method="$m" measured=true seconds="$secs" rx="$rx" tx="$tx" \
			app="${APP:-0}" cpu_src="$c1" cpu_dst="$c2" s:note="$NOTE"
		LAST_RX[$m]=$rx LAST_TX[$m]=$tx LAST_APP[$m]=${APP:-0} LAST_RATE[$m]=$rate LAST_SECS[$m]=$secs
		LAST_BUSY[$m]=$((rx > tx ? rx : tx))
	fi
	case $m in gridvm-*) clean_gridvm ;; *) "clean_$fn" ;; esac
}

# phases CODEC [--no-local]: one unshaped fetch through the agent's API (the
# CLI shows progress only on a terminal) to time its phases from the
# PROGRESS lines: local blocks, remote blocks, verify; then the indexing
phases() {
	local j=$RES/phases-$1${2:-}.log body t0
	hosts_gv 2 image delete "$PLUS" >/dev/null 2>&1 || true
	body="{\"name\": \"$PLUS\", \"from\": \"${HOST_IP[1]}\", \"codec\": \"$1\""
	[ -z "${2:-}" ] || body="$body, \"no_local\": true"
	body="$body}"
	t0=$(now)
	curl -sSN --unix-socket "${HOST_SOCK[2]}" -H 'Content-Type: application/json' \
		-d "$body" http://gridvmd/v1/images/fetch >"$j" 2>&1 ||
		{ log "phases: the API call failed: $(tail -2 "$j")"; return 0; }
	rec phases s:codec="$1${2:-}" wall="$(sub "$t0" "$(now)")" s:log="$j"
	hosts_gv 2 image delete "$PLUS" >/dev/null 2>&1 || true
}

# --- main -----------------------------------------------------------------------
main() {
	local t_start=$SECONDS n t0 j i rt
	[ "$(id -u)" = 0 ] || fail "run as root"
	ensure_deps
	build_images
	wait_bin "$GV"; wait_bin "$GVD"
	rm -rf "$RES.old"; [ -d "$RES" ] && mv "$RES" "$RES.old"
	write_helper
	: >"$RES/results.jsonl"
	log "machine description (openssl speed takes 3 s)"
	$PY "$HELPER" machine "$RES/machine.json"
	rec meta s:key=rates s:value="$RATES"
	rec meta s:key=images s:value="$(IFS=,; echo "${IMAGES[*]}")"
	rec meta s:key=plus_packages s:value="$(cat "$CACHE/$PLUS.packages" 2>/dev/null || echo "$PLUS_PACKAGES")"
	rec meta s:key=max_measure value="$MAX_MEASURE"
	rec meta s:key=hash_runs value="$HASH_RUNS"
	rec meta s:key=built_images value="$([ $BUILT -gt 0 ] && echo true || echo false)"
	rec meta s:key=build_seconds value="$BUILT"

	# 2. the hosts
	hosts_up 2
	wait_bin "$GVD"; hosts_agent_start 1
	wait_bin "$GVD"; hosts_agent_start 2
	DST=${HOST_DATA[2]}/bench
	mkdir -p "$DST" "$HOSTS_DIR/cas"
	log "hosts up (run $HOSTS_ID, $HOSTS_DIR); importing the images"
	for n in "${IMAGES[@]}"; do hosts_gv 1 image import "$n" "$CACHE/$n.img" >/dev/null; done
	for n in "${LOCAL_IMAGES[@]}"; do hosts_gv 2 image import "$n" "$CACHE/$n.img" >/dev/null; done
	echo "{" >"$RES/images.json"
	for n in "${IMAGES[@]}"; do
		cat "${HOST_DATA[1]}/images/$n.img" >/dev/null
		t0=$(now)
		hosts_gv 1 image index "$n" --json >"$RES/index-h1-$n.json"
		rec prep s:name="gridvm image index $n (h1, first time)" seconds="$(sub "$t0" "$(now)")"
		j=$RES/index-h1-$n.json
		printf '"%s": {"size": %s, "allocated": %s, "blocks": %s, "zero_blocks": %s}%s\n' "$n" \
			"$(jget "$j" 'd["image_size"]')" \
			"$(($(stat -c %b "${HOST_DATA[1]}/images/$n.img") * 512))" \
			"$(jget "$j" 'd["blocks"]')" "$(jget "$j" 'd["zero_blocks"]')" \
			"$([ "$n" = "${IMAGES[-1]}" ] || echo ,)" >>"$RES/images.json"
	done
	echo "}" >>"$RES/images.json"
	SRC_IMG=${HOST_DATA[1]}/images/$PLUS.img
	SRC_SHA=$(jget "$RES/index-h1-$PLUS.json" 'd["image_sha256"]')
	for n in "${LOCAL_IMAGES[@]}"; do
		cat "${HOST_DATA[2]}/images/$n.img" >/dev/null
		t0=$(now)
		hosts_gv 2 image index "$n" >/dev/null
		rec prep s:name="gridvm image index $n (h2)" seconds="$(sub "$t0" "$(now)")" \
			s:note="the host-wide block index of h2 knows it"
	done

	# similarity
	hosts_gv 1 image similarity "${IMAGES[@]}" --json >"$RES/similarity.json"
	hosts_gv 1 image similarity "${IMAGES[@]}" | tee "$RES/similarity.txt"
	BASIS=$(jget "$RES/similarity.json" \
		"max(next(x for x in d['rows'] if x['name'] == '$PLUS')['in'].items(), key=lambda kv: kv[1])[0]")
	rec meta s:key=basis s:value="$BASIS"
	log "most similar to $PLUS: $BASIS"

	# the ideal
	local lidx=()
	for n in "${LOCAL_IMAGES[@]}"; do lidx+=("${HOST_DATA[2]}/images/$n.gvidx"); done
	log "the ideal: missing unique blocks, compressed"
	$PY "$HELPER" ideal "$SRC_IMG" "${HOST_DATA[1]}/images/$PLUS.gvidx" "$RES/ideal.json" \
		"${lidx[@]}" >&2

	# casync: index + chunk store on h1, served over HTTP
	t0=$(now)
	casync make --store="$HOSTS_DIR/cas/store.castr" "$HOSTS_DIR/cas/$PLUS.caibx" "$SRC_IMG" \
		>"$RES/casync-make.log" 2>&1 || fail "casync make: $(tail -3 "$RES/casync-make.log")"
	rec prep s:name="casync make (h1: index + chunk store)" seconds="$(sub "$t0" "$(now)")" \
		s:note="store $(du -sb "$HOSTS_DIR/cas/store.castr" | awk '{printf "%.1f MB", $1 / 1e6}') in $(find "$HOSTS_DIR/cas/store.castr" -name '*.cacnk' | wc -l) chunks"
	hosts_exec 1 $PY -m http.server "$HTTP_PORT" --bind "${HOST_IP[1]}" -p HTTP/1.1 \
		--directory "$HOSTS_DIR/cas" >"$RES/http.log" 2>&1 &
	wait_port 1 "$HTTP_PORT"
	# rsync daemon on h1
	cat >"$HOSTS_DIR/rsyncd.conf" <<-EOF
		uid = root
		gid = root
		use chroot = no
		log file = $RES/rsyncd.log
		[img]
		path = ${HOST_DATA[1]}/images
		read only = yes
	EOF
	hosts_exec 1 rsync --daemon --no-detach --config="$HOSTS_DIR/rsyncd.conf" \
		--address="${HOST_IP[1]}" --port="$RSYNC_PORT" >>"$RES/rsyncd.log" 2>&1 &
	wait_port 1 "$RSYNC_PORT"

	# 3. shaped links
	IFS=, read -r -a rates <<<"$RATES"
	for rt in "${rates[@]}"; do
		hosts_shape 1 "$rt"
		hosts_shape 2 "$rt"
		log "=== link $rt"
		calibrate "$rt"
		for n in "${METHODS[@]}"; do xfer "$rt" "$n"; done
	done
	[ -n "$RSYNC_COMPRESS" ] && rec meta s:key=rsync_compress s:value="$RSYNC_COMPRESS"

	# 4. unshaped
	hosts_unshape 1
	hosts_unshape 2
	log "=== unshaped"
	for n in plain gridvm-nolocal gridvm-zstd gridvm-zstd gridvm-none rsync rsync-tmp casync; do
		xfer loopback "$n"
	done
	phases zstd
	phases zstd --no-local
	for n in "$PLUS" bookworm; do
		local f=${HOST_DATA[1]}/images/$n.img
		[ -f "$f" ] || continue
		dd if="$f" of=/dev/null bs=1M 2>/dev/null
		t0=$(now)
		dd if="$f" of=/dev/null bs=1M 2>/dev/null
		rec dd s:image="$n" seconds="$(sub "$t0" "$(now)")" bytes="$(stat -c %s "$f")"
	done

	# 5. hashing
	log "=== hashing ($HASH_RUNS runs per image and tool)"
	# gv_blockidx_build alone (bench/hash_bench.c, compiled here with cc against
	# the built library; skipped if that fails, e.g. while it is being rebuilt)
	local hb=""
	if cc -O2 -I "$ROOT/include" -o "$RES/hash_bench" "$ROOT/bench/hash_bench.c" \
		"$ROOT/build/lib/libgridvm.a" -lcrypto -lm -lpthread 2>"$RES/hash_bench.err"; then
		hb=$RES/hash_bench
	fi
	for n in "${IMAGES[@]}"; do
		local f=${HOST_DATA[1]}/images/$n.img
		cat "$f" >/dev/null
		for ((i = 1; i <= HASH_RUNS; i++)); do
			rm -f "${HOST_DATA[1]}/images/$n.gvidx"
			t0=$(now); hosts_gv 1 image index "$n" --json >"$RES/hash-$n.json"
			rec hash s:image="$n" s:tool=gridvm-index seconds="$(sub "$t0" "$(now)")" \
				agent_seconds="$(jget "$RES/hash-$n.json" 'd["seconds"]')"
			t0=$(now); sha256sum "$f" >/dev/null
			rec hash s:image="$n" s:tool=sha256sum seconds="$(sub "$t0" "$(now)")"
			t0=$(now); openssl dgst -sha256 "$f" >/dev/null
			rec hash s:image="$n" s:tool=openssl seconds="$(sub "$t0" "$(now)")"
			if [ -n "$hb" ]; then
				t0=$(now); "$hb" "$f" 0 >/dev/null
				rec hash s:image="$n" s:tool=blockidx-build seconds="$(sub "$t0" "$(now)")"
			fi
		done
		# the same command when the index is current: RPC, loading the index,
		# re-adding it to the host-wide index (no hashing)
		t0=$(now); hosts_gv 1 image index "$n" >/dev/null
		rec hash s:image="$n" s:tool=gridvm-index-current seconds="$(sub "$t0" "$(now)")"
	done

	rec meta s:key=total_seconds value=$((SECONDS - t_start))
	rec meta s:key=loadavg_end s:value="$(cut -d' ' -f1 /proc/loadavg)"
	log "done in $((SECONDS - t_start)) s"
	[ "$WRITE_DOC" = 0 ] || $PY "$HELPER" report "$RES" "$DOC" "$SVG"
}

if [ "$REPORT_ONLY" = 1 ]; then
	[ -f "$RES/results.jsonl" ] || fail "no results in $RES"
	write_helper
	$PY "$HELPER" report "$RES" "$DOC" "$SVG"
	exit 0
fi
main; exit $?   # on one line: bash reads a script while it runs it
