//! The device a session was opened from, as a person reads it in a session list: "Chrome 131
//! on Windows", "Safari 17 on iOS", "curl/8.5.0".
//!
//! Why not keep the `User-Agent` itself: a browser's is 100–300 bytes, and a cut-down prefix
//! ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (K…") names neither the
//! browser nor its version. The label says what a user needs to recognise (or disown) a
//! session, and it is short enough that a session with one stays in the same Redis allocation
//! as a session without (see `docs/scaling.md`, Redis memory).

use std::fmt::Write as _;

/// Longest label kept, in bytes.
pub const MAX_DEVICE_LABEL: usize = 32;

/// Browsers by the product token that names them, most specific first: Edge, Opera and Samsung
/// Internet also say "Chrome/", Chrome also says "Safari/".
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
];

/// Operating systems by a marker in the comment, most specific first (Android says "Linux",
/// iOS says "like Mac OS X").
const SYSTEMS: &[(&str, &str)] = &[
    ("Windows", "Windows"),
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("CrOS", "ChromeOS"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
];

/// The label for a `User-Agent` header, or `None` when it holds nothing printable.
#[must_use]
pub fn label(user_agent: &str) -> Option<String> {
    let browser = browser(user_agent);
    let system = SYSTEMS.iter().find(|(marker, _)| user_agent.contains(marker)).map(|(_, name)| *name);
    let mut out = String::new();
    match (browser, system) {
        (Some((name, major)), system) if user_agent.starts_with("Mozilla/") => {
            out.push_str(name);
            if !major.is_empty() {
                let _ = write!(out, " {major}");
            }
            if let Some(system) = system {
                let _ = write!(out, " on {system}");
            }
        }
        // A program (curl, an SDK, k6) names itself in its first product token ("name/version").
        _ => {
            let mut tokens = user_agent.split_whitespace();
            let product = tokens.clone().find(|t| t.contains('/')).or_else(|| tokens.next()).unwrap_or("");
            out.extend(product.chars().filter(|c| !c.is_control()));
        }
    }
    cut(&mut out, MAX_DEVICE_LABEL);
    (!out.is_empty()).then_some(out)
}

/// The browser's name and major version.
fn browser(user_agent: &str) -> Option<(&'static str, &str)> {
    for (token, name) in BROWSERS {
        if let Some(at) = user_agent.find(token) {
            return Some((name, major(&user_agent[at + token.len()..])));
        }
    }
    // Safari gives its version in "Version/17.1 … Safari/605.1.15".
    if user_agent.contains("Safari/") {
        let version = user_agent.find("Version/").map_or("", |at| major(&user_agent[at + "Version/".len()..]));
        return Some(("Safari", version));
    }
    None
}

/// The leading digits of a version ("131" of "131.0.6778.86").
fn major(version: &str) -> &str {
    let end = version.find(|c: char| !c.is_ascii_digit()).unwrap_or(version.len());
    &version[..end.min(6)]
}

fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_are_named_with_major_version_and_system() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome 131 on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
                "Edge 131 on Windows",
            ),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox 133 on Linux"),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                "Safari 17 on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
                "Safari 17 on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
                "Chrome 131 on Android",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
                "Samsung Internet 26 on Android",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
                "Opera 115 on ChromeOS",
            ),
        ];
        for (ua, expected) in cases {
            assert_eq!(label(ua).as_deref(), Some(expected), "{ua}");
        }
    }

    #[test]
    fn programs_keep_their_first_product_token() {
        assert_eq!(label("curl/8.5.0").as_deref(), Some("curl/8.5.0"));
        assert_eq!(label("Grafana k6/0.54.0 (https://k6.io/)").as_deref(), Some("k6/0.54.0"));
        assert_eq!(label("some-client").as_deref(), Some("some-client"));
        assert_eq!(label("agent/3").as_deref(), Some("agent/3"));
        assert_eq!(label("python-requests/2.31.0").as_deref(), Some("python-requests/2.31.0"));
    }

    #[test]
    fn labels_are_bounded_and_never_empty() {
        assert_eq!(label("   "), None);
        assert_eq!(label(""), None);
        let long = "x".repeat(500);
        assert_eq!(label(&long).map(|l| l.len()), Some(MAX_DEVICE_LABEL));
        let wide = "é".repeat(100);
        let cut = label(&wide).unwrap_or_default();
        assert!(cut.len() <= MAX_DEVICE_LABEL && cut.chars().all(|c| c == 'é'), "{cut}");
        // A browser with no system marker still gets a label.
        assert_eq!(label("Mozilla/5.0 Firefox/120.0").as_deref(), Some("Firefox 120"));
    }
}
