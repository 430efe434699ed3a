//! The web UI's request-side parsing: `Host` values, same-origin checks, query strings, percent-encoding of
//! link values, and SSE framing of recorded text.

use std::net::SocketAddr;

use agentcap_ui::{guard, web};
use percent_encoding::percent_decode_str;

#[test]
fn ui_request() {
    let listen: SocketAddr = "127.0.0.1:8790".parse().unwrap();
    crate::fuzz(
        "ui_request",
        &[
            b"localhost:8790",
            b"[::1]:80",
            b"127.0.0.1",
            b"evil.example:8790",
            b"a=1&b=%FF&tag=k%3Av&before=2026-01-01T00:00:00Z,id",
            b"line\nbreak\rreturn",
            b"h\xc3\xa9llo\xff",
        ],
        |input| {
            let text = String::from_utf8_lossy(input);
            if let Some(h) = guard::host_name(&text) {
                assert!(!h.is_empty() && h.len() <= text.len(), "{text:?} -> {h:?}");
                assert!(
                    h.chars().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || matches!(c, '.' | '-' | ':' | '_')),
                    "{h:?}"
                );
                if guard::host_allowed(&h, &listen, &[]) {
                    let loopback_ip = h
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                    assert!(
                        h == "localhost" || h.ends_with(".localhost") || loopback_ip,
                        "{h:?} was allowed"
                    );
                }
            }
            if guard::same_origin(&text, "127.0.0.1:8790") {
                assert!(
                    text.eq_ignore_ascii_case("http://127.0.0.1:8790"),
                    "{text:?}"
                );
            }
            let q = web::Query::parse(Some(&text));
            for key in ["a", "b", "tag", "before"] {
                if let Some(v) = q.get(key) {
                    assert!(!v.is_empty() && v.trim() == v);
                }
            }
            let e = web::enc(&text);
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~:,%".contains(&b)),
                "{e:?}"
            );
            assert_eq!(
                percent_decode_str(&e).decode_utf8_lossy(),
                text,
                "enc round trip"
            );
            let ev = web::sse_event("row", &text);
            let ev = std::str::from_utf8(&ev).unwrap();
            assert!(
                ev.ends_with("\n\n") && ev.matches("\n\n").count() == 1,
                "{ev:?}"
            );
            assert!(
                ev.trim_end_matches('\n')
                    .split('\n')
                    .all(|l| l.starts_with("event: ") || l.starts_with("data: ")),
                "{ev:?}"
            );
        },
    );
}
