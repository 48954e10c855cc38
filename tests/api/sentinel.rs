//! sessiond behind Redis Sentinel: under load, `kill -9` the primary; sessiond must follow the
//! promotion by itself, answer 503 (never 500, never a wrong 200/401) meanwhile, and no logout
//! acknowledged with `WAIT` may come back.

use std::time::{Duration, Instant};

use crate::helpers::{spawn_config, test_config, unique};
use crate::topology::{describe, prepare_users, run_load, tally, Api, Event, LoadPlan, Op, Phase, SentinelSet};

/// After the sentinels name the new primary, sessiond must be serving from it within this.
const FOLLOW_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessiond_follows_a_sentinel_failover_without_resurrecting_logouts() {
    let mut set = SentinelSet::start();
    let mut config = test_config(None);
    config.redis_url = Some(set.url());
    config.redis_wait_replicas = Some(1);
    // Room for a busy 2-core machine; the default 100 ms is for production.
    config.redis_wait_timeout = Duration::from_millis(500);
    config.active_sessions_refresh = Duration::from_millis(200);
    let app = spawn_config(config).await;
    app.wait_ready().await;
    let api = Api::of(&app);
    let old_primary = set.primary_addr().expect("a primary");

    let names: Vec<(String, usize)> = (0..24).map(|_| (unique("sentinel"), 0)).collect();
    let users = prepare_users(&api, &names).await;

    // Logged out with WAIT 1 just before the kill: every one must stay logged out.
    let mut doomed = Vec::new();
    for user in &users {
        for _ in 0..3 {
            let (status, token) = api.login(&user.name).await;
            assert_eq!(status, 200);
            doomed.push(token.expect("token"));
        }
    }
    for token in &doomed {
        assert_eq!(api.logout(token).await, 204, "a logout acknowledged by the replica");
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(Phase::Full);
    let plan = LoadPlan { anchor_checks: 1, churn: true, retry_multi_key: false, no_logout_groups: &[] };
    let load = tokio::spawn(run_load(api.clone(), users.clone(), 6, plan, stop_rx));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed_at = Instant::now();
    set.kill_data(old_primary);
    let (new_primary, promoted_at) =
        tokio::task::block_in_place(|| set.wait_for_new_primary(old_primary, Duration::from_secs(20)));
    // From here on the new primary has no replica, so every WAIT 1 logout would time out, and
    // those WAITs queue behind one another on sessiond's durable connection (see the ignored
    // test below): stop logging out, keep validating and logging in.
    stop_tx.send(Phase::NoLogouts).expect("no more logouts");
    tokio::time::sleep(
        (promoted_at + FOLLOW_WITHIN + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    )
    .await;
    stop_tx.send(Phase::Stop).expect("stop load");
    let events = load.await.expect("load");

    let after_kill = |op: Op| -> Vec<&Event> { events.iter().filter(|e| e.op == op && e.at >= killed_at).collect() };
    let last_failure = |op: Op, ok: u16| after_kill(op).into_iter().filter(|e| e.status != ok).map(|e| e.at).max();
    let first_success_after_promotion =
        after_kill(Op::ValidateLive).into_iter().find(|e| e.at >= promoted_at && e.status == 200).map(|e| e.at);
    let rel = |at: Option<Instant>| at.map(|at| format!("{:?}", at.saturating_duration_since(promoted_at)));
    println!(
        "primary :{old_primary} killed; sentinels named :{new_primary} after {:?}; relative to that: first \
         validation served {:?}, last failed validation {:?}, last failed login {:?}",
        promoted_at - killed_at,
        rel(first_success_after_promotion),
        rel(last_failure(Op::ValidateLive, 200)),
        rel(last_failure(Op::Login, 200)),
    );
    println!("{}", describe(&tally(&events)));

    let bad: Vec<&Event> = events.iter().filter(|e| e.is_server_error() || e.is_wrong()).collect();
    assert!(bad.is_empty(), "500s or wrong answers around the failover: {bad:?}");
    let unexpected: Vec<&Event> = events.iter().filter(|e| !matches!(e.status, 200 | 204 | 401 | 503)).collect();
    assert!(unexpected.is_empty(), "unexpected statuses: {unexpected:?}");
    // Logouts after the promotion stay 503: the new primary has no replica to WAIT for.
    for (op, ok) in [(Op::ValidateLive, 200), (Op::Login, 200)] {
        if let Some(last) = last_failure(op, ok) {
            let late = last.saturating_duration_since(promoted_at);
            assert!(late <= FOLLOW_WITHIN, "{op:?} still failing {late:?} after the sentinels promoted :{new_primary}");
        }
    }
    assert!(first_success_after_promotion.is_some(), "no validation succeeded after the promotion");

    for token in &doomed {
        assert_eq!(api.validate(token).await, 401, "a WAIT-acknowledged logout came back after failover");
    }
    for user in &users {
        assert_eq!(api.validate(&user.anchor).await, 200, "{} after the failover", user.name);
    }

    // No replica left: a logout is applied but cannot be confirmed.
    let (status, token) = api.login(&users[0].name).await;
    assert_eq!(status, 200);
    let token = token.expect("token");
    assert_eq!(api.logout(&token).await, 503, "WAIT 1 without a replica must not be acknowledged");
    assert_eq!(api.validate(&token).await, 401, "the unconfirmed logout is still applied on the primary");

    // The old primary returns as a replica: logouts are acknowledged again.
    tokio::task::block_in_place(|| {
        set.restart_as_replica_of(old_primary, new_primary);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !set.is_settled() {
            assert!(Instant::now() < deadline, "the old primary did not rejoin as a replica");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, token) = api.login(&users[0].name).await;
        if status == 200 && api.logout(&token.expect("token")).await == 204 {
            break;
        }
        assert!(Instant::now() < deadline, "logouts are still not acknowledged with a replica back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for user in &users {
        let (status, token) = api.login(&user.name).await;
        assert_eq!(status, 200);
        let token = token.expect("token");
        assert_eq!(api.logout(&token).await, 204, "logout with WAIT once a replica is back");
        assert_eq!(api.validate(&token).await, 401);
    }
    app.shutdown().await;
}

/// With the replica gone, every logout answers 503 (no acknowledgement) — and what a 503 left
/// behind must be settled when it is answered: either the revocation ran on the primary (the
/// session is already 401) or it was never sent (still 200), but never "applied later", which
/// would happen if waited writes queued behind one another's `WAIT` on a shared connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logouts_answered_503_without_a_replica_are_settled_when_answered() {
    let mut set = SentinelSet::start();
    let mut config = test_config(None);
    config.redis_url = Some(set.url());
    config.redis_wait_replicas = Some(1);
    let app = spawn_config(config).await;
    app.wait_ready().await;
    let api = Api::of(&app);
    let names: Vec<(String, usize)> = (0..24).map(|_| (unique("backlog"), 0)).collect();
    let users = prepare_users(&api, &names).await;
    let primary = set.primary_addr().expect("primary");
    let replica = set.data.iter().map(|n| n.port).find(|p| *p != primary).expect("replica");
    set.kill_data(replica);

    // Logouts arriving 10 ms apart, as from independent clients: more waits than connections.
    let mut tasks = Vec::new();
    for (n, user) in users.iter().enumerate() {
        let api = api.clone();
        let token = user.anchor.clone();
        let start = Duration::from_millis(10) * u32::try_from(n).expect("small");
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(start).await;
            let logout = api.logout(&token).await;
            (logout, api.validate(&token).await)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task"));
    }
    assert!(outcomes.iter().all(|(logout, _)| *logout == 503), "no replica, no acknowledgement: {outcomes:?}");
    assert!(outcomes.iter().all(|(_, now)| matches!(now, 200 | 401)), "{outcomes:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut changed = Vec::new();
    for (user, (_, right_after)) in users.iter().zip(&outcomes) {
        let later = api.validate(&user.anchor).await;
        if later != *right_after {
            changed.push((user.name.clone(), *right_after, later));
        }
    }
    let applied = outcomes.iter().filter(|(_, now)| *now == 401).count();
    println!("{applied} of {} unacknowledged logouts were applied, the rest never sent", outcomes.len());
    assert!(changed.is_empty(), "logouts answered 503 took effect later (name, right after, 1 s later): {changed:?}");
    app.shutdown().await;
}
