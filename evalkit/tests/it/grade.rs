//! Judge-reply parsing (strict and simple-evals compatible), the grader prompt and the exact grader.

use agentcap_evalkit::grade::{
    Grade, JudgeParse, exact_grade, normalize_answer, parse_judge_reply, render_grader_prompt,
};

use Grade::{Correct, Incorrect, NotAttempted};

#[test]
fn strict_parse_table() {
    let table: &[(&str, Option<Grade>)] = &[
        ("A", Some(Correct)),
        ("B", Some(Incorrect)),
        ("C", Some(NotAttempted)),
        (" B\n", Some(Incorrect)),
        ("\tC  ", Some(NotAttempted)),
        // The documented whole-word fallback.
        ("CORRECT", Some(Correct)),
        ("INCORRECT", Some(Incorrect)),
        ("NOT_ATTEMPTED", Some(NotAttempted)),
        ("NOT ATTEMPTED", Some(NotAttempted)),
        (" INCORRECT\n", Some(Incorrect)),
        // Unparseable: never defaulted.
        ("Based on the criteria, the answer is A", None),
        ("", None),
        ("   ", None),
        // Lower case is not accepted: the template asks for capital letters.
        ("a", None),
        ("correct", None),
        ("A.", None),
        ("AB", None),
        ("A B", None),
        ("Correct", None),
        ("NOT  ATTEMPTED", None),
    ];
    for (reply, want) in table {
        assert_eq!(
            parse_judge_reply(reply, JudgeParse::Strict),
            *want,
            "strict parse of {reply:?}"
        );
    }
}

#[test]
fn simple_evals_compat_parse_table() {
    let table: &[(&str, Grade)] = &[
        ("A", Correct),
        (" B\n", Incorrect),
        // re.search(r"(A|B|C)") finds the C of "CORRECT" and the A of "NOT_ATTEMPTED".
        ("CORRECT", NotAttempted),
        ("NOT_ATTEMPTED", Correct),
        ("INCORRECT", NotAttempted),
        // No match: simple-evals defaults to "C".
        ("", NotAttempted),
        ("a", NotAttempted),
        ("no capital letters here", NotAttempted),
        // The first match is the B of "Based", not the final A.
        ("Based on the criteria, the answer is A", Incorrect),
        ("the answer is A", Correct),
        ("xyz C then A", NotAttempted),
    ];
    for (reply, want) in table {
        assert_eq!(
            parse_judge_reply(reply, JudgeParse::SimpleEvalsCompat),
            Some(*want),
            "compat parse of {reply:?}"
        );
    }
}

#[test]
fn grade_strings_round_trip_and_match_serde() {
    for g in Grade::ALL {
        assert_eq!(Grade::parse(g.as_str()), Some(g));
        assert_eq!(
            serde_json::to_string(&g).expect("serialises"),
            format!("\"{}\"", g.as_str())
        );
        assert_eq!(Grade::from_letter(g.letter()), Some(g));
    }
    assert_eq!(Correct.as_str(), "correct");
    assert_eq!(Incorrect.as_str(), "incorrect");
    assert_eq!(NotAttempted.as_str(), "not_attempted");
    assert_eq!(Grade::parse("Correct"), None);
    assert_eq!(Grade::parse("not attempted"), None);
    assert_eq!(Grade::from_letter('a'), None);
}

#[test]
fn grader_prompt_fills_the_three_placeholders_once() {
    let template =
        "Question: {question}\nGold target: {target}\nPredicted answer: {predicted_answer}\n";
    let out = render_grader_prompt(template, "Who?", " Ada ", "Ada Lovelace");
    assert_eq!(
        out,
        "Question: Who?\nGold target:  Ada \nPredicted answer: Ada Lovelace\n"
    );
    // Replacement text is not scanned again (str.format is one pass).
    let out = render_grader_prompt("{question}|{target}", "{target}", "T", "");
    assert_eq!(out, "{target}|T");
    // Repeated placeholders are all filled; doubled braces are literal braces; unknown fields stay.
    let out = render_grader_prompt("{target}{target} {{x}} {other} }", "q", "t", "p");
    assert_eq!(out, "tt {x} {other} }");
    // Non-ASCII text around placeholders survives.
    let out = render_grader_prompt("é{question}ü", "日本", "", "");
    assert_eq!(out, "é日本ü");
}

#[test]
fn normalisation_is_squad_style() {
    assert_eq!(normalize_answer("The Eiffel Tower."), "eiffel tower");
    assert_eq!(normalize_answer("  an   Apple,  a day "), "apple day");
    assert_eq!(normalize_answer("U.S.A."), "usa");
    assert_eq!(normalize_answer("O’Brien"), normalize_answer("O'Brien"));
    assert_eq!(normalize_answer("Theatre"), "theatre");
    assert_eq!(normalize_answer("1,000"), "1000");
    assert_eq!(normalize_answer("Åland Islands"), "åland islands");
    assert_eq!(normalize_answer("The"), "");
    assert_eq!(normalize_answer(""), "");
}

#[test]
fn exact_grader() {
    let golds = vec!["Malia and Sasha".to_string(), "Sasha and Malia".to_string()];
    assert_eq!(exact_grade("sasha and malia!", &golds), Correct);
    assert_eq!(exact_grade("Malia", &golds), Incorrect);
    assert_eq!(exact_grade("", &golds), NotAttempted);
    assert_eq!(exact_grade(" ... ", &golds), NotAttempted);
    assert_eq!(exact_grade("I don't know.", &golds), NotAttempted);
    assert_eq!(exact_grade("I do not know", &golds), NotAttempted);
    assert_eq!(exact_grade("Unknown", &golds), NotAttempted);
    assert_eq!(exact_grade("I'm not sure", &golds), NotAttempted);
    assert_eq!(exact_grade("I cannot answer.", &golds), NotAttempted);
    // A gold match wins over an abstention phrase.
    assert_eq!(exact_grade("unknown", &["Unknown".to_string()]), Correct);
    // No golds: nothing can be correct.
    assert_eq!(exact_grade("Paris", &[]), Incorrect);
    // A gold that normalises to nothing matches nothing.
    assert_eq!(exact_grade("the", &["The".to_string()]), NotAttempted);
}
