//! `POST /v1/embeddings` over a real socket with the real all-MiniLM-L6-v2 embedder behind it (and
//! SmolLM2 as a chat model beside it), from reqwest and from the official `openai` Python package.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};
use tandem_embed::Embedder;
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_server::{Pipelines, ServerOptions};
use tokio::sync::OnceCell;

const KEY: &str = "embed-key-1";

struct Server {
    addr: SocketAddr,
    embedder: Arc<Embedder>,
}

async fn server() -> &'static Server {
    static SERVER: OnceCell<Server> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            let (embedder, engine) = tokio::task::spawn_blocking(|| {
                let dir = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
                    .resolve_local("all-minilm-l6-v2")
                    .expect("run `tandem models pull all-minilm-l6-v2` first");
                let embedder = Arc::new(Embedder::load(&dir).unwrap());
                let model = LoadedModel::load(&tandem_fetch::test_model(), None, 0).unwrap();
                let mut options = EngineOptions::new("smollm2");
                options.context_size = 256;
                options.parallel = 1;
                (
                    embedder,
                    Arc::new(LlamaEngine::start(model, options).unwrap()),
                )
            })
            .await
            .unwrap();
            let mut pipelines = Pipelines::default();
            pipelines.insert_embedder("minilm", embedder.clone());
            pipelines.insert("smollm2", engine);
            let options = ServerOptions {
                api_keys: vec![KEY.into()],
                max_body_bytes: 1024 * 1024,
                ..ServerOptions::default()
            };
            let addr = common::serve_for_the_process(pipelines, options).await;
            Server { addr, embedder }
        })
        .await
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

async fn post(body: &Value) -> (u16, Value) {
    let s = server().await;
    let response = reqwest::Client::new()
        .post(url(s, "/v1/embeddings"))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const TEXTS: [&str; 3] = [
    "Where is the nearest train station?",
    "How do I get to the railway station?",
    "Preheat the oven to 200 degrees.",
];

#[tokio::test]
async fn floats_are_the_embedders_own_vectors() {
    let s = server().await;
    let (status, body) = post(&json!({"model": "minilm", "input": TEXTS})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "minilm");
    let own = s.embedder.embed(&TEXTS).unwrap();
    assert_eq!(body["usage"]["prompt_tokens"], own.tokens);
    assert_eq!(body["usage"]["total_tokens"], own.tokens);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), TEXTS.len());
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let vector = floats(&item["embedding"]);
        assert_eq!(vector.len(), 384);
        assert_eq!(max_abs_difference(&vector, &own.vectors[i]), 0.0);
    }
}

#[tokio::test]
async fn base64_and_a_single_string() {
    let s = server().await;
    let (status, body) = post(&json!({
        "model": "minilm", "input": TEXTS[0], "encoding_format": "base64", "dimensions": 384
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data[0]["embedding"].as_str().unwrap())
        .unwrap();
    let vector: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let own = s.embedder.embed(&[TEXTS[0]]).unwrap();
    assert_eq!(vector, own.vectors[0]);
}

#[tokio::test]
async fn bad_requests_get_a_400_naming_the_parameter() {
    let cases = [
        (
            json!({"model": "minilm", "input": TEXTS, "dimensions": 128}),
            "dimensions",
        ),
        (
            json!({"model": "minilm", "input": [101, 2023, 102]}),
            "input",
        ),
        (json!({"model": "minilm", "input": []}), "input"),
        (json!({"model": "minilm", "input": ["fine", ""]}), "input"),
        (
            json!({"model": "minilm", "input": "x", "normalize": false}),
            "normalize",
        ),
        (json!({"model": "smollm2", "input": "x"}), "model"),
    ];
    for (request, param) in cases {
        let (status, body) = post(&request).await;
        assert_eq!(status, 400, "{request}: {body}");
        assert_eq!(body["error"]["param"], param, "{request}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(param), "{request}: {message}");
    }
    let (status, body) = post(&json!({"model": "nope", "input": "x"})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn the_embedding_model_is_listed_and_keyed() {
    let s = server().await;
    let client = reqwest::Client::new();
    let ids = common::model_ids(&client, &url(s, ""), KEY).await;
    assert!(ids.iter().any(|id| id == "minilm"), "{ids:?}");
    let card = client
        .get(url(s, "/v1/models/minilm"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(card.status(), 200);
    let unkeyed = client
        .post(url(s, "/v1/embeddings"))
        .json(&json!({"model": "minilm", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unkeyed.status(), 401);
}

#[tokio::test]
async fn the_official_openai_python_client_gets_the_same_vectors() {
    let s = server().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_embeddings.py");
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
    let received: Value = serde_json::from_str(&stdout).unwrap();
    let texts: Vec<String> = serde_json::from_value(received["texts"].clone()).unwrap();
    let own = s.embedder.embed(&texts).unwrap();
    for key in ["default", "float"] {
        for (i, vector) in received[key].as_array().unwrap().iter().enumerate() {
            let difference = max_abs_difference(&floats(vector), &own.vectors[i]);
            // base64 carries the f32 bits; JSON floats round-trip through f64 text.
            assert!(difference < 1e-6, "{key} {i}: {difference}");
        }
    }
    let single = floats(&received["single"]);
    assert!(max_abs_difference(&single, &own.vectors[0]) < 1e-6);
}
