//! The metric catalog: every name sessiond exports, with its help text, unit and labels, in
//! one place (`docs/metrics.md` documents the same list for operators).
//!
//! Each [`Application`](crate::Application) owns its own Prometheus recorder instead of the
//! process-global one, so two instances in one process (tests) keep separate registries, and
//! hot-path updates go straight to a handle. Labels are closed sets (outcome, reason, store
//! operation, route *template*): no id, address, username or raw path ever becomes a label.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::{Arc, PoisonError, RwLock};

use axum::http::Method;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Metric names (fixed: dashboards, alerts and load tests rely on them).
pub mod names {
    pub const HTTP_REQUESTS_TOTAL: &str = "sessiond_http_requests_total";
    pub const HTTP_REQUEST_DURATION_SECONDS: &str = "sessiond_http_request_duration_seconds";
    pub const HTTP_REQUESTS_IN_FLIGHT: &str = "sessiond_http_requests_in_flight";
    pub const LOGINS_TOTAL: &str = "sessiond_logins_total";
    pub const REGISTRATIONS_TOTAL: &str = "sessiond_registrations_total";
    pub const SESSIONS_CREATED_TOTAL: &str = "sessiond_sessions_created_total";
    pub const SESSIONS_REVOKED_TOTAL: &str = "sessiond_sessions_revoked_total";
    pub const SESSION_VALIDATIONS_TOTAL: &str = "sessiond_session_validations_total";
    pub const SESSIONS_ACTIVE: &str = "sessiond_sessions_active";
    pub const REDIS_COMMAND_DURATION_SECONDS: &str = "sessiond_redis_command_duration_seconds";
    pub const REDIS_ERRORS_TOTAL: &str = "sessiond_redis_errors_total";
    pub const REDIS_UP: &str = "sessiond_redis_up";
    pub const PASSWORD_HASH_DURATION_SECONDS: &str = "sessiond_password_hash_duration_seconds";
    pub const PASSWORD_HASH_FLOOD_RESTS_TOTAL: &str = "sessiond_password_hash_flood_rests_total";
    pub const RATE_LIMITED_TOTAL: &str = "sessiond_rate_limited_total";
    pub const CSRF_REJECTIONS_TOTAL: &str = "sessiond_csrf_rejections_total";
    pub const BACKEND_AUTH_FAILURES_TOTAL: &str = "sessiond_backend_auth_failures_total";
    pub const BUILD_INFO: &str = "sessiond_build_info";
    pub const VALIDATION_CACHE_LOOKUPS_TOTAL: &str = "sessiond_validation_cache_lookups_total";
}

use names::*;

/// Latency buckets: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Password-hash buckets: 1 ms to 2 s (argon2id at OWASP cost is ~20 ms).
const HASH_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.0];

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Outcomes of a login attempt.
pub const LOGIN_OUTCOMES: [&str; 4] = ["success", "invalid_credentials", "rate_limited", "unavailable"];
/// Outcomes of a registration.
pub const REGISTRATION_OUTCOMES: [&str; 5] = ["success", "conflict", "invalid", "rate_limited", "unavailable"];
/// Outcomes of a session validation.
pub const VALIDATION_OUTCOMES: [&str; 4] = ["valid", "invalid", "expired", "unavailable"];
/// Why a cookie-authenticated request was refused as cross-site.
pub const CSRF_REASONS: [&str; 2] = ["sec_fetch_site", "origin"];
/// Why sessions end.
pub const REVOKE_REASONS: [&str; 9] =
    ["logout", "logout_all", "admin", "rotation", "limit", "password_change", "account_deleted", "disabled", "backend"];

/// The handles of one HTTP series (method × route template), and its counters by status.
struct HttpSeries {
    method: Method,
    route: String,
    duration: Histogram,
    by_status: RwLock<Vec<(u16, Counter)>>,
}

/// The instance's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    in_flight: Gauge,
    sessions_active: Gauge,
    redis_up: Gauge,
    sessions_created: Counter,
    /// Hashes followed by a flood rest: registered at start so that "no flood" reads 0.
    flood_rests: Counter,
    /// One counter per outcome, in [`VALIDATION_OUTCOMES`] order: validations are most of
    /// the traffic, so their handles are resolved once, not per event.
    validations: [Counter; 4],
    /// `hit`, `miss`.
    cache_lookups: [Counter; 2],
    /// HTTP series by a hash of (method, route), resolved once per series: a request then
    /// costs a read lock and two atomic updates instead of building and looking up label
    /// sets. Methods and route templates are closed sets (unknown paths are `unmatched`).
    http: RwLock<HashMap<u64, Vec<HttpSeries>>>,
    http_hasher: RandomState,
    /// Counters with one label whose values are closed sets of `&'static str` (login
    /// outcomes, limiters…), by (name, label value), resolved on first use: a refused login
    /// in a flood then costs no label building or registry lookup.
    counters: RwLock<HashMap<(&'static str, &'static str), Counter>>,
    /// The same for histograms (`op` of Redis commands and password hashing).
    histograms: RwLock<HashMap<(&'static str, &'static str), Histogram>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn label(key: &'static str, value: impl Into<SharedString>) -> Label {
    Label::new(key, value)
}

