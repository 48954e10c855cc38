//! Device tokens: proof that a client has logged in as a user before (the OWASP "device
//! cookie" pattern), so that a targeted lockout cannot shut the real user out.
//!
//! Why: the failed-login guard throttles guessing per account, and so an attacker who guesses
//! alice's password from anywhere spends alice's allowance too: the real alice is locked out
//! of her own account. A successful login hands the client a token bound to that user and
//! signed by the service; a later attempt that presents it spends an allowance of its own
//! (keyed by the token's id), which guessing from elsewhere cannot touch, while the guessing
//! itself stays throttled on the shared allowance. See `docs/rate-limiting.md`.
//!
//! A token is `<id>.<expiry>.<mac>`: a random 128-bit id (base64url), the expiry in Unix
//! seconds, and HMAC-SHA-256 over the user's key, the id and the expiry. It is not a session
//! and grants nothing without the password; it is still a secret (it spends a user's private
//! allowance), so it is never logged and its `Debug` is redacted.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::UserKey;
use crate::session::Timestamp;

/// Longest token accepted (id, expiry and MAC with their separators fit in 90 bytes).
const MAX_TOKEN_LEN: usize = 128;

/// Domain separation: the key signs nothing else in this shape.
const CONTEXT: &[u8] = b"sessiond/device/v1";

/// A device token as a client holds it. Not `Display`; `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken(String);

impl DeviceToken {
    /// Wrap a presented token (cookie or header); `None` when it cannot be one.
    #[must_use]
    pub fn presented(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty() && text.len() <= MAX_TOKEN_LEN && text.is_ascii()).then(|| Self(text.to_owned()))
    }

    /// The token text, to hand to the client (cookie and header) and nowhere else.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceToken(<redacted>)")
    }
}

/// The public id of a verified device token: names the device's allowance in the guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceId(String);

impl DeviceId {
    /// The id (base64url, 22 characters).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Issues and verifies device tokens with one key.
pub struct DeviceTokens {
    key: [u8; 32],
    ttl: Duration,
}

impl fmt::Debug for DeviceTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceTokens").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl DeviceTokens {
    /// Sign with `secret` (any length; it is hashed to the HMAC key), tokens valid for `ttl`.
    #[must_use]
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        key.copy_from_slice(&Sha256::new().chain_update(CONTEXT).chain_update(secret).finalize());
        Self { key, ttl }
    }

    /// A key drawn at random: tokens hold on this process only.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn random(ttl: Duration) -> Result<Self, getrandom::Error> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)?;
        Ok(Self::new(&secret, ttl))
    }

    /// How long an issued token is valid.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `user`: for the device `reuse` (a token it presented, renewed), else a new
    /// device.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn issue(
        &self,
        user: &UserKey,
        reuse: Option<&DeviceId>,
        now: Timestamp,
    ) -> Result<DeviceToken, getrandom::Error> {
        let id = match reuse {
            Some(id) => id.0.clone(),
            None => {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes)?;
                URL_SAFE_NO_PAD.encode(bytes)
            }
        };
        let expires = (now.millis() / 1000).saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX));
        let mac = URL_SAFE_NO_PAD.encode(self.mac(user, &id, expires));
        Ok(DeviceToken(format!("{id}.{expires}.{mac}")))
    }

    /// The device id of `token` if it is a live token this key issued for `user`.
    #[must_use]
    pub fn verify(&self, token: &DeviceToken, user: &UserKey, now: Timestamp) -> Option<DeviceId> {
        let mut parts = token.0.split('.');
        let (id, expires, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || id.len() != 22 || URL_SAFE_NO_PAD.decode(id).ok()?.len() != 16 {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        if expires <= now.millis() / 1000 {
            return None;
        }
        let presented = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let expected = self.mac(user, id, expires);
        // Constant time: how much of a forged MAC matched must not show in the timing.
        let same = presented.len() == expected.len()
            && presented.iter().zip(expected.iter()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0;
        same.then(|| DeviceId(id.to_owned()))
    }

    fn mac(&self, user: &UserKey, id: &str, expires: i64) -> [u8; 32] {
        hmac_sha256(
            &self.key,
            &[CONTEXT, b"\0", user.as_str().as_bytes(), b"\0", id.as_bytes(), b"\0", expires.to_string().as_bytes()],
        )
    }
}

/// HMAC-SHA-256 (RFC 2104) over the concatenation of `parts`, with a 32-byte key.
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut padded = [0u8; 64];
    padded[..32].copy_from_slice(key);
    let inner_key: Vec<u8> = padded.iter().map(|b| b ^ 0x36).collect();
    let outer_key: Vec<u8> = padded.iter().map(|b| b ^ 0x5c).collect();
    let mut inner = Sha256::new().chain_update(&inner_key);
    for part in parts {
        inner.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::new().chain_update(&outer_key).chain_update(inner.finalize()).finalize());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserKey {
        UserKey::from_stored(name).expect("key")
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2_shape() {
        // RFC 4231 case 2 uses a 4-byte key ("Jefe"): zero-padded to 32 bytes, HMAC is unchanged.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn a_token_verifies_for_its_user_only_and_not_once_tampered_or_expired() {
        let tokens = DeviceTokens::new(b"a secret of at least thirty-two bytes", Duration::from_secs(60));
        let now = Timestamp::now();
        let token = tokens.issue(&user("alice"), None, now).expect("rng");
        let id = tokens.verify(&token, &user("alice"), now).expect("valid");
        assert_eq!(id.as_str().len(), 22);
        assert!(tokens.verify(&token, &user("bob"), now).is_none(), "bound to its user");
        let later = Timestamp::from_millis(now.millis() + 61_000);
        assert!(tokens.verify(&token, &user("alice"), later).is_none(), "expired");
        let other = DeviceTokens::new(b"another secret of thirty-two bytes!!", Duration::from_secs(60));
        assert!(other.verify(&token, &user("alice"), now).is_none(), "another key");
        let mut text = token.expose().to_owned();
        let last = text.pop().expect("char");
        text.push(if last == 'A' { 'B' } else { 'A' });
        let tampered = DeviceToken::presented(&text).expect("shape");
        assert!(tokens.verify(&tampered, &user("alice"), now).is_none(), "tampered");
        let renewed = tokens.issue(&user("alice"), Some(&id), now).expect("rng");
        assert_eq!(tokens.verify(&renewed, &user("alice"), now), Some(id), "renewal keeps the device");
        assert_eq!(format!("{token:?}"), "DeviceToken(<redacted>)");
    }
}
