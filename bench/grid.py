#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/grid.py - the grid benchmark's runs and report.

Started by bench/grid.sh, which sets up four network-namespace hosts
(tests/e2e/hosts.sh), a controller in h1's namespace and an agent on every
host joined to it (tests/e2e/grid.sh), and exports ROOT, GV, GRID_CTL,
GRID_DIR, HOSTS_ID, HOSTS_DIR, HOSTS_N. Standard library only.

Parts (all in one run, on the same hosts):

latency     one job at a time, `gridvm submit --memory 256M -- echo hi`
            followed by `gridvm job logs ID --follow`: from submit
            returning to the controller's state `running` (the job's
            `started`) and to the first output line arriving; each sample
            alternates with `gridvm run --memory 256M -- echo hi` on h1's
            agent (from starting the command to the first line). Twice:
            report interval 2 s (the default) and 1 s. The controller's
            events give the parts (placed, VM started, first output, done).
throughput  N short jobs (`sh -c 'echo job K $((K * K))'`, 1 cpu, 128M):
            submitted at once to the grid (pack, online), and the same N
            run by hand with `gridvm run`, round-robin over the four agents,
            at most as many at once per host as the grid lets run there
            (2: --grid-cpus 2 and 1 cpu a job). Jobs per minute from the
            first submission (or start) to the last job done; every job's
            output and exit code checked.
makespan    one mixed batch (1 or 2 cpus, 128M to 768M, sleeps of 4 to 20
            s with walltime estimates) submitted at once, under each
            combination of policy and mode, the controller restarted with
            `--policy P --mode M [--heuristic H]` before each: makespan
            (first submission to the last job done) and mean wait (submit
            to running).

The machine's load (1-minute load average, QEMUs of other runs, other
namespace-host runs) is sampled every 2 s and reported per part.
"""
import argparse, html, json, os, platform, random, re, statistics, subprocess
import sys, threading, time

ROOT = os.environ.get("ROOT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GV = os.environ.get("GV", ROOT + "/build/programs/gridvm")
HID = os.environ.get("HOSTS_ID", "")
HDIR = os.environ.get("HOSTS_DIR", "")
NHOSTS = int(os.environ.get("HOSTS_N", "4") or 4)
CTL = os.environ.get("GRID_CTL", "")
CDIR = os.environ.get("GRID_DIR", "")
AGENT_OPTS = os.environ.get("GRID_AGENT_OPTS_TEXT", "--grid-cpus 2 --grid-memory 1G")
RESULTS = "/var/tmp/gridvm-bench-grid"
FINAL = ("completed", "failed", "cancelled")

# the mixed batch: (count, cpus, memory, sleep seconds); walltime = sleep + SLACK
BATCH = [(2, 2, "512M", 20), (4, 1, "768M", 12), (4, 1, "256M", 8), (6, 1, "128M", 4)]
BATCH_QUICK = [(1, 2, "512M", 20), (2, 1, "768M", 12), (2, 1, "256M", 8), (3, 1, "128M", 4)]
SLACK = 25  # boot under contention, the end seen at a report, the log collected
TIGHT = 5   # the "+tight" runs: estimates that leave out most of that
COMBOS = ["pack/online", "spread/online", "load/online", "locality/online",
          "pack/batch:min-min", "spread/batch:min-min", "load/batch:min-min",
          "pack/batch:max-min", "pack/batch:sufferage", "pack/online+tight"]
COMBOS_QUICK = ["pack/online", "spread/online", "pack/batch:min-min", "pack/batch:sufferage",
                "pack/online+tight"]


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# ---- the CLI against the controller and against one host's agent ----

def gcmd(*args):
    return ["ip", "netns", "exec", "gv%sh1" % HID, "env", "GRIDVM_DATA=" + CDIR, GV,
            "--controller", CTL, "--grid-key", HDIR + "/grid.key"] + [str(a) for a in args]


def hcmd(i, *args):
    d = "%s/h%d" % (HDIR, i)
    return ["env", "GRIDVM_DATA=" + d, "GRIDVM_SOCKET=%s/gridvmd.sock" % d,
            "GRIDVM_NO_AUTOSTART=1", GV] + [str(a) for a in args]


def G(*args, check=True, timeout=120):
    p = subprocess.run(gcmd(*args), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode:
        raise RuntimeError("gridvm %s: %s" % (" ".join(map(str, args)), p.stderr.strip()))
    return p


def Gj(*args):
    return json.loads(G(*args, "--json").stdout)


def jobs_by_id(ids):
    want = set(ids)
    return {j["id"]: j for j in Gj("jobs") if j["id"] in want}


def wait_all_final(ids, timeout):
    end = time.time() + timeout
    while True:
        js = jobs_by_id(ids)
        if len(js) == len(ids) and all(j["state"] in FINAL for j in js.values()):
            return js
        if time.time() > end:
            raise RuntimeError("jobs not done after %d s: %s" % (timeout, sorted(
                (i, j["state"]) for i, j in js.items() if j["state"] not in FINAL)[:10]))
        time.sleep(1)


def hosts_up():
    try:
        return sum(h.get("state") == "up" for h in Gj("hosts"))
    except (RuntimeError, ValueError, subprocess.TimeoutExpired):
        return 0


def agents_idle():
    """No job VM left on any agent (the controller released them all)."""
    for i in range(1, NHOSTS + 1):
        p = subprocess.run(hcmd(i, "vm", "list", "--json"), capture_output=True, text=True)
        if p.returncode or any(v["name"].startswith("job-") for v in json.loads(p.stdout)):
            return False
    return True


def ctl_restart(*opts):
    """Restart the controller with OPTS (its store kept), wait until every
    host has reported to it and no job VM is left on the agents."""
    end = time.time() + 60
    while not agents_idle() and time.time() < end:
        time.sleep(1)
    subprocess.run(["bash", ROOT + "/bench/grid.sh", "--ctl-restart"] + list(opts), check=True,
                   stdout=subprocess.DEVNULL)
    end = time.time() + 60
    while hosts_up() < NHOSTS:
        if time.time() > end:
            raise RuntimeError("the hosts did not report to the restarted controller")
        time.sleep(0.5)
    time.sleep(2.5)  # one more report each: the free resources are current


# ---- the machine and its load ----

def machine():
    cpu = ""
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            cpu = l.split(":", 1)[1].strip()
            break
    mem = int(open("/proc/meminfo").readline().split()[1]) // (1 << 20)
    qv = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                        text=True).stdout.split("\n")[0]
    return "%s, %d cores, %d GiB RAM, Linux %s, %s, TCG" % (cpu, os.cpu_count(), mem,
                                                          platform.release(), qv)


class Monitor(threading.Thread):
    """Every 2 s: the 1-minute load average, the machine's busy CPU share,
    QEMUs that are not ours, other namespace-host runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.phase, self.stop = [], "setup", False

    @staticmethod
    def cpu():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(f), f[3] + f[4]

    def run(self):
        last = self.cpu()
        while not self.stop:
            time.sleep(2)
            now = self.cpu()
            busy = 1 - (now[1] - last[1]) / max(1, now[0] - last[0])
            last = now
            foreign = 0
            for p in os.listdir("/proc"):
                if not p.isdigit():
                    continue
                try:
                    if open("/proc/%s/comm" % p).read().strip() != "qemu-system-x86":
                        continue
                    if HDIR not in open("/proc/%s/cmdline" % p).read():
                        foreign += 1
                except OSError:
                    pass
            runs = [r for r in os.listdir("/run/gridvm-hosts") if r.isdigit() and r != HID] \
                if os.path.isdir("/run/gridvm-hosts") else []
            self.samples.append({"t": time.time(), "phase": self.phase, "load1": os.getloadavg()[0],
                                 "busy": busy, "foreign_qemu": foreign, "other_runs": len(runs)})

    def summary(self):
        out = {}
        for ph in sorted({s["phase"] for s in self.samples}):
            ss = [s for s in self.samples if s["phase"] == ph]
            out[ph] = {"samples": len(ss),
                       "load1_mean": statistics.mean(s["load1"] for s in ss),
                       "load1_max": max(s["load1"] for s in ss),
                       "load1_min": min(s["load1"] for s in ss),
                       "busy_mean": statistics.mean(s["busy"] for s in ss),
                       "foreign_qemu_mean": statistics.mean(s["foreign_qemu"] for s in ss),
                       "foreign_qemu_max": max(s["foreign_qemu"] for s in ss),
                       "other_runs_max": max(s["other_runs"] for s in ss),
                       "overlap_share": sum(s["foreign_qemu"] > 0 or s["other_runs"] > 0
                                            for s in ss) / len(ss)}
        return out


