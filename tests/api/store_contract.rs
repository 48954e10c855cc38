//! One contract, every backend: the in-memory store (the reference model), Redis (real
//! `redis-server`), Redis behind the validation cache, and a 3-master Redis Cluster must
//! answer every operation identically.

use std::sync::Arc;
use std::time::Duration;

use sessiond::session::{SessionId, SessionToken, Slide, Timestamp, TokenHash};
use sessiond::store::cached::Cached;
use sessiond::store::memory::MemoryStore;
use sessiond::store::near_cache::NearCacheSettings;
use sessiond::store::redis::{RedisSettings, RedisStore};
use sessiond::store::{
    GuardBucket, GuardEvent, GuardRule, Lookup, NewPassword, PasswordChange, SessionRecord, Store, UserRecord,
};
use sessiond::users::{UserKey, Username};

use crate::helpers::RedisServer;

const IDLE_MS: i64 = 60_000;
const ABS_MS: i64 = 600_000;
const NO_SLIDE: Slide = Slide { idle_ms: IDLE_MS, min_interval_ms: i64::MAX };
const ALWAYS_SLIDE: Slide = Slide { idle_ms: IDLE_MS, min_interval_ms: 0 };

fn key(name: &str) -> UserKey {
    Username::parse(name).expect("valid username").key()
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        user_id: format!("id-{name}"),
        username: name.to_owned(),
        password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
        roles: vec!["user".to_owned()],
        created_at: Timestamp::now(),
        disabled: false,
    }
}

/// A fresh session for `name` created at `now` with the contract's timeouts.
fn session(name: &str, now: Timestamp) -> (TokenHash, SessionRecord) {
    let user_key = key(name);
    let (_, hash) = SessionToken::generate_in(user_key.shard()).expect("rng");
    let record = SessionRecord {
        session_id: SessionId::generate().expect("rng"),
        user_id: format!("id-{name}"),
        username: name.to_owned(),
        user_key,
        created_at: now,
        last_seen_at: now,
        idle_expires_at: Timestamp::from_millis(now.millis() + IDLE_MS),
        expires_at: Timestamp::from_millis(now.millis() + ABS_MS),
        ip: Some(std::net::IpAddr::from([192, 0, 2, 1])),
        device: Some("contract/1.0".to_owned()),
        data: None,
    };
    (hash, record)
}

/// Sessions belong to existing users: the store may read the owner's id and spelling from the
/// user record instead of copying them into every session.
async fn create(store: &dyn Store, name: &str, now: Timestamp) -> (TokenHash, SessionRecord) {
    store.insert_user(&key(name), &user(name)).await.expect("insert user");
    let (hash, record) = session(name, now);
    let evicted = store.create_session(&hash, &record, 0, now).await.expect("create");
    assert_eq!(evicted, Some(Vec::new()));
    (hash, record)
}

fn found(lookup: Lookup) -> (SessionRecord, Vec<String>) {
    match lookup {
        Lookup::Found(found) => (found.session.clone(), found.roles.clone()),
        other => panic!("expected a live session, got {other:?}"),
    }
}

async fn users_are_unique_and_roles_change(store: Arc<dyn Store>) {
    let alice = key("Alice");
    assert!(store.insert_user(&alice, &user("Alice")).await.expect("insert"));
    assert!(
        !store.insert_user(&key("ALICE"), &user("ALICE")).await.expect("insert again"),
        "case-insensitive uniqueness"
    );
    let stored = store.find_user(&key("alice")).await.expect("find").expect("present");
    assert_eq!(stored, user("Alice").clone_with_created(stored.created_at));
    assert!(store.find_user(&key("nobody")).await.expect("find").is_none());

    assert!(store.set_role(&alice, "admin", true).await.expect("grant"));
    assert!(store.set_role(&alice, "admin", true).await.expect("grant twice"));
    let roles = store.find_user(&alice).await.expect("find").expect("present").roles;
    assert_eq!(roles, vec!["user".to_owned(), "admin".to_owned()]);
    assert!(store.set_role(&alice, "admin", false).await.expect("revoke"));
    assert_eq!(store.find_user(&alice).await.expect("find").expect("present").roles, vec!["user".to_owned()]);
    assert!(!store.set_role(&key("nobody"), "admin", true).await.expect("unknown"));
}

