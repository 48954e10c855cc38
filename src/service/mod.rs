//! The use cases: what each request does, as short functions over the store, the session
//! rules, the limiters and telemetry.
//!
//! This layer sits between the HTTP edge and the store: handlers call it and nothing below
//! it, and it is the only layer that decides *when* the store is called. The rules it applies
//! live below it and do no I/O (`session`: tokens, timeouts, sliding, caps; `users`: names,
//! roles, password hashing), so they cannot drift between the Redis and in-memory backends.

mod accounts;
mod admin;
mod backend;
mod protection;
mod sessions;

pub use accounts::UserService;
pub use admin::{AdminService, UserView};
pub use backend::{BackendService, NewBackendSession};
pub use protection::{LoginGuard, LoginProtection};
pub use sessions::{Authenticated, ClientMeta, Issued, RevokeReason, SessionService};
