#!/usr/bin/env python3
"""Lint the Grafana dashboards in grafana/dashboards (Python standard library only).

Checks, for every *.json dashboard:
  - the file parses as JSON and has a title and a uid unique across dashboards;
  - schemaVersion >= 39;
  - panel ids are unique within the dashboard (rows and nested panels included);
  - every datasource is referenced by uid, and every uid (and its type) is one
    provisioned in grafana/provisioning/datasources;
  - every Prometheus target expression parses as PromQL. promtool is the parser:
    the expressions, with Grafana variables replaced by plain values, are
    written as recording rules into a temporary rules file and checked with
    `promtool check rules`;
  - range selectors use $__rate_interval (or another Grafana interval
    variable), multi-value variables are matched with =~, only variables the
    dashboard defines are used, and every graph or stat panel sets a unit.

Usage:
  scripts/lint-dashboards.py               lint, exit 1 on any problem
  scripts/lint-dashboards.py --list-exprs  print every Prometheus expression
                                           (after substitution) as one JSON
                                           object per line and exit

--list-exprs fields: dashboard, dashboard_uid, file, panel, panel_id, ref_id,
legend, expr, and may_be_empty: true for a breakdown target ("sum by (...)")
whose panel has a sibling target that falls back to 0 ("or vector(0)"): an
empty result for it alone is expected while the counted event has not happened.

Substitutions: $__rate_interval and $__interval -> 1m, $__range -> 1h,
dashboard variables ($instance, ${instance}, [[instance]]) -> .*
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIN_SCHEMA_VERSION = 39

# Grafana's global variables, replaced by values that keep the PromQL valid.
BUILTIN_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
# Data source uids Grafana provides itself.
BUILTIN_DATASOURCE_UIDS = {"-- Grafana --", "grafana", "-- Mixed --", "-- Dashboard --"}
# Panel types that display numbers and therefore need a unit.
UNIT_PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "barchart"}

VARIABLE_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
RANGE_RE = re.compile(r"\[([^\]\[]*)\]")
EXACT_MATCH_ON_VARIABLE_RE = re.compile(r"\w+\s*(?:=|!=)\s*\"[^\"]*\$\{?(\w+)")


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


# ---------------------------------------------------------------------------
# Provisioned data sources (a small reader for the provisioning YAML layout)
# ---------------------------------------------------------------------------
def _scalar(value: str) -> str:
    value = value.split(" #", 1)[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


def read_provisioned_datasources(directory: Path, problems: Problems) -> dict[str, str]:
    """Return {uid: type} of the data sources provisioned in directory/*.y*ml.

    Reads the top-level keys of each item of the `datasources:` list; that is
    all the provisioning format needs here, without a YAML library.
    """
    found: dict[str, str] = {}
    files = sorted(list(directory.glob("*.yaml")) + list(directory.glob("*.yml")))
    if not files:
        problems.add(str(directory), "no data source provisioning file found")
    for path in files:
        items: list[dict[str, str]] = []
        in_list = False
        item_indent = None
        for raw in path.read_text().splitlines():
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            indent = len(raw) - len(raw.lstrip())
            line = raw.strip()
            if indent == 0:
                in_list = line.startswith("datasources:")
                item_indent = None
                continue
            if not in_list:
                continue
            if line.startswith("- "):
                if item_indent is None:
                    item_indent = indent
                if indent == item_indent:
                    items.append({})
                    line = line[2:].strip()
                    indent += 2
            if not items or item_indent is None or indent != item_indent + 2:
                continue
            m = re.match(r"([A-Za-z_][\w-]*)\s*:\s*(.*)$", line)
            if m:
                items[-1][m.group(1)] = _scalar(m.group(2))
        for item in items:
            uid, kind = item.get("uid", ""), item.get("type", "")
            if not uid:
                problems.add(str(path), f"data source {item.get('name', '?')!r} has no fixed uid")
                continue
            if uid in found:
                problems.add(str(path), f"data source uid {uid!r} is provisioned twice")
            found[uid] = kind
    return found


# ---------------------------------------------------------------------------
# Dashboard traversal
# ---------------------------------------------------------------------------
def iter_panels(panels):
    for panel in panels or []:
        yield panel
        yield from iter_panels(panel.get("panels"))


def iter_datasource_refs(node, path="$"):
    """Yield (json path, value) for every "datasource" key in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}"
            if key == "datasource":
                yield child, value
            yield from iter_datasource_refs(value, child)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from iter_datasource_refs(value, f"{path}[{i}]")


def panel_datasource(panel, target):
    ds = target.get("datasource") or panel.get("datasource")
    return ds if isinstance(ds, dict) else {}


def prometheus_targets(dashboard, datasources):
    """Yield (panel, target) for every target that queries a Prometheus data source."""
    for panel in iter_panels(dashboard.get("panels")):
        for target in panel.get("targets") or []:
            ds = panel_datasource(panel, target)
            kind = ds.get("type") or datasources.get(ds.get("uid", ""), "")
            if kind == "prometheus" and "expr" in target:
                yield panel, target


def substitute(expr: str, variables: set[str]) -> tuple[str, list[str]]:
    """Replace Grafana variables; return the PromQL and the unknown variable names."""
    unknown: list[str] = []

    def replace(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTIN_VARIABLES:
            return BUILTIN_VARIABLES[name]
        if name in variables:
            return ".*"
        if name.isdigit():  # "$1" in label_replace replacements
            return m.group(0)
        unknown.append(name)
        return m.group(0)

    return VARIABLE_RE.sub(replace, expr), unknown


def load_dashboards(directory: Path, problems: Problems):
    dashboards = []
    files = sorted(directory.glob("*.json"))
    if not files:
        problems.add(str(directory), "no dashboard found")
    for path in files:
        try:
            dashboards.append((path, json.loads(path.read_text())))
        except (OSError, ValueError) as err:
            problems.add(str(path), f"does not parse as JSON: {err}")
    return dashboards


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------
def check_dashboard(path: Path, dash: dict, datasources: dict[str, str], problems: Problems,
                    exprs: list[dict]) -> None:
    name = path.name
    if not isinstance(dash, dict):
        problems.add(name, "top level is not a JSON object")
        return
    if not dash.get("title"):
        problems.add(name, "dashboard has no title")
    schema = dash.get("schemaVersion")
    if not isinstance(schema, int) or schema < MIN_SCHEMA_VERSION:
        problems.add(name, f"schemaVersion is {schema!r}, expected >= {MIN_SCHEMA_VERSION}")

    variables = {v.get("name") for v in (dash.get("templating") or {}).get("list", [])}
    multi = {v.get("name") for v in (dash.get("templating") or {}).get("list", [])
             if v.get("multi") or v.get("includeAll")}
    ds_variables = {v.get("name") for v in (dash.get("templating") or {}).get("list", [])
                    if v.get("type") == "datasource"}

    # Data sources: by uid, provisioned, and of the provisioned type.
    for where, ds in iter_datasource_refs(dash):
        if ds is None:
            continue
        if not isinstance(ds, dict):
            problems.add(name, f"{where}: data source {ds!r} is not referenced by uid")
            continue
        uid = ds.get("uid")
        if not uid:
            problems.add(name, f"{where}: data source reference without uid")
        elif uid in BUILTIN_DATASOURCE_UIDS:
            continue
        elif str(uid).startswith("$"):
            if str(uid).strip("${}") not in ds_variables:
                problems.add(name, f"{where}: data source variable {uid!r} is not defined")
        elif uid not in datasources:
            problems.add(name, f"{where}: data source uid {uid!r} is not provisioned "
                               f"(provisioned: {', '.join(sorted(datasources)) or 'none'})")
        elif ds.get("type") and datasources[uid] and ds["type"] != datasources[uid]:
            problems.add(name, f"{where}: data source {uid!r} has type {ds['type']!r}, "
                               f"provisioned as {datasources[uid]!r}")

    # Panels: unique ids, units.
    seen: dict[int, str] = {}
    for panel in iter_panels(dash.get("panels")):
        title = panel.get("title") or "(untitled)"
        pid = panel.get("id")
        if not isinstance(pid, int):
            problems.add(name, f"panel {title!r} has no numeric id")
        elif pid in seen:
            problems.add(name, f"panel id {pid} is used by {seen[pid]!r} and {title!r}")
        else:
            seen[pid] = title
        if "gridPos" not in panel:
            problems.add(name, f"panel {title!r} has no gridPos")
        if panel.get("type") in UNIT_PANEL_TYPES:
            unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
            if not unit:
                problems.add(name, f"panel {title!r} sets no unit")

    # Prometheus expressions. A breakdown (e.g. "sum by (limiter)") may be
    # empty while nothing happened, as long as a sibling target of the panel
    # falls back to 0 ("or vector(0)"): the panel still shows data.
    fallback_panels = {
        id(panel) for panel, target in prometheus_targets(dash, datasources)
        if "or vector(" in (target.get("expr") or "")
    }
    for panel, target in prometheus_targets(dash, datasources):
        title = panel.get("title") or "(untitled)"
        where = f"panel {title!r} target {target.get('refId', '?')}"
        raw = target.get("expr") or ""
        if not raw.strip():
            problems.add(name, f"{where}: empty expression")
            continue
        expr, unknown = substitute(raw, variables)
        for var in unknown:
            problems.add(name, f"{where}: uses undefined variable ${var}")
        for window in RANGE_RE.findall(raw):
            window = window.split(":", 1)[0].strip()  # subquery [range:step]
            if window and not window.startswith("$"):
                problems.add(name, f"{where}: fixed range [{window}]; use [$__rate_interval]")
        for var in EXACT_MATCH_ON_VARIABLE_RE.findall(raw):
            if var in multi:
                problems.add(name, f"{where}: multi-value variable ${var} needs =~, not =")
        exprs.append({
            "dashboard": dash.get("title", name),
            "dashboard_uid": dash.get("uid", ""),
            "file": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
            "panel": title,
            "panel_id": panel.get("id"),
            "ref_id": target.get("refId", ""),
            "legend": target.get("legendFormat", ""),
            "expr": expr,
            "may_be_empty": (id(panel) in fallback_panels and "or vector(" not in raw
                             and re.search(r"\bby\s*\(", raw) is not None),
        })


def find_promtool(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    return shutil.which("promtool")


def check_promql(exprs: list[dict], promtool: str | None, problems: Problems) -> None:
    if not exprs:
        return
    if not promtool:
        problems.add("promql", "promtool not found: install prometheus (Debian) or pass --promtool")
        return
    lines = ["groups:", "  - name: dashboard_lint", "    rules:"]
    for i, item in enumerate(exprs):
        lines.append(f"      - record: dashboard_lint:expr_{i}")
        # A JSON string is a valid YAML double-quoted scalar.
        lines.append(f"        expr: {json.dumps(item['expr'])}")
    with tempfile.TemporaryDirectory(prefix="lint-dashboards-") as tmp:
        rules = Path(tmp) / "dashboard-exprs.yml"
        rules.write_text("\n".join(lines) + "\n")
        proc = subprocess.run([promtool, "check", "rules", str(rules)],
                              capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return
    output = proc.stdout + proc.stderr
    reported = False
    for line in output.splitlines():
        m = re.search(r'"dashboard_lint:expr_(\d+)":\s*(.*)$', line)
        if m:
            item = exprs[int(m.group(1))]
            problems.add(item["file"], f"panel {item['panel']!r} target {item['ref_id']}: "
                                       f"{m.group(2)}\n    expr: {item['expr']}")
            reported = True
    if not reported:
        problems.add("promql", f"promtool check rules failed:\n{output.strip()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dashboards", type=Path, default=REPO / "grafana" / "dashboards",
                        help="directory of dashboard JSON files (default: %(default)s)")
    parser.add_argument("--datasources", type=Path,
                        default=REPO / "grafana" / "provisioning" / "datasources",
                        help="directory of data source provisioning files (default: %(default)s)")
    parser.add_argument("--promtool", default=os.environ.get("PROMTOOL"),
                        help="promtool binary (default: $PROMTOOL or promtool on PATH)")
    parser.add_argument("--list-exprs", action="store_true",
                        help="print every Prometheus expression (after substitution) as JSON "
                             "lines and exit")
    args = parser.parse_args()

    problems = Problems()
    datasources = read_provisioned_datasources(args.datasources, problems)
    dashboards = load_dashboards(args.dashboards, problems)

    exprs: list[dict] = []
    uids: dict[str, str] = {}
    for path, dash in dashboards:
        check_dashboard(path, dash, datasources, problems, exprs)
        uid = dash.get("uid") if isinstance(dash, dict) else None
        if not uid:
            problems.add(path.name, "dashboard has no uid")
        elif uid in uids:
            problems.add(path.name, f"dashboard uid {uid!r} is also used by {uids[uid]}")
        else:
            uids[uid] = path.name

    if args.list_exprs:
        try:
            for item in exprs:
                print(json.dumps(item))
            sys.stdout.flush()
        except BrokenPipeError:  # e.g. piped into head
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

    check_promql(exprs, find_promtool(args.promtool), problems)

    if problems.items:
        print(f"lint-dashboards: {len(problems.items)} problem(s)", file=sys.stderr)
        for item in problems.items:
            print(f"  - {item}", file=sys.stderr)
        return 1
    print(f"lint-dashboards: OK: {len(dashboards)} dashboard(s), {len(exprs)} PromQL "
          f"expression(s), data sources: {', '.join(sorted(datasources))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
