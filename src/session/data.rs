//! What a trusted backend stores with a session it creates: a small JSON object that every
//! validation hands back (profile, forward auth, introspection), so the services behind
//! sessiond learn the tenant, the upstream identity provider or whatever they need without a
//! lookup of their own.
//!
//! Bounded, because it rides in the one value a validation reads: a big object would make
//! every validation of that session pay for it, in Redis memory and on the wire.

use std::sync::Arc;

/// A JSON object as compact text, at most [`SessionData::MAX_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionData(Arc<str>);

impl SessionData {
    /// The largest object, as compact JSON text.
    pub const MAX_BYTES: usize = 4096;

    /// Accept a JSON object whose compact text is at most [`Self::MAX_BYTES`].
    ///
    /// # Errors
    /// A sentence for a 422 response: not an object, or too large.
    pub fn parse(value: &serde_json::Value) -> Result<Self, String> {
        if !value.is_object() {
            return Err("must be a JSON object".to_owned());
        }
        let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
        if text.len() > Self::MAX_BYTES {
            return Err(format!("must be at most {} bytes as compact JSON (is {})", Self::MAX_BYTES, text.len()));
        }
        Ok(Self(text.into()))
    }

    /// The compact JSON text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared text, as a session record keeps it.
    #[must_use]
    pub fn into_shared(self) -> Arc<str> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_objects_up_to_the_limit_are_accepted() {
        assert_eq!(SessionData::parse(&json!({"a": 1})).expect("object").as_str(), r#"{"a":1}"#);
        for value in [json!([1]), json!("s"), json!(1), json!(null), json!(true)] {
            assert!(SessionData::parse(&value).is_err(), "{value}");
        }
        // `{"k":"…"}` is 8 bytes around the string.
        let fits = json!({ "k": "x".repeat(SessionData::MAX_BYTES - 8) });
        assert_eq!(SessionData::parse(&fits).expect("fits").as_str().len(), SessionData::MAX_BYTES);
        let over = json!({ "k": "x".repeat(SessionData::MAX_BYTES - 7) });
        assert!(SessionData::parse(&over).is_err());
    }

    #[test]
    fn control_characters_are_escaped_in_the_stored_text() {
        let data = SessionData::parse(&json!({"s": "a\u{1f}b\nc"})).expect("object");
        assert!(!data.as_str().chars().any(char::is_control), "{}", data.as_str());
    }
}
