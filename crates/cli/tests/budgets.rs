//! Cost accounting, budgets and the semantic cache end to end: `tandem serve` with SmolLM2-135M
//! priced like a cloud model, two API keys, and the spending and cached answers kept in the state
//! store.

mod common;

use std::path::{Path, PathBuf};

use common::Server;
use serde_json::{json, Value};

const ALICE: &str = "alice-secret-key";
const BOB: &str = "bob-secret-key";
/// Dollars per million tokens, both ways: a request of ~30 tokens costs ~$0.03.
const PRICE: f64 = 1000.0;
const ALICE_BUDGET: f64 = 0.08;

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("tandem.toml");
    let text = format!(
        r#"
[server]
api_keys_env = "TANDEM_TEST_KEYS"

[store]
path = "{db}"

[models.small]
kind = "local"
file = "{model}"
context_size = 512
parallel = 2
threads = 2
price = {{ input_per_million = {PRICE}, output_per_million = {PRICE} }}

[models.minilm]
kind = "embedding"
dir = "{minilm}"

[pipelines.default]
strategy = "direct"
model = "small"

[pipelines.cached]
strategy = "cache"
model = "default"
embedder = "minilm"

[budgets]
default_usd = 10.0

[budgets.keys.alice]
key_env = "TANDEM_TEST_ALICE"
usd = {ALICE_BUDGET}
"#,
        db = dir.join("state.sqlite").display(),
        model = tandem_fetch::test_model().display(),
        minilm = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
            .resolve_local("all-minilm-l6-v2")
            .expect("run `tandem models pull all-minilm-l6-v2` first")
            .display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(config: &Path) -> Server {
    Server::start_with_env(
        config,
        &[
            ("TANDEM_TEST_KEYS", &format!("{ALICE},{BOB}")),
            ("TANDEM_TEST_ALICE", ALICE),
        ],
    )
}

/// The status, and the body (JSON) or, for a stream, the final chunk's `tandem` report.
async fn ask(address: &str, key: &str, stream: bool) -> (u16, Value) {
    ask_pipeline(address, "default", key, stream).await
}

async fn ask_pipeline(address: &str, pipeline: &str, key: &str, stream: bool) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{address}/v1/chat/completions"))
        .bearer_auth(key)
        .json(
            &json!({"model": pipeline, "stream": stream, "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": "Name a colour."}]}),
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if !stream || status != 200 {
        return (status, response.json().await.unwrap());
    }
    let body = response.text().await.unwrap();
    let last = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .rfind(|l| *l != "[DONE]")
        .unwrap();
    let chunk: Value = serde_json::from_str(last).unwrap();
    (status, json!({ "tandem": chunk["tandem"] }))
}

async fn metrics(address: &str) -> String {
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn gauge(metrics: &str, name: &str, key: &str) -> f64 {
    let prefix = format!("{name}{{");
    metrics
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains(&format!("key=\"{key}\"")))
        .unwrap_or_else(|| panic!("no {name} for {key} in\n{metrics}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_is_spent_across_a_restart_and_only_for_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let mut spent = 0.0;
    let mut answered = 0;
    {
        let server = start(&config);
        // Streamed and whole answers are both charged, at the configured price.
        for stream in [true, false] {
            let (status, body) = ask(&server.address, ALICE, stream).await;
            assert_eq!(status, 200, "{body}");
            let report = &body["tandem"];
            let tokens = report["prompt_tokens"].as_f64().unwrap()
                + report["completion_tokens"].as_f64().unwrap();
            let cost = report["cost_usd"].as_f64().unwrap();
            assert!((cost - tokens * PRICE / 1e6).abs() < 1e-12, "{report}");
            spent += cost;
            answered += 1;
        }
        assert!(
            spent < ALICE_BUDGET,
            "two requests must fit the budget: {spent}"
        );
        let metrics = metrics(&server.address).await;
        let kept = gauge(&metrics, "tandem_spend_usd", "alice");
        assert!((kept - spent).abs() < 1e-9, "{kept} vs {spent}");
        assert_eq!(gauge(&metrics, "tandem_spend_requests", "alice"), 2.0);
    }

    // A new process on the same store knows what alice spent.
    let server = start(&config);
    let metrics_after = metrics(&server.address).await;
    let kept = gauge(&metrics_after, "tandem_spend_usd", "alice");
    assert!(
        (kept - spent).abs() < 1e-9,
        "after a restart: {kept} vs {spent}"
    );
    let refusal = loop {
        let (status, body) = ask(&server.address, ALICE, false).await;
        if status == 429 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(spent < ALICE_BUDGET, "answered with ${spent} already spent");
        spent += body["tandem"]["cost_usd"].as_f64().unwrap();
        answered += 1;
        assert!(answered < 10, "the budget never ran out");
    };
    assert!(spent >= ALICE_BUDGET, "refused with only ${spent} spent");
    assert_eq!(refusal["error"]["type"], "insufficient_quota", "{refusal}");
    assert_eq!(refusal["error"]["code"], "insufficient_quota");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(message.contains("budget"), "{message}");
    // Streams are refused before they start, with the same body.
    let (status, body) = ask(&server.address, ALICE, true).await;
    assert_eq!((status, &body), (429, &refusal));

    // Bob's key has its own (default) budget and is still served.
    let (status, body) = ask(&server.address, BOB, false).await;
    assert_eq!(status, 200, "{body}");
    let metrics = metrics(&server.address).await;
    assert!(
        metrics.contains(
            "tandem_requests_rejected_total{pipeline=\"default\",reason=\"insufficient_quota\"} 2"
        ),
        "{metrics}"
    );
    let bob_label = format!("key-{}", &tandem_server::tenant_id(BOB)[..12]);
    assert_eq!(gauge(&metrics, "tandem_spend_requests", &bob_label), 1.0);
    assert_eq!(
        gauge(&metrics, "tandem_spend_requests", "alice"),
        answered as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_cache_answers_each_key_from_its_own_entries_for_free() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&config(dir.path()));
    let (status, first) = ask_pipeline(&server.address, "cached", BOB, false).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["tandem"]["strategies"][0]["hit"], "miss");
    let cost = first["tandem"]["cost_usd"].as_f64().unwrap();
    assert!(cost > 0.0);
    // Streamed, the same request is replayed from the cache, and costs nothing.
    let (status, again) = ask_pipeline(&server.address, "cached", BOB, true).await;
    assert_eq!(status, 200, "{again}");
    let entry = &again["tandem"]["strategies"][0];
    assert_eq!(entry["hit"], "exact", "{again}");
    assert_eq!(entry["saved_usd"].as_f64().unwrap(), cost);
    assert_eq!(again["tandem"]["cost_usd"], 0.0);
    // Another key never sees bob's entry.
    let (status, other) = ask_pipeline(&server.address, "cached", ALICE, false).await;
    assert_eq!(status, 200, "{other}");
    assert_eq!(other["tandem"]["strategies"][0]["hit"], "miss");
    let metrics = metrics(&server.address).await;
    for (result, count) in [("miss", 2), ("exact", 1)] {
        let line = format!(
            "tandem_cache_requests_total{{pipeline=\"cached\",result=\"{result}\"}} {count}"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    // What the hit saved is counted for bob.
    let bob_label = format!("key-{}", &tandem_server::tenant_id(BOB)[..12]);
    let saved = gauge(&metrics, "tandem_saved_usd", &bob_label);
    assert!((saved - cost).abs() < 1e-12, "{saved} vs {cost}");
}