# ---- 1. latency ----

def first_line(cmd, timeout=180):
    """Start CMD; the time its first output line arrived, that line, the
    time it ended and its exit code."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    killer = threading.Timer(timeout, p.kill)
    killer.start()
    line = p.stdout.readline()
    t_line = time.time()
    rest = p.stdout.read()
    rc = p.wait()
    t_end = time.time()
    killer.cancel()
    return t_line, line.rstrip("\n"), t_end, rc, rest


def state_times(events):
    """When the job entered each state (the first time), from its events."""
    out = {}
    for ev in events:
        m = re.match(r"(\w+) -> (\w+)", ev.get("text", "")) if ev.get("kind") == "state" else None
        if m and m.group(2) not in out:
            out[m.group(2)] = ev["time"]
    return out


class OutputWatch(threading.Thread):
    """When the line `hi` reached the host: the agent appends the job's
    output frames to DATA/vms/VM/job.out; look at the candidate files every
    10 ms (cheap: no process started)."""

    def __init__(self, paths):
        super().__init__(daemon=True)
        self.paths, self.t, self.stop = paths, None, False
        self.start()

    def run(self):
        end = time.time() + 300
        while not self.stop and time.time() < end:
            for p in self.paths:
                try:
                    with open(p, "rb") as f:
                        if b"hi\n" in f.read():
                            self.t = time.time()
                            return
                except OSError:
                    pass
            time.sleep(0.01)

    def result(self):
        self.join(5)
        self.stop = True
        return self.t


def grid_sample():
    t0 = time.time()
    jid = int(G("submit", "--memory", "256M", "--", "echo", "hi").stdout.strip())
    t1 = time.time()
    w = OutputWatch(["%s/h%d/vms/job-%d/job.out" % (HDIR, i, jid) for i in range(1, NHOSTS + 1)])
    t_line, line, t_end, rc, _ = first_line(gcmd("job", "logs", jid, "--follow"))
    rec = Gj("job", "show", jid)
    ok = line == "hi" and rec["state"] == "completed" and rec.get("exit_code") == 0
    return {"id": jid, "t_submit": t0, "submit_s": t1 - t0, "t_returned": t1,
            "bound": rec.get("bound"), "running": rec.get("started"), "first_output": t_line,
            "on_host": w.result(), "ended": rec.get("ended"), "host": rec.get("host"), "ok": ok}


def run_sample(k):
    name = "lat%d" % k
    w = OutputWatch(["%s/h1/vms/%s/job.out" % (HDIR, name)])
    t0 = time.time()
    t_line, line, t_end, rc, _ = first_line(hcmd(1, "run", "--name", name, "--memory", "256M",
                                                 "--", "echo", "hi"))
    return {"t_start": t0, "first_output": t_line, "on_host": w.result(), "exit": t_end,
            "ok": line == "hi" and rc == 0}


def part_latency(a, res):
    res["latency"] = {"n": a.latency_jobs, "intervals": {}, "run": []}
    rng = random.Random(1)
    nrun = 0
    for ri, n in (("2s", a.latency_jobs), ("1s", (a.latency_jobs + 1) // 2)):
        ctl_restart("--report-interval", ri)
        gs = []
        for k in range(n):
            # alternate which goes first, so the machine's noise hits both
            # alike; a random pause first, so that a submission falls at any
            # moment of the hosts' report cycle (the samples would otherwise
            # follow the reports that ended the previous job in step)
            time.sleep(rng.uniform(0, float(ri[:-1])))
            for first in ((True, False) if k % 2 == 0 else (False, True)):
                if first:
                    gs.append(grid_sample())
                else:
                    nrun += 1
                    res["latency"]["run"].append(dict(run_sample(nrun), interval=ri))
            g, r = gs[-1], res["latency"]["run"][-1]
            log("latency %s %d/%d: grid %.2f s to output, run %.2f s" % (
                ri, k + 1, n, g["first_output"] - g["t_returned"], r["first_output"] - r["t_start"]))
        res["latency"]["intervals"][ri] = gs


# ---- 2. throughput ----

def short_cmd(k):
    return ["sh", "-c", "echo job %d $((%d * %d))" % (k, k, k)], "job %d %d" % (k, k * k)


def part_throughput(a, res):
    n = a.throughput_jobs
    out = res["throughput"] = {"n": n}
    # by hand: job K on host (K mod 4) + 1, two at a time per host
    ctl_restart("--report-interval", "2s")
    log("throughput: %d jobs by hand, round-robin over %d agents" % (n, NHOSTS))
    per_host = {i: [k for k in range(1, n + 1) if (k - 1) % NHOSTS + 1 == i]
                for i in range(1, NHOSTS + 1)}
    done, lock = [], threading.Lock()
    t0 = time.time()

    def worker(i, queue):
        while True:
            with lock:
                if not queue:
                    return
                k = queue.pop(0)
            cmd, want = short_cmd(k)
            p = subprocess.run(hcmd(i, "run", "--memory", "128M", "--", *cmd), capture_output=True,
                               text=True)
            d = {"k": k, "host": i, "end": time.time() - t0,
                 "ok": p.returncode == 0 and p.stdout.strip() == want}
            if not d["ok"]:  # what went wrong, for the report
                d.update(rc=p.returncode, out=p.stdout[-300:], err=p.stderr[-300:])
            with lock:
                done.append(d)

    ths = [threading.Thread(target=worker, args=(i, per_host[i]))
           for i in per_host for _ in range(2)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    out["hand"] = {"makespan": max(d["end"] for d in done), "ends": sorted(d["end"] for d in done),
                   "ok": sum(d["ok"] for d in done), "done": len(done),
                   "wrong": [d for d in done if not d["ok"]]}
    log("throughput by hand: %.1f s, %d/%d right" % (out["hand"]["makespan"], out["hand"]["ok"], n))

    # the grid: all N submitted at once (one after the other, as a script would)
    ctl_restart("--report-interval", "2s")
    log("throughput: %d jobs through the grid" % n)
    ids, want = [], {}
    t0 = time.time()
    for k in range(1, n + 1):
        cmd, w = short_cmd(k)
        jid = int(G("submit", "--memory", "128M", "--name", "tp%d" % k, "--", *cmd).stdout.strip())
        ids.append(jid)
        want[jid] = w
    t_sub = time.time() - t0
    js = wait_all_final(ids, 1800)
    ends = sorted(j["ended"] - t0 for j in js.values())
    ok, wrong = 0, []
    for jid in ids:
        got = G("job", "logs", jid).stdout.strip()
        good = js[jid]["state"] == "completed" and js[jid].get("exit_code") == 0 and got == want[jid]
        ok += good
        if not good:
            wrong.append({"id": jid, "state": js[jid]["state"], "exit_code": js[jid].get("exit_code"),
                          "error": js[jid].get("error"), "out": got[-300:]})
    hosts = {}
    for j in js.values():
        hosts[j.get("host")] = hosts.get(j.get("host"), 0) + 1
    out["grid"] = {"makespan": ends[-1], "ends": ends, "ok": ok, "done": len(js), "wrong": wrong,
                   "submit_s": t_sub, "hosts": hosts,
                   "wait_mean": statistics.mean(j["started"] - t0 for j in js.values()
                                                if j.get("started")),
                   "pickup_mean": statistics.mean(j["started"] - j["bound"] for j in js.values()
                                                  if j.get("started") and j.get("bound"))}
    log("throughput grid: %.1f s (submitting %.1f s), %d/%d right, hosts %s" % (
        ends[-1], t_sub, ok, n, hosts))


# ---- 3. makespan ----

def batch_jobs(spec):
    jobs, k = [], 0
    for count, cpus, mem, secs in spec:
        for _ in range(count):
            k += 1
            jobs.append({"k": k, "cpus": cpus, "memory": mem, "secs": secs})
    random.Random(9).shuffle(jobs)  # one fixed arrival order for every run
    return jobs


def combo_opts(combo, njobs):
    policy, mode = combo.split("+")[0].split("/")
    opts = ["--report-interval", "2s", "--policy", policy]
    if mode == "online":
        return opts + ["--mode", "online"]
    heur = mode.split(":")[1]
    return opts + ["--mode", "batch", "--heuristic", heur, "--batch-size", str(njobs),
                   "--batch-wait", "5s"]


def part_makespan(a, res):
    spec = BATCH_QUICK if a.quick else BATCH
    jobs = batch_jobs(spec)
    out = res["makespan"] = {"spec": spec, "order": [j["k"] for j in jobs], "runs": []}
    for combo in a.combos:
        ctl_restart(*combo_opts(combo, len(jobs)))
        slack = TIGHT if combo.endswith("+tight") else SLACK
        log("makespan: %s, %d jobs" % (combo, len(jobs)))
        ids, sub = [], {}
        t0 = time.time()
        for j in jobs:
            jid = int(G("submit", "--name", "mix%d" % j["k"], "--cpus", j["cpus"], "--memory",
                        j["memory"], "--walltime", "%ds" % (j["secs"] + slack), "--", "sh", "-c",
                        "sleep %d; echo done %d" % (j["secs"], j["k"])).stdout.strip())
            ids.append(jid)
            sub[jid] = (time.time(), j)
        js = wait_all_final(ids, 1800)
        ok, per = 0, []
        for jid in ids:
            r, (ts, j) = js[jid], sub[jid]
            good = (r["state"] == "completed" and r.get("exit_code") == 0 and
                    G("job", "logs", jid).stdout.strip() == "done %d" % j["k"])
            ok += good
            per.append({"k": j["k"], "cpus": j["cpus"], "memory": j["memory"], "secs": j["secs"],
                        "host": r.get("host"), "submitted": ts - t0,
                        "bound": (r["bound"] - t0) if r.get("bound") else None,
                        "started": (r["started"] - t0) if r.get("started") else None,
                        "ended": r["ended"] - t0, "moves": r.get("moves", 0), "ok": good,
                        "events": [dict(e, time=e["time"] - t0) for e in Gj("job", "events", jid)]})
        run = {"combo": combo, "opts": combo_opts(combo, len(jobs)), "jobs": per, "ok": ok,
               "makespan": max(p["ended"] for p in per),
               "wait_mean": statistics.mean(p["started"] - p["submitted"] for p in per
                                            if p["started"] is not None),
               "turnaround_mean": statistics.mean(p["ended"] - p["submitted"] for p in per),
               "moves": sum(p["moves"] for p in per)}
        out["runs"].append(run)
        log("makespan %s: %.1f s, mean wait %.1f s, %d/%d right, %d moves" % (
            combo, run["makespan"], run["wait_mean"], ok, len(jobs), run["moves"]))


# ---- the report ----

def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    f = int(k)
    return xs[f] + (xs[min(f + 1, len(xs) - 1)] - xs[f]) * (k - f)


def med(xs):
    return pct(xs, 50)


def sec(x, d=2):
    return ("%%.%df s" % d) % x if x == x else "-"


def chart(res, path):
    """Left: jobs done over time, the grid against by hand. Right: makespan
    and mean wait of the mixed batch per combination."""
    tp, ms = res.get("throughput"), res.get("makespan")
    W, H = 900, 330
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>']
    if tp:
        L, T, pw, ph = 50, 30, 340, 240
        tmax = max(tp["grid"]["makespan"], tp["hand"]["makespan"]) * 1.05
        n = tp["n"]
        o.append('<text x="%d" y="18" font-weight="bold">%d short jobs: jobs done over time</text>' % (L, n))
        o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>' % (L, T, pw, ph))
        for name, color in (("grid", "#1f5fa8"), ("hand", "#c0392b")):
            ends = tp[name]["ends"]
            pts = ["%.1f,%.1f" % (L, T + ph)]
            for i, e in enumerate(ends):
                x, y0, y1 = L + e / tmax * pw, T + ph - i / n * ph, T + ph - (i + 1) / n * ph
                pts += ["%.1f,%.1f" % (x, y0), "%.1f,%.1f" % (x, y1)]
            o.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>' % (color, " ".join(pts)))
        step = 30 if tmax > 120 else 10
        for s in range(0, int(tmax) + 1, step):
            o.append('<text x="%.1f" y="%d" text-anchor="middle">%ds</text>' % (L + s / tmax * pw, T + ph + 14, s))
        for v in (0, n // 2, n):
            o.append('<text x="%d" y="%.1f" text-anchor="end">%d</text>' % (L - 4, T + ph - v / n * ph + 4, v))
        o.append('<text x="%d" y="%d" fill="#1f5fa8">grid (submit all, pack)</text>' % (L + 8, T + 16))
        o.append('<text x="%d" y="%d" fill="#c0392b">by hand (gridvm run, round-robin)</text>' % (L + 8, T + 30))
    if ms and ms["runs"]:
        L, T, pw, ph = 470, 30, 410, 240
        runs = ms["runs"]
        top = max(r["makespan"] for r in runs) * 1.1
        o.append('<text x="%d" y="18" font-weight="bold">mixed batch of %d jobs: makespan (bar), mean wait (dark)</text>' % (L, len(runs[0]["jobs"])))
        bh = ph / len(runs)
        for i, r in enumerate(runs):
            y = T + i * bh
            lab = r["combo"].replace("batch:", "batch ").replace("+tight", " (tight)")
            o.append('<text x="%d" y="%.1f" font-size="10">%s</text>' % (L, y + bh * 0.65, html.escape(lab)))
            x0 = L + 120
            w = pw - 120
            o.append('<rect x="%d" y="%.1f" width="%.1f" height="%.1f" fill="#9ecae1"/>' % (x0, y + 2, r["makespan"] / top * w, bh - 4))
            o.append('<rect x="%d" y="%.1f" width="%.1f" height="%.1f" fill="#08519c"/>' % (x0, y + bh / 2 - 2, r["wait_mean"] / top * w, 4))
            o.append('<text x="%.1f" y="%.1f" font-size="10">%.0f s</text>' % (x0 + r["makespan"] / top * w + 3, y + bh * 0.65, r["makespan"]))
    gantt = [r for c in ("pack/online", "pack/batch:min-min", "pack/batch:max-min")
             for r in (ms or {}).get("runs", []) if r["combo"] == c]
    y = 320
    if gantt:
        tmax = max(r["makespan"] for r in gantt) * 1.02
        L, pw, lane = 120, W - 140, 11
        colors = {(2, "512M"): "#08519c", (1, "768M"): "#e6550d", (1, "256M"): "#31a354",
                  (1, "128M"): "#9ecae1"}
        o.append('<text x="%d" y="%d" font-weight="bold">the batch on the hosts\' slots, per run: bars from running to done, thin line from placed; colour by job kind</text>' % (L, y))
        keys = [(2, "512M", "2 cpus, 512M"), (1, "768M", "1 cpu, 768M"), (1, "256M", "1 cpu, 256M"),
                (1, "128M", "1 cpu, 128M")]
        for i, (c, m, name) in enumerate(keys):
            o.append('<rect x="%d" y="%d" width="10" height="8" fill="%s"/><text x="%d" y="%d">%s</text>' % (
                L + i * 110, y + 8, colors.get((c, m), "#999"), L + i * 110 + 14, y + 16, name))
        y += 26
        for r in gantt:
            lanes_top = y + 14
            o.append('<text x="%d" y="%d" font-weight="bold">%s</text>' % (L, y + 10, html.escape(r["combo"])))
            for hi in range(NHOSTS):
                o.append('<text x="%d" y="%.1f" text-anchor="end">h%d</text>' % (L - 6, lanes_top + (2 * hi + 1) * lane + 4, hi + 1))
                o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ccc"/>' % (L, lanes_top + 2 * hi * lane, L + pw, lanes_top + 2 * hi * lane))
                js = sorted((j for j in r["jobs"] if j["host"] == "h%d" % (hi + 1)),
                            key=lambda j: j.get("bound") if j.get("bound") is not None else j["started"])
                free = [0.0, 0.0]  # when each of the host's two cpu lanes frees up
                for j in js:
                    b = j.get("bound") if j.get("bound") is not None else j["started"]
                    ls = [0, 1] if j["cpus"] > 1 else [min((0, 1), key=lambda k: (free[k] > b + 0.01, free[k]))]
                    for k in ls:
                        free[k] = j["ended"]
                    ly = lanes_top + (2 * hi + ls[0]) * lane
                    hgt = lane * len(ls) - 2
                    x = lambda t: L + t / tmax * pw
                    col = colors.get((j["cpus"], j["memory"]), "#999")
                    o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>' % (x(b), ly + hgt / 2 + 1, x(j["started"]), ly + hgt / 2 + 1, col))
                    o.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>' % (x(j["started"]), ly + 1, max(1, x(j["ended"]) - x(j["started"])), hgt, col))
            base = lanes_top + 2 * NHOSTS * lane
            o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/>' % (L, base, L + pw, base))
            for t in range(0, int(tmax) + 1, 10):
                o.append('<text x="%.1f" y="%.1f" text-anchor="middle">%ds</text>' % (L + t / tmax * pw, base + 12, t))
            y = base + 22
    o[0] = o[0].replace('height="%d"' % H, 'height="%d"' % (y + 10 if gantt else H))
    o.append("</svg>")
    open(path, "w").write("\n".join(o))


def report(res, doc, svg, hist=()):
    mon = res.get("load", {})
    lat, tp, ms = res.get("latency"), res.get("throughput"), res.get("makespan")
    o = ["# Benchmark: the grid layer (latency, throughput, makespan)", "",
         "Produced by `%s` on %s (the whole run took %.0f min%s)." % (
             res["command"], res["date"], res.get("total_s", 0) / 60,
             ", the quick mode" if res.get("quick") else ""), "",
         "Machine: %s." % res["machine"], "",
         "Four network-namespace hosts on this one machine (tests/e2e/hosts.sh),",
         "unshaped links, a controller (`gridvmctld`) in h1's namespace and an agent",
         "on each host joined with `%s` (tests/e2e/grid.sh)." % AGENT_OPTS,
         "Why these sizes: each host looks like a small real one (two vCPUs, 1 GiB), a",
         "1-cpu job gets two slots per host, eight in all, and 2-cpu and 768M jobs do",
         "not fit beside everything, so placement matters; eight VMs booting at once",
         "is already four per core of this 2-core machine under TCG, and more slots",
         "would only make every boot slower. It is also what the end-to-end test",
         "(tests/e2e/test-grid.sh) uses. The controller runs with its defaults",
         "(report interval 2 s, policy pack, online mode, backfill) unless a part says",
         "otherwise; it is restarted with the part's options before each part and each",
         "run of the batch (its store kept). Every VM boots the gridvm guest (the Debian",
         "cloud kernel and the busybox initramfs) on an overlay of the default image,",
         "which every host holds.", ""]

    o += ["## The machine while it ran", "",
          "Sampled every 2 s. *Other QEMUs*: VMs of other sessions' test runs on this",
          "machine; *other host sets*: other tests' namespace hosts alive at the time.", "",
          "| part | took | load (1 min) mean / max | CPU busy | other QEMUs mean / max | other host sets max | samples with others |",
          "|---|---:|---|---:|---|---:|---:|"]
    for ph in ("latency", "throughput", "makespan"):
        s = mon.get(ph)
        if s:
            o.append("| %s | %.1f min | %.1f / %.1f | %d%% | %.1f / %d | %d | %d%% |" % (
                ph, res.get("part_s", {}).get(ph, 0) / 60, s["load1_mean"], s["load1_max"],
                100 * s["busy_mean"], s["foreign_qemu_mean"], s["foreign_qemu_max"],
                s["other_runs_max"], 100 * s["overlap_share"]))
    ov = max((s["overlap_share"] for s in mon.values()), default=0)
    o += ["", ("**This run overlapped with other test runs on the machine** (up to %d%% of"
               " the samples of a part saw their QEMUs or hosts): every time below is slower"
               " and noisier than it would be on an idle machine, and sides of a comparison"
               " that ran one after the other (throughput, the batch's combinations) did"
               " not see the same load; the latency samples alternate, so their two sides"
               " did." % (100 * ov)) if ov > 0 else
          "No other run was seen on the machine during this run.", ""]

    if lat:
        ivs = lat["intervals"]
        o += ["## 1. Submit to running, submit to first output", "",
              "One job at a time: `gridvm submit --memory 256M -- echo hi`, then at once",
              "`gridvm job logs ID --follow` (the grid, the job placed by the controller:",
              "pack puts it on h1), alternating with `gridvm run --memory 256M -- echo hi` on",
              "h1's agent (one host, the same guest, no controller); %s." % ", ".join(
                  "%d grid jobs at report interval %s" % (len(g), ri.replace("s", " s"))
                  for ri, g in ivs.items()),
              "For the grid, from `submit` returning: *to running* to the job's `started`",
              "(when the controller marked it running), *to output on the host* to the line",
              "`hi` being in the job's output file on its host (DATA/vms/VM/job.out, looked",
              "at every 10 ms), *to output seen* to the line arriving through `job logs",
              "--follow`, *to done* to the job's `ended` (its exit seen and its log",
              "collected: `job wait` returns then); for `gridvm run`, from starting the",
              "command to the line on the host, to its first line of output and to its",
              "exit (its VM deleted).", "",
              "| report interval | method | submit call | to running | to output on the host | to output seen | to done | right |",
              "|---|---|---:|---|---|---|---|---:|"]
        mp = lambda xs: "%s / %s" % (sec(med(xs)), sec(pct(xs, 95))) if xs else "-"
        for ri, gs in ivs.items():
            d = lambda k: [g[k] - g["t_returned"] for g in gs if g.get(k)]
            rs = runs_of(lat, ri)
            e = lambda k: [r[k] - r["t_start"] for r in rs if r.get(k)]
            o.append("| %s | grid (`submit`) | %s | %s | %s | %s | %s | %d/%d |" % (
                ri.replace("s", " s"), sec(med([g["submit_s"] for g in gs])), mp(d("running")),
                mp(d("on_host")), mp(d("first_output")), mp(d("ended")),
                sum(g["ok"] for g in gs), len(gs)))
            o.append("| %s | `gridvm run` on h1 | - | - | %s | %s | %s | %d/%d |" % (
                ri.replace("s", " s"), mp(e("on_host")), mp(e("first_output")), mp(e("exit")),
                sum(r["ok"] for r in rs), len(rs)))
            o.append("| %s | grid − run, paired | | | %s | %s | %s | |" % (
                ri.replace("s", " s"), mp(pair_diff(lat, ri, "on_host")),
                mp(pair_diff(lat, ri, "first_output")), mp(pair_diff(lat, ri, "done"))))
        o += ["", "Each cell: median / p95. *Right*: the job printed `hi` and exited 0. Where",
              "the grid's time goes (medians, from the job's record and events; the job is",
              "placed inside the `submit` call, before it returns):", "",
              "| report interval | placed → running: the host's next report, create, start | running → output on the host: the boot | output on the host → seen by `job logs --follow` | output on the host → done: the exit seen at a report, the log collected |",
              "|---|---:|---:|---:|---:|"]
        for ri, gs in ivs.items():
            hs = [g for g in gs if g.get("on_host")]
            o.append("| %s | %s | %s | %s | %s |" % (
                ri.replace("s", " s"), sec(med([g["running"] - g["bound"] for g in gs])),
                sec(med([g["on_host"] - g["running"] for g in hs])),
                sec(med([g["first_output"] - g["on_host"] for g in hs])),
                sec(med([g["ended"] - g["on_host"] for g in hs]))))
        o += [""] + latency_text(res) + [""]

    if tp:
        n = tp["n"]
        g, h = tp["grid"], tp["hand"]
        o += ["## 2. Throughput: %d short jobs on 4 hosts" % n, "",
              "Job K is `sh -c 'echo job K $((K * K))'` with 1 cpu and 128M; it must print",
              "`job K K²` and exit 0. **Grid**: all %d submitted one after the other" % n,
              "(`gridvm submit`, as a script would), the controller places them (pack,",
              "online, backfill) as slots free up; from the first submission to the last",
              "job's end (`ended`: its exit seen, its log collected). **By hand**: job K runs",
              "with `gridvm run --memory 128M` on host ((K-1) mod 4) + 1, two at a time per",
              "host (what the grid allows there: 2 cpus offered, 1 cpu a job; memory would",
              "allow 8), from the start to the last `gridvm run` returning. Both check every",
              "job's output and exit code. By hand ran first, then the grid.", "",
              "| method | jobs right | time | jobs per minute | submitting took | jobs per host |",
              "|---|---:|---:|---:|---:|---|",
              "| grid (submit all) | %d/%d | %s | %.1f | %s | %s |" % (
                  g["ok"], n, sec(g["makespan"], 1), n / g["makespan"] * 60, sec(g["submit_s"], 1),
                  ", ".join("%s %d" % kv for kv in sorted(g["hosts"].items()))),
              "| by hand (`gridvm run`, round-robin) | %d/%d | %s | %.1f | - | %d each |" % (
                  h["ok"], n, sec(h["makespan"], 1), n / h["makespan"] * 60, n // NHOSTS),
              ] + wrong_text(tp) + [
              "", "![left: jobs done over time; right: makespan per policy and mode](%s)" %
              os.path.basename(svg), "", ] + throughput_text(res, hist) + [""]
        others = same_runs(res, hist, "throughput")
        if len(others) > 1:
            o += ["Every run of this part (and of the latency part) on this machine so far,",
                  "this one in bold; *load* is the mean 1-minute load average during the part:", "",
                  "| finished | command | throughput: grid / by hand (jobs per minute) | difference | right (grid, by hand) | load | latency: grid − run to the line seen, paired median at 2 s / 1 s | load |",
                  "|---|---|---|---:|---|---:|---|---:|"]
            for x in others:
                b = "**" if x["finished"] == res.get("finished") else ""
                q, l = x["throughput"], x.get("latency")
                o.append("| %s%s%s | `%s` | %.1f / %.1f | %+.0f%% | %d, %d | %.1f | %s | %s |" % (
                    b, x["finished"], b, "bench/" + x["command"].split("bench/", 1)[-1],
                    q["grid_jpm"], q["hand_jpm"], (q["grid_jpm"] / q["hand_jpm"] - 1) * 100,
                    q["grid_ok"], q["hand_ok"], q["load1_mean"] or 0,
                    " / ".join(sec(l[k]["fo"]) for k in ("2s", "1s") if k in l) if l else "-",
                    "%.1f" % x["latency_load1_mean"] if l and x.get("latency_load1_mean") else "-"))
            bad = [x for x in others if x["throughput"]["hand_ok"] < x["throughput"]["n"] or
                   x["throughput"]["grid_ok"] < x["throughput"]["n"]]
            for x in bad:
                q = x["throughput"]
                later = [y for y in others if y["finished"] > x["finished"]]
                clean = sum(y["throughput"]["hand_ok"] == y["throughput"]["grid_ok"] == y["throughput"]["n"]
                            for y in later)
                o += ["", "In the run that finished %s, %d job%s by hand and %d through the grid" % (
                    x["finished"], q["n"] - q["hand_ok"], "s" if q["n"] - q["hand_ok"] != 1 else "",
                    q["n"] - q["grid_ok"]),
                      "did not give the right output and exit code; that version of the benchmark",
                      "did not keep the command's messages (it keeps them now and lists them",
                      "under the throughput table). %d of the %d runs since had every job right." % (
                          clean, len(later))]
            o.append("")

    if ms and ms["runs"]:
        spec = ms["spec"]
        nj = sum(c for c, *_ in spec)
        cpu_s = sum(c * cp * s for c, cp, m, s in spec)
        o += ["## 3. Makespan of one mixed batch, per policy and mode", "",
              "%d jobs submitted at once, in one fixed shuffled order: %s. Each is `sh -c" % (
                  nj, ", ".join("%d × (%d cpu%s, %s, sleep %d s)" % (
                      c, cp, "s" if cp > 1 else "", m, s) for c, cp, m, s in spec)),
              "'sleep S; echo done K'` with `--walltime` S + %d s: the estimate a user who" % SLACK,
              "knows the grid gives, since the controller counts a job's time from its",
              "placement, so the estimate must hold the wait for a report, the boot (up to",
              "15 s here when eight VMs boot at once on two cores) and the end's report.",
              "The sleeping jobs leave the cores to the boots, so the hosts' offered cpus",
              "and memory are the bottleneck, as on a real grid. Batch mode runs with",
              "`--batch-size %d --batch-wait 5s`: the whole burst is planned together as" % nj,
              "soon as it has arrived, and what is left is planned again every cycle once",
              "it has waited 5 s. The `+tight` run gives estimates of S + %d s instead." % TIGHT,
              "*Makespan*: first submission to the last job's end; *wait*: submission to",
              "running; *turnaround*: submission to end; *2-cpu starts*: when the 2-cpu jobs",
              "started (they need a whole host); *backfilled*: jobs placed ahead of a job",
              "with a reservation (backfill); *moves*: live migrations the re-planning made.",
              "Locality in batch mode is left out: here it decides exactly as pack does",
              "(below); `--combos locality/batch:min-min` runs it.", "",
              "| policy | mode | makespan | mean wait | longest wait | mean turnaround | 2-cpu starts | backfilled | moves | right |",
              "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
        for r in ms["runs"]:
            p, m = r["combo"].split("/")
            waits = [j["started"] - j["submitted"] for j in r["jobs"] if j["started"] is not None]
            big = sorted(j["started"] for j in r["jobs"] if j["cpus"] > 1 and j["started"] is not None)
            o.append("| %s | %s | %s | %s | %s | %s | %s | %d | %d | %d/%d |" % (
                p, m.replace(":", " ").replace("+tight", ", tight estimates"),
                sec(r["makespan"], 1), sec(r["wait_mean"], 1), sec(max(waits), 1),
                sec(r["turnaround_mean"], 1), ", ".join("%.0f s" % b for b in big),
                backfilled(r), r["moves"], r["ok"], len(r["jobs"])))
        o += ["", "For scale: the offered cpus alone (perfect packing, no boots) bound the",
              "makespan from below at %.0f s; the longest job sleeps %d s." % (
                  cpu_s / (2 * NHOSTS), max(s for *_, s in spec)), ""] + makespan_text(res) + [""]

    o += ["## What the grid layer costs and what it gains", ""] + summary_text(res)
    open(doc, "w").write("\n".join(o) + "\n")
    chart(res, svg)


def wrong_text(tp):
    t = []
    for d in tp["hand"].get("wrong", []):
        t.append("- by hand, job %d on h%d: `gridvm run` exited %s, printed %r, said %r" % (
            d["k"], d["host"], d.get("rc"), d.get("out", "").strip(), d.get("err", "").strip()))
    for d in tp["grid"].get("wrong", []):
        t.append("- grid, job %d: %s, exit code %s%s, printed %r" % (
            d["id"], d["state"], d.get("exit_code"), (", " + d["error"]) if d.get("error") else "",
            d.get("out", "").strip()))
    missing = tp["n"] - tp["hand"]["ok"] - len(tp["hand"].get("wrong", []))
    if missing > 0:
        t.append("- by hand: %d job%s not right, not recorded in detail (this version of the"
                 " benchmark did not keep `gridvm run`'s messages)" % (missing, "s" if missing > 1 else ""))
    return ["", "Jobs that were not right:", ""] + t if t else []


def runs_of(lat, ri):
    """The `gridvm run` samples taken alternately with the grid's at interval RI."""
    rs = lat["run"]
    if all("interval" in r for r in rs):
        return [r for r in rs if r["interval"] == ri]
    k = 0
    for name, gs in lat["intervals"].items():  # older results: in order
        if name == ri:
            return rs[k:k + len(gs)]
        k += len(gs)
    return []


