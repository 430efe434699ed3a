//! Agents: create, get, update (versions), switch, versions, aliases, list, pages, delete.

use http::{Method, StatusCode};
use serde_json::json;

use crate::client::{assert_id, assert_ts, default_twin};

#[tokio::test]
async fn agent_lifecycle_with_versions_and_aliases() {
    let t = default_twin().await;
    let a = t
        .ok(Method::POST, "/v1/agents", Some(json!({"model": "mistral-medium-latest", "name": "Helper", "instructions": "Be brief.",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}, {"type": "web_search"}],
            "completion_args": {"temperature": 0.2}})))
        .await;
    assert_id(&a["id"], "ag_");
    assert_ts(&a["created_at"]);
    assert_eq!(a["object"], "agent");
    assert_eq!(a["version"], 0);
    assert_eq!(a["versions"], json!([0]));
    assert_eq!(a["deployment_chat"], false);
    assert_eq!(a["source"], "api");
    assert_eq!(a["description"], serde_json::Value::Null);
    assert_eq!(
        a["tools"][0]["function"]["strict"], false,
        "function tools come back with strict filled in"
    );
    assert_eq!(a["completion_args"]["temperature"], 0.2);
    assert_eq!(a["completion_args"]["tool_choice"], "auto");
    assert!(
        a["completion_args"]
            .as_object()
            .unwrap()
            .contains_key("reasoning_effort")
    );
    let keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(&keys[..4], ["object", "id", "version", "versions"]);
    let id = a["id"].as_str().unwrap();

    let u = t
        .ok(
            Method::PATCH,
            &format!("/v1/agents/{id}"),
            Some(json!({"instructions": "Be thorough."})),
        )
        .await;
    assert_eq!(u["version"], 1);
    assert_eq!(u["versions"], json!([0, 1]));
    assert_eq!(u["instructions"], "Be thorough.");
    assert_eq!(u["name"], "Helper", "unchanged fields carry over");
    let g = t.ok(Method::GET, &format!("/v1/agents/{id}"), None).await;
    assert_eq!(g["version"], 1, "the update is active");
    let old = t
        .ok(
            Method::GET,
            &format!("/v1/agents/{id}?agent_version=0"),
            None,
        )
        .await;
    assert_eq!(old["instructions"], "Be brief.");
    let v0 = t
        .ok(Method::GET, &format!("/v1/agents/{id}/versions/0"), None)
        .await;
    assert_eq!(v0["instructions"], "Be brief.");
    let versions = t
        .ok(Method::GET, &format!("/v1/agents/{id}/versions"), None)
        .await;
    assert_eq!(versions.as_array().unwrap().len(), 2);

    let s = t
        .ok(
            Method::PATCH,
            &format!("/v1/agents/{id}/version?version=0"),
            None,
        )
        .await;
    assert_eq!(s["version"], 0);
    assert_eq!(s["instructions"], "Be brief.");
    let s = t
        .ok(
            Method::PATCH,
            &format!("/v1/agents/{id}/version"),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(s["version"], 1, "the version may also come in a JSON body");

    let al = t
        .ok(
            Method::PUT,
            &format!("/v1/agents/{id}/aliases?alias=prod&version=0"),
            None,
        )
        .await;
    assert_eq!(al["alias"], "prod");
    assert_eq!(al["version"], 0);
    let by_alias = t
        .ok(
            Method::GET,
            &format!("/v1/agents/{id}?agent_version=prod"),
            None,
        )
        .await;
    assert_eq!(by_alias["version"], 0);
    let al = t
        .ok(
            Method::PUT,
            &format!("/v1/agents/{id}/aliases?alias=prod&version=1"),
            None,
        )
        .await;
    assert_eq!(al["version"], 1, "aliases can be re-pointed");
    let bad = t
        .call(
            Method::PUT,
            &format!("/v1/agents/{id}/aliases?alias=Bad!&version=0"),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let list = t
        .ok(Method::GET, &format!("/v1/agents/{id}/aliases"), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let d = t
        .call(
            Method::DELETE,
            &format!("/v1/agents/{id}/aliases?alias=prod"),
            None,
        )
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);

    let d = t
        .call(Method::DELETE, &format!("/v1/agents/{id}"), None)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert!(d.body.is_empty());
    let gone = t.call(Method::GET, &format!("/v1/agents/{id}"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json()["object"], "error");
}

#[tokio::test]
async fn list_filters_and_cursor_pages() {
    let t = default_twin().await;
    for i in 0..5 {
        t.ok(Method::POST, "/v1/agents", Some(json!({"model": "m", "name": format!("agent-{i}"), "metadata": {"team": if i % 2 == 0 { "a" } else { "b" }}}))).await;
    }
    let all = t.ok(Method::GET, "/v1/agents", None).await;
    assert_eq!(all.as_array().unwrap().len(), 5);
    let named = t.ok(Method::GET, "/v1/agents?name=agent-3", None).await;
    assert_eq!(named.as_array().unwrap().len(), 1);
    let meta = t
        .ok(
            Method::GET,
            "/v1/agents?metadata=%7B%22team%22%3A%22a%22%7D",
            None,
        )
        .await;
    assert_eq!(meta.as_array().unwrap().len(), 3);
    let paged = t
        .ok(Method::GET, "/v1/agents?page=1&page_size=2", None)
        .await;
    assert_eq!(paged.as_array().unwrap().len(), 2);

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let q = match &token {
            Some(tk) => format!("/v1/agents/pages?page_size=2&page_token={tk}"),
            None => "/v1/agents/pages?page_size=2".to_string(),
        };
        let p = t.ok(Method::GET, &q, None).await;
        assert_eq!(p["object"], "list");
        seen.extend(
            p["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_string()),
        );
        match p["next_page_token"].as_str() {
            Some(tk) => token = Some(tk.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "cursor pages cover every agent once");
    seen.dedup();
    assert_eq!(seen.len(), 5);
}

#[tokio::test]
async fn invalid_agent_requests_get_422_details() {
    let t = default_twin().await;
    let r = t
        .call(Method::POST, "/v1/agents", Some(json!({"model": "m"})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["detail"][0]["type"], "missing");
    assert_eq!(r.json()["detail"][0]["loc"], json!(["body", "name"]));
    let r = t
        .call(
            Method::POST,
            "/v1/agents",
            Some(json!({"model": "m", "name": "n", "colour": "blue"})),
        )
        .await;
    assert_eq!(r.json()["detail"][0]["type"], "extra_forbidden");
    let r = t
        .call(Method::PATCH, "/v1/agents/ag_0000", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metadata_filter_ignores_the_sdk_unset_sentinel_and_rejects_non_json() {
    let t = default_twin().await;
    t.ok(
        Method::POST,
        "/v1/agents",
        Some(json!({"model": "m", "name": "a", "metadata": {"k": 1}})),
    )
    .await;
    let all = t
        .ok(
            Method::GET,
            "/v1/agents?metadata=%22~%3F~unset~%3F~sentinel~%3F~%22",
            None,
        )
        .await;
    assert_eq!(
        all.as_array().unwrap().len(),
        1,
        "a JSON string is no filter"
    );
    let none = t
        .ok(Method::GET, "/v1/agents?metadata=%7B%22k%22%3A2%7D", None)
        .await;
    assert_eq!(none.as_array().unwrap().len(), 0);
    let bad = t
        .call(Method::GET, "/v1/conversations?metadata=not-json", None)
        .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected even when nothing is stored"
    );
}
