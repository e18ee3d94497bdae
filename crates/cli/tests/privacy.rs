//! Privacy pipelines end to end: `tandem serve` with a `redact` pipeline over a remote model (a
//! recording upstream on loopback) and a `keep_local` pipeline choosing between SmolLM2 and it;
//! then `tandem audit` shows and exports what left the machine.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

const EMAIL: &str = "jane.doe@acme-mail.com";
const CARD: &str = "4111 1111 1111 1111";

/// Starts an upstream that records every body and answers, in SSE chunks of three characters,
/// "Got:" and the placeholders it received. Returns its base URL and the bodies.
async fn upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let log = bodies.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |body: Bytes| {
            let log = log.clone();
            async move {
                let text = String::from_utf8_lossy(&body).into_owned();
                log.lock().unwrap().push(text.clone());
                echo(&text)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, bodies)
}

fn echo(body: &str) -> Response {
    let placeholders = regex::Regex::new(r"\[[A-Z]+(?:_[A-Z]+)*_[0-9]+\]").unwrap();
    let mut seen: Vec<&str> = placeholders.find_iter(body).map(|m| m.as_str()).collect();
    seen.sort_unstable();
    seen.dedup();
    let answer: Vec<char> = format!("Got: {}.", seen.join(" ")).chars().collect();
    let chunk = |delta: Value, finish: Value, usage: Value| {
        let choices = if usage.is_null() {
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}])
        } else {
            json!([])
        };
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-x", "choices": choices, "usage": usage});
        format!("data: {chunk}\n\n")
    };
    let mut events = Vec::new();
    for piece in answer.chunks(3) {
        let piece: String = piece.iter().collect();
        events.push(chunk(json!({"content": piece}), Value::Null, Value::Null));
    }
    events.push(chunk(json!({}), json!("stop"), Value::Null));
    events.push(chunk(
        Value::Null,
        Value::Null,
        json!({"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}),
    ));
    events.push("data: [DONE]\n\n".into());
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(events.concat()))
        .unwrap()
}