def pair_diff(lat, ri, what):
    """Per pair: the grid's time minus gridvm run's (to first output or to done)."""
    out = []
    for g, r in zip(lat["intervals"][ri], runs_of(lat, ri)):
        if what == "on_host":
            if g.get("on_host") and r.get("on_host"):
                out.append((g["on_host"] - g["t_returned"]) - (r["on_host"] - r["t_start"]))
        elif what == "first_output":
            out.append((g["first_output"] - g["t_returned"]) - (r["first_output"] - r["t_start"]))
        else:
            out.append((g["ended"] - g["t_returned"]) - (r["exit"] - r["t_start"]))
    return out


def fo_med(gs):
    return med([g["first_output"] - g["t_returned"] for g in gs])


def latency_text(res):
    lat = res["latency"]
    ivs = lat["intervals"]
    k2 = "2s" if "2s" in ivs else next(iter(ivs))
    k1 = "1s" if "1s" in ivs else k2
    g2, g1 = ivs[k2], ivs[k1]
    r2, r1 = runs_of(lat, k2), runs_of(lat, k1)
    allg = [g for gs in ivs.values() for g in gs if g.get("on_host")]
    rhost = lambda rs: med([r["on_host"] - r["t_start"] for r in rs if r.get("on_host")])
    pr = lambda gs: med([g["running"] - g["bound"] for g in gs])
    boot = lambda gs: med([g["on_host"] - g["running"] for g in gs if g.get("on_host")])
    end = lambda gs: med([g["ended"] - g["on_host"] for g in gs if g.get("on_host")])
    lag = [g["first_output"] - g["on_host"] for g in allg]
    late = [x for x in lag if x > 0.2]
    rlag = [r["first_output"] - r["on_host"] for r in lat["run"] if r.get("on_host")]
    return [
        "Reading it. **Placing costs nothing measurable**: a submission wakes the",
        "controller's loop, which binds the job to a host before `submit` returns (%s"
        % sec(med([g["submit_s"] for g in g2])),
        "for the whole call). **The wait is the report interval**: the controller does",
        "not call agents; a host learns of its new job from the reply to its next",
        "report, on average half an interval later, at most a whole one. Then it",
        "stages (here nothing to fetch: the image is on every host), creates and starts",
        "the VM and reports again at once, so *placed → running* is that wait plus the",
        "VM's creation and start: %s median at 2 s, %s at 1 s (each sample waits a" % (
            sec(pr(g2)), sec(pr(g1))),
        "random part of an interval before it submits, so submissions fall anywhere in",
        "the hosts' report cycle). **The boot is the same VM's**: %s (2 s) and %s (1 s)" % (
            sec(boot(g2)), sec(boot(g1))),
        "from running to the line on the host for the grid, against %s and %s from the" % (
            sec(rhost(r2)), sec(rhost(r1))),
        "command to the line on the host for the `gridvm run`s of the same blocks, their",
        "VM's creation and start included. The machine's load changes from minute to",
        "minute, so compare within a block: **the grid costs %s more to the first" % sec(
            med(pair_diff(lat, k2, "on_host"))),
        "output at the default interval, %s at 1 s** (medians of the paired differences," % sec(
            med(pair_diff(lat, k1, "on_host"))),
        "output on the host).", "",
        "**`gridvm job logs --follow` adds up to a second on top.** It showed the line",
        "%s after it reached the host in the median, but %d of the %d grid samples" % (
            sec(med(lag)), len(late), len(lag)),
        "saw it %s to %s late: its loop (programs/gridvm/builtin-job.c, `follow_log`)" % (
            sec(min(late)) if late else "-", sec(max(late)) if late else "-"),
        "sleeps 1 s after every reply without new output, also after a long poll of 2 s",
        "that simply timed out, so a line that arrives during that second waits for the",
        "next request. Sleeping only after a reply that came back at once (no VM yet)",
        "would remove it. `gridvm run`'s stream showed the line %s after it reached" % sec(med(rlag)),
        "the host.", "",
        "At the end, the exit is seen at the host's next report and the controller",
        "reads the whole log before it calls the job completed: %s median from the" % sec(end(g2)),
        "output on the host to done at 2 s, %s at 1 s, against %s from the line to the" % (
            sec(end(g1)), sec(med([r["exit"] - r["first_output"] for r in lat["run"]]))),
        "exit for `gridvm run`; `job wait` returns %s later than `gridvm run` would at" % sec(
            med(pair_diff(lat, k2, "done"))),
        "2 s (paired). A shorter interval buys latency with more reports (one",
        "authenticated exchange and one JSON document per host per interval, and the",
        "controller's work for each): right for a small interactive grid, not for",
        "thousands of hosts."]


