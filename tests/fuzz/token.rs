//! The session token, session id and token digest parsers: exactly the canonical unpadded
//! base64url encodings of 32, 16 and 16 bytes are accepted, and what is accepted re-encodes to
//! the same text.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sessiond::session::{SessionId, SessionToken, TokenHash};

use crate::common;

const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= .\u{0}é";

/// The canonical encoding of `len` bytes, decoded independently of the parser under test.
fn canonical(text: &str, len: usize) -> bool {
    URL_SAFE_NO_PAD.decode(text).is_ok_and(|bytes| bytes.len() == len && URL_SAFE_NO_PAD.encode(&bytes) == text)
}

pub fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.as_ref();
    match SessionToken::parse(text) {
        Some(token) => {
            prop_assert_eq!(token.expose(), text, "a parsed token re-encodes to its text");
            prop_assert!(canonical(text, 32), "accepted a non-canonical token {:?}", text);
        }
        None => prop_assert!(!canonical(text, 32), "refused a canonical token {:?}", text),
    }
    match SessionId::parse(text) {
        Some(id) => {
            prop_assert_eq!(id.as_str(), text);
            prop_assert!(canonical(text, 16), "accepted a non-canonical session id {:?}", text);
        }
        None => prop_assert!(!canonical(text, 16), "refused a canonical session id {:?}", text),
    }
    match TokenHash::from_encoded(text) {
        Some(hash) => prop_assert_eq!(hash.encoded(), text, "a digest re-encodes to its text"),
        None => prop_assert!(!canonical(text, 16), "refused a canonical digest {:?}", text),
    }
    Ok(())
}

/// Valid texts to edit: encodings of random bytes of the three lengths.
fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (n, len) in [32usize, 16, 32, 16, 33, 31].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + n * 101) as u8).collect();
        out.push(URL_SAFE_NO_PAD.encode(bytes).into_bytes());
    }
    out
}

/// Texts of the lengths that matter, over the base64url alphabet and its neighbours.
fn near_valid() -> BoxedStrategy<Vec<u8>> {
    let length = prop_oneof![Just(42usize), Just(43), Just(44), Just(21), Just(22), Just(23)];
    length
        .prop_flat_map(|len| proptest::collection::vec(proptest::sample::select(ALPHABET.as_bytes().to_vec()), len))
        .boxed()
}

#[test]
fn corpus() {
    common::run_corpus("token", check);
}

#[test]
fn random() {
    let strategy = prop_oneof![3 => common::inputs(seeds(), ALPHABET, 64), 1 => near_valid()];
    common::run("token", common::cases(4_000), strategy, |input| check(&input));
}
