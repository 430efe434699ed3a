//! The simulated SimpleQA judge, pure: reading the grader prompt, normalising answers, grading A / B / C.
//! The chat endpoint serves it and knowledge mode uses it to draw wrong answers the judge grades wrong.

/// The three parts of a SimpleQA grader prompt.
#[derive(Debug, PartialEq, Eq)]
pub struct GradeRequest<'a> {
    /// The question.
    pub question: &'a str,
    /// The gold target.
    pub target: &'a str,
    /// The answer to grade.
    pub predicted: &'a str,
}

/// Recognises the SimpleQA grader template (the last `Question:` / `Gold target:` / `Predicted answer:` block).
pub fn parse_grader_prompt(text: &str) -> Option<GradeRequest<'_>> {
    let q_at = text
        .rfind("\nQuestion: ")
        .map(|i| i + 1)
        .or_else(|| text.starts_with("Question: ").then_some(0))?;
    let rest = &text[q_at + "Question: ".len()..];
    let (question, rest) = rest.split_once("\nGold target: ")?;
    let (target, rest) = rest.split_once("\nPredicted answer: ")?;
    let predicted = match rest.find("\n```") {
        Some(end) => &rest[..end],
        None => rest.lines().next().unwrap_or(""),
    };
    Some(GradeRequest {
        question,
        target,
        predicted,
    })
}

/// SQuAD-style normalisation: lower-case, punctuation deleted (so "5,679" reads "5679" and "U.S."
/// reads "us"), the articles `a`, `an`, `the` dropped, whitespace collapsed to single spaces.
pub fn normalize_answer(s: &str) -> String {
    let no_punct: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect();
    no_punct
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The separator the eval runner puts between several gold answers in the grader prompt's
/// `Gold target:` line.
pub const TARGET_SEPARATOR: &str = " OR ";

/// The acceptable answers of a gold target: split on [`TARGET_SEPARATOR`], each normalised with
/// [`normalize_answer`]; answers that normalise to nothing are dropped.
pub fn target_answers(target: &str) -> Vec<String> {
    target
        .split(TARGET_SEPARATOR)
        .map(normalize_answer)
        .filter(|a| !a.is_empty())
        .collect()
}

/// Whether `predicted` gives one of `target`'s answers: its normalised form equals the normalised
/// form of one of them. Whole answers are compared, never substrings, so "5,679" does not give "5"
/// and "Not Paris" does not give "Paris".
pub fn gives_target(predicted: &str, target: &str) -> bool {
    let p = normalize_answer(predicted);
    !p.is_empty() && target_answers(target).contains(&p)
}

/// The simulated judge: `A` when the prediction gives one of the target's answers
/// ([`gives_target`]), else `C` for an empty answer or an abstention, else `B`.
///
/// A gold match wins over an abstention, so a gold answer of "Unknown" can be answered correctly.
/// The twin's own answers are bare (a gold answer, another question's gold answer, or an
/// abstention), which this grades exactly; a real judge would be needed for sentence-long answers.
pub fn grade(g: &GradeRequest<'_>) -> &'static str {
    if gives_target(g.predicted, g.target) {
        "A"
    } else if g.predicted.trim().is_empty() || is_abstention(g.predicted) {
        "C"
    } else {
        "B"
    }
}

/// Whether a text reads as an abstention (used by the simulated judge too).
pub fn is_abstention(text: &str) -> bool {
    let t = text.to_lowercase();
    [
        "don't know",
        "do not know",
        "not sure",
        "could not find",
        "don't have enough",
        "cannot answer",
        "unable to",
    ]
    .iter()
    .any(|p| t.contains(p))
}