impl Metrics {
    /// A fresh registry with every metric described and the closed label sets registered at
    /// zero (so dashboards show 0 rather than "no data" before the first event).
    ///
    /// # Panics
    /// Never: the bucket lists are constant and non-empty.
    #[must_use]
    pub fn new() -> Arc<Self> {
        let builder = PrometheusBuilder::new();
        let builder = [
            (HTTP_REQUEST_DURATION_SECONDS, LATENCY_BUCKETS),
            (REDIS_COMMAND_DURATION_SECONDS, LATENCY_BUCKETS),
            (PASSWORD_HASH_DURATION_SECONDS, HASH_BUCKETS),
        ]
        .into_iter()
        .fold(builder, |builder, (name, buckets)| {
            #[allow(clippy::expect_used)]
            builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets).expect("non-empty bucket list")
        });
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        describe(&recorder);
        let process = metrics_process::Collector::default();
        metrics::with_local_recorder(&recorder, || process.describe());

        let gauge = |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &METADATA);
        let metrics = Self {
            in_flight: gauge(HTTP_REQUESTS_IN_FLIGHT),
            sessions_active: gauge(SESSIONS_ACTIVE),
            redis_up: gauge(REDIS_UP),
            sessions_created: recorder.register_counter(&Key::from_static_name(SESSIONS_CREATED_TOTAL), &METADATA),
            flood_rests: recorder.register_counter(&Key::from_static_name(PASSWORD_HASH_FLOOD_RESTS_TOTAL), &METADATA),
            validations: VALIDATION_OUTCOMES.map(|outcome| {
                recorder.register_counter(
                    &Key::from_parts(SESSION_VALIDATIONS_TOTAL, vec![label("outcome", outcome)]),
                    &METADATA,
                )
            }),
            cache_lookups: ["hit", "miss"].map(|result| {
                recorder.register_counter(
                    &Key::from_parts(VALIDATION_CACHE_LOOKUPS_TOTAL, vec![label("result", result)]),
                    &METADATA,
                )
            }),
            http: RwLock::new(HashMap::new()),
            http_hasher: RandomState::new(),
            counters: RwLock::new(HashMap::new()),
            histograms: RwLock::new(HashMap::new()),
            recorder,
            handle,
            process,
        };
        for outcome in LOGIN_OUTCOMES {
            metrics.counter(LOGINS_TOTAL, vec![label("outcome", outcome)]).increment(0);
        }
        for outcome in REGISTRATION_OUTCOMES {
            metrics.counter(REGISTRATIONS_TOTAL, vec![label("outcome", outcome)]).increment(0);
        }
        for reason in REVOKE_REASONS {
            metrics.counter(SESSIONS_REVOKED_TOTAL, vec![label("reason", reason)]).increment(0);
        }
        for reason in CSRF_REASONS {
            metrics.counter(CSRF_REJECTIONS_TOTAL, vec![label("reason", reason)]).increment(0);
        }
        for op in ["hash", "verify"] {
            let _ = metrics.histogram(PASSWORD_HASH_DURATION_SECONDS, vec![label("op", op)]);
        }
        let build = vec![
            label("version", env!("CARGO_PKG_VERSION")),
            label("git_sha", option_env!("SESSIOND_GIT_SHA").unwrap_or("unknown")),
        ];
        metrics.recorder.register_gauge(&Key::from_parts(BUILD_INFO, build), &METADATA).set(1.0);
        Arc::new(metrics)
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder.register_histogram(&Key::from_parts(name, labels), &METADATA)
    }

    /// `use_it` on the counter `name{label=value}`, registered on first use.
    fn with_counter(
        &self,
        name: &'static str,
        label_key: &'static str,
        value: &'static str,
        use_it: impl Fn(&Counter),
    ) {
        with_cached(&self.counters, (name, value), || self.counter(name, vec![label(label_key, value)]), use_it);
    }

    /// `use_it` on the histogram `name{label=value}`, registered on first use.
    fn with_histogram(
        &self,
        name: &'static str,
        label_key: &'static str,
        value: &'static str,
        use_it: impl Fn(&Histogram),
    ) {
        with_cached(&self.histograms, (name, value), || self.histogram(name, vec![label(label_key, value)]), use_it);
    }

    /// The Prometheus text exposition, with fresh process metrics.
    #[must_use]
    pub fn render(&self) -> String {
        metrics::with_local_recorder(&self.recorder, || self.process.collect());
        self.handle.render()
    }

    /// Drain histogram buffers; call periodically.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// One finished HTTP request. `route` is the matched route template, never a raw path.
    pub fn http_request(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let hash = self.http_hasher.hash_one((method.as_str(), route));
        let is = |series: &&HttpSeries| series.method == method && series.route == route;
        if let Some(series) =
            self.http.read().unwrap_or_else(PoisonError::into_inner).get(&hash).and_then(|b| b.iter().find(is))
        {
            self.record_http(series, status, seconds);
            return;
        }
        // First request of this method and route: register its series once.
        let mut http = self.http.write().unwrap_or_else(PoisonError::into_inner);
        let bucket = http.entry(hash).or_default();
        if !bucket.iter().any(|series| is(&series)) {
            let labels = vec![label("method", method.as_str().to_owned()), label("route", route.to_owned())];
            bucket.push(HttpSeries {
                method: method.clone(),
                route: route.to_owned(),
                duration: self.histogram(HTTP_REQUEST_DURATION_SECONDS, labels),
                by_status: RwLock::new(Vec::new()),
            });
        }
        if let Some(series) = bucket.iter().find(is) {
            self.record_http(series, status, seconds);
        }
    }

    fn record_http(&self, series: &HttpSeries, status: u16, seconds: f64) {
        series.duration.record(seconds);
        let counted = {
            let by_status = series.by_status.read().unwrap_or_else(PoisonError::into_inner);
            by_status.iter().find(|(s, _)| *s == status).map(|(_, counter)| counter.increment(1)).is_some()
        };
        if !counted {
            let mut by_status = series.by_status.write().unwrap_or_else(PoisonError::into_inner);
            match by_status.iter().find(|(s, _)| *s == status) {
                Some((_, counter)) => counter.increment(1),
                None => {
                    let labels = vec![
                        label("method", series.method.as_str().to_owned()),
                        label("route", series.route.clone()),
                        label("status", status.to_string()),
                    ];
                    let counter = self.counter(HTTP_REQUESTS_TOTAL, labels);
                    counter.increment(1);
                    by_status.push((status, counter));
                }
            }
        }
    }

    /// Requests being served right now.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// A login attempt ended with `outcome` (one of [`LOGIN_OUTCOMES`]).
    pub fn login(&self, outcome: &'static str) {
        self.with_counter(LOGINS_TOTAL, "outcome", outcome, |c| c.increment(1));
    }

    /// A registration ended with `outcome` (one of [`REGISTRATION_OUTCOMES`]).
    pub fn registration(&self, outcome: &'static str) {
        self.with_counter(REGISTRATIONS_TOTAL, "outcome", outcome, |c| c.increment(1));
    }

    /// A validation ended with `outcome` (one of [`VALIDATION_OUTCOMES`]).
    pub fn validation(&self, outcome: &'static str) {
        match VALIDATION_OUTCOMES.iter().position(|known| *known == outcome) {
            Some(n) => self.validations[n].increment(1),
            None => self.counter(SESSION_VALIDATIONS_TOTAL, vec![label("outcome", outcome)]).increment(1),
        }
    }

    /// A validation was answered from the in-process cache (`hit`) or had to ask the store.
    pub fn validation_cache(&self, hit: bool) {
        self.cache_lookups[usize::from(!hit)].increment(1);
    }

    /// A session was created.
    pub fn session_created(&self) {
        self.sessions_created.increment(1);
    }

    /// `count` sessions ended for `reason` (one of [`REVOKE_REASONS`]).
    pub fn sessions_revoked(&self, reason: &'static str, count: u64) {
        if count > 0 {
            self.with_counter(SESSIONS_REVOKED_TOTAL, "reason", reason, |c| c.increment(count));
        }
    }

    /// A store call on Redis took `seconds` and failed with `error_kind`, if any.
    pub fn redis_command(&self, op: &'static str, seconds: f64, error_kind: Option<&'static str>) {
        self.with_histogram(REDIS_COMMAND_DURATION_SECONDS, "op", op, |h| h.record(seconds));
        if let Some(kind) = error_kind {
            self.counter(REDIS_ERRORS_TOTAL, vec![label("op", op), label("kind", kind)]).increment(1);
        }
    }

    /// Whether the last store ping succeeded.
    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.set(if up { 1.0 } else { 0.0 });
    }

    /// The exact number of live sessions in the shared store.
    #[allow(clippy::cast_precision_loss)]
    pub fn set_sessions_active(&self, count: u64) {
        self.sessions_active.set(count as f64);
    }

    /// A password hash (`op` = `hash` or `verify`) took `seconds`.
    pub fn password_hash(&self, op: &'static str, seconds: f64) {
        self.with_histogram(PASSWORD_HASH_DURATION_SECONDS, "op", op, |h| h.record(seconds));
    }

    /// A hashing thread rests after a hash because a password-guessing flood is detected: a
    /// rate above zero means the flood share is in force.
    pub fn password_hash_flood_rest(&self) {
        self.flood_rests.increment(1);
    }

    /// A cookie-authenticated request was refused as cross-site (`reason`: one of
    /// [`CSRF_REASONS`]).
    pub fn csrf_rejection(&self, reason: &'static str) {
        self.with_counter(CSRF_REJECTIONS_TOTAL, "reason", reason, |c| c.increment(1));
    }

    /// A backend route was called without a valid API key.
    pub fn backend_auth_failure(&self) {
        self.counter(BACKEND_AUTH_FAILURES_TOTAL, Vec::new()).increment(1);
    }

    /// A request was refused by `limiter`.
    pub fn rate_limited(&self, limiter: &'static str) {
        self.with_counter(RATE_LIMITED_TOTAL, "limiter", limiter, |c| c.increment(1));
    }
}

