//! A session as Redis keeps it: one string value, read by a validation with a single `GET`.
//!
//! Why a string and not a hash: a validation is most of the traffic, and on a cache miss Redis
//! spends ~0.15 µs on a `GET` against ~0.9 µs on an `HGETALL` of the same fields (and several
//! µs for a script that reads the session and its owner). So the value carries everything a
//! validation answers with — the owner's id, spelling and roles included — and nothing else
//! has to be read. A role change rewrites the roles of every session of the user
//! (`lua/set_role.lua`), which also makes Redis invalidate every instance's cached copy.
//!
//! Layout: fields joined by the unit separator (0x1f), which no field can contain (session
//! ids, user keys and numbers cannot; the device label and names are stripped of control
//! characters when written):
//!
//! ```text
//! 2 ␟ session id ␟ user key ␟ created ␟ last seen ␟ idle deadline ␟ expiry ␟ ip ␟ device ␟ user id ␟ username ␟ roles
//! 3 ␟ session id ␟ user key ␟ created ␟ last seen ␟ idle deadline ␟ expiry ␟ ip ␟ device ␟ user id ␟ username ␟ data ␟ roles
//! ```
//!
//! Layout `3` is a session that a trusted backend created with data (a compact JSON object,
//! which never holds a raw control character, so never the separator); every other session is
//! written in layout `2`, so an instance of an older build reads it during a rolling upgrade.
//!
//! `created` is Unix milliseconds; the three other times are milliseconds after it (short
//! integers); `ip` is an IPv4 address as its 4 bytes in base64url, or IPv6 text; the user id
//! (a UUID) is its 16 bytes in base64url; the username is left empty when it is spelled like
//! the user key; roles are a comma list and always last, so a script can replace them without
//! parsing the rest. Each of these saves bytes that Redis pays for every session: a value of
//! up to 124 bytes is kept in a 128-byte allocation, a longer one in 160 bytes or more. The leading
//! `2` is the layout: a value in any other layout (or a key of another type, as older builds
//! wrote sessions as hashes) is no session, and its token gets a 401. `lua/prelude.lua`
//! reads and writes the same layout.

use std::net::{IpAddr, Ipv4Addr};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::session::{SessionId, Timestamp};
use crate::store::SessionRecord;
use crate::users::UserKey;

/// The layout tag, the value's first field.
const LAYOUT: &str = "2";
/// The layout of a session with backend data.
const LAYOUT_WITH_DATA: &str = "3";
/// Separates the fields.
const SEP: char = '\u{1f}';
/// Fields in layout `2`.
#[cfg(test)]
const FIELDS: usize = 12;

/// A decoded session value: the record and its owner's roles.
pub(super) struct Decoded {
    pub(super) session: SessionRecord,
    pub(super) roles: Vec<String>,
}

/// Everything but the roles, ending with the separator: `lua/create.lua` appends the roles it
/// reads from the user hash in the same atomic step, so a role change racing a login cannot
/// leave the new session with the old roles.
pub(super) fn encode_without_roles(session: &SessionRecord) -> String {
    use std::fmt::Write as _;
    let created = session.created_at;
    let mut out = String::with_capacity(128 + session.data.as_deref().map_or(0, str::len));
    let layout = if session.data.is_some() { LAYOUT_WITH_DATA } else { LAYOUT };
    let _ = write!(
        out,
        "{layout}{SEP}{}{SEP}{}{SEP}{}{SEP}{}{SEP}{}{SEP}{}{SEP}",
        session.session_id.as_str(),
        session.user_key.as_str(),
        created.millis(),
        session.last_seen_at.millis_since(created),
        session.idle_expires_at.millis_since(created),
        session.expires_at.millis_since(created),
    );
    if let Some(ip) = session.ip {
        out.push_str(&ip_to_stored(ip));
    }
    out.push(SEP);
    if let Some(device) = &session.device {
        push_clean(&mut out, device);
    }
    out.push(SEP);
    match uuid::Uuid::try_parse(&session.user_id) {
        Ok(id) if id.hyphenated().to_string() == session.user_id => {
            URL_SAFE_NO_PAD.encode_string(id.as_bytes(), &mut out)
        }
        _ => push_clean(&mut out, &session.user_id),
    }
    out.push(SEP);
    if session.username != session.user_key.as_str() {
        push_clean(&mut out, &session.username);
    }
    out.push(SEP);
    if let Some(data) = &session.data {
        // Compact JSON escapes every control character; the filter only makes it certain.
        out.extend(data.chars().filter(|c| *c != SEP));
        out.push(SEP);
    }
    out
}

