//! Key names, in one place so that the schema in the module docs and the scripts' key
//! arguments cannot drift apart.

use crate::session::{SessionId, Shard, TokenHash};
use crate::users::UserKey;

/// Sorted sets per shard counting live sessions (`ACTIVE_SETS` in `lua/prelude.lua`; a test
/// checks that both agree).
pub(super) const ACTIVE_SETS: u8 = 4;

/// `sessiond:{xyz}:`: every key of one shard shares the hash tag, so one script may name them all.
pub(super) fn prefix(shard: Shard) -> String {
    format!("sessiond:{{{:03x}}}:", shard.index())
}

pub(super) fn user(user: &UserKey) -> String {
    format!("{}user:{}", prefix(user.shard()), user.as_str())
}

pub(super) fn user_sessions(user: &UserKey) -> String {
    format!("{}user-sessions:{}", prefix(user.shard()), user.as_str())
}

/// Built by hand rather than with `format!`: every validation that reaches Redis names one.
pub(super) fn session(hash: &TokenHash) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let shard = hash.shard().index();
    let mut key = String::with_capacity(42);
    key.push_str("sessiond:{");
    for shift in [8, 4, 0] {
        key.push(char::from(HEX[usize::from((shard >> shift) & 0xf)]));
    }
    key.push_str("}:sess:");
    hash.encode_into(&mut key);
    key
}

/// Who owns a backend session (by its id, so it can be ended by id alone): in the shard the id
/// hashes to, since the owner is what the lookup is for.
pub(super) fn session_owner(id: &SessionId) -> String {
    format!("{}owner:{}", prefix(Shard::of_user(id.as_str())), id.as_str())
}

/// The base name of the shard's active-session sets; the sets are `<base>:0` … (`ACTIVE_SETS`
/// in `lua/prelude.lua`), chosen by the session id's first byte.
pub(super) fn active(shard: Shard) -> String {
    format!("{}active", prefix(shard))
}

/// Every active-session set of the shard.
pub(super) fn active_sets(shard: Shard) -> impl Iterator<Item = String> {
    let base = active(shard);
    (0..ACTIVE_SETS).map(move |n| format!("{base}:{n}"))
}

/// The guard is keyed by a digest, so attacker-chosen usernames are never stored verbatim. A
/// hash: one field per allowance (clients without a device token, each device).
pub(super) fn login_guard(user: &UserKey) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(user.as_str().as_bytes());
    let short = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
    format!("{}login-guards:{short}", prefix(user.shard()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_session_key_is_the_prefix_and_the_digest() {
        for n in 0..200 {
            let (_, hash) =
                crate::session::SessionToken::generate_in(crate::session::Shard::of_user(&format!("user{n}")))
                    .expect("random");
            assert_eq!(super::session(&hash), format!("{}sess:{}", super::prefix(hash.shard()), hash.encoded()));
        }
    }
}
