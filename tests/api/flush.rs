//! What the validation cache must not outlive, and what revocations wait for: a `FLUSHALL` or
//! `FLUSHDB` empties every instance's cache within a second (not after its 10 s backstop);
//! `SESSIOND_VALIDATION_CACHE_TTL=0` starts the binary without any cache; and behind Sentinel
//! revocations wait for a replica (`WAIT`) by default, while a single node sends no `WAIT`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::topology::SentinelSet;

/// Well before the cache's 10 s backstop.
const FLUSH_REACHES_CACHES: Duration = Duration::from_secs(1);

async fn a_flush_empties_every_cache(flush: &str) {
    let redis = RedisServer::start();
    let a = spawn_app(Some(&redis)).await;
    let b = spawn_app(Some(&redis)).await;
    let name = unique("flushed");
    let token = token_of(&a.signup_login(&name).await);
    for app in [&a, &b] {
        warm_cache(app, &token).await;
    }

    assert_eq!(redis.cmd(&[flush]), Resp::Simple("OK".to_owned()));
    let flushed = Instant::now();
    for (label, app) in [("A", &a), ("B", &b)] {
        let left = FLUSH_REACHES_CACHES.saturating_sub(flushed.elapsed());
        until_profile_status(app, &token, StatusCode::UNAUTHORIZED, left).await;
        eprintln!("{flush}: instance {label} refused the session {:?} after the flush", flushed.elapsed());
    }
    for app in [&a, &b] {
        for _ in 0..5 {
            assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED, "the flushed session came back");
        }
    }
    // The instances go on working on the emptied database, cache included.
    assert_eq!(a.register(&name, PASSWORD).await.status(), StatusCode::CREATED);
    let token = token_of(&b.login(&name).await);
    warm_cache(&a, &token).await;
    assert_eq!(b.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
    until_profile_status(&a, &token, StatusCode::UNAUTHORIZED, PROPAGATION).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_empties_every_instances_validation_cache_within_a_second() {
    a_flush_empties_every_cache("FLUSHALL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushdb_empties_every_instances_validation_cache_within_a_second() {
    a_flush_empties_every_cache("FLUSHDB").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_without_a_validation_cache_when_its_ttl_is_zero() {
    let redis = RedisServer::start();
    let vars = [("SESSIOND_VALIDATION_CACHE_TTL", "0"), ("SESSIOND_RATE_LIMIT_LOGIN_IP", "0")];
    let mut a = ServerProcess::start(&redis.url(), &vars);
    let mut b = ServerProcess::start(&redis.url(), &vars);
    let client = reqwest::Client::new();
    a.wait_ready(&client).await;
    b.wait_ready(&client).await;

    let name = unique("uncached");
    let credentials = json!({ "username": name, "password": PASSWORD });
    let response = client.post(a.url("/v1/auth/register")).json(&credentials).send().await.expect("register");
    assert_eq!(response.status(), StatusCode::CREATED);
    let profile = |server: &ServerProcess, token: &str| {
        let request = client.get(server.url("/v1/profile")).bearer_auth(token);
        async move { request.send().await.expect("profile").status() }
    };
    for round in 0..5 {
        let response = client.post(b.url("/v1/auth/login")).json(&credentials).send().await.expect("login");
        assert_eq!(response.status(), StatusCode::OK);
        let token = token_of(&response.json::<Value>().await.expect("json"));
        assert_eq!(profile(&a, &token).await, StatusCode::OK);
        assert_eq!(profile(&a, &token).await, StatusCode::OK);
        let response = client.post(b.url("/v1/auth/logout")).bearer_auth(&token).send().await.expect("logout");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(profile(&a, &token).await, StatusCode::UNAUTHORIZED, "round {round}: logged out on B, valid on A");
    }
    let metrics = a.metrics_text(&client).await;
    let lookups = metric_value(&metrics, "sessiond_validation_cache_lookups_total", &[]);
    assert_eq!(lookups, 0.0, "a cache was consulted:\n{metrics}");
    a.terminate();
    b.terminate();
}

fn wait_calls(set: &SentinelSet) -> u64 {
    let primary = set.primary_addr().expect("a primary");
    let info = set.data_node(primary).info("commandstats");
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("calls"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_sentinel_revocations_wait_for_a_replica_by_default() {
    let set = SentinelSet::start();
    let mut config = test_config(None);
    config.redis_url = Some(set.url());
    // The mode's default number of replicas; only the wait itself gets room for a busy machine.
    config.redis_wait_timeout = Duration::from_millis(500);
    let app = spawn_config(config).await;
    app.wait_ready().await;
    let name = unique("durable");
    let keeper = token_of(&app.signup_login(&name).await);

    let mut calls = wait_calls(&set);
    let mut waited = |what: &str, set: &SentinelSet| {
        let now = wait_calls(set);
        assert!(now > calls, "{what} sent no WAIT to the primary ({calls} WAITs before and after)");
        calls = now;
    };

    let token = token_of(&app.login(&name).await);
    assert_eq!(app.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
    waited("a logout", &set);

    let login = app.login(&name).await;
    let id = login["session_id"].as_str().expect("id");
    assert_eq!(app.delete(&format!("/v1/sessions/{id}"), &keeper).await.status(), StatusCode::NO_CONTENT);
    waited("a revocation by id", &set);

    app.login(&name).await;
    assert_eq!(app.change_password(&keeper, PASSWORD, "durable new passphrase").await.status(), StatusCode::OK);
    waited("a password change", &set);

    let other = unique("gone");
    let token = token_of(&app.signup_login(&other).await);
    assert_eq!(app.delete_account(&token, PASSWORD).await.status(), StatusCode::NO_CONTENT);
    waited("an account deletion", &set);

    let boss = unique("boss");
    app.register(&boss, PASSWORD).await;
    let url = set.url();
    let out = sessiond_cli(&[("SESSIOND_REDIS_URL", url.as_str())], &["admin", "grant-role", &boss, "admin"]).await;
    assert!(out.status.success(), "grant-role: {}", out.stderr);
    let boss = token_of(&app.login(&boss).await);
    let target = unique("disabled");
    app.signup_login(&target).await;
    let response = app.admin(Method::POST, &target, "/disable", &boss).await;
    assert_eq!(response.status(), StatusCode::OK);
    waited("a disable", &set);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_redis_node_gets_no_wait_by_default() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("single");
    let keeper = token_of(&app.signup_login(&name).await);
    let token = token_of(&app.login(&name).await);
    assert_eq!(app.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
    let login = app.login(&name).await;
    let id = login["session_id"].as_str().expect("id");
    assert_eq!(app.delete(&format!("/v1/sessions/{id}"), &keeper).await.status(), StatusCode::NO_CONTENT);
    let response = app.change_password(&keeper, PASSWORD, "single new passphrase").await;
    assert_eq!(response.status(), StatusCode::OK);
    let keeper = token_of(&response.json().await.expect("json"));
    assert_eq!(app.send(Method::DELETE, "/v1/sessions", Some(&keeper), None).await.status(), StatusCode::NO_CONTENT);
    let other = unique("gone");
    let token = token_of(&app.signup_login(&other).await);
    assert_eq!(app.delete_account(&token, PASSWORD).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(redis.command_calls("wait"), 0, "a standalone Redis was sent WAIT");
}
