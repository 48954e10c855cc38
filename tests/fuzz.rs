//! Fuzzed input on stable Rust: property-based harnesses (proptest) for every parser that reads
//! what a client or an operator sends. Each harness runs its committed corpus
//! (`tests/corpus/<target>/`, one input per file) and a quick random run in every `cargo
//! test`; `scripts/fuzz.sh` runs them with 100 000 inputs each (`FUZZ_CASES`). A failure is
//! shrunk to a minimal input and printed with the seed that reproduces the run (`FUZZ_SEED`).
//!
//! | target | entry point | invariant |
//! |---|---|---|
//! | `token` | `SessionToken::parse`, `SessionId::parse`, `TokenHash::from_encoded` | exactly the canonical encodings; re-encodes to the same text |
//! | `cookie` | `CookieSettings::session_in`, `device_in` | the session cookie is read only when named once; an issued cookie reads back |
//! | `client_ip` | `TrustedProxies::client_ip`, `Cidr::from_str` | the peer, or an address the headers name when the peer is trusted |
//! | `device` | `session::device::label` | absent, or 1–32 bytes without control characters |
//! | `config` | `Config::try_from_args` | accepted: cross-checks hold; refused: one line, no secret quoted |
//! | `json` | the HTTP router (register, login, password, delete, introspect) | never 5xx; 4xx is problem+json; no password echoed |

#[path = "api/helpers.rs"]
mod helpers;

#[path = "fuzz/common.rs"]
mod common;

#[path = "fuzz/client_ip.rs"]
mod client_ip;
#[path = "fuzz/config.rs"]
mod config;
#[path = "fuzz/cookie.rs"]
mod cookie;
#[path = "fuzz/device.rs"]
mod device;
#[path = "fuzz/json.rs"]
mod json;
#[path = "fuzz/token.rs"]
mod token;
