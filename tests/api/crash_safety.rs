//! Crashes: `kill -9` of sessiond while logins, refreshes and logouts are in flight leaves
//! Redis consistent (every write is one Lua script, atomic in Redis), and `kill -9` of a Redis
//! that persists with an append-only file (`appendfsync everysec`) loses no acknowledged write
//! and resurrects no acknowledged logout. (A logout acknowledged with `WAIT 1` surviving a
//! failover to a replica is checked by `sentinel::sessiond_follows_a_sentinel_failover_without_resurrecting_logouts`.)

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sessiond::session::SessionToken;

use crate::helpers::{command_on, metric_value, unique, RedisServer, Resp, ServerProcess, PASSWORD};

/// Concurrent clients hammering the instance that gets killed.
const CLIENTS: usize = 6;

/// What the client was told about a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acked {
    /// A login or refresh returned it (and no logout or refresh of it was acknowledged).
    Live,
    /// Its logout, or a refresh away from it, was acknowledged.
    Ended,
}

/// One client's view: every token with the last acknowledged state; tokens whose request was
/// in flight when the server died are dropped (either outcome is correct for them).
#[derive(Default)]
struct Ledger {
    tokens: HashMap<String, (Acked, Instant)>,
    acknowledged: usize,
}

impl Ledger {
    fn ack(&mut self, token: &str, state: Acked) {
        self.tokens.insert(token.to_owned(), (state, Instant::now()));
        self.acknowledged += 1;
    }

    /// The request about `token` got no clear answer: its outcome is unknown.
    fn in_doubt(&mut self, token: &str) {
        self.tokens.remove(token);
    }
}

/// Log in, validate, refresh, and log out every other round, until told to stop or until a
/// request gets no answer or a 503 (the server or its Redis died mid-request).
async fn hammer(base: String, name: String, stop: tokio::sync::watch::Receiver<bool>) -> Ledger {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let mut ledger = Ledger::default();
    let credentials = json!({ "username": name, "password": PASSWORD });
    let token_of = |body: &serde_json::Value| body["token"].as_str().expect("token").to_owned();
    for round in 0usize.. {
        if *stop.borrow() {
            break;
        }
        let Ok(r) = client.post(format!("{base}/v1/auth/login")).json(&credentials).send().await else { break };
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert_eq!(r.status(), StatusCode::OK, "login");
        let Ok(body) = r.json::<serde_json::Value>().await else { break };
        let mut token = token_of(&body);
        ledger.ack(&token, Acked::Live);
        match client.get(format!("{base}/v1/profile")).bearer_auth(&token).send().await.map(|r| r.status()) {
            Ok(StatusCode::OK) => {}
            Ok(StatusCode::SERVICE_UNAVAILABLE) | Err(_) => break,
            Ok(other) => panic!("a fresh session validated with {other}"),
        }
        let refreshed = match client.post(format!("{base}/v1/auth/refresh")).bearer_auth(&token).send().await {
            Ok(r) if r.status() == StatusCode::OK => r.json::<serde_json::Value>().await.ok(),
            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => None,
            Ok(r) => panic!("refresh: {}", r.status()),
            Err(_) => None,
        };
        let Some(body) = refreshed else {
            ledger.in_doubt(&token);
            break;
        };
        ledger.ack(&token, Acked::Ended);
        token = token_of(&body);
        ledger.ack(&token, Acked::Live);
        if round % 2 == 0 {
            match client.post(format!("{base}/v1/auth/logout")).bearer_auth(&token).send().await.map(|r| r.status()) {
                Ok(StatusCode::NO_CONTENT) => ledger.ack(&token, Acked::Ended),
                Ok(StatusCode::SERVICE_UNAVAILABLE) | Err(_) => {
                    ledger.in_doubt(&token);
                    break;
                }
                Ok(other) => panic!("logout: {other}"),
            }
        }
    }
    ledger
}

/// The digest part of a session key (`sessiond:{xyz}:sess:<digest>`) of `token`.
fn digest(token: &str) -> String {
    SessionToken::parse(token).expect("a session token").hash().encoded()
}

