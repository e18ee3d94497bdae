//! The remote client against a fake OpenAI-compatible upstream on a real loopback socket: normal
//! answers, and the faults a real upstream cannot be made to produce on demand (server errors, rate
//! limits, silence, cut and malformed streams, a closed port).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};
use tandem_core::openai::{ChatCompletionRequest, FinishReason, Message, Role, Usage};
use tandem_core::{ChatEvent, ChatModel, Location, ModelError, Pricing};
use tandem_remote::{RemoteError, RemoteModel, RemoteOptions};

/// One request as the fake upstream received it.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Value,
}

/// A fake upstream: `script(n)` answers the `n`-th request (from 0), and every request is kept.
struct Fake {
    base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Fake {
    async fn start<F, Fut>(script: F) -> Fake
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let log = received.clone();
        let app = Router::new().route(
            "/v1/chat/completions",
            post(move |headers: HeaderMap, body: Bytes| {
                let log = log.clone();
                let script = script.clone();
                async move {
                    let n = {
                        let mut log = log.lock().unwrap();
                        log.push(Received {
                            headers,
                            body: serde_json::from_slice(&body).expect("the client sends JSON"),
                        });
                        log.len() - 1
                    };
                    script(n).await
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { base_url, received }
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Options for a model named `big` upstream, with fast retries so tests stay quick.
    fn options(&self) -> RemoteOptions {
        let mut options = RemoteOptions::new("big", &self.base_url, "upstream-model-7b");
        options.initial_backoff = Duration::from_millis(10);
        options
    }

    fn model(&self) -> RemoteModel {
        RemoteModel::new(self.options()).unwrap()
    }
}

fn request() -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "big".into(),
        messages: vec![
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, "Say hello."),
        ],
        temperature: Some(0.25),
        max_tokens: Some(16),
        ..Default::default()
    }
}

fn completion_json(text: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": "upstream-model-7b",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": {"content": [
                {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": []}
            ]},
            "finish_reason": "length"
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
    })
}

fn ok_completion(text: &str) -> Response {
    axum::Json(completion_json(text)).into_response()
}

fn openai_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
    (status, axum::Json(body)).into_response()
}

fn chunk(content: Option<&str>, finish_reason: Option<&str>) -> String {
    let delta = match content {
        Some(text) => json!({"content": text}),
        None => json!({"role": "assistant"}),
    };
    let chunk = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000u64,
        "model": "upstream-model-7b",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]
    });
    format!("data: {chunk}\n\n")
}

fn usage_chunk(prompt: u32, completion: u32) -> String {
    let chunk = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000u64,
        "model": "upstream-model-7b",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    });
    format!("data: {chunk}\n\n")
}

/// How a scripted event stream ends after its pieces.
#[derive(Clone, Copy)]
enum Ending {
    /// The response ends normally (the pieces say whether `[DONE]` was among them).
    Clean,
    /// The connection is dropped mid-body, as when an upstream crashes.
    Abort,
    /// Nothing more is sent for this long, then the response ends.
    Silence(Duration),
}

/// An SSE response that writes each piece separately, a few milliseconds apart, so that the client
/// reads them as separate chunks.
fn sse(pieces: Vec<String>, ending: Ending) -> Response {
    let gap = Duration::from_millis(15);
    let body = futures::stream::iter(pieces)
        .then(move |piece| async move {
            tokio::time::sleep(gap).await;
            Ok::<_, std::io::Error>(Bytes::from(piece))
        })
        .chain(futures::stream::once(async move {
            // Lets the server flush the last piece: an abort right behind it would discard it.
            tokio::time::sleep(gap).await;
            match ending {
                Ending::Clean => Ok(Bytes::new()),
                Ending::Abort => Err(std::io::Error::other("upstream crashed")),
                Ending::Silence(time) => {
                    tokio::time::sleep(time).await;
                    Ok(Bytes::new())
                }
            }
        }));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

/// Runs a stream to its end: the deltas' texts, then the final event or the error that ended it.
async fn drain(model: &RemoteModel) -> (Vec<String>, Result<ChatEvent, ModelError>) {
    let mut stream = model.stream(request()).await.expect("the stream starts");
    let mut texts = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(ChatEvent::Delta { text, .. }) => texts.push(text),
            Ok(ChatEvent::ToolCall(call)) => panic!("no tools were offered, yet {call:?}"),
            Ok(done @ ChatEvent::Done(_)) => {
                assert!(stream.next().await.is_none(), "nothing after Done");
                return (texts, Ok(done));
            }
            Err(error) => {
                assert!(stream.next().await.is_none(), "nothing after an error");
                return (texts, Err(error));
            }
        }
    }
    panic!("the stream ended without Done or an error; deltas: {texts:?}");
}

