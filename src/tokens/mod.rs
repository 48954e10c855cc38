//! Short-lived signed access tokens, derived from a live session.
//!
//! Why: other services want to check a caller without asking the session store on every
//! request. The Redis session stays the source of truth; a token is a JWS (EdDSA, Ed25519)
//! that says who the session's owner is for a few minutes, verifiable anywhere with the key set
//! published at `/.well-known/jwks.json`. The trade-off is stated wherever tokens are: a token
//! outlives a logout until its `exp` (at most its lifetime, 300 s by default); callers that
//! need instant revocation ask the introspection endpoint or `/v1/auth/verify` instead.
//!
//! Claims: `iss`, `aud` (configured), `sub` (the user's id), `name` (username), `roles`, `sid`
//! (session id), `iat`, `nbf`, `exp` (never beyond the session's own deadline), `jti`; the
//! header names the key (`kid`).

mod keys;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use keys::generate_into;
use keys::SigningKey;

use crate::service::Authenticated;
use crate::session::Timestamp;

/// How often the key directory is read again (also on `SIGHUP`).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// How long verifiers may cache the key set: shorter than any sensible rotation overlap
/// (keep a retired key for at least a token lifetime plus this).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(60);

/// Settings of the issuer.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Lifetime of a token (capped by its session's deadline).
    pub ttl: Duration,
    /// Where the keys are; `None`: one key drawn at start-up (tokens die with the process).
    pub keys_dir: Option<PathBuf>,
}

/// A minted token.
pub struct AccessToken {
    /// The compact JWS.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    name: &'a str,
    roles: &'a [String],
    sid: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
}

/// What a verified access token says.
#[derive(Clone, Debug, Deserialize)]
pub struct VerifiedClaims {
    /// The user's id.
    pub sub: String,
    /// The username.
    pub name: String,
    /// The roles when minted.
    pub roles: Vec<String>,
    /// The session's id.
    pub sid: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The session's deadline is less than a second away.
    #[error("the session is about to expire")]
    SessionEnding,
    /// Signing failed (a broken key).
    #[error("signing: {0}")]
    Signing(String),
}

/// The issuer: signing keys (reloadable) and claims settings.
pub struct AccessTokens {
    settings: TokenSettings,
    /// The newest key signs; all are published. Swapped whole on reload.
    keys: RwLock<Arc<Vec<SigningKey>>>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl AccessTokens {
    /// Load the keys (or draw one).
    ///
    /// # Errors
    /// When the key directory is unusable.
    pub fn new(settings: TokenSettings) -> Result<Self, String> {
        let keys = match &settings.keys_dir {
            Some(dir) => keys::load_dir(dir)?,
            None => vec![SigningKey::generate()?],
        };
        Ok(Self { settings, keys: RwLock::new(Arc::new(keys)) })
    }

    fn current(&self) -> Arc<Vec<SigningKey>> {
        Arc::clone(&self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Read the key directory again. A directory that became unusable keeps the keys in use
    /// (and says so): a typo during a rotation must not stop every token.
    pub fn reload(&self) {
        let Some(dir) = &self.settings.keys_dir else { return };
        match keys::load_dir(dir) {
            Ok(fresh) => {
                let before: Vec<String> = self.current().iter().map(|k| k.kid.clone()).collect();
                let after: Vec<String> = fresh.iter().map(|k| k.kid.clone()).collect();
                if before != after {
                    tracing::info!(keys = ?after, "access-token keys reloaded");
                    *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(fresh);
                }
            }
            Err(error) => tracing::warn!(%error, "access-token keys not reloaded; the current ones stay"),
        }
    }

    /// Mint a token for the session of `auth`.
    ///
    /// # Errors
    /// When the session ends within a second, or signing fails.
    pub fn mint(&self, auth: &Authenticated, now: Timestamp) -> Result<AccessToken, MintError> {
        let session = auth.session();
        let iat = now.millis() / 1000;
        let ttl = i64::try_from(self.settings.ttl.as_secs()).unwrap_or(i64::MAX);
        let exp = iat.saturating_add(ttl).min(session.deadline().millis() / 1000);
        if exp <= iat {
            return Err(MintError::SessionEnding);
        }
        let keys = self.current();
        let key = keys.last().ok_or_else(|| MintError::Signing("no key".to_owned()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let claims = Claims {
            iss: &self.settings.issuer,
            aud: &self.settings.audience,
            sub: &session.user_id,
            name: &session.username,
            roles: auth.roles(),
            sid: session.session_id.as_str(),
            iat,
            nbf: iat,
            exp,
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&key.pkcs8))
            .map_err(|e| MintError::Signing(e.to_string()))?;
        Ok(AccessToken { token, expires_in: u64::try_from(exp - iat).unwrap_or(0) })
    }

    /// The claims of `token` if one of the current keys signed it for our issuer and audience
    /// and it has not expired (no leeway: a token is not honoured past its `exp`).
    #[must_use]
    pub fn verify(&self, token: &str) -> Option<VerifiedClaims> {
        let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
        let keys = self.current();
        let key = keys.iter().find(|key| key.kid == kid)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.set_audience(&[&self.settings.audience]);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "aud", "iss", "sub"]);
        jsonwebtoken::decode::<VerifiedClaims>(token, &DecodingKey::from_ed_der(&key.public), &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// The published key set (RFC 7517).
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self.current().iter().rev().map(SigningKey::jwk).collect();
        serde_json::json!({ "keys": keys })
    }
}
