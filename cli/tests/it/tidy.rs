//! Tidy tests: the architecture invariants of ARCHITECTURE.md that can be checked by reading the source.
//! They read the workspace's files as text and fail with the offending file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `cli/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The workspace's member crates, from the root manifest.
fn members() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).expect("root manifest");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("members line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// A file's text without comments and without its trailing `#[cfg(test)]` module (unit tests may use
/// anything; `super` inside them means the file itself).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        let code = match line.find("//") {
            // A `//` inside a string literal (a URL) is rare in module paths; keep the line when quoted.
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The module path of a file under `src/` (`lib.rs` → [], `a/mod.rs` → [a], `a/b.rs` → [a, b]).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = segs.pop().expect("a file name");
    match last.as_str() {
        "lib.rs" | "main.rs" | "mod.rs" => {}
        other => segs.push(other.trim_end_matches(".rs").to_owned()),
    }
    segs
}

/// Expands the use trees of `use` statements into paths (`a::{b, c::d}` → `a::b`, `a::c::d`).
fn expand_use(tree: &str) -> Vec<String> {
    let renames = regex::Regex::new(r"\s+as\s+[A-Za-z0-9_]+").expect("valid regex");
    let tree: String = renames
        .replace_all(tree, "")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    fn go(prefix: &str, t: &str, out: &mut Vec<String>) {
        // Split at top-level commas.
        let mut depth = 0;
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, c) in t.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&t[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&t[start..]);
        for p in parts.into_iter().filter(|p| !p.is_empty()) {
            let joined = |s: &str| {
                if prefix.is_empty() {
                    s.to_owned()
                } else {
                    format!("{prefix}::{s}")
                }
            };
            match p.find('{') {
                Some(i) if p.ends_with('}') => {
                    let head = p[..i].trim_end_matches("::");
                    go(&joined(head), &p[i + 1..p.len() - 1], out);
                }
                _ => out.push(joined(p)),
            }
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out
}

/// Every path in the code that starts with `crate`, `super` or `self`.
fn paths_in(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` statements, trees expanded.
    for stmt in code.split(';') {
        let s = stmt.trim_start();
        let s = s.strip_prefix("pub(crate) ").unwrap_or(s);
        let s = s.strip_prefix("pub ").unwrap_or(s);
        if let Some(tree) = s.strip_prefix("use ") {
            out.extend(expand_use(tree));
        }
    }
    // Paths anywhere else.
    let bytes = code.as_bytes();
    for kw in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(kw) {
            let at = from + i;
            from = at + kw.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            out.push(code[at..end].trim_end_matches(':').to_owned());
        }
    }
    out
}

/// Resolves a `crate` / `super` / `self` path seen in module `here` to an absolute module path.
/// (`self` is the module itself, `super` its parent, whether the file is `a/b.rs` or `a/b/mod.rs`.)
fn absolute(here: &[String], path: &str) -> Option<Vec<String>> {
    let mut segs = path.split("::").filter(|s| !s.is_empty());
    let first = segs.next()?;
    let mut base: Vec<String> = match first {
        "crate" => Vec::new(),
        "self" => here.to_vec(),
        "super" => {
            let mut b = here.to_vec();
            b.pop()?;
            b
        }
        _ => return None,
    };
    for s in segs {
        if s == "super" {
            base.pop()?;
        } else {
            base.push(s.to_owned());
        }
    }
    Some(base)
}

/// The import edges between the files of one crate: file → file it names, leaving out a file's own
/// ancestors (a module may use what the modules that declare it define).
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(src);
    let mods: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|f| {
            (
                module_of(src, f),
                f.strip_prefix(root())
                    .unwrap_or(f)
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .collect();
    let mut graph = BTreeMap::new();
    for f in &files {
        let here = module_of(src, f);
        let name = mods[&here].clone();
        let code = code_of(&std::fs::read_to_string(f).expect("readable source"));
        let mut edges = BTreeSet::new();
        for p in paths_in(&code) {
            let Some(mut abs) = absolute(&here, &p) else {
                continue;
            };
            // The longest prefix that is a file.
            let target = loop {
                if let Some(t) = mods.get(&abs) {
                    break Some((abs.clone(), t.clone()));
                }
                if abs.pop().is_none() {
                    break None;
                }
            };
            let Some((tmod, tfile)) = target else {
                continue;
            };
            let ancestor = tmod.len() < here.len() && here.starts_with(&tmod);
            if tfile != name && !ancestor {
                edges.insert(tfile);
            }
        }
        graph.insert(name, edges);
    }
    graph
}

/// Strongly connected components with more than one file (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_cycle_finder_sees_a_cycle_and_ignores_ancestors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("rec")).expect("mkdir");
    let files = [
        ("lib.rs", "pub mod rec;\npub mod top;\n"),
        ("rec/mod.rs", "mod a;\nmod b;\npub struct E;\nuse a::X;\n"),
        ("rec/a.rs", "use super::{E, b::Y};\npub struct X;\n"),
        (
            "rec/b.rs",
            "// use super::a::X; in a comment\npub struct Y;\nfn f() { let _ = crate::rec::a::X; }\n",
        ),
        (
            "top.rs",
            "use crate::rec::E;\n#[cfg(test)]\nmod tests { use super::super::rec::b; }\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(src.join(name), text).expect("write");
    }
    let g = import_graph(&src);
    let found = cycles(&g);
    assert_eq!(found.len(), 1, "{found:?} in {g:?}");
    assert!(found[0][0].ends_with("rec/a.rs") && found[0][1].ends_with("rec/b.rs"));
    // Without the call in b.rs the cycle is gone.
    std::fs::write(src.join("rec/b.rs"), "pub struct Y;\n").expect("write");
    assert!(cycles(&import_graph(&src)).is_empty());
}

#[test]
fn no_import_cycle_between_files_of_a_crate() {
    let mut found = Vec::new();
    for m in members() {
        let src = root().join(&m).join("src");
        if src.is_dir() {
            for c in cycles(&import_graph(&src)) {
                found.push(format!("{m}: {}", c.join(" <-> ")));
            }
        }
    }
    assert!(
        found.is_empty(),
        "files that import each other (move what both need into a module of its own):\n{}",
        found.join("\n")
    );
}

/// The `[dependencies]` section's package names of a member's manifest.
fn dependencies(member: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(root().join(member).join("Cargo.toml")).expect("member manifest");
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == "[dependencies]";
            continue;
        }
        if inside && let Some((name, _)) = t.split_once('=') {
            out.push(name.trim().trim_end_matches(".workspace").to_owned());
        }
    }
    out
}

#[test]
fn the_proxy_never_depends_on_the_eval_runner() {
    let deps = dependencies("proxy");
    assert!(deps.iter().any(|d| d == "agentcap-wire"), "{deps:?}");
    assert!(!deps.iter().any(|d| d == "agentcap-evalkit"), "{deps:?}");
    let uses = rust_files(&root().join("proxy/src"))
        .into_iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .contains("agentcap_evalkit")
        })
        .collect::<Vec<_>>();
    assert!(uses.is_empty(), "{uses:?}");
}

#[test]
fn wire_depends_on_nothing_of_ours_and_does_no_io() {
    let deps = dependencies("wire");
    let ours: Vec<_> = deps.iter().filter(|d| d.starts_with("agentcap")).collect();
    assert!(ours.is_empty(), "wire depends on {ours:?}");
    let io = [
        "std::fs",
        "std::net",
        "std::io::Read",
        "std::process",
        "tokio",
        "std::env",
    ];
    let mut found = Vec::new();
    for f in rust_files(&root().join("wire/src")) {
        let code = code_of(&std::fs::read_to_string(&f).expect("readable"));
        for (n, line) in code.lines().enumerate() {
            if let Some(w) = io.iter().find(|w| line.contains(*w)) {
                found.push(format!("{}:{}: {w}", f.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "I/O in wire:\n{}", found.join("\n"));
}

/// Where a SQL statement is built with `format!` / `write!` from a value instead of a `?` parameter.
///
/// A string literal (ordinary or raw) that is the first literal of a `format!`, `format_args!`, `write!` or
/// `writeln!` invocation and reads as SQL (`SELECT … FROM`, `WHERE`, `INSERT INTO`, `UPDATE … SET`,
/// `DELETE FROM`, DDL, `ATTACH '…'`, `COPY … TO '…'`) may interpolate only `const` items
/// (`{SCREAMING_CASE}`: compile-time text no input reaches) and what [`SQL_INTERPOLATION_ALLOWED`] lists.
/// Each hole is reported by its name, or for a positional `{}` by its argument's expression.
fn sql_interpolations(code: &str) -> Vec<(usize, String)> {
    let invocation =
        regex::Regex::new(r"\b(format|format_args|write|writeln)!\s*\(").expect("regex");
    let sql = regex::Regex::new(
        r"\bSELECT\b[\s\S]*\bFROM\b|\bWHERE\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b|\b(CREATE|ALTER|DROP)\s+(OR\s+REPLACE\s+)?(TEMP\s+|TEMPORARY\s+)?(TABLE|VIEW|INDEX|SEQUENCE|MACRO|SCHEMA)\b|\bATTACH\s+(DATABASE\s+)?'|\bCOPY\b[\s\S]*\bTO\s+'",
    )
    .expect("regex");
    let named = regex::Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*\s*=[^=]").expect("regex");
    // A `const` item, a number, or arithmetic over them.
    let constant = |hole: &str| {
        hole.chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && hole.chars().all(|c| {
                c.is_ascii_uppercase()
                    || c.is_ascii_digit()
                    || matches!(c, '_' | ' ' | '+' | '-' | '*')
            })
    };
    let mut found = Vec::new();
    for m in invocation.find_iter(code) {
        let rest = &code[m.end()..];
        let Some((lit, end)) = first_string_literal(rest) else {
            continue;
        };
        if !sql.is_match(&lit) {
            continue;
        }
        let line = code[..m.start()].matches('\n').count() + 1;
        let args = macro_args(&rest[end..]);
        let positional: Vec<&str> = args
            .iter()
            .map(|a| a.as_str())
            .filter(|a| !named.is_match(a))
            .collect();
        let mut next = 0;
        for name in interpolated_names(&lit) {
            let hole = if name.is_empty() {
                next += 1;
                positional.get(next - 1).copied().unwrap_or("?").to_owned()
            } else if let Ok(i) = name.parse::<usize>() {
                positional.get(i).copied().unwrap_or("?").to_owned()
            } else {
                name
            };
            if !constant(&hole) {
                found.push((line, hole));
            }
        }
    }
    found
}

/// The arguments after a macro's format string (`s` starts right after the literal), each trimmed, up to
/// the closing parenthesis.
fn macro_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => break,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur).trim().to_owned());
                continue;
            }
            '"' => {
                cur.push(c);
                while let Some(d) = chars.next() {
                    cur.push(d);
                    match d {
                        '\\' => cur.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_owned());
    out.retain(|a| !a.is_empty());
    out
}

/// The first string literal in `s` (which starts inside a macro's parentheses) and the byte offset after
/// it; escapes are kept as written (only the `{…}` holes matter).
fn first_string_literal(s: &str) -> Option<(String, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => return None,
            b')' | b']' | b'}' => depth -= 1,
            b'r' if b.get(i + 1).is_some_and(|&c| c == b'"' || c == b'#')
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                let open = i + 1 + hashes;
                if b.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let end = s[open + 1..].find(&close)? + open + 1;
                return Some((s[open + 1..end].to_owned(), end + close.len()));
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                return (j < b.len()).then(|| (s[i + 1..j].to_owned(), j + 1));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The names in a format string's `{…}` holes (`{{` is a brace; `{}` and `{0}` give "" and "0").
fn interpolated_names(lit: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = lit.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{' {
            if chars.peek() == Some(&'{') {
                chars.next();
                continue;
            }
            let inner: String = chars.by_ref().take_while(|&c| c != '}').collect();
            let name = inner.split(':').next().unwrap_or("").trim();
            out.push(name.to_owned());
        } else if c == '}' && chars.peek() == Some(&'}') {
            chars.next();
        }
    }
    out
}

/// Like [`code_of`], with a blank line for each line left out, so line numbers are the file's.
fn code_keeping_lines(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if !t.starts_with("//") {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Interpolations into SQL text that are allowed although not `const`: (file, name, why no input reaches it).
const SQL_INTERPOLATION_ALLOWED: &[(&str, &str, &str)] = &[
    (
        "evalkit/src/store.rs",
        "table",
        "one of the constant table names `eval_items`, `eval_grades`",
    ),
    (
        "ui/src/pages/exchanges.rs",
        "filters.sql()",
        "`Filters::sql` joins fixed clauses (columns from a constant table) with `?` placeholders",
    ),
    (
        "ui/src/pages/exchanges.rs",
        "before",
        "one of two constant keyset clauses with `?` placeholders",
    ),
    (
        "ui/src/tail.rs",
        "filters.sql()",
        "`Filters::sql`: fixed clauses with `?` placeholders",
    ),
    (
        "replay/src/cassette.rs",
        "predicate",
        "`agentcap replay --where`: the user's own SQL condition on their own file, run through the read-only gate",
    ),
    (
        "evalkit/src/recorded.rs",
        "predicate",
        "`agentcap datasets from-recording --where`: the user's own SQL condition on their own file, run through the read-only gate",
    ),
    (
        "proxy/src/export.rs",
        "p",
        "`agentcap export --where`: the user's own condition, checked to be one expression, on its own lines inside `WHERE (…)`, the statement run through the read-only gate",
    ),
    (
        "proxy/src/export.rs",
        "select",
        "one of the constant `TABLE_SELECTS` texts",
    ),
    (
        "proxy/src/export.rs",
        "target",
        "a file name the exporter made (table, a UUID) in a scratch directory it created, `'` doubled: `COPY … TO` takes no parameter",
    ),
    (
        "proxy/src/export.rs",
        "options",
        "one of the constants `PARQUET_OPTIONS`, `JSONL_OPTIONS`",
    ),
    (
        "proxy/src/ship.rs",
        "select",
        "one of the constant `SEGMENT_TABLES` statements (rowid bounds as `?` parameters)",
    ),
    (
        "proxy/src/ship.rs",
        "target",
        "a file name the shipper made (table, sequence number) in its spool directory, `'` doubled: `COPY … TO` takes no parameter",
    ),
    (
        "proxy/tests/it/ship.rs",
        "key",
        "a key expression the test itself spells (column names of the recording)",
    ),
    (
        "ui/src/pages/extra.rs",
        "body",
        "the SQL console's own statement, wrapped in a row limit; the read-only filter checks the result",
    ),
];

#[test]
fn the_sql_detector_sees_pasted_values_and_spares_parameters() {
    let code = r##"
fn a(id: &str) -> String { format!("SELECT * FROM t WHERE id = '{id}'") }
fn b() -> String { format!("SELECT * FROM t WHERE id = ? LIMIT {LIMIT}") }
fn c(w: &mut String, n: usize) { let _ = writeln!(w, "DELETE FROM t WHERE n = {}", n); }
fn d(x: &str) -> String { format!(r#"UPDATE t SET a = 1 WHERE b = "{x:?}""#) }
fn e(e: &str) -> String { format!("send {{\"sql\": \"SELECT ...\"}} ({e})") }
fn f(t: &str) -> String { format!("no such table {t}: COPY, ATTACH are disabled") }
fn g(w: &str) -> String { format!("SELECT a FROM t WHERE true{}{w} LIMIT {}", clause(w, ","), N + 1) }
fn h(p: &Path) -> String { format!("ATTACH '{}' AS x", p.display()) }
"##;
    let found: Vec<String> = sql_interpolations(code)
        .into_iter()
        .map(|(line, name)| format!("{line}:{name}"))
        .collect();
    assert_eq!(
        found,
        [
            "2:id",
            "4:n",
            "5:x",
            "8:clause(w, \",\")",
            "8:w",
            "9:p.display()"
        ]
    );
}

#[test]
fn sql_is_built_with_parameters_not_pasted_values() {
    let mut found = Vec::new();
    let mut scanned = 0;
    for m in members() {
        let src = root().join(&m).join("src");
        for f in rust_files(&src) {
            let rel = f
                .strip_prefix(root())
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            let code = code_keeping_lines(&std::fs::read_to_string(&f).expect("readable"));
            scanned += 1;
            for (line, name) in sql_interpolations(&code) {
                let allowed = SQL_INTERPOLATION_ALLOWED
                    .iter()
                    .any(|(file, n, _)| *file == rel && *n == name);
                if !allowed {
                    found.push(format!("{rel}:{line}: {{{name}}}"));
                }
            }
        }
    }
    assert!(scanned > 50, "only {scanned} files under the members' src/");
    assert!(
        found.is_empty(),
        "SQL text built with an interpolated value (bind it to a `?` parameter instead; an identifier or \
         constant no input can reach goes into SQL_INTERPOLATION_ALLOWED with the reason):\n{}",
        found.join("\n")
    );
}

/// The fixed sleeps in `code` that are not inside a loop (by line): a test that sleeps and then looks is
/// guessing how long something takes; a test waits by polling its condition in a loop with a deadline.
/// A block's header is the text between the previous `;`, `{` or `}` and its `{`.
fn sleeps_outside_loops(code: &str) -> Vec<usize> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("sleep(").map(|i| from + i) {
        from = i + 1;
        // A definition or a method named like it (`fn sleep(`, `.sleep_until(`) is no wait.
        let before = code[..i].trim_end();
        if before.ends_with("fn") {
            continue;
        }
        let mut depth = 0usize;
        let mut in_loop = false;
        let mut j = i;
        while j > 0 {
            j -= 1;
            match bytes[j] {
                b'}' => depth += 1,
                b'{' if depth > 0 => depth -= 1,
                b'{' => {
                    let start = code[..j].rfind([';', '{', '}']).map_or(0, |s| s + 1);
                    let header = &code[start..j];
                    let words: Vec<&str> = header
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .collect();
                    if words.iter().any(|w| matches!(*w, "loop" | "while" | "for")) {
                        in_loop = true;
                        break;
                    }
                    if words.contains(&"fn") {
                        break;
                    }
                }
                _ => {}
            }
        }
        if !in_loop {
            found.push(code[..i].matches('\n').count() + 1);
        }
    }
    found
}

#[test]
fn the_sleep_detector_sees_a_guess_and_spares_a_poll() {
    // The samples spell the call `PAUSE(` so that this file holds no sleep call of its own.
    let code = r#"
fn poll() {
    let deadline = Instant::now() + T;
    while !ready() {
        assert!(Instant::now() < deadline);
        std::thread::PAUSE(Duration::from_millis(20));
    }
}
fn guess() {
    start();
    std::thread::PAUSE(Duration::from_millis(300));
    assert!(ready());
}
async fn guess_in_if() {
    if x { tokio::time::PAUSE(Duration::from_millis(300)).await; }
}
async fn poll_in_if() {
    for _ in 0..100 { if !ready() { tokio::time::PAUSE(D).await; } }
}
"#;
    let code = code.replace("PAUSE(", concat!("sle", "ep("));
    assert_eq!(sleeps_outside_loops(&code), [11, 15]);
}

/// Tests wait on conditions, never on a fixed sleep (ARCHITECTURE.md, "Tests"): every sleep in a test
/// file is a step of a polling loop. A fake peer that delays on purpose (a slow upstream) is not a test's
/// wait; such a file goes into the list below with the reason.
#[test]
fn tests_wait_on_conditions_not_on_fixed_sleeps() {
    const DELAYS_ON_PURPOSE: &[(&str, &str)] = &[(
        "cli/tests/it/tidy.rs",
        "this file: the detector and its samples spell `sleep(` in strings",
    )];
    let mut found = Vec::new();
    let mut scanned = 0;
    for m in members() {
        for f in rust_files(&root().join(&m).join("tests")) {
            let rel = f
                .strip_prefix(root())
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            if DELAYS_ON_PURPOSE.iter().any(|(file, _)| *file == rel) {
                continue;
            }
            let text = std::fs::read_to_string(&f).expect("readable");
            let code: String = text
                .lines()
                .map(|l| match l.find("//") {
                    Some(i) if !l[..i].contains('"') => &l[..i],
                    _ => l,
                })
                .collect::<Vec<_>>()
                .join("\n");
            scanned += 1;
            for line in sleeps_outside_loops(&code) {
                found.push(format!("{rel}:{line}"));
            }
        }
    }
    assert!(scanned > 30, "only {scanned} test files");
    assert!(
        found.is_empty(),
        "a fixed sleep outside a polling loop (wait on the condition instead):\n{}",
        found.join("\n")
    );
}
