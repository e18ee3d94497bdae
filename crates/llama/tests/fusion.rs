//! Logit fusion and hand-off on the Qwen pair: Qwen2.5-Coder-1.5B-Instruct (large) and
//! Qwen2.5-Coder-0.5B-Instruct (small), one vocabulary. `tandem models pull qwen2.5-coder-0.5b` and
//! `tandem models pull qwen2.5-coder-1.5b` put them where these tests look.
//!
//! The fused distributions are checked against ones computed here, by a separate implementation
//! of each formula, from logits read through the engines' own sequence handles. Comparisons with a
//! model decoding alone allow a near-tie at the first differing token, as the speculative tests
//! do: logits read from different batch shapes differ by rounding (see `tests/speculative.rs`).

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, Message, Role, Tool};
use tandem_core::{ChatEvent, ChatModel, ChatOutput, ModelError};
use tandem_fetch::{default_cache_dir, test_model, Fetcher};
use tandem_llama::fusion::{Fusion, Mode, Uncertainty};
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};

/// As in `tests/speculative.rs`: the largest top-two gap that rounding between batch shapes can
/// flip.
const NEAR_TIE: f32 = 0.5;

fn load(name: &str) -> Arc<LoadedModel> {
    let path = Fetcher::new(default_cache_dir())
        .resolve_local(name)
        .unwrap_or_else(|| panic!("{name} is not downloaded: run `tandem models pull {name}`"));
    LoadedModel::load(&path, None, 0).expect("model loads")
}

fn large_model() -> Arc<LoadedModel> {
    static MODEL: OnceLock<Arc<LoadedModel>> = OnceLock::new();
    MODEL.get_or_init(|| load("qwen2.5-coder-1.5b")).clone()
}

fn small_model() -> Arc<LoadedModel> {
    static MODEL: OnceLock<Arc<LoadedModel>> = OnceLock::new();
    MODEL.get_or_init(|| load("qwen2.5-coder-0.5b")).clone()
}

fn engine(model: Arc<LoadedModel>, name: &str, parallel: u32) -> Arc<LlamaEngine> {
    let mut options = EngineOptions::new(name);
    options.context_size = 1024;
    options.parallel = parallel;
    // One thread per engine: two engines (and several tests) share the machine's cores.
    options.threads = 1;
    Arc::new(LlamaEngine::start(model, options).expect("engine starts"))
}

/// Engines shared by the tests that compare with a model decoding alone.
fn large() -> Arc<LlamaEngine> {
    static ENGINE: OnceLock<Arc<LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| engine(large_model(), "qwen-1.5b", 4))
        .clone()
}

fn small() -> Arc<LlamaEngine> {
    static ENGINE: OnceLock<Arc<LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| engine(small_model(), "qwen-0.5b", 4))
        .clone()
}

const PROMPT: &str = "Write a Python function that returns the n-th Fibonacci number.";

fn request(prompt: &str, max_tokens: u32) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "fused".into(),
        messages: vec![Message::new(Role::User, prompt)],
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        logprobs: Some(true),
        top_logprobs: Some(2),
        ..Default::default()
    }
}

