//! The W3C Trace Context `traceparent` header
//! ([`crate::vocab::headers::TRACEPARENT`]): `version-traceid-parentid-flags`, lowercase hex.
//!
//! [`TraceParent::parse`] follows the specification's rules for a receiver: version `ff` is
//! invalid; version `00` is exactly 55 characters; a later version may be longer, provided the
//! 56th character is `-` (only the first four fields are read); the trace id and the parent id
//! must not be all zeros; any uppercase or other non-hex character makes the header invalid.
//! An invalid header is ignored (`None`), never repaired. Pure: no I/O.

/// A valid `traceparent` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace id (16 bytes, not all zero).
    pub trace_id: [u8; 16],
    /// The caller's span id (8 bytes, not all zero).
    pub parent_id: [u8; 8],
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Length of a version `00` header: 2 + 1 + 32 + 1 + 16 + 1 + 2.
const LEN_00: usize = 55;

/// Decodes exactly `N` bytes from `2 * N` lowercase hex characters.
fn hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

impl TraceParent {
    /// Parses a header value (surrounding spaces and tabs ignored); `None` when it is invalid.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let v = value.trim_matches([' ', '\t']).as_bytes();
        if v.len() < LEN_00 {
            return None;
        }
        let [version] = hex::<1>(&v[0..2])?;
        match version {
            0xff => return None,
            0 if v.len() != LEN_00 => return None,
            _ if v.len() > LEN_00 && v[LEN_00] != b'-' => return None,
            _ => {}
        }
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let trace_id = hex::<16>(&v[3..35])?;
        let parent_id = hex::<8>(&v[36..52])?;
        let [flags] = hex::<1>(&v[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The caller sampled this trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The header value in version `00` form.
    pub fn to_header(&self) -> String {
        let mut s = String::with_capacity(LEN_00);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.parent_id);
        s.push('-');
        push_hex(&mut s, &[self.flags]);
        s
    }
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips() {
        let t = TraceParent::parse(GOOD).unwrap();
        assert_eq!(t.trace_id[0], 0x4b);
        assert_eq!(t.parent_id[7], 0xb7);
        assert!(t.sampled());
        assert_eq!(t.to_header(), GOOD);
        assert_eq!(TraceParent::parse(&format!(" {GOOD}\t")), Some(t));
    }

    #[test]
    fn invalid_headers_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01, 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_up_to_its_known_fields() {
        let t = TraceParent::parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-next",
        )
        .unwrap();
        assert!(!t.sampled());
        assert!(
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").is_some()
        );
    }
}
