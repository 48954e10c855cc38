//! Users: who may log in, with which roles, and how their passwords are checked.
//!
//! Usernames are unique case-insensitively: the store keys a user by the lower-cased
//! [`UserKey`] and keeps the spelling the user chose for display. Passwords are hashed with
//! argon2id on the blocking pool, a bounded number at a time (see [`Passwords`]). A client that
//! logged in as a user before can prove it with a [`DeviceToken`], which keeps it an allowance of
//! its own against a targeted lockout.

mod backend_keys;
mod password;
mod role;
mod subject;
mod trusted_device;
mod username;

pub use backend_keys::{BackendKey, BackendKeys, NewKey};
pub use password::{HashError, Password, Passwords};
pub use role::Role;
pub use subject::Subject;
pub use trusted_device::{DeviceId, DeviceToken, DeviceTokens};
pub use username::{UserKey, Username};