trait WithCreated {
    fn clone_with_created(&self, at: Timestamp) -> Self;
}
impl WithCreated for UserRecord {
    fn clone_with_created(&self, at: Timestamp) -> Self {
        Self { created_at: at, ..self.clone() }
    }
}

async fn created_sessions_validate_with_roles(store: Arc<dyn Store>) {
    store.insert_user(&key("bob"), &user("bob")).await.expect("insert");
    store.set_role(&key("bob"), "admin", true).await.expect("grant");
    let now = Timestamp::now();
    let (hash, record) = create(&*store, "bob", now).await;
    let (session, roles) = found(store.touch_session(&hash, now, NO_SLIDE).await.expect("touch"));
    assert_eq!(session, record);
    assert_eq!(roles, vec!["user".to_owned(), "admin".to_owned()]);
    let (_, stranger) = session_hash("bob");
    assert_eq!(store.touch_session(&stranger, now, NO_SLIDE).await.expect("touch"), Lookup::Missing);
}

fn session_hash(name: &str) -> (SessionToken, TokenHash) {
    SessionToken::generate_in(key(name).shard()).expect("rng")
}

async fn idle_deadline_slides_only_when_due(store: Arc<dyn Store>) {
    let t0 = Timestamp::now();
    let (hash, record) = create(&*store, "carol", t0).await;
    let later = Timestamp::from_millis(t0.millis() + 1_000);
    let (unchanged, _) = found(store.touch_session(&hash, later, NO_SLIDE).await.expect("touch"));
    assert_eq!(unchanged.last_seen_at, record.last_seen_at, "no write before the slide interval");
    assert_eq!(unchanged.idle_expires_at, record.idle_expires_at);

    let (slid, _) = found(store.touch_session(&hash, later, ALWAYS_SLIDE).await.expect("touch"));
    assert_eq!(slid.last_seen_at, later);
    assert_eq!(slid.idle_expires_at, Timestamp::from_millis(later.millis() + IDLE_MS));
    assert_eq!(slid.expires_at, record.expires_at, "absolute deadline never moves");
    let (again, _) = found(store.touch_session(&hash, later, NO_SLIDE).await.expect("touch"));
    assert_eq!(again, slid, "the slide was persisted");

    // Near the absolute deadline the idle deadline is capped by it.
    let (short, mut record) = session("carol", t0);
    record.expires_at = Timestamp::from_millis(t0.millis() + IDLE_MS / 2);
    record.idle_expires_at = record.expires_at;
    store.create_session(&short, &record, 0, t0).await.expect("create");
    let (capped, _) = found(store.touch_session(&short, later, ALWAYS_SLIDE).await.expect("touch"));
    assert_eq!(capped.idle_expires_at, record.expires_at);
}

async fn sessions_past_their_deadline_are_expired_then_gone(store: Arc<dyn Store>) {
    let t0 = Timestamp::now();
    let (hash, record) = create(&*store, "dave", t0).await;
    let after_idle = Timestamp::from_millis(record.idle_expires_at.millis() + 1);
    assert_eq!(store.touch_session(&hash, after_idle, NO_SLIDE).await.expect("touch"), Lookup::Expired);
    assert_eq!(store.touch_session(&hash, t0, NO_SLIDE).await.expect("touch"), Lookup::Missing);
    assert!(store.list_sessions(&key("dave"), t0).await.expect("list").is_empty());
    assert_eq!(store.count_active(t0).await.expect("count"), 0);
}

