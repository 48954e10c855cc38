//! Black-box tests: real HTTP on an ephemeral port, a real `redis-server` on a free port.

mod helpers;

mod access_tokens;
mod account;
mod admin_users;
mod audit;
mod auth;
mod bad_input;
mod browser_rules;
mod cache;
mod cluster;
mod concurrency;
mod device_lockout;
mod expiry;
mod flush;
mod forward_auth;
mod lifecycle;
mod metrics;
mod openapi;
mod outage;
mod protection;
mod sentinel;
mod sessions;
mod store_contract;
mod telemetry;
mod topology;
