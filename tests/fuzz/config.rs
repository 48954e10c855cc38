//! The configuration parser, from arbitrary `SESSIOND_*` settings (every variable is also a
//! flag, parsed by the same value parser; the settings are passed as flags, so the test never
//! touches the process environment). Whatever the settings: no panic; an accepted
//! configuration satisfies the documented cross-checks; a refusal is one line that never
//! quotes a value that may be secret.

use clap::CommandFactory as _;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sessiond::Config;

use crate::common;

/// Variables whose values may carry a secret.
const SECRET: &[&str] = &["SESSIOND_REDIS_URL", "SESSIOND_REDIS_PASSWORD", "SESSIOND_DEVICE_TOKEN_KEY"];

/// Every variable and its flag.
fn variables() -> Vec<(String, String)> {
    Config::command()
        .get_arguments()
        .filter_map(|arg| Some((arg.get_env()?.to_string_lossy().into_owned(), arg.get_long()?.to_owned())))
        .collect()
}

/// The arguments for settings given as `NAME=value` pairs; a name that is no variable becomes
/// a flag of that name.
fn args_of(settings: &[(String, String)]) -> Vec<String> {
    let flags = variables();
    let mut args = vec!["sessiond".to_owned()];
    for (name, value) in settings {
        let long = flags.iter().find(|(env, _)| env == name).map_or_else(|| name.to_lowercase(), |(_, l)| l.clone());
        args.push(format!("--{long}={value}"));
    }
    args
}

pub fn check_settings(settings: &[(String, String)]) -> Result<(), TestCaseError> {
    let args = args_of(settings);
    match Config::try_from_args(&args) {
        Ok(config) => {
            prop_assert!(config.idle_timeout <= config.absolute_timeout, "idle beyond absolute in {:?}", args);
            prop_assert!(!config.idle_timeout.is_zero() && !config.request_timeout.is_zero());
            prop_assert!(config.device_token_key.as_ref().is_none_or(|k| k.chars().count() >= 32));
            prop_assert!(!config.cookie_name.is_empty() && config.cookie_name.len() <= 64);
        }
        Err(exit) => {
            let message = exit.message.trim_end();
            if message.contains("Usage:") || message.starts_with("sessiond ") {
                // --help or --version: printed as clap renders it.
                return Ok(());
            }
            prop_assert!(!message.contains('\n'), "a refusal of several lines: {:?}", message);
            prop_assert!(message.starts_with("error: "), "{:?}", message);
            // A secret is quoted when the message holds it, but not when the same settings
            // carry other secrets of the same length instead.
            let replaced: Vec<(String, String)> = settings
                .iter()
                .map(|(name, value)| {
                    let value = if SECRET.contains(&name.as_str()) { "Z".repeat(value.len()) } else { value.clone() };
                    (name.clone(), value)
                })
                .collect();
            let other = match Config::try_from_args(args_of(&replaced)) {
                Ok(_) => String::new(),
                Err(exit) => exit.message,
            };
            for (name, value) in settings {
                if SECRET.contains(&name.as_str()) && value.len() >= 6 && !name_like(value) {
                    prop_assert!(
                        !message.contains(value.as_str()) || other.contains(value.as_str()),
                        "{} quoted in {:?}",
                        name,
                        message
                    );
                }
            }
        }
    }
    Ok(())
}

/// A value that is itself a flag or a variable name may appear in a message as that name.
fn name_like(value: &str) -> bool {
    value.starts_with('-') || value.to_ascii_uppercase().starts_with("SESSIOND_")
}

/// A corpus file: `NAME=value` lines.
pub fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    let settings: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    check_settings(&settings)
}

fn value() -> BoxedStrategy<String> {
    let seeds: Vec<Vec<u8>> = [
        "30m",
        "12h",
        "250ms",
        "0s",
        "1",
        "0",
        "65535",
        "4294967296",
        "-1",
        "1.5s",
        "20/s burst 40",
        "off",
        "0/s",
        "redis://:hunter2hunter2@127.0.0.1:6379/0",
        "redis-cluster://a:1?node=b:2",
        "https://app.example.com",
        "10.0.0.0/8",
        "fd00::/8",
        "127.0.0.1:8080",
        "[::1]:0",
        "sid",
        "__Host-sid",
        "json",
        "pretty",
        "lax",
        "strict",
        "true",
        "false",
        "backend:0000000000000000000000000000000000000000000000000000000000000000",
        "an-unguessable-device-token-key-0123456789",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    prop_oneof![
        3 => common::mutated(seeds).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => common::text_over("0123456789smhd/ ,.:-_=burst", 24),
        1 => any::<String>(),
    ]
    .boxed()
}

fn name() -> BoxedStrategy<String> {
    let names: Vec<String> = variables().into_iter().map(|(env, _)| env).collect();
    prop_oneof![
        8 => proptest::sample::select(names),
        1 => "[a-z-]{1,12}",
    ]
    .boxed()
}

fn settings() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((name(), value()), 0..6)
}

#[test]
fn corpus() {
    common::run_corpus("config", check);
}

#[test]
fn random() {
    common::run("config", common::cases(2_000), settings(), |s| check_settings(&s));
}
