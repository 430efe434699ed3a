//! Knowledge mode: answer known dataset questions right with a configured probability, deterministically.

use std::collections::HashMap;
use std::path::Path;

use agentcap_datasets::QaItem;

use crate::det;
pub use crate::judge::is_abstention;

/// What the simulated model says to a known question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The gold answer.
    Correct(String),
    /// A plausible wrong answer (another question's gold answer of the same type).
    Wrong(String),
    /// An abstention.
    Abstain(String),
}

impl Verdict {
    /// The answer text.
    pub fn text(&self) -> &str {
        match self {
            Verdict::Correct(s) | Verdict::Wrong(s) | Verdict::Abstain(s) => s,
        }
    }
}

const ABSTENTIONS: [&str; 3] = [
    "I don't know.",
    "I'm not sure, I could not find a reliable answer to that.",
    "I don't have enough information to answer that.",
];

/// Lowercase, collapse whitespace, trim.
pub fn normalize_question(q: &str) -> String {
    q.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The loaded dataset and its indexes.
#[derive(Debug)]
pub struct Knowledge {
    items: Vec<QaItem>,
    by_question: HashMap<String, usize>,
    by_type: HashMap<String, Vec<usize>>,
    seed: u64,
    p_closed: f64,
    p_search: f64,
    abstain_ratio: f64,
}

impl Knowledge {
    /// Loads `path` (any format the datasets crate detects).
    pub fn load(
        path: &Path,
        seed: u64,
        p_closed: f64,
        p_search: f64,
        abstain_ratio: f64,
    ) -> Result<Self, agentcap_datasets::DatasetError> {
        let items = agentcap_datasets::load_path(path)?;
        Ok(Self::new(items, seed, p_closed, p_search, abstain_ratio))
    }

    /// Builds the indexes over `items`.
    pub fn new(
        items: Vec<QaItem>,
        seed: u64,
        p_closed: f64,
        p_search: f64,
        abstain_ratio: f64,
    ) -> Self {
        let mut by_question = HashMap::with_capacity(items.len());
        let mut by_type: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, it) in items.iter().enumerate() {
            by_question
                .entry(normalize_question(&it.question))
                .or_insert(i);
            by_type.entry(answer_type(it)).or_default().push(i);
        }
        Self {
            items,
            by_question,
            by_type,
            seed,
            p_closed,
            p_search,
            abstain_ratio,
        }
    }

    /// Number of questions known.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no question is known.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Finds the known question in `text`: an exact (normalised) match, else the longest known question
    /// contained in it (prompt templates wrap the question).
    pub fn find(&self, text: &str) -> Option<&QaItem> {
        let norm = normalize_question(text);
        if let Some(&i) = self.by_question.get(&norm) {
            return Some(&self.items[i]);
        }
        self.by_question
            .iter()
            .filter(|(q, _)| q.len() >= 12 && norm.contains(q.as_str()))
            .max_by_key(|(q, _)| q.len())
            .map(|(_, &i)| &self.items[i])
    }

    /// The simulated model's answer to `item`, with or without a search connector: correct with
    /// probability `p_search` / `p_closed`, otherwise an abstention (`abstain_ratio`) or a wrong answer.
    pub fn answer(&self, item: &QaItem, with_search: bool) -> Verdict {
        let seed = self.seed.to_le_bytes();
        let q = item.question.as_bytes();
        let sig: &[u8] = if with_search { b"search" } else { b"closed" };
        let p = if with_search {
            self.p_search
        } else {
            self.p_closed
        };
        let gold = item
            .answers
            .first()
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if det::unit(&[&seed, b"correct", q, sig]) < p {
            return Verdict::Correct(gold);
        }
        if det::unit(&[&seed, b"abstain", q, sig]) < self.abstain_ratio {
            let i = det::index(&[&seed, b"abstention", q, sig], ABSTENTIONS.len());
            return Verdict::Abstain(ABSTENTIONS[i].to_string());
        }
        let pool = self
            .by_type
            .get(&answer_type(item))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // A wrong answer must neither give a gold answer nor read as an abstention, as the
        // simulated judge reads them.
        let target = item.answers.join(crate::judge::TARGET_SEPARATOR);
        for attempt in 0u8..8 {
            if pool.is_empty() {
                break;
            }
            let j = pool[det::index(&[&seed, b"wrong", q, sig, &[attempt]], pool.len())];
            let cand = self.items[j]
                .answers
                .first()
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            if !cand.is_empty()
                && !is_abstention(&cand)
                && !crate::judge::gives_target(&cand, &target)
            {
                return Verdict::Wrong(cand);
            }
        }
        Verdict::Wrong(format!("Not {gold}"))
    }
}

fn answer_type(it: &QaItem) -> String {
    it.metadata
        .get("answer_type")
        .and_then(|v| v.as_str())
        .unwrap_or("Other")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items(n: usize) -> Vec<QaItem> {
        (0..n)
            .map(|i| QaItem {
                id: i.to_string(),
                question: format!("What is the secret number of item {i}?"),
                answers: vec![format!("{i}")],
                metadata: json!({"answer_type": "Number", "topic": "Other"}),
            })
            .collect()
    }

    #[test]
    fn rates_follow_the_configured_probabilities() {
        let k = Knowledge::new(items(4000), 1, 0.23, 0.75, 0.3);
        let rate = |search: bool| {
            k.items
                .iter()
                .filter(|it| matches!(k.answer(it, search), Verdict::Correct(_)))
                .count() as f64
                / 4000.0
        };
        let (closed, search) = (rate(false), rate(true));
        assert!((closed - 0.23).abs() < 0.03, "{closed}");
        assert!((search - 0.75).abs() < 0.03, "{search}");
    }

    #[test]
    fn answers_are_deterministic_and_wrong_answers_differ_from_gold() {
        let k = Knowledge::new(items(200), 9, 0.0, 0.0, 0.0);
        for it in &k.items {
            let a = k.answer(it, false);
            assert_eq!(a, k.answer(it, false));
            match a {
                Verdict::Wrong(w) => assert_ne!(w, it.answers[0]),
                other => panic!("expected a wrong answer, got {other:?}"),
            }
        }
    }

    #[test]
    fn finds_questions_inside_templates() {
        let k = Knowledge::new(items(50), 0, 0.5, 0.5, 0.5);
        let found = k
            .find("Answer briefly.\n\nWhat is the secret number of item 42?  ")
            .unwrap();
        assert_eq!(found.id, "42");
        assert!(k.find("unrelated").is_none());
        assert!(is_abstention("I don't know."));
        assert!(!is_abstention("Paris"));
    }
}