fn cmd(port: u16, args: &[&str]) -> Resp {
    command_on(port, args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
}

/// What a scan of the whole store found.
#[derive(Debug)]
struct Scan {
    /// Session key digest → session id.
    sessions: HashMap<String, String>,
    /// Index entries (user, session id) whose session key is gone.
    orphans: Vec<(String, String)>,
    /// Members of the active sets scored in the future (what the gauge counts).
    active: usize,
}

/// Check every key: each session parses and has a TTL; each index entry points at an existing
/// session of that id; each live active-set member is a stored session. Panics on a broken one.
fn scan(port: u16) -> Scan {
    let keys = cmd(port, &["KEYS", "sessiond:*"]).strings();
    let mut sessions = HashMap::new();
    let mut ids = HashSet::new();
    for key in keys.iter().filter(|k| k.contains(":sess:")) {
        let value = cmd(port, &["GET", key]).text();
        let fields: Vec<&str> = value.split('\u{1f}').collect();
        // Layout 2 (12 fields) or 3 (a backend session: 13, with its data); see `record.rs`.
        let known = matches!((fields[0], fields.len()), ("2", 12) | ("3", 13));
        assert!(known, "{key} holds no session in a known layout: {value:?}");
        for (n, field) in fields.iter().enumerate().take(7).skip(3) {
            assert!(field.parse::<i64>().is_ok(), "{key}: time field {n} is {field:?}");
        }
        let ttl = cmd(port, &["PTTL", key]).int();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
        assert!(ids.insert(fields[1].to_owned()), "session id {} is stored under two tokens", fields[1]);
        let digest = key.rsplit(':').next().expect("digest").to_owned();
        sessions.insert(digest, fields[1].to_owned());
    }
    let mut orphans = Vec::new();
    for key in keys.iter().filter(|k| k.contains(":user-sessions:")) {
        let ttl = cmd(port, &["PTTL", key]).int();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
        let pairs = cmd(port, &["HGETALL", key]).strings();
        for pair in pairs.chunks(2) {
            let (id, digest) = (&pair[0], &pair[1]);
            match sessions.get(digest) {
                Some(stored) => assert_eq!(stored, id, "{key}: {id} points at another session's token"),
                None => orphans.push((key.clone(), id.clone())),
            }
        }
    }
    let now = {
        let t = cmd(port, &["TIME"]).strings();
        t[0].parse::<i64>().expect("s") * 1000 + t[1].parse::<i64>().expect("us") / 1000
    };
    let mut active = 0;
    for key in keys.iter().filter(|k| k.contains(":active:")) {
        let live = cmd(port, &["ZRANGEBYSCORE", key, &format!("({now}"), "+inf"]).strings();
        for id in &live {
            assert!(ids.contains(id), "{key} counts {id}, which has no session");
        }
        active += live.len();
    }
    Scan { sessions, orphans, active }
}

/// Compare every acknowledged token with Redis: how many live and ended tokens agree, and when
/// each one that does not was acknowledged (a lost login or refresh, a resurrected logout).
fn check_ledgers(ledgers: &[Ledger], scan: &Scan) -> (usize, usize, Vec<(Acked, Instant)>) {
    let (mut live, mut ended, mut wrong) = (0, 0, Vec::new());
    for (token, (acked, at)) in ledgers.iter().flat_map(|l| l.tokens.iter()) {
        let stored = scan.sessions.contains_key(&digest(token));
        match (acked, stored) {
            (Acked::Live, true) => live += 1,
            (Acked::Ended, false) => ended += 1,
            _ => wrong.push((*acked, *at)),
        }
    }
    (live, ended, wrong)
}

fn binary_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SESSIOND_RATE_LIMIT_IP", "0"),
        ("SESSIOND_RATE_LIMIT_LOGIN_IP", "0"),
        ("SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", "0"),
        ("SESSIOND_RATE_LIMIT_REGISTER_IP", "0"),
        ("SESSIOND_ACTIVE_SESSIONS_REFRESH", "200ms"),
    ]
}

