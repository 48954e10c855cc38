//! Session rules: what a token is, how long a session lives, when its expiry slides, when it
//! rotates, and how many a user may hold. The store only executes these decisions; it never
//! makes them, so the Redis and in-memory backends cannot drift apart on policy.

mod data;
pub mod device;
mod policy;
pub(crate) mod time;
mod token;

pub use data::SessionData;
pub use policy::{SessionPolicy, Slide};
pub use time::Timestamp;
pub use token::{SessionId, SessionToken, Shard, TokenHash};
