//! Subjects: users that a trusted backend authenticated itself (SSO, OAuth, its own user
//! table) and for whom it creates sessions through the backend API. sessiond holds no password
//! for them and never interprets the subject: it is the backend's opaque identifier, kept in a
//! namespace of its own (see [`UserKey`]), so a subject spelled like a username never reaches
//! that user's sessions.

use super::UserKey;

/// An opaque subject identifier: 1 to 255 bytes of UTF-8 without control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    /// The longest subject, in bytes.
    pub const MAX_BYTES: usize = 255;

    /// Validate a subject.
    ///
    /// # Errors
    /// A sentence saying what is wrong, for a 422 response.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > Self::MAX_BYTES {
            return Err(format!("must be 1 to {} bytes long", Self::MAX_BYTES));
        }
        if text.chars().any(char::is_control) {
            return Err("may not contain control characters".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    /// The store's identity for this subject.
    #[must_use]
    pub fn key(&self) -> UserKey {
        UserKey::of_subject(&self.0)
    }

    /// The subject as the backend gave it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_live_apart_from_usernames() {
        let subject = Subject::parse("alice").expect("subject");
        let key = subject.key();
        assert!(key.is_subject());
        assert_ne!(key, crate::users::Username::parse("alice").expect("name").key());
        assert_eq!(UserKey::from_stored(key.as_str()), Some(key.clone()), "the key survives the store");
        assert!(!key.as_str().contains(['{', '}', ':']), "safe inside a Redis key: {}", key.as_str());
        assert_ne!(Subject::parse("Alice").expect("subject").key(), key, "subjects are case-sensitive");
    }

    #[test]
    fn bounds_and_characters() {
        assert!(Subject::parse("").is_err());
        assert!(Subject::parse(&"x".repeat(255)).is_ok());
        assert!(Subject::parse(&"x".repeat(256)).is_err());
        assert!(Subject::parse(&"é".repeat(128)).is_err(), "bytes, not characters");
        assert!(Subject::parse("a\u{1f}b").is_err());
        assert!(Subject::parse("urn:idp:42|ü").is_ok());
        assert!(UserKey::from_stored("~short").is_none());
    }
}