def same_runs(res, hist, part):
    """Full runs of PART (same job count) in the history, this one included."""
    n = (res.get(part) or {}).get("n")
    return [h for h in hist if part in h and not h.get("quick") and
            (part != "throughput" or h[part]["n"] == n)]


def throughput_text(res, hist=()):
    tp = res["throughput"]
    g, h = tp["grid"], tp["hand"]
    rg, rh = tp["n"] / g["makespan"] * 60, tp["n"] / h["makespan"] * 60
    t = ["Reading it. **%.1f jobs per minute through the grid against %.1f by hand (%+.0f%%).**"
         % (rg, rh, (rg / rh - 1) * 100)]
    others = same_runs(res, hist, "throughput")
    if len(others) > 1:
        ds = [(x["throughput"]["grid_jpm"] / x["throughput"]["hand_jpm"] - 1) * 100 for x in others]
        t += ["Over the %d runs of this part on this machine (the table below) the grid's" % len(others),
              "rate was %+.0f%% to %+.0f%% of the by-hand rate: with the machine's load changing" % (
                  min(ds), max(ds)),
              "between the two sides of one run, a single run's difference is mostly noise."]
    t += ["Submitting the %d jobs took %s (one CLI call, one authenticated connection and"
          % (tp["n"], sec(g["submit_s"], 1)),
          "one store transaction each), but the first jobs start while the rest are",
          "being submitted. **Where the difference comes from: a slot of the grid stays",
          "idle about one and a half report intervals per job.** The agent reports at",
          "once when it has started a VM, but a VM's exit waits for the next regular",
          "report (half an interval on average); the controller then collects the log",
          "and frees the slot, but the reply to that report has gone out already, so the",
          "next job bound to the slot reaches the host with the reply to the report",
          "after, a whole interval later (%s mean from placed to running here, VM" % sec(
              g.get("pickup_mean", float("nan")), 1),
          "creation and start on the loaded machine included). With a job taking about",
          "%s per slot by hand (%d jobs on 8 slots), 3 s of idle per job would cost" % (
              sec(h["makespan"] / (tp["n"] / 8.0), 0), tp["n"]),
          "about %d%% of the rate if the slots were the bottleneck. The measured gap is" % round(
              100 * 3 / (h["makespan"] / (tp["n"] / 8.0) + 3)),
          "smaller because eight VMs booting on two cores make both sides CPU-bound:",
          "while a slot waits, the VMs in the others get its share of the cores (on a",
          "grid whose hosts have cores to spare the idle slot time would show in full,",
          "and so would a shorter job). An agent that also reported at once when a grid VM",
          "stops would save about half an interval per job. By hand, each host's jobs",
          "were fixed in advance; the grid gives a freed slot the next job wherever it",
          "is, which matters when jobs or hosts differ (here they are alike, so",
          "round-robin is already the right plan)."]
    return t


