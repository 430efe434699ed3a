//! Faults: auth, rate limits, server errors, resets and error events mid-stream, stalls.

use std::time::Duration;

use agentcap_sim::{FaultRate, SimConfig};
use http::{Method, StatusCode};
use serde_json::json;

use crate::client::{default_twin, twin};

#[tokio::test]
async fn api_key_is_enforced() {
    let t = twin(SimConfig {
        api_key: Some("sk-test".into()),
        ..SimConfig::default()
    })
    .await;
    let r = t.call(Method::GET, "/v1/agents", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["message"], "Unauthorized");
    let r = t
        .send(
            Method::GET,
            "/v1/agents",
            None,
            &[("authorization", "Bearer wrong")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = t
        .send(
            Method::GET,
            "/v1/agents",
            None,
            &[("authorization", "Bearer sk-test")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn status_faults_on_demand() {
    let t = default_twin().await;
    let body = json!({"model": "m", "inputs": "x"});
    let r = t
        .send(
            Method::POST,
            "/v1/conversations",
            Some(body.clone()),
            &[("x-agentcap-sim-fault", "429")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.json()["type"], "rate_limited");
    for (kind, status) in [("500", 500), ("503", 503), ("error-event", 500)] {
        let r = t
            .send(
                Method::POST,
                "/v1/conversations",
                Some(body.clone()),
                &[("x-agentcap-sim-fault", kind)],
            )
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), status, "{kind}");
        assert_eq!(r.json()["object"], "error");
    }
    let r = t
        .send(
            Method::POST,
            "/v1/conversations",
            Some(body),
            &[("x-agentcap-sim-fault", "reset")],
        )
        .await;
    assert!(r.is_err(), "a reset cuts the connection");
    // 429 / 500 / 503 refuse the request before any state changes; error-event and reset fail
    // the turn of a conversation already started, whose answer is never stored.
    let st = t.running.sim().state.lock();
    assert_eq!(st.conversations.len(), 2);
    for c in st.conversations.values() {
        assert!(
            c.entries.iter().all(|e| e["type"] != "message.output"),
            "{:?}",
            c.entries
        );
    }
}

#[tokio::test]
async fn stream_faults_mid_stream() {
    let t = default_twin().await;
    let body = json!({"model": "m", "inputs": "Tell me a rather long story about streams", "stream": true});
    let r = t
        .send(
            Method::POST,
            "/v1/conversations",
            Some(body.clone()),
            &[("x-agentcap-sim-fault", "error-event")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let d = r.event_data();
    assert_eq!(d[0]["type"], "conversation.response.started");
    assert!(
        d.iter().any(|e| e["type"] == "message.output.delta"),
        "some deltas before the error"
    );
    assert_eq!(d.last().unwrap()["type"], "conversation.response.error");
    assert!(d.last().unwrap()["code"].is_i64());
    assert!(!d.iter().any(|e| e["type"] == "conversation.response.done"));

    let r = t
        .send(
            Method::POST,
            "/v1/conversations",
            Some(body.clone()),
            &[("x-agentcap-sim-fault", "reset")],
        )
        .await;
    assert!(r.is_err(), "the body is cut mid-stream");
}

#[tokio::test]
async fn stall_hangs_until_its_deadline() {
    let t = twin(SimConfig {
        stall: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let body = json!({"model": "m", "inputs": "Tell me a rather long story about streams", "stream": true});
    let r = t
        .send(
            Method::POST,
            "/v1/conversations",
            Some(body),
            &[("x-agentcap-sim-fault", "stall")],
        )
        .await
        .unwrap();
    let d = r.event_data();
    assert!(!d.is_empty());
    assert!(
        !d.iter().any(|e| e["type"] == "conversation.response.done"
            || e["type"] == "conversation.response.error"),
        "a stalled stream never finishes properly"
    );
}

#[tokio::test]
async fn random_faults_follow_the_rate() {
    let t = twin(SimConfig {
        fault_rates: vec![FaultRate {
            kind: agentcap_sim::FaultKind::RateLimited,
            rate: 0.5,
        }],
        seed: 3,
        ..SimConfig::default()
    })
    .await;
    let mut limited = 0;
    for _ in 0..200 {
        let r = t
            .call(
                Method::POST,
                "/v1/conversations",
                Some(json!({"model": "m", "inputs": "x"})),
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!((70..130).contains(&limited), "{limited}");
    // List endpoints are not eligible for random faults.
    for _ in 0..20 {
        assert_eq!(
            t.call(Method::GET, "/v1/agents", None).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn every_response_announces_the_simulated_upstream() {
    let t = twin(SimConfig {
        api_key: Some("sk-test".into()),
        ..SimConfig::default()
    })
    .await;
    let auth = ("authorization", "Bearer sk-test");
    let body = json!({"model": "m", "inputs": "x"});
    let mut replies = vec![
        ("401", t.call(Method::GET, "/v1/agents", None).await),
        (
            "json",
            t.send(Method::GET, "/v1/agents", None, &[auth])
                .await
                .unwrap(),
        ),
        (
            "404",
            t.send(Method::GET, "/v1/conversations/nope", None, &[auth])
                .await
                .unwrap(),
        ),
        (
            "422",
            t.send(
                Method::POST,
                "/v1/conversations",
                Some(json!({"inputs": "x", "bogus": 1})),
                &[auth],
            )
            .await
            .unwrap(),
        ),
        (
            "429",
            t.send(
                Method::POST,
                "/v1/chat/completions",
                Some(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})),
                &[auth, ("x-agentcap-sim-fault", "429")],
            )
            .await
            .unwrap(),
        ),
        (
            "sse",
            t.send(
                Method::POST,
                "/v1/conversations",
                Some(json!({"model": "m", "inputs": "x", "stream": true})),
                &[auth],
            )
            .await
            .unwrap(),
        ),
    ];
    let started = t
        .send(Method::POST, "/v1/conversations", Some(body), &[auth])
        .await
        .unwrap();
    let id = started.json()["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    replies.push((
        "204",
        t.send(
            Method::DELETE,
            &format!("/v1/conversations/{id}"),
            None,
            &[auth],
        )
        .await
        .unwrap(),
    ));
    replies.push(("start", started));
    let statuses: Vec<u16> = replies.iter().map(|(_, r)| r.status.as_u16()).collect();
    assert_eq!(statuses, [401, 200, 404, 422, 429, 200, 204, 200]);
    assert_eq!(replies[5].1.headers["content-type"], "text/event-stream");
    for (what, r) in &replies {
        assert_eq!(
            r.headers
                .get(agentcap_sim::UPSTREAM_HEADER)
                .map(|v| v.to_str().unwrap()),
            Some(agentcap_sim::UPSTREAM_SIMULATED),
            "{what}"
        );
    }
}
