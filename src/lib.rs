//! sessiond — a session service for API consumers, backed by Redis.
//!
//! Clients register, log in and receive an opaque session token (cookie `sid` or bearer
//! token); every protected call validates that token against the shared store. Sessions carry
//! an idle and an absolute deadline which the store enforces by itself (Redis TTL), so an
//! abandoned session disappears without a sweeper.
//!
//! The modules follow the data path of a request, top to bottom; every import points down:
//!
//! ```text
//!  request
//!    │  http      middleware (observe → panic → headers → CORS → rate limit → timeout),
//!    │            extractors (AppJson, AuthSession), thin handlers          ─┐
//!    ▼                                                                       │ error: one Error
//!  service        the use cases: login, validate, rotate, revoke; register,  ─┘ → problem+json
//!    │            password change, deletion; admin; login protection
//!    │    └──────► limits (governor, client address)   telemetry (metrics, traces, logs, audit)
//!    ▼
//!  store          the contract (trait), validation cache, instrumentation
//!    ├─ store::redis    fred: one GET per validation, one Lua script per write
//!    └─ store::memory   the embedded default and reference model
//!    ▼
//!  session, users the rules and types, no I/O: tokens, timeouts, sliding, caps;
//!                 usernames, roles, password hashing
//! ```
//!
//! | module | role |
//! |---|---|
//! | [`config`] | one typed [`Config`](config::Config), parsed once from flags and `SESSIOND_*` variables |
//! | [`app`] | [`Application::build`](app::Application::build) binds the listener and wires store, services and router; graceful shutdown |
//! | [`http`] | router, middleware, extractors and thin handlers |
//! | [`error`] | the single error type at the HTTP edge, rendered as RFC 9457 problem+json |
//! | [`service`] | the use cases, each a few calls to the store with the rules applied |
//! | [`limits`] | rate limits (governor), the client address they key on, their response headers |
//! | [`store`] | the storage contract, its key schema, the Redis (fred) and in-memory backends, and the validation cache kept coherent by Redis client tracking |
//! | [`session`] | the rules: token and id types, timeouts, sliding expiry, caps |
//! | [`users`] | usernames, roles, password hashing (argon2id on a bounded pool), device tokens |
//! | [`tokens`] | short-lived signed access tokens (JWS, EdDSA) derived from a session, and their published key set |
//! | [`telemetry`] | the metric catalog, the HTTP observation layer, tracing and OTLP, the audit trail |
//! | [`cli`] | operator subcommands (`sessiond admin …`) sharing the server's configuration |
//!
//! Nothing secret leaves the process: tokens are only ever stored as SHA-256 digests, and the
//! secret newtypes ([`SessionToken`](session::SessionToken), [`Password`](users::Password))
//! refuse to print themselves.

pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod limits;
pub mod service;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod users;

pub use app::Application;
pub use config::Config;
