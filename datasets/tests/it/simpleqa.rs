//! SimpleQA CSV loading: row count, verbatim text for the tricky rows SOURCE.md lists, metadata
//! parsing of every row, and row/line numbers in errors.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use agentcap_datasets::{DatasetError, QaItem, simpleqa};
use serde_json::{Value, json};

use crate::{simpleqa_csv, temp_file};

fn items() -> &'static [QaItem] {
    static ITEMS: OnceLock<Vec<QaItem>> = OnceLock::new();
    ITEMS.get_or_init(|| simpleqa::load(&simpleqa_csv()).expect("load SimpleQA"))
}

fn item(id: usize) -> &'static QaItem {
    let it = &items()[id];
    assert_eq!(it.id, id.to_string());
    it
}

#[test]
fn has_4326_rows_with_row_index_ids_and_one_answer() {
    let items = items();
    assert_eq!(items.len(), 4326);
    for (i, it) in items.iter().enumerate() {
        assert_eq!(it.id, i.to_string());
        assert_eq!(it.answers.len(), 1, "row {i}");
        assert!(!it.question.trim().is_empty() && !it.answers[0].trim().is_empty());
    }
    let unique: HashSet<&str> = items.iter().map(|it| it.question.as_str()).collect();
    assert_eq!(unique.len(), 4326, "every problem is unique");
    assert_eq!(
        items[0].question,
        "Who received the IEEE Frank Rosenblatt Award in 2010?"
    );
    assert_eq!(items[0].answers, ["Michio Sugeno"]);
}

#[test]
fn newlines_inside_quoted_fields_are_kept() {
    let with_newline: Vec<&str> = items()
        .iter()
        .filter(|it| it.question.contains('\n') || it.answers[0].contains('\n'))
        .map(|it| it.id.as_str())
        .collect();
    assert_eq!(
        with_newline,
        ["1362", "2428", "2952", "3696", "4099", "4116"]
    );
    assert_eq!(item(1362).answers, ["LET function\n"]);
    assert_eq!(
        item(3696).answers,
        ["University of Lund, Sweden \nChinese Culture University in Taipe"]
    );
    // The row after a multi-line record is still aligned.
    assert_eq!(
        item(3697).id,
        "3697",
        "ids stay equal to row indices after embedded newlines"
    );
}

#[test]
fn quotes_and_commas_are_verbatim() {
    assert_eq!(
        item(2).question,
        "What's the name of the women's liberal arts college in Cambridge, Massachusetts?"
    );
    assert_eq!(
        item(6).question,
        "What were the month and year when Obama told Christianity Today, \"I am a Christian, \
         and I am a devout Christian. I believe in the redemptive death and resurrection of \
         Jesus Christ\"?"
    );
    assert_eq!(
        item(4099).question,
        "In Season 3, Episode 7 of \"Love Is Blind\" (the American version), what week was \
         \"Impress the Parents\" released?"
    );
    assert_eq!(item(4099).answers, ["Week 2\n"]);
    assert_eq!(item(42).answers, ["Season 2, Episode 9 \"Placebo Effect\""]);
    assert_eq!(item(55).answers, ["13° 15' 4.38\" S, 34° 18' 5.50\" E."]);
}

#[test]
fn leading_and_trailing_whitespace_is_not_trimmed() {
    assert_eq!(
        item(19).answers,
        [" Quebec Youth Parliament prime minister"]
    );
    assert_eq!(item(52).answers, [" April 2"]);
    assert_eq!(
        item(86).answers,
        ["William J. Page and Shailaja Shivprasad "]
    );
    let padded = items()
        .iter()
        .filter(|it| it.question.trim() != it.question || it.answers[0].trim() != it.answers[0])
        .count();
    assert_eq!(
        padded, 211,
        "SOURCE.md: 211 rows have surrounding whitespace"
    );
}

#[test]
fn non_ascii_text_and_lengths() {
    assert_eq!(item(8).answers, ["Jóhanna Sigurðardóttir"]);
    assert!(item(4).question.starts_with("According to Karl Küchler,"));
    let non_ascii = items()
        .iter()
        .filter(|it| !it.question.is_ascii() || !it.answers[0].is_ascii())
        .count();
    assert_eq!(non_ascii, 423);
    let longest_answer = items()
        .iter()
        .max_by_key(|it| it.answers[0].chars().count())
        .unwrap();
    assert_eq!(longest_answer.id, "3731");
    assert_eq!(longest_answer.answers[0].chars().count(), 323);
    let longest_problem = items().iter().map(|it| it.question.chars().count()).max();
    assert_eq!(longest_problem, Some(381));
}

#[test]
fn metadata_of_every_row_parses_to_topic_answer_type_urls() {
    let mut topics: BTreeMap<&str, usize> = BTreeMap::new();
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for it in items() {
        let obj = it.metadata.as_object().expect("metadata is an object");
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys, ["topic", "answer_type", "urls"], "row {}", it.id);
        *topics.entry(obj["topic"].as_str().unwrap()).or_default() += 1;
        *types
            .entry(obj["answer_type"].as_str().unwrap())
            .or_default() += 1;
        let urls = obj["urls"].as_array().expect("urls is a list");
        assert!(
            (2..=7).contains(&urls.len()),
            "row {}: {} urls",
            it.id,
            urls.len()
        );
        assert!(urls.iter().all(Value::is_string));
    }
    let expect_topics = BTreeMap::from([
        ("Science and technology", 858),
        ("Politics", 709),
        ("Art", 550),
        ("Other", 475),
        ("Geography", 424),
        ("Sports", 368),
        ("Music", 341),
        ("TV shows", 293),
        ("History", 173),
        ("Video games", 135),
    ]);
    assert_eq!(topics, expect_topics);
    let expect_types = BTreeMap::from([
        ("Date", 1418),
        ("Person", 1041),
        ("Other", 777),
        ("Number", 663),
        ("Place", 427),
    ]);
    assert_eq!(types, expect_types);
}