fn push_clean(out: &mut String, text: &str) {
    out.extend(text.chars().filter(|c| !c.is_control()));
}

/// Decode a value; `None` when it is not a session in this layout.
pub(super) fn decode(value: &[u8]) -> Option<Decoded> {
    let text = std::str::from_utf8(value).ok()?;
    let (layout, rest) = text.split_once(SEP)?;
    let with_data = match layout {
        LAYOUT => false,
        LAYOUT_WITH_DATA => true,
        _ => return None,
    };
    let mut fields = rest.splitn(if with_data { 12 } else { 11 }, SEP);
    let mut next = || fields.next();
    let session_id = SessionId::parse(next()?)?;
    let user_key = UserKey::from_stored(next()?)?;
    let created: i64 = next()?.parse().ok()?;
    let mut after_created = || -> Option<Timestamp> {
        let offset: i64 = next()?.parse().ok()?;
        Some(Timestamp::from_millis(created.checked_add(offset)?))
    };
    let last_seen_at = after_created()?;
    let idle_expires_at = after_created()?;
    let expires_at = after_created()?;
    let ip = next()?;
    let device = next()?;
    let user_id = next()?;
    let username = next()?;
    let data = if with_data { Some(next()?) } else { None };
    // The last field takes the rest: a separator inside it means a longer, unknown layout.
    let roles = next()?;
    if roles.contains(SEP) || user_id.is_empty() {
        return None;
    }
    let user_id = user_id_from_stored(user_id);
    let username = if username.is_empty() { user_key.as_str().to_owned() } else { username.to_owned() };
    Some(Decoded {
        session: SessionRecord {
            session_id,
            user_id,
            username,
            user_key,
            created_at: Timestamp::from_millis(created),
            last_seen_at,
            idle_expires_at,
            expires_at,
            ip: (!ip.is_empty()).then(|| ip_from_stored(ip)).flatten(),
            device: (!device.is_empty()).then(|| device.to_owned()),
            data: data.map(std::sync::Arc::from),
        },
        roles: roles_from(roles),
    })
}

/// A comma list of roles.
pub(super) fn roles_from(list: &str) -> Vec<String> {
    list.split(',').filter(|r| !r.is_empty()).map(str::to_owned).collect()
}

/// The user id as written by [`encode_without_roles`]: a UUID's 16 bytes in base64url (22
/// characters), or any other id as it is.
fn user_id_from_stored(stored: &str) -> String {
    let mut bytes = [0u8; 17];
    match URL_SAFE_NO_PAD.decode_slice(stored, &mut bytes) {
        Ok(16) if stored.len() == 22 => {
            let mut id = [0u8; 16];
            id.copy_from_slice(&bytes[..16]);
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            uuid::Uuid::from_bytes(id).hyphenated().encode_lower(&mut text).to_owned()
        }
        _ => stored.to_owned(),
    }
}

/// An IPv4 address as its 4 bytes in base64url (6 characters, against up to 15 as text); an
/// IPv6 address as text (which always has a `:`, never part of base64url).
pub(super) fn ip_to_stored(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => URL_SAFE_NO_PAD.encode(v4.octets()),
        IpAddr::V6(v6) => v6.to_string(),
    }
}

