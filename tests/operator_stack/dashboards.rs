//! The dashboards and rules under real traffic: every panel expression and every rule
//! expression evaluates without error against a Prometheus scraping the running stack, every
//! rule group is healthy, and every panel that must show data does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::processes::Stack;
use crate::queries::{dashboard_exprs, rule_exprs, selected_metrics, Evaluation, Outcome, PanelExpr, Prometheus};
use crate::tools::require_pyyaml;
use crate::traffic::{background_traffic, drive_traffic, Api};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_rules_show_data_under_real_traffic() {
    let started = Instant::now();
    let panels = dashboard_exprs();
    require_pyyaml();
    let rules = rule_exprs();

    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client");
    let mut stack = Stack::start(&http).await;
    let api = Api {
        http: http.clone(),
        bases: Arc::new(stack.instances.iter().map(|i| i.api.clone()).collect()),
        statuses: Arc::new(Mutex::new(BTreeMap::new())),
    };
    let prometheus = Prometheus { http: http.clone(), base: stack.prometheus_url.clone() };

    let tokens = drive_traffic(&api, &stack).await;
    for status in [200, 201, 204, 401, 403, 404, 409, 422, 429] {
        assert!(api.count(status) > 0, "the traffic produced no {status}");
    }
    let traffic_done = started.elapsed();

    // Keep light traffic going while Prometheus scrapes and evaluates; poll until every
    // panel has data and every rule group has been evaluated healthily at least twice.
    let stop = Arc::new(AtomicBool::new(false));
    let background = background_traffic(api.clone(), tokens, Arc::clone(&stop));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut healthy_since: Option<Instant> = None;
    let evaluation = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stack.ensure_running();
        let evaluation = Evaluation::run(&prometheus, &panels, &rules).await;
        if evaluation.rule_health.is_empty() {
            healthy_since.get_or_insert_with(Instant::now);
        } else {
            healthy_since = None;
        }
        // Two more evaluation cycles (1 s each) after the rules first reported healthy.
        let evaluated_twice = healthy_since.is_some_and(|since| since.elapsed() >= Duration::from_secs(2));
        if (evaluation.settled() && evaluated_twice) || evaluation.errors() > 0 || Instant::now() > deadline {
            break evaluation;
        }
    };
    stop.store(true, Ordering::Relaxed);
    background.await.expect("background traffic");
    stack.ensure_running();

    // Report.
    let known = prometheus.metric_names().await;
    let mut report = String::new();
    let empty: Vec<&(PanelExpr, Outcome)> =
        evaluation.panels.iter().filter(|(_, o)| matches!(o, Outcome::Empty)).collect();
    report.push_str(&format!(
        "{} panel expressions, {} rule expressions; {} empty panel expressions:\n",
        evaluation.panels.len(),
        evaluation.rules.len(),
        empty.len()
    ));
    for (panel, _) in &empty {
        let unknown: Vec<String> = selected_metrics(&panel.expr).into_iter().filter(|m| !known.contains(m)).collect();
        report.push_str(&format!(
            "  {:<24} | {:<40} | {} | {} | {}{}\n",
            panel.dashboard,
            panel.panel,
            panel.ref_id,
            if panel.may_be_empty { "may be empty" } else { "MUST SHOW DATA" },
            panel.expr.replace('\n', " "),
            if unknown.is_empty() { String::new() } else { format!(" | not exported: {}", unknown.join(", ")) }
        ));
    }
    let empty_rules: Vec<&str> = evaluation
        .rules
        .iter()
        .filter(|(r, o)| r.recording && matches!(o, Outcome::Empty))
        .map(|(r, _)| r.name.as_str())
        .collect();
    report.push_str(&format!("recording rule expressions with no series: {empty_rules:?}\n"));
    let limiters: Vec<String> = prometheus
        .series("sum by (limiter) (sessiond_rate_limited_total) > 0")
        .await
        .iter()
        .filter_map(|s| s["metric"]["limiter"].as_str().map(str::to_owned))
        .collect();
    let statuses = api.statuses.lock().expect("status tally").clone();
    report.push_str(&format!("limiters that refused requests: {limiters:?}\nHTTP statuses seen: {statuses:?}\n"));
    report.push_str(&format!("traffic done after {traffic_done:?}, evaluated after {:?}\n", started.elapsed()));
    let alerts = prometheus.get("/api/v1/alerts", &[]).await;
    let active: Vec<String> = alerts["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!("{} ({})", a["labels"]["alertname"].as_str().unwrap_or("?"), a["state"].as_str().unwrap_or("?"))
        })
        .collect();
    report.push_str(&format!("alerts pending or firing: {active:?}\n"));

    // Assertions.
    let mut failures = Vec::new();
    for (panel, outcome) in &evaluation.panels {
        if let Outcome::Error(error) = outcome {
            failures.push(format!(
                "panel {:?} / {:?} {}: {error}\n    {}",
                panel.dashboard, panel.panel, panel.ref_id, panel.expr
            ));
        }
    }
    for (rule, outcome) in &evaluation.rules {
        if let Outcome::Error(error) = outcome {
            failures.push(format!("rule {} ({}): {error}\n    {}", rule.name, rule.file, rule.expr));
        }
    }
    for panel in evaluation.empty_panels() {
        failures.push(format!(
            "panel {:?} / {:?} {} shows no data under real traffic:\n    {}",
            panel.dashboard, panel.panel, panel.ref_id, panel.expr
        ));
    }
    failures.extend(evaluation.rule_health.iter().map(|p| format!("/api/v1/rules: {p}")));
    failures.extend(evaluation.missing_recordings.iter().map(|r| format!("recording rule {r} produced no series")));
    let targets = prometheus.get("/api/v1/targets", &[]).await;
    for target in targets["data"]["activeTargets"].as_array().into_iter().flatten() {
        if target["health"] != "up" {
            failures.push(format!(
                "target {} (job {}) is {}: {}",
                target["scrapeUrl"], target["labels"]["job"], target["health"], target["lastError"]
            ));
        }
    }
    for limiter in ["ip", "login_ip", "register_ip", "login_guard"] {
        if !limiters.iter().any(|l| l == limiter) {
            failures.push(format!("Prometheus saw no refusal by the {limiter} limiter"));
        }
    }
    let server_errors: u32 = statuses.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum();
    if server_errors > 0 {
        failures.push(format!("sessiond answered {server_errors} requests with 5xx: {statuses:?}"));
    }
    if failures.is_empty() {
        println!("{report}");
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n  - {}\n\n{report}\nlogs:\n{}",
        failures.len(),
        failures.join("\n  - "),
        stack.log_tails()
    );
}
