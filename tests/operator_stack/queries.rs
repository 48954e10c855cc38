//! What the dashboards and rules ask Prometheus: every Grafana panel expression (as
//! `scripts/lint-dashboards.py --list-exprs` prints it) and every rule of
//! `prometheus/rules/*.yml`, a small client of Prometheus' HTTP API, and one evaluation of all
//! of them against the running stack.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use reqwest::Url;
use serde_json::Value;

use crate::tools::{repo_root, require_system_tool, yaml_file};

/// One Prometheus expression of a Grafana panel, as `scripts/lint-dashboards.py --list-exprs`
/// prints it (Grafana variables already substituted).
#[derive(Debug, Clone)]
pub(crate) struct PanelExpr {
    pub(crate) dashboard: String,
    pub(crate) panel: String,
    pub(crate) ref_id: String,
    pub(crate) expr: String,
    pub(crate) may_be_empty: bool,
}

pub(crate) fn dashboard_exprs() -> Vec<PanelExpr> {
    require_system_tool("python3", "apt-get install -y python3");
    let out = Command::new("python3")
        .args(["scripts/lint-dashboards.py", "--list-exprs"])
        .current_dir(repo_root())
        .output()
        .expect("run scripts/lint-dashboards.py --list-exprs");
    assert!(
        out.status.success(),
        "scripts/lint-dashboards.py --list-exprs failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let exprs: Vec<PanelExpr> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let item: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("--list-exprs line {line:?}: {e}"));
            let field = |name: &str| item[name].as_str().unwrap_or_default().to_owned();
            PanelExpr {
                dashboard: field("dashboard"),
                panel: field("panel"),
                ref_id: field("ref_id"),
                expr: field("expr"),
                may_be_empty: item["may_be_empty"].as_bool().unwrap_or(false),
            }
        })
        .collect();
    assert!(!exprs.is_empty(), "scripts/lint-dashboards.py --list-exprs printed no expression");
    exprs
}

/// One recording or alerting rule of `prometheus/rules/*.yml`.
#[derive(Debug, Clone)]
pub(crate) struct RuleExpr {
    pub(crate) file: String,
    pub(crate) group: String,
    pub(crate) name: String,
    pub(crate) recording: bool,
    pub(crate) expr: String,
}

fn rule_files() -> Vec<PathBuf> {
    let dir = repo_root().join("prometheus/rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml" || ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule file in {}", dir.display());
    files
}

pub(crate) fn rule_exprs() -> Vec<RuleExpr> {
    let mut rules = Vec::new();
    for path in rule_files() {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let doc = yaml_file(&path);
        for group in doc["groups"].as_array().unwrap_or_else(|| panic!("{file}: no groups")) {
            let group_name = group["name"].as_str().unwrap_or_default().to_owned();
            for rule in group["rules"].as_array().unwrap_or_else(|| panic!("{file} {group_name}: no rules")) {
                let (name, recording) = match (rule["record"].as_str(), rule["alert"].as_str()) {
                    (Some(record), _) => (record.to_owned(), true),
                    (None, Some(alert)) => (alert.to_owned(), false),
                    (None, None) => panic!("{file} {group_name}: a rule with neither record nor alert"),
                };
                let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("{file} {name}: no expr")).to_owned();
                rules.push(RuleExpr { file: file.clone(), group: group_name.clone(), name, recording, expr });
            }
        }
    }
    rules
}

/// The outcome of one instant query.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Data,
    Empty,
    Error(String),
}

pub(crate) struct Prometheus {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

impl Prometheus {
    pub(crate) async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut url = Url::parse(&format!("{}{path}", self.base)).expect("Prometheus URL");
        for (name, value) in query {
            url.query_pairs_mut().append_pair(name, value);
        }
        let response = self.http.get(url.clone()).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let text = response.text().await.unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"))
    }

    /// `GET /api/v1/query?query=<expr>` at the current time.
    async fn query(&self, expr: &str) -> Outcome {
        let answer = self.get("/api/v1/query", &[("query", expr)]).await;
        if answer["status"] != "success" {
            return Outcome::Error(format!(
                "{}: {}",
                answer["errorType"].as_str().unwrap_or("error"),
                answer["error"].as_str().unwrap_or("(no message)")
            ));
        }
        let data = &answer["data"];
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => match data["result"].as_array().map_or(0, Vec::len) {
                0 => Outcome::Empty,
                _ => Outcome::Data,
            },
            Some(_) => Outcome::Data,
            None => Outcome::Error(format!("no resultType in {answer}")),
        }
    }

    pub(crate) async fn series(&self, expr: &str) -> Vec<Value> {
        let answer = self.get("/api/v1/query", &[("query", expr)]).await;
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    pub(crate) async fn metric_names(&self) -> BTreeSet<String> {
        let answer = self.get("/api/v1/label/__name__/values", &[]).await;
        answer["data"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    }
}

/// Metric names an expression selects (a rough PromQL scan, for diagnostics only): label
/// matchers, strings, ranges and grouping clauses are skipped, and so are functions and keywords.
pub(crate) fn selected_metrics(expr: &str) -> BTreeSet<String> {
    const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    const KEYWORDS: [&str; 7] = ["and", "or", "unless", "bool", "offset", "atan2", "inf"];
    let mut cleaned = String::new();
    let (mut braces, mut brackets, mut quote) = (0u32, 0u32, None::<char>);
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '{') => braces += 1,
            (None, '}') => braces = braces.saturating_sub(1),
            (None, '[') => brackets += 1,
            (None, ']') => brackets = brackets.saturating_sub(1),
            (None, c) if braces == 0 && brackets == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let chars: Vec<char> = cleaned.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let call = chars.get(j) == Some(&'(');
            if GROUPING.contains(&word.as_str()) && call {
                // Skip the label list.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
            } else if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word);
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

