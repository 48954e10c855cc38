//! The signing keys of access tokens: Ed25519, loaded from a directory of PKCS#8 PEM files
//! (the newest by file name signs, every one is published) or drawn at start-up.
//!
//! Rotation needs no downtime: write a new key into the directory (`sessiond admin
//! jwt-keygen DIR` names it after the current time, so it sorts last and signs from the next
//! reload on), keep the old one until the tokens it signed have expired (their lifetime plus
//! the JWKS cache time), then delete it. The directory is read again every
//! [`super::RELOAD_INTERVAL`] and on `SIGHUP`.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use sha2::{Digest as _, Sha256};

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// One signing key.
pub(crate) struct SigningKey {
    /// Key id: the first 16 bytes of the public key's SHA-256, base64url. Stable across
    /// restarts and instances, so every instance names a shared key alike.
    pub(crate) kid: String,
    /// PKCS#8 DER, what the JWS library signs with.
    pub(crate) pkcs8: Vec<u8>,
    /// The raw 32-byte public key (the JWK's `x`).
    pub(crate) public: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_pkcs8(pkcs8: Vec<u8>) -> Result<Self, String> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
        let public = pair.public_key().as_ref().to_vec();
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&public)[..16]);
        Ok(Self { kid, pkcs8, public })
    }

    /// A new key from the system's random source.
    ///
    /// # Errors
    /// When the random source fails.
    pub(crate) fn generate() -> Result<Self, String> {
        let rng = ring::rand::SystemRandom::new();
        let document = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| format!("generating a key: {e}"))?;
        Self::from_pkcs8(document.as_ref().to_vec())
    }

    /// The key as a PEM file's text.
    #[must_use]
    pub(crate) fn to_pem(&self) -> String {
        let body = STANDARD.encode(&self.pkcs8);
        let mut pem = String::from(PEM_BEGIN);
        pem.push('\n');
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        pem
    }

    fn from_pem(text: &str) -> Result<Self, String> {
        let start = text.find(PEM_BEGIN).ok_or("no BEGIN PRIVATE KEY line")? + PEM_BEGIN.len();
        let end = text[start..].find(PEM_END).ok_or("no END PRIVATE KEY line")? + start;
        let body: String = text[start..end].chars().filter(|c| !c.is_whitespace()).collect();
        let der = STANDARD.decode(body).map_err(|e| format!("not base64: {e}"))?;
        Self::from_pkcs8(der)
    }

    /// The public half as a JWK (RFC 8037).
    #[must_use]
    pub(crate) fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(&self.public),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }
}

/// Every `*.pem` file of `dir`, in name order (the last one signs).
///
/// # Errors
/// When the directory cannot be read, a file is not an Ed25519 key, or there is none.
pub(crate) fn load_dir(dir: &Path) -> Result<Vec<SigningKey>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "pem"))
        .collect();
    paths.sort();
    let mut keys = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        keys.push(SigningKey::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    if keys.is_empty() {
        return Err(format!("{}: no *.pem key (write one with `sessiond admin jwt-keygen DIR`)", dir.display()));
    }
    Ok(keys)
}

/// The name prefix of a key written at `millis`: the UTC time to the millisecond, so names
/// sort by age (`20261206T222101642Z`).
fn stamp(millis: i64) -> String {
    crate::session::Timestamp::from_millis(millis).to_rfc3339().replace([':', '-', '.'], "")
}

/// Write a new key into `dir`, named so that it sorts after every earlier one (even one
/// written in the same millisecond, or with a clock that went back). Returns its path.
///
/// # Errors
/// When the directory cannot be written.
pub fn generate_into(dir: &Path) -> Result<std::path::PathBuf, String> {
    let key = SigningKey::generate()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let newest = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".pem"))
        .max();
    let mut millis = crate::session::Timestamp::now().millis();
    while newest.as_deref().is_some_and(|newest| newest >= stamp(millis).as_str()) {
        millis += 1;
    }
    let path = dir.join(format!("{}-{}.pem", stamp(millis), key.kid));
    write_private(&path, &key.to_pem()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_pem_and_keeps_its_id() {
        let key = SigningKey::generate().expect("key");
        let again = SigningKey::from_pem(&key.to_pem()).expect("pem");
        assert_eq!(again.kid, key.kid);
        assert_eq!(again.public, key.public);
        assert_eq!(key.public.len(), 32);
        assert!(SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
    }

    #[test]
    fn keys_load_in_name_order_and_an_empty_directory_is_an_error() {
        let dir = std::env::temp_dir().join(format!("sessiond-keys-{}", uuid::Uuid::new_v4()));
        assert!(load_dir(&dir).is_err(), "missing directory");
        std::fs::create_dir_all(&dir).expect("dir");
        assert!(load_dir(&dir).is_err(), "no key");
        let written: Vec<_> = (0..5).map(|_| generate_into(&dir).expect("key")).collect();
        assert!(written.windows(2).all(|w| w[1] > w[0]), "each new key sorts last, even within a millisecond");
        let keys = load_dir(&dir).expect("load");
        assert_eq!(keys.len(), 5);
        assert!(written[4].to_string_lossy().contains(&keys[4].kid), "the newest is last");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
