//! The server over a real socket with fake models behind it, for what a real model cannot be made
//! to do on demand: end a stream early, refuse for overload, hang until the client leaves. Also the
//! request log, which a global subscriber in this binary captures.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use tandem_core::openai::{ChatCompletionRequest, FinishReason, Usage};
use tandem_core::{ChatEvent, ChatModel, ChatStream, Completion, ModelError, Report, Stage};
use tandem_server::{router, Pipelines, ServerOptions, OVERLOADED_RETRY_AFTER_SECS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Wide, so that a loaded machine cannot fail a test that is right; a server that never notices
/// fails it all the same.
const DEADLINE: Duration = Duration::from_secs(30);

/// What the fake does when asked to generate.
#[derive(Clone, Copy)]
enum Behaviour {
    /// One delta, then the final event.
    Answers,
    /// One delta, then the stream ends without its final event.
    EndsEarly,
    /// Refuses: the queue is full.
    Overloaded,
    /// A stream that never yields, as a request that waits in a queue or prefills a long prompt.
    Hangs,
}

struct Fake {
    behaviour: Behaviour,
    signals: Arc<Signals>,
}

fn fake(behaviour: Behaviour) -> Fake {
    Fake {
        behaviour,
        signals: Arc::default(),
    }
}

/// When the fake was asked to generate, and when its stream was dropped.
#[derive(Default)]
struct Signals {
    asked: Notify,
    dropped: Notify,
}

/// Held by a stream: dropping the stream drops it.
struct DropSignal(Arc<Signals>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.dropped.notify_one();
    }
}

fn done() -> Completion {
    let stage = Stage::unpriced_local("fake", 3, 1, 1.0);
    Completion {
        finish_reason: FinishReason::Stop,
        usage: Usage::new(3, 1),
        report: Report::single(stage),
    }
}

#[async_trait]
impl ChatModel for Fake {
    fn name(&self) -> &str {
        "fake"
    }

    async fn stream(&self, _: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        self.signals.asked.notify_one();
        let delta = ChatEvent::Delta {
            text: "hi".into(),
            logprobs: Vec::new(),
        };
        let events = match self.behaviour {
            Behaviour::Answers => vec![Ok(delta), Ok(ChatEvent::Done(done()))],
            Behaviour::EndsEarly => vec![Ok(delta)],
            Behaviour::Overloaded => return Err(ModelError::Overloaded("fake".into())),
            Behaviour::Hangs => {
                let guard = DropSignal(self.signals.clone());
                return Ok(futures::stream::pending()
                    .map(move |event| {
                        let _held = &guard;
                        event
                    })
                    .boxed());
            }
        };
        Ok(futures::stream::iter(events).boxed())
    }
}

/// A server of its own, on this test's runtime, with the fake as pipeline `fake`.
async fn serve(model: Fake) -> SocketAddr {
    let mut pipelines = Pipelines::default();
    pipelines.insert("fake", Arc::new(model));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(pipelines, ServerOptions::default());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn body(stream: bool) -> Value {
    json!({
        "model": "fake",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream
    })
}

async fn post(addr: SocketAddr, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Everything the server logged in this test binary so far.
fn log() -> String {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buffer = LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Captured(writer.clone()))
            .init();
        buffer
    });
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_log_line_of_a_request_names_its_user() {
    log();
    let addr = serve(fake(Behaviour::Answers)).await;
    for stream in [false, true] {
        let user = format!("end-user-{stream}");
        let mut request = body(stream);
        request["user"] = json!(user);
        let response = post(addr, &request).await;
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
        let needle = format!("user=\"{user}\"");
        let line = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                if let Some(line) = log()
                    .lines()
                    .find(|l| l.contains(&needle) && l.contains("chat completion"))
                {
                    return line.to_string();
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no log line with {needle} in\n{}", log()));
        assert!(line.contains("status=200"), "{line}");
    }
}

/// The `data:` payloads of an SSE response, in order.
async fn sse_events(addr: SocketAddr, body: &Value) -> Vec<String> {
    let response = post(addr, body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn a_stream_that_ends_without_its_final_event_is_an_error() {
    let addr = serve(fake(Behaviour::EndsEarly)).await;
    let events = sse_events(addr, &body(true)).await;
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{events:?}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("without its final event"),
        "{last}"
    );
    // The text before the cut still arrived.
    let second: Value = serde_json::from_str(&events[1]).unwrap();
    assert_eq!(second["choices"][0]["delta"]["content"], "hi");

    let response = post(addr, &body(false)).await;
    assert_eq!(response.status(), 500);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error", "{v}");
}

#[tokio::test]
async fn an_overloaded_model_answers_503_with_retry_after_and_is_counted() {
    let addr = serve(fake(Behaviour::Overloaded)).await;
    for stream in [false, true] {
        let response = post(addr, &body(stream)).await;
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()["retry-after"],
            OVERLOADED_RETRY_AFTER_SECS.to_string().as_str()
        );
        let v: Value = response.json().await.unwrap();
        assert_eq!(v["error"]["type"], "server_error", "{v}");
        assert_eq!(v["error"]["code"], "overloaded", "{v}");
    }
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = r#"tandem_requests_rejected_total{pipeline="fake",reason="overloaded"} 2"#;
    assert!(
        metrics.lines().any(|l| l == line),
        "no `{line}` in\n{metrics}"
    );
    assert!(metrics.contains(r#"tandem_requests_total{pipeline="fake",status="503"} 2"#));
}

/// Sends a request over a raw socket, waits until the model is asked (and, for a stream, until
/// the first event arrives), closes the connection, and returns how long the server took to drop
/// the model's stream.
async fn leave_while_waiting(stream: bool) -> Duration {
    let model = fake(Behaviour::Hangs);
    let signals = model.signals.clone();
    let addr = serve(model).await;
    let body = body(stream).to_string();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    tokio::time::timeout(DEADLINE, signals.asked.notified())
        .await
        .expect("the model was never asked");
    if stream {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("data: ") {
            let mut buffer = [0; 1024];
            let n = tokio::time::timeout(DEADLINE, socket.read(&mut buffer))
                .await
                .expect("no first event")
                .unwrap();
            assert!(n > 0, "the server closed the stream");
            seen.extend_from_slice(&buffer[..n]);
        }
    }
    let left = Instant::now();
    drop(socket);
    tokio::time::timeout(DEADLINE, signals.dropped.notified())
        .await
        .unwrap_or_else(|_| panic!("the model's stream outlived its client (stream: {stream})"));
    left.elapsed()
}

#[tokio::test]
async fn a_client_that_leaves_a_stream_frees_its_request_at_once() {
    let took = leave_while_waiting(true).await;
    eprintln!("streaming: dropped {took:?} after the client left");
}

#[tokio::test]
async fn a_client_that_leaves_a_plain_request_frees_it_at_once() {
    let took = leave_while_waiting(false).await;
    eprintln!("non-streaming: dropped {took:?} after the client left");
}
