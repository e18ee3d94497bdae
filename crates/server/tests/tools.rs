//! Tools, structured outputs and `n` over HTTP with the official `openai` Python package,
//! unchanged (`openai_tools.py`), against Qwen2.5-Coder-0.5B (`tandem models pull
//! qwen2.5-coder-0.5b`) and SmolLM2-135M; and the remote client passing tools through to that
//! server.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use tandem_core::openai::{
    ChatCompletionRequest, FinishReason, Message, Role, ToolChoice, ToolChoiceMode,
};
use tandem_core::{ChatEvent, ChatModel};
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_remote::{RemoteModel, RemoteOptions};
use tandem_server::{Pipelines, ServerOptions};
use tokio::sync::OnceCell;

const KEY: &str = "unused-without-keys";

fn engine(name: &str, path: std::path::PathBuf) -> Arc<LlamaEngine> {
    let model = LoadedModel::load(&path, None, 0).unwrap();
    let mut options = EngineOptions::new(name);
    options.context_size = 2048;
    options.threads = 2;
    Arc::new(LlamaEngine::start(model, options).unwrap())
}

/// The test binary's one server, for one test at a time: the scripts compare answers to equal greedy
/// requests, and an answer can change with what the engine batches it with.
async fn server() -> (SocketAddr, tokio::sync::MutexGuard<'static, ()>) {
    static SERVER: OnceCell<SocketAddr> = OnceCell::const_new();
    static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let alone = ALONE.lock().await;
    (*SERVER.get_or_init(start_server).await, alone)
}

async fn start_server() -> SocketAddr {
    let (qwen, smollm2) = tokio::task::spawn_blocking(|| {
        let qwen = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
            .resolve_local("qwen2.5-coder-0.5b")
            .expect(
                "Qwen2.5-Coder-0.5B is not downloaded: run `tandem models pull qwen2.5-coder-0.5b`",
            );
        (
            engine("qwen", qwen),
            engine("smollm2", tandem_fetch::test_model()),
        )
    })
    .await
    .unwrap();
    let mut pipelines = Pipelines::default();
    pipelines.insert("qwen", qwen);
    pipelines.insert("smollm2", smollm2);
    common::serve_for_the_process(pipelines, ServerOptions::default()).await
}

#[tokio::test]
async fn tools_and_structured_outputs_work_with_the_official_openai_client() {
    let (addr, _alone) = server().await;
    let ids = common::model_ids(&reqwest::Client::new(), &format!("http://{addr}"), KEY).await;
    assert_eq!(ids, ["qwen", "smollm2"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_tools.py");
    let python = std::env::var("TANDEM_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .env("OPENAI_BASE_URL", format!("http://{addr}/v1"))
        .env("OPENAI_API_KEY", KEY)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the openai client failed (are `openai` and `pydantic` installed for {python}?)\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[tokio::test]
async fn a_remote_model_passes_tools_through_and_reads_the_calls_back() {
    let (addr, _alone) = server().await;
    let options = RemoteOptions::new("tandem-loopback", format!("http://{addr}/v1"), "qwen");
    let remote = RemoteModel::new(options).unwrap();
    let request = ChatCompletionRequest {
        model: "ignored".into(),
        messages: vec![Message::new(Role::User, "Write a haiku about the sea.")],
        temperature: Some(0.0),
        max_tokens: Some(60),
        tools: Some(
            serde_json::from_value(serde_json::json!([{"type": "function", "function": {
                "name": "get_weather", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]))
            .unwrap(),
        ),
        tool_choice: Some(ToolChoice::Mode(ToolChoiceMode::Required)),
        parallel_tool_calls: Some(false),
        ..Default::default()
    };
    let out = remote.complete(request.clone()).await.unwrap();
    assert_eq!(out.finish_reason, FinishReason::ToolCalls, "{out:?}");
    assert_eq!(out.tool_calls.len(), 1, "{out:?}");
    assert_eq!(out.tool_calls[0].function.name, "get_weather");
    let mut stream = remote.stream(request).await.unwrap();
    let mut pieces = Vec::new();
    let mut finish = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::ToolCall(piece) => pieces.push(piece),
            ChatEvent::Delta { text, .. } => assert!(text.is_empty(), "{text}"),
            ChatEvent::Done(done) => finish = Some(done.finish_reason),
        }
    }
    assert_eq!(finish, Some(FinishReason::ToolCalls));
    assert_eq!(pieces[0].function.name.as_deref(), Some("get_weather"));
    let arguments: String = pieces
        .iter()
        .filter_map(|p| p.function.arguments.clone())
        .collect();
    assert_eq!(arguments, out.tool_calls[0].function.arguments);
}

#[tokio::test]
async fn completions_and_responses_work_with_the_official_openai_client() {
    let (addr, _alone) = server().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_api.py");
    let python = std::env::var("TANDEM_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .env("OPENAI_BASE_URL", format!("http://{addr}/v1"))
        .env("OPENAI_API_KEY", KEY)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the openai client failed (is `openai` installed for {python}?)\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