fn upstream_error(error: &ModelError) -> (&str, Option<u16>, &str) {
    match error {
        ModelError::Upstream {
            upstream,
            status,
            message,
        } => (upstream, *status, message),
        other => panic!("expected an Upstream error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_plain_answer_is_returned_with_its_report_and_the_upstream_model_id_is_sent() {
    let fake = Fake::start(|_| async { ok_completion("Hi there") }).await;
    let mut options = fake.options();
    options.pricing = Pricing {
        input_per_million: 1.0,
        output_per_million: 2.0,
    };
    let model = RemoteModel::new(options).unwrap();
    let mut req = request();
    req.logprobs = Some(true);

    let output = model.complete(req).await.unwrap();

    assert_eq!(output.text, "Hi there");
    assert_eq!(output.finish_reason, FinishReason::Length);
    assert_eq!(output.usage, Usage::new(12, 4));
    let logprobs = output.logprobs.expect("asked for logprobs");
    assert_eq!(logprobs.len(), 1);
    assert_eq!(logprobs[0].token, "Hi");
    assert_eq!(logprobs[0].logprob, -0.25);
    let report = &output.report;
    assert_eq!(report.stages.len(), 1);
    let stage = &report.stages[0];
    assert_eq!(stage.model, "big");
    assert_eq!(stage.location, Location::Remote);
    assert_eq!((stage.prompt_tokens, stage.completion_tokens), (12, 4));
    assert!(
        (stage.cost_usd - (12.0 + 8.0) / 1e6).abs() < 1e-15,
        "{}",
        stage.cost_usd
    );
    assert!(stage.latency_ms > 0.0);
    assert_eq!(stage.time_to_first_token_ms, None);

    let sent = fake.requests();
    assert_eq!(sent.len(), 1);
    let body = &sent[0].body;
    assert_eq!(body["model"], "upstream-model-7b");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "Say hello.");
    assert_eq!(body["temperature"], 0.25);
    assert_eq!(body["max_tokens"], 16);
    assert_eq!(body["logprobs"], true);
    assert!(body.get("stream").is_none_or(|s| s == false), "{body}");
    assert!(body.get("stream_options").is_none(), "{body}");
    assert!(sent[0].headers.get("authorization").is_none());
    assert_eq!(sent[0].headers["content-type"], "application/json");
}

#[tokio::test]
async fn without_logprobs_requested_none_are_returned() {
    let fake = Fake::start(|_| async { ok_completion("Hi") }).await;
    let output = fake.model().complete(request()).await.unwrap();
    assert_eq!(output.logprobs, None);
}

#[tokio::test]
async fn a_stream_concatenates_its_deltas_and_ends_with_usage_and_finish_reason() {
    let fake = Fake::start(|_| async {
        let split = chunk(Some(" wor"), None);
        let (head, tail) = split.split_at(25);
        sse(
            vec![
                ": a comment the client must skip\n\n".into(),
                chunk(None, None),
                "event: message\r\n".into(),
                chunk(Some("Hel"), None).replace("\n\n", "\r\n\r\n"),
                chunk(Some("lo"), None),
                chunk(Some(""), None),
                head.to_string(),
                tail.to_string(),
                chunk(Some("ld"), None),
                chunk(None, Some("stop")),
                usage_chunk(9, 5),
                "data: [DONE]\n\n".into(),
            ],
            Ending::Clean,
        )
    })
    .await;
    let mut options = fake.options();
    options.pricing = Pricing {
        input_per_million: 1.0,
        output_per_million: 1.0,
    };
    let model = RemoteModel::new(options).unwrap();

    let (texts, end) = drain(&model).await;

    assert_eq!(
        texts,
        vec!["Hel", "lo", " wor", "ld"],
        "empty deltas are skipped"
    );
    let ChatEvent::Done(done) = end.unwrap() else {
        unreachable!()
    };
    assert_eq!(done.finish_reason, FinishReason::Stop);
    assert_eq!(done.usage, Usage::new(9, 5));
    let stage = &done.report.stages[0];
    assert_eq!(stage.model, "big");
    assert_eq!(stage.location, Location::Remote);
    assert_eq!((stage.prompt_tokens, stage.completion_tokens), (9, 5));
    assert!((stage.cost_usd - 14.0 / 1e6).abs() < 1e-15);
    let ttft = stage
        .time_to_first_token_ms
        .expect("a stream reports time to first token");
    assert!(
        ttft > 0.0 && ttft < stage.latency_ms,
        "{ttft} vs {}",
        stage.latency_ms
    );

    let body = &fake.requests()[0].body;
    assert_eq!(body["model"], "upstream-model-7b");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn streamed_logprobs_arrive_with_their_delta() {
    let fake = Fake::start(|_| async {
        let with_logprobs = json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop",
                "logprobs": {"content": [{"token": "Hi", "logprob": -0.5, "bytes": null, "top_logprobs": []}]}}]
        });
        sse(
            vec![format!("data: {with_logprobs}\n\n"), "data: [DONE]\n\n".into()],
            Ending::Clean,
        )
    })
    .await;
    let mut stream = fake.model().stream(request()).await.unwrap();
    match stream.next().await {
        Some(Ok(ChatEvent::Delta { text, logprobs })) => {
            assert_eq!(text, "Hi");
            assert_eq!(logprobs.len(), 1);
            assert_eq!(logprobs[0].logprob, -0.5);
        }
        other => panic!("expected a delta, got {other:?}"),
    }
    match stream.next().await {
        Some(Ok(ChatEvent::Done(done))) => {
            // No usage chunk: the count is unknown and reported as zero.
            assert_eq!(done.usage, Usage::default());
            assert_eq!(done.finish_reason, FinishReason::Stop);
        }
        other => panic!("expected Done, got {other:?}"),
    }
}