pub(super) fn ip_from_stored(stored: &str) -> Option<IpAddr> {
    if stored.contains(':') {
        return stored.parse().ok();
    }
    let mut bytes = [0u8; 5];
    match URL_SAFE_NO_PAD.decode_slice(stored, &mut bytes) {
        Ok(4) => Some(IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SessionRecord {
        let created = Timestamp::from_millis(1_733_500_000_000);
        SessionRecord {
            session_id: SessionId::generate().expect("random"),
            user_id: "0b6f6f0e-1c1e-4a44-9d57-1234567890ab".to_owned(),
            username: "Alice".to_owned(),
            user_key: UserKey::from_stored("alice").expect("key"),
            created_at: created,
            last_seen_at: Timestamp::from_millis(created.millis() + 5),
            idle_expires_at: Timestamp::from_millis(created.millis() + 1_800_000),
            expires_at: Timestamp::from_millis(created.millis() + 43_200_000),
            ip: Some("203.0.113.195".parse().expect("ip")),
            device: Some("curl/8.5.0".to_owned()),
            data: None,
        }
    }

    #[test]
    fn backend_data_survives_its_stored_form_in_its_own_layout() {
        let data = r#"{"tenant":"acme","n":[1,2],"s":"a\u001fb\u007f\u0085é"}"#;
        let session = SessionRecord { data: Some(data.into()), ..record() };
        let value = encode_without_roles(&session) + "user";
        assert!(value.starts_with("3\u{1f}"), "{value:?}");
        let decoded = decode(value.as_bytes()).expect("decodes");
        assert_eq!(decoded.session, session);
        assert_eq!(decoded.roles, vec!["user".to_owned()]);
        let plain = encode_without_roles(&record()) + "user";
        assert!(plain.starts_with("2\u{1f}"), "a session without data keeps the older layout");
        // A layout-3 value missing its data field is no session.
        let short: Vec<&str> = value.split('\u{1f}').filter(|f| !f.starts_with('{')).collect();
        assert!(decode(short.join("\u{1f}").as_bytes()).is_none());
    }

    #[test]
    fn a_session_survives_its_stored_form() {
        let session = record();
        let value = encode_without_roles(&session) + "user,admin";
        let decoded = decode(value.as_bytes()).expect("decodes");
        assert_eq!(decoded.session, session);
        assert_eq!(decoded.roles, vec!["user".to_owned(), "admin".to_owned()]);

        let bare = SessionRecord { ip: None, device: None, ..session };
        let decoded = decode((encode_without_roles(&bare) + "user").as_bytes()).expect("decodes");
        assert_eq!(decoded.session, bare);
    }

    #[test]
    fn ids_and_names_are_stored_in_their_shortest_form() {
        let session = record();
        let value = encode_without_roles(&SessionRecord { username: "alice".to_owned(), ..session.clone() }) + "user";
        assert!(!value.contains(&session.user_id), "the UUID is stored as 16 bytes: {value:?}");
        assert!(!value.contains("\u{1f}alice\u{1f}user"), "a username spelled like its key is not repeated");
        let decoded = decode(value.as_bytes()).expect("decodes");
        assert_eq!(decoded.session.user_id, session.user_id);
        assert_eq!(decoded.session.username, "alice");
        assert!(value.len() <= 124, "a session with a short device label fits 128 bytes: {} {value:?}", value.len());

        let other = SessionRecord { user_id: "subject:42".to_owned(), ..session };
        let decoded = decode((encode_without_roles(&other) + "user").as_bytes()).expect("decodes");
        assert_eq!(decoded.session.user_id, "subject:42", "an id that is not a UUID is kept as it is");
    }

    #[test]
    fn control_characters_cannot_shift_the_fields() {
        let session = SessionRecord { device: Some("evil\u{1f}agent\n".to_owned()), ..record() };
        let decoded = decode((encode_without_roles(&session) + "user").as_bytes()).expect("decodes");
        assert_eq!(decoded.session.device.as_deref(), Some("evilagent"));
        assert_eq!(decoded.roles, vec!["user".to_owned()]);
    }

    #[test]
    fn other_layouts_are_no_session() {
        let value = encode_without_roles(&record()) + "user";
        assert!(decode(value.replacen('2', "1", 1).as_bytes()).is_none(), "another layout tag");
        assert!(decode(format!("{value}\u{1f}extra").as_bytes()).is_none(), "a field too many");
        let short: Vec<&str> = value.split('\u{1f}').take(FIELDS - 1).collect();
        assert!(decode(short.join("\u{1f}").as_bytes()).is_none(), "a field too few");
        assert!(decode(b"\xff\xfe").is_none(), "not UTF-8");
        assert!(decode(b"").is_none());
    }

    #[test]
    fn client_addresses_survive_their_stored_form() {
        for text in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "203.0.113.195", "2001:db8::1", "::1"] {
            let ip: IpAddr = text.parse().expect("ip");
            let stored = ip_to_stored(ip);
            assert_eq!(ip_from_stored(&stored), Some(ip), "{text} stored as {stored}");
            if ip.is_ipv4() {
                assert_eq!(stored.len(), 6, "{text} is stored as 4 bytes in base64url: {stored}");
            }
        }
        assert_eq!(ip_from_stored("not an address"), None);
    }
}
