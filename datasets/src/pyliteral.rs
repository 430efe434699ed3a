//! A small parser for Python literals (the subset `ast.literal_eval` accepts for plain data),
//! converted to `serde_json::Value`. SimpleQA stores each row's metadata as a Python `dict`
//! literal, which is not JSON: strings may be `'…'` or `"…"`, use Python escapes, and the
//! constants are `True`/`False`/`None`.
//!
//! Supported: dicts with string keys (→ objects, key order kept), lists and tuples (→ arrays),
//! strings (single, double and triple quoted, `u`/`r` prefixes, all Python escapes except
//! `\N{…}`, adjacent-literal concatenation), ints (decimal/hex/octal/binary, `_` separators,
//! one leading sign), floats, `True`, `False`, `None`, and `#` comments. Anything JSON cannot
//! hold (sets, bytes, complex numbers, non-string keys, lone surrogates, infinities, integers
//! beyond 64 bits) is rejected with a [`DatasetError::PyLiteral`] carrying the byte offset.

use serde_json::{Map, Number, Value};

use crate::DatasetError;

/// Deepest nesting of containers accepted, so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 128;

/// Parses one Python literal (surrounding whitespace allowed) into JSON.
///
/// # Errors
/// [`DatasetError::PyLiteral`] with the byte offset of the first problem.
pub fn parse(src: &str) -> Result<Value, DatasetError> {
    let mut p = Parser { src, pos: 0 };
    p.skip_ws();
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos < src.len() {
        return Err(p.err("unexpected text after the literal"));
    }
    Ok(value)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> DatasetError {
        self.err_at(self.pos, message)
    }

    fn err_at(&self, offset: usize, message: impl Into<String>) -> DatasetError {
        DatasetError::PyLiteral {
            offset,
            message: message.into(),
        }
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.rest().chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Skips whitespace (including newlines, which Python allows inside brackets) and comments.
    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | '\r' | '\x0c' => {
                    self.pos += 1;
                }
                '#' => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.pos += c.len_utf8();
                    }
                }
                _ => break,
            }
        }
    }

    fn expect(&mut self, want: char, what: &str) -> Result<(), DatasetError> {
        match self.peek() {
            Some(c) if c == want => {
                self.pos += c.len_utf8();
                Ok(())
            }
            Some(c) => Err(self.err(format!("expected {what}, found {c:?}"))),
            None => Err(self.err(format!("expected {what}, found end of input"))),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, DatasetError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        let Some(c) = self.peek() else {
            return Err(self.err("expected a value, found end of input"));
        };
        match c {
            '{' => self.dict(depth),
            '[' => self.list(depth),
            '(' => self.tuple(depth),
            '\'' | '"' => self.strings(),
            '-' | '+' | '.' | '0'..='9' => self.number(),
            c if c.is_alphabetic() || c == '_' => self.name_or_prefixed_string(),
            c => Err(self.err(format!("unexpected character {c:?}"))),
        }
    }

    /// Parses comma-separated items up to `close`, allowing a trailing comma. Returns the number
    /// of commas seen (a tuple needs one to be a tuple).
    fn items(
        &mut self,
        close: char,
        mut item: impl FnMut(&mut Self) -> Result<(), DatasetError>,
    ) -> Result<usize, DatasetError> {
        let mut commas = 0;
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(commas);
            }
            item(self)?;
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.pos += 1;
                    commas += 1;
                }
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(commas);
                }
                Some(c) => return Err(self.err(format!("expected ',' or {close:?}, found {c:?}"))),
                None => {
                    return Err(self.err(format!("expected ',' or {close:?}, found end of input")));
                }
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Value, DatasetError> {
        self.pos += 1; // '{'
        let mut map = Map::new();
        self.items('}', |p| {
            let key_at = p.pos;
            let key = p.value(depth + 1)?;
            p.skip_ws();
            match p.peek() {
                Some(':') => p.pos += 1,
                Some(',' | '}') => {
                    return Err(p.err_at(key_at, "set literals are not supported"));
                }
                _ => p.expect(':', "':' after a dict key")?,
            }
            p.skip_ws();
            let value = p.value(depth + 1)?;
            match key {
                // Python keeps the last value for a repeated key but its first position;
                // `Map::insert` on an existing key does exactly that.
                Value::String(k) => {
                    map.insert(k, value);
                    Ok(())
                }
                _ => Err(p.err_at(key_at, "dict keys must be strings to convert to JSON")),
            }
        })?;
        Ok(Value::Object(map))
    }

    fn list(&mut self, depth: usize) -> Result<Value, DatasetError> {
        self.pos += 1; // '['
        let mut out = Vec::new();
        self.items(']', |p| {
            out.push(p.value(depth + 1)?);
            Ok(())
        })?;
        Ok(Value::Array(out))
    }

    fn tuple(&mut self, depth: usize) -> Result<Value, DatasetError> {
        self.pos += 1; // '('
        let mut out = Vec::new();
        let commas = self.items(')', |p| {
            out.push(p.value(depth + 1)?);
            Ok(())
        })?;
        if out.len() == 1 && commas == 0 {
            // `(x)` is just a parenthesised x.
            Ok(out.pop().unwrap_or(Value::Null))
        } else {
            Ok(Value::Array(out))
        }
    }

    fn name_or_prefixed_string(&mut self) -> Result<Value, DatasetError> {
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        let name = &self.src[start..start + len];
        let quote_follows = matches!(self.src[start + len..].chars().next(), Some('\'' | '"'));
        if quote_follows && name.len() <= 2 {
            let lower = name.to_ascii_lowercase();
            if lower.contains('b') {
                return Err(self.err("bytes literals are not supported"));
            }
            if lower.contains('f') {
                return Err(self.err("f-strings are not literals"));
            }
            if matches!(lower.as_str(), "u" | "r") {
                return self.strings();
            }
        }
        self.pos += len;
        match name {
            "True" => Ok(Value::Bool(true)),
            "False" => Ok(Value::Bool(false)),
            "None" => Ok(Value::Null),
            _ => Err(self.err_at(start, format!("unexpected name {name:?}"))),
        }
    }

    /// One string literal, then any adjacent ones (`'a' "b"` is `'ab'` in Python).
    fn strings(&mut self) -> Result<Value, DatasetError> {
        let mut out = String::new();
        self.string_into(&mut out)?;
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.at_string_start() {
                self.string_into(&mut out)?;
            } else {
                self.pos = save;
                return Ok(Value::String(out));
            }
        }
    }

    fn at_string_start(&self) -> bool {
        matches!(
            (self.peek(), self.peek_at(1)),
            (Some('\'' | '"'), _) | (Some('u' | 'U' | 'r' | 'R'), Some('\'' | '"'))
        )
    }

    /// Parses one (optionally `u`/`r`-prefixed) string literal and appends its value to `out`.
    fn string_into(&mut self, out: &mut String) -> Result<(), DatasetError> {
        let start = self.pos;
        let mut raw = false;
        if let Some(c @ ('u' | 'U' | 'r' | 'R')) = self.peek() {
            raw = matches!(c, 'r' | 'R');
            self.pos += 1;
        }
        let Some(quote @ ('\'' | '"')) = self.bump() else {
            return Err(self.err_at(start, "expected a string"));
        };
        let triple = self.peek() == Some(quote) && self.peek_at(1) == Some(quote);
        if triple {
            self.pos += 2;
        }
        loop {
            let Some(c) = self.bump() else {
                return Err(self.err_at(start, "unterminated string"));
            };
            if c == quote {
                if !triple {
                    return Ok(());
                }
                if self.peek() == Some(quote) && self.peek_at(1) == Some(quote) {
                    self.pos += 2;
                    return Ok(());
                }
                out.push(c);
            } else if c == '\n' && !triple {
                return Err(self.err_at(start, "unterminated string (newline before the quote)"));
            } else if c == '\\' {
                if raw {
                    // A raw string keeps the backslash, but it still stops the next
                    // character from closing the string.
                    out.push('\\');
                    match self.bump() {
                        Some(next) => out.push(next),
                        None => return Err(self.err_at(start, "unterminated string")),
                    }
                } else {
                    self.escape_into(out, start)?;
                }
            } else {
                out.push(c);
            }
        }
    }

    /// Decodes the escape sequence after a backslash (already consumed).
    fn escape_into(&mut self, out: &mut String, string_start: usize) -> Result<(), DatasetError> {
        let at = self.pos - 1;
        let Some(c) = self.bump() else {
            return Err(self.err_at(string_start, "unterminated string"));
        };
        match c {
            '\n' => {} // line continuation
            '\r' => {
                if self.peek() == Some('\n') {
                    self.pos += 1;
                }
            }
            '\\' | '\'' | '"' => out.push(c),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '0'..='7' => {
                let mut code = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            code = code * 8 + d;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                out.push(self.code_point(code, at)?);
            }
            'x' => out.push(self.hex_escape(2, at)?),
            'u' => out.push(self.hex_escape(4, at)?),
            'U' => out.push(self.hex_escape(8, at)?),
            'N' => return Err(self.err_at(at, "\\N{...} escapes are not supported")),
            // Python keeps unknown escapes as written (backslash included).
            other => {
                out.push('\\');
                out.push(other);
            }
        }
        Ok(())
    }

    fn hex_escape(&mut self, digits: usize, at: usize) -> Result<char, DatasetError> {
        let hex = self.rest().get(..digits).unwrap_or("");
        if hex.len() != digits || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.err_at(at, format!("escape needs exactly {digits} hex digits")));
        }
        let code = u32::from_str_radix(hex, 16).map_err(|e| self.err_at(at, e.to_string()))?;
        self.pos += digits;
        self.code_point(code, at)
    }

    fn code_point(&self, code: u32, at: usize) -> Result<char, DatasetError> {
        if (0xD800..=0xDFFF).contains(&code) {
            return Err(self.err_at(
                at,
                format!("lone surrogate U+{code:04X} cannot be represented outside Python"),
            ));
        }
        char::from_u32(code)
            .ok_or_else(|| self.err_at(at, format!("code point {code:#x} is out of range")))
    }

    fn number(&mut self) -> Result<Value, DatasetError> {
        let start = self.pos;
        let negative = match self.peek() {
            Some('-') => {
                self.pos += 1;
                true
            }
            Some('+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        if negative || self.src[start..].starts_with('+') {
            self.skip_ws();
        }
        let body_at = self.pos;
        let body_len = scan_number(self.rest());
        let body = &self.src[body_at..body_at + body_len];
        if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            return Err(self.err_at(start, "expected a number after the sign"));
        }
        self.pos = body_at + body_len;
        parse_number(body, negative).map_err(|m| self.err_at(start, m))
    }
}

