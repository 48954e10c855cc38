//! The IETF rate-limit headers (draft-ietf-httpapi-ratelimit-headers), as structured-field
//! lists with one item per policy that applied:
//!
//! ```text
//! RateLimit-Policy: "ip";q=40;w=2, "login_ip";q=10;w=10
//! RateLimit: "ip";r=39;t=0, "login_ip";r=9;t=1
//! ```
//!
//! `q` is the burst, `w` the seconds in which a full burst replenishes, `r` what remains and
//! `t` the seconds until the quota is whole again. They are written by the rate-limit
//! middleware and by the error response of a refusal from deeper down (the per-account
//! limiter, the shared guard), so they live here, beside the decisions they render, rather
//! than in either.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::Decision;

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Write `RateLimit-Policy` and `RateLimit` for the policies that applied.
pub fn insert_headers(headers: &mut HeaderMap, decisions: &[Decision]) {
    if decisions.is_empty() {
        return;
    }
    let join = |item: &dyn Fn(&Decision) -> String| decisions.iter().map(item).collect::<Vec<_>>().join(", ");
    let policy = join(&|d| format!("\"{}\";q={};w={}", d.limiter, d.policy.0, d.policy.1));
    let state = join(&|d| format!("\"{}\";r={};t={}", d.limiter, d.remaining, d.reset_secs));
    if let (Ok(policy), Ok(state)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&state)) {
        headers.insert(RATELIMIT_POLICY, policy);
        headers.insert(RATELIMIT, state);
    }
}
