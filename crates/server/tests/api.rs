//! The server over a real socket with a real model (SmolLM2-135M) behind it; the remote client
//! against that server, so a real model sits behind a real HTTP hop; and the official `openai`
//! Python package as a client.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::{json, Value};
use tandem_core::openai::{ChatCompletionRequest, FinishReason, Message, Role};
use tandem_core::{ChatEvent, ChatModel, ModelError};
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_remote::{RemoteModel, RemoteOptions};
use tandem_server::{Pipelines, ServerOptions};
use tokio::sync::OnceCell;

const KEY: &str = "test-key-123";

struct Server {
    addr: SocketAddr,
    engine: Arc<LlamaEngine>,
}

/// One server per test binary, with two API surfaces: open (`/`) and keyed, on two ports.
async fn server(keyed: bool) -> &'static Server {
    static OPEN: OnceCell<Server> = OnceCell::const_new();
    static KEYED: OnceCell<Server> = OnceCell::const_new();
    let cell = if keyed { &KEYED } else { &OPEN };
    cell.get_or_init(|| async move {
        let engine = tokio::task::spawn_blocking(|| {
            let model = LoadedModel::load(&tandem_fetch::test_model(), None, 0).unwrap();
            let mut options = EngineOptions::new("smollm2");
            options.context_size = 512;
            // As `tandem serve` runs a local model by default.
            options.prompt_cache = true;
            Arc::new(LlamaEngine::start(model, options).unwrap())
        })
        .await
        .unwrap();
        let mut pipelines = Pipelines::default();
        pipelines.insert("smollm2", engine.clone());
        pipelines.insert("default", engine.clone());
        let options = ServerOptions {
            api_keys: if keyed { vec![KEY.into()] } else { vec![] },
            max_body_bytes: 64 * 1024,
            ..ServerOptions::default()
        };
        let addr = common::serve_for_the_process(pipelines, options).await;
        Server { addr, engine }
    })
    .await
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

fn body(prompt: &str) -> Value {
    json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": 24
    })
}