fn detail(out: &ChatOutput, key: &str) -> f64 {
    let entry = &out.report.strategies[0];
    entry.details[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no {key} in {entry:?}"))
}

/// Equal outputs, or a first difference at a near-tie of `alone` where `fused` took its second
/// choice.
fn assert_same_or_near_tie(alone: &ChatOutput, fused: &ChatOutput, what: &str) {
    let a = alone.logprobs.as_ref().expect("logprobs requested");
    let b = fused.logprobs.as_ref().expect("logprobs requested");
    let Some(i) = a.iter().zip(b).position(|(x, y)| x.token != y.token) else {
        assert_eq!(alone.text, fused.text, "{what}");
        return;
    };
    let top = &a[i].top_logprobs;
    let gap = top[0].logprob - top[1].logprob;
    assert!(
        gap < NEAR_TIE && b[i].token == top[1].token,
        "{what}: token {i} differs ({:?} alone, {:?} fused), gap {gap}\nalone: {:?}\nfused: {:?}",
        a[i].token,
        b[i].token,
        alone.text,
        fused.text
    );
    eprintln!("{what}: near-tie at token {i} (gap {gap}), outputs differ from there");
}

/// `ln softmax`, in f64, written apart from the library's.
fn log_probs(row: &[f32]) -> Vec<f64> {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let z: f64 = row.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    row.iter().map(|&x| f64::from(x) - max - z.ln()).collect()
}

/// Greedy decoding of `steps` tokens from `scores` (a fused score per token, minus infinity for
/// excluded ones) over the rows of `engines` at each position, through plain sequence handles.
/// Returns each chosen token's text and its log probability under the fused distribution, and the
/// gap between the two best scores.
async fn independent_greedy(
    engines: &[Arc<LlamaEngine>],
    prompt: &str,
    steps: usize,
    scores: impl Fn(&[&[f32]]) -> Vec<f64>,
) -> Vec<(String, f64, f64)> {
    let model = engines[0].model().clone();
    let mut feed = model
        .chat_prompt(&[Message::new(Role::User, prompt)])
        .unwrap();
    let mut handles = Vec::new();
    for engine in engines {
        handles.push(engine.open_sequence().await.unwrap());
    }
    let mut out = Vec::new();
    for _ in 0..steps {
        let mut rows = Vec::new();
        for handle in &mut handles {
            rows.push(handle.eval(&feed, 1).await.unwrap());
        }
        let rows: Vec<&[f32]> = rows.iter().map(|r| r.row(0)).collect();
        let s = scores(&rows);
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_unstable_by(|&a, &b| s[b].total_cmp(&s[a]));
        let best = order[0];
        let finite: Vec<f64> = s.iter().copied().filter(|x| x.is_finite()).collect();
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + finite.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        if model.is_end_of_generation(best as i32) {
            break;
        }
        let text = String::from_utf8_lossy(&model.token_bytes(best as i32)).into_owned();
        out.push((text, s[best] - lse, s[best] - s[order[1]]));
        feed = vec![best as i32];
    }
    out
}

/// The pipeline's greedy tokens and log probabilities against the independent computation: the
/// same tokens (up to a near-tie), log probabilities within `tolerance`.
fn assert_matches(out: &ChatOutput, want: &[(String, f64, f64)], tolerance: f64) {
    let got = out.logprobs.as_ref().expect("logprobs requested");
    assert_eq!(got.len(), want.len(), "{:?}", out.text);
    for (i, (g, (text, logprob, gap))) in got.iter().zip(want).enumerate() {
        if &g.token != text {
            assert!(
                *gap < f64::from(NEAR_TIE),
                "token {i}: {:?} fused, {text:?} computed apart (gap {gap})",
                g.token
            );
            eprintln!("near-tie at token {i} (gap {gap}); compared up to there");
            return;
        }
        assert!(
            (f64::from(g.logprob) - logprob).abs() < tolerance,
            "token {i} {text:?}: log probability {} fused, {logprob} computed apart",
            g.logprob
        );
    }
}

#[tokio::test]
async fn contrastive_decoding_follows_the_formula_on_the_models_logits() {
    // Engines of its own, so that no other test's sequences join their batches: the pipeline and
    // the computation below then read logits from the same batch shapes, to the bit.
    let l = engine(large_model(), "qwen-1.5b", 2);
    let s = engine(small_model(), "qwen-0.5b", 2);
    let (alpha, beta) = (0.5f32, 0.1f32);
    let mode = Mode::Contrastive {
        small: s.clone(),
        alpha,
        beta,
    };
    let fused = Fusion::new("fused", l.clone(), mode).expect("one vocabulary");
    let out = fused.complete(request(PROMPT, 16)).await.unwrap();
    let want = independent_greedy(&[l, s], PROMPT, 16, |rows| {
        let (lp_l, lp_s) = (log_probs(rows[0]), log_probs(rows[1]));
        let best = lp_l.iter().copied().fold(f64::NEG_INFINITY, f64::max).exp();
        lp_l.iter()
            .zip(&lp_s)
            .map(|(&l, &s)| {
                if l.exp() >= f64::from(beta) * best {
                    l - f64::from(alpha) * s
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect()
    })
    .await;
    assert_matches(&out, &want, 1e-3);
    let entry = &out.report.strategies[0];
    assert_eq!(entry.strategy, "contrastive");
    assert_eq!(detail(&out, "large_token_share"), 1.0);
    assert!(detail(&out, "mean_plausible") >= 1.0);
    assert_eq!(out.report.stages.len(), 2);
}

#[tokio::test]
async fn proxy_tuning_adds_the_difference_on_real_logits() {
    // No tuned/untuned pair with this vocabulary installs here, so the formula is checked with the
    // models there are: large 1.5B, "tuned" 1.5B, "untuned" 0.5B gives 2 logits_1.5B -
    // logits_0.5B, a distribution neither model has. Two of the three sequences share an engine
    // and may or may not be decoded in one batch, so logits agree up to rounding only.
    let l = engine(large_model(), "qwen-1.5b", 3);
    let s = engine(small_model(), "qwen-0.5b", 2);
    let mode = Mode::ProxyTune {
        tuned: l.clone(),
        untuned: s.clone(),
    };
    let fused = Fusion::new("fused", l.clone(), mode).expect("one vocabulary");
    let out = fused.complete(request(PROMPT, 12)).await.unwrap();
    let want = independent_greedy(&[l, s], PROMPT, 12, |rows| {
        let raw: Vec<f32> = rows[0]
            .iter()
            .zip(rows[1])
            .map(|(&l, &s)| 2.0 * l - s)
            .collect();
        log_probs(&raw)
    })
    .await;
    assert_matches(&out, &want, 0.1);
    assert_eq!(out.report.strategies[0].strategy, "proxy_tune");
    assert_eq!(out.report.stages.len(), 3);
}

#[tokio::test]
async fn proxy_tuning_with_an_equal_pair_is_the_large_model() {
    // tuned = untuned: the difference vanishes and the large model's greedy answer stands.
    let mode = Mode::ProxyTune {
        tuned: small(),
        untuned: small(),
    };
    let fused = Fusion::new("fused", large(), mode).unwrap();
    let alone = large().complete(request(PROMPT, 16)).await.unwrap();
    let out = fused.complete(request(PROMPT, 16)).await.unwrap();
    assert_same_or_near_tie(&alone, &out, "proxy-tuning, tuned = untuned");
}

#[tokio::test]
async fn a_small_model_of_another_vocabulary_is_refused_at_build_time() {
    let smol = LoadedModel::load(&test_model(), None, 0).unwrap();
    let smol = engine(smol, "smollm2", 1);
    let mode = Mode::Contrastive {
        small: smol,
        alpha: 0.5,
        beta: 0.1,
    };
    let Err(error) = Fusion::new("fused", large(), mode) else {
        panic!("SmolLM2 beside Qwen was accepted");
    };
    let message = error.to_string();
    assert!(
        message.contains("the small model `smollm2` does not share the vocabulary of `qwen-1.5b`"),
        "{message}"
    );
}

fn handoff(threshold: f64) -> Fusion {
    let mode = Mode::Handoff {
        small: small(),
        uncertainty: Uncertainty::TopProbability,
        threshold,
        takeover: 1,
    };
    Fusion::new("fused", large(), mode).unwrap()
}

#[tokio::test]
async fn handoff_at_threshold_zero_is_the_small_model_alone() {
    let alone = small().complete(request(PROMPT, 24)).await.unwrap();
    let out = handoff(0.0).complete(request(PROMPT, 24)).await.unwrap();
    assert_same_or_near_tie(&alone, &out, "hand-off never triggered");
    assert_eq!(detail(&out, "handoffs"), 0.0);
    assert_eq!(detail(&out, "tokens_from_large"), 0.0);
    assert_eq!(detail(&out, "large_evaluations"), 0.0);
}

#[tokio::test]
async fn handoff_that_always_triggers_is_the_large_model_alone() {
    let alone = large().complete(request(PROMPT, 24)).await.unwrap();
    let out = handoff(1.0).complete(request(PROMPT, 24)).await.unwrap();
    assert_same_or_near_tie(&alone, &out, "hand-off always triggered");
    assert_eq!(detail(&out, "tokens_from_small"), 0.0);
    assert_eq!(detail(&out, "large_token_share"), 1.0);
}

#[tokio::test]
async fn handoff_in_between_counts_add_up_and_streams() {
    let mut stream = handoff(0.6).stream(request(PROMPT, 48)).await.unwrap();
    let mut deltas = 0;
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::Delta { text, .. } if !text.is_empty() => deltas += 1,
            ChatEvent::Done(completion) => done = Some(completion),
            _ => {}
        }
    }
    let done = done.expect("a Done event");
    assert!(deltas > 1, "{deltas} deltas");
    let entry = &done.report.strategies[0];
    assert_eq!(entry.strategy, "handoff");
    let get = |key: &str| entry.details[key].as_f64().unwrap();
    let (from_large, from_small) = (get("tokens_from_large"), get("tokens_from_small"));
    assert_eq!(
        from_large + from_small,
        f64::from(done.usage.completion_tokens)
    );
    assert!(from_large > 0.0 && from_small > 0.0, "{entry:?}");
    // Each large token took one evaluation, its catch-up on the small model's tokens included.
    assert_eq!(get("large_evaluations"), from_large);
    let handoffs = get("handoffs");
    assert!(handoffs >= 1.0 && handoffs <= from_large, "{entry:?}");
    assert_eq!(
        get("large_token_share"),
        from_large / (from_large + from_small)
    );
    let stages: Vec<u32> = done
        .report
        .stages
        .iter()
        .map(|s| s.completion_tokens)
        .collect();
    assert_eq!(stages, [from_large as u32, from_small as u32]);
}

#[tokio::test]
async fn tools_are_refused_by_name() {
    let tool: Tool = serde_json::from_value(serde_json::json!({
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object"}}
    }))
    .unwrap();
    let mut req = request(PROMPT, 4);
    req.tools = Some(vec![tool]);
    let Err(error) = handoff(0.5).stream(req).await else {
        panic!("tools were accepted");
    };
    assert!(
        matches!(&error, ModelError::InvalidRequest { param: Some(p), .. } if p == "tools"),
        "{error:?}"
    );
}
