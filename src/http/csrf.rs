//! Cross-site request forgery: a browser attaches the session cookie to requests that other
//! pages start, so a state-changing request authenticated by the cookie must prove it was
//! started by this site before it has any effect.
//!
//! The proof is what browsers send and pages cannot forge: `Sec-Fetch-Site` (every current
//! browser) and `Origin` (every cross-origin request, and every POST). A request whose `Origin`
//! is on the allow-list (`SESSIOND_ALLOWED_ORIGINS`, and the CORS origins) passes; otherwise it
//! is refused with 403 when
//! - `Sec-Fetch-Site` says `same-site` or `cross-site` (a sibling subdomain or another port is
//!   same-site, and `SameSite=Lax` would let its cookie through) — `same-origin` and `none` (the
//!   user typed it) pass, whatever `Origin` says; or
//! - without `Sec-Fetch-Site`, its `Origin` is not this service's own (its host and port are the
//!   request's `Host`); `Origin: null` included.
//!
//! The scheme of our own origin is not compared: behind a TLS-terminating proxy the service
//! cannot tell it, and a page on the other scheme of the same host is no longer same-origin
//! to the browser, which says so in `Sec-Fetch-Site`.
//!
//! A request with neither header did not come from a browser page (curl, a server-side
//! client), and one authenticated by `Authorization` or `x-session-id` carries no ambient
//! credential: neither is checked. Safe methods (GET, HEAD, OPTIONS) change nothing and are not
//! checked either. No token is needed in pages or forms, so none can leak.

use std::sync::Arc;

use axum::http::request::Parts;
use axum::http::{header, Method};

use crate::error::Error;
use crate::telemetry::metrics::Metrics;

/// Who may send cookie-authenticated state-changing requests.
#[derive(Clone, Debug)]
pub struct CsrfPolicy {
    /// Origins besides our own (`https://app.example.com`, no trailing slash).
    allowed: Vec<String>,
    metrics: Arc<Metrics>,
}

impl CsrfPolicy {
    /// Allow `allowed` besides the service's own origin.
    #[must_use]
    pub fn new(allowed: Vec<String>, metrics: Arc<Metrics>) -> Self {
        Self { allowed, metrics }
    }

    /// Whether a request that would change state may proceed (see the module docs). Safe
    /// methods always may.
    ///
    /// # Errors
    /// 403 `cross-site-request` when the browser says another site started it.
    pub fn check(&self, parts: &Parts) -> Result<(), Error> {
        if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let headers = &parts.headers;
        let origin = headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("null"));
        if origin.is_some_and(|origin| self.allowed.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin))) {
            return Ok(());
        }
        // The browser's own word decides when it gives it: with `Referrer-Policy: no-referrer`
        // a same-origin form post carries `Origin: null`, so `Origin` is only consulted when
        // `Sec-Fetch-Site` is absent (older browsers).
        if let Some(site) = headers.get("sec-fetch-site").map(|v| v.to_str().unwrap_or_default()) {
            if site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none") {
                return Ok(());
            }
            return Err(self.refuse("sec_fetch_site", parts));
        }
        if let Some(origin) = origin {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let own = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .is_some_and(|rest| !host.is_empty() && rest.eq_ignore_ascii_case(host));
            if !own {
                return Err(self.refuse("origin", parts));
            }
        }
        Ok(())
    }

    fn refuse(&self, reason: &'static str, parts: &Parts) -> Error {
        self.metrics.csrf_rejection(reason);
        if let Some(suppressed) = crate::telemetry::log_budget::REFUSED_REQUESTS.take() {
            // The route and the headers that decided, never a cookie or a token.
            let origin = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("-");
            let site = parts.headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::warn!(
                reason,
                method = %parts.method,
                path = parts.uri.path(),
                origin = origin.chars().take(128).collect::<String>(),
                sec_fetch_site = site.chars().take(32).collect::<String>(),
                suppressed,
                "cross-site request refused"
            );
        }
        Error::CrossSiteRequest
    }
}
