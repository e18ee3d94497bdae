//! `POST /v1/completions` over a real socket with SmolLM2-135M behind it: the legacy shape,
//! streamed and not, `echo`, legacy `logprobs`, several prompts and choices; the remote client
//! passing raw text through to that server; and the 400s, each naming its parameter.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use tandem_core::completions::{CompletionRequest, Prompt};
use tandem_core::openai::ChatCompletionRequest;
use tandem_core::{ChatEvent, ChatModel, ChatStream, ModelError};
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_remote::{RemoteModel, RemoteOptions};
use tandem_server::{Pipelines, ServerOptions};
use tokio::sync::OnceCell;

/// A strategy that works on chat turns only: it keeps `stream_text`'s default.
struct ChatOnly(Arc<LlamaEngine>);

#[async_trait]
impl ChatModel for ChatOnly {
    fn name(&self) -> &str {
        "chat-only"
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        self.0.stream(request).await
    }
}

async fn server() -> SocketAddr {
    static SERVER: OnceCell<SocketAddr> = OnceCell::const_new();
    *SERVER
        .get_or_init(|| async {
            let engine = tokio::task::spawn_blocking(|| {
                let model = LoadedModel::load(&tandem_fetch::test_model(), None, 0).unwrap();
                let mut options = EngineOptions::new("smollm2");
                options.context_size = 512;
                options.threads = 2;
                Arc::new(LlamaEngine::start(model, options).unwrap())
            })
            .await
            .unwrap();
            let mut pipelines = Pipelines::default();
            pipelines.insert("smollm2", engine.clone());
            pipelines.insert("chat-only", Arc::new(ChatOnly(engine)));
            common::serve_for_the_process(pipelines, ServerOptions::default()).await
        })
        .await
}

async fn post(body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/completions", server().await))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn sse(body: &Value) -> Vec<String> {
    let (status, text) = post(body).await;
    assert_eq!(status, 200, "{text}");
    text.as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(String::from)
        .collect()
}

const PROMPT: &str = "The capital of France is";

fn body() -> Value {
    json!({"model": "smollm2", "prompt": PROMPT, "temperature": 0, "max_tokens": 12})
}

#[tokio::test]
async fn a_prompt_is_continued_as_raw_text_in_the_legacy_shape() {
    let base = format!("http://{}", server().await);
    let ids = common::model_ids(&reqwest::Client::new(), &base, "unused").await;
    assert_eq!(ids, ["chat-only", "smollm2"]);
    let (status, v) = post(&body()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert!(!choice["text"].as_str().unwrap().is_empty(), "{v}");
    assert!(choice["logprobs"].is_null());
    assert_eq!(v["usage"]["completion_tokens"], 12);
    assert_eq!(choice["finish_reason"], "length");
    // No chat template: the prompt is its own tokens (and BOS, where the model has one).
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() <= 8, "{v}");
    assert_eq!(v["tandem"]["pipeline"], "smollm2");

    let (_, default_length) =
        post(&json!({"model": "smollm2", "prompt": "Once upon a time", "temperature": 0})).await;
    let used = default_length["usage"]["completion_tokens"]
        .as_u64()
        .unwrap();
    assert!(used <= 16, "the legacy default is 16 tokens, got {used}");
}

#[tokio::test]
async fn streaming_gives_the_same_text_in_text_completion_chunks() {
    let (_, whole) = post(&body()).await;
    let mut streaming = body();
    streaming["stream"] = json!(true);
    streaming["stream_options"] = json!({"include_usage": true});
    let events = sse(&streaming).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["text"].as_str())
        .collect();
    assert_eq!(text, whole["choices"][0]["text"].as_str().unwrap());
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "length"
    );
    // The second request may reuse the first one's prompt cache: only the counts must agree.
    let counts = |usage: &Value| {
        let mut usage = usage.clone();
        usage
            .as_object_mut()
            .unwrap()
            .remove("prompt_tokens_details");
        usage
    };
    assert_eq!(
        counts(&chunks.last().unwrap()["usage"]),
        counts(&whole["usage"])
    );
}

