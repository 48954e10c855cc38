//! Roles: short lower-case names; `user` is every account's default, `admin` unlocks the admin API.

/// A role name: 1–32 characters of `[a-z0-9_.-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Role(String);

impl Role {
    /// The role every new account has.
    pub const DEFAULT: &'static str = "user";
    /// The role the admin API requires.
    pub const ADMIN: &'static str = "admin";

    /// Validate a role name.
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = (1..=32).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err("a role is 1 to 32 characters of a-z 0-9 _ . -".to_owned())
        }
    }

    /// The role name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