async fn rotation_moves_the_session_to_a_new_token(store: Arc<dyn Store>) {
    let t0 = Timestamp::now();
    let (old, record) = create(&*store, "erin", t0).await;
    let (_, new) = session_hash("erin");
    let later = Timestamp::from_millis(t0.millis() + 5_000);
    let (rotated, _) = found(store.rotate_session(&old, &new, later, ALWAYS_SLIDE).await.expect("rotate"));
    assert_eq!(rotated.session_id, record.session_id);
    assert_eq!(rotated.created_at, record.created_at);
    assert_eq!(rotated.expires_at, record.expires_at);
    assert_eq!(rotated.idle_expires_at, Timestamp::from_millis(later.millis() + IDLE_MS));
    assert_eq!(store.touch_session(&old, later, NO_SLIDE).await.expect("touch"), Lookup::Missing);
    found(store.touch_session(&new, later, NO_SLIDE).await.expect("touch"));
    let listed = store.list_sessions(&key("erin"), later).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].session_id, record.session_id);
    // Revoking by id after rotation finds the session under its new token.
    assert!(store.revoke_session_by_id(&key("erin"), &record.session_id).await.expect("revoke"));
    assert_eq!(store.touch_session(&new, later, NO_SLIDE).await.expect("touch"), Lookup::Missing);
    // Rotating a session that is gone does nothing.
    let (_, newer) = session_hash("erin");
    assert_eq!(store.rotate_session(&new, &newer, later, ALWAYS_SLIDE).await.expect("rotate"), Lookup::Missing);
    assert_eq!(store.touch_session(&newer, later, NO_SLIDE).await.expect("touch"), Lookup::Missing);
}

async fn revocation_is_exact(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let (a, ra) = create(&*store, "frank", now).await;
    let (b, rb) = create(&*store, "frank", now).await;
    let (c, rc) = create(&*store, "frank", now).await;
    let (g, rg) = create(&*store, "grace", now).await;
    assert_eq!(store.count_active(now).await.expect("count"), 4);

    assert_eq!(store.revoke_session(&a).await.expect("revoke"), Some(ra.session_id.clone()));
    assert_eq!(store.revoke_session(&a).await.expect("revoke again"), None);
    assert_eq!(store.touch_session(&a, now, NO_SLIDE).await.expect("touch"), Lookup::Missing);

    // By id: only the owner's index can find it.
    assert!(!store.revoke_session_by_id(&key("grace"), &rb.session_id).await.expect("not hers"));
    found(store.touch_session(&b, now, NO_SLIDE).await.expect("still live"));
    assert!(store.revoke_session_by_id(&key("frank"), &rb.session_id).await.expect("his"));
    assert!(!store.revoke_session_by_id(&key("frank"), &rb.session_id).await.expect("gone"));

    // All but one.
    let (d, rd) = create(&*store, "frank", now).await;
    assert_eq!(store.revoke_user_sessions(&key("frank"), Some(&rd.session_id)).await.expect("all"), 1);
    assert_eq!(store.touch_session(&c, now, NO_SLIDE).await.expect("touch"), Lookup::Missing);
    found(store.touch_session(&d, now, NO_SLIDE).await.expect("kept"));
    assert_eq!(store.revoke_user_sessions(&key("frank"), None).await.expect("all"), 1);
    assert!(store.list_sessions(&key("frank"), now).await.expect("list").is_empty());
    let _ = rc;

    // Other users are untouched.
    let listed = store.list_sessions(&key("grace"), now).await.expect("list");
    assert_eq!(listed, vec![rg]);
    found(store.touch_session(&g, now, NO_SLIDE).await.expect("grace"));
    assert_eq!(store.count_active(now).await.expect("count"), 1);
}

