//! sessiond — a session service for API consumers, backed by Redis.
//!
//! Clients register, log in and receive an opaque session token (cookie `sid` or bearer
//! token); every protected call validates that token against the shared store. Sessions carry
//! an idle and an absolute deadline which the store enforces by itself (Redis TTL), so an
//! abandoned session disappears without a sweeper.
//!
//! The modules follow the data path of a request:
//!
//! | module | role |
//! |---|---|
//! | [`config`] | one typed [`Config`](config::Config), parsed once from flags and `SESSIOND_*` variables |
//! | [`app`] | [`Application::build`](app::Application::build) binds the listener and wires store, state and router; graceful shutdown |
//! | [`http`] | router, middleware (timeouts, headers, CORS), extractors and thin handlers |
//! | [`error`] | the single error type at the HTTP edge, rendered as RFC 9457 problem+json |
//! | [`limits`] | rate limits (governor) and the client address they key on |
//! | [`session`] | the rules: token and id types, timeouts, sliding expiry, rotation, caps |
//! | [`users`] | usernames, roles and password hashing (argon2id on a bounded blocking pool) |
//! | [`store`] | the storage contract, its key schema, the Redis (fred) and in-memory backends, and the validation cache kept coherent by Redis client tracking |
//! | [`telemetry`] | logging set-up |
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
pub mod session;
pub mod store;
pub mod telemetry;
pub mod users;

pub use app::Application;
pub use config::Config;
