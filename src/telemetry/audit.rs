//! The audit trail: one JSON object per line under the log target `audit`, for every event
//! that changes who may do what (logins, logouts, revocations, password changes, deletions,
//! administrators' actions).
//!
//! Why a target of its own: operators ship audit events to a different place, keep them
//! longer and alert on them, so they must be separable from diagnostics by a stable name and
//! a stable shape, whatever `SESSIOND_LOG_FORMAT` and `RUST_LOG` say (see [`super::init`]:
//! always JSON, always at `info`, to `SESSIOND_AUDIT_LOG` or standard error). The events and
//! their fields are listed in `docs/audit.md`, and every field is named here, once.
//!
//! What never appears: a token, a password, a cookie, a device token or a hash. Sessions are
//! named by their public id, users by their id and username.

use std::net::IpAddr;

/// The log target of audit events.
pub const TARGET: &str = "audit";

/// Who did it: a signed-in user (with the address the request came from), or the operator
/// command line.
#[derive(Clone, Copy, Debug)]
pub struct Actor<'a> {
    /// The acting user's id; `None` for the command line.
    pub user_id: Option<&'a str>,
    /// The acting user's name, or `cli`.
    pub name: &'a str,
    /// Where the request came from; `None` for the command line.
    pub client_ip: Option<IpAddr>,
}

impl Actor<'static> {
    /// The operator command line (`sessiond admin …`).
    pub const CLI: Self = Self { user_id: None, name: "cli", client_ip: None };
}

fn ip(client_ip: Option<IpAddr>) -> Option<String> {
    client_ip.map(|ip| ip.to_string())
}

/// `account.register`.
pub fn registered(user_id: &str, username: &str, client_ip: Option<IpAddr>) {
    tracing::info!(target: TARGET, event = "account.register", user_id, username, client_ip = ip(client_ip));
}

/// `login.success`.
pub fn login_succeeded(
    user_id: &str,
    username: &str,
    session_id: &str,
    client_ip: Option<IpAddr>,
    trusted_device: bool,
) {
    tracing::info!(
        target: TARGET,
        event = "login.success",
        user_id,
        username,
        session_id,
        client_ip = ip(client_ip),
        trusted_device
    );
}

/// `login.failure`: `username` only when it is a valid username (normalised).
pub fn login_failed(username: Option<&str>, client_ip: Option<IpAddr>, reason: &'static str) {
    tracing::info!(target: TARGET, event = "login.failure", username, client_ip = ip(client_ip), reason);
}

/// A user acting on their own session: `logout`, `refresh`.
pub fn own_session(event: &'static str, user_id: &str, username: &str, session_id: &str, client_ip: Option<IpAddr>) {
    tracing::info!(target: TARGET, event, user_id, username, session_id, client_ip = ip(client_ip));
}

/// `session.revoke`: one session ended by id.
pub fn session_revoked(actor: Actor<'_>, target_session_id: &str) {
    tracing::info!(
        target: TARGET,
        event = "session.revoke",
        actor_user_id = actor.user_id,
        actor = actor.name,
        target_session_id,
        client_ip = ip(actor.client_ip)
    );
}

/// `sessions.revoke_all`: logout everywhere.
pub fn sessions_revoked_all(actor: Actor<'_>, revoked: u64, kept_current: bool) {
    tracing::info!(
        target: TARGET,
        event = "sessions.revoke_all",
        actor_user_id = actor.user_id,
        actor = actor.name,
        revoked,
        kept_current,
        client_ip = ip(actor.client_ip)
    );
}

/// `password.change`.
pub fn password_changed(user_id: &str, username: &str, session_id: &str, revoked: u64, client_ip: Option<IpAddr>) {
    tracing::info!(
        target: TARGET,
        event = "password.change",
        user_id,
        username,
        session_id,
        revoked,
        client_ip = ip(client_ip)
    );
}

/// `reauth.failure`: the password given to confirm `action` was refused.
pub fn reauthentication_failed(
    user_id: &str,
    username: &str,
    action: &'static str,
    reason: &'static str,
    client_ip: Option<IpAddr>,
) {
    tracing::info!(target: TARGET, event = "reauth.failure", user_id, username, action, reason, client_ip = ip(client_ip));
}

/// `account.delete`.
pub fn account_deleted(user_id: &str, username: &str, revoked: u64, client_ip: Option<IpAddr>) {
    tracing::info!(target: TARGET, event = "account.delete", user_id, username, revoked, client_ip = ip(client_ip));
}

/// An administrator's action on `target_user`: `admin.disable` (with `revoked`),
/// `admin.enable`, `admin.role_grant` / `admin.role_revoke` (with `role`),
/// `admin.sessions_revoke` (with `revoked`).
pub fn admin(event: &'static str, actor: Actor<'_>, target_user: &str, role: Option<&str>, revoked: Option<u64>) {
    tracing::info!(
        target: TARGET,
        event,
        actor_user_id = actor.user_id,
        actor = actor.name,
        target_user,
        role,
        revoked,
        client_ip = ip(actor.client_ip)
    );
}

/// `backend.auth_failure`: a backend route called without a valid API key.
pub fn backend_refused(client_ip: Option<IpAddr>, path: &str) {
    tracing::info!(target: TARGET, event = "backend.auth_failure", path, client_ip = ip(client_ip));
}

/// `backend.session_created`, `backend.session_ended`, `backend.sessions_ended`: a trusted
/// backend (named by its API key's name) opened or ended sessions of an external subject.
pub fn backend_session(
    event: &'static str,
    backend: &str,
    subject: &str,
    session_id: Option<&str>,
    revoked: Option<u64>,
) {
    let subject = (!subject.is_empty()).then_some(subject);
    tracing::info!(target: TARGET, event, backend, subject, session_id, revoked);
}

/// `access.denied`: a signed-in user called a route that needs `required_role`.
pub fn access_denied(actor: Actor<'_>, required_role: &str) {
    tracing::info!(
        target: TARGET,
        event = "access.denied",
        actor_user_id = actor.user_id,
        actor = actor.name,
        required_role,
        client_ip = ip(actor.client_ip)
    );
}
