//! Format detection by extension and content sniffing, and `load_path` dispatch.

use agentcap_datasets::{DatasetError, Format, builtin_set, detect_format, load_path};

use crate::{nq_open_jsonl, simpleqa_csv, temp_file};

#[test]
fn real_files_are_detected() {
    assert_eq!(detect_format(&simpleqa_csv()).unwrap(), Format::SimpleQaCsv);
    assert_eq!(
        detect_format(&nq_open_jsonl()).unwrap(),
        Format::NqOpenJsonl
    );
    assert_eq!(load_path(&nq_open_jsonl()).unwrap().len(), 3610);
}

#[test]
fn jsonl_shapes_and_unknown_extensions() {
    let nq = b"\n{\"question\": \"q\", \"answer\": [\"a\"]}\n";
    let generic = b"{\"id\": \"x\", \"question\": \"q\", \"answers\": [\"a\"]}\n";
    let single = b"{\"question\": \"q\", \"answer\": \"a\"}\n";
    for (name, bytes, want) in [
        ("a.jsonl", &nq[..], Format::NqOpenJsonl),
        ("a.JSONL", &generic[..], Format::Jsonl),
        ("a.ndjson", &single[..], Format::Jsonl),
        ("a.txt", &nq[..], Format::NqOpenJsonl),
        ("noext", &generic[..], Format::Jsonl),
    ] {
        let (_dir, path) = temp_file(name, bytes);
        assert_eq!(detect_format(&path).unwrap(), want, "{name}");
        assert_eq!(load_path(&path).unwrap().len(), 1, "{name}");
    }
    let csv = b"metadata,problem,answer\n\"{'topic': 'Art'}\",Q,A\n";
    let (_dir, path) = temp_file("data.dat", csv);
    assert_eq!(detect_format(&path).unwrap(), Format::SimpleQaCsv);
    assert_eq!(load_path(&path).unwrap()[0].answers, ["A"]);
}

#[test]
fn undetectable_files_are_rejected_with_a_reason() {
    for (name, bytes, reason) in [
        ("x.csv", &b"question,answer\nq,a\n"[..], "lacks SimpleQA"),
        ("x.jsonl", &b"\n\n"[..], "no non-blank line"),
        ("x.jsonl", &b"[1, 2]\n"[..], "not a JSON object"),
        ("x.json", &b"{oops\n"[..], "not JSON"),
        ("x.bin", &b""[..], "empty"),
        ("x.bin", &b"  \n \n"[..], "empty"),
    ] {
        let (_dir, path) = temp_file(name, bytes);
        let err = detect_format(&path).unwrap_err();
        match &err {
            DatasetError::UnknownFormat { reason: r, .. } => {
                assert!(r.contains(reason), "{name}: {r}");
            }
            other => panic!("{name}: expected UnknownFormat, got {other:?}"),
        }
        assert!(err.to_string().contains(name));
    }
    let err = detect_format(std::path::Path::new("/nonexistent/x.csv")).unwrap_err();
    assert!(matches!(err, DatasetError::Io { .. }));
}

#[test]
fn format_names_round_trip() {
    for f in Format::ALL {
        assert_eq!(f.as_str().parse::<Format>().unwrap(), f);
        assert_eq!(f.to_string(), f.as_str());
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, format!("\"{}\"", f.as_str()));
    }
    assert!("csv".parse::<Format>().is_err());
}

#[test]
fn the_committed_set_file_loads_through_load_path() {
    let path = crate::manifest_dir().join("sets/mini-qa.jsonl");
    assert_eq!(detect_format(&path).unwrap(), Format::Jsonl);
    assert_eq!(Some(load_path(&path).unwrap()), builtin_set("mini-qa"));
}
