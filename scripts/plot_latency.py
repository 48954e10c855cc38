#!/usr/bin/env python3
"""Plot sessiond's validation latency against load, from k6 (and optionally wrk) results.

Inputs (any number, any mix):

* the JSON summary of loadtest/stress.js (``loadtest/results/stress-summary.json``): one point
  per step of the staircase, from the per-step submetrics
  ``http_req_duration{endpoint:<endpoint>,target:<rate>}``;
* any other k6 JSON summary written by the load tests' handleSummary (load.js, spike.js, ...):
  one point, the run's request rate against the percentiles of
  ``http_req_duration{endpoint:<endpoint>}``;
* k6 ``--out json=<file>`` output (NDJSON, optionally .gz): requests of that endpoint binned by
  time (``--bin`` seconds), one point per bin: completed requests per second against the
  bin's percentiles.

``--scale <file>`` adds a second panel from scripts/bench.sh's ``scale.json`` (wrk at 1, 8, 64,
256 connections: throughput and p50/p99 of sessiond and of the bare axum baseline).

    python3 scripts/plot_latency.py loadtest/results/stress-summary.json
    python3 scripts/plot_latency.py -o /tmp/plot.png --out-json k6.json.gz --bin 5
    python3 scripts/plot_latency.py loadtest/results/bench/k6-stress-summary.json \\
        --scale loadtest/results/bench/scale.json -o docs/latency-vs-load.png

Needs matplotlib (``apt-get install -y python3-matplotlib``).
"""

import argparse
import gzip
import json
import math
import re
import sys
from datetime import datetime

SUBMETRIC = re.compile(r"^(?P<metric>[a-z_]+)\{(?P<tags>[^}]*)\}$")


def tags_of(name):
    """'http_req_duration{endpoint:profile,target:500}' -> ('http_req_duration', {...})."""
    m = SUBMETRIC.match(name)
    if not m:
        return name, {}
    tags = {}
    for part in m.group("tags").split(","):
        if ":" in part:
            k, v = part.split(":", 1)
            tags[k.strip()] = v.strip()
    return m.group("metric"), tags


def percentiles(values):
    v = values
    return {
        "p50": v.get("med", v.get("p(50)")),
        "p90": v.get("p(90)"),
        "p95": v.get("p(95)"),
        "p99": v.get("p(99)"),
        "max": v.get("max"),
    }


def points_from_summary(path, data, endpoint):
    """Points from a k6 summary: per stress step when present, else one for the run."""
    metrics = data.get("metrics", {})
    setup = data.get("setup_data") or {}
    hold_s = (setup.get("holdMs") or 0) / 1000.0
    steps = []
    for name, metric in metrics.items():
        base, tags = tags_of(name)
        if base != "http_req_duration" or tags.get("endpoint") != endpoint or "target" not in tags:
            continue
        try:
            target = float(tags["target"])
        except ValueError:
            continue
        values = metric.get("values", {})
        count = values.get("count")
        failed = metrics.get(f"http_req_failed{{target:{tags['target']}}}", {}).get("values", {}).get("rate")
        point = {"label": f"{int(target)}/s", "offered": target, "failed": failed}
        point["achieved"] = count / hold_s if count is not None and hold_s > 0 else target
        point.update(percentiles(values))
        steps.append(point)
    if steps:
        return sorted(steps, key=lambda p: p["offered"]), "stress steps"
    duration_s = (data.get("state", {}).get("testRunDurationMs") or 0) / 1000.0
    name = f"http_req_duration{{endpoint:{endpoint}}}"
    metric = metrics.get(name) or metrics.get("http_req_duration")
    if not metric:
        raise SystemExit(f"{path}: no http_req_duration metric")
    values = metric.get("values", {})
    count = values.get("count")
    rate = count / duration_s if count and duration_s else metrics.get("http_reqs", {}).get("values", {}).get("rate")
    point = {"label": path.rsplit("/", 1)[-1], "offered": rate, "achieved": rate, "failed": None}
    point.update(percentiles(values))
    return [point], "run"


def parse_time(text):
    # k6 writes RFC 3339 with nanoseconds and a zone, e.g. 2026-11-23T14:00:00.123456789Z.
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        raise ValueError(f"unexpected time {text!r}")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = datetime.fromisoformat(m.group(1) + zone).timestamp()
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return base + frac


