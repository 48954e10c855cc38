//! A small HTTP load driver shared by the Cluster and Sentinel tests: workers that validate,
//! log in and log out while the topology is broken, recording every request's outcome, and
//! the tallies the tests assert on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{TestApp, PASSWORD};

/// What a request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `GET /v1/profile` with a token that must be live.
    ValidateLive,
    /// `GET /v1/profile` with a token whose logout was acknowledged.
    ValidateRevoked,
    Login,
    Logout,
}

/// One request and its outcome. `status` 0: the HTTP request itself failed.
#[derive(Clone, Debug)]
pub struct Event {
    /// When the request was sent.
    pub sent: Instant,
    /// When its answer arrived.
    pub at: Instant,
    pub op: Op,
    pub status: u16,
    /// Index of the user's group (e.g. which master holds the user's keys).
    pub group: usize,
    /// A retry of a 503.
    pub retry: bool,
    /// The user's name.
    pub user: String,
}

impl Event {
    /// 500-class other than 503, or no response at all.
    pub fn is_server_error(&self) -> bool {
        self.status == 0 || (self.status >= 500 && self.status != 503)
    }

    /// An answer that contradicts the session's state: a live session refused or a revoked
    /// session accepted.
    pub fn is_wrong(&self) -> bool {
        match self.op {
            Op::ValidateLive => self.status == 401,
            Op::ValidateRevoked => self.status == 200,
            Op::Login | Op::Logout => false,
        }
    }
}

/// A thin client for the load loops (cloneable across tasks).
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub fn of(app: &TestApp) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        Self { client, base: format!("http://{}", app.addr) }
    }

    async fn status(request: reqwest::RequestBuilder) -> (u16, Option<serde_json::Value>) {
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = if status == 200 { response.json().await.ok() } else { None };
                (status, body)
            }
            Err(_) => (0, None),
        }
    }

    pub async fn register(&self, username: &str) -> u16 {
        let body = json!({ "username": username, "password": PASSWORD });
        Self::status(self.client.post(format!("{}/v1/auth/register", self.base)).json(&body)).await.0
    }

    /// Log in; the token when 200.
    pub async fn login(&self, username: &str) -> (u16, Option<String>) {
        let body = json!({ "username": username, "password": PASSWORD });
        let (status, body) = Self::status(self.client.post(format!("{}/v1/auth/login", self.base)).json(&body)).await;
        (status, body.and_then(|b| b["token"].as_str().map(str::to_owned)))
    }

    pub async fn validate(&self, token: &str) -> u16 {
        Self::status(self.client.get(format!("{}/v1/profile", self.base)).bearer_auth(token)).await.0
    }

    pub async fn logout(&self, token: &str) -> u16 {
        Self::status(self.client.post(format!("{}/v1/auth/logout", self.base)).bearer_auth(token)).await.0
    }
}

/// Counts of one operation's outcomes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: usize,
    pub ok: usize,
    pub unavailable: usize,
    pub server_errors: usize,
    pub wrong: usize,
    pub other: usize,
}

/// Outcomes per operation (retries included as separate requests).
pub fn tally(events: &[Event]) -> BTreeMap<Op, Tally> {
    let mut out: BTreeMap<Op, Tally> = BTreeMap::new();
    for event in events {
        let t = out.entry(event.op).or_default();
        t.total += 1;
        let ok = match event.op {
            Op::ValidateLive | Op::Login => event.status == 200,
            Op::ValidateRevoked => event.status == 401,
            Op::Logout => event.status == 204,
        };
        if ok {
            t.ok += 1;
        } else if event.is_wrong() {
            t.wrong += 1;
        } else if event.status == 503 {
            t.unavailable += 1;
        } else if event.is_server_error() {
            t.server_errors += 1;
        } else {
            t.other += 1;
        }
    }
    out
}

/// A user of the load loop: a long-lived session that must stay valid throughout.
#[derive(Clone, Debug)]
pub struct LoadUser {
    pub name: String,
    pub anchor: String,
    pub group: usize,
}

/// Register and log in each `(name, group)`; panics on anything but success.
pub async fn prepare_users(api: &Api, users: &[(String, usize)]) -> Vec<LoadUser> {
    let mut out = Vec::with_capacity(users.len());
    for (name, group) in users {
        let status = api.register(name).await;
        assert!(status == 201 || status == 409, "register {name}: {status}");
        let (status, token) = api.login(name).await;
        assert_eq!(status, 200, "login {name}");
        out.push(LoadUser { name: name.clone(), anchor: token.expect("token"), group: *group });
    }
    out
}