/// One evaluation of everything the dashboards and rules ask Prometheus.
pub(crate) struct Evaluation {
    pub(crate) panels: Vec<(PanelExpr, Outcome)>,
    pub(crate) rules: Vec<(RuleExpr, Outcome)>,
    /// Problems of `/api/v1/rules`: missing groups, unhealthy rules.
    pub(crate) rule_health: Vec<String>,
    /// Recording rules that must produce series under this traffic, with no series yet.
    pub(crate) missing_recordings: Vec<String>,
}

/// Recording rules that must have series under the traffic of this test. `sessiond:http_5xx:rate5m`
/// is absent by design while there is no 5xx.
const REQUIRED_RECORDINGS: [&str; 9] = [
    "sessiond:http_requests:rate5m",
    "sessiond:http_5xx:ratio_rate5m",
    "sessiond:http_request_duration_seconds:p99_5m",
    "sessiond:redis_command_duration_seconds:p99_5m",
    "sessiond:session_validations:rate5m",
    "sessiond:logins:rate5m",
    "sessiond:login_failure:ratio_rate5m",
    "sessiond:rate_limited:rate5m",
    "redis:memory_used:ratio",
];

impl Evaluation {
    pub(crate) async fn run(prometheus: &Prometheus, panels: &[PanelExpr], rules: &[RuleExpr]) -> Self {
        let mut panel_outcomes = Vec::new();
        for panel in panels {
            panel_outcomes.push((panel.clone(), prometheus.query(&panel.expr).await));
        }
        let mut rule_outcomes = Vec::new();
        for rule in rules {
            rule_outcomes.push((rule.clone(), prometheus.query(&rule.expr).await));
        }

        let mut rule_health = Vec::new();
        let loaded = prometheus.get("/api/v1/rules", &[]).await;
        let groups = loaded["data"]["groups"].as_array().cloned().unwrap_or_default();
        let expected_groups: BTreeSet<(&str, &str)> =
            rules.iter().map(|r| (r.file.as_str(), r.group.as_str())).collect();
        for (file, group) in &expected_groups {
            let Some(found) = groups.iter().find(|g| g["name"] == *group) else {
                rule_health.push(format!("group {group} ({file}) is not loaded"));
                continue;
            };
            let loaded_rules = found["rules"].as_array().cloned().unwrap_or_default();
            let expected = rules.iter().filter(|r| r.group == *group).count();
            if loaded_rules.len() != expected {
                rule_health.push(format!("group {group}: {} rules loaded, {expected} in {file}", loaded_rules.len()));
            }
            for rule in &loaded_rules {
                let name = rule["name"].as_str().unwrap_or("?");
                let health = rule["health"].as_str().unwrap_or("?");
                let error = rule["lastError"].as_str().unwrap_or_default();
                if health != "ok" || !error.is_empty() {
                    rule_health.push(format!("{group}/{name}: health {health:?} {error}"));
                }
            }
        }

        let mut missing_recordings = Vec::new();
        for name in REQUIRED_RECORDINGS {
            if prometheus.series(name).await.is_empty() {
                missing_recordings.push(name.to_owned());
            }
        }
        Self { panels: panel_outcomes, rules: rule_outcomes, rule_health, missing_recordings }
    }

    pub(crate) fn errors(&self) -> usize {
        let panel_errors = self.panels.iter().filter(|(_, o)| matches!(o, Outcome::Error(_))).count();
        panel_errors + self.rules.iter().filter(|(_, o)| matches!(o, Outcome::Error(_))).count()
    }

    pub(crate) fn empty_panels(&self) -> Vec<&PanelExpr> {
        self.panels.iter().filter(|(p, o)| !p.may_be_empty && matches!(o, Outcome::Empty)).map(|(p, _)| p).collect()
    }

    pub(crate) fn settled(&self) -> bool {
        self.errors() == 0
            && self.empty_panels().is_empty()
            && self.rule_health.is_empty()
            && self.missing_recordings.is_empty()
    }
}