async fn the_cap_evicts_the_oldest(store: Arc<dyn Store>) {
    let t0 = Timestamp::now().millis();
    let mut made: Vec<(TokenHash, SessionRecord)> = Vec::new();
    store.insert_user(&key("heidi"), &user("heidi")).await.expect("insert user");
    for n in 0..4 {
        let at = Timestamp::from_millis(t0 + n * 10);
        let (hash, record) = session("heidi", at);
        let evicted = store.create_session(&hash, &record, 3, at).await.expect("create");
        if n < 3 {
            assert_eq!(evicted, Some(Vec::new()), "under the cap");
        } else {
            assert_eq!(evicted, Some(vec![made[0].1.session_id.clone()]), "the oldest goes");
        }
        made.push((hash, record));
    }
    let now = Timestamp::from_millis(t0 + 100);
    assert_eq!(store.touch_session(&made[0].0, now, NO_SLIDE).await.expect("touch"), Lookup::Missing);
    let mut listed: Vec<_> =
        store.list_sessions(&key("heidi"), now).await.expect("list").into_iter().map(|s| s.session_id).collect();
    listed.sort();
    let mut expected: Vec<_> = made[1..].iter().map(|(_, r)| r.session_id.clone()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(store.count_active(now).await.expect("count"), 3);
}

async fn active_count_is_exact_and_excludes_expired(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    for n in 0..25 {
        create(&*store, &format!("user{n:02}"), now).await;
    }
    assert_eq!(store.count_active(now).await.expect("count"), 25);
    let after_idle = Timestamp::from_millis(now.millis() + IDLE_MS + 1);
    assert_eq!(store.count_active(after_idle).await.expect("count"), 0, "deadline passed for all");
    store.prune_expired(now).await.expect("prune");
    assert_eq!(store.count_active(now).await.expect("count"), 25, "pruning keeps live sessions");
    store.prune_expired(after_idle).await.expect("prune");
    assert_eq!(store.count_active(now).await.expect("count"), 0, "pruned bookkeeping of expired sessions");
}

async fn lists_skip_expired_sessions(store: Arc<dyn Store>) {
    let t0 = Timestamp::now();
    let (_, early) = create(&*store, "ivan", t0).await;
    let t1 = Timestamp::from_millis(t0.millis() + IDLE_MS / 2);
    let (_, late) = create(&*store, "ivan", t1).await;
    let listed = store.list_sessions(&key("ivan"), t0).await.expect("list");
    assert_eq!(listed.len(), 2);
    let after_first = Timestamp::from_millis(early.idle_expires_at.millis() + 1);
    let listed = store.list_sessions(&key("ivan"), after_first).await.expect("list");
    assert_eq!(listed, vec![late]);
}

async fn resent_writes_are_idempotent(store: Arc<dyn Store>) {
    let carl = key("carl");
    assert!(store.insert_user(&carl, &user("carl")).await.expect("insert"));
    assert!(store.insert_user(&carl, &user("carl")).await.expect("the same insert again"), "re-sent insert succeeds");
    let other = UserRecord { user_id: "someone-else".to_owned(), ..user("carl") };
    assert!(!store.insert_user(&carl, &other).await.expect("insert"), "a different user is still refused");

    let now = Timestamp::now();
    let (hash, record) = session("carl", now);
    assert_eq!(store.create_session(&hash, &record, 0, now).await.expect("create"), Some(Vec::new()));
    assert_eq!(store.create_session(&hash, &record, 0, now).await.expect("create again"), Some(Vec::new()));
    assert_eq!(store.list_sessions(&carl, now).await.expect("list").len(), 1);
    assert_eq!(store.count_active(now).await.expect("count"), 1);

    let (_, new) = session_hash("carl");
    let (first, _) = found(store.rotate_session(&hash, &new, now, ALWAYS_SLIDE).await.expect("rotate"));
    let (again, _) = found(store.rotate_session(&hash, &new, now, ALWAYS_SLIDE).await.expect("rotate again"));
    assert_eq!(first, again, "a re-sent rotation reports the rotated session");
    assert_eq!(store.touch_session(&hash, now, NO_SLIDE).await.expect("touch"), Lookup::Missing);
    assert_eq!(store.list_sessions(&carl, now).await.expect("list").len(), 1);
}

fn change<'a>(
    user: &'a UserKey,
    expected: &'a str,
    hash: &'a str,
    current: &'a TokenHash,
    new: &'a TokenHash,
    now: Timestamp,
) -> NewPassword<'a> {
    NewPassword { user, expected, hash, current, new, now, slide: ALWAYS_SLIDE }
}

