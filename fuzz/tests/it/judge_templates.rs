//! The recorded-set graders: the strict readers of judge replies (`agentcap_evalkit::recorded`) and the
//! agreement and pairwise prompts as the runner fills them and the twin's judge reads them back
//! (`agentcap_sim::judge`).
//!
//! Properties: a reply is read only when, trimmed, it is exactly one of the documented spellings (never a
//! default, whatever the bytes); a prompt filled with single-line parts is read back part for part; the
//! simulated agreement judge is symmetric in its two answers and the pairwise judge swaps its verdict when
//! the answers swap, so asking both orders never disagrees; a pairwise verdict flips when both orders'
//! replies are mirrored.

use agentcap_evalkit::grade::{Grade, render_grader_prompt};
use agentcap_evalkit::recorded::{
    AGREEMENT_TEMPLATE, Agreement, PAIRWISE_TEMPLATE, Preference, pairwise_verdict,
    parse_agreement_reply, parse_preference_reply, render_pairwise_prompt,
};
use agentcap_sim::judge::{
    AgreementRequest, PairwiseRequest, agree, parse_agreement_prompt, parse_pairwise_prompt, prefer,
};

fn mirror(p: Preference) -> Preference {
    match p {
        Preference::A => Preference::B,
        Preference::B => Preference::A,
        Preference::Tie => Preference::Tie,
    }
}

#[test]
fn judge_templates() {
    crate::fuzz(
        "judge_templates",
        &[
            b"A",
            b" TIE\n",
            b"Capital?|Paris|paris.",
            b"q|I don't know.|Lyon",
            b"Question: x|Recorded answer: y|Candidate answer: z",
            b"a|```|b",
            b"\xff|\xc3\xa9|B",
        ],
        |input| {
            let text = String::from_utf8_lossy(input);
            // Replies: read exactly when the trimmed text is a documented spelling.
            let agreement = parse_agreement_reply(&text);
            let expected = match text.trim() {
                "A" | "SAME" => Some(Agreement::Same),
                "B" | "DIFFERENT" => Some(Agreement::Different),
                "C" | "ABSTAINS" => Some(Agreement::Abstains),
                _ => None,
            };
            assert_eq!(agreement, expected, "{text:?}");
            let pref = parse_preference_reply(&text);
            let expected = match text.trim() {
                "A" => Some(Preference::A),
                "B" => Some(Preference::B),
                "TIE" => Some(Preference::Tie),
                _ => None,
            };
            assert_eq!(pref, expected, "{text:?}");

            let parts: Vec<&str> = text.splitn(3, '|').collect();
            let [q, r, c] = [0, 1, 2].map(|i| parts.get(i).copied().unwrap_or(""));

            // Filled prompts read back by the twin's judge.
            let agreement_prompt = render_grader_prompt(AGREEMENT_TEMPLATE, q, r, c);
            let pairwise_prompt = render_pairwise_prompt(PAIRWISE_TEMPLATE, q, r, c);
            let bound = AGREEMENT_TEMPLATE.len().max(PAIRWISE_TEMPLATE.len()) + 2 * text.len();
            assert!(agreement_prompt.len() <= bound && pairwise_prompt.len() <= bound);
            let parsed_a = parse_agreement_prompt(&agreement_prompt);
            let parsed_p = parse_pairwise_prompt(&pairwise_prompt);
            if [q, r, c]
                .iter()
                .all(|s| !s.contains('\n') && !s.contains('\r'))
            {
                assert_eq!(
                    parsed_a,
                    Some(AgreementRequest {
                        question: q,
                        recorded: r,
                        candidate: c
                    }),
                    "{agreement_prompt:?}"
                );
                assert_eq!(
                    parsed_p,
                    Some(PairwiseRequest {
                        question: q,
                        a: r,
                        b: c
                    }),
                    "{pairwise_prompt:?}"
                );
            }

            // The simulated judges: symmetric agreement, antisymmetric preference.
            let forward = AgreementRequest {
                question: q,
                recorded: r,
                candidate: c,
            };
            let backward = AgreementRequest {
                question: q,
                recorded: c,
                candidate: r,
            };
            assert_eq!(agree(&forward), agree(&backward));
            for target in [None, Some(r), Some(c)] {
                let ab = prefer(
                    &PairwiseRequest {
                        question: q,
                        a: r,
                        b: c,
                    },
                    target,
                );
                let ba = prefer(
                    &PairwiseRequest {
                        question: q,
                        a: c,
                        b: r,
                    },
                    target,
                );
                let ab = parse_preference_reply(ab).expect("the twin answers A, B or TIE");
                let ba = parse_preference_reply(ba).expect("the twin answers A, B or TIE");
                assert_eq!(ab, mirror(ba));
                // Both orders agree, so the verdict is never a tie by disagreement.
                let v = pairwise_verdict(ab, ba);
                assert_eq!(v == Grade::NotAttempted, ab == Preference::Tie);
            }

            // Verdicts: mirroring both orders' replies flips a win into a loss.
            if let (Some(x), Some(y)) = (
                parse_preference_reply(q),
                parse_preference_reply(if r.is_empty() { q } else { r }),
            ) {
                let v = pairwise_verdict(x, y);
                let m = pairwise_verdict(mirror(x), mirror(y));
                let flipped = match v {
                    Grade::Correct => Grade::Incorrect,
                    Grade::Incorrect => Grade::Correct,
                    g => g,
                };
                assert_eq!(m, flipped);
            }
        },
    );
}