/// What the load loop does on each pass over a user.
#[derive(Clone, Copy, Debug)]
pub struct LoadPlan {
    /// Validations of the user's long-lived session per pass.
    pub anchor_checks: usize,
    /// Log in, validate, log out and re-validate a fresh session on every pass.
    pub churn: bool,
    /// Retry a 503 on login/logout once.
    pub retry_multi_key: bool,
    /// Groups whose users do not log out (e.g. a master without replicas under WAIT).
    pub no_logout_groups: &'static [usize],
}

/// What the load loop should be doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Everything in the plan.
    Full,
    /// Everything but logouts.
    NoLogouts,
    /// Finish the current request and return.
    Stop,
}

/// Run `workers` tasks over `users` until `phase` says stop; every request is recorded.
pub async fn run_load(
    api: Api,
    users: Vec<LoadUser>,
    workers: usize,
    plan: LoadPlan,
    phase: tokio::sync::watch::Receiver<Phase>,
) -> Vec<Event> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mine: Vec<LoadUser> = users.iter().skip(w).step_by(workers).cloned().collect();
        let api = api.clone();
        let phase = phase.clone();
        tasks.push(tokio::spawn(async move { load_worker(api, mine, plan, phase).await }));
    }
    let mut events = Vec::new();
    for task in tasks {
        events.extend(task.await.expect("load worker"));
    }
    events.sort_by_key(|e| e.at);
    events
}

async fn load_worker(
    api: Api,
    users: Vec<LoadUser>,
    plan: LoadPlan,
    phase: tokio::sync::watch::Receiver<Phase>,
) -> Vec<Event> {
    let mut events = Vec::new();
    let record = |events: &mut Vec<Event>, sent: Instant, op: Op, status: u16, user: &LoadUser, retry: bool| {
        let user = user.name.clone();
        events.push(Event { sent, at: Instant::now(), op, status, group: 0, retry, user });
    };
    'outer: loop {
        for user in &users {
            if *phase.borrow() == Phase::Stop {
                break 'outer;
            }
            let from = events.len();
            for _ in 0..plan.anchor_checks.max(1) {
                let sent = Instant::now();
                let status = api.validate(&user.anchor).await;
                record(&mut events, sent, Op::ValidateLive, status, user, false);
            }
            'churn: {
                if !plan.churn {
                    break 'churn;
                }
                let sent = Instant::now();
                let (mut status, mut token) = api.login(&user.name).await;
                record(&mut events, sent, Op::Login, status, user, false);
                if status == 503 && plan.retry_multi_key {
                    let sent = Instant::now();
                    (status, token) = api.login(&user.name).await;
                    record(&mut events, sent, Op::Login, status, user, true);
                }
                let Some(token) = token.filter(|_| status == 200) else { break 'churn };
                let sent = Instant::now();
                let status = api.validate(&token).await;
                record(&mut events, sent, Op::ValidateLive, status, user, false);
                if plan.no_logout_groups.contains(&user.group) || *phase.borrow() != Phase::Full {
                    break 'churn;
                }
                let sent = Instant::now();
                let mut status = api.logout(&token).await;
                record(&mut events, sent, Op::Logout, status, user, false);
                if status == 503 && plan.retry_multi_key {
                    let sent = Instant::now();
                    status = api.logout(&token).await;
                    record(&mut events, sent, Op::Logout, status, user, true);
                }
                if status == 204 {
                    let sent = Instant::now();
                    let status = api.validate(&token).await;
                    record(&mut events, sent, Op::ValidateRevoked, status, user, false);
                }
            }
            for event in &mut events[from..] {
                event.group = user.group;
            }
        }
    }
    events
}

/// A one-line summary of a tally map.
pub fn describe(tallies: &BTreeMap<Op, Tally>) -> String {
    tallies
        .iter()
        .map(|(op, t)| {
            format!(
                "{op:?}: {} total, {} ok, {} 503, {} 5xx/no answer, {} wrong, {} other",
                t.total, t.ok, t.unavailable, t.server_errors, t.wrong, t.other
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