def most_bound(run, spec_mem):
    """The most cpus and memory (MiB) the controller had bound to one host at
    once, from each job's binding to its end."""
    worst = (0, 0)
    for h in {j["host"] for j in run["jobs"]}:
        js = [j for j in run["jobs"] if j["host"] == h and j.get("bound") is not None]
        for t in sorted(j["bound"] for j in js):
            on = [j for j in js if j["bound"] <= t < j["ended"]]
            worst = max(worst, (sum(j["cpus"] for j in on), sum(spec_mem(j["memory"]) for j in on)))
    return worst


def mib(m):
    return int(m[:-1]) * (1024 if m.endswith("G") else 1)


def backfilled(run):
    return sum(any(e["kind"] == "place" and e["text"].startswith("backfill")
                   for e in j.get("events", [])) for j in run["jobs"])


def noise_note(runs):
    by = {r["combo"]: r for r in runs}
    pairs = [(a, b) for a, b in (("pack/online", "locality/online"),
                                 ("pack/batch:min-min", "locality/batch:min-min"))
             if a in by and b in by]
    if not pairs:
        return ""
    return ": the difference between their runs (%s) is this machine's run-to-run noise" % (
        ", ".join("%s in %s" % (sec(abs(by[a]["makespan"] - by[b]["makespan"]), 1),
                               a.split("/")[1].replace("batch:", "batch "))
                  for a, b in pairs))


