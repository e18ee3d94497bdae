//! Routers with real models: SmolLM2-135M's perplexity of the prompt (the router that needs no
//! training) and a nearest-neighbour router on all-MiniLM-L6-v2 embeddings.

use std::sync::{Arc, OnceLock};

use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::sampling::log_sum_exp;
use tandem_core::{ChatModel, Pricing, Report};
use tandem_embed::Embedder;
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_route::router::mean_negative_log_likelihood;
use tandem_route::{
    Example, LearnedRouter, LearnedScorer, Learner, PerplexityScorer, PromptScorer, Router,
    RouterOptions,
};

fn engines() -> (Arc<LlamaEngine>, Arc<LlamaEngine>) {
    static ENGINES: OnceLock<(Arc<LlamaEngine>, Arc<LlamaEngine>)> = OnceLock::new();
    ENGINES
        .get_or_init(|| {
            let model =
                LoadedModel::load(&tandem_fetch::test_model(), None, 0).expect("model loads");
            let start = |name: &str| {
                let mut options = EngineOptions::new(name);
                options.context_size = 512;
                options.parallel = 2;
                options.threads = 1;
                Arc::new(LlamaEngine::start(Arc::clone(&model), options).expect("engine starts"))
            };
            (start("small"), start("large"))
        })
        .clone()
}

fn request(prompt: &str) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "routed".into(),
        messages: vec![Message::new(Role::User, prompt)],
        temperature: Some(0.0),
        max_tokens: Some(8),
        ..Default::default()
    }
}

fn choice(report: &Report) -> &serde_json::Map<String, serde_json::Value> {
    assert_eq!(report.strategies.len(), 1, "{report:?}");
    assert_eq!(report.strategies[0].strategy, "router");
    &report.strategies[0].details
}

const PLAIN: &str = "What is the capital of France?";
const GARBLED: &str = "qzx vvk plo wrt ufe jjq xxb mnz";

#[tokio::test]
async fn perplexity_is_the_mean_surprise_of_each_next_token() {
    let (small, _) = engines();
    let tokens = small.model().chat_prompt(&request(PLAIN).messages).unwrap();
    // One evaluation of the whole prompt, every row kept: the reference.
    let mut sequence = small.open_sequence().await.unwrap();
    let logits = sequence
        .eval(&tokens[..tokens.len() - 1], tokens.len() - 1)
        .await
        .unwrap();
    let expected: f64 = (0..tokens.len() - 1)
        .map(|i| {
            let row = logits.row(i);
            f64::from(log_sum_exp(row) - row[tokens[i + 1] as usize])
        })
        .sum::<f64>()
        / (tokens.len() - 1) as f64;
    drop(sequence);
    let measured = mean_negative_log_likelihood(&small, &tokens).await.unwrap();
    assert!(
        (measured - expected).abs() < 1e-3,
        "{measured} vs {expected}"
    );
    assert_eq!(
        mean_negative_log_likelihood(&small, &tokens[..1])
            .await
            .unwrap(),
        0.0
    );
}

#[tokio::test]
async fn a_perplexity_router_sends_surprising_prompts_to_the_large_model() {
    let (small, large) = engines();
    let scorer = Arc::new(PerplexityScorer::new(small.clone()));
    let plain = scorer.score(&request(PLAIN)).await.unwrap();
    let garbled = scorer.score(&request(GARBLED)).await.unwrap();
    assert!(garbled > plain, "garbled {garbled} vs plain {plain}");

    let router = Router::new(
        RouterOptions {
            name: "routed".into(),
            threshold: (plain + garbled) / 2.0,
            large_pricing: Some(Pricing {
                input_per_million: 3.0,
                output_per_million: 9.0,
            }),
        },
        scorer,
        small.clone(),
        large.clone(),
    );
    let to_small = router.complete(request(PLAIN)).await.unwrap();
    assert_eq!(to_small.report.stages[0].model, "small");
    assert_eq!(choice(&to_small.report)["chose"], "small");
    // The small model is free here: the answer saved the large model's whole price of it.
    let large_price = 3.0 * f64::from(to_small.usage.prompt_tokens) / 1e6
        + 9.0 * f64::from(to_small.usage.completion_tokens) / 1e6;
    let saved = choice(&to_small.report)["saved_usd"].as_f64().unwrap();
    assert!(
        (saved - large_price).abs() < 1e-12,
        "{saved} vs {large_price}"
    );
    assert_eq!(
        to_small.text,
        small.complete(request(PLAIN)).await.unwrap().text
    );
    let to_large = router.complete(request(GARBLED)).await.unwrap();
    assert_eq!(to_large.report.stages[0].model, "large");
    let details = choice(&to_large.report);
    assert_eq!(details["chose"], "large");
    assert_eq!(details["saved_usd"], 0.0);
    assert_eq!(details["scorer"], "perplexity");
    assert!((details["score"].as_f64().unwrap() - garbled).abs() < 1e-9);
    // The sequences the scorer borrowed are back.
    assert_eq!(small.load().active, 0);
}

#[tokio::test]
async fn a_learned_router_routes_by_the_meaning_of_the_prompt() {
    let dir = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
        .resolve_local("all-minilm-l6-v2")
        .expect("run `tandem models pull all-minilm-l6-v2` first");
    let embedder = Arc::new(Embedder::load(&dir).unwrap());
    let hard = [
        "Write a Python function that merges overlapping intervals.",
        "Implement a binary search tree with deletion in Python.",
        "Write code to parse a CSV file and sum a column.",
    ];
    let easy = ["Say hello.", "Good morning!", "Thanks, bye."];
    let texts: Vec<&str> = hard.iter().chain(&easy).copied().collect();
    let vectors = embedder.embed(&texts).unwrap().vectors;
    let examples: Vec<Example> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, embedding)| Example {
            embedding,
            label: if i < hard.len() { 1.0 } else { 0.0 },
        })
        .collect();
    let mut knn = LearnedRouter::fit(Learner::Knn, &examples).unwrap();
    if let LearnedRouter::Knn { k, .. } = &mut knn {
        *k = 3;
    }
    let (small, large) = engines();
    let router = Router::new(
        RouterOptions {
            name: "routed".into(),
            threshold: 0.5,
            large_pricing: None,
        },
        Arc::new(LearnedScorer::new(embedder, knn)),
        small,
        large,
    );
    let code = router
        .complete(request(
            "Write a Python function that reverses a linked list.",
        ))
        .await
        .unwrap();
    assert_eq!(choice(&code.report)["chose"], "large");
    assert_eq!(choice(&code.report)["scorer"], "knn");
    let greeting = router.complete(request("Hello there!")).await.unwrap();
    assert_eq!(choice(&greeting.report)["chose"], "small");
    // A request with no user text cannot be scored: a clear error, not a guess.
    let mut empty = request("x");
    empty.messages = vec![Message::new(Role::System, "be brief")];
    let error = router.complete(empty).await.err().unwrap();
    assert!(error.to_string().contains("user message"), "{error}");
}
