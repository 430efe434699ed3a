//! `POST /v1/chat/completions`: plain answers, and the simulated judges: SimpleQA's (A / B / C), the
//! eval runner's agreement (A / B / C) and pairwise (A / B / TIE) templates.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::capture::Origin;
use crate::config::FaultKind;
use crate::engine::{content_text, split_deltas, tokens};
use crate::http::{Body, error_body, json_response};
pub use crate::judge::{
    AgreementRequest, GradeRequest, PairwiseRequest, TARGET_SEPARATOR, agree, gives_target, grade,
    normalize_answer, parse_agreement_prompt, parse_grader_prompt, parse_pairwise_prompt, prefer,
    target_answers,
};
use crate::knowledge::normalize_question;
use crate::twin::Sim;
use crate::validate;

type Reply = Result<Response<Body>, std::io::Error>;

fn last_user_text(messages: &[Value]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default()
}

/// Handles one chat completion request.
pub async fn completions(
    sim: &Arc<Sim>,
    origin: &Origin,
    fault: Option<FaultKind>,
    body: Value,
) -> Reply {
    let capture_json = |status: StatusCode, v: Value| -> Reply {
        if let Some(c) = &sim.capture {
            c.json(origin, status.as_u16(), &v);
        }
        Ok(json_response(status, &v))
    };
    let p = validate::check_body(&body, validate::CHAT);
    if !p.is_empty() {
        return capture_json(StatusCode::UNPROCESSABLE_ENTITY, p.into_body());
    }
    match fault {
        Some(FaultKind::Reset) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected reset",
            ));
        }
        Some(FaultKind::Stall) => {
            tokio::time::sleep(sim.cfg.stall).await;
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "injected stall",
            ));
        }
        Some(FaultKind::ErrorEvent) => {
            return capture_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body(
                    "Simulated upstream error (injected fault)",
                    "server_error",
                    Value::Null,
                ),
            );
        }
        _ => {}
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text = last_user_text(&messages);
    let pairwise_target = |q: &str| {
        sim.knowledge
            .as_ref()
            .and_then(|k| k.find(q))
            .map(|it| it.answers.join(TARGET_SEPARATOR))
    };
    let answer = if let Some(a) = parse_agreement_prompt(&text) {
        agree(&a).to_string()
    } else if let Some(p) = parse_pairwise_prompt(&text) {
        prefer(&p, pairwise_target(p.question).as_deref()).to_string()
    } else {
        match parse_grader_prompt(&text) {
            Some(g) => grade(&g).to_string(),
            None => match sim
                .knowledge
                .as_ref()
                .and_then(|k| k.find(&text).map(|it| k.answer(it, false)))
            {
                Some(v) => v.text().to_string(),
                None => format!(
                    "Simulated upstream reply to: \"{}\".",
                    normalize_question(&text)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            },
        }
    };
    let prompt_tokens: u64 = messages
        .iter()
        .map(|m| tokens(&m.get("content").map(content_text).unwrap_or_default()))
        .sum::<u64>()
        + 4;
    let completion_tokens = tokens(&answer);
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
    let id = uuid::Uuid::now_v7().simple().to_string();
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let lat = &sim.cfg.latency;
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let total = lat.ttft + lat.per_token() * completion_tokens as u32;
        if !total.is_zero() {
            tokio::time::sleep(total).await;
        }
        return capture_json(
            StatusCode::OK,
            json!({"id": id, "object": "chat.completion", "model": model, "usage": usage, "created": created,
                   "choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": null, "content": answer}, "finish_reason": "stop"}]}),
        );
    }
    let (tx, mut rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    let sim2 = sim.clone();
    let origin2 = origin.clone();
    let (ttft, per_token) = (lat.ttft, lat.per_token());
    tokio::spawn(async move {
        let chunk = |delta: Value, finish: Value, usage: Option<&Value>| {
            let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            if let Some(u) = usage {
                c["usage"] = u.clone();
            }
            c
        };
        let mut frames = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            None,
        )];
        frames.extend(
            split_deltas(&answer)
                .into_iter()
                .map(|d| chunk(json!({"content": d}), Value::Null, None)),
        );
        frames.push(chunk(json!({"content": ""}), json!("stop"), Some(&usage)));
        if !ttft.is_zero() {
            tokio::time::sleep(ttft).await;
        }
        for f in frames {
            if let Some(c) = &sim2.capture {
                c.sse(&origin2, "completion.chunk", &f);
            }
            if tx
                .send(Ok(Frame::data(agentcap_wire::sse::encode_data(
                    &f.to_string(),
                ))))
                .await
                .is_err()
            {
                return;
            }
            if !per_token.is_zero() {
                tokio::time::sleep(per_token.min(Duration::from_secs(1))).await;
            }
        }
        let _ = tx
            .send(Ok(Frame::data(agentcap_wire::sse::encode_data("[DONE]"))))
            .await;
    });
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE_TAIL: &str = "Here is a new example.\n```\nQuestion: {q}\nGold target: {t}\nPredicted answer: {p}\n```\n\nGrade the predicted answer";

    fn prompt(q: &str, t: &str, p: &str) -> String {
        format!(
            "Examples...\nQuestion: example\nGold target: x\nPredicted answer: y\n\n{}",
            TEMPLATE_TAIL
                .replace("{q}", q)
                .replace("{t}", t)
                .replace("{p}", p)
        )
    }

    #[test]
    fn parses_the_last_block_of_the_grader_prompt() {
        let p = prompt("Who?", "Michelle Obama", "It was Michelle Obama.");
        let g = parse_grader_prompt(&p).unwrap();
        assert_eq!(
            g,
            GradeRequest {
                question: "Who?",
                target: "Michelle Obama",
                predicted: "It was Michelle Obama."
            }
        );
        assert!(parse_grader_prompt("hello").is_none());
    }

    #[test]
    fn grades_correct_incorrect_and_not_attempted() {
        let g = |t: &str, p: &str| {
            grade(&GradeRequest {
                question: "q",
                target: t,
                predicted: p,
            })
        };
        assert_eq!(g("Paris", "Paris."), "A");
        assert_eq!(g("The Beatles", "beatles"), "A");
        assert_eq!(g("5", "5,679"), "B");
        assert_eq!(g("Paris", "Not Paris"), "B");
        assert_eq!(g("Lyon OR Paris", "paris"), "A");
        assert_eq!(g("Paris", "Lyon"), "B");
        assert_eq!(g("1947", "19470"), "B");
        assert_eq!(g("Paris", "I don't know."), "C");
        assert_eq!(g("Paris", "   "), "C");
    }
}