async fn send(server: &Server, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url(server, "/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn post(server: &Server, body: &Value) -> (u16, Value) {
    let response = send(server, body).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The `data:` payloads of an SSE response, in order.
async fn sse_events(server: &Server, body: &Value) -> Vec<String> {
    let response = send(server, body).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn non_streaming_response_has_the_openai_shape_and_a_report() {
    let s = server(false).await;
    let (status, v) = post(s, &body("Name a colour.")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "smollm2");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(!v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    let finish = v["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "stop" || finish == "length");
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    let report = &v["tandem"];
    assert_eq!(report["pipeline"], "smollm2");
    assert_eq!(report["model"], "smollm2");
    assert_eq!(report["completion_tokens"], usage["completion_tokens"]);
    assert_eq!(report["stages"][0]["location"], "local");
    assert!(report["latency_ms"].as_f64().unwrap() > 0.0);
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("a local engine with the prompt cache says how many prompt tokens it reused");
    assert!(cached < usage["prompt_tokens"].as_u64().unwrap());
    assert_eq!(report["stages"][0]["cached_prompt_tokens"], cached);
}

/// A usage object without its cache breakdown, which differs between otherwise equal requests.
fn counts(usage: &Value) -> Value {
    let mut usage = usage.clone();
    usage
        .as_object_mut()
        .expect("usage is an object")
        .remove("prompt_tokens_details");
    usage
}

fn counts_of(usage: tandem_core::openai::Usage) -> tandem_core::openai::Usage {
    tandem_core::openai::Usage {
        prompt_tokens_details: None,
        ..usage
    }
}

#[tokio::test]
async fn streaming_matches_the_non_streaming_text() {
    let s = server(false).await;
    let (_, whole) = post(s, &body("Name three animals.")).await;
    let mut streaming = body("Name three animals.");
    streaming["stream"] = json!(true);
    streaming["stream_options"] = json!({"include_usage": true});
    let events = sse_events(s, &streaming).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(
        finish["choices"][0]["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0);
    // The second request may reuse the first one's prompt cache: only the counts must agree.
    assert_eq!(counts(&last["usage"]), counts(&whole["usage"]));
    assert_eq!(
        last["tandem"]["completion_tokens"],
        whole["usage"]["completion_tokens"]
    );
}

async fn expect_error(s: &Server, body: &Value, status: u16, param: Option<&str>) -> Value {
    let (got, v) = post(s, body).await;
    assert_eq!(got, status, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().len() > 5, "{v}");
    assert!(v["error"]["type"].is_string(), "{v}");
    if let Some(param) = param {
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    v
}

#[tokio::test]
async fn bad_input_gets_openai_errors_with_the_right_status() {
    let s = server(false).await;
    let client = reqwest::Client::new();

    let response = client
        .post(url(s, "/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let mut unknown = body("hi");
    unknown["model"] = json!("gpt-17");
    let v = expect_error(s, &unknown, 404, Some("model")).await;
    assert_eq!(v["error"]["code"], "model_not_found");

    let mut hot = body("hi");
    hot["temperature"] = json!(7);
    expect_error(s, &hot, 400, Some("temperature")).await;

    let mut long_stop = body("hi");
    long_stop["stop"] = json!(["x".repeat(1000)]);
    expect_error(s, &long_stop, 400, Some("stop")).await;

    let mut wrong_type = body("hi");
    wrong_type["max_tokens"] = json!("many");
    expect_error(s, &wrong_type, 400, None).await;

    expect_error(
        s,
        &json!({"model": "smollm2", "messages": []}),
        400,
        Some("messages"),
    )
    .await;

    let long = "word ".repeat(2000);
    let v = expect_error(s, &body(&long), 400, Some("messages")).await;
    assert_eq!(v["error"]["code"], "context_length_exceeded");

    let huge = body(&"x".repeat(100 * 1024));
    let v = expect_error(s, &huge, 413, None).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let response = client.get(url(s, "/v2/nothing")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let v: Value = response.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v2/nothing"));

    // The server is still healthy after all of that.
    let (status, _) = post(s, &body("Say hi.")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn fields_tandem_does_not_honour_are_refused_by_name() {
    let s = server(false).await;
    let mut schema = body("Give me a JSON object.");
    schema["response_format"] = json!({
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object",
            "properties": {"n": {"type": "integer", "minimum": 1}}}}
    });
    let param = "response_format.json_schema.schema.properties.n.minimum";
    let v = expect_error(s, &schema, 400, Some(param)).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let mut unknown = body("hi");
    unknown["frobnicate"] = json!(true);
    expect_error(s, &unknown, 400, Some("frobnicate")).await;

    let listed = [
        ("tool_choice", json!("required")),
        ("parallel_tool_calls", json!(false)),
        ("functions", json!([{"name": "f"}])),
        ("function_call", json!("auto")),
        ("audio", json!({"voice": "alloy", "format": "wav"})),
        ("modalities", json!(["text", "audio"])),
        ("prediction", json!({"type": "content", "content": "x"})),
        ("reasoning_effort", json!("low")),
        ("service_tier", json!("flex")),
        ("store", json!(true)),
        ("metadata", json!({"k": "v"})),
        ("web_search_options", json!({})),
    ];
    for (name, value) in listed {
        let mut request = body("hi");
        request[name] = value;
        expect_error(s, &request, 400, Some(name)).await;
    }

    let mut tool_reply = body("hi");
    tool_reply["messages"] = json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": "{}"}}]}
    ]);
    // SmolLM2's template does not render tool calls.
    expect_error(s, &tool_reply, 400, Some("messages[1].tool_calls")).await;

    // `null` is the same as absent, and `user` is honoured (logged with the request).
    let mut accepted = body("Say hi.");
    accepted["response_format"] = Value::Null;
    accepted["store"] = json!(false);
    accepted["user"] = json!("end-user-7");
    let (status, v) = post(s, &accepted).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn api_keys_guard_the_api_but_not_health() {
    let s = server(true).await;
    let client = reqwest::Client::new();
    let anonymous = client.get(url(s, "/v1/models")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let v: Value = anonymous.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let wrong = client
        .get(url(s, "/v1/models"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ids = common::model_ids(&client, &url(s, ""), KEY).await;
    assert_eq!(ids, vec!["default", "smollm2"]);
    assert_eq!(
        client.get(url(s, "/health")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn metrics_count_requests_and_tokens() {
    let s = server(false).await;
    let (status, v) = post(s, &body("Say hello.")).await;
    assert_eq!(status, 200);
    // The same request again reuses at least the chat template's opening from the prompt cache.
    let (status, again) = post(s, &body("Say hello.")).await;
    assert_eq!(status, 200);
    let reused = again["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_f64()
        .unwrap();
    let mut unknown = body("hi");
    unknown["model"] = json!("nope");
    post(s, &unknown).await;
    let text = reqwest::get(url(s, "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(count(r#"tandem_requests_total{pipeline="smollm2",status="200"}"#) >= 1.0);
    assert!(count(r#"tandem_requests_total{pipeline="unknown",status="404"}"#) >= 1.0);
    let completion =
        count(r#"tandem_tokens_total{pipeline="smollm2",model="smollm2",kind="completion"}"#);
    assert!(completion >= v["usage"]["completion_tokens"].as_f64().unwrap());
    assert!(text.contains("tandem_request_duration_seconds_bucket{pipeline=\"smollm2\""));
    if reused > 0.0 {
        assert!(count(r#"tandem_prompt_cache_tokens_total{model="smollm2"}"#) >= reused);
    }
}

fn remote(s: &Server) -> RemoteModel {
    let mut options = RemoteOptions::new("tandem-loopback", url(s, "/v1"), "smollm2");
    options.pricing.output_per_million = 1000.0;
    RemoteModel::new(options).unwrap()
}

fn request(prompt: &str) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "ignored".into(),
        messages: vec![Message::new(Role::User, prompt)],
        temperature: Some(0.0),
        max_tokens: Some(24),
        ..Default::default()
    }
}

#[tokio::test]
async fn remote_client_reaches_a_real_model_through_our_server() {
    let s = server(false).await;
    let direct = s.engine.complete(request("Name a planet.")).await.unwrap();
    let model = remote(s);
    let over_http = model.complete(request("Name a planet.")).await.unwrap();
    assert_eq!(over_http.text, direct.text);
    assert_eq!(counts_of(over_http.usage), counts_of(direct.usage));
    assert_eq!(
        over_http.report.stages[0].location,
        tandem_core::Location::Remote
    );
    let expected_cost = f64::from(direct.usage.completion_tokens) * 1000.0 / 1e6;
    assert!((over_http.report.cost_usd - expected_cost).abs() < 1e-9);

    let mut stream = model.stream(request("Name a planet.")).await.unwrap();
    let mut text = String::new();
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::Delta { text: piece, .. } => text.push_str(&piece),
            ChatEvent::ToolCall(call) => panic!("no tools were offered, yet {call:?}"),
            ChatEvent::Done(d) => done = Some(d),
        }
    }
    let done = done.expect("a final event");
    assert_eq!(text, direct.text);
    assert_eq!(counts_of(done.usage), counts_of(direct.usage));
    assert_eq!(done.finish_reason, direct.finish_reason);
}

#[tokio::test]
async fn remote_client_reports_our_servers_errors() {
    let s = server(false).await;
    let mut r = request(&"word ".repeat(2000));
    r.max_tokens = Some(4);
    match remote(s).complete(r).await {
        Err(ModelError::Upstream {
            upstream,
            status,
            message,
        }) => {
            assert_eq!(upstream, "tandem-loopback");
            assert_eq!(status, Some(400));
            assert!(message.contains("context"), "{message}");
        }
        other => panic!("expected an upstream error, got {other:?}"),
    }
    let mut r = request("Count to five.");
    r.max_tokens = Some(3);
    let out = remote(s).complete(r).await.unwrap();
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert_eq!(out.usage.completion_tokens, 3);
}

#[tokio::test]
async fn the_official_openai_python_client_works_unchanged() {
    let s = server(true).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let python = std::env::var("TANDEM_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .env("OPENAI_BASE_URL", url(s, "/v1"))
        .env("OPENAI_API_KEY", KEY)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the openai client failed (is the `openai` package installed for {python}?)\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
