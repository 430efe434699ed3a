//! Identifiers and timestamps in the shapes the real API uses.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// A new object id: `prefix` + the 32 lowercase hex digits of a UUIDv7 (time-ordered), e.g. `conv_019c…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", Uuid::now_v7().simple())
}

/// RFC 3339 UTC with microseconds and a `Z` suffix, e.g. `2025-06-16T09:16:16.726715Z`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The current time in the API's timestamp format.
pub fn now() -> String {
    timestamp(Utc::now())
}

/// A 9-character alphanumeric `tool_call_id` derived deterministically from `seed_text`.
pub fn tool_call_id(seed_text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = crate::det::hash64(&[seed_text.as_bytes()]);
    (0..9)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            if x == 0 {
                x = crate::det::hash64(&[seed_text.as_bytes(), b"more"]);
            }
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_uuid_v7_hex() {
        let id = new_id("conv_");
        let hex = id.strip_prefix("conv_").unwrap();
        assert_eq!(hex.len(), 32);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(&hex[12..13], "7", "version nibble");
        assert!(
            matches!(&hex[16..17], "8" | "9" | "a" | "b"),
            "variant nibble"
        );
    }

    #[test]
    fn timestamps_have_micros_and_z() {
        let t = now();
        assert_eq!(t.len(), "2025-06-16T09:16:16.726715Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.contains('T'));
    }

    #[test]
    fn tool_call_ids_are_nine_alphanumerics_and_deterministic() {
        let a = tool_call_id("fc_1");
        assert_eq!(a.len(), 9);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(a, tool_call_id("fc_1"));
        assert_ne!(a, tool_call_id("fc_2"));
    }
}
