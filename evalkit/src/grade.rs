//! Grading (placeholder until the grading module of the evalkit core lands): judge-reply parsing,
//! the grader prompt, SQuAD-style normalisation and the exact grader, with the agreed signatures.

/// The grade of one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// The answer matches the gold target.
    Correct,
    /// The answer contradicts the gold target.
    Incorrect,
    /// The answer abstains.
    NotAttempted,
}

impl Grade {
    /// `"correct"`, `"incorrect"` or `"not_attempted"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Correct => "correct",
            Grade::Incorrect => "incorrect",
            Grade::NotAttempted => "not_attempted",
        }
    }

    /// Inverse of [`Grade::as_str`].
    pub fn parse(s: &str) -> Option<Grade> {
        match s {
            "correct" => Some(Grade::Correct),
            "incorrect" => Some(Grade::Incorrect),
            "not_attempted" => Some(Grade::NotAttempted),
            _ => None,
        }
    }
}

/// How a judge reply is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JudgeParse {
    /// A bare `A` / `B` / `C` (or the whole words), anything else is unparseable.
    Strict,
    /// simple-evals' `re.search(r"(A|B|C)", reply)`, defaulting to `C`.
    SimpleEvalsCompat,
}

/// Reads a judge reply; `None` means unparseable (never defaulted in strict mode).
pub fn parse_judge_reply(reply: &str, mode: JudgeParse) -> Option<Grade> {
    let letter = |c: char| match c {
        'A' => Some(Grade::Correct),
        'B' => Some(Grade::Incorrect),
        'C' => Some(Grade::NotAttempted),
        _ => None,
    };
    match mode {
        JudgeParse::Strict => {
            let t = reply.trim();
            match t {
                "A" | "B" | "C" => t.chars().next().and_then(letter),
                "CORRECT" => Some(Grade::Correct),
                "INCORRECT" => Some(Grade::Incorrect),
                "NOT_ATTEMPTED" | "NOT ATTEMPTED" => Some(Grade::NotAttempted),
                _ => None,
            }
        }
        JudgeParse::SimpleEvalsCompat => {
            reply.chars().find_map(letter).or(Some(Grade::NotAttempted))
        }
    }
}

/// Fills `{question}`, `{target}` and `{predicted_answer}` (one pass, so replacement text is never
/// re-scanned, like Python's `str.format`).
pub fn render_grader_prompt(
    template: &str,
    question: &str,
    target: &str,
    predicted_answer: &str,
) -> String {
    let mut out = String::with_capacity(template.len() + question.len() + predicted_answer.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (value, len) = if tail.starts_with("{question}") {
            (question, "{question}".len())
        } else if tail.starts_with("{target}") {
            (target, "{target}".len())
        } else if tail.starts_with("{predicted_answer}") {
            (predicted_answer, "{predicted_answer}".len())
        } else {
            ("{", 1)
        };
        out.push_str(value);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// SQuAD-style normalisation: lower-case, drop punctuation, drop articles, collapse whitespace.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect();
    no_punct
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Normalised abstentions the exact grader reads as not attempted.
const ABSTENTIONS: &[&str] = &[
    "i don t know",
    "i do not know",
    "unknown",
    "not sure",
    "i m not sure",
    "i cannot answer",
    "i can t answer",
];

/// Exact grader: correct on a normalised match with any gold, not attempted for an empty answer or
/// a recognised abstention, incorrect otherwise.
pub fn exact_grade(predicted: &str, golds: &[String]) -> Grade {
    let p = normalize_answer(predicted);
    if p.is_empty() || ABSTENTIONS.iter().any(|a| p == *a) {
        return Grade::NotAttempted;
    }
    if golds.iter().any(|g| normalize_answer(g) == p) {
        Grade::Correct
    } else {
        Grade::Incorrect
    }
}