/// Register one user per client through `server`.
async fn register_all(client: &reqwest::Client, server: &ServerProcess, names: &[String]) {
    for name in names {
        let body = json!({ "username": name, "password": PASSWORD });
        let r = client.post(server.url("/v1/auth/register")).json(&body).send().await.expect("register");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
}

/// Run the clients against `server` for `run`, then `kill -9` it while they are mid-request.
async fn hammer_then_kill(server: &ServerProcess, names: &[String], run: Duration) -> Vec<Ledger> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> =
        names.iter().map(|name| tokio::spawn(hammer(server.base.clone(), name.clone(), stop_rx.clone()))).collect();
    tokio::time::sleep(run).await;
    let killed = Command::new("kill").args(["-9", &server.pid().to_string()]).status().expect("kill");
    assert!(killed.success(), "kill -9 sessiond");
    let _ = stop_tx.send(true);
    let mut ledgers = Vec::new();
    for task in tasks {
        ledgers.push(task.await.expect("client"));
    }
    ledgers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_sessiond_mid_traffic_leaves_redis_consistent_and_the_gauge_exact() {
    let redis = RedisServer::start_with(&["--appendonly", "no"]);
    let client = reqwest::Client::new();
    let mut server = ServerProcess::start(&redis.url(), &binary_vars());
    server.wait_ready(&client).await;
    let names: Vec<String> = (0..CLIENTS).map(|_| unique("crash")).collect();
    register_all(&client, &server, &names).await;

    let ledgers = hammer_then_kill(&server, &names, Duration::from_millis(2_000)).await;
    let acknowledged: usize = ledgers.iter().map(|l| l.acknowledged).sum();
    assert!(acknowledged > 20, "the clients got only {acknowledged} answers before the kill");

    let found = scan(redis.port);
    let (live, ended, wrong) = check_ledgers(&ledgers, &found);
    assert!(wrong.is_empty(), "acknowledged states Redis does not hold: {wrong:?}");
    assert!(found.orphans.is_empty(), "index entries without a session: {:?}", found.orphans);
    assert_eq!(found.active, found.sessions.len(), "live active-set members against stored sessions");
    // Each client had at most one write in flight: a login whose answer never came (a session
    // the client has no token for) or a refresh (the old token or the new one).
    let unknown = found.sessions.len().checked_sub(live).expect("every live token is stored");
    assert!(unknown <= CLIENTS, "{unknown} stored sessions beyond the clients' live tokens");

    // A fresh instance reports the real count.
    drop(server);
    let fresh = {
        let mut fresh = ServerProcess::start(&redis.url(), &binary_vars());
        fresh.wait_ready(&client).await;
        fresh
    };
    let started = Instant::now();
    let reported = loop {
        let text = fresh.metrics_text(&client).await;
        let value = metric_value(&text, "sessiond_sessions_active", &[]);
        if value == found.sessions.len() as f64 || started.elapsed() > Duration::from_secs(3) {
            break value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "kill -9 of sessiond after {acknowledged} acknowledged writes: {} sessions stored ({unknown} from \
         requests in flight), {live} live and {ended} ended tokens checked, 0 orphans, gauge {reported}",
        found.sessions.len()
    );
    assert_eq!(reported, found.sessions.len() as f64, "sessiond_sessions_active after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_redis_with_an_append_only_file_keeps_every_acknowledged_write() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let client = reqwest::Client::new();
    let mut server = ServerProcess::start(&redis.url(), &binary_vars());
    server.wait_ready(&client).await;
    let names: Vec<String> = (0..CLIENTS).map(|_| unique("aof")).collect();
    register_all(&client, &server, &names).await;

    // Logouts acknowledged more than a second before the kill, then traffic up to the kill.
    let credentials = |name: &str| json!({ "username": name, "password": PASSWORD });
    let (mut early, mut early_live) = (Vec::new(), Vec::new());
    for name in &names {
        for keep in [false, true] {
            let r = client.post(server.url("/v1/auth/login")).json(&credentials(name)).send().await.expect("login");
            let body = r.json::<serde_json::Value>().await.expect("json");
            let token = body["token"].as_str().expect("token").to_owned();
            if keep {
                early_live.push(token);
                continue;
            }
            let r = client.post(server.url("/v1/auth/logout")).bearer_auth(&token).send().await.expect("logout");
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            early.push(token);
        }
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> =
        names.iter().map(|name| tokio::spawn(hammer(server.base.clone(), name.clone(), stop_rx.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // The Redis process dies mid-traffic; the instance stays up and answers 503 meanwhile.
    let killed_at = Instant::now();
    redis.stop();
    let mut ledgers = Vec::new();
    let _ = stop_tx.send(true);
    // The clients stop at the first failed request or at the stop signal.
    for task in tasks {
        ledgers.push(task.await.expect("client"));
    }
    redis.restart();
    let restarted = killed_at.elapsed();

    let found = scan(redis.port);
    for token in &early {
        assert!(!found.sessions.contains_key(&digest(token)), "a logout acknowledged > 1 s before the kill came back");
    }
    for token in &early_live {
        assert!(found.sessions.contains_key(&digest(token)), "a login acknowledged > 1 s before the kill was lost");
    }
    let (live, ended, wrong) = check_ledgers(&ledgers, &found);
    // Redis writes the AOF before it replies, so a killed process loses nothing it
    // acknowledged; everysec bounds what an OS crash could lose (Redis documents up to 2 s
    // when a background fsync is slow): anything wrong must be that recent.
    let window = wrong.iter().map(|(_, at)| killed_at.saturating_duration_since(*at)).max();
    assert!(
        window.is_none_or(|w| w <= Duration::from_secs(2)),
        "a write acknowledged {window:?} before the kill was lost: {wrong:?}"
    );
    let acknowledged: usize = ledgers.iter().map(|l| l.acknowledged).sum();
    assert!(acknowledged > 20, "the clients got only {acknowledged} answers before the kill");
    assert!(found.orphans.is_empty(), "index entries without a session: {:?}", found.orphans);
    assert_eq!(found.active, found.sessions.len());
    let aof_files = std::fs::read_dir(redis.dir().join("appendonlydir")).map(|d| d.count()).unwrap_or(0);
    assert!(aof_files > 0, "Redis wrote no append-only file");
    println!(
        "kill -9 of Redis (AOF everysec) after {acknowledged} acknowledged writes: restarted in {restarted:?}; \
         {live} live and {ended} ended tokens, {} early logins and {} early logouts checked; {} acknowledged \
         states lost (oldest {window:?} before the kill)",
        early_live.len(),
        early.len(),
        wrong.len()
    );

    // The instance reconnects by itself and serves the surviving sessions.
    let token = ledgers
        .iter()
        .flat_map(|l| l.tokens.iter())
        .find(|(token, (acked, _))| *acked == Acked::Live && found.sessions.contains_key(&digest(token)))
        .map(|(token, _)| token.clone())
        .expect("a live token");
    let started = Instant::now();
    loop {
        let r = client.get(server.url("/v1/profile")).bearer_auth(&token).send().await.expect("profile");
        if r.status() == StatusCode::OK {
            break;
        }
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "while reconnecting");
        assert!(started.elapsed() < Duration::from_secs(5), "the instance never reconnected to the restarted Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.terminate();
}