fn write_config(dir: &Path, upstream: &str) -> std::path::PathBuf {
    let path = dir.join("tandem.toml");
    let text = format!(
        r#"
[store]
path = "{db}"

[models.small]
kind = "local"
file = "{model}"
context_size = 512
parallel = 1
threads = 1

[models.cloud]
kind = "remote"
base_url = "{upstream}"
model = "gpt-x"

[pipelines.private]
strategy = "redact"
model = "cloud"
detect = {{ deny = ["Project Bluebird"] }}
names = {{ model = "small", threshold = 0.0 }}

[pipelines.careful]
strategy = "keep_local"
local = "small"
remote = "private"
threshold = 0.9
"#,
        db = dir.join("state.sqlite").display(),
        model = tandem_fetch::test_model().display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn ask(address: &str, model: &str, text: &str, stream: bool) -> (String, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{address}/v1/chat/completions"))
        .json(
            &json!({"model": model, "stream": stream, "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": text}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    if !stream {
        let body: Value = response.json().await.unwrap();
        let text = body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        return (text, body["tandem"].clone());
    }
    let body = response.text().await.unwrap();
    let mut text = String::new();
    let mut report = Value::Null;
    for line in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(line).unwrap();
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
        if !chunk["tandem"].is_null() {
            report = chunk["tandem"].clone();
        }
    }
    (text, report)
}

fn tandem(config: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tandem {args:?} failed: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_privacy_pipelines_send_no_value_and_audit_every_call() {
    let (url, bodies) = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &url);
    let server = common::Server::start(&config);
    let secret = format!("Mail {EMAIL} about Project Bluebird, card {CARD}.");

    let (text, report) = ask(&server.address, "private", &secret, false).await;
    assert_eq!(text, format!("Got: {CARD} {EMAIL} Project Bluebird."));
    let entry = &report["strategies"][0];
    assert_eq!(entry["strategy"], "redact");
    assert_eq!(
        entry["redacted"],
        json!({"email": 1, "credit_card": 1, "denied": 1})
    );

    let (text, report) = ask(&server.address, "private", &secret, true).await;
    assert_eq!(text, format!("Got: {CARD} {EMAIL} Project Bluebird."));
    assert_eq!(report["strategies"][0]["pipeline"], "private");
    assert_eq!(report["strategies"][0]["name_judge"]["asked"], 0);

    // A name no rule knows is put to the local model (threshold 0: any person or organisation
    // it reads from its token probabilities is replaced) and comes back restored.
    let (text, report) = ask(
        &server.address,
        "private",
        "Why is Zyborin so quiet?",
        false,
    )
    .await;
    assert_eq!(text, "Got: Zyborin.");
    assert_eq!(
        report["strategies"][0]["name_judge"],
        json!({"asked": 1, "found": 1, "unasked": 0})
    );

    // Bytes that are not UTF-8, and nesting deeper than JSON parsers allow, are refused by the
    // server with OpenAI's error body before any pipeline runs.
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/chat/completions", server.address);
    let mut invalid = br#"{"model":"private","messages":[{"role":"user","content":"mail "#.to_vec();
    invalid.extend_from_slice(b"\xff\xfe jane.doe@acme-mail.com\"}]}");
    let deep = format!(
        r#"{{"model":"private","messages":[{{"role":"user","content":{}"{EMAIL}"{}}}]}}"#,
        "[".repeat(4000),
        "]".repeat(4000)
    );
    for body in [invalid, deep.into_bytes()] {
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].as_str().is_some(), "{error}");
    }
    assert_eq!(
        bodies.lock().unwrap().len(),
        3,
        "a refused request was sent"
    );

    let (_, report) = ask(&server.address, "careful", &secret, false).await;
    assert_eq!(report["strategies"][0]["route"], "local");
    assert_eq!(report["model"], "small");
    let (text, report) = ask(&server.address, "careful", "What is 2 + 2?", false).await;
    assert_eq!(text, "Got: .");
    let strategies: Vec<&str> = report["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(strategies, ["redact", "keep_local"]);
    let metrics = reqwest::get(format!("http://{}/metrics", server.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"tandem_privacy_values_total{pipeline="private",strategy="redact",kind="email"} 2"#,
        r#"tandem_privacy_values_total{pipeline="careful",strategy="keep_local",kind="email"} 1"#,
        r#"tandem_privacy_name_questions_total{pipeline="private"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in {metrics}"
        );
    }
    drop(server);

    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 4);
    for body in &bodies {
        let squeezed: String = body.chars().filter(|c| c.is_alphanumeric()).collect();
        for value in ["janedoe", "4111111111111111", "bluebird", "zyborin"] {
            assert!(
                !squeezed.to_lowercase().contains(value),
                "{value} left in {body}"
            );
        }
    }

    let shown = tandem(&config, &["audit", "show"]);
    assert_eq!(shown.lines().count(), 6, "{shown}");
    assert!(shown.contains("credit_card:1 denied:1 email:1"), "{shown}");
    let csv = tandem(
        &config,
        &[
            "audit",
            "export",
            "--format",
            "csv",
            "--pipeline",
            "careful",
        ],
    );
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[0].starts_with("at_ms,pipeline,strategy,model,sha256,bytes,redacted"));
    assert!(rows[1].contains(",careful,keep_local,private,"), "{csv}");
    let jsonl = tandem(&config, &["audit", "export"]);
    let records: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5);
    assert!(records
        .iter()
        .all(|r| r["sha256"].as_str().unwrap().len() == 64));
    assert!(
        !jsonl.contains("jane") && !jsonl.contains("4111"),
        "{jsonl}"
    );
}

#[test]
fn audit_without_a_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["audit", "show", "--db"])
        .arg(dir.path().join("none.sqlite"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no egress audit at"), "{stderr}");
}
