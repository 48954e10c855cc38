//! Black-box tests: real HTTP on an ephemeral port, a real `redis-server` on a free port.

mod helpers;

mod auth;
mod bad_input;
mod cache;
mod cluster;
mod concurrency;
mod expiry;
mod lifecycle;
mod metrics;
mod outage;
mod protection;
mod sentinel;
mod sessions;
mod store_contract;
mod telemetry;
mod topology;
