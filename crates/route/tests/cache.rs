//! The semantic cache with real models: SmolLM2-135M answers, all-MiniLM-L6-v2 compares questions,
//! and the entries live in a SQLite state store.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::{ChatEvent, ChatModel, ChatOutput, Pricing};
use tandem_embed::Embedder;
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_route::cache::cosine;
use tandem_route::{CacheOptions, SemanticCache};
use tandem_store::SqliteStore;

fn engine() -> Arc<LlamaEngine> {
    static ENGINE: OnceLock<Arc<LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let model =
                LoadedModel::load(&tandem_fetch::test_model(), None, 0).expect("model loads");
            let mut options = EngineOptions::new("small");
            options.context_size = 512;
            options.parallel = 2;
            options.threads = 1;
            options.pricing = Pricing {
                input_per_million: 1.0,
                output_per_million: 2.0,
            };
            Arc::new(LlamaEngine::start(model, options).expect("engine starts"))
        })
        .clone()
}

fn embedder() -> Arc<Embedder> {
    static EMBEDDER: OnceLock<Arc<Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let dir = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
                .resolve_local("all-minilm-l6-v2")
                .expect("run `tandem models pull all-minilm-l6-v2` first");
            Arc::new(Embedder::load(&dir).unwrap())
        })
        .clone()
}

/// A cache over SmolLM2 in a fresh store; the directory must outlive it.
fn cache(threshold: f32, ttl: Duration) -> (SemanticCache, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.sqlite")).unwrap();
    let options = CacheOptions {
        name: "cached".into(),
        threshold,
        ttl,
        max_entries: 100,
    };
    let cache = SemanticCache::new(options, engine(), embedder(), Arc::new(store));
    (cache, dir)
}

fn request(question: &str, tenant: &str) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "cached".into(),
        messages: vec![Message::new(Role::User, question)],
        temperature: Some(0.0),
        max_tokens: Some(12),
        tenant: Some(tenant.into()),
        ..Default::default()
    }
}

fn lookup(output: &ChatOutput) -> &serde_json::Map<String, serde_json::Value> {
    let entry = output
        .report
        .strategies
        .iter()
        .find(|e| e.strategy == "cache")
        .expect("a cache entry");
    assert_eq!(entry.pipeline, "cached");
    &entry.details
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn an_exact_repeat_is_answered_from_the_cache_as_json_and_as_a_stream() {
    let (cache, _dir) = cache(0.9, DAY);
    let question = "Name a primary colour.";
    let first = cache.complete(request(question, "alice")).await.unwrap();
    assert_eq!(lookup(&first)["hit"], "miss");
    assert_eq!(lookup(&first)["stored"], true);
    assert!(first.report.cost_usd > 0.0);

    let again = cache
        .complete(request("Name  a primary colour. ", "alice"))
        .await
        .unwrap();
    let hit = lookup(&again);
    assert_eq!(hit["hit"], "exact");
    assert_eq!(hit["similarity"], 1.0);
    assert!(hit["age_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(hit["saved_usd"].as_f64().unwrap(), first.report.cost_usd);
    assert_eq!(again.text, first.text);
    assert_eq!(again.usage, first.usage);
    assert_eq!(again.report.cost_usd, 0.0);
    assert!(again.report.stages.is_empty(), "no model ran");
    assert_eq!(again.report.model, "small");

    // Streamed, the stored answer is replayed in pieces that add up to it.
    let mut stream = cache.stream(request(question, "alice")).await.unwrap();
    let (mut pieces, mut text) = (0, String::new());
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::Delta { text: piece, .. } => {
                pieces += 1;
                text.push_str(&piece);
            }
            ChatEvent::Done(done) => assert_eq!(done.report.strategies[0].details["hit"], "exact"),
            ChatEvent::ToolCall(_) => panic!("no tools"),
        }
    }
    assert_eq!(text, first.text);
    assert!(
        pieces > 1 || first.text.split_whitespace().count() <= 4,
        "{pieces} pieces"
    );
}

#[tokio::test]
async fn a_paraphrase_hits_by_similarity_and_a_changed_number_misses() {
    let (cache, _dir) = cache(0.8, DAY);
    let stored = "What is the capital city of France?";
    let paraphrase = "Which city is the capital of France?";
    let first = cache.complete(request(stored, "alice")).await.unwrap();
    let vectors = embedder().embed(&[stored, paraphrase]).unwrap().vectors;
    let expected = f64::from(cosine(&vectors[0], &vectors[1]));
    assert!(
        expected >= 0.8,
        "the test needs a close paraphrase: {expected}"
    );

    let hit = cache.complete(request(paraphrase, "alice")).await.unwrap();
    assert_eq!(lookup(&hit)["hit"], "similar");
    let similarity = lookup(&hit)["similarity"].as_f64().unwrap();
    assert!(
        (similarity - expected).abs() < 1e-5,
        "{similarity} vs {expected}"
    );
    assert_eq!(hit.text, first.text);

    // Numbers must match: close in meaning, but another question.
    let sum = "What is 17 plus 23?";
    let other_sum = "What is 17 plus 24?";
    cache.complete(request(sum, "alice")).await.unwrap();
    let vectors = embedder().embed(&[sum, other_sum]).unwrap().vectors;
    assert!(
        cosine(&vectors[0], &vectors[1]) >= 0.8,
        "similar enough to be tempting"
    );
    let miss = cache.complete(request(other_sum, "alice")).await.unwrap();
    assert_eq!(lookup(&miss)["hit"], "miss");
    assert!(lookup(&miss)["similarity"].as_f64().unwrap() >= 0.8);
    // As do names.
    let miss = cache
        .complete(request("What is the capital city of Spain?", "alice"))
        .await
        .unwrap();
    assert_eq!(lookup(&miss)["hit"], "miss");
}

#[tokio::test]
async fn answers_are_never_shared_across_keys_and_expire() {
    let ttl = Duration::from_secs(3);
    let (cache, _dir) = cache(0.9, ttl);
    let question = "Say one word about the sea.";
    cache.complete(request(question, "alice")).await.unwrap();
    let stored = std::time::Instant::now();
    let alice = cache.complete(request(question, "alice")).await.unwrap();
    assert_eq!(lookup(&alice)["hit"], "exact");
    let bob = cache.complete(request(question, "bob")).await.unwrap();
    assert_eq!(
        lookup(&bob)["hit"],
        "miss",
        "bob must not get alice's answer"
    );
    tokio::time::sleep((ttl + Duration::from_millis(100)).saturating_sub(stored.elapsed())).await;
    let expired = cache.complete(request(question, "alice")).await.unwrap();
    assert_eq!(
        lookup(&expired)["hit"],
        "miss",
        "the entry outlived its TTL"
    );
}

#[tokio::test]
async fn sampled_requests_pass_through_uncached() {
    let (cache, _dir) = cache(0.9, DAY);
    let mut sampled = request("Tell me a colour.", "alice");
    sampled.temperature = Some(0.8);
    for _ in 0..2 {
        let output = cache.complete(sampled.clone()).await.unwrap();
        assert_eq!(lookup(&output)["hit"], "bypass");
        assert_eq!(lookup(&output)["reason"], "sampled");
        assert!(output.report.cost_usd > 0.0);
    }
}
