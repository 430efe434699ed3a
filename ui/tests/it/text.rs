//! The text views (`agentcap conversations list / show`, `agentcap query`) over a real recording: the tree of
//! the scripted session with its branch, the list with its labels, a query result as a table.

use agentcap_proxy::recorder::{QueryCancel, QueryResult, RecorderError};
use agentcap_proxy::views;
use agentcap_ui::text;
use serde_json::Value;

use crate::harness::{Rig, drive, rig};

fn query(r: &Rig) -> impl Fn(&str, &[Value]) -> Result<QueryResult, RecorderError> + '_ {
    move |sql: &str, params: &[Value]| {
        r.proxy()
            .recorder()
            .query_with(sql, params, &Default::default(), &QueryCancel::new())
    }
}

#[tokio::test]
async fn the_tree_and_the_list_render_a_recorded_session() {
    let r = rig().await;
    let st = drive(&r).await;

    let tree = views::show(query(&r), &st.root)
        .unwrap()
        .expect("the conversation is recorded");
    let text = text::render_tree(&tree);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
    };
    assert!(
        text.starts_with(&format!("conversation {} · (simulated upstream)", st.root)),
        "{text}"
    );
    // The branch hangs under the first turn's answer, before turn 2.
    assert!(at("turn 1") < at(&format!("⑂ branch {}", st.branch)));
    assert!(at(&format!("⑂ branch {}", st.branch)) < at("turn 2"));
    assert!(
        text.contains("web_search(") && text.contains("get_weather("),
        "{text}"
    );
    assert!(text.contains("first event"), "the streamed turn: {text}");
    assert!(
        text.contains("├─ ") && text.contains("└─ ") && text.contains("│  "),
        "{text}"
    );
    // Recorded text is shown quoted on one line, whatever it contains.
    assert!(text.contains("<script>"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() < 400), "{text}");

    let branch = views::show(query(&r), &st.branch).unwrap().unwrap();
    assert!(
        text::render_tree(&branch).contains(&format!("branch of {} @ ", st.root)),
        "{}",
        text::render_tree(&branch)
    );

    let rows = views::list(query(&r), 50).unwrap();
    let table = text::render_list(&rows);
    for id in [&st.root, &st.branch] {
        assert!(table.contains(id.as_str()), "{id} not in\n{table}");
    }
    assert!(table.contains(&format!("{} @ ", st.root)), "{table}");
    assert!(
        table.contains(&format!(
            "({} conversations, all from a simulated upstream)",
            rows.len()
        )),
        "{table}"
    );

    let counts = query(&r)(
        "SELECT operation, count(*) AS n FROM exchanges WHERE operation = ? GROUP BY ALL",
        &[Value::from("agents.create")],
    )
    .unwrap();
    let t = text::render_table(&counts);
    assert!(t.contains("agents.create") && t.contains("(1 row)"), "{t}");
}
