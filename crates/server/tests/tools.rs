//! Tools and structured outputs over HTTP with the official `openai` Python package, unchanged
//! (`openai_tools.py`), against Qwen2.5-Coder-0.5B (`tandem models pull qwen2.5-coder-0.5b`) and
//! SmolLM2-135M.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_server::{Pipelines, ServerOptions};

const KEY: &str = "tools-test-key";

fn engine(name: &str, path: std::path::PathBuf) -> Arc<LlamaEngine> {
    let model = LoadedModel::load(&path, None, 0).unwrap();
    let mut options = EngineOptions::new(name);
    options.context_size = 2048;
    options.threads = 2;
    Arc::new(LlamaEngine::start(model, options).unwrap())
}

async fn server() -> SocketAddr {
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
    let options = ServerOptions {
        api_keys: vec![KEY.into()],
        ..ServerOptions::default()
    };
    common::serve_for_the_process(pipelines, options).await
}

#[tokio::test]
async fn tools_and_structured_outputs_work_with_the_official_openai_client() {
    let addr = server().await;
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