#[test]
fn metadata_with_double_quoted_strings_and_escapes() {
    // Row 18: a URL containing `'`, so Python wrote it with double quotes.
    assert_eq!(
        item(18).metadata["urls"][1],
        "https://en.wikipedia.org/wiki/Andrew_Tate#:~:text=Tate's%20kickboxing%20nickname%20was%20%22King%20Cobra%22."
    );
    // Row 67: single-quoted text with \' , a literal `"`, non-ASCII and a \u200a escape.
    let first = item(67).metadata["urls"][0].as_str().unwrap();
    assert!(first.starts_with("In 1994, Trockel created the Frankfurter Engel monument"));
    assert!(first.contains("Carsten Höller"));
    assert!(first.contains("one of the exhibition's outbuildings"));
    assert!(first.contains("machine knitted \"paintings\"."));
    assert!(first.ends_with("[5]:\u{200a}252"));
    // Row 4: a `\n` escape inside a URL string; row 1046: a `\t` escape.
    assert_eq!(
        item(4).metadata["urls"][0],
        "https://www.gutenberg.org/files/60408/60408-h/60408-h.htm\nhttps://en.wikipedia.org/wiki/Achilleion_(Corfu)"
    );
    assert_eq!(
        item(1046).metadata,
        json!({
            "topic": "Geography",
            "answer_type": "Place",
            "urls": [
                "https://en.wikipedia.org/wiki/454_Mathesis",
                "https://en.wikipedia.org/wiki/454_MathesisDiscovery site\tHeidelberg (024)",
                "https://markandrewholmes.com/mathesis.html"
            ]
        })
    );
}

#[test]
fn naive_quote_swapping_would_fail_where_the_real_parser_succeeds() {
    // SOURCE.md: turning ' into " and parsing JSON breaks on the 174 rows with "-strings.
    let mut csv = csv::Reader::from_path(simpleqa_csv()).unwrap();
    let mut with_double_quotes = 0;
    let mut naive_failures = 0;
    for record in csv.records() {
        let raw = record.unwrap()[0].to_owned();
        if raw.contains('"') {
            with_double_quotes += 1;
        }
        let naive = raw
            .replace('\'', "\"")
            .replace("True", "true")
            .replace("None", "null");
        if serde_json::from_str::<Value>(&naive).is_err() {
            naive_failures += 1;
        }
        simpleqa::parse_metadata(&raw).expect("real parser handles every row");
    }
    assert_eq!(with_double_quotes, 174);
    assert!(naive_failures >= 174, "naive failures: {naive_failures}");
}

const HEADER: &str = "metadata,problem,answer\n";
const META: &str = "\"{'topic': 'Art', 'answer_type': 'Person', 'urls': ['https://a']}\"";

#[test]
fn bad_metadata_reports_row_and_line_after_a_multiline_row() {
    let csv = format!(
        "{HEADER}{META},Q0,A0\n{META},\"Q1\nstill Q1\",A1\n\"{{'topic': 'Art',}}\",Q2,A2\n\"{{'topic': 'Art'\",Q3,A3\n"
    );
    let err = simpleqa::parse(csv.as_bytes()).unwrap_err();
    assert_eq!(err.row(), Some(3));
    assert_eq!(
        err.line(),
        Some(6),
        "header=1, row0=2, row1=3-4, row2=5, row3=6"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("row 3 (line 6): invalid Python literal"),
        "{msg}"
    );

    let (_dir, path) = temp_file("bad.csv", csv.as_bytes());
    let err = simpleqa::load(&path).unwrap_err();
    assert!(matches!(err, DatasetError::File { .. }));
    assert_eq!((err.row(), err.line()), (Some(3), Some(6)));
    let msg = err.to_string();
    assert!(msg.contains("bad.csv: row 3 (line 6)"), "{msg}");
}

#[test]
fn structural_csv_errors_carry_positions() {
    // Wrong number of fields on the second data row.
    let csv = format!("{HEADER}{META},Q0,A0\n{META},Q1\n");
    let err = simpleqa::parse(csv.as_bytes()).unwrap_err();
    assert_eq!((err.row(), err.line()), (Some(1), Some(3)));
    assert!(
        err.to_string().contains("row 1 (line 3): CSV error"),
        "{err}"
    );

    // Invalid UTF-8.
    let mut bytes = format!("{HEADER}{META},Q0,A0\n{META},Q").into_bytes();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"1,A1\n");
    let err = simpleqa::parse(bytes.as_slice()).unwrap_err();
    assert_eq!((err.row(), err.line()), (Some(1), Some(3)));

    // Empty answer.
    let csv = format!("{HEADER}{META},Q0,\n");
    let err = simpleqa::parse(csv.as_bytes()).unwrap_err();
    assert_eq!(err.row(), Some(0));
    assert!(
        err.to_string().contains("field \"answer\" is empty"),
        "{err}"
    );

    // Missing column.
    let err = simpleqa::parse("metadata,question,answer\n".as_bytes()).unwrap_err();
    match err {
        DatasetError::MissingColumn { column, header } => {
            assert_eq!(column, "problem");
            assert_eq!(header, ["metadata", "question", "answer"]);
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
}

#[test]
fn bom_and_crlf_are_tolerated() {
    let csv = format!("\u{feff}metadata,problem,answer\r\n{META},Q0,\" A0 \"\r\n");
    let items = simpleqa::parse(csv.as_bytes()).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].answers, [" A0 "]);
    assert_eq!(items[0].metadata["topic"], "Art");
}
