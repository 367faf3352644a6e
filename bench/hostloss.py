#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The tables of bench/hostloss.sh, in markdown, from its results
directory: hostloss.py RESULTS LEASE_S LEADER_LEASE_S."""
import json
import os
import re
import statistics
import sys

RES = sys.argv[1]
LEASE = float(sys.argv[2])
LEADER = float(sys.argv[3])


def jl(name):
    p = os.path.join(RES, name)
    if not os.path.exists(p):
        return []
    return [json.loads(x) for x in open(p) if x.strip()]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def mm(xs, fmt="%.1f"):
    """median / max"""
    if not xs:
        return "-"
    return (fmt + " / " + fmt) % (med(xs), max(xs))


def size(b):
    for unit, n in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= n:
            return "%.1f %s" % (b / n, unit)
    return "%d B" % b


def load_table():
    p = os.path.join(RES, "load.tsv")
    if not os.path.exists(p):
        return
    rows = [x.rstrip("\n").split("\t") for x in open(p) if x.strip()]
    parts = []
    for r in rows:
        if r[1] not in parts and r[1] not in ("setup", "done"):
            parts.append(r[1])
    print("### The machine while it ran\n")
    print("Sampled every 2 s. *Other QEMUs*: VMs of other sessions' test runs on this "
          "machine (not this benchmark's); *other host sets*: other runs' namespace hosts.\n")
    print("| part | took | load (1 min) min / mean / max | CPU busy | other QEMUs mean / max | other host sets max |")
    print("|---|---:|---|---:|---|---:|")
    for ph in parts:
        ss = [r for r in rows if r[1] == ph]
        ld = [float(r[2]) for r in ss]
        busy = [float(r[3]) for r in ss]
        fq = [int(r[4]) for r in ss]
        runs = [int(r[5]) for r in ss]
        took = (int(ss[-1][0]) - int(ss[0][0]) + 2) / 60
        print("| %s | %.1f min | %.1f / %.1f / %.1f | %.0f%% | %.1f / %d | %d |" % (
            ph, took, min(ld), statistics.mean(ld), max(ld), statistics.mean(busy),
            statistics.mean(fq), max(fq), max(runs)))
    print()


COPY = re.compile(r"checkpoint (\S+) of (\S+) copied to (\S+): (\d+) bytes of chunks it lacked, (\d+) ms")


def overhead():
    link = jl("overhead_link.jsonl")
    if not link:
        return
    print("### Checkpoint replication on a running job\n")
    print("Two jobs of a 256 MiB guest, checkpoints every 10 s, one replica each, on "
          "hosts that hold nothing of the other job. Per checkpoint (its manifest on "
          "the job's host): *pause*: the guest stopped (QEMU's downtime plus storing "
          "the disk overlay and the job output); *took*: the whole checkpoint (the "
          "live memory pre-copy into the chunk store, then the pause); *stream*: "
          "QEMU's memory stream; *new chunks*: bytes the host's chunk store had to "
          "add. Per copy to the replica (the agent mirrors whatever is missing there "
          "after each checkpoint: one copy can carry several checkpoints when the "
          "previous copy took longer than the interval): *copied*: the chunks the "
          "replica lacked, as the agent logged, and the copy's time; *on the link*: "
          "the bytes between the two hosts over that copy, both directions, IP "
          "packets as counted by HTB classes on both hosts (requests, chunks, "
          "TCP/IP headers; nothing else passes between those two hosts).\n")
    summary = []
    for kind, what in (("idle", "a counter printing a line a second (nearly idle)"),
                       ("dirty", "8 MiB of fresh random data written into its tmpfs every second")):
        try:
            mans = sorted(json.load(open(os.path.join(RES, "overhead_%s.manifests.json" % kind))),
                          key=lambda m: m["id"])
        except OSError:
            continue
        idx = {m["id"]: i + 1 for i, m in enumerate(mans)}
        lk = [x for x in link if x["kind"] == kind]
        print("**%s**: %s\n" % (kind, what))
        print("| checkpoint | pause | took | stream | new chunks |")
        print("|---:|---:|---:|---:|---:|")
        for i, m in enumerate(mans):
            print("| %d | %.0f ms | %.2f s | %s | %s |" % (
                i + 1, m["pause_ms"], m["seconds"], size(m["memory"]["bytes"]), size(m["bytes_added"])))
        print()
        print("| copy | carried checkpoints | copied | copy time | on the link | link / copied |")
        print("|---:|---|---:|---:|---:|---:|")
        prev, last, rows = 0, 0, []
        for k, x in enumerate(lk):
            c = COPY.search(x["line"])
            if not c:
                continue
            upto = idx.get(c.group(1), 0)
            carried = "%d" % upto if upto == last + 1 else "%d-%d" % (last + 1, upto)
            row = {"first": last == 0, "n": upto - last, "copied": int(c.group(4)),
                   "ms": int(c.group(5)), "link": x["pair_bytes"] - prev}
            rows.append(row)
            print("| %d | %s | %s | %.2f s | %s | %.2f |" % (
                k + 1, carried, size(row["copied"]), row["ms"] / 1000, size(row["link"]),
                row["link"] / row["copied"] if row["copied"] else 0))
            prev, last = x["pair_bytes"], upto
        print()
        summary.append((kind, mans, rows))
    if summary:
        print("Summary: the first checkpoint and the copy that carried it, then the "
              "median (max) of the later ones.\n")
        print("| job | | pause | took | new chunks | copied | copy time | on the link |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for kind, mans, rows in summary:
            f, fr = mans[0], rows[0] if rows else None
            print("| %s | first | %.0f ms | %.2f s | %s | %s | %.2f s | %s |" % (
                kind, f["pause_ms"], f["seconds"], size(f["bytes_added"]),
                size(fr["copied"]) if fr else "-", fr["ms"] / 1000 if fr else 0,
                size(fr["link"]) if fr else "-"))
            lm, lr = mans[1:], [r for r in rows[1:]]
            if lm and lr:
                g = lambda xs: (med(xs), max(xs))
                pa, to, ad = g([m["pause_ms"] for m in lm]), g([m["seconds"] for m in lm]), \
                    g([m["bytes_added"] for m in lm])
                cp, ms, li = g([r["copied"] for r in lr]), g([r["ms"] for r in lr]), \
                    g([r["link"] for r in lr])
                print("| %s | later (%d checkpoints, %d copies) | %.0f (%.0f) ms | %.2f (%.2f) s | %s (%s) | %s (%s) | %.2f (%.2f) s | %s (%s) |" % (
                    kind, len(lm), len(lr), pa[0], pa[1], to[0], to[1], size(ad[0]), size(ad[1]),
                    size(cp[0]), size(cp[1]), ms[0] / 1000, ms[1] / 1000, size(li[0]), size(li[1])))
        print()


def recovery():
    rs = jl("recovery.jsonl")
    if not rs:
        return
    print("### Host death to jobs running again, and work lost\n")
    print("Host lease %.0f s, grace %.0f s (the defaults), reports every 2 s. Per job "
          "(median / max over the rounds), times from the SIGKILL of its host's agent "
          "and QEMUs: *lost*: the controller declares the host lost; *running*: the "
          "controller marks the job running on its new host (restored from its "
          "checkpoint, or booted anew); *back*: its log on the new host reaches the "
          "count the dead host had printed (the job has caught up: the delay the user "
          "sees at the end of the job). *Work lost*: lines the dead host printed past "
          "the checkpoint the job went on from (one line a second, so about seconds of "
          "computation); *bound*: what the controller recorded (`work_lost_s`: since "
          "that checkpoint, up to the host's last report plus the lease).\n" % (LEASE, LEASE))
    print("| checkpoints | jobs | lost (s) | running (s) | back (s) | work lost (lines) | bound (s) | restored from |")
    print("|---|---:|---|---|---|---|---|---|")
    everys = sorted({r["every"] for r in rs}, key=lambda e: (e == 0, e))
    for e in everys:
        g = [r for r in rs if r["every"] == e]
        lost = [r["t_lost"] - r["t_kill"] for r in g]
        run = [r["t_running"] - r["t_kill"] for r in g]
        back = [r["t_back"] - r["t_kill"] for r in g]
        wl = [r["lost_lines"] for r in g]
        bound = [r["bound_s"] for r in g]
        if e:
            ck = [r for r in g if r["checkpoint"] != "none"]
            here = sum(r.get("holder") == r["to"] for r in ck)
            frm = "a checkpoint: %d/%d (%d on the replica itself, %d fetched from it)" % (
                len(ck), len(g), here, len(ck) - here)
        else:
            frm = "the beginning (%d/%d)" % (sum(r["checkpoint"] == "none" for r in g), len(g))
        print("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
            "every %d s" % e if e else "none", len(g), mm(lost), mm(run), mm(back),
            mm(wl, "%.0f"), mm(bound), frm))
    print()
    print("Per host death (all four jobs):\n")
    print("| round | host | killed after a wait of | lost | last job running | last job back | work lost per job (5 s, 10 s, 20 s, none) |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for rd in sorted({r["round"] for r in rs}):
        g = sorted([r for r in rs if r["round"] == rd], key=lambda r: (r["every"] == 0, r["every"]))
        t0 = g[0]["t_kill"]
        print("| %d | %s | %.1f s | %.1f s | %.1f s | %.1f s | %s |" % (
            rd, g[0]["victim"], g[0]["delay_s"], max(r["t_lost"] for r in g) - t0,
            max(r["t_running"] for r in g) - t0, max(r["t_back"] for r in g) - t0,
            ", ".join(str(r["lost_lines"]) for r in g)))
    print()


def failover():
    fs = jl("failover.jsonl")
    if not fs:
        return
    print("### Controller failover\n")
    print("Three `gridvmctld` on one etcd, leader lease %.0f s (the default with etcd), "
          "agents and CLI given all three addresses, reports every 2 s. Times from the "
          "SIGKILL of the leader: *key expires*: etcd deletes the dead leader's key (its "
          "lease ran out); *leads*: another controller holds the key (both from an "
          "`etcdctl watch` stamped as its lines arrive); *CLI*: a `gridvm jobs` started "
          "at the kill returns; *submit*: a `gridvm submit` started at the kill returns "
          "its id; *agents*: the last of the three agents has had a report answered by "
          "the new leader; *placed* / *runs*: the job submitted at the kill is bound to "
          "a host / running. A counting job ran on one host through every failover: "
          "*kept running* says it was still running there and its count had grown.\n" % LEADER)
    print("| # | killed | new | key expires | leads | CLI | submit | agents | placed | runs | kept running | ran once |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    keys = ("exp", "leads", "cli", "sub", "agents", "bound", "run")
    cols = {k: [] for k in keys}
    for f in fs:
        t0 = f["t_kill"]
        v = {"exp": f["t_expired"] - t0 if isinstance(f.get("t_expired"), float) else None,
             "leads": f["t_lead"] - t0, "cli": f["t_cli"] - t0, "sub": f["t_submit"] - t0,
             "agents": f["t_agents"] - t0, "bound": f["t_sub_bound"] - t0,
             "run": f["t_sub_started"] - t0}
        for k in keys:
            if v[k] is not None:
                cols[k].append(v[k])
        print("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s (%s -> %s) | %s |" % ((
            f["round"], f["old"], f["new"]) + tuple("%.2f s" % v[k] if v[k] is not None else "-"
                                                   for k in keys) + (
            "yes" if str(f["long_after"]).isdigit() and str(f["long_before"]).isdigit()
            and int(f["long_after"]) > int(f["long_before"]) else "no",
            f["long_before"], f["long_after"],
            "yes" if f["sub_starts"] == 1 else "no (%s)" % f["sub_starts"])))
    print("| | | median / max | %s | | |" % " | ".join(mm(cols[k], "%.2f") for k in keys))
    print()


load_table()
overhead()
recovery()
failover()