def quantile(sorted_values, q):
    if not sorted_values:
        return None
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def points_from_ndjson(path, endpoint, bin_s):
    opener = gzip.open if path.endswith(".gz") else open
    bins = {}
    with opener(path, "rt") as f:
        for line in f:
            if '"http_req_duration"' not in line or '"Point"' not in line:
                continue
            rec = json.loads(line)
            if rec.get("type") != "Point" or rec.get("metric") != "http_req_duration":
                continue
            d = rec["data"]
            if (d.get("tags") or {}).get("endpoint") != endpoint:
                continue
            t = parse_time(d["time"])
            bins.setdefault(int(t // bin_s), []).append(d["value"])
    if not bins:
        raise SystemExit(f"{path}: no http_req_duration points with endpoint={endpoint}")
    keys = sorted(bins)
    # The first and last bins are partial.
    if len(keys) > 2:
        keys = keys[1:-1]
    points = []
    for k in keys:
        values = sorted(bins[k])
        rate = len(values) / bin_s
        points.append({
            "label": f"t+{(k - keys[0]) * bin_s:.0f}s",
            "offered": rate,
            "achieved": rate,
            "failed": None,
            "p50": quantile(values, 0.50),
            "p90": quantile(values, 0.90),
            "p95": quantile(values, 0.95),
            "p99": quantile(values, 0.99),
            "max": values[-1],
        })
    points.sort(key=lambda p: p["achieved"])
    return points, f"{bin_s:g} s bins"


def load(path, endpoint, bin_s):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        head = f.read(1)
        while head and head.isspace():
            head = f.read(1)
        if head == "{":
            rest = f.read()
            try:
                data = json.loads(head + rest)
            except json.JSONDecodeError:
                data = None
            if isinstance(data, dict) and "metrics" in data:
                return points_from_summary(path, data, endpoint)
    return points_from_ndjson(path, endpoint, bin_s)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", help="k6 summaries (JSON) or k6 --out json files")
    ap.add_argument("--out-json", action="append", default=[], help="k6 --out json file (NDJSON)")
    ap.add_argument("-o", "--output", default="docs/latency-vs-load.png", help="PNG to write")
    ap.add_argument("--endpoint", default="profile", help="endpoint tag to plot (default: profile)")
    ap.add_argument("--bin", type=float, default=5.0, help="bin width in seconds for NDJSON input")
    ap.add_argument("--scale", help="scale.json of scripts/bench.sh (wrk connection sweep)")
    ap.add_argument("--slo-ms", type=float, default=25.0, help="p99 SLO line in ms (0: none)")
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)

    inputs = list(args.inputs) + list(args.out_json)
    if not inputs and not args.scale:
        ap.error("give at least one k6 result or --scale")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is missing: apt-get install -y python3-matplotlib (or pip install matplotlib)")

    series = [(path,) + load(path, args.endpoint, args.bin) for path in inputs]
    panels = (1 if series else 0) + (1 if args.scale else 0)
    fig, axes = plt.subplots(1, panels, figsize=(7.5 * panels, 5.2), squeeze=False)
    axes = axes[0]
    i = 0
    if series:
        ax = axes[i]
        i += 1
        styles = {"p50": ("o-", "tab:blue"), "p95": ("s-", "tab:orange"), "p99": ("^-", "tab:red")}
        for n, (path, points, kind) in enumerate(series):
            suffix = f" ({path.rsplit('/', 1)[-1]})" if len(series) > 1 else ""
            xs = [p["achieved"] for p in points]
            for q, (marker, color) in styles.items():
                ys = [p[q] for p in points]
                if all(y is None for y in ys):
                    continue
                ax.plot(xs, ys, marker, color=color, alpha=1.0 if n == 0 else 0.5, label=f"{q}{suffix}")
            if kind == "stress steps":
                for p in points:
                    if p["p99"] is not None:
                        ax.annotate(p["label"], (p["achieved"], p["p99"]), textcoords="offset points",
                                    xytext=(4, 6), fontsize=7, color="tab:red")
        if args.slo_ms > 0:
            ax.axhline(args.slo_ms, color="grey", linestyle="--", linewidth=1, label=f"SLO p99 {args.slo_ms:g} ms")
        ax.set_yscale("log")
        ax.set_xlabel(f"completed {args.endpoint} requests per second (k6)")
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_title(args.title or f"GET /v1/{args.endpoint}: latency vs load (k6, open model)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if args.scale:
        ax = axes[i]
        with open(args.scale) as f:
            scale = json.load(f)
        ax2 = ax.twinx()
        for target, color in (("sessiond", "tab:green"), ("baseline", "tab:gray")):
            rows = [r for r in scale if r.get(target)]
            if not rows:
                continue
            cs = [r["connections"] for r in rows]
            ax.plot(cs, [r[target]["rps"] for r in rows], "o-", color=color, label=f"{target} req/s")
            ax2.plot(cs, [r[target]["latency_ms"]["p99"] for r in rows], "^--", color=color, alpha=0.7,
                     label=f"{target} p99")
        ax.set_xscale("log", base=2)
        ticks = sorted({r["connections"] for r in scale})
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(c) for c in ticks])
        ax.set_xlabel("wrk connections (closed model)")
        ax.set_ylabel("requests per second")
        ax2.set_yscale("log")
        ax2.set_ylabel("p99 latency (ms, log scale)")
        ax.set_title("GET /v1/profile: wrk connection sweep")
        ax.grid(True, which="both", alpha=0.3)
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")
    for path, points, kind in series:
        print(f"{path} ({kind}):")
        for p in points:
            fmt = lambda v: "-" if v is None else f"{v:.2f}"
            failed = "" if p["failed"] is None else f" failed={100 * p['failed']:.2f}%"
            print(f"  {p['label']:>10}: {p['achieved']:8.1f} req/s  p50={fmt(p['p50'])} p95={fmt(p['p95'])} "
                  f"p99={fmt(p['p99'])} max={fmt(p['max'])} ms{failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
