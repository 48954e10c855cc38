//! Abuse protection: per-instance rate limits (governor, GCRA) and the shared per-account
//! failed-login guard (in the store, so every instance sees the same count).
//!
//! * [`QuotaSpec`] — `20/s burst 40`, parsed once from configuration; `0` disables.
//! * [`KeyedLimiter`] — a governor limiter keyed by client address (IPv6 by /64) or by a hash
//!   of the normalised username; its state is pruned periodically so a million distinct
//!   addresses cannot grow the process without bound.
//! * [`ClientIp`] — the address limits are keyed by: the socket peer, or the right-most
//!   untrusted hop of `X-Forwarded-For`/`Forwarded` when the peer is a trusted proxy.
//!
//! governor's state is per instance, so N instances allow N× the attempts per address. The
//! per-account guard closes that gap for password guessing; see `docs/rate-limiting.md`.

mod client_ip;
pub mod headers;
mod keyed;
mod quota;

pub use client_ip::{Cidr, ClientIp, TrustedProxies};
pub use keyed::{Decision, KeyedLimiter};
pub use quota::QuotaSpec;

use std::sync::Arc;

/// Every limiter of an instance.
#[derive(Clone, Debug)]
pub struct Limiters {
    /// Every public route, by client address.
    pub ip: Arc<KeyedLimiter>,
    /// `POST /v1/auth/login`, by client address.
    pub login_ip: Arc<KeyedLimiter>,
    /// `POST /v1/auth/login`, by normalised username (hashed).
    pub login_account: Arc<KeyedLimiter>,
    /// `POST /v1/auth/register`, by client address.
    pub register_ip: Arc<KeyedLimiter>,
}

impl Limiters {
    /// Build from the configured quotas.
    #[must_use]
    pub fn new(ip: QuotaSpec, login_ip: QuotaSpec, login_account: QuotaSpec, register_ip: QuotaSpec) -> Self {
        Self {
            ip: Arc::new(KeyedLimiter::new("ip", ip)),
            login_ip: Arc::new(KeyedLimiter::new("login_ip", login_ip)),
            login_account: Arc::new(KeyedLimiter::new("login_account", login_account)),
            register_ip: Arc::new(KeyedLimiter::new("register_ip", register_ip)),
        }
    }

    /// Forget keys whose state has fully replenished, and give the memory back.
    pub fn prune(&self) {
        for limiter in [&self.ip, &self.login_ip, &self.login_account, &self.register_ip] {
            limiter.prune();
        }
    }
}
