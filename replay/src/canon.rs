//! Request bodies in canonical form, and where two of them differ. Pure: no I/O.
//!
//! Two JSON bodies match when they are equal as values once the ignored fields are removed: key order
//! and whitespace never matter, numbers compare by their parsed value. A body that is not JSON
//! matches only the same text.

use serde_json::Value;

/// A request body as the matcher compares it.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// No body.
    Empty,
    /// A JSON body, ignored fields removed.
    Json(Value),
    /// A body that is not JSON, as text (invalid UTF-8 replaced).
    Text(String),
}

impl Body {
    /// The body of `bytes`, with the values at `ignore` (JSON pointers) removed when it is JSON.
    pub fn parse(bytes: &[u8], ignore: &[String]) -> Body {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Body::Empty;
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(mut v) => {
                strip(&mut v, ignore);
                Body::Json(v)
            }
            Err(_) => Body::Text(String::from_utf8_lossy(bytes).into_owned()),
        }
    }

    /// The canonical text: JSON with keys sorted at every level and no whitespace, `raw:` and the
    /// text for other bodies, the empty string for none. Equal texts mean matching bodies.
    pub fn canonical(&self) -> String {
        match self {
            Body::Empty => String::new(),
            Body::Json(v) => {
                let mut out = String::new();
                write_canonical(v, &mut out);
                out
            }
            Body::Text(t) => format!("raw:{t}"),
        }
    }
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(child) = m.get(k) {
                    write_canonical(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, child) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(child, out);
            }
            out.push(']');
        }
        Value::Number(n) => out.push_str(&canonical_number(n)),
        other => out.push_str(&other.to_string()),
    }
}

/// A number's canonical text: integers exactly; other numbers with an integral value below 2^53 as
/// that integer (`1.0` matches `1`), the rest to 15 significant digits. JSON parsers (serde_json's
/// default one among them) may round a long decimal to a neighbouring double, and the recorder
/// stores bodies re-serialised, so a recorded float can sit one unit in the last place away from the
/// same request parsed live; 15 digits absorb that.
fn canonical_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => {
            format!("{}", f as i64)
        }
        Some(f) => format!("{f:.14e}"),
        None => n.to_string(),
    }
}