WORDS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def makespan_text(res):
    runs = res["makespan"]["runs"]
    main = [r for r in runs if not r["combo"].endswith("+tight")]
    best = min(main, key=lambda r: r["makespan"])
    worst = max(main, key=lambda r: r["makespan"])
    turn = min(main, key=lambda r: r["turnaround_mean"])
    nbig = sum(c for c, cp, *_ in res["makespan"]["spec"] if cp > 1)
    t = ["Reading it. With estimates that hold the overheads the makespan ran from %s"
         % sec(best["makespan"], 1),
         "(%s) to %s (%s), the mean wait from %s to %s, and the lowest mean" % (
             best["combo"], sec(worst["makespan"], 1), worst["combo"],
             sec(min(r["wait_mean"] for r in main), 1), sec(max(r["wait_mean"] for r in main), 1)),
         "turnaround was %s's (%s). The tail is decided by when %s" % (
             turn["combo"], sec(turn["turnaround_mean"], 1),
             "the 2-cpu job (a whole host, the longest sleep) starts" if nbig == 1 else
             "the %s 2-cpu jobs (a whole host each, the longest sleeps) start" % (
                 WORDS[nbig] if nbig < len(WORDS) else nbig)),
         "(the *2-cpu starts* column): min-min plans first the jobs that complete",
         "soonest, which favours the many short ones (turnaround) and can leave the big",
         "ones for later (makespan); max-min, sufferage and the online queue (with its",
         "backfill reservation for the first big job that waits) are meant to start",
         "them earlier. Three things to know before comparing policies here:", "",
         "- on namespace hosts of one machine every host reports the same load average",
         "  (the machine's, %s), so `load` sees no difference between" % (
             "above 1 throughout" if res.get("load", {}).get("makespan", {}).get("load1_min", 0) > 1
             else "mostly above 1"),
         "  hosts: with a host's 2 cpus every host scores 0 and the tie goes to the",
         "  host's name (first fit by name);",
         "- every host holds the default image, so `locality` finds nothing to fetch",
         "  anywhere and falls back to pack's score: it scores every host as pack does,",
         "  and its runs differ from pack's only through timing (which job ends first,",
         "  hence which hole opens first)%s;" % noise_note(runs),
         "- one run per combination on a shared machine: a boot takes 2 to 15 s",
         "  depending on what else boots, so differences of a few seconds mean little."]
    tight = [r for r in runs if r["combo"].endswith("+tight")]
    base = [r for r in runs if r["combo"] == "pack/online"]
    if tight and base:
        tr, br = tight[0], base[0]
        worse = tr["makespan"] > br["makespan"] * 1.1 and backfilled(tr) > backfilled(br)
        t += ["", "**Walltime estimates.** With estimates of sleep + %d s (pack, online) the" % TIGHT,
              "makespan was %s against %s with sleep + %d s, the mean wait %s against %s," % (
                  sec(tr["makespan"], 1), sec(br["makespan"], 1), SLACK,
                  sec(tr["wait_mean"], 1), sec(br["wait_mean"], 1)),
              "%d jobs backfilled against %d. The controller counts a job's time from its" % (
                  backfilled(tr), backfilled(br)),
              "placement, and a job that outlives its estimate is taken to end",
              "`overrun_grace` (60 s) later: the reservation backfill keeps for a waiting",
              "2-cpu job then moves to another host, and the 1-cpu jobs behind it may fill",
              "the host that was about to be free. %s" % (
                  "Here that cost the batch its tail: estimates matter as much as the policy."
                  if worse else
                  "In this run that did not visibly happen (the difference is within the"
                  " noise); a dry run while this benchmark was written, with estimates of"
                  " sleep + 15 s, saw a 2-cpu job start 38 s after its submission that way,"
                  " its reserved host taken by a backfilled 1-cpu job.")]
    return t


