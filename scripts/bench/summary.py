#!/usr/bin/env python3
"""Summary of a benchmark run: summary.json (machine-readable) and summary.md (the tables of
docs/performance.md), from the raw files the scenarios of scripts/bench/ wrote into BENCH_OUT.

    python3 scripts/bench/summary.py BENCH_OUT                 # writes both, prints the Markdown
    python3 scripts/bench/summary.py BENCH_OUT --section miss-path --print-only

Each section reads only the raw files of one scenario (named after its script) and is left
out (null in summary.json) when they are not there, so a scenario run alone gets a summary of
what it measured. To add a scenario: write its raw files, add a function here that turns them
into a JSON part and Markdown lines, and list it in SECTIONS.
"""

import argparse
import json
import os
import re
import statistics
from collections import Counter, defaultdict

# Commands that change data, and commands that are not part of a request (sessiond's
# background work, connection set-up, the benchmark's own INFO).
WRITES = {"hset", "hsetnx", "hdel", "hincrby", "del", "unlink", "expire", "pexpire", "pexpireat", "expireat",
          "persist", "zadd", "zrem", "zremrangebyscore", "zincrby", "set", "setex", "psetex", "getdel",
          "incr", "incrby", "decr", "lpush", "rpush", "sadd", "srem", "rename"}
BACKGROUND = {"zcount", "zremrangebyscore", "ping", "info", "client", "hello", "select", "script"}


class Raw:
    """The raw files of one run."""

    def __init__(self, out):
        self.out = out

    def path(self, name):
        return os.path.join(self.out, name)

    def exists(self, name):
        return os.path.exists(self.path(name))

    def load(self, name):
        return json.load(open(self.path(name))) if self.exists(name) else None

    def text(self, name):
        return open(self.path(name)).read() if self.exists(name) else ""

    def files(self, pattern):
        return sorted(f for f in os.listdir(self.out) if re.fullmatch(pattern, f))


# ---------------------------------------------------------------------------------------------
# Parsing helpers.

def commandstats(raw):
    """INFO commandstats -> {command: (calls, usec)}."""
    stats = {}
    for line in raw.splitlines():
        m = re.match(r"^cmdstat_([^:]+):calls=(\d+),usec=(\d+)", line.strip())
        if m:
            stats[m.group(1).lower()] = (int(m.group(2)), int(m.group(3)))
    return stats


def stats_delta(before, after):
    """{command: (calls, usec)} executed between two INFO commandstats."""
    b, a = commandstats(before), commandstats(after)
    delta = {}
    for k, (calls, usec) in a.items():
        c0, u0 = b.get(k, (0, 0))
        if calls - c0 > 0:
            delta[k] = (calls - c0, usec - u0)
    return delta


def info_float(raw, field):
    for line in raw.splitlines():
        if line.startswith(field + ":"):
            return float(line.split(":", 1)[1])
    return None


def metric(raw, name, labels=""):
    for line in raw.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return None


def monitor_segments(raw):
    """redis-cli MONITOR between ECHO bench:<label> markers -> {label: [(inside_script, command)]}."""
    segments = defaultdict(list)
    current = None
    for line in raw.splitlines():
        m = re.match(r'^[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"(.*)$', line)
        if not m:
            continue
        source, cmd, rest = m.group(1), m.group(2).lower(), m.group(3)
        if cmd == "echo":
            label = re.search(r'"bench:([^"]+)"', rest)
            current = None if not label or label.group(1) in ("end", "done") else label.group(1)
            continue
        if current is None or cmd in BACKGROUND:
            continue
        segments[current].append((source == "lua", cmd))
    return segments


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def f2(v):
    return "-" if v is None else f"{v:.2f}"


def fmt0(v):
    return "-" if v is None else f"{v:.0f}"


class Md:
    """Markdown lines."""

    def __init__(self):
        self.lines = []

    def add(self, line=""):
        self.lines.append(line)

    def row(self, *cells):
        self.lines.append("| " + " | ".join(str(c) for c in cells) + " |")

    def head(self, *cells):
        self.row(*cells)
        self.row(*["---"] * len(cells))


class Run:
    """What the sections share: the raw files, the summary being built, its Markdown."""

    def __init__(self, out):
        self.raw = Raw(out)
        self.summary = {"machine": self.raw.load("machine.json")}
        self.tck = (self.summary["machine"] or {}).get("clk_tck") or os.sysconf("SC_CLK_TCK")
        self.md = {}

    def cpu(self, name, requests, names=("sessiond", "redis", "baseline")):
        """CPU time around a run (cpu-before-<name>.txt / cpu-after-<name>.txt: the ticks of
        each process in `names`, then the machine's busy and total ticks) per request."""
        b = self.raw.text(f"cpu-before-{name}.txt").split()
        a = self.raw.text(f"cpu-after-{name}.txt").split()
        n = len(names)
        if len(a) < n + 2 or len(b) < n + 2 or not requests:
            return None
        d = [(float(x) - float(y)) / self.tck for x, y in zip(a, b)]
        own = sum(d[:n])
        busy, total = d[n], d[n + 1]
        seconds = dict(zip(names, d[:n]))
        seconds.update(machine_busy=busy, machine_total=total)
        per = {k: 1e6 * v / requests for k, v in zip(names, d[:n])}
        per["rest"] = 1e6 * (busy - own) / requests
        return {"seconds": seconds, "us_per_request": per, "machine_busy_fraction": busy / total if total else None}


# ---------------------------------------------------------------------------------------------
# Sections, one per scenario; each fills run.summary and returns its Markdown lines.

