//! The session cookie: `HttpOnly` (no script can read it), `SameSite=Lax` (not sent on
//! cross-site sub-requests), `Path=/`, and `Secure` unless explicitly disabled for local HTTP.
//!
//! The device-token cookie (`sessiond_device`, see `users::DeviceToken`) is `HttpOnly` and
//! `SameSite=Strict`: it only ever matters to a login, which a browser sends from this site. It
//! lives as long as the token; API clients get the same token in the `sessiond-device-token`
//! response header and send it back in the request header of that name.

use std::time::Duration;

use axum::http::HeaderValue;

use crate::session::SessionToken;
use crate::users::DeviceToken;

/// The device-token cookie.
pub const DEVICE_COOKIE: &str = "sessiond_device";
/// The device-token header (response and request).
pub const DEVICE_HEADER: &str = "sessiond-device-token";

/// How the cookie is written.
#[derive(Clone, Debug)]
pub struct CookieSettings {
    /// Cookie name (`sid` by default).
    pub name: String,
    /// Add the `Secure` attribute.
    pub secure: bool,
    /// How long a device-token cookie lives (the token's own lifetime).
    pub device_ttl: Duration,
}

impl CookieSettings {
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
        let text =
            format!("{DEVICE_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}", token.expose());
        HeaderValue::from_str(&text).ok()
    }

    fn attributes(&self) -> &'static str {
        if self.secure {
            "HttpOnly; SameSite=Lax; Path=/; Secure"
        } else {
            "HttpOnly; SameSite=Lax; Path=/"
        }
    }
}
