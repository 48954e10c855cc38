//! The cookies, and where a request's session credential came from.
//!
//! The session cookie is `HttpOnly` (no script can read it), `SameSite=Lax` by default (not
//! sent on cross-site sub-requests) and `Path=/`. With `Secure` (the default) it is named
//! `__Host-<name>`: browsers accept such a cookie only over HTTPS, with `Path=/` and without
//! `Domain`, so a sibling subdomain can neither set nor shadow it ("cookie tossing"). Over plain
//! HTTP (local development only) it is `<name>` without `Secure`.
//!
//! A request that carries the session cookie more than once — two values, or the prefixed and
//! the bare name together — is refused: which one a server reads first is exactly what a
//! tossed cookie exploits.
//!
//! The device-token cookie (`[__Host-]sessiond_device`, see `users::DeviceToken`) is `HttpOnly`
//! and `SameSite=Strict`: it only ever matters to a login, which a browser sends from this site.
//! It lives as long as the token; API clients get the same token in the `sessiond-device-token`
//! response header and send it back in the request header of that name.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};

use crate::config::SameSite;
use crate::session::SessionToken;
use crate::users::DeviceToken;

/// The device-token cookie's base name.
const DEVICE_COOKIE: &str = "sessiond_device";
/// The device-token header (response and request).
pub const DEVICE_HEADER: &str = "sessiond-device-token";
/// The prefix browsers enforce Secure, `Path=/` and no `Domain` for.
const HOST_PREFIX: &str = "__Host-";

/// How the cookies are named and written.
#[derive(Clone, Debug)]
pub struct CookieSettings {
    /// The session cookie's name as sent (`__Host-sid`, or `sid` without `Secure`).
    name: String,
    /// The configured base name (`sid`), for spotting the other spelling in a request.
    base: String,
    /// The device-token cookie's name as sent.
    device_name: String,
    /// Add `Secure` (and the `__Host-` prefix).
    secure: bool,
    /// The session cookie's `SameSite`.
    same_site: SameSite,
    /// How long a device-token cookie lives (the token's own lifetime).
    device_ttl: Duration,
}

/// What a request's `Cookie` headers say about the session cookie.
pub enum Presented<'a> {
    /// No session cookie.
    None,
    /// Exactly one, with this value.
    One(&'a str),
    /// More than one (any spelling): refused.
    Several,
}

impl CookieSettings {
    /// Cookies named after `base` (`sid`), `Secure` and `__Host-` prefixed when `secure`.
    #[must_use]
    pub fn new(base: &str, secure: bool, same_site: SameSite, device_ttl: Duration) -> Self {
        let prefix = if secure { HOST_PREFIX } else { "" };
        Self {
            name: format!("{prefix}{base}"),
            base: base.to_owned(),
            device_name: format!("{prefix}{DEVICE_COOKIE}"),
            secure,
            same_site,
            device_ttl,
        }
    }

    /// The session cookie's name as sent.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the cookies are `Secure` (the service is reached over HTTPS).
    #[must_use]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The session cookie in `headers`. Either spelling of the name counts towards "more than
    /// once"; only the configured one is ever read.
    #[must_use]
    pub fn session_in<'a>(&self, headers: &'a HeaderMap) -> Presented<'a> {
        let prefixed = format!("{HOST_PREFIX}{}", self.base);
        let mut found = Presented::None;
        let mut seen = 0;
        for (name, value) in cookies(headers) {
            if name == self.base || name == prefixed {
                seen += 1;
                if seen > 1 {
                    return Presented::Several;
                }
                if name == self.name {
                    found = Presented::One(value);
                }
            }
        }
        found
    }

    /// The device token cookie's value in `headers`, if any.
    #[must_use]
    pub fn device_in<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        cookies(headers).find(|(name, _)| *name == self.device_name).map(|(_, value)| value)
    }

    /// `Set-Cookie` carrying a token.
    #[must_use]
    pub fn issue(&self, token: &SessionToken) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("{}={}; {}", self.name, token.expose(), self.attributes())).ok()
    }

    /// `Set-Cookie` that makes the browser forget the session.
    #[must_use]
    pub fn clear(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("{}=; Max-Age=0; {}", self.name, self.attributes())).ok()
    }

    /// `Set-Cookie` carrying a device token.
    #[must_use]
    pub fn issue_device(&self, token: &DeviceToken) -> Option<HeaderValue> {
        let secure = if self.secure { "; Secure" } else { "" };
        let max_age = self.device_ttl.as_secs();
        let text = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}",
            self.device_name,
            token.expose()
        );
        HeaderValue::from_str(&text).ok()
    }

    fn attributes(&self) -> &'static str {
        match (self.same_site, self.secure) {
            (SameSite::Lax, true) => "HttpOnly; SameSite=Lax; Path=/; Secure",
            (SameSite::Lax, false) => "HttpOnly; SameSite=Lax; Path=/",
            (SameSite::Strict, true) => "HttpOnly; SameSite=Strict; Path=/; Secure",
            (SameSite::Strict, false) => "HttpOnly; SameSite=Strict; Path=/",
        }
    }
}

/// Every `name=value` pair of every `Cookie` header (values unquoted); a header that is not
/// text is skipped.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(name, value)| (name.trim(), value.trim().trim_matches('"')))
}