/// Length in bytes of the number token at the start of `s`: digits, `_`, one `.`, an exponent
/// with its sign, a radix prefix, and any letters glued on (so `1j` or `12abc` are reported as
/// one bad token instead of a number followed by junk).
fn scan_number(s: &str) -> usize {
    let b = s.as_bytes();
    let word = |i: usize| {
        b.get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    };
    let mut i = 0;
    let lower2 = s.get(..2).map(str::to_ascii_lowercase);
    if matches!(lower2.as_deref(), Some("0x" | "0o" | "0b")) {
        i = 2;
    } else {
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E'))
            && matches!(b.get(i + 1), Some(b'+' | b'-'))
            && b.get(i + 2).is_some_and(u8::is_ascii_digit)
        {
            i += 2;
        }
    }
    while word(i) || b.get(i) == Some(&b'.') {
        i += 1;
    }
    i
}

/// Converts the text of a Python int or float literal (without sign) into a JSON number.
fn parse_number(body: &str, negative: bool) -> Result<Value, String> {
    if body.ends_with(['j', 'J']) {
        return Err("complex numbers are not supported".into());
    }
    if body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return Err(format!("misplaced '_' in number {body:?}"));
    }
    let lower = body.to_ascii_lowercase();
    let radix = match lower.get(..2) {
        Some("0x") => Some(16),
        Some("0o") => Some(8),
        Some("0b") => Some(2),
        _ => None,
    };
    if let Some(radix) = radix {
        let digits = lower[2..]
            .strip_prefix('_')
            .unwrap_or(&lower[2..])
            .replace('_', "");
        let magnitude = u128::from_str_radix(&digits, radix)
            .map_err(|_| format!("invalid integer literal {body:?}"))?;
        return int_value(magnitude, negative, body);
    }
    let cleaned = body.replace('_', "");
    let is_float = cleaned.contains(['.', 'e', 'E']);
    if !is_float {
        if !cleaned.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid number {body:?}"));
        }
        if cleaned.len() > 1 && cleaned.starts_with('0') && cleaned.bytes().any(|b| b != b'0') {
            return Err(format!("leading zeros are not allowed in {body:?}"));
        }
        let magnitude = cleaned
            .parse::<u128>()
            .map_err(|_| format!("integer {body:?} is too large"))?;
        return int_value(magnitude, negative, body);
    }
    let valid = {
        let (mantissa, exponent) = match cleaned.find(['e', 'E']) {
            Some(i) => (&cleaned[..i], Some(&cleaned[i + 1..])),
            None => (cleaned.as_str(), None),
        };
        let mut parts = mantissa.splitn(2, '.');
        let int_part = parts.next().unwrap_or("");
        let frac_part = parts.next().unwrap_or("");
        let digits_ok = int_part.bytes().all(|b| b.is_ascii_digit())
            && frac_part.bytes().all(|b| b.is_ascii_digit())
            && !(int_part.is_empty() && frac_part.is_empty());
        let exp_ok = exponent.is_none_or(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        });
        digits_ok && exp_ok
    };
    if !valid {
        return Err(format!("invalid number {body:?}"));
    }
    let x: f64 = cleaned
        .parse()
        .map_err(|_| format!("invalid number {body:?}"))?;
    let x = if negative { -x } else { x };
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| format!("float {body:?} overflows to infinity, which JSON cannot hold"))
}