async fn a_password_change_moves_the_caller_and_ends_every_other_session(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let (current, record) = create(&*store, "judy", now).await;
    let (other, _) = create(&*store, "judy", now).await;
    let (bystander, _) = create(&*store, "kim", now).await;
    let old_hash = user("judy").password_hash;
    let (_, new) = session_hash("judy");
    let judy = key("judy");

    // The hash must be the verified one: a concurrent change wins, nothing moves.
    let stale = store.change_password(&change(&judy, "not-the-hash", "$new", &current, &new, now)).await;
    assert_eq!(stale.expect("change"), PasswordChange::Conflict);
    found(store.touch_session(&current, now, NO_SLIDE).await.expect("still live"));

    let changed = store.change_password(&change(&judy, &old_hash, "$new", &current, &new, now)).await;
    let PasswordChange::Changed { session, revoked } = changed.expect("change") else { panic!("not changed") };
    assert_eq!(revoked, 1, "the other session ended");
    assert_eq!(session.session_id, record.session_id, "the caller's session keeps its id");
    assert_eq!((session.created_at, session.expires_at), (record.created_at, record.expires_at));
    assert_eq!(store.find_user(&judy).await.expect("find").expect("present").password_hash, "$new");
    assert_eq!(store.touch_session(&current, now, NO_SLIDE).await.expect("old token"), Lookup::Missing);
    assert_eq!(store.touch_session(&other, now, NO_SLIDE).await.expect("other"), Lookup::Missing);
    found(store.touch_session(&new, now, NO_SLIDE).await.expect("new token"));
    found(store.touch_session(&bystander, now, NO_SLIDE).await.expect("another user's session"));
    let listed = store.list_sessions(&judy, now).await.expect("list");
    assert_eq!(listed.iter().map(|s| &s.session_id).collect::<Vec<_>>(), vec![&record.session_id]);

    // Re-sent after a dropped connection: reports the change again, changes nothing more.
    let again = store.change_password(&change(&judy, &old_hash, "$new", &current, &new, now)).await;
    assert!(matches!(again.expect("again"), PasswordChange::Changed { .. }));
    // A session that is gone changes nothing.
    let (_, newer) = session_hash("judy");
    let gone = store.change_password(&change(&judy, "$new", "$newer", &other, &newer, now)).await;
    assert_eq!(gone.expect("gone"), PasswordChange::SessionEnded);
    assert_eq!(store.find_user(&judy).await.expect("find").expect("present").password_hash, "$new");
}

async fn deleting_a_user_removes_it_with_every_session_and_its_guard(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let (a, _) = create(&*store, "liam", now).await;
    let (b, _) = create(&*store, "liam", now).await;
    let (bystander, _) = create(&*store, "mia", now).await;
    let liam = key("liam");
    let rule = GuardRule { interval_ms: 60_000, tolerance_ms: 0 };
    store.login_guard(&liam, GuardBucket::Untrusted, now, rule, GuardEvent::Failure).await.expect("guard");
    assert!(store.login_guard(&liam, GuardBucket::Untrusted, now, rule, GuardEvent::Check).await.expect("guard") > 0);

    assert_eq!(store.delete_user(&liam).await.expect("delete"), Some(2));
    assert!(store.find_user(&liam).await.expect("find").is_none());
    for hash in [&a, &b] {
        assert_eq!(store.touch_session(hash, now, NO_SLIDE).await.expect("touch"), Lookup::Missing);
    }
    assert!(store.list_sessions(&liam, now).await.expect("list").is_empty());
    assert_eq!(store.login_guard(&liam, GuardBucket::Untrusted, now, rule, GuardEvent::Check).await.expect("guard"), 0);
    assert_eq!(store.count_active(now).await.expect("count"), 1, "only the other user's session is left");
    found(store.touch_session(&bystander, now, NO_SLIDE).await.expect("bystander"));
    assert_eq!(store.delete_user(&liam).await.expect("delete again"), None);
    // The name is free again, and a session of the old account cannot come back.
    assert!(store.insert_user(&liam, &user("liam")).await.expect("insert"));
    assert!(store.list_sessions(&liam, now).await.expect("list").is_empty());
}

async fn a_disabled_user_has_no_session_until_enabled(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let (a, _) = create(&*store, "noah", now).await;
    let noah = key("noah");
    assert_eq!(store.set_disabled(&noah, true).await.expect("disable"), Some(1));
    assert!(store.find_user(&noah).await.expect("find").expect("present").disabled);
    assert_eq!(store.touch_session(&a, now, NO_SLIDE).await.expect("touch"), Lookup::Missing);
    let (hash, record) = session("noah", now);
    assert_eq!(store.create_session(&hash, &record, 0, now).await.expect("create"), None, "refused while disabled");
    assert_eq!(store.touch_session(&hash, now, NO_SLIDE).await.expect("touch"), Lookup::Missing);
    assert_eq!(store.set_disabled(&noah, false).await.expect("enable"), Some(0));
    assert!(!store.find_user(&noah).await.expect("find").expect("present").disabled);
    assert_eq!(store.create_session(&hash, &record, 0, now).await.expect("create"), Some(Vec::new()));
    found(store.touch_session(&hash, now, NO_SLIDE).await.expect("touch"));
    assert_eq!(store.set_disabled(&key("nobody"), true).await.expect("unknown"), None);
    // A user that no longer exists gets no session either.
    let (orphan, orphan_record) = session("olga", now);
    assert_eq!(store.create_session(&orphan, &orphan_record, 0, now).await.expect("create"), None);
}

