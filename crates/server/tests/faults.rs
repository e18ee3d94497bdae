//! The server over a real socket with fake models behind it, for what a real model cannot be made
//! to do on demand: end a stream early, refuse for overload, hang until the client leaves. Also the
//! request log, which a global subscriber in this binary captures.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use tandem_core::openai::{ChatCompletionRequest, FinishReason, Usage};
use tandem_core::{
    ChatEvent, ChatModel, ChatStream, Completion, Location, ModelError, Report, Stage,
};
use tandem_server::{router, Pipelines, ServerOptions};

/// What the fake does when asked to generate.
#[derive(Clone, Copy)]
enum Behaviour {
    /// One delta, then the final event.
    Answers,
}

struct Fake {
    behaviour: Behaviour,
}

fn done() -> Completion {
    let stage = Stage {
        model: "fake".into(),
        location: Location::Local,
        prompt_tokens: 3,
        completion_tokens: 1,
        latency_ms: 1.0,
        time_to_first_token_ms: None,
        cost_usd: 0.0,
    };
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
        let delta = ChatEvent::Delta {
            text: "hi".into(),
            logprobs: Vec::new(),
        };
        let events = match self.behaviour {
            Behaviour::Answers => vec![Ok(delta), Ok(ChatEvent::Done(done()))],
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
    let addr = serve(Fake {
        behaviour: Behaviour::Answers,
    })
    .await;
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