def section_validation(run):
    raw, md = run.raw, Md()
    sd, bl = raw.load("validation-sessiond.json"), raw.load("validation-baseline.json")
    if not sd and not bl:
        run.summary["validation"] = run.summary["redis_per_validation"] = None
        return md
    ratio = sd["rps"] / bl["rps"] if sd and bl else None
    run.summary["validation"] = {"sessiond": sd, "baseline": bl, "ratio_rps": ratio,
                                 "cpu_sessiond_run": run.cpu("validation-sessiond", sd and sd["requests"]),
                                 "cpu_baseline_run": run.cpu("validation-baseline", bl and bl["requests"])}
    md.add("### Validation throughput (wrk, GET /v1/profile, bearer)\n")
    md.head("server", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors")
    for name, d in (("sessiond", sd), ("baseline (bare axum)", bl)):
        if d:
            l = d["latency_ms"]
            md.row(name, f"{d['rps']:.0f}", f2(l["p50"]), f2(l["p90"]), f2(l["p99"]), f2(l["p99_9"]), f2(l["max"]),
                   sum(d["errors"].values()))
    if ratio is not None:
        md.add(f"\nsessiond / baseline throughput: **{ratio:.2f}×**\n")
    cs, cb = run.summary["validation"]["cpu_sessiond_run"], run.summary["validation"]["cpu_baseline_run"]
    if cs and cb:
        md.add("CPU time per request during these two runs (from /proc/<pid>/stat and /proc/stat; "
               "\"rest\" is every other process on the machine, wrk included):\n")
        md.head("run", "sessiond µs", "redis-server µs", "baseline µs", "rest µs", "machine busy")
        for name, c in (("sessiond", cs), ("baseline", cb)):
            u = c["us_per_request"]
            md.row(name, f"{u['sessiond']:.1f}", f"{u['redis']:.1f}", f"{u['baseline']:.1f}", f"{u['rest']:.1f}",
                   f"{100 * c['machine_busy_fraction']:.0f} %")
        md.add("")

    # Redis commands per validation, over the sessiond run.
    delta = {k: calls for k, (calls, _) in stats_delta(raw.text("commandstats-before.txt"),
                                                       raw.text("commandstats-after.txt")).items()}
    lbl = '{outcome="valid"}'
    v0 = metric(raw.text("metrics-before-validation.txt"), "sessiond_session_validations_total", lbl) or 0
    v1 = metric(raw.text("metrics-after-validation.txt"), "sessiond_session_validations_total", lbl) or 0
    validations = int(v1 - v0)
    per = {k: n / validations for k, n in delta.items()} if validations else {}
    fg = {k: v for k, v in per.items() if k not in BACKGROUND}
    rv = run.summary["redis_per_validation"] = {
        "validations": validations,
        "wrk_requests": sd["requests"] if sd else None,
        "calls": delta,
        "per_validation": fg,
        "background_calls": {k: v for k, v in delta.items() if k in BACKGROUND},
        "writes_per_validation": sum(v for k, v in fg.items() if k in WRITES),
        "evalsha_per_validation": fg.get("evalsha", 0.0),
    }
    md.add("### Redis commands per validation (INFO commandstats over the sessiond run)\n")
    md.head("command", "calls", "per validation")
    for k, n in sorted(rv["calls"].items(), key=lambda kv: -kv[1]):
        md.row(k + (" (background)" if k in BACKGROUND else ""), n, f"{n / validations:.4f}" if validations else "-")
    md.add(f"\nvalidations counted by sessiond: {validations} (wrk requests: {rv['wrk_requests']}); "
           f"writes per validation: {rv['writes_per_validation']:.4f}\n")
    return md


def section_commands(run):
    raw, md = run.raw, Md()
    statuses = dict(l.split() for l in raw.text("endpoint-status.txt").splitlines() if l.strip())
    if not statuses:
        run.summary["redis_per_endpoint"] = None
        return md
    segments = monitor_segments(raw.text("monitor.txt"))
    per_endpoint = {}
    for label, status in statuses.items():
        cmds = segments.get(label, [])
        top = [c for lua, c in cmds if not lua]
        inner = Counter(c for lua, c in cmds if lua)
        per_endpoint[label] = {
            "status": int(status),
            "round_trips": len(top),
            "top_level": dict(Counter(top)),
            "in_scripts": dict(inner),
            "writes": sum(n for c, n in inner.items() if c in WRITES) + sum(1 for c in top if c in WRITES),
        }
    run.summary["redis_per_endpoint"] = per_endpoint
    md.add("### Redis round trips and commands per request (MONITOR)\n")
    md.head("request", "status", "round trips", "top-level commands", "commands inside scripts", "writes")
    fmt = lambda d: ", ".join(f"{k}×{v}" if v > 1 else k for k, v in sorted(d.items())) or "-"
    for label, e in per_endpoint.items():
        if label.endswith("+first"):
            continue
        md.row(label, e["status"], e["round_trips"], fmt(e["top_level"]), fmt(e["in_scripts"]), e["writes"])
    md.add("")
    return md


def section_scale(run):
    md = Md()
    scale = run.summary["scale"] = run.raw.load("scale.json")
    if not scale:
        return md
    md.add("### Scale curve (wrk, GET /v1/profile)\n")
    md.head("connections", "sessiond req/s", "sessiond p50 ms", "sessiond p99 ms", "baseline req/s", "baseline p50 ms",
            "baseline p99 ms", "ratio")
    for s in scale:
        a, b = s["sessiond"], s["baseline"]
        md.row(s["connections"], f"{a['rps']:.0f}", f2(a["latency_ms"]["p50"]), f2(a["latency_ms"]["p99"]),
               f"{b['rps']:.0f}" if b else "-", f2(b["latency_ms"]["p50"]) if b else "-",
               f2(b["latency_ms"]["p99"]) if b else "-", f"{a['rps'] / b['rps']:.2f}" if b else "-")
    md.add("")
    return md


def section_latency(run):
    raw, md = run.raw, Md()
    k6load, stress = raw.load("k6-load-summary.json"), raw.load("k6-stress-summary.json")
    if not raw.exists("k6-load.rc") and not raw.exists("k6-stress.rc"):
        run.summary["k6_load"] = run.summary["k6_stress"] = None
        return md

    def endpoints(data):
        rows = {}
        for name, m in (data or {}).get("metrics", {}).items():
            mm = re.match(r"^http_req_duration\{endpoint:([a-z_]+)\}$", name)
            if mm:
                v = m["values"]
                rows[mm.group(1)] = {"count": v.get("count"), "p50": v.get("med"), "p90": v.get("p(90)"),
                                     "p95": v.get("p(95)"), "p99": v.get("p(99)"), "max": v.get("max")}
        return rows

    def thresholds(data):
        res = {}
        for name, m in (data or {}).get("metrics", {}).items():
            for expr, t in (m.get("thresholds") or {}).items():
                res[f"{name}: {expr}"] = t["ok"]
        return res

    kl = run.summary["k6_load"] = {
        "exit_code": int(raw.text("k6-load.rc").strip() or -1),
        "endpoints": endpoints(k6load),
        "http_reqs_rate": k6load["metrics"]["http_reqs"]["values"]["rate"] if k6load else None,
        "http_req_failed": k6load["metrics"]["http_req_failed"]["values"]["rate"] if k6load else None,
        "thresholds": thresholds(k6load),
    }
    steps = []
    if stress:
        hold = (stress.get("setup_data") or {}).get("holdMs", 0) / 1000
        for name, m in stress["metrics"].items():
            mm = re.match(r"^http_req_duration\{endpoint:profile,target:(\d+)\}$", name)
            if mm:
                v = m["values"]
                t = mm.group(1)
                failed = stress["metrics"].get(f"http_req_failed{{target:{t}}}", {}).get("values", {}).get("rate")
                steps.append({"target": int(t), "achieved": v["count"] / hold if hold else None, "p50": v["med"],
                              "p95": v["p(95)"], "p99": v["p(99)"], "max": v["max"], "failed": failed})
        steps.sort(key=lambda s: s["target"])
    run.summary["k6_stress"] = {
        "exit_code": int(raw.text("k6-stress.rc").strip() or -1), "steps": steps,
        "dropped_iterations": (stress or {}).get("metrics", {}).get("dropped_iterations", {}).get("values", {}).get("count")}

    md.add("### k6 load.js (realistic mix, constant arrival rate)\n")
    md.head("endpoint", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms")
    for ep, e in sorted(kl["endpoints"].items(), key=lambda kv: -(kv[1]["count"] or 0)):
        md.row(ep, e["count"], f2(e["p50"]), f2(e["p95"]), f2(e["p99"]), f2(e["max"]))
    md.add(f"\nrate {f2(kl['http_reqs_rate'])} req/s, failed {100 * (kl['http_req_failed'] or 0):.2f} %, "
           f"k6 exit code {kl['exit_code']}; "
           f"thresholds breached: {', '.join(k for k, ok in kl['thresholds'].items() if not ok) or 'none'}\n")
    if steps:
        md.add("### k6 stress.js (validations, staircase of arrival rates)\n")
        md.head("offered req/s", "completed req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "failed")
        for s in steps:
            md.row(s["target"], f"{s['achieved']:.0f}", f2(s["p50"]), f2(s["p95"]), f2(s["p99"]), f2(s["max"]),
                   f"{100 * (s['failed'] or 0):.2f} %")
        md.add(f"\ndropped iterations (k6 could not start them in time): "
               f"{run.summary['k6_stress']['dropped_iterations']}\n")
    return md


def faults(run, name, logins):
    b, a = run.raw.text(f"faults-before-{name}.txt").split(), run.raw.text(f"faults-after-{name}.txt").split()
    if len(a) < 2 or len(b) < 2 or not logins:
        return None
    return {"minor_faults_per_login": (int(a[0]) - int(b[0])) / logins,
            "cpu_ms_per_login": 1000 * (int(a[1]) - int(b[1])) / run.tck / logins}


def section_logins(run):
    raw, md = run.raw, Md()
    rounds = []
    r = 1
    while raw.load(f"argon2-rate-{r}.json") and raw.load(f"login-{r}.json"):
        a, w = raw.load(f"argon2-rate-{r}.json"), raw.load(f"login-{r}.json")
        t = raw.text(f"argon2-rate-{r}-cpu.txt").split()
        logins = w["statuses"]["2xx"]
        h0, h1 = raw.text(f"hash-ticks-before-login-{r}.txt").strip(), raw.text(f"hash-ticks-after-login-{r}.txt").strip()
        c = run.cpu(f"login-{r}", logins, names=("sessiond", "redis"))
        rounds.append({
            "raw_per_second": a["per_second"],
            "raw_cpu_ms_per_verify": 1000 * (float(t[0]) + float(t[1])) / a["verifications"]
            if len(t) >= 2 and a["verifications"] else None,
            "logins": logins, "login_seconds": w["duration_s"], "logins_per_second": logins / w["duration_s"],
            "latency_ms": w["latency_ms"], "statuses": w["statuses"],
            "hash_thread_cpu_ms_per_login": 1000 * (float(h1) - float(h0)) / run.tck / logins
            if h0 and h1 and logins and float(h1) > 0 else None,
            "sessiond_cpu_ms_per_login": c["us_per_request"]["sessiond"] / 1000 if c else None,
            "redis_cpu_ms_per_login": c["us_per_request"]["redis"] / 1000 if c else None,
            "ratio": logins / w["duration_s"] / a["per_second"],
        })
        r += 1
    lg = run.summary.setdefault("login", {})
    if not rounds:
        return md
    m0, m1 = raw.text("metrics-before-login.txt"), raw.text("metrics-after-login.txt")
    hist = lambda text, suffix: metric(text, f"sessiond_password_hash_duration_seconds_{suffix}", '{op="verify"}') or 0
    verify_n = hist(m1, "count") - hist(m0, "count")
    verify_s = hist(m1, "sum") - hist(m0, "sum")

    def mean_of(key):
        v = [x[key] for x in rounds if x.get(key) is not None]
        return sum(v) / len(v) if v else None

    lg.update({"rounds": rounds, "threads": (raw.load("argon2-rate-1.json") or {}).get("threads"),
               "mean_verify_ms_in_service": 1000 * verify_s / verify_n if verify_n else None})
    lg["logins"] = sum(x["logins"] for x in rounds)
    lg["logins_per_second"] = lg["logins"] / sum(x["login_seconds"] for x in rounds)
    lg["raw_per_second"] = mean_of("raw_per_second")
    lg["ratio_to_raw"] = lg["logins_per_second"] / lg["raw_per_second"]
    lg["median_round_ratio"] = statistics.median(x["ratio"] for x in rounds)
    lg["raw_cpu_ms_per_verify"] = mean_of("raw_cpu_ms_per_verify")
    lg["hash_thread_cpu_ms_per_login"] = mean_of("hash_thread_cpu_ms_per_login")
    lg["sessiond_cpu_ms_per_login"] = mean_of("sessiond_cpu_ms_per_login")
    lg["redis_cpu_ms_per_login"] = mean_of("redis_cpu_ms_per_login")
    if lg["raw_cpu_ms_per_verify"] and lg["sessiond_cpu_ms_per_login"]:
        lg["cpu_ratio"] = lg["raw_cpu_ms_per_verify"] / lg["sessiond_cpu_ms_per_login"]
    lg["faults"] = faults(run, "login", lg["logins"])

    md.add(f"### Logins against raw argon2id ({len(rounds)} alternating rounds)\n")
    md.head("round", "raw verify rate", "raw CPU per verify ms", "sessiond logins/s", "ratio",
            "hashing thread CPU per login ms", "sessiond CPU per login ms", "login p50 ms", "login p99 ms", "statuses")
    for n, x in enumerate(rounds, 1):
        md.row(n, f"{x['raw_per_second']:.1f}/s", f2(x["raw_cpu_ms_per_verify"]), f"{x['logins_per_second']:.1f}",
               f"{100 * x['ratio']:.0f} %", f2(x["hash_thread_cpu_ms_per_login"]), f2(x["sessiond_cpu_ms_per_login"]),
               f2(x["latency_ms"]["p50"]), f2(x["latency_ms"]["p99"]),
               " ".join(f"{k}:{v}" for k, v in x["statuses"].items() if v))
    md.add("")
    md.head("measure", "value")
    md.row(f"raw argon2id verify rate, {lg['threads']} thread(s), mean of the rounds", f"{lg['raw_per_second']:.1f}/s")
    md.row(f"sessiond logins, all rounds ({lg['logins']} logins)", f"{lg['logins_per_second']:.1f}/s")
    md.row("throughput ratio: logins / raw rate",
           f"**{100 * lg['ratio_to_raw']:.0f} %** (median of the rounds' ratios {100 * lg['median_round_ratio']:.0f} %)")
    if lg.get("mean_verify_ms_in_service") is not None:
        md.row("mean argon2id verify time inside sessiond (histogram)", f"{lg['mean_verify_ms_in_service']:.1f} ms")
    if lg.get("hash_thread_cpu_ms_per_login") and lg.get("raw_cpu_ms_per_verify"):
        md.row("CPU per raw verification / hashing thread's CPU per login",
               f"{lg['raw_cpu_ms_per_verify']:.1f} ms / {lg['hash_thread_cpu_ms_per_login']:.1f} ms = "
               f"{100 * lg['raw_cpu_ms_per_verify'] / lg['hash_thread_cpu_ms_per_login']:.0f} %")
    if lg.get("cpu_ratio") is not None:
        md.row("CPU per raw verification / sessiond CPU per login (whole process)",
               f"{lg['raw_cpu_ms_per_verify']:.1f} ms / {lg['sessiond_cpu_ms_per_login']:.1f} ms = "
               f"**{100 * lg['cpu_ratio']:.0f} %** (Redis: {lg['redis_cpu_ms_per_login']:.2f} ms per login)")
    if lg.get("faults"):
        md.row("sessiond minor page faults / CPU per login",
               f"{lg['faults']['minor_faults_per_login']:.0f} / {lg['faults']['cpu_ms_per_login']:.1f} ms")
    md.add("")
    return md


def section_memory(run):
    raw, md = run.raw, Md()
    lg = run.summary.setdefault("login", {})
    rows = []
    for variant, key, label in (("memory-default", "memory_default", "default allocator settings"),
                                ("malloc", "malloc_check", "MALLOC_MMAP_THRESHOLD_=1048576")):
        w = raw.load(f"login-{variant}.json")
        if not w:
            continue
        lg[f"{key}_logins_per_second"] = w["statuses"]["2xx"] / w["duration_s"]
        lg[f"{key}_faults"] = faults(run, f"login-{variant}", w["statuses"]["2xx"])
        rows.append((label, lg[f"{key}_logins_per_second"], lg[f"{key}_faults"]))
    if rows:
        md.add("### The malloc check (the same login load on two sessionds)\n")
        md.head("sessiond", "logins/s", "minor page faults per login", "CPU per login ms")
        for label, rate, f in rows:
            md.row(label, f"{rate:.1f}", fmt0(f and f["minor_faults_per_login"]), f2(f and f["cpu_ms_per_login"]))
        md.add("")
    return md


def section_rss(run):
    """sessiond's resident memory by phase, from every scenario's sampler."""
    raw, md = run.raw, Md()

    def rss(names):
        samples = []
        for name in names:
            for line in raw.text(name).splitlines():
                parts = line.split()
                if len(parts) == 3:
                    samples.append((float(parts[0]), parts[1], int(parts[2]) / 1024))
        by_phase = defaultdict(list)
        for _, p, v in sorted(samples):
            by_phase[p].append(v)
        return {p: {"min": round(min(v), 1), "max": round(max(v), 1), "last": round(v[-1], 1)} for p, v in by_phase.items()}

    main = [f for f in raw.files(r"rss-.*\.txt") if f != "rss-sessiond-malloc.txt"]
    rm = {"sessiond": rss(main), "sessiond_malloc_check": rss(["rss-sessiond-malloc.txt"])}
    phase_max = lambda p: (rm["sessiond"].get(p) or {}).get("max")
    rm["idle_after_start"] = (rm["sessiond"].get("start") or {}).get("last")
    rm["validation_max"] = phase_max("validation-sessiond")
    rm["miss_path_validation_max"] = phase_max("miss-sessiond")
    rm["login_max"] = phase_max("login")
    flood = raw.load("login-flood/flood-rss.json") or {}
    rm["login_flood_max"] = flood.get("max_mib")
    run.summary["rss_mib"] = rm
    if not rm["sessiond"] and not rm["sessiond_malloc_check"] and not flood:
        return md
    md.add("### sessiond resident memory (MiB, sampled every 0.5 s)\n")
    md.head("phase", "sessiond min", "sessiond max", "with MALLOC_MMAP_THRESHOLD_ min", "max")
    for p, a in rm["sessiond"].items():
        b = rm["sessiond_malloc_check"].get(p)
        md.row(p, a["min"], a["max"], b["min"] if b else "", b["max"] if b else "")
    for p, b in rm["sessiond_malloc_check"].items():
        if p not in rm["sessiond"]:
            md.row(p, "", "", b["min"], b["max"])
    md.add("")
    figures = [(label, v) for label, v in (
        ("idle after start-up", rm["idle_after_start"]),
        ("max during validations (validation.sh, cache on)", rm["validation_max"]),
        ("max during validations with the cache off (miss-path.sh)", rm["miss_path_validation_max"]),
        ("max during logins (logins.sh, closed loop)", rm["login_max"]),
        ("max during the wrong-password login flood (bench-login-flood.sh)", rm["login_flood_max"])) if v is not None]
    if figures:
        md.head("figure", "MiB")
        for label, v in figures:
            md.row(label, f"{v:.1f}")
        md.add("")
    return md


def section_redis_memory(run):
    raw, md = run.raw, Md()

    def info_field(text, field):
        v = info_float(text, field)
        return None if v is None else int(v)

    def numbers(name):
        return [int(x) for x in raw.text(name).split() if x.strip().lstrip("-").isdigit()]

    def encodings(name):
        return {l.split()[1]: int(l.split()[0]) for l in raw.text(name).splitlines() if len(l.split()) == 2}

    def variant(v):
        mb, ma = raw.text(f"redis-{v}-memory-before.txt"), raw.text(f"redis-{v}-memory-after.txt")
        if not ma:
            return None
        sessions = int(raw.text(f"redis-{v}-sessions-count.txt").strip() or 0)
        used_b, used_a = info_field(mb, "used_memory"), info_field(ma, "used_memory")
        rss_b, rss_a = info_field(mb, "used_memory_rss"), info_field(ma, "used_memory_rss")
        sess_usage = numbers(f"redis-{v}-usage-sessions.txt")
        idx_usage, idx_len = numbers(f"redis-{v}-usage-index.txt"), numbers(f"redis-{v}-index-hlen.txt")
        act_usage, act_card = numbers(f"redis-{v}-usage-active.txt"), numbers(f"redis-{v}-active-zcard.txt")
        return {
            "sessions": sessions,
            "used_memory_before": used_b, "used_memory_after": used_a,
            "bytes_per_session": (used_a - used_b) / sessions if sessions and used_a and used_b else None,
            "rss_bytes_per_session": (rss_a - rss_b) / sessions if sessions and rss_a and rss_b else None,
            "session_hash_memory_usage_mean": sum(sess_usage) / len(sess_usage) if sess_usage else None,
            "session_hash_encodings": encodings(f"redis-{v}-encoding-sessions.txt"),
            "index_bytes_per_entry": sum(idx_usage) / sum(idx_len) if idx_len and sum(idx_len) else None,
            "active_bytes_per_entry": sum(act_usage) / sum(act_card) if act_card and sum(act_card) else None,
            "active_encodings": encodings(f"redis-{v}-encoding-active.txt"),
            "active_sets": len(act_card),
            "keys_before": int(raw.text(f"redis-{v}-dbsize-before.txt").strip() or 0),
            "keys_after": int(raw.text(f"redis-{v}-dbsize-after.txt").strip() or 0),
        }

    names = ("no-user-agent", "browser-user-agent")
    run.summary["redis_memory"] = {v: variant(v) for v in names}
    run.summary["redis_listpack_config"] = raw.text("redis-config-listpack.txt").split()
    variants = [(v, run.summary["redis_memory"][v]) for v in names if run.summary["redis_memory"][v]]
    if not variants:
        return md
    md.add("### Redis memory per session\n")
    md.head("measure", *[v for v, _ in variants])
    md.row("sessions created", *[r["sessions"] for _, r in variants])
    md.row("used_memory before → after (bytes)", *[f"{r['used_memory_before']} → {r['used_memory_after']}" for _, r in variants])
    md.row("**bytes per session** (Δ used_memory / sessions)", *[f"**{fmt0(r['bytes_per_session'])}**" for _, r in variants])
    md.row("Δ used_memory_rss / sessions", *[fmt0(r["rss_bytes_per_session"]) for _, r in variants])
    md.row("session hash: MEMORY USAGE (mean of 200)", *[fmt0(r["session_hash_memory_usage_mean"]) for _, r in variants])
    md.row("session hash encodings (of 200)",
           *[", ".join(f"{k} {n}" for k, n in r["session_hash_encodings"].items()) for _, r in variants])
    md.row("user-sessions index, bytes per entry", *[fmt0(r["index_bytes_per_entry"]) for _, r in variants])
    md.row("active sorted sets, bytes per entry", *[fmt0(r["active_bytes_per_entry"]) for _, r in variants])
    md.row("active sorted set encodings",
           *[", ".join(f"{k} {n}" for k, n in r["active_encodings"].items()) for _, r in variants])
    md.add("")
    return md


MISS_SERVERS = ("sessiond", "tower-sessions", "baseline")


def section_miss_path(run):
    """sessiond (cache off) against tower-sessions: throughput, p99, and Redis work per validation."""
    raw, md = run.raw, Md()
    rounds = []
    while any(raw.exists(f"miss-{s}-{len(rounds) + 1}.json") for s in MISS_SERVERS):
        rounds.append({s: raw.load(f"miss-{s}-{len(rounds) + 1}.json") for s in MISS_SERVERS})
    if not rounds:
        run.summary["miss_path"] = None
        return md
    segments = monitor_segments(raw.text("monitor-miss.txt"))
    result = {"rounds": len(rounds), "servers": {}}
    for s in MISS_SERVERS:
        runs = [(r, x[s]) for r, x in enumerate(rounds, 1) if x[s]]
        if not runs:
            continue
        ok = lambda w: (w.get("statuses") or {}).get("2xx", w["requests"])
        e = {"rps": [w["rps"] for _, w in runs], "p50_ms": [w["latency_ms"]["p50"] for _, w in runs],
             "p99_ms": [w["latency_ms"]["p99"] for _, w in runs],
             "non_2xx": sum(w["requests"] - ok(w) for _, w in runs),
             "errors": sum(sum(w["errors"].values()) for _, w in runs)}
        e["rps_median"], e["p50_ms_median"], e["p99_ms_median"] = median(e["rps"]), median(e["p50_ms"]), median(e["p99_ms"])
        validations = sum(ok(w) for _, w in runs)
        server_cpu = [run.cpu(f"miss-{s}-{r}", ok(w), names=("server", "redis")) for r, w in runs]
        server_cpu = [c for c in server_cpu if c]
        if server_cpu:
            e["server_cpu_us_per_request"] = median(c["us_per_request"]["server"] for c in server_cpu)
            e["redis_process_cpu_us_per_request"] = median(c["us_per_request"]["redis"] for c in server_cpu)
        if s != "baseline":
            calls, usec = Counter(), Counter()
            redis_cpu = 0.0
            for r, _ in runs:
                before = raw.text(f"redis-stats-before-miss-{s}-{r}.txt")
                after = raw.text(f"redis-stats-after-miss-{s}-{r}.txt")
                for k, (c, u) in stats_delta(before, after).items():
                    if k != "info":  # the benchmark's own snapshots
                        calls[k] += c
                        usec[k] += u
                cpu = lambda t: (info_float(t, "used_cpu_sys") or 0) + (info_float(t, "used_cpu_user") or 0)
                redis_cpu += cpu(after) - cpu(before)
            # The commands of a validation are those seen during the MONITORed one; one seen
            # inside a Lua script is already in the script's usec, so only the share of its calls
            # sent by the server itself is added. Commands not seen there (background work) are
            # left out, unless the MONITOR recorded nothing.
            seen = segments.get(f"miss-{s}", [])
            top, inner = Counter(c for lua, c in seen if not lua), Counter(c for lua, c in seen if lua)
            own = lambda k: top[k] / (top[k] + inner[k]) if top[k] + inner[k] else (0.0 if seen else 1.0)
            e["redis"] = {
                "validations": validations,
                "calls": dict(calls),
                "calls_per_validation": {k: n / validations for k, n in calls.items()} if validations else {},
                "usec_per_call": {k: usec[k] / n for k, n in calls.items() if n},
                "sent_per_validation": dict(top),
                "inside_scripts_per_validation": dict(inner),
                "usec_per_validation": sum(u * own(k) for k, u in usec.items()) / validations if validations else None,
                "usec_per_validation_all_commands": sum(usec.values()) / validations if validations else None,
                "redis_cpu_us_per_validation": 1e6 * redis_cpu / validations if validations else None,
            }
            if s == "sessiond":
                v0 = v1 = 0.0
                for r, _ in runs:
                    lbl = '{outcome="valid"}'
                    v0 += metric(raw.text(f"metrics-before-miss-sessiond-{r}.txt"), "sessiond_session_validations_total", lbl) or 0
                    v1 += metric(raw.text(f"metrics-after-miss-sessiond-{r}.txt"), "sessiond_session_validations_total", lbl) or 0
                e["redis"]["validations_counted_by_sessiond"] = int(v1 - v0)
        result["servers"][s] = e
    sd, ts, bl = (result["servers"].get(s) for s in MISS_SERVERS)
    if sd and ts:
        result["ratio_rps"] = sd["rps_median"] / ts["rps_median"]
        result["ratio_rps_rounds"] = [a / b for a, b in zip(sd["rps"], ts["rps"])]
        result["ratio_p99"] = sd["p99_ms_median"] / ts["p99_ms_median"] if ts["p99_ms_median"] else None
    if bl and sd:
        result["sessiond_to_baseline_rps"] = sd["rps_median"] / bl["rps_median"]
    if bl and ts:
        result["tower_sessions_to_baseline_rps"] = ts["rps_median"] / bl["rps_median"]
    get = ts and ts["redis"]["usec_per_call"].get("get")
    result["get_usec_per_call"] = get
    if get and sd and sd["redis"]["usec_per_validation"] is not None:
        result["ratio_usec_per_validation_to_get"] = sd["redis"]["usec_per_validation"] / get
        result["ratio_usec_all_commands_to_get"] = sd["redis"]["usec_per_validation_all_commands"] / get
    run.summary["miss_path"] = result

    md.add(f"### Miss path: sessiond with the validation cache off against tower-sessions "
           f"(wrk, GET profile, medians of {len(rounds)} round(s))\n")
    md.head("server", "req/s", "p50 ms", "p99 ms", "server CPU µs per request", "non-2xx", "socket errors")
    for s in MISS_SERVERS:
        e = result["servers"].get(s)
        if e:
            md.row(s, fmt0(e["rps_median"]), f2(e["p50_ms_median"]), f2(e["p99_ms_median"]),
                   f2(e.get("server_cpu_us_per_request")), e["non_2xx"], e["errors"])
    md.add("")
    md.head("figure", "value")
    if sd and ts:
        md.row("**sessiond / tower-sessions throughput**", f"**{result['ratio_rps']:.2f}×** (rounds: "
               + ", ".join(f"{x:.2f}" for x in result["ratio_rps_rounds"]) + ")")
        md.row("sessiond / tower-sessions p99", f"{f2(result['ratio_p99'])}×")
    if "sessiond_to_baseline_rps" in result:
        md.row("sessiond / bare axum throughput", f"{result['sessiond_to_baseline_rps']:.2f}×")
    if "tower_sessions_to_baseline_rps" in result:
        md.row("tower-sessions / bare axum throughput", f"{result['tower_sessions_to_baseline_rps']:.2f}×")
    for s in ("sessiond", "tower-sessions"):
        e = result["servers"].get(s)
        if not e:
            continue
        rd = e["redis"]
        md.row(f"{s}: Redis usec per validation (the commands a validation sends; a script's own commands "
               f"are in its usec)", f2(rd["usec_per_validation"]))
        md.row(f"{s}: Redis usec per validation, the usec of every command in the run added "
               f"(script internals counted twice, background work included)", f2(rd["usec_per_validation_all_commands"]))
        md.row(f"{s}: redis-server CPU µs per validation (INFO cpu)", f2(rd["redis_cpu_us_per_validation"]))
    md.row("plain GET usec_per_call (tower-sessions run)", f2(get))
    if result.get("ratio_usec_per_validation_to_get") is not None:
        md.row("**sessiond Redis usec per validation / GET usec_per_call**",
               f"**{result['ratio_usec_per_validation_to_get']:.2f}×** (every command added: "
               f"{result['ratio_usec_all_commands_to_get']:.2f}×)")
    md.add("\nRedis commands per validation (INFO commandstats deltas over the runs; \"sent\" and "
           "\"inside scripts\" from one validation under MONITOR):\n")
    md.head("server", "command", "per validation", "usec_per_call", "sent / inside scripts (one validation)")
    for s in ("sessiond", "tower-sessions"):
        e = result["servers"].get(s)
        if not e:
            continue
        rd = e["redis"]
        for k, per in sorted(rd["calls_per_validation"].items(), key=lambda kv: -kv[1]):
            sent, inside = rd["sent_per_validation"].get(k, 0), rd["inside_scripts_per_validation"].get(k, 0)
            md.row(s, k, f"{per:.4f}", f2(rd["usec_per_call"].get(k)),
                   f"{sent} / {inside}" if sent or inside else "- (not part of a validation: background)")
    md.add("")
    return md


def section_cold_start(run):
    """Restarts under load: time from the new process's start to 90 % of the steady throughput."""
    raw, md = run.raw, Md()
    conf, csv, events = raw.load("cold-start.json"), raw.text("cold-start-buckets.csv"), raw.text("cold-start-events.txt")
    if not conf or not csv or not events.strip():
        run.summary["cold_start"] = None
        return md
    width = conf.get("bucket_ms", 100) / 1000
    per_second = round(1 / width)
    buckets = []
    for line in csv.splitlines()[1:]:
        t, ok, other, err = line.split(",")
        buckets.append((float(t), int(ok), int(other), int(err)))
    threshold, window = float(conf["threshold"]), float(conf["steady_window_s"])
    restarts = []
    for line in events.splitlines():
        k, term, exited, start, ready = line.split()
        term, exited, start, ready = float(term), float(exited), float(start), float(ready)
        steady_b = [b for b in buckets if b[0] >= term - window and b[0] + width <= term]
        steady = sum(b[1] for b in steady_b) / (len(steady_b) * width) if steady_b else None
        # The same window at the end of the time after the restart: when it is below the
        # threshold too, the machine's load moved, not the restart.
        end = ready + float(conf["after_s"])
        later_b = [b for b in buckets if b[0] >= end - window and b[0] + width <= end]
        steady_after = sum(b[1] for b in later_b) / (len(later_b) * width) if later_b else None
        # The buckets that began after the new process's start (the one across it may still
        # hold the old process's last answers).
        after = [i for i, b in enumerate(buckets) if b[0] >= start]
        x = {"restart": int(k), "steady_per_second": steady, "steady_after_per_second": steady_after,
             "shutdown_s": exited - term, "ready_s": ready - start,
             "first_2xx_s": None, "gap_s": None, "to_threshold_per_second_s": None, "to_threshold_per_100ms_s": None,
             "non_2xx_after_start": None}
        if steady and after:
            i0 = after[0]
            goal = threshold * steady
            first = next((i for i in after if buckets[i][1] > 0), None)
            if first is not None:
                x["first_2xx_s"] = buckets[first][0] + width - start
                x["gap_s"] = buckets[first][0] + width - term
            for i in after:
                # Trailing second ending with bucket i, counting only what the new process answered.
                done = sum(b[1] for b in buckets[max(i0, i - per_second + 1):i + 1])
                if done >= goal:
                    x["to_threshold_per_second_s"] = buckets[i][0] + width - start
                    break
            for i in after:
                ahead = buckets[i:i + per_second]
                if (buckets[i][1] / width >= goal and len(ahead) == per_second
                        and sum(b[1] for b in ahead) / (per_second * width) >= goal):
                    x["to_threshold_per_100ms_s"] = buckets[i][0] + width - start
                    break
            x["per_100ms_after_start"] = [b[1] for b in buckets[i0:i0 + 3 * per_second]]
            # Non-2xx answers (e.g. 503 while the new process is not connected to Redis yet)
            # until the next restart, or the end.
            x["non_2xx_after_start"] = sum(b[2] for b in buckets[i0:] if b[0] < start + float(conf["after_s"]))
        restarts.append(x)
    keys = ("steady_per_second", "steady_after_per_second", "shutdown_s", "ready_s", "first_2xx_s", "gap_s",
            "to_threshold_per_second_s", "to_threshold_per_100ms_s", "non_2xx_after_start")
    result = {"config": conf, "restarts": restarts, "median": {k: median(x[k] for x in restarts) for k in keys},
              "errors": sum(b[3] for b in buckets), "non_2xx": sum(b[2] for b in buckets)}
    run.summary["cold_start"] = result
    pct = f"{100 * threshold:.0f} %"
    md.add(f"### Cold start: sessiond restarted under load ({conf['connections']} connections, "
           f"{len(restarts)} restart(s), medians)\n")
    md.head("figure", "value", "per restart")
    labels = (("steady throughput before the restart (req/s)", "steady_per_second", fmt0),
              ("the same, at the end of the time after the restart (req/s)", "steady_after_per_second", fmt0),
              ("old process: SIGTERM to exit (s)", "shutdown_s", lambda v: f"{v:.3f}" if v is not None else "-"),
              ("new process: start to /readyz (s, polled every 0.1 s)", "ready_s", f2),
              ("new process: start to its first 2xx (s, end of the 100 ms bucket)", "first_2xx_s", f2),
              ("service gap: SIGTERM to the new process's first 2xx (s)", "gap_s", f2),
              (f"**start to {pct} of steady, per second** (trailing 1 s window, s)", "to_threshold_per_second_s", f2),
              (f"start to {pct} of steady, per 100 ms (sustained for the next second, s)", "to_threshold_per_100ms_s", f2),
              ("non-2xx answers from the new process (e.g. 503 before it reaches Redis)", "non_2xx_after_start", fmt0))
    for label, key, fmt in labels:
        md.row(label, fmt(result["median"][key]), ", ".join(fmt(x[key]) for x in restarts))
    md.add(f"\nconnection errors while sessiond was down (reconnect attempts included): {result['errors']}; "
           f"non-2xx answers: {result['non_2xx']}\n")
    return md


def section_forward_auth(run):
    """nginx with the forward-auth site against the same nginx proxying without a check."""
    raw, md = run.raw, Md()
    rounds = []
    for f in raw.files(r"forward-auth-auth-\d+\.json"):
        r = f[len("forward-auth-auth-"):-len(".json")]
        plain, auth = raw.load(f"forward-auth-plain-{r}.json"), raw.load(f)
        if not plain or not auth:
            continue
        lp, la = plain["latency_ms"], auth["latency_ms"]
        calls = {k: c for k, (c, _) in stats_delta(raw.text(f"commandstats-before-forward-auth-{r}.txt"),
                                                    raw.text(f"commandstats-after-forward-auth-{r}.txt")).items()
                 if k not in BACKGROUND}
        names = ("sessiond", "redis", "nginx")
        rounds.append({"round": int(r), "plain": plain, "auth": auth, "ratio_rps": auth["rps"] / plain["rps"],
                       "p50_added_ms": la["p50"] - lp["p50"], "p99_added_ms": la["p99"] - lp["p99"],
                       "redis_calls_per_check": sum(calls.values()) / auth["requests"] if auth["requests"] else None,
                       "cpu_plain": run.cpu(f"forward-auth-plain-{r}", plain["requests"], names),
                       "cpu_auth": run.cpu(f"forward-auth-auth-{r}", auth["requests"], names)})
    rounds.sort(key=lambda x: x["round"])
    if not rounds:
        run.summary["forward_auth"] = None
        return md
    result = {"rounds": rounds, "nginx": raw.text("nginx-version.txt").strip(),
              "median": {k: median(x[k] for x in rounds) for k in ("ratio_rps", "p50_added_ms", "p99_added_ms")},
              "one_connection": None}
    low = {k: raw.load(f"forward-auth-{k}-c1.json") for k in ("plain", "auth")}
    if low["plain"] and low["auth"]:
        lp, la = low["plain"]["latency_ms"], low["auth"]["latency_ms"]
        result["one_connection"] = {"plain": low["plain"], "auth": low["auth"],
                                    "added_ms": {k: la[k] - lp[k] for k in ("p50", "p90", "p99", "p99_9")}}
    run.summary["forward_auth"] = result
    md.add("### Forward auth through nginx (wrk, GET /reports with a bearer token; upstream: nginx `return 200`)\n")
    md.head("round", "path", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "non-2xx")
    for x in rounds:
        for label, d in (("nginx, no check", x["plain"]), ("nginx + sessiond check", x["auth"])):
            l, st = d["latency_ms"], d.get("statuses") or {}
            md.row(x["round"], label, f"{d['rps']:.0f}", f2(l["p50"]), f2(l["p90"]), f2(l["p99"]), f2(l["p99_9"]),
                   f2(l["max"]), d["requests"] - st.get("2xx", 0) + sum(d["errors"].values()))
    md.add("")
    md.head("round", "with / without check (req/s)", "p50 added ms", "p99 added ms", "Redis commands per check")
    for x in rounds:
        rc = x["redis_calls_per_check"]
        md.row(x["round"], f"**{x['ratio_rps']:.2f}×**", f2(x["p50_added_ms"]), f2(x["p99_added_ms"]),
               f"{rc:.4f}" if rc is not None else "-")
    if all(x["cpu_plain"] and x["cpu_auth"] for x in rounds):
        md.add("\nCPU time per request (from /proc/<pid>/stat and /proc/stat; nginx is its master and workers; "
               "\"rest\" is every other process on the machine, wrk included):\n")
        md.head("round", "path", "nginx µs", "sessiond µs", "redis-server µs", "rest µs", "machine busy")
        for x in rounds:
            for label, c in (("no check", x["cpu_plain"]), ("check", x["cpu_auth"])):
                u = c["us_per_request"]
                md.row(x["round"], label, f"{u['nginx']:.1f}", f"{u['sessiond']:.1f}", f"{u['redis']:.1f}",
                       f"{u['rest']:.1f}", f"{100 * c['machine_busy_fraction']:.0f} %")
    one = result["one_connection"]
    if one:
        md.add("\nOver one connection (no queueing: the latency of the path itself):\n")
        md.head("path", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms")
        for label, d in (("nginx, no check", one["plain"]), ("nginx + sessiond check", one["auth"])):
            l = d["latency_ms"]
            md.row(label, f"{d['rps']:.0f}", f2(l["p50"]), f2(l["p90"]), f2(l["p99"]), f2(l["p99_9"]), f2(l["max"]))
        a = one["added_ms"]
        md.row("added by the check", "", f2(a["p50"]), f2(a["p90"]), f2(a["p99"]), f2(a["p99_9"]), "")
    md.add(f"\n{result['nginx']}\n")
    return md


def section_loadavg(run):
    md = Md()
    run.summary["loadavg"] = [l.split(maxsplit=1) for l in run.raw.text("loadavg.txt").splitlines()]
    if run.summary["loadavg"]:
        md.add("### Load average (1 min) at the start of each phase\n")
        md.add(", ".join(f"{p}: {v.split()[0]}" for p, v in run.summary["loadavg"]) + "\n")
    return md


def targets(run):
    s, t = run.summary, []

    def target(name, goal, measured, ok, note=""):
        t.append({"target": name, "goal": goal, "measured": measured, "met": ok, "note": note})

    v = s.get("validation") or {}
    r = v.get("ratio_rps")
    if r is not None:
        target("validation throughput vs baseline", ">= 0.6x", f"{r:.2f}x", r >= 0.6)
    p99_k6 = ((s.get("k6_load") or {}).get("endpoints") or {}).get("profile", {}).get("p99")
    if p99_k6 is not None:
        target("validation p99 (k6 load.js)", "<= 5 ms", f"{p99_k6:.2f} ms", p99_k6 <= 5)
    sd = v.get("sessiond")
    if sd:
        target("validation p99 (wrk, saturated)", "<= 5 ms", f"{sd['latency_ms']['p99']:.2f} ms", sd["latency_ms"]["p99"] <= 5)
    rv = s.get("redis_per_validation")
    if rv and rv["validations"]:
        w = rv["writes_per_validation"]
        target("Redis writes per validation", "0", f"{w:.4f}", w < 0.001)
    lg = s.get("login") or {}
    if lg.get("ratio_to_raw") is not None:
        target("login rate vs raw argon2id verify (throughput)", ">= 90 %",
               f"{100 * lg['ratio_to_raw']:.0f} % (median of {len(lg['rounds'])} rounds "
               f"{100 * lg['median_round_ratio']:.0f} %)", lg["ratio_to_raw"] >= 0.9)
    if lg.get("cpu_ratio") is not None:
        target("login rate vs raw argon2id verify (CPU per login)", ">= 90 %", f"{100 * lg['cpu_ratio']:.0f} %",
               lg["cpu_ratio"] >= 0.9)
    rs = (s.get("rss_mib") or {}).get("sessiond")
    if rs:
        peak = max(x["max"] for x in rs.values())
        target("sessiond RSS under load", "<= 64 MiB", f"{peak:.0f} MiB (max over the run)", peak <= 64)
    fa = (s.get("forward_auth") or {}).get("median")
    if fa:
        target("forward auth through nginx vs nginx alone (throughput)", ">= 0.6x", f"{fa['ratio_rps']:.2f}x",
               fa["ratio_rps"] >= 0.6)
        target("forward auth: p99 added by the check", "<= 1 ms", f"{fa['p99_added_ms']:.2f} ms",
               fa["p99_added_ms"] <= 1)
    for variant, label in (("browser-user-agent", "with a browser User-Agent"), ("no-user-agent", "without User-Agent")):
        rmv = (s.get("redis_memory") or {}).get(variant)
        if rmv and rmv["bytes_per_session"] is not None:
            bps = rmv["bytes_per_session"]
            target(f"Redis memory per session ({label})", "<= 400 B", f"{bps:.0f} B", bps <= 400)
    s["targets"] = t
    md = Md()
    if t:
        md.add("### Targets\n")
        md.head("target", "goal", "measured", "met")
        for x in t:
            md.row(x["target"], x["goal"], x["measured"], "met" if x["met"] else "**missed**")
    return md


# In the order of summary.md; the names are the scenarios' (scripts/bench/<name>.sh).
SECTIONS = [
    ("validation", section_validation),
    ("commands", section_commands),
    ("scale", section_scale),
    ("latency", section_latency),
    ("logins", section_logins),
    ("memory", section_memory),
    ("rss", section_rss),
    ("redis-memory", section_redis_memory),
    ("miss-path", section_miss_path),
    ("cold-start", section_cold_start),
    ("forward-auth", section_forward_auth),
    ("loadavg", section_loadavg),
]
# The summary keys of the old single script first, in their old order, then the new ones.
KEY_ORDER = ["machine", "validation", "redis_per_validation", "redis_per_endpoint", "scale", "k6_load", "k6_stress",
             "login", "rss_mib", "redis_memory", "redis_listpack_config", "miss_path", "cold_start", "forward_auth", "loadavg", "targets"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="BENCH_OUT: the raw files of the run")
    ap.add_argument("--section", help="print only this section (a scenario's name)")
    ap.add_argument("--print-only", action="store_true", help="write neither summary.json nor summary.md")
    args = ap.parse_args()
    run = Run(args.out)
    for name, fn in SECTIONS:
        run.md[name] = fn(run).lines
    run.md["targets"] = targets(run).lines
    summary = {k: run.summary.get(k) for k in KEY_ORDER}
    m = summary["machine"] or {}
    header = [f"Machine: {m.get('nproc')} CPUs ({m.get('cpu_model')}), {m.get('memory_gib')} GiB, {m.get('os')}, "
              f"kernel {m.get('kernel')}; commit {m.get('commit')}; "
              f"load average at start {' '.join(m.get('loadavg_at_start') or [])}\n"]
    if args.section:
        extra = {"validation": ["rss"], "logins": ["rss"], "memory": ["rss"], "miss-path": ["rss"]}.get(args.section, [])
        lines = run.md.get(args.section, []) + [l for e in extra for l in run.md[e]]
        print("\n".join(lines) + "\n")
        return
    md = "\n".join(header + [l for name, _ in SECTIONS for l in run.md[name]] + run.md["targets"]) + "\n"
    if not args.print_only:
        json.dump(summary, open(os.path.join(args.out, "summary.json"), "w"), indent=2)
        open(os.path.join(args.out, "summary.md"), "w").write(md)
    print(md)


if __name__ == "__main__":
    main()