async fn guard_allowances_are_separate(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let pia = key("pia");
    let rule = GuardRule { interval_ms: 60_000, tolerance_ms: 60_000 };
    let guard = |bucket, event| {
        let store = store.clone();
        let pia = pia.clone();
        async move { store.login_guard(&pia, bucket, now, rule, event).await.expect("guard") }
    };
    for _ in 0..3 {
        guard(GuardBucket::Untrusted, GuardEvent::Failure).await;
    }
    assert!(guard(GuardBucket::Untrusted, GuardEvent::Check).await > 0, "the shared allowance is spent");
    assert_eq!(guard(GuardBucket::Device("dev-a"), GuardEvent::Check).await, 0, "a device keeps its own");
    for _ in 0..3 {
        guard(GuardBucket::Device("dev-a"), GuardEvent::Failure).await;
    }
    assert!(guard(GuardBucket::Device("dev-a"), GuardEvent::Check).await > 0);
    assert_eq!(guard(GuardBucket::Device("dev-b"), GuardEvent::Check).await, 0, "another device is untouched");
    guard(GuardBucket::Device("dev-a"), GuardEvent::Success).await;
    assert_eq!(guard(GuardBucket::Device("dev-a"), GuardEvent::Check).await, 0, "success resets its allowance");
    assert!(guard(GuardBucket::Untrusted, GuardEvent::Check).await > 0, "and only its own");
}

/// A backend session: its data travels with every answer and survives rotation and slides;
/// its owner pointer finds it by id until its deadline.
async fn backend_data_and_owners_survive_every_step(store: Arc<dyn Store>) {
    let subject = sessiond::users::Subject::parse("idp|ü 42").expect("subject");
    let owner = subject.key();
    let mut record =
        UserRecord { user_id: subject.as_str().to_owned(), username: subject.as_str().to_owned(), ..user("subject-x") };
    record.password_hash = String::new();
    assert!(store.insert_user(&owner, &record).await.expect("insert subject"));
    let now = Timestamp::now();
    let (_, mut backend) = session("subject-x", now);
    let (_, hash) = SessionToken::generate_in(owner.shard()).expect("rng");
    backend.user_key = owner.clone();
    backend.user_id = subject.as_str().to_owned();
    backend.username = subject.as_str().to_owned();
    backend.data = Some(r#"{"tenant":"acme","s":"a\u001fb"}"#.into());
    assert_eq!(store.create_session(&hash, &backend, 0, now).await.expect("create"), Some(Vec::new()));
    let (validated, roles) = found(store.touch_session(&hash, now, NO_SLIDE).await.expect("touch"));
    assert_eq!(validated, backend);
    assert_eq!(roles, vec!["user".to_owned()]);
    let later = Timestamp::from_millis(now.millis() + 10);
    let (validated, _) = found(store.touch_session(&hash, later, ALWAYS_SLIDE).await.expect("slide"));
    assert_eq!(validated.data, backend.data, "a slide keeps the data");
    let (_, moved) = SessionToken::generate_in(owner.shard()).expect("rng");
    let (rotated, _) = found(store.rotate_session(&hash, &moved, later, ALWAYS_SLIDE).await.expect("rotate"));
    assert_eq!(rotated.data, backend.data, "a rotation keeps the data");
    let listed = store.list_sessions(&owner, later).await.expect("list");
    assert_eq!(listed.iter().map(|s| s.data.clone()).collect::<Vec<_>>(), vec![backend.data.clone()]);
    assert!(store.set_role(&owner, "billing", true).await.expect("grant"));
    let (after_role, roles) = found(store.touch_session(&moved, later, NO_SLIDE).await.expect("touch"));
    assert_eq!((after_role.data, roles), (backend.data.clone(), vec!["user".to_owned(), "billing".to_owned()]));
    // A password user of the subject's spelling is another key altogether.
    assert!(store.list_sessions(&key("subject-x"), later).await.expect("list").is_empty());

    let id = &backend.session_id;
    assert_eq!(store.session_owner(id, now).await.expect("owner"), None);
    store.set_session_owner(id, &owner, backend.expires_at, now).await.expect("set owner");
    assert_eq!(store.session_owner(id, now).await.expect("owner"), Some(owner.clone()));
    let other = SessionId::generate().expect("rng");
    assert_eq!(store.session_owner(&other, now).await.expect("owner"), None);
    // A pointer lapses at its deadline.
    let brief = SessionId::generate().expect("rng");
    store.set_session_owner(&brief, &owner, Timestamp::from_millis(now.millis() + 50), now).await.expect("set");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(store.session_owner(&brief, Timestamp::now()).await.expect("owner"), None);
    assert!(store.revoke_session_by_id(&owner, id).await.expect("revoke"));
    assert_eq!(store.touch_session(&moved, later, NO_SLIDE).await.expect("touch"), Lookup::Missing);
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(std::sync::Arc::new(super::MemoryStore::new())).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = super::RedisServer::start();
                    let store = super::redis_store(&server).await;
                    super::$case(store).await;
                }
            )*
        }
        mod redis_cached {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = super::RedisServer::start();
                    let store = super::redis_cached_store(&server).await;
                    super::$case(store).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let cluster = crate::topology::RedisCluster::start(3, 0);
                    let store = super::redis_cluster_store(&cluster).await;
                    super::$case(store).await;
                }
            )*
        }
    };
}

