//! The `Cookie` header parser: the session cookie is found exactly when one pair names it,
//! refused when either spelling (`sid`, `__Host-sid`) appears more than once, and a cookie the
//! service issued reads back as the token it carries.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sessiond::config::SameSite;
use sessiond::http::{CookieSettings, Presented};
use sessiond::session::{SessionToken, Shard};

use crate::common;

const ALPHABET: &str = "sid__Host-sessiond_device=; \"\t,abcXYZ019-_.%\u{0}é";

/// What the header says, by the documented rule, read independently of the parser: every
/// `name=value` pair of every header, trimmed, values unquoted.
fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                out.push((name.trim().to_owned(), value.trim().trim_matches('"').to_owned()));
            }
        }
    }
    out
}

fn headers_of(bytes: &[u8]) -> HeaderMap {
    // One header per line.
    let mut headers = HeaderMap::new();
    for line in bytes.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(header::COOKIE, value);
        }
    }
    headers
}

pub fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let headers = headers_of(bytes);
    let all = pairs(&headers);
    for secure in [true, false] {
        let settings = CookieSettings::new("sid", secure, SameSite::Lax, Duration::from_secs(86_400));
        let named: Vec<&(String, String)> = all.iter().filter(|(n, _)| n == "sid" || n == "__Host-sid").collect();
        match settings.session_in(&headers) {
            Presented::Several => prop_assert!(named.len() > 1, "refused a single session cookie: {:?}", all),
            Presented::One(value) => {
                prop_assert_eq!(named.len(), 1, "read one of several session cookies: {:?}", all);
                prop_assert_eq!(&named[0].0, settings.name(), "read the cookie of the other spelling");
                prop_assert_eq!(value, named[0].1.as_str());
            }
            Presented::None => prop_assert!(
                named.is_empty() || (named.len() == 1 && named[0].0 != settings.name()),
                "missed the session cookie in {:?}",
                all
            ),
        }
        let device_name = if secure { "__Host-sessiond_device" } else { "sessiond_device" };
        let device = all.iter().find(|(n, _)| n == device_name).map(|(_, v)| v.as_str());
        prop_assert_eq!(settings.device_in(&headers), device);
    }
    Ok(())
}

/// A cookie the service sets, sent back as a browser does (`name=value`, among other cookies),
/// reads as the token it carries.
fn round_trip(
    token: &SessionToken,
    before: &[(String, String)],
    after: &[(String, String)],
) -> Result<(), TestCaseError> {
    for secure in [true, false] {
        let settings = CookieSettings::new("sid", secure, SameSite::Strict, Duration::from_secs(60));
        let issued = settings.issue(token).expect("a token is a valid header value");
        let text = issued.to_str().expect("ascii");
        let pair = text.split(';').next().unwrap_or_default().to_owned();
        let others = |list: &[(String, String)]| list.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>();
        let all: Vec<String> = others(before).into_iter().chain([pair]).chain(others(after)).collect();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&all.join("; ")).expect("printable"));
        match settings.session_in(&headers) {
            Presented::One(value) => prop_assert_eq!(value, token.expose()),
            _ => return Err(TestCaseError::fail(format!("the issued cookie was not read back from {headers:?}"))),
        }
    }
    Ok(())
}

/// Another cookie: any RFC 6265 name but the session cookie's, any value.
fn other_cookie() -> impl Strategy<Value = (String, String)> {
    ("[a-zA-Z0-9_.-]{1,12}", "[a-zA-Z0-9_=\"-]{0,20}")
        .prop_filter("not the session cookie", |(name, _)| name != "sid" && name != "__Host-sid")
}

fn seeds() -> Vec<Vec<u8>> {
    [
        "sid=T4W0s6EIET4uPe4U-pZ-2hnG9KJU-8YHwbmTQxHVNSs",
        "__Host-sid=T4W0s6EIET4uPe4U-pZ-2hnG9KJU-8YHwbmTQxHVNSs; theme=dark",
        "a=1; sid=\"abc\"; b=2",
        "sid=x\n__Host-sid=y",
        "__Host-sessiond_device=dev; sessiond_device=dev2",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

#[test]
fn corpus() {
    common::run_corpus("cookie", check);
}

#[test]
fn random() {
    common::run("cookie", common::cases(4_000), common::inputs(seeds(), ALPHABET, 200), |input| check(&input));
}

#[test]
fn issued_cookies_read_back() {
    let tokens: Vec<SessionToken> =
        (0..4).map(|n| SessionToken::generate_in(Shard::of_user(&format!("user{n}"))).expect("rng").0).collect();
    let cookies = || proptest::collection::vec(other_cookie(), 0..4);
    common::run(
        "cookie round trip",
        common::cases(1_000),
        (0..tokens.len(), cookies(), cookies()),
        |(n, before, after)| round_trip(&tokens[n], &before, &after),
    );
}
