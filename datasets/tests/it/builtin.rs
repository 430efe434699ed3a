//! The team-written sets compiled into the crate.

use std::collections::HashSet;

use agentcap_datasets::{BUILTIN_SETS, builtin_set};

const TOPICS: [&str; 10] = [
    "Science and technology",
    "Politics",
    "Art",
    "Other",
    "Geography",
    "Sports",
    "Music",
    "TV shows",
    "History",
    "Video games",
];
const ANSWER_TYPES: [&str; 5] = ["Person", "Number", "Date", "Place", "Other"];

#[test]
fn mini_qa_is_well_formed() {
    let items = builtin_set("mini-qa").expect("mini-qa exists");
    assert!((40..=60).contains(&items.len()), "{} items", items.len());
    let mut questions = HashSet::new();
    for (i, it) in items.iter().enumerate() {
        assert_eq!(it.id, format!("mini-qa-{:03}", i + 1));
        assert!(
            questions.insert(it.question.as_str()),
            "duplicate question {}",
            it.id
        );
        assert!(it.question.ends_with('?'), "{}", it.id);
        assert!((1..=3).contains(&it.answers.len()), "{}", it.id);
        for a in &it.answers {
            assert_eq!(a.trim(), a, "{}: answers are trimmed", it.id);
            assert!(a.chars().count() <= 40, "{}: answers are short", it.id);
        }
        let meta = it.metadata.as_object().unwrap();
        assert_eq!(meta.len(), 2, "{}", it.id);
        assert!(
            TOPICS.contains(&meta["topic"].as_str().unwrap()),
            "{}",
            it.id
        );
        assert!(
            ANSWER_TYPES.contains(&meta["answer_type"].as_str().unwrap()),
            "{}",
            it.id
        );
    }
    let used: HashSet<&str> = items
        .iter()
        .map(|it| it.metadata["answer_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        used.len(),
        ANSWER_TYPES.len(),
        "every answer type is represented"
    );
}

#[test]
fn every_listed_set_loads_and_unknown_names_are_none() {
    for name in BUILTIN_SETS {
        assert!(builtin_set(name).is_some_and(|s| !s.is_empty()), "{name}");
    }
    assert!(builtin_set("simpleqa").is_none());
    assert!(builtin_set("").is_none());
}

#[test]
fn sets_readme_states_origin_and_licence() {
    let readme = std::fs::read_to_string(crate::manifest_dir().join("sets/README.md")).unwrap();
    assert!(readme.contains("written by the agentcap team"));
    assert!(readme.contains("Apache License 2.0"));
}