#[tokio::test]
async fn echo_puts_the_prompt_first_streamed_and_not() {
    let (_, plain) = post(&body()).await;
    let mut echo = body();
    echo["echo"] = json!(true);
    let (status, v) = post(&echo).await;
    assert_eq!(status, 200, "{v}");
    let expected = format!("{PROMPT}{}", plain["choices"][0]["text"].as_str().unwrap());
    assert_eq!(v["choices"][0]["text"], expected);
    echo["stream"] = json!(true);
    let events = sse(&echo).await;
    let text: String = events[..events.len() - 1]
        .iter()
        .filter_map(|e| {
            let chunk: Value = serde_json::from_str(e).unwrap();
            chunk["choices"].get(0)?["text"].as_str().map(String::from)
        })
        .collect();
    assert_eq!(text, expected);
}

#[tokio::test]
async fn logprobs_come_in_the_legacy_shape() {
    let mut asked = body();
    asked["logprobs"] = json!(3);
    let (status, v) = post(&asked).await;
    assert_eq!(status, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    let logprobs = &v["choices"][0]["logprobs"];
    let tokens = logprobs["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 12);
    let joined: String = tokens.iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(joined, text);
    let offsets: Vec<u64> = logprobs["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap())
        .collect();
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
    for (i, top) in logprobs["top_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let top = top.as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 3, "{top:?}");
        // Greedy: the chosen token is the most likely one.
        let chosen = logprobs["token_logprobs"][i].as_f64().unwrap();
        let best = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!((chosen - best).abs() < 1e-4, "{chosen} vs {best}");
        assert!(chosen <= 0.0);
    }
}

#[tokio::test]
async fn several_prompts_and_choices_come_back_in_order() {
    let (status, v) = post(&json!({
        "model": "smollm2", "prompt": ["One, two,", "Red, green,"], "n": 2,
        "temperature": 0.8, "seed": 5, "max_tokens": 4
    }))
    .await;
    assert_eq!(status, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
    }
    assert_eq!(v["usage"]["completion_tokens"], 16);
}

#[tokio::test]
async fn a_remote_model_passes_raw_text_through_to_its_upstream() {
    let addr = server().await;
    let options = RemoteOptions::new("loopback", format!("http://{addr}/v1"), "smollm2");
    let remote = RemoteModel::new(options).unwrap();
    let request = CompletionRequest {
        model: "ignored".into(),
        prompt: Prompt::Text(PROMPT.into()),
        temperature: Some(0.0),
        max_tokens: Some(12),
        logprobs: Some(2),
        ..Default::default()
    };
    let mut events = remote.stream_text(request).await.unwrap();
    let mut text = String::new();
    let mut tokens = 0;
    while let Some(event) = events.next().await {
        match event.unwrap() {
            ChatEvent::Delta { text: t, logprobs } => {
                text.push_str(&t);
                tokens += logprobs.len();
            }
            ChatEvent::Done(done) => assert_eq!(done.usage.completion_tokens, 12),
            ChatEvent::ToolCall(_) => panic!("a tool call from raw text"),
        }
    }
    let (_, local) = post(&body()).await;
    assert_eq!(text, local["choices"][0]["text"].as_str().unwrap());
    assert_eq!(tokens, 12);
}

async fn refused(body: Value, param: &str) {
    let (status, v) = post(&body).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], param, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{v}");
}

#[tokio::test]
async fn what_tandem_cannot_honour_is_refused_by_name() {
    let with = |key: &str, value: Value| {
        let mut b = body();
        b[key] = value;
        b
    };
    refused(with("suffix", json!("}")), "suffix").await;
    refused(with("best_of", json!(3)), "best_of").await;
    refused(with("prompt", json!([1, 2, 3])), "prompt").await;
    refused(with("prompt", json!([[1, 2], [3]])), "prompt").await;
    refused(with("prompt", json!([])), "prompt").await;
    refused(with("logprobs", json!(6)), "logprobs").await;
    refused(with("frobnicate", json!(true)), "frobnicate").await;
    refused(with("temperature", json!(5)), "temperature").await;
    let mut echo_logprobs = with("echo", json!(true));
    echo_logprobs["logprobs"] = json!(1);
    refused(echo_logprobs, "echo").await;
    let mut streamed_choices = with("n", json!(2));
    streamed_choices["stream"] = json!(true);
    refused(streamed_choices, "n").await;
    let (status, v) = post(&with("model", json!("chat-only"))).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("raw text"),
        "{v}"
    );
    let long = "word ".repeat(600);
    let (status, v) = post(&with("prompt", json!(long))).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "prompt", "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
}
