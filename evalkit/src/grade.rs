//! Grading: reading an LLM judge's reply, filling the SimpleQA grader template, and the exact
//! (normalised string match) grader used when no judge is configured.
//!
//! Two ways of reading a judge reply exist on purpose ([`JudgeParse`]): `Strict` never turns
//! garbage into a grade (an unreadable reply is reported as unparseable), while
//! `SimpleEvalsCompat` reproduces simple-evals bit for bit so numbers can be compared with
//! published runs, quirks included.
//!
//! ```
//! use agentcap_evalkit::grade::{exact_grade, parse_judge_reply, Grade, JudgeParse};
//!
//! assert_eq!(parse_judge_reply(" B\n", JudgeParse::Strict), Some(Grade::Incorrect));
//! assert_eq!(parse_judge_reply("CORRECT", JudgeParse::SimpleEvalsCompat), Some(Grade::NotAttempted));
//! assert_eq!(exact_grade("The Eiffel Tower.", &["eiffel tower".to_string()]), Grade::Correct);
//! ```

use serde::{Deserialize, Serialize};

/// The grade of one answer, as SimpleQA defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// The answer fully contains the gold target and contradicts nothing (judge letter `A`).
    Correct,
    /// The answer contradicts the gold target (judge letter `B`).
    Incorrect,
    /// The answer does not give the important information, nor contradicts it (judge letter `C`).
    NotAttempted,
}

impl Grade {
    /// Every grade, in the judge's letter order A, B, C.
    pub const ALL: [Grade; 3] = [Grade::Correct, Grade::Incorrect, Grade::NotAttempted];

    /// `"correct"`, `"incorrect"` or `"not_attempted"` (the serde spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Correct => "correct",
            Grade::Incorrect => "incorrect",
            Grade::NotAttempted => "not_attempted",
        }
    }

    /// Inverse of [`Grade::as_str`]; exact spelling only.
    pub fn parse(s: &str) -> Option<Grade> {
        Grade::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// The letter the SimpleQA judge uses for this grade: `'A'`, `'B'` or `'C'`.
    pub fn letter(self) -> char {
        match self {
            Grade::Correct => 'A',
            Grade::Incorrect => 'B',
            Grade::NotAttempted => 'C',
        }
    }

    /// Inverse of [`Grade::letter`] (upper-case only).
    pub fn from_letter(c: char) -> Option<Grade> {
        Grade::ALL.into_iter().find(|g| g.letter() == c)
    }
}

/// How a judge reply is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JudgeParse {
    /// The trimmed reply must be exactly `A`, `B` or `C`, or exactly one of the words the template
    /// names (`CORRECT`, `INCORRECT`, `NOT_ATTEMPTED`, `NOT ATTEMPTED`). Anything else, lower case
    /// included, is unparseable.
    Strict,
    /// simple-evals' reading: the first `A`, `B` or `C` anywhere in the reply, else `C`.
    SimpleEvalsCompat,
}

/// Reads a judge reply into a grade.
///
/// * [`JudgeParse::Strict`]: the reply, trimmed of surrounding whitespace, must be exactly `"A"`
///   (correct), `"B"` (incorrect) or `"C"` (not attempted). One documented fallback: the trimmed
///   reply is exactly one of the whole words `CORRECT`, `INCORRECT`, `NOT_ATTEMPTED` or
///   `NOT ATTEMPTED` (case-sensitive), which map to their grade. Anything else returns `None`
///   ("unparseable"): it is never defaulted. Lower-case letters (`"a"`) are deliberately not
///   accepted, because the template asks for upper-case letters and a lower-case reply means the
///   judge did not follow it.
/// * [`JudgeParse::SimpleEvalsCompat`]: exactly simple-evals'
///   `re.search(r"(A|B|C)", reply)` — the first of those three characters anywhere in the reply —
///   defaulting to `C` when none occurs. It always returns `Some`. Its quirks are kept on purpose:
///   `"CORRECT"` reads as C (not attempted), `"NOT_ATTEMPTED"` as A (correct), `"Based on ..."` as
///   B (the `B` of "Based"), and `""` as C.
pub fn parse_judge_reply(reply: &str, mode: JudgeParse) -> Option<Grade> {
    match mode {
        JudgeParse::Strict => match reply.trim() {
            "A" | "CORRECT" => Some(Grade::Correct),
            "B" | "INCORRECT" => Some(Grade::Incorrect),
            "C" | "NOT_ATTEMPTED" | "NOT ATTEMPTED" => Some(Grade::NotAttempted),
            _ => None,
        },
        JudgeParse::SimpleEvalsCompat => Some(
            reply
                .chars()
                .find_map(Grade::from_letter)
                .unwrap_or(Grade::NotAttempted),
        ),
    }
}

