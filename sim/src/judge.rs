//! The simulated judges, pure: SimpleQA's (reading the grader prompt, normalising answers, grading
//! A / B / C) and the eval runner's agreement and pairwise templates for recorded sets.
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

/// The parts of an agreement grader prompt (the eval runner's `agreement` template): the question,
/// the recorded answer and the candidate answer.
#[derive(Debug, PartialEq, Eq)]
pub struct AgreementRequest<'a> {
    /// The question.
    pub question: &'a str,
    /// The recorded answer.
    pub recorded: &'a str,
    /// The candidate answer.
    pub candidate: &'a str,
}

/// The block a grader prompt ends with: from its last `Question: ` line to the closing fence.
fn last_block(text: &str) -> Option<&str> {
    let q_at = text
        .rfind("\nQuestion: ")
        .map(|i| i + 1)
        .or_else(|| text.starts_with("Question: ").then_some(0))?;
    let rest = &text[q_at + "Question: ".len()..];
    Some(match rest.find("\n```") {
        Some(end) => &rest[..end],
        None => rest,
    })
}

/// Recognises the agreement template (`Question:` / `Recorded answer:` / `Candidate answer:`).
pub fn parse_agreement_prompt(text: &str) -> Option<AgreementRequest<'_>> {
    let block = last_block(text)?;
    let (question, rest) = block.split_once("\nRecorded answer: ")?;
    let (recorded, candidate) = rest.split_once("\nCandidate answer: ")?;
    Some(AgreementRequest {
        question,
        recorded,
        candidate,
    })
}

/// The simulated agreement judge: `C` when either answer is empty or an abstention, `A` when
/// both normalise to the same text ([`normalize_answer`]), else `B`.
pub fn agree(r: &AgreementRequest<'_>) -> &'static str {
    let blank = |s: &str| normalize_answer(s).is_empty() || is_abstention(s);
    if blank(r.recorded) || blank(r.candidate) {
        "C"
    } else if normalize_answer(r.recorded) == normalize_answer(r.candidate) {
        "A"
    } else {
        "B"
    }
}

/// The parts of a pairwise grader prompt (`Question:` / `Answer A:` / `Answer B:`).
#[derive(Debug, PartialEq, Eq)]
pub struct PairwiseRequest<'a> {
    /// The question.
    pub question: &'a str,
    /// Answer A.
    pub a: &'a str,
    /// Answer B.
    pub b: &'a str,
}

/// Recognises the pairwise template.
pub fn parse_pairwise_prompt(text: &str) -> Option<PairwiseRequest<'_>> {
    let block = last_block(text)?;
    let (question, rest) = block.split_once("\nAnswer A: ")?;
    let (a, b) = rest.split_once("\nAnswer B: ")?;
    Some(PairwiseRequest { question, a, b })
}

/// The simulated pairwise judge. With `target` (the gold answers of the question, when the twin
/// knows it), the answer that gives the target wins over one that does not; otherwise, and when
/// both or neither give it, an answer wins over an abstention or an empty one; anything else is
/// `TIE`. Symmetric: swapping A and B swaps the verdict, so both orders agree.
pub fn prefer(p: &PairwiseRequest<'_>, target: Option<&str>) -> &'static str {
    let score = |s: &str| -> u8 {
        let gives = target.is_some_and(|t| gives_target(s, t));
        let says = !normalize_answer(s).is_empty() && !is_abstention(s);
        u8::from(gives) * 2 + u8::from(says)
    };
    match score(p.a).cmp(&score(p.b)) {
        std::cmp::Ordering::Greater => "A",
        std::cmp::Ordering::Less => "B",
        std::cmp::Ordering::Equal => "TIE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agreement_and_pairwise_prompts_are_recognised_and_judged() {
        let p = "Judge.\n```\nQuestion: Capital of France?\nRecorded answer: Paris.\nCandidate answer: paris\n```\n";
        let r = parse_agreement_prompt(p).unwrap();
        assert_eq!(
            (r.question, r.recorded, r.candidate),
            ("Capital of France?", "Paris.", "paris")
        );
        assert_eq!(agree(&r), "A");
        let r = AgreementRequest {
            question: "q",
            recorded: "Paris",
            candidate: "Lyon",
        };
        assert_eq!(agree(&r), "B");
        let r = AgreementRequest {
            question: "q",
            recorded: "Paris",
            candidate: "I don't know.",
        };
        assert_eq!(agree(&r), "C");
        assert!(
            parse_grader_prompt(p).is_none(),
            "not read as the SimpleQA template"
        );

        let p = "Which?\n```\nQuestion: Capital?\nAnswer A: Lyon\nAnswer B: Paris\n```";
        let w = parse_pairwise_prompt(p).unwrap();
        assert_eq!(prefer(&w, Some("Paris")), "B");
        let swapped = PairwiseRequest {
            question: w.question,
            a: w.b,
            b: w.a,
        };
        assert_eq!(prefer(&swapped, Some("Paris")), "A");
        assert_eq!(prefer(&w, None), "TIE");
        let abst = PairwiseRequest {
            question: "q",
            a: "I don't know.",
            b: "Lyon",
        };
        assert_eq!(prefer(&abst, None), "B");
    }
}
