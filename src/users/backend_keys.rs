//! API keys of trusted backends (the services that call introspection and, later, the backend
//! session API).
//!
//! The configuration holds only each key's SHA-256 with a name (`name:hex`, comma-separated in
//! `SESSIOND_BACKEND_KEYS`), so a leaked configuration leaks no key. A presented key is hashed
//! and compared with every entry in constant time, so the timing tells neither which entry
//! nor how much of a hash matched. `sessiond admin api-key new NAME` draws a key and prints the
//! entry.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Prefix of every key, so a key found in a log or a repository is recognisable.
const PREFIX: &str = "sdk_";

/// One configured key: its name and SHA-256.
#[derive(Clone)]
pub struct BackendKey {
    name: String,
    hash: [u8; 32],
}

impl fmt::Debug for BackendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendKey").field("name", &self.name).finish_non_exhaustive()
    }
}

impl std::str::FromStr for BackendKey {
    type Err = String;

    /// `name:sha256hex`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (name, hex) = text.trim().split_once(':').ok_or("expected name:sha256hex")?;
        let name_ok =
            (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok {
            return Err("a key name is 1 to 64 characters of A-Z a-z 0-9 . _ -".to_owned());
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the hash is 64 hexadecimal digits (SHA-256)".to_owned());
        }
        let mut hash = [0u8; 32];
        for (n, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * n..2 * n + 2], 16).map_err(|_| "not hexadecimal".to_owned())?;
        }
        Ok(Self { name: name.to_owned(), hash })
    }
}

/// The configured keys.
#[derive(Clone, Debug, Default)]
pub struct BackendKeys {
    keys: Vec<BackendKey>,
}

/// A freshly drawn key: the secret (shown once) and its configuration entry.
pub struct NewKey {
    /// The key to give the backend.
    pub key: String,
    /// `name:sha256hex`, for `SESSIOND_BACKEND_KEYS`.
    pub entry: String,
}

fn digest(key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(key.as_bytes()));
    out
}

impl BackendKeys {
    /// The keys of the configuration.
    #[must_use]
    pub fn new(keys: Vec<BackendKey>) -> Self {
        Self { keys }
    }

    /// Whether any key is configured (without one, the backend routes answer 401 to all).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The name of the key `presented`, if it is one of ours. Every entry is compared, in
    /// constant time each.
    #[must_use]
    pub fn identify(&self, presented: &str) -> Option<&str> {
        let hash = digest(presented.trim());
        let mut found = None;
        for key in &self.keys {
            let same = key.hash.iter().zip(hash.iter()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0;
            if same && found.is_none() {
                found = Some(key.name.as_str());
            }
        }
        found
    }

    /// Draw a key for `name`.
    ///
    /// # Errors
    /// When the name is invalid or the random source fails.
    pub fn generate(name: &str) -> Result<NewKey, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
        let key = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let hex: String = digest(&key).iter().map(|b| format!("{b:02x}")).collect();
        let entry = format!("{name}:{hex}");
        entry.parse::<BackendKey>()?;
        Ok(NewKey { key, entry })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawn_key_is_known_by_its_entry_and_its_neighbour_is_not() {
        let a = BackendKeys::generate("billing").expect("a");
        let b = BackendKeys::generate("search").expect("b");
        let keys = BackendKeys::new(vec![a.entry.parse().expect("entry a"), b.entry.parse().expect("entry b")]);
        assert_eq!(keys.identify(&a.key), Some("billing"));
        assert_eq!(keys.identify(&b.key), Some("search"));
        let mut near = a.key.clone();
        near.push('x');
        assert_eq!(keys.identify(&near), None);
        assert_eq!(keys.identify(""), None);
        assert!(a.key.starts_with("sdk_") && !a.entry.contains(&a.key));
        assert!("bad".parse::<BackendKey>().is_err());
        assert!("name:abc".parse::<BackendKey>().is_err());
        assert!(format!("{:?}", keys).contains("billing"));
    }
}
