//! Black-box tests: real HTTP on an ephemeral port, a real `redis-server` on a free port.

mod helpers;

mod access_tokens;
mod account;
mod admin_users;
mod audit;
mod auth;
mod backend_api;
mod bad_input;
mod browser_rules;
mod cache;
mod clock_skew;
mod cluster;
mod concurrency;
mod crash_safety;
mod device_lockout;
mod expiry;
mod flush;
mod forward_auth;
mod lifecycle;
mod metrics;
mod model_check;
mod nginx;
mod openapi;
mod outage;
mod protection;
mod redis_memory;
mod rolling_restart;
mod sentinel;
mod sessions;
mod slow_clients;
mod store_contract;
mod telemetry;
mod topology;