fn int_value(magnitude: u128, negative: bool, body: &str) -> Result<Value, String> {
    let too_big = || format!("integer {body:?} does not fit in 64 bits");
    if negative {
        let v = if magnitude == 1u128 << 63 {
            i64::MIN
        } else {
            i64::try_from(magnitude)
                .map(|m| -m)
                .map_err(|_| too_big())?
        };
        Ok(Value::from(v))
    } else {
        let v = u64::try_from(magnitude).map_err(|_| too_big())?;
        Ok(Value::from(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(src: &str) -> Value {
        parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"))
    }

    fn err(src: &str) -> (usize, String) {
        match parse(src) {
            Err(DatasetError::PyLiteral { offset, message }) => (offset, message),
            other => panic!("{src:?}: expected a PyLiteral error, got {other:?}"),
        }
    }

    #[test]
    fn constants() {
        assert_eq!(ok("True"), json!(true));
        assert_eq!(ok("False"), json!(false));
        assert_eq!(ok("None"), Value::Null);
        assert_eq!(ok("  [True, None, False]  "), json!([true, null, false]));
        assert!(err("true").1.contains("unexpected name"));
        assert!(err("null").1.contains("\"null\""));
    }

    #[test]
    fn both_quote_styles() {
        assert_eq!(ok("'abc'"), json!("abc"));
        assert_eq!(ok("\"abc\""), json!("abc"));
        assert_eq!(ok(r#""it's""#), json!("it's"));
        assert_eq!(ok(r#"'say "hi"'"#), json!("say \"hi\""));
        assert_eq!(ok("''"), json!(""));
    }

    #[test]
    fn escapes() {
        assert_eq!(ok(r"'it\'s'"), json!("it's"));
        assert_eq!(ok(r#""a\"b""#), json!("a\"b"));
        assert_eq!(ok(r"'a\\b'"), json!("a\\b"));
        assert_eq!(ok(r"'a\nb\tc\rd'"), json!("a\nb\tc\rd"));
        assert_eq!(ok(r"'\a\b\f\v'"), json!("\u{7}\u{8}\u{c}\u{b}"));
        assert_eq!(ok(r"'\x41\101\0'"), json!("AA\u{0}"));
        assert_eq!(ok(r"'\u200a|\u00e9|\U0001F600'"), json!("\u{200a}|é|😀"));
        // Unknown escapes keep their backslash, as in Python.
        assert_eq!(ok(r"'\d\['"), json!("\\d\\["));
        // Backslash-newline is a line continuation.
        assert_eq!(ok("'ab\\\ncd'"), json!("abcd"));
    }

    #[test]
    fn bad_escapes() {
        assert!(err(r"'\x4'").1.contains("2 hex digits"));
        assert!(err(r"'\u12'").1.contains("4 hex digits"));
        assert!(err(r"'\ud83d'").1.contains("surrogate"));
        assert!(err(r"'\U00110000'").1.contains("out of range"));
        assert!(err(r"'\N{DASH}'").1.contains("not supported"));
    }

    #[test]
    fn unicode_passes_through() {
        assert_eq!(
            ok("'Jóhanna Sigurðardóttir'"),
            json!("Jóhanna Sigurðardóttir")
        );
        assert_eq!(ok("{'ключ': '值'}"), json!({"ключ": "值"}));
        // Offsets are byte offsets, so they stay valid after multi-byte characters.
        let (offset, _) = err("['é', x]");
        assert_eq!(offset, 7);
    }

    #[test]
    fn prefixes_triple_quotes_and_concatenation() {
        assert_eq!(ok(r"r'\d+\''"), json!("\\d+\\'"));
        assert_eq!(ok("u'x'"), json!("x"));
        assert_eq!(ok("'''a\n'b'\"'''"), json!("a\n'b'\""));
        assert_eq!(ok("\"\"\"x\"\"\""), json!("x"));
        assert_eq!(ok("'a' \"b\"\n 'c'"), json!("abc"));
        assert_eq!(ok("['a' 'b', 'c']"), json!(["ab", "c"]));
        assert!(err("b'x'").1.contains("bytes"));
        assert!(err("f'x'").1.contains("f-strings"));
    }

    #[test]
    fn unterminated_strings() {
        assert_eq!(err("'abc"), (0, "unterminated string".into()));
        assert!(err("['a', 'b\nc']").1.contains("newline"));
        assert_eq!(err("['a', 'b\\"), (6, "unterminated string".into()));
    }

    #[test]
    fn numbers() {
        assert_eq!(ok("0"), json!(0));
        assert_eq!(ok("-12"), json!(-12));
        assert_eq!(ok("+7"), json!(7));
        assert_eq!(ok("- 3"), json!(-3));
        assert_eq!(ok("1_000"), json!(1000));
        assert_eq!(ok("0x_ff"), json!(255));
        assert_eq!(ok("0o17"), json!(15));
        assert_eq!(ok("0b101"), json!(5));
        assert_eq!(ok("18446744073709551615"), json!(u64::MAX));
        assert_eq!(ok("-9223372036854775808"), json!(i64::MIN));
        assert_eq!(ok("1.5"), json!(1.5));
        assert_eq!(ok("-.25"), json!(-0.25));
        assert_eq!(ok("5."), json!(5.0));
        assert_eq!(ok("1e3"), json!(1000.0));
        assert_eq!(ok("2.5E-2"), json!(0.025));
        assert_eq!(ok("[1e+2, 3]"), json!([100.0, 3]));
        assert!(err("18446744073709551616").1.contains("64 bits"));
        assert!(err("012").1.contains("leading zeros"));
        assert!(err("1__0").1.contains('_'));
        assert!(err("1j").1.contains("complex"));
        assert!(err("1e999").1.contains("infinity"));
        assert!(err("1.2.3").1.contains("invalid number"));
        assert!(err("--1").1.contains("after the sign"));
        assert_eq!(ok("00"), json!(0));
    }

    #[test]
    fn containers() {
        assert_eq!(ok("{}"), json!({}));
        assert_eq!(ok("[]"), json!([]));
        assert_eq!(ok("()"), json!([]));
        assert_eq!(ok("(1,)"), json!([1]));
        assert_eq!(ok("(1)"), json!(1));
        assert_eq!(ok("(1, 'a')"), json!([1, "a"]));
        assert_eq!(ok("[1, 2,]"), json!([1, 2]));
        assert_eq!(
            ok("{'a': {'b': [1, (2, 3), {'c': None}]}, \"d\": [], }"),
            json!({"a": {"b": [1, [2, 3], {"c": null}]}, "d": []})
        );
        assert_eq!(
            ok("{\n  'x': 1,  # a comment\n  'y': 2\n}"),
            json!({"x": 1, "y": 2})
        );
    }

    #[test]
    fn key_order_is_kept_and_last_duplicate_wins() {
        let v = ok("{'z': 1, 'a': 2, 'z': 3}");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["z", "a"]);
        assert_eq!(v["z"], json!(3));
    }

    #[test]
    fn rejected_structures() {
        assert!(err("{1: 'a'}").1.contains("keys must be strings"));
        assert!(err("{'a', 'b'}").1.contains("set literals"));
        assert!(err("[1 2]").1.contains("expected ','"));
        assert!(err("[1, 2").1.contains("end of input"));
        assert!(err("{'a' 1}").1.contains("':'"));
        assert!(err("'a' x").1.contains("after the literal"));
        assert!(err("").1.contains("end of input"));
        assert!(err("@").1.contains("unexpected character"));
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert!(err(&deep).1.contains("nesting"));
    }

    #[test]
    fn simpleqa_style_metadata() {
        let src = r#"{'topic': 'Art', 'answer_type': 'Other', 'urls': ["https://x.org/a#:~:text=Tate's%20name", 'it\'s\u200a252', 'https://y.org/b\nhttps://z.org/c']}"#;
        assert_eq!(
            ok(src),
            json!({
                "topic": "Art",
                "answer_type": "Other",
                "urls": [
                    "https://x.org/a#:~:text=Tate's%20name",
                    "it's\u{200a}252",
                    "https://y.org/b\nhttps://z.org/c"
                ]
            })
        );
    }
}
