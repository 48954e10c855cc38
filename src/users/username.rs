//! Usernames, validated once at the edge.

use std::fmt;

use crate::session::Shard;

/// A username as the user spelled it: 3–64 characters of `[A-Za-z0-9._@-]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Validate a username.
    ///
    /// # Errors
    /// A sentence saying what is wrong, suitable for a 422 response.
    pub fn parse(text: &str) -> Result<Self, String> {
        let len = text.chars().count();
        if !(3..=64).contains(&len) {
            return Err("must be 3 to 64 characters long".to_owned());
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b)) {
            return Err("may contain only letters, digits and . _ @ -".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    /// The case-insensitive identity of this username.
    #[must_use]
    pub fn key(&self) -> UserKey {
        UserKey(self.0.to_ascii_lowercase())
    }

    /// The username as spelled.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Username").field(&self.0).finish()
    }
}

/// Starts a subject's key: not in the username alphabet.
const SUBJECT_MARK: char = '~';
/// A SHA-256 in base64url, unpadded.
const SUBJECT_DIGEST_LEN: usize = 43;

/// The normalised (lower-case) username: the store's identity for a user. Its characters
/// never include `{`, `}` or `:`, so it is safe inside a Redis key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey(String);

impl UserKey {
    /// Rebuild from a value the store wrote.
    #[must_use]
    pub fn from_stored(text: &str) -> Option<Self> {
        if let Some(digest) = text.strip_prefix(SUBJECT_MARK) {
            return (digest.len() == SUBJECT_DIGEST_LEN
                && digest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .then(|| Self(text.to_owned()));
        }
        Username::parse(text).ok().map(|name| name.key())
    }

    /// The key of an externally authenticated subject: a mark no username can hold, then the
    /// subject's SHA-256 in base64url. So the two namespaces never meet, and an
    /// attacker-chosen subject is never stored inside a key name.
    pub(super) fn of_subject(subject: &str) -> Self {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(subject.as_bytes());
        let mut key = String::with_capacity(1 + SUBJECT_DIGEST_LEN);
        key.push(SUBJECT_MARK);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(digest, &mut key);
        Self(key)
    }

    /// Whether this is an external subject's key (no password, created by a backend).
    #[must_use]
    pub fn is_subject(&self) -> bool {
        self.0.starts_with(SUBJECT_MARK)
    }

    /// The key as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shard holding this user and all their sessions.
    #[must_use]
    pub fn shard(&self) -> Shard {
        Shard::of_user(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet_and_lengths() {
        for good in ["abc", "Alice.Smith@example-1_x", &"a".repeat(64)] {
            assert!(Username::parse(good).is_ok(), "{good}");
        }
        for bad in ["ab", &"a".repeat(65), "with space", "semi;colon", "tag{x}", "ünï", ""] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_case_insensitive() {
        let a = Username::parse("Alice").expect("valid");
        let b = Username::parse("aLiCe").expect("valid");
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().shard(), b.key().shard());
        assert_eq!(a.as_str(), "Alice");
    }
}
