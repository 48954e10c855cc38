//! Users: who may log in, with which roles, and how their passwords are checked.
//!
//! Usernames are unique case-insensitively: the store keys a user by the lower-cased
//! [`UserKey`] and keeps the spelling the user chose for display. Passwords are hashed with
//! argon2id on the blocking pool, a bounded number at a time (see [`Passwords`]).

mod password;
mod role;
mod username;

pub use password::{HashError, Password, Passwords};
pub use role::Role;
pub use username::{UserKey, Username};