async fn redis_store(server: &RedisServer) -> Arc<dyn Store> {
    let store = RedisStore::connect(&RedisSettings {
        timeout: Duration::from_millis(500),
        pool_size: 2,
        ..RedisSettings::new(server.url())
    })
    .expect("connect");
    store.wait_connected(Duration::from_secs(5)).await.expect("redis reachable");
    Arc::new(store)
}

/// Redis behind the validation cache, once the cache serves (tracking on, links proven): the
/// cache must never answer differently from Redis.
async fn redis_cached_store(server: &RedisServer) -> Arc<dyn Store> {
    let store = RedisStore::connect(&RedisSettings {
        timeout: Duration::from_millis(500),
        pool_size: 2,
        near_cache: Some(NearCacheSettings {
            max_age: Duration::from_secs(10),
            capacity: 1_000,
            staleness: Duration::from_millis(500),
        }),
        ..RedisSettings::new(server.url())
    })
    .expect("connect");
    store.wait_connected(Duration::from_secs(5)).await.expect("redis reachable");
    let cache = store.near_cache().expect("the cache is on");
    let started = std::time::Instant::now();
    while !cache.coherent() {
        assert!(started.elapsed() < Duration::from_secs(3), "client tracking never came up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Arc::new(Cached::new(Arc::new(store), cache))
}

/// A store on a 3-master Cluster: every contract case must hold when a user's keys live on
/// one master and the active-session count is summed over all of them.
async fn redis_cluster_store(cluster: &crate::topology::RedisCluster) -> Arc<dyn Store> {
    let store = RedisStore::connect(&RedisSettings {
        timeout: Duration::from_millis(500),
        pool_size: 2,
        ..RedisSettings::new(cluster.url())
    })
    .expect("connect");
    store.wait_connected(Duration::from_secs(5)).await.expect("cluster reachable");
    Arc::new(store)
}

contract!(
    users_are_unique_and_roles_change,
    created_sessions_validate_with_roles,
    idle_deadline_slides_only_when_due,
    sessions_past_their_deadline_are_expired_then_gone,
    rotation_moves_the_session_to_a_new_token,
    revocation_is_exact,
    the_cap_evicts_the_oldest,
    active_count_is_exact_and_excludes_expired,
    lists_skip_expired_sessions,
    resent_writes_are_idempotent,
    a_password_change_moves_the_caller_and_ends_every_other_session,
    deleting_a_user_removes_it_with_every_session_and_its_guard,
    a_disabled_user_has_no_session_until_enabled,
    guard_allowances_are_separate,
    backend_data_and_owners_survive_every_step,
);
