//! Built-in manifests against the shared reference files: checksums, sizes, row counts, column
//! mapping, and that a corrupted copy fails verification.

use std::path::Path;

use agentcap_datasets::manifest::{self, Manifest, SubsetMethod};
use agentcap_datasets::{DatasetError, Format, detect_format, load_path, simpleqa};

use crate::shared;

fn simpleqa_manifest() -> Manifest {
    manifest::find("simpleqa").expect("simpleqa manifest")
}

#[test]
fn shared_files_match_the_manifests() {
    for (name, dir) in [("simpleqa", "simpleqa"), ("nq-open", "nq-open")] {
        let m = manifest::find(name).unwrap();
        let data = shared(&format!("{dir}/{}", m.file_name));
        manifest::verify_file(&data, &m.sha256).unwrap();
        manifest::verify_file(&data, &m.sha256.to_uppercase()).unwrap();
        let dir = data.parent().unwrap();
        m.verify_dir(dir).unwrap();
        assert_eq!(detect_format(&data).unwrap(), m.format, "{name}");
        assert_eq!(load_path(&data).unwrap().len(), m.rows, "{name}");
    }
}

#[test]
fn key_fields() {
    let m = simpleqa_manifest();
    assert_eq!(m.format, Format::SimpleQaCsv);
    assert_eq!(m.licence, "MIT");
    assert_eq!(
        m.source_url,
        "https://openaipublic.blob.core.windows.net/simple-evals/simple_qa_test_set.csv"
    );
    assert_eq!((m.rows, m.size), (4326, 2_012_910));
    assert_eq!(m.columns.question, simpleqa::QUESTION_COLUMN);
    assert_eq!(m.columns.answer, simpleqa::ANSWER_COLUMN);
    assert_eq!(
        m.columns.metadata.as_deref(),
        Some(simpleqa::METADATA_COLUMN)
    );
    assert!(!m.columns.answer_is_list);
    let subset = m.subset.as_ref().unwrap();
    assert_eq!(
        (subset.method, subset.seed),
        (SubsetMethod::CpythonRandomSample, 0)
    );
    let grader = m.file("grader-template").unwrap();
    assert_eq!(grader.file_name, "grader_template.txt");
    assert!(grader.derived.is_some());

    let nq = manifest::find("nq-open").unwrap();
    assert_eq!(nq.format, Format::NqOpenJsonl);
    assert_eq!(nq.licence, "CC-BY-SA-3.0");
    assert_eq!((nq.rows, nq.size), (3610, 391_316));
    assert!(nq.columns.answer_is_list);
    assert!(nq.columns.metadata.is_none());
}

#[test]
fn grader_template_has_exactly_the_three_placeholders() {
    let m = simpleqa_manifest();
    let file = m.file("grader-template").unwrap();
    let path = shared(&format!("simpleqa/{}", file.file_name));
    manifest::verify_file(&path, &file.sha256).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches('{').count(), 3);
    assert_eq!(text.matches('}').count(), 3);
    for p in ["{question}", "{target}", "{predicted_answer}"] {
        assert_eq!(text.matches(p).count(), 1, "{p}");
    }
    assert!(!text.ends_with('\n'));
}

#[test]
fn corrupted_or_truncated_copies_fail_verification() {
    let m = simpleqa_manifest();
    let original = std::fs::read(shared("simpleqa/simple_qa_test_set.csv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(&m.file_name);

    let mut corrupted = original.clone();
    corrupted[1_000_000] ^= 0x20;
    std::fs::write(&copy, &corrupted).unwrap();
    match manifest::verify_file(&copy, &m.sha256).unwrap_err() {
        DatasetError::Checksum {
            path,
            expected,
            actual,
        } => {
            assert_eq!(path, copy);
            assert_eq!(expected, m.sha256);
            assert_ne!(actual, m.sha256);
            assert_eq!(actual, manifest::sha256_file(&copy).unwrap());
        }
        other => panic!("expected Checksum, got {other:?}"),
    }
    // Same size, so verify_dir gets past the size check and fails on the digest.
    let err = m.verify_dir(dir.path()).unwrap_err();
    assert!(matches!(err, DatasetError::Checksum { .. }), "{err:?}");

    std::fs::write(&copy, &original[..original.len() - 1]).unwrap();
    let err = m.verify_dir(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::Size {
                expected: 2_012_910,
                actual: 2_012_909,
                ..
            }
        ),
        "{err:?}"
    );

    // Correct data file but missing companions.
    std::fs::write(&copy, &original).unwrap();
    let err = m.verify_dir(dir.path()).unwrap_err();
    assert!(matches!(err, DatasetError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("grader_template.txt"), "{err}");

    let err = manifest::verify_file(Path::new("/nonexistent/file"), &m.sha256).unwrap_err();
    assert!(matches!(err, DatasetError::Io { .. }));
}
