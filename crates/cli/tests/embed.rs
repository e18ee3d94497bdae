//! Embedding models through the `tandem` binary: configured with `kind = "embedding"`, used by
//! `tandem embed`, refused where a chat model is wanted, and served on `/v1/embeddings`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

fn minilm_dir() -> PathBuf {
    tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
        .resolve_local("all-minilm-l6-v2")
        .expect("run `tandem models pull all-minilm-l6-v2` first")
}

/// SmolLM2 as the chat model `small`, all-MiniLM-L6-v2 as the embedding model `minilm`.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("tandem.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[models.small]
kind = "local"
file = "{}"
context_size = 256
parallel = 1

[models.minilm]
kind = "embedding"
dir = "{}"
batch_size = 2
"#,
            tandem_fetch::test_model().display(),
            minilm_dir().display()
        ),
    )
    .unwrap();
    path
}

fn tandem(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn stdout_json(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn embed_prints_one_vector_per_text() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let texts = [
        "A dog runs in the park.",
        "Un chien court.",
        "Taxes are due in April.",
    ];
    let mut args = vec!["embed", "-m", "minilm"];
    args.extend(texts);
    let configured = stdout_json(&tandem(&config, &args));
    assert_eq!(configured["model"], "minilm");
    assert_eq!(configured["dimensions"], 384);
    assert!(configured["tokens"].as_u64().unwrap() > 10);
    let vectors = configured["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), texts.len());
    assert!(vectors.iter().all(|v| v.as_array().unwrap().len() == 384));

    // A catalog name works without configuring it, and gives the same vectors.
    args[2] = "all-minilm-l6-v2";
    let by_catalog = stdout_json(&tandem(&config, &args));
    assert_eq!(by_catalog["embeddings"], configured["embeddings"]);
}

#[test]
fn chat_and_embedding_models_are_not_mixed_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let cases: [(&[&str], &str); 4] = [
        (&["embed", "-m", "small", "x"], "`small` is a chat model"),
        (
            &["embed", "-m", "smollm2-135m", "x"],
            "`smollm2-135m` is a chat model",
        ),
        (
            &["embed", "-m", "nothing", "x"],
            "no embedding model is called `nothing`",
        ),
        (
            &["run", "-m", "minilm", "hi"],
            "`minilm` is an embedding model",
        ),
    ];
    for (args, expected) in cases {
        let output = tandem(&config, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn serve_answers_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&config(dir.path()));
    let address = server.address.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (health, reply) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let health: Value = client
            .get(format!("http://{address}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let reply: Value = client
            .post(format!("http://{address}/v1/embeddings"))
            .json(&json!({"model": "minilm", "input": ["one", "two", "three"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (health, reply)
    });
    drop(server);
    assert_eq!(health["pipelines"], json!(["small", "minilm"]));
    let data = reply["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{reply}");
    assert_eq!(data[2]["index"], 2);
    assert_eq!(data[2]["embedding"].as_array().unwrap().len(), 384);
}