def summary_text(res):
    lat, tp, ms = res.get("latency"), res.get("throughput"), res.get("makespan")
    t = []
    if lat:
        ivs = lat["intervals"]
        k2 = "2s" if "2s" in ivs else next(iter(ivs))
        t += ["- **Cost: latency.** A job submitted to an idle grid prints its first line",
              "  %s later than `gridvm run` on a host (median of paired differences, at the"
              % sec(med(pair_diff(lat, k2, "on_host"))),
              "  default report interval of 2 s; %s at 1 s), most of it the wait for the" % sec(
                  med(pair_diff(lat, "1s", "on_host")) if "1s" in ivs else float("nan")),
              "  host's next report; `job logs --follow` can show it up to a second later",
              "  still, and `job wait` learns of the end %s after `gridvm run` would have."
              % sec(med(pair_diff(lat, k2, "done"))),
              "  Scheduling itself is not visible at this scale (the job is bound before",
              "  `submit` returns)."]
    if tp:
        g, h = tp["grid"], tp["hand"]
        rg, rh = tp["n"] / g["makespan"] * 60, tp["n"] / h["makespan"] * 60
        right = ("every output right on both sides" if g["ok"] == h["ok"] == tp["n"] else
                 "%d/%d outputs right through the grid, %d/%d by hand" % (g["ok"], tp["n"], h["ok"], tp["n"]))
        t += ["- **Throughput: %.1f against %.1f jobs per minute** (%+.0f%%) for %d short jobs"
              % (rg, rh, (rg / rh - 1) * 100, tp["n"]),
              "  on 4 hosts, %s: the grid's per-job waits for reports show up" % right,
              "  as idle slot time, partly hidden because the CPU is the bottleneck of both."]
    if ms and ms["runs"]:
        known = all(j.get("bound") is not None for r in ms["runs"] for j in r["jobs"])
        over = [r["combo"] for r in ms["runs"] if known and
                (most_bound(r, mib)[0] > 2 or most_bound(r, mib)[1] > 1024)]
        t += ["- **Gain: no manual placement.** One `submit` per job, no host chosen, no",
              "  per-host limits kept by the user, a mixed batch of 1- and 2-cpu jobs placed",
              "  %s, every job's log and exit code kept by the" % (
                  "by the controller" if not known else
                  "without the controller ever binding more to a host than it offers" if not over
                  else "(over-committed in %s!)" % ", ".join(over)),
              "  controller (`job logs`, `job wait`), and one option (`--policy`, `--mode`) to",
              "  change how. By hand, the mixed batch would need a script that knows each",
              "  host's free cpus and memory and when each job ends: what the controller is."]
    t += ["", "Caveats: all VMs run under TCG (no KVM on this machine), so a boot costs",
          "about 2 s of CPU and up to 15 s when eight boot at once; with KVM the boots",
          "shrink and the report interval becomes a larger share of the grid's latency.",
          "Four hosts share two cores with the controller, the agents, the benchmark's",
          "CLI calls and, in this run, other sessions' tests (see the load table); the",
          "namespace hosts share one kernel, so their load averages are the same. Each",
          "number is one run."]
    return t