#[tokio::test]
async fn server_errors_are_retried_until_one_succeeds() {
    let fake = Fake::start(|n| async move {
        if n < 2 {
            openai_error(StatusCode::INTERNAL_SERVER_ERROR, "the GPU fell over")
        } else {
            ok_completion("third time lucky")
        }
    })
    .await;
    let output = fake.model().complete(request()).await.unwrap();
    assert_eq!(output.text, "third time lucky");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn a_stream_is_retried_before_its_first_byte() {
    let fake = Fake::start(|n| async move {
        if n == 0 {
            StatusCode::BAD_GATEWAY.into_response()
        } else {
            sse(
                vec![chunk(Some("ok"), Some("stop")), "data: [DONE]\n\n".into()],
                Ending::Clean,
            )
        }
    })
    .await;
    let (texts, end) = drain(&fake.model()).await;
    assert_eq!(texts, vec!["ok"]);
    assert!(end.is_ok());
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn retries_stop_at_max_retries_with_the_last_status_and_message() {
    let fake = Fake::start(|_| async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded, come back later",
        )
            .into_response()
    })
    .await;
    let mut options = fake.options();
    options.max_retries = 2;
    let model = RemoteModel::new(options).unwrap();

    let error = model.complete(request()).await.unwrap_err();

    let (upstream, status, message) = upstream_error(&error);
    assert_eq!(upstream, "big");
    assert_eq!(status, Some(503));
    assert!(message.contains("overloaded, come back later"), "{message}");
    assert!(message.contains("3 attempts"), "{message}");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_the_time_the_upstream_asks_for() {
    let fake = Fake::start(|n| async move {
        if n == 0 {
            let mut response = openai_error(StatusCode::TOO_MANY_REQUESTS, "slow down");
            response
                .headers_mut()
                .insert("retry-after", "1".parse().unwrap());
            response
        } else {
            ok_completion("thanks for waiting")
        }
    })
    .await;
    let started = Instant::now();
    let output = fake.model().complete(request()).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(output.text, "thanks for waiting");
    assert_eq!(fake.requests().len(), 2);
    // The backoff alone would have waited about 10 ms.
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(5), "retried after {waited:?}");
}