fn leaf_text(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

/// Removes the value at each JSON pointer (RFC 6901) of `pointers` from `v`; a pointer that names
/// nothing is skipped. Removing an array element shifts the later ones, as `remove` does.
pub fn strip(v: &mut Value, pointers: &[String]) {
    for p in pointers {
        remove_pointer(v, p);
    }
}

fn remove_pointer(v: &mut Value, pointer: &str) {
    if pointer.is_empty() {
        return;
    }
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = unescape(last);
    let target = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    match target {
        Some(Value::Object(m)) => {
            m.shift_remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Where two bodies first differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// JSON pointer of the first difference (`""` for the whole body), keys visited in sorted
    /// order.
    pub path: String,
    /// The recorded value there (absent: `None`), as compact JSON.
    pub recorded: Option<String>,
    /// The request's value there (absent: `None`), as compact JSON.
    pub got: Option<String>,
    /// How many leaf values differ in all (a distance: 0 means equal).
    pub count: usize,
}

/// The first difference between a recorded body and a request's, and the number of differing
/// leaves; `None` when they match.
pub fn diff(recorded: &Body, got: &Body) -> Option<Difference> {
    let mut first: Option<Difference> = None;
    let mut count = 0usize;
    match (recorded, got) {
        (Body::Json(a), Body::Json(b)) => {
            walk(Some(a), Some(b), &mut String::new(), &mut first, &mut count)
        }
        (a, b) if a == b => {}
        (a, b) => {
            count = 1;
            first = Some(Difference {
                path: String::new(),
                recorded: describe(a),
                got: describe(b),
                count: 0,
            });
        }
    }
    first.map(|mut d| {
        d.count = count;
        d
    })
}

fn describe(b: &Body) -> Option<String> {
    match b {
        Body::Empty => None,
        Body::Json(v) => Some(v.to_string()),
        Body::Text(t) => Some(Value::String(t.clone()).to_string()),
    }
}

fn walk(
    a: Option<&Value>,
    b: Option<&Value>,
    path: &mut String,
    first: &mut Option<Difference>,
    count: &mut usize,
) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = path.len();
                path.push('/');
                path.push_str(&escape(k));
                walk(x.get(k), y.get(k), path, first, count);
                path.truncate(len);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for i in 0..x.len().max(y.len()) {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                walk(x.get(i), y.get(i), path, first, count);
                path.truncate(len);
            }
        }
        (Some(x), Some(y)) if leaf_text(x) == leaf_text(y) => {}
        (None, None) => {}
        (x, y) => {
            *count += 1;
            if first.is_none() {
                *first = Some(Difference {
                    path: path.clone(),
                    recorded: x.map(Value::to_string),
                    got: y.map(Value::to_string),
                    count: 0,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str, ignore: &[&str]) -> Body {
        let ignore: Vec<String> = ignore.iter().map(|s| s.to_string()).collect();
        Body::parse(s.as_bytes(), &ignore)
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a = body(r#"{"b": [1, {"y": 2, "x": 1}], "a": "s"}"#, &[]);
        let b = body(r#"{"a":"s","b":[1,{"x":1,"y":2}]}"#, &[]);
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.canonical(), r#"{"a":"s","b":[1,{"x":1,"y":2}]}"#);
        assert_eq!(diff(&a, &b), None);
    }

    #[test]
    fn ignored_fields_are_removed_before_comparing() {
        let a = body(
            r#"{"inputs":[{"at":"1","t":"x"}],"ts":1}"#,
            &["/ts", "/inputs/0/at"],
        );
        let b = body(
            r#"{"inputs":[{"at":"2","t":"x"}],"ts":2}"#,
            &["/ts", "/inputs/0/at"],
        );
        assert_eq!(a.canonical(), b.canonical());
        let c = body(r#"{"a/b":1,"k":2}"#, &["/a~1b"]);
        assert_eq!(c.canonical(), r#"{"k":2}"#);
    }

    #[test]
    fn the_first_difference_is_named_by_its_pointer() {
        let a = body(
            r#"{"inputs":[{"content":"hi"}],"model":"m","stream":false}"#,
            &[],
        );
        let b = body(
            r#"{"stream":true,"inputs":[{"content":"ho"}],"model":"m"}"#,
            &[],
        );
        let d = diff(&a, &b).unwrap();
        assert_eq!(d.path, "/inputs/0/content");
        assert_eq!(d.recorded.as_deref(), Some("\"hi\""));
        assert_eq!(d.got.as_deref(), Some("\"ho\""));
        assert_eq!(d.count, 2);
        let missing = diff(&body(r#"{"a":1}"#, &[]), &body(r#"{}"#, &[])).unwrap();
        assert_eq!((missing.path.as_str(), missing.got), ("/a", None));
    }

    #[test]
    fn numbers_match_by_value_not_spelling() {
        let a = body(
            r#"{"t":1.0,"x":0.7,"big":33333333333333333333333333333333333333333333333333}"#,
            &[],
        );
        let b = body(r#"{"t":1,"x":7e-1,"big":3.3333333333333333e49}"#, &[]);
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(diff(&a, &b), None);
        assert!(diff(&body(r#"{"x":0.7}"#, &[]), &body(r#"{"x":0.71}"#, &[])).is_some());
        // Stable: the canonical text parses back to itself.
        assert_eq!(
            Body::parse(a.canonical().as_bytes(), &[]).canonical(),
            a.canonical()
        );
    }

    #[test]
    fn text_bodies_match_only_the_same_text() {
        assert_eq!(body("not json", &[]).canonical(), "raw:not json");
        assert_eq!(body("  ", &[]), Body::Empty);
        let d = diff(&body("x", &[]), &body("y", &[])).unwrap();
        assert_eq!(d.path, "");
    }
}
