//! The `User-Agent` device labeller: whatever the header holds, the label is absent or 1 to
//! `MAX_DEVICE_LABEL` bytes with no control character (so never the separator of the Redis
//! session value), and the same header always gives the same label.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sessiond::session::device::{label, MAX_DEVICE_LABEL};

use crate::common;

const ALPHABET: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/605.1 \
                        Version/17 Firefox/ Edg/ OPR/ CriOS/ FxiOS/ SamsungBrowser/ iPhone iPad Android Linux CrOS \
                        Macintosh Mac OS X curl/8 \u{1f}\u{0}\t\u{85}\u{200b}é漢";

pub fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    // A header value is bytes; the service reads it only when it is text.
    let Ok(user_agent) = std::str::from_utf8(bytes) else { return Ok(()) };
    let first = label(user_agent);
    prop_assert_eq!(&first, &label(user_agent), "the label is a function of the header");
    if let Some(text) = first {
        prop_assert!(!text.is_empty() && text.len() <= MAX_DEVICE_LABEL, "label of {} bytes: {:?}", text.len(), text);
        prop_assert!(!text.chars().any(char::is_control), "control character in {:?}", text);
    }
    Ok(())
}

fn seeds() -> Vec<Vec<u8>> {
    [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36 EdgA/131.0",
        "curl/8.5.0",
        "k6/0.54.0 (https://k6.io/)",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

#[test]
fn corpus() {
    common::run_corpus("device", check);
}

#[test]
fn random() {
    common::run("device", common::cases(4_000), common::inputs(seeds(), ALPHABET, 300), |input| check(&input));
}