def history_entry(res):
    """What a run's throughput and latency parts gave, for the history."""
    e = {"finished": res.get("finished"), "command": res["command"], "quick": res.get("quick")}
    tp, lat, load = res.get("throughput"), res.get("latency"), res.get("load", {})
    if tp:
        e["throughput"] = {"n": tp["n"], "grid_jpm": tp["n"] / tp["grid"]["makespan"] * 60,
                           "hand_jpm": tp["n"] / tp["hand"]["makespan"] * 60,
                           "grid_ok": tp["grid"]["ok"], "hand_ok": tp["hand"]["ok"],
                           "load1_mean": load.get("throughput", {}).get("load1_mean")}
    if lat:
        e["latency"] = {ri: {"n": len(gs), "fo": med(pair_diff(lat, ri, "first_output")),
                             "host": med(pair_diff(lat, ri, "on_host")) if pair_diff(lat, ri, "on_host") else None,
                             "done": med(pair_diff(lat, ri, "done"))}
                        for ri, gs in lat["intervals"].items()}
        e["latency_load1_mean"] = load.get("latency", {}).get("load1_mean")
    return e


def history_add(results, res):
    """Keep every run's summary in RESULTS/history.json (one machine's record)."""
    path = os.path.join(results, "history.json")
    hist = json.load(open(path)) if os.path.exists(path) else []
    e = history_entry(res)
    hist = [h for h in hist if (h["finished"], h["command"]) != (e["finished"], e["command"])] + [e]
    json.dump(hist, open(path, "w"), indent=1)
    return hist


def history_load(results):
    path = os.path.join(results, "history.json")
    return json.load(open(path)) if os.path.exists(path) else []


def main():
    ap = argparse.ArgumentParser(description="the grid benchmark (run by bench/grid.sh)")
    ap.add_argument("--quick", action="store_true", help="fewer jobs and runs")
    ap.add_argument("--only", default="latency,throughput,makespan")
    ap.add_argument("--latency-jobs", type=int)
    ap.add_argument("--throughput-jobs", type=int)
    ap.add_argument("--combos")
    ap.add_argument("--results", default=RESULTS)
    ap.add_argument("--doc", default=ROOT + "/docs/bench-grid.md")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    a.latency_jobs = a.latency_jobs or (5 if a.quick else 20)
    a.throughput_jobs = a.throughput_jobs or (24 if a.quick else 100)
    a.combos = a.combos.split(",") if a.combos else (COMBOS_QUICK if a.quick else COMBOS)
    svg = os.path.splitext(a.doc)[0] + ".svg"
    path = os.path.join(a.results, "results.json")
    if a.report_only:
        res = json.load(open(path))
        report(res, a.doc, svg, history_load(a.results))
        print("wrote %s and %s from %s" % (a.doc, svg, path))
        return
    if not (HID and HDIR and CTL and CDIR):
        sys.exit("bench/grid.py: run it through bench/grid.sh (no grid in the environment)")
    os.makedirs(a.results, exist_ok=True)
    cmd = "bench/grid.sh" + "".join(" " + x for x in sys.argv[1:])
    envs = ["%s=%s" % (k, os.environ[k]) for k in ("GV", "GVD", "GVC")
            if os.environ.get(k) and not os.environ[k].startswith(ROOT + "/build/")]
    res = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
           "command": " ".join(envs + [cmd]), "quick": a.quick}
    mon = Monitor()
    mon.start()
    t0 = time.time()
    parts = {"latency": part_latency, "throughput": part_throughput, "makespan": part_makespan}
    for name in a.only.split(","):
        mon.phase = name
        t = time.time()
        parts[name](a, res)
        res.setdefault("part_s", {})[name] = time.time() - t
        json.dump(dict(res, load=mon.summary()), open(path, "w"), indent=1)
    mon.stop = True
    res["load"] = mon.summary()
    res["total_s"] = time.time() - t0
    res["finished"] = time.strftime("%Y-%m-%d %H:%M")
    json.dump(res, open(path, "w"), indent=1)
    report(res, a.doc, svg, history_add(a.results, res))
    log("done in %.0f s; wrote %s, %s and %s" % (res["total_s"], a.doc, svg, path))


if __name__ == "__main__":
    main()
