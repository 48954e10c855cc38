//! Session credentials and handles.
//!
//! * [`SessionToken`] is the bearer secret: 256 bits from the OS CSPRNG, base64url without
//!   padding (43 characters). It is shown to the client once and never stored: the store keys
//!   sessions by the first 128 bits of its SHA-256 ([`TokenHash`]), so a dump of Redis logs
//!   nobody in. 128 bits keep the preimage out of reach and collisions among even billions of
//!   sessions negligible, and make every session key and index entry 21 bytes shorter than
//!   the full digest would (Redis memory is paid per session).
//! * [`SessionId`] is a separate random public handle, for listing and revoking. Knowing it
//!   never authenticates.
//! * [`Shard`] places a user's keys under one Redis Cluster hash tag. A session must live
//!   beside its user's index (so create/revoke/cap are single-slot atomic scripts), yet a
//!   validation knows only the token. So the token is *drawn* for its user's shard: candidates
//!   from the CSPRNG are hashed until the digest's top ten bits equal the user's shard (about a
//!   thousand SHA-256 computations, well under a millisecond). The token is still 256 uniformly
//!   random bits within that shard; an attacker learns only which of 1024 shards to aim at,
//!   which leaves 2^246 candidates.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Length of an encoded token: 32 bytes in unpadded base64url.
pub const TOKEN_LEN: usize = 43;
/// Length of an encoded session id: 16 bytes in unpadded base64url.
pub const SESSION_ID_LEN: usize = 22;

/// The bearer secret. Not `Display`, and its `Debug` is redacted. Kept inline (43 ASCII
/// bytes), so reading one from a request allocates nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken([u8; TOKEN_LEN]);

impl SessionToken {
    /// Accept exactly the canonical encoding of 32 bytes; anything else is not a token.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != TOKEN_LEN {
            return None;
        }
        let mut bytes = [0u8; 33];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(32) => Some(Self(text.as_bytes().try_into().ok()?)),
            _ => None,
        }
    }

    /// Draw a fresh token whose digest falls in `shard`.
    ///
    /// # Errors
    /// When the operating system's random source fails.
    pub fn generate_in(shard: Shard) -> Result<(Self, TokenHash), getrandom::Error> {
        const BATCH: usize = 64;
        let mut pool = [0u8; 32 * BATCH];
        let mut text = String::with_capacity(TOKEN_LEN);
        loop {
            getrandom::fill(&mut pool)?;
            for candidate in pool.chunks_exact(32) {
                text.clear();
                URL_SAFE_NO_PAD.encode_string(candidate, &mut text);
                let hash = TokenHash::of(&text);
                if hash.shard() == shard {
                    if let Ok(token) = text.as_bytes().try_into() {
                        return Ok((Self(token), hash));
                    }
                }
            }
        }
    }

    /// The digest under which the store knows this session.
    #[must_use]
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.expose())
    }

    /// The secret itself: only for the login response body and the `Set-Cookie` header.
    #[must_use]
    pub fn expose(&self) -> &str {
        // Only base64url characters are ever stored (checked by `parse`, written by `generate_in`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// The first 128 bits of a token's SHA-256: the store's key for a session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 16]);

impl TokenHash {
    fn of(token: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        Self(short)
    }

    /// Rebuild from the store's encoding.
    #[must_use]
    pub fn from_encoded(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 17];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(16) => {
                let mut digest = [0u8; 16];
                digest.copy_from_slice(&bytes[..16]);
                Some(Self(digest))
            }
            _ => None,
        }
    }

    /// A byte of the digest that, unlike its leading bits (the shard), is uniform even among
    /// one user's tokens: spreads digests over lock stripes.
    #[must_use]
    pub fn spread_byte(&self) -> u8 {
        self.0[15]
    }

    /// The shard this digest falls in.
    #[must_use]
    pub fn shard(&self) -> Shard {
        Shard::of_digest(&self.0)
    }

    /// Unpadded base64url (22 characters): shorter than hex in every key and index entry.
    #[must_use]
    pub fn encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// [`Self::encoded`], appended to `out`.
    pub fn encode_into(&self, out: &mut String) {
        URL_SAFE_NO_PAD.encode_string(self.0, out);
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoded = self.encoded();
        write!(f, "TokenHash({}…)", &encoded[..8])
    }
}

/// The public handle of a session.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh random id.
    ///
    /// # Errors
    /// When the operating system's random source fails.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accept exactly the canonical encoding of 16 bytes.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != SESSION_ID_LEN {
            return None;
        }
        let mut bytes = [0u8; 18];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(16) => Some(Self(text.to_owned())),
            _ => None,
        }
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One of [`Shard::COUNT`] hash-tag groups. A user and all their sessions share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard(u16);

impl Shard {
    /// Number of shards: enough tags to spread over hundreds of Cluster masters, few enough
    /// that drawing a token for a shard stays cheap and the active-session count is a
    /// bounded scan.
    pub const COUNT: u16 = 1024;

    fn of_digest(digest: &[u8]) -> Self {
        Self(u16::from_be_bytes([digest[0], digest[1]]) >> 6)
    }

    /// The shard of a normalised username.
    #[must_use]
    pub fn of_user(user_key: &str) -> Self {
        let digest: [u8; 32] =
            Sha256::new().chain_update(b"sessiond/user/").chain_update(user_key.as_bytes()).finalize().into();
        Self::of_digest(&digest)
    }

    /// Every shard.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..Self::COUNT).map(Self)
    }

    /// The shard number, `0..COUNT`.
    #[must_use]
    pub const fn index(self) -> u16 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_land_in_their_shard() {
        for user in ["alice", "bob", "carol"] {
            let shard = Shard::of_user(user);
            let (token, hash) = SessionToken::generate_in(shard).expect("os rng");
            assert_eq!(token.expose().len(), TOKEN_LEN);
            assert_eq!(SessionToken::parse(token.expose()), Some(token.clone()));
            assert_eq!(token.hash(), hash);
            assert_eq!(hash.shard(), shard);
            assert_eq!(TokenHash::from_encoded(&hash.encoded()), Some(hash));
        }
    }

    #[test]
    fn malformed_tokens_and_ids_are_rejected() {
        for bad in ["", "short", &"A".repeat(44), &"*".repeat(43), &"A".repeat(42)] {
            assert!(SessionToken::parse(bad).is_none(), "{bad:?}");
        }
        // 43 chars whose last symbol carries bits beyond 256: not canonical.
        assert!(SessionToken::parse(&format!("{}B", "A".repeat(42))).is_none());
        assert!(SessionId::parse("AAAAAAAAAAAAAAAAAAAAAA").is_some());
        assert!(SessionId::parse("AAAAAAAAAAAAAAAAAAAAAB").is_none());
    }

    #[test]
    fn debug_never_prints_the_token() {
        let (token, _) = SessionToken::generate_in(Shard::of_user("x")).expect("os rng");
        let printed = format!("{token:?}");
        assert!(!printed.contains(token.expose()));
        assert_eq!(printed, "SessionToken(<redacted>)");
    }

    #[test]
    fn shards_spread_users() {
        let shards: std::collections::HashSet<_> = (0..5000).map(|i| Shard::of_user(&format!("user{i}"))).collect();
        assert!(shards.len() > 900, "only {} shards used", shards.len());
        assert!(shards.iter().all(|s| s.index() < Shard::COUNT));
    }
}
