//! The session cookie: `HttpOnly` (no script can read it), `SameSite=Lax` (not sent on
//! cross-site sub-requests), `Path=/`, and `Secure` unless explicitly disabled for local HTTP.

use axum::http::HeaderValue;

use crate::session::SessionToken;

/// How the cookie is written.
#[derive(Clone, Debug)]
pub struct CookieSettings {
    /// Cookie name (`sid` by default).
    pub name: String,
    /// Add the `Secure` attribute.
    pub secure: bool,
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

    fn attributes(&self) -> &'static str {
        if self.secure {
            "HttpOnly; SameSite=Lax; Path=/; Secure"
        } else {
            "HttpOnly; SameSite=Lax; Path=/"
        }
    }
}