#[tokio::test]
async fn a_client_error_is_not_retried_and_carries_the_upstreams_message() {
    let fake = Fake::start(|_| async {
        openai_error(StatusCode::BAD_REQUEST, "'messages' must not be empty")
    })
    .await;
    let error = fake.model().complete(request()).await.unwrap_err();
    let (upstream, status, message) = upstream_error(&error);
    assert_eq!(upstream, "big");
    assert_eq!(status, Some(400));
    assert_eq!(message, "'messages' must not be empty");
    assert_eq!(fake.requests().len(), 1);
    let shown = error.to_string();
    assert!(
        shown.contains("`big`") && shown.contains("HTTP 400"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_client_error_on_a_stream_fails_before_the_stream_starts() {
    let fake = Fake::start(|_| async {
        openai_error(
            StatusCode::NOT_FOUND,
            "The model `upstream-model-7b` does not exist",
        )
    })
    .await;
    let error = match fake.model().stream(request()).await {
        Ok(_) => panic!("a 404 must fail the call itself"),
        Err(error) => error,
    };
    let (_, status, message) = upstream_error(&error);
    assert_eq!(status, Some(404));
    assert!(message.contains("does not exist"), "{message}");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn an_upstream_silent_past_the_read_timeout_times_out() {
    let fake = Fake::start(|_| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        ok_completion("too late")
    })
    .await;
    let mut options = fake.options();
    options.read_timeout = Duration::from_millis(300);
    let model = RemoteModel::new(options).unwrap();

    let started = Instant::now();
    let error = model.complete(request()).await.unwrap_err();
    let waited = started.elapsed();

    assert_eq!(
        error,
        ModelError::Timeout {
            upstream: "big".into(),
            after: Duration::from_millis(300)
        }
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(fake.requests().len(), 1, "a timeout is not retried");
}

#[tokio::test]
async fn a_stream_silent_past_the_read_timeout_times_out_after_its_deltas() {
    let fake = Fake::start(|_| async {
        sse(
            vec![chunk(Some("Hel"), None)],
            Ending::Silence(Duration::from_secs(3)),
        )
    })
    .await;
    let mut options = fake.options();
    options.read_timeout = Duration::from_millis(300);
    let model = RemoteModel::new(options).unwrap();

    let started = Instant::now();
    let (texts, end) = drain(&model).await;

    assert_eq!(texts, vec!["Hel"]);
    assert!(
        matches!(end, Err(ModelError::Timeout { ref upstream, after }) if upstream == "big" && after == Duration::from_millis(300)),
        "{end:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_stream_cut_halfway_fails_after_its_deltas() {
    for ending in [Ending::Abort, Ending::Clean] {
        let fake = Fake::start(move |_| async move {
            sse(
                vec![chunk(Some("Hel"), None), chunk(Some("lo"), None)],
                ending,
            )
        })
        .await;
        let (texts, end) = drain(&fake.model()).await;
        assert_eq!(texts, vec!["Hel", "lo"]);
        let error = end.unwrap_err();
        let (upstream, status, message) = upstream_error(&error);
        assert_eq!(upstream, "big");
        assert_eq!(status, None);
        assert!(
            message.contains("stream ended before completion"),
            "{message}"
        );
        assert_eq!(
            fake.requests().len(),
            1,
            "a started stream is never retried"
        );
    }
}

#[tokio::test]
async fn a_stream_that_closes_after_its_finish_reason_without_done_is_complete() {
    let fake = Fake::start(|_| async {
        sse(
            vec![chunk(Some("Hi"), None), chunk(None, Some("length"))],
            Ending::Clean,
        )
    })
    .await;
    let (texts, end) = drain(&fake.model()).await;
    assert_eq!(texts, vec!["Hi"]);
    let Ok(ChatEvent::Done(done)) = end else {
        panic!("expected Done, got {end:?}")
    };
    assert_eq!(done.finish_reason, FinishReason::Length);
}

#[tokio::test]
async fn malformed_stream_data_is_an_upstream_error_naming_it() {
    let fake = Fake::start(|_| async {
        sse(
            vec![
                chunk(Some("Hel"), None),
                "data: {not json\n\n".into(),
                chunk(Some("lo"), None),
            ],
            Ending::Clean,
        )
    })
    .await;
    let (texts, end) = drain(&fake.model()).await;
    assert_eq!(texts, vec!["Hel"], "nothing is passed on after bad data");
    let error = end.unwrap_err();
    let (upstream, _, message) = upstream_error(&error);
    assert_eq!(upstream, "big");
    assert!(message.contains("malformed data"), "{message}");
    assert!(message.contains("{not json"), "{message}");
}

#[tokio::test]
async fn an_error_event_in_the_stream_carries_the_upstreams_message() {
    let fake = Fake::start(|_| async {
        sse(
            vec![
                chunk(Some("Hel"), None),
                "data: {\"error\":{\"message\":\"the model crashed\",\"type\":\"server_error\"}}\n\n"
                    .into(),
            ],
            Ending::Clean,
        )
    })
    .await;
    let (texts, end) = drain(&fake.model()).await;
    assert_eq!(texts, vec!["Hel"]);
    let error = end.unwrap_err();
    let (_, _, message) = upstream_error(&error);
    assert!(message.contains("the model crashed"), "{message}");
}

#[tokio::test]
async fn a_malformed_plain_answer_is_an_upstream_error() {
    let fake = Fake::start(|_| async {
        axum::Json(json!({"id": "x", "choices": "none"})).into_response()
    })
    .await;
    let error = fake.model().complete(request()).await.unwrap_err();
    let (_, status, message) = upstream_error(&error);
    assert_eq!(status, Some(200));
    assert!(message.contains("malformed chat completion"), "{message}");
}

#[tokio::test]
async fn a_closed_port_fails_after_retries_naming_the_upstream() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut options = RemoteOptions::new("big", format!("http://127.0.0.1:{port}/v1"), "m");
    options.max_retries = 2;
    options.initial_backoff = Duration::from_millis(10);
    let model = RemoteModel::new(options).unwrap();

    let error = model.complete(request()).await.unwrap_err();

    let (upstream, status, message) = upstream_error(&error);
    assert_eq!(upstream, "big");
    assert_eq!(status, None);
    assert!(message.contains("could not connect"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("3 attempts"), "{message}");
    assert!(error.to_string().contains("`big`"));
}

#[test]
fn a_missing_api_key_variable_fails_construction_naming_it() {
    let mut options = RemoteOptions::new("big", "http://127.0.0.1:1/v1", "m");
    options.api_key_env = Some("TANDEM_REMOTE_TEST_KEY_THAT_IS_NEVER_SET".into());
    let error = RemoteModel::new(options).unwrap_err();
    assert!(
        matches!(&error, RemoteError::MissingApiKey { upstream, var }
            if upstream == "big" && var == "TANDEM_REMOTE_TEST_KEY_THAT_IS_NEVER_SET"),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(
        shown.contains("TANDEM_REMOTE_TEST_KEY_THAT_IS_NEVER_SET") && shown.contains("`big`"),
        "{shown}"
    );
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token() {
    // A variable only this test uses, so setting it cannot disturb the others.
    std::env::set_var("TANDEM_REMOTE_TEST_KEY", "sk-test-123");
    let fake = Fake::start(|n| async move {
        if n == 0 {
            ok_completion("authorised")
        } else {
            sse(
                vec![
                    chunk(Some("streamed"), Some("stop")),
                    "data: [DONE]\n\n".into(),
                ],
                Ending::Clean,
            )
        }
    })
    .await;
    let mut options = fake.options();
    options.api_key_env = Some("TANDEM_REMOTE_TEST_KEY".into());
    let model = RemoteModel::new(options).unwrap();

    assert_eq!(model.complete(request()).await.unwrap().text, "authorised");
    let (texts, end) = drain(&model).await;
    assert_eq!(texts, vec!["streamed"]);
    assert!(end.is_ok(), "{end:?}");

    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    for received in sent {
        assert_eq!(received.headers["authorization"], "Bearer sk-test-123");
    }
}
