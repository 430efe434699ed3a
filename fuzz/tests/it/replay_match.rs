//! The replay's request matcher on hostile bodies: canonical form, ignored fields and the first
//! differing path.

use agentcap_replay::canon::{Body, diff};

#[test]
fn replay_match() {
    let ignore = vec![
        "/metadata/ts".to_owned(),
        "/inputs/0".to_owned(),
        "/a~1b".to_owned(),
    ];
    crate::fuzz(
        "replay_match",
        &[
            br#"{"model":"m","inputs":[{"role":"user","content":"hi"}],"metadata":{"ts":1}}"#,
            br#"{"b":[1,2.5,-0,1e3,{"y":null,"x":true}],"a/b":"\u00e9\n"}"#,
            b"not json \xff",
            b"   ",
            b"[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
        ],
        |input| {
            let body = Body::parse(input, &ignore);
            let canonical = body.canonical();
            // Bounded output: the canonical text of JSON is never much longer than its input
            // (escapes may grow: at most 6 bytes per input byte), other bodies carry a prefix.
            assert!(
                canonical.len() <= input.len() * 6 + 8,
                "{} -> {}",
                input.len(),
                canonical.len()
            );
            // A body always matches itself, and a canonical JSON text is a fixed point.
            assert_eq!(diff(&body, &body), None);
            if let Body::Json(_) = &body {
                let again = Body::parse(canonical.as_bytes(), &[]);
                assert_eq!(again.canonical(), canonical, "canonical form is not stable");
                assert_eq!(diff(&body, &again), None);
            }
            // Bodies differ exactly when their canonical texts do, and the named path exists in
            // one of them.
            let other = Body::parse(br#"{"model":"m","inputs":"x"}"#, &ignore);
            match diff(&body, &other) {
                None => assert_eq!(canonical, other.canonical()),
                Some(d) => {
                    assert_ne!(canonical, other.canonical());
                    assert!(d.count >= 1);
                    assert!(d.recorded.is_some() || d.got.is_some(), "{d:?}");
                    if let (Body::Json(a), Body::Json(b)) = (&body, &other) {
                        assert!(
                            d.path.is_empty()
                                || a.pointer(&d.path).is_some()
                                || b.pointer(&d.path).is_some(),
                            "{d:?}"
                        );
                    }
                }
            }
        },
    );
}