fn with_cached<T>(
    map: &RwLock<HashMap<(&'static str, &'static str), T>>,
    key: (&'static str, &'static str),
    make: impl FnOnce() -> T,
    use_it: impl Fn(&T),
) {
    if let Some(handle) = map.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
        use_it(handle);
        return;
    }
    let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
    use_it(map.entry(key).or_insert_with(make));
}

fn describe(recorder: &PrometheusRecorder) {
    let counters: [(&str, &str); 12] = [
        (HTTP_REQUESTS_TOTAL, "HTTP requests served, by method, route template and status."),
        (LOGINS_TOTAL, "Login attempts by outcome."),
        (REGISTRATIONS_TOTAL, "Registration attempts by outcome."),
        (SESSIONS_CREATED_TOTAL, "Sessions created (one per successful login)."),
        (SESSIONS_REVOKED_TOTAL, "Sessions ended before their deadline, by reason."),
        (SESSION_VALIDATIONS_TOTAL, "Session validations by outcome."),
        (REDIS_ERRORS_TOTAL, "Failed store calls on Redis, by operation and error kind."),
        (RATE_LIMITED_TOTAL, "Requests refused by a rate limiter, by limiter."),
        (CSRF_REJECTIONS_TOTAL, "Cookie-authenticated state-changing requests refused as cross-site, by reason."),
        (BACKEND_AUTH_FAILURES_TOTAL, "Backend-route requests refused for a missing or unknown API key."),
        (
            PASSWORD_HASH_FLOOD_RESTS_TOTAL,
            "Hashes after which a hashing thread rested because a password-guessing flood was detected.",
        ),
        (
            VALIDATION_CACHE_LOOKUPS_TOTAL,
            "Validations looked up in the in-process cache: hit (answered without Redis) or miss.",
        ),
    ];
    for (name, help) in counters {
        recorder.describe_counter(KeyName::from_const_str(name), None, SharedString::const_str(help));
    }
    let histograms: [(&str, &str); 3] = [
        (HTTP_REQUEST_DURATION_SECONDS, "HTTP request latency, by method and route template."),
        (
            REDIS_COMMAND_DURATION_SECONDS,
            "Latency of store operations on Redis (one Lua script or command each), by operation.",
        ),
        (PASSWORD_HASH_DURATION_SECONDS, "argon2id hashing and verification time, by operation."),
    ];
    for (name, help) in histograms {
        recorder.describe_histogram(KeyName::from_const_str(name), Some(Unit::Seconds), SharedString::const_str(help));
    }
    let gauges: [(&str, &str); 4] = [
        (HTTP_REQUESTS_IN_FLIGHT, "HTTP requests being served."),
        (SESSIONS_ACTIVE, "Exact number of unexpired sessions in the shared store (same on every instance)."),
        (REDIS_UP, "1 when the last store ping succeeded, else 0."),
        (BUILD_INFO, "Always 1; labels carry the version and git commit."),
    ];
    for (name, help) in gauges {
        recorder.describe_gauge(KeyName::from_const_str(name), None, SharedString::const_str(help));
    }
}
