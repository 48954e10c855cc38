//! sessiond on a Redis Cluster: the whole API on three masters, an exact active-session count
//! across them, live resharding under load, and a master failover with `WAIT`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_config, test_config, token_of, unique, TestApp};
use crate::topology::{
    describe, prepare_users, run_load, tally, user_slot, Api, Event, LoadPlan, LoadUser, Op, Phase, RedisCluster, Role,
};

async fn spawn_on(cluster: &RedisCluster, tweak: impl FnOnce(&mut sessiond::Config)) -> TestApp {
    let mut config = test_config(None);
    config.redis_url = Some(cluster.url());
    config.active_sessions_refresh = Duration::from_millis(200);
    tweak(&mut config);
    let app = spawn_config(config).await;
    app.wait_ready().await;
    app
}

/// `sessiond_sessions_active` from the admin `/metrics`.
async fn sessions_active(app: &TestApp) -> u64 {
    let text = app.metrics_text().await;
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix("sessiond_sessions_active "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("sessiond_sessions_active in /metrics");
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let value = value as u64;
    value
}

/// Wait until the gauge shows `expected` and holds it for a second (five refreshes).
///
/// The first matching reading can be stale: a gauge still showing a count from before the
/// test's last change, with a count that started before that change (a ZCOUNT pipeline over
/// three masters, slow on a busy machine) landing just after it. So a reading off the count
/// restarts the hold instead of failing; a count that is wrong, or that never stays put, fails
/// at the deadline with the values seen.
async fn assert_sessions_active(app: &TestApp, expected: u64) {
    const HOLD: Duration = Duration::from_secs(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held_since: Option<Instant> = None;
    let mut seen: Vec<u64> = Vec::new();
    loop {
        let value = sessions_active(app).await;
        if seen.last() != Some(&value) {
            seen.push(value);
        }
        if value == expected {
            let since = *held_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= HOLD {
                return;
            }
        } else {
            held_since = None;
        }
        assert!(
            Instant::now() < deadline,
            "sessiond_sessions_active did not settle at {expected} for {HOLD:?}; values seen in turn: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Session keys (`sessiond:*:sess:*`) stored on the node at `port`.
fn session_keys_on(cluster: &RedisCluster, port: u16) -> usize {
    let node = cluster.node(port);
    let mut cursor = "0".to_owned();
    let mut count = 0;
    loop {
        let reply = node.cmd(&["SCAN", &cursor, "MATCH", "sessiond:*:sess:*", "COUNT", "1000"]);
        let crate::helpers::Resp::Array(parts) = reply else { panic!("SCAN reply") };
        cursor = parts[0].text();
        count += parts[1].strings().len();
        if cursor == "0" {
            return count;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_works_on_a_three_master_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let app = spawn_on(&cluster, |_| {}).await;

    // One user through every endpoint.
    let name = unique("clusteruser");
    let a = app.signup_login(&name).await;
    let b = app.login(&name).await;
    let c = app.login(&name).await;
    let (a, b, c) = (token_of(&a), token_of(&b), token_of(&c));
    let r = app.get("/v1/profile", &a).await;
    assert_eq!(r.status(), StatusCode::OK);
    let profile: Value = r.json().await.expect("json");
    assert_eq!(profile["username"], name.as_str());

    let r = app.post("/v1/auth/refresh", &a).await;
    assert_eq!(r.status(), StatusCode::OK);
    let a2 = token_of(&r.json().await.expect("json"));
    assert_eq!(app.profile_status(&a).await, StatusCode::UNAUTHORIZED, "the rotated-out token is dead");
    assert_eq!(app.profile_status(&a2).await, StatusCode::OK);

    let r = app.get("/v1/sessions", &a2).await;
    assert_eq!(r.status(), StatusCode::OK);
    let listed: Value = r.json().await.expect("json");
    let sessions = listed["sessions"].as_array().expect("array");
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);

    let b_id = app.get("/v1/profile", &b).await.json::<Value>().await.expect("json")["session"]["session_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(app.delete(&format!("/v1/sessions/{b_id}"), &a2).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.profile_status(&b).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.delete(&format!("/v1/sessions/{b_id}"), &a2).await.status(), StatusCode::NOT_FOUND);

    assert_eq!(app.delete("/v1/sessions?except_current=true", &a2).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.profile_status(&c).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.profile_status(&a2).await, StatusCode::OK);
    assert_eq!(app.session_ids(&a2).await.len(), 1);

    let d = token_of(&app.login(&name).await);
    assert_eq!(app.delete("/v1/sessions", &d).await.status(), StatusCode::NO_CONTENT, "log out everywhere");
    assert_eq!(app.profile_status(&a2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.profile_status(&d).await, StatusCode::UNAUTHORIZED);

    let e = token_of(&app.login(&name).await);
    assert_eq!(app.post("/v1/auth/logout", &e).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.profile_status(&e).await, StatusCode::UNAUTHORIZED);
    assert_sessions_active(&app, 0).await;

    // Sixty users: their sessions spread over all three masters, and the gauge is exact.
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let mut expected_per_master: BTreeMap<u16, usize> = masters.iter().map(|m| (*m, 0)).collect();
    let mut live: Vec<(String, String)> = Vec::new();
    for n in 0..60 {
        let user = unique("spread");
        let first = token_of(&app.signup_login(&user).await);
        let master = cluster.master_of_slot(user_slot(&user));
        *expected_per_master.get_mut(&master).expect("a master") += 1;
        live.push((user.clone(), first));
        if n % 2 == 0 {
            let second = token_of(&app.login(&user).await);
            *expected_per_master.get_mut(&master).expect("a master") += 1;
            live.push((user, second));
        }
    }
    for (master, expected) in &expected_per_master {
        assert!(*expected > 0, "no test session landed on master :{master}: {expected_per_master:?}");
        assert_eq!(session_keys_on(&cluster, *master), *expected, "session keys on :{master}");
        assert!(cluster.dbsize(*master) > 0);
    }
    assert_sessions_active(&app, 90).await;

    // Log out a third of them (on every master); the gauge follows exactly.
    let mut logged_out = 0;
    for (n, (_, token)) in live.iter().enumerate() {
        if n % 3 == 0 {
            assert_eq!(app.post("/v1/auth/logout", token).await.status(), StatusCode::NO_CONTENT);
            logged_out += 1;
        }
    }
    for (n, (_, token)) in live.iter().enumerate() {
        let expected = if n % 3 == 0 { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
        assert_eq!(app.profile_status(token).await, expected);
    }
    assert_sessions_active(&app, 90 - logged_out).await;
    println!("sessions per master: {expected_per_master:?}; {logged_out} logged out");
    app.shutdown().await;
}

/// Draw fresh usernames until `want[g]` users fall in group `g` according to `group_of`.
fn pick_users(prefix: &str, want: &[usize], group_of: impl Fn(u16) -> Option<usize>) -> Vec<(String, usize)> {
    let mut have = vec![0; want.len()];
    let mut out = Vec::new();
    for _ in 0..100_000 {
        if have.iter().zip(want).all(|(h, w)| h >= w) {
            return out;
        }
        let name = unique(prefix);
        if let Some(group) = group_of(user_slot(&name)) {
            if have[group] < want[group] {
                have[group] += 1;
                out.push((name, group));
            }
        }
    }
    panic!("could not draw enough usernames for {want:?}");
}

/// Events of `op` (first attempts and retries) in `group`.
fn of(events: &[Event], op: Op, group: Option<usize>) -> Vec<&Event> {
    events.iter().filter(|e| e.op == op && group.is_none_or(|g| e.group == g)).collect()
}

/// Login/logout attempts that still failed after their one retry.
fn failed_after_retry(events: &[Event], op: Op) -> usize {
    events.iter().filter(|e| e.op == op && e.retry && e.status == 503).count()
}

/// Move 4 500 slots between the three masters (two thirds of the users' slots among them)
/// while six clients validate, log in and log out. Returns the events and the users.
async fn reshard_under_load() -> (Vec<Event>, BTreeMap<String, (u16, u16)>, Vec<LoadUser>, Api, TestApp, RedisCluster) {
    let cluster = RedisCluster::start(3, 0);
    let app = spawn_on(&cluster, |_| {}).await;
    let api = Api::of(&app);
    let ranges = cluster.slot_ranges();
    assert_eq!(ranges.len(), 3);
    let (a, b, c) = (ranges[0].2, ranges[1].2, ranges[2].2);
    // `--cluster reshard` takes the lowest slots of its source: the moves below carry slots
    // 0..1500 twice (a -> b -> c) and the first 1500 slots of c once (c -> a).
    let c_first = ranges[2].0;
    let moving = move |slot: u16| slot < 1500 || (c_first..c_first + 1500).contains(&slot);
    let users = pick_users("reshard", &[40, 20], |slot| Some(usize::from(!moving(slot))));
    let users = prepare_users(&api, &users).await;
    let before: Vec<u16> = users.iter().map(|u| cluster.master_of_slot(user_slot(&u.name))).collect();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(Phase::Full);
    let plan = LoadPlan { anchor_checks: 3, churn: true, retry_multi_key: true, no_logout_groups: &[] };
    let load = tokio::spawn(run_load(api.clone(), users.clone(), 6, plan, stop_rx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    for (from, to) in [(a, b), (c, a), (b, c)] {
        let took = cluster.reshard(from, to, 1500).await;
        println!("resharded 1500 slots :{from} -> :{to} in {took:?}");
    }
    let reshard_time = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(Phase::Stop).expect("stop load");
    let events = load.await.expect("load");
    tokio::task::block_in_place(|| cluster.wait_healthy(Duration::from_secs(30)));

    let placement: BTreeMap<String, (u16, u16)> = users
        .iter()
        .zip(before)
        .map(|(u, before)| (u.name.clone(), (before, cluster.master_of_slot(user_slot(&u.name)))))
        .collect();
    let moved_users = placement.values().filter(|(before, after)| before != after).count();
    let in_moved_slots = users.iter().filter(|u| moving(user_slot(&u.name))).count();
    println!(
        "4500 slot moves in {reshard_time:?}; {in_moved_slots} users in moved slots, {moved_users} on another \
         master now; slots per master {:?}",
        cluster.slots_per_master()
    );
    let tallies = tally(&events);
    println!("{}", describe(&tallies));
    println!(
        "after one retry: {} logins and {} logouts still 503",
        failed_after_retry(&events, Op::Login),
        failed_after_retry(&events, Op::Logout)
    );
    assert!(in_moved_slots >= 40 && moved_users >= 20, "the reshard must move the test users' slots");
    let validations = tallies.get(&Op::ValidateLive).cloned().unwrap_or_default();
    assert!(validations.total > 200, "the load loop barely ran: {validations:?}");
    (events, placement, users, api, app, cluster)
}

/// "0 failed single-key operations, multi-key operations retried, no 500": no validation of a
/// live session answers anything but 200 (not even 503), a login or logout that answers 503
/// succeeds when retried once, no request answers 500, no answer contradicts a session's
/// state, and every session is still valid on its new master afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_loses_no_single_key_operation() {
    let (events, _, users, api, app, _cluster) = reshard_under_load().await;
    let bad: Vec<&Event> = events.iter().filter(|e| e.is_server_error() || e.is_wrong()).collect();
    assert!(bad.is_empty(), "500s or wrong answers during resharding: {bad:?}");
    let unexpected: Vec<&Event> = events.iter().filter(|e| !matches!(e.status, 200 | 204 | 401 | 503)).collect();
    assert!(unexpected.is_empty(), "unexpected statuses: {unexpected:?}");
    let validations = tally(&events).get(&Op::ValidateLive).cloned().unwrap_or_default();
    assert_eq!(validations.unavailable, 0, "validations of live sessions answered 503 while slots moved");
    let failed = (failed_after_retry(&events, Op::Login), failed_after_retry(&events, Op::Logout));
    assert_eq!(failed, (0, 0), "logins/logouts still 503 after one retry");
    for user in &users {
        assert_eq!(api.validate(&user.anchor).await, 200, "{} after resharding", user.name);
    }
    app.shutdown().await;
}

/// Move the slot of idle users' sessions, then validate them: the first request on each pooled
/// connection meets a `MOVED` redirection, which must be followed, not answered with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_right_after_its_slot_moved_is_served() {
    let cluster = RedisCluster::start(3, 0);
    let app = spawn_on(&cluster, |_| {}).await;
    let api = Api::of(&app);
    let ranges = cluster.slot_ranges();
    let users = pick_users("moved", &[8], |slot| (slot < 100).then_some(0));
    let users = prepare_users(&api, &users).await;
    cluster.reshard(ranges[0].2, ranges[1].2, 100).await;
    let mut statuses = Vec::new();
    for user in &users {
        statuses.push(api.validate(&user.anchor).await);
    }
    assert!(statuses.iter().all(|s| *s == 200), "statuses right after the move: {statuses:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_over_without_resurrecting_logouts() {
    let mut cluster = RedisCluster::start(3, 1);
    // A WAIT timeout with room for a busy 2-core machine; the default 100 ms is for production.
    let app = spawn_on(&cluster, |c| {
        c.redis_wait_replicas = Some(1);
        c.redis_wait_timeout = Duration::from_millis(500);
    })
    .await;
    let api = Api::of(&app);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let victim = masters[0];
    assert_eq!(cluster.role(victim), Role::Master);
    assert_eq!(cluster.replicas_of(victim).len(), 1, "the victim has a replica");

    // Group 0: users whose keys live on the victim; group 1: on the two other masters.
    let slots = cluster.slot_ranges();
    let on_victim = |slot: u16| slots.iter().any(|(s, e, p)| *p == victim && (*s..=*e).contains(&slot));
    let users = pick_users("failover", &[24, 24], |slot| Some(usize::from(!on_victim(slot))));
    let users = prepare_users(&api, &users).await;
    let victim_users: Vec<_> = users.iter().filter(|u| u.group == 0).cloned().collect();

    // Sessions logged out (with WAIT) just before the kill: none may come back.
    let mut doomed = Vec::new();
    for user in &victim_users {
        for _ in 0..3 {
            let (status, token) = api.login(&user.name).await;
            assert_eq!(status, 200);
            doomed.push(token.expect("token"));
        }
    }
    for token in &doomed {
        assert_eq!(api.logout(token).await, 204, "a logout acknowledged by one replica");
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(Phase::Full);
    // Victim users do not log out under load: once their master is gone, its promoted
    // replica has no replica of its own, so WAIT 1 cannot succeed there (checked below).
    let plan = LoadPlan { anchor_checks: 1, churn: true, retry_multi_key: false, no_logout_groups: &[0] };
    let load = tokio::spawn(run_load(api.clone(), users.clone(), 6, plan, stop_rx));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let probe_slot = user_slot(&victim_users[0].name);
    let killed_at = Instant::now();
    cluster.kill(victim);
    let (new_master, promoted_at) =
        tokio::task::block_in_place(|| cluster.wait_for_new_master(probe_slot, victim, Duration::from_secs(15)));
    let promoted_after = promoted_at - killed_at;
    let bound = cluster.node_timeout + Duration::from_secs(3);
    tokio::time::sleep((killed_at + bound + Duration::from_secs(2)).saturating_duration_since(Instant::now())).await;
    stop_tx.send(Phase::Stop).expect("stop load");
    let events = load.await.expect("load");

    let window = |group: usize, op: Op| -> Option<(Duration, Duration, usize)> {
        let failures: Vec<&Event> =
            of(&events, op, Some(group)).into_iter().filter(|e| e.at >= killed_at && e.status != 200).collect();
        let first = failures.first()?.at - killed_at;
        let last = failures.last()?.at - killed_at;
        Some((first, last, failures.len()))
    };
    println!(
        "victim :{victim} killed; replica :{new_master} promoted after {promoted_after:?}; \
         victim-keys validations failing (first, last, count) {:?}, logins {:?}; other masters: \
         validations {:?}, logins {:?}, logouts {:?}",
        window(0, Op::ValidateLive),
        window(0, Op::Login),
        window(1, Op::ValidateLive),
        window(1, Op::Login),
        events.iter().filter(|e| e.op == Op::Logout && e.at >= killed_at && e.status != 204).count(),
    );
    println!("{}", describe(&tally(&events)));

    let bad: Vec<&Event> = events.iter().filter(|e| e.is_server_error() || e.is_wrong()).collect();
    assert!(bad.is_empty(), "500s or wrong answers around the failover: {bad:?}");
    let unexpected: Vec<&Event> = events.iter().filter(|e| !matches!(e.status, 200 | 204 | 401 | 503)).collect();
    assert!(unexpected.is_empty(), "unexpected statuses: {unexpected:?}");
    for group in [0, 1] {
        for op in [Op::ValidateLive, Op::Login] {
            if let Some((_, last, _)) = window(group, op) {
                assert!(last <= bound, "{op:?} on group {group} still failing {last:?} after the kill");
            }
        }
    }
    let recovered =
        of(&events, Op::ValidateLive, Some(0)).iter().filter(|e| e.at > killed_at + bound && e.status == 200).count();
    assert!(recovered > 0, "no validation on the victim's keys succeeded after the failover");

    // No resurrected logout; every anchor still valid.
    for token in &doomed {
        assert_eq!(api.validate(token).await, 401, "a WAIT-acknowledged logout came back after failover");
    }
    for user in &users {
        assert_eq!(api.validate(&user.anchor).await, 200, "{} after the failover", user.name);
    }

    // The promoted master has no replica: a WAIT 1 logout cannot be confirmed (503), though
    // it is applied on the master.
    let user = &victim_users[0];
    let (status, token) = api.login(&user.name).await;
    assert_eq!(status, 200);
    let token = token.expect("token");
    assert_eq!(api.logout(&token).await, 503, "WAIT 1 without a replica must not be acknowledged");
    assert_eq!(api.validate(&token).await, 401, "the unconfirmed logout is still applied on the master");

    // Full recovery: the old master comes back as a replica of its successor.
    tokio::task::block_in_place(|| {
        cluster.restart(victim);
        cluster.wait_healthy(Duration::from_secs(20));
    });
    assert_eq!(cluster.role(victim), Role::Replica);
    assert_eq!(cluster.replicas_of(new_master), vec![victim]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, token) = api.login(&victim_users[0].name).await;
        if status == 200 && api.logout(&token.expect("token")).await == 204 {
            break;
        }
        assert!(Instant::now() < deadline, "logouts on the recovered shard are still not acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for user in &victim_users {
        let (status, token) = api.login(&user.name).await;
        assert_eq!(status, 200);
        let token = token.expect("token");
        assert_eq!(api.logout(&token).await, 204, "logout with WAIT once the shard has a replica again");
        assert_eq!(api.validate(&token).await, 401);
    }
    app.shutdown().await;
}