/// Fills the official grader template's three placeholders `{question}`, `{target}` and
/// `{predicted_answer}`.
///
/// Python `str.format` semantics for exactly these names: one left-to-right pass, so braces inside
/// the substituted text are never expanded again, and `{{` / `}}` stand for a literal `{` / `}`.
/// Any other brace is copied unchanged (the official template has none; `str.format` would raise).
/// The substituted strings are inserted verbatim (no trimming), as simple-evals does.
pub fn render_grader_prompt(
    template: &str,
    question: &str,
    target: &str,
    predicted_answer: &str,
) -> String {
    const FIELDS: [&str; 3] = ["{question}", "{target}", "{predicted_answer}"];
    let values = [question, target, predicted_answer];
    let mut out = String::with_capacity(
        template.len() + question.len() + target.len() + predicted_answer.len(),
    );
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if let Some(k) = FIELDS.iter().position(|f| tail.starts_with(f)) {
            out.push_str(values[k]);
            rest = &tail[FIELDS[k].len()..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Characters outside ASCII that [`normalize_answer`] also treats as punctuation: typographic
/// quotes, dashes, ellipsis, guillemets and inverted marks, so "O’Brien" matches "O'Brien".
const EXTRA_PUNCTUATION: &[char] = &[
    '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}', '\u{201C}', '\u{201D}', '\u{201E}', '\u{201F}',
    '\u{2032}', '\u{2033}', '\u{2010}', '\u{2011}', '\u{2012}', '\u{2013}', '\u{2014}', '\u{2015}',
    '\u{2026}', '\u{00AB}', '\u{00BB}', '\u{2039}', '\u{203A}', '\u{00BF}', '\u{00A1}', '\u{00B7}',
];

/// SQuAD-style answer normalisation: lower-case, drop punctuation, drop the articles `a`, `an`,
/// `the`, collapse whitespace.
///
/// Punctuation is ASCII punctuation (Python's `string.punctuation`, as in the SQuAD script) plus
/// the typographic marks in a short fixed list (curly quotes, dashes, ellipsis, guillemets, `¿`,
/// `¡`, `·`). Punctuation is deleted, not replaced by a space, as in SQuAD ("U.S." -> "us").
/// Articles are removed as whole whitespace-separated words after punctuation removal.
pub fn normalize_answer(s: &str) -> String {
    let cleaned: String = s
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation() && !EXTRA_PUNCTUATION.contains(c))
        .collect();
    cleaned
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Normalised answers (see [`normalize_answer`]: apostrophes are gone, articles dropped) that the
/// exact grader reads as an abstention. The whole normalised prediction must equal one of these.
pub const ABSTENTIONS: &[&str] = &[
    "i dont know",
    "i do not know",
    "dont know",
    "do not know",
    "i dont know answer",
    "i do not know answer",
    "unknown",
    "not sure",
    "unsure",
    "im not sure",
    "i am not sure",
    "no idea",
    "i have no idea",
    "i cannot answer",
    "i cant answer",
    "i can not answer",
    "i cannot answer that",
    "i cannot answer this question",
    "cannot answer",
    "cannot be determined",
    "no answer",
    "not known",
];

/// The exact grader (no judge): [`Grade::Correct`] if the normalised prediction equals the
/// normalised form of any gold answer; otherwise [`Grade::NotAttempted`] if the normalised
/// prediction is empty or is one of the [`ABSTENTIONS`]; otherwise [`Grade::Incorrect`].
///
/// A gold match wins over an abstention, so a gold answer of "Unknown" can be answered correctly.
/// Gold answers that normalise to the empty string never match.
pub fn exact_grade(predicted: &str, golds: &[String]) -> Grade {
    let p = normalize_answer(predicted);
    if p.is_empty() {
        return Grade::NotAttempted;
    }
    if golds.iter().any(|g| normalize_answer(g) == p) {
        Grade::Correct
    } else if ABSTENTIONS.contains(&p.as_str()) {
        Grade::NotAttempted
    } else {
        Grade::Incorrect
    }
}
