//! Speculative decoding on the Qwen pair: Qwen2.5-Coder-0.5B-Instruct drafts for
//! Qwen2.5-Coder-1.5B-Instruct (same vocabulary). `tandem models pull qwen2.5-coder-0.5b` and
//! `tandem models pull qwen2.5-coder-1.5b` put them where these tests look.
//!
//! Greedy outputs are compared with the target's own greedy output. Where they differ, the
//! difference must be a near-tie: the verification step reads the target's logits from a batch of
//! several tokens, plain decoding from a batch of one, and llama.cpp's CPU kernels round the two
//! differently (see `batch_rounding_noise_is_small`). At the first differing token, the plain
//! run's top two log probabilities must then be within [`NEAR_TIE`] of each other, and the
//! speculative run must have picked the plain run's second choice.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::sampling::{argmax, draw, SamplingParams};
use tandem_core::{ChatEvent, ChatModel, ChatOutput};
use tandem_fetch::{default_cache_dir, Fetcher};
use tandem_llama::speculative::verify::{self, Proposal};
use tandem_llama::speculative::{DraftSource, Speculative, SpeculativeOptions, SuffixCache};
use tandem_llama::{EngineLoad, EngineOptions, LlamaEngine, LoadedModel};

/// Largest gap between the top two log probabilities that counts as a tie under rounding noise.
/// Between a one-token and a multi-token batch, the gap between a position's best token and any
/// of its next 19 moved by up to 0.32 (Qwen2.5-Coder-1.5B Q4_K_M, x86-64 AVX2, six positions;
/// single logits by up to 0.48): llama.cpp's CPU matrix products quantize and accumulate a batch
/// of one differently from larger ones. `batch_rounding_noise_is_small` keeps that below this.
const NEAR_TIE: f32 = 0.5;

fn model(name: &str) -> Arc<LoadedModel> {
    let path = Fetcher::new(default_cache_dir())
        .resolve_local(name)
        .unwrap_or_else(|| panic!("{name} is not downloaded: run `tandem models pull {name}`"));
    LoadedModel::load(&path, None, 0).expect("model loads")
}

fn engine(model: Arc<LoadedModel>, name: &str, parallel: u32) -> Arc<LlamaEngine> {
    let mut options = EngineOptions::new(name);
    options.context_size = 1024;
    options.parallel = parallel;
    // One thread per engine: two engines (and several tests) share the machine's cores.
    options.threads = 1;
    Arc::new(LlamaEngine::start(model, options).expect("engine starts"))
}

fn target_model() -> Arc<LoadedModel> {
    static MODEL: OnceLock<Arc<LoadedModel>> = OnceLock::new();
    MODEL.get_or_init(|| model("qwen2.5-coder-1.5b")).clone()
}

fn draft_model() -> Arc<LoadedModel> {
    static MODEL: OnceLock<Arc<LoadedModel>> = OnceLock::new();
    MODEL.get_or_init(|| model("qwen2.5-coder-0.5b")).clone()
}

fn target() -> Arc<LlamaEngine> {
    static ENGINE: OnceLock<Arc<LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| engine(target_model(), "qwen-1.5b", 4))
        .clone()
}

fn draft() -> Arc<LlamaEngine> {
    static ENGINE: OnceLock<Arc<LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| engine(draft_model(), "qwen-0.5b", 4))
        .clone()
}

/// Speculation alone, without the fallback, so every step drafts.
fn pipeline(source: DraftSource) -> Speculative {
    let mut options = SpeculativeOptions::new("spec");
    options.fallback = false;
    Speculative::new(target(), source, options).expect("the pair shares a vocabulary")
}

fn request(prompt: &str, max_tokens: u32) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "spec".into(),
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
    assert_eq!(entry.strategy, "speculative");
    entry.details[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no {key} in {entry:?}"))
}

/// Equal outputs, or a first difference at a near-tie of the plain run (see the module doc).
fn assert_same_or_near_tie(plain: &ChatOutput, spec: &ChatOutput, what: &str) {
    let a = plain.logprobs.as_ref().expect("logprobs requested");
    let b = spec.logprobs.as_ref().expect("logprobs requested");
    let Some(i) = a.iter().zip(b).position(|(x, y)| x.token != y.token) else {
        assert_eq!(plain.text, spec.text, "{what}");
        return;
    };
    let top = &a[i].top_logprobs;
    let gap = top[0].logprob - top[1].logprob;
    assert!(
        gap < NEAR_TIE && b[i].token == top[1].token,
        "{what}: token {i} differs ({:?} plain, {:?} speculative) with a gap of {gap} between \
         the plain run's top two {:?}\nplain: {:?}\nspeculative: {:?}",
        a[i].token,
        b[i].token,
        top.iter().map(|t| &t.token).collect::<Vec<_>>(),
        plain.text,
        spec.text
    );
    eprintln!("{what}: near-tie at token {i} (gap {gap}), outputs differ from there");
}

const CODE_PROMPTS: [&str; 3] = [
    "Write a Python function that returns the n-th Fibonacci number.",
    "Write a Rust function that reverses a string.",
    "In JavaScript, write a function that checks whether a number is prime.",
];

#[tokio::test]
async fn greedy_speculation_gives_the_targets_greedy_output() {
    let spec = pipeline(DraftSource::Model(draft()));
    let mut accepted = 0.0;
    for prompt in CODE_PROMPTS {
        let plain = target().complete(request(prompt, 32)).await.unwrap();
        let out = spec.complete(request(prompt, 32)).await.unwrap();
        assert_same_or_near_tie(&plain, &out, prompt);
        assert_eq!(out.report.stages.len(), 2, "{:?}", out.report);
        assert_eq!(
            detail(&out, "tokens_from_draft") + detail(&out, "tokens_from_target"),
            f64::from(out.usage.completion_tokens)
        );
        accepted += detail(&out, "accepted");
    }
    // Without accepted drafts, this test would show nothing about verification.
    assert!(accepted > 10.0, "only {accepted} drafted tokens accepted");
}

#[tokio::test]
async fn batch_rounding_noise_is_small() {
    // The same position's logits, read from a one-token batch and from inside a batch of several
    // tokens, differ by rounding only, and by less than NEAR_TIE where it can flip a choice.
    let engine = target();
    let tokens = engine
        .model()
        .chat_prompt(&[Message::new(Role::User, CODE_PROMPTS[0])])
        .unwrap();
    let mut handle = engine.open_sequence().await.unwrap();
    let all = handle.eval(&tokens, 6).await.unwrap();
    let n = tokens.len();
    handle.truncate(n - 6).unwrap();
    let mut largest = 0.0f32;
    for (i, &token) in tokens[n - 6..].iter().enumerate() {
        let one = handle.eval(&[token], 1).await.unwrap();
        let (single, batched) = (one.row(0), all.row(i));
        // The difference that can flip a greedy choice: the change in the gap between each of the
        // single batch's 20 most probable tokens and its best.
        let best = argmax(single) as usize;
        let mut order: Vec<usize> = (0..single.len()).collect();
        order.sort_unstable_by(|&a, &b| single[b].total_cmp(&single[a]));
        let diff = order[1..20]
            .iter()
            .map(|&t| ((single[best] - single[t]) - (batched[best] - batched[t])).abs())
            .fold(0.0f32, f32::max);
        let raw = single
            .iter()
            .zip(batched)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("position {i}: top-20 gap change {diff}, largest raw logit change {raw}");
        largest = largest.max(diff);
    }
    assert!(largest < NEAR_TIE, "{largest}");
}

/// The chi-square distribution's upper tail, by the Wilson-Hilferty approximation (accurate to
/// about 1e-3 in p for 3 or more degrees of freedom, plenty for a 0.001 threshold).
fn chi_square_p_value(statistic: f64, df: usize) -> f64 {
    let k = df as f64;
    let z = ((statistic / k).powf(1.0 / 3.0) - (1.0 - 2.0 / (9.0 * k))) / (2.0 / (9.0 * k)).sqrt();
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' erfcc, relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Pearson's chi-square of `counts` against probabilities `p` over `runs` draws, with every
/// token expected fewer than 5 times merged into one bin; returns (statistic, degrees of freedom).
fn chi_square(counts: &[usize], p: &[f32], runs: usize) -> (f64, usize) {
    let mut bins: Vec<(f64, f64)> = Vec::new();
    let mut rest = (0.0, 0.0);
    for (&c, &pt) in counts.iter().zip(p) {
        let expected = f64::from(pt) * runs as f64;
        if expected >= 5.0 {
            bins.push((c as f64, expected));
        } else {
            rest.0 += c as f64;
            rest.1 += expected;
        }
    }
    if rest.1 > 0.0 {
        bins.push(rest);
    }
    let statistic = bins.iter().map(|(o, e)| (o - e) * (o - e) / e).sum();
    (statistic, bins.len() - 1)
}

#[tokio::test]
async fn sampled_verification_follows_the_targets_distribution() {
    // A position with a spread distribution: the first token of an answer naming a fruit.
    let messages = [Message::new(
        Role::User,
        "Name one fruit at random. Answer with the fruit's name only.",
    )];
    let prompt = target().model().chat_prompt(&messages).unwrap();
    let mut t = target().open_sequence().await.unwrap();
    let mut d = draft().open_sequence().await.unwrap();
    let p_logits = t.eval(&prompt, 1).await.unwrap();
    let q_logits = d.eval(&prompt, 1).await.unwrap();
    let params = SamplingParams {
        temperature: 1.0,
        top_k: 40,
        top_p: 0.95,
        ..SamplingParams::default()
    };
    let p = params.probabilities(p_logits.row(0));
    let q = params.probabilities(q_logits.row(0));
    let spread = p.iter().filter(|&&x| x > 0.02).count();
    assert!(
        spread >= 4,
        "the target's distribution is not spread: {spread} tokens above 2%"
    );

    // Many seeded steps of one drafted token (drawn from q) verified against p: the first
    // emitted token must follow p.
    let runs = 20_000;
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut counts = vec![0usize; p.len()];
    let mut draft_counts = vec![0usize; p.len()];
    for _ in 0..runs {
        let x = draw(&q, &mut rng).unwrap();
        draft_counts[x as usize] += 1;
        let verdict = verify::sampled(
            &[x],
            &[Proposal::Sampled(q.clone())],
            |_| p.clone(),
            &mut rng,
        );
        let first = if verdict.accepted == 1 {
            x
        } else {
            verdict.next
        };
        counts[first as usize] += 1;
    }
    let (statistic, df) = chi_square(&counts, &p, runs);
    let p_value = chi_square_p_value(statistic, df);
    eprintln!("speculative vs target: chi-square {statistic:.1}, {df} df, p = {p_value:.3}");
    assert!(
        p_value > 0.001,
        "chi-square {statistic} with {df} df: p = {p_value}"
    );
    // The same test tells the draft's own distribution from the target's: it has the power to
    // fail a verification that kept the draft's tokens.
    let (statistic, df) = chi_square(&draft_counts, &p, runs);
    let p_value = chi_square_p_value(statistic, df);
    eprintln!("draft vs target: chi-square {statistic:.1}, {df} df, p = {p_value:e}");
    assert!(
        p_value < 1e-6,
        "the draft's distribution passes for the target's: p = {p_value}"
    );
}

#[tokio::test]
async fn sampled_speculation_is_seeded() {
    // Engines of its own: on the shared ones, the other tests' sequences batch with this one's,
    // and a sampled answer can change with what it is batched with.
    let target = engine(target_model(), "qwen-1.5b-seeded", 1);
    let draft = engine(draft_model(), "qwen-0.5b-seeded", 1);
    let mut options = SpeculativeOptions::new("spec");
    options.fallback = false;
    let spec = Speculative::new(target, DraftSource::Model(draft), options)
        .expect("the pair shares a vocabulary");
    let mut r = request("Write a haiku about compilers.", 16);
    r.temperature = Some(0.8);
    r.seed = Some(7);
    let a = spec.complete(r.clone()).await.unwrap();
    let b = spec.complete(r.clone()).await.unwrap();
    assert_eq!(a.text, b.text);
    r.seed = Some(8);
    let c = spec.complete(r.clone()).await.unwrap();
    r.seed = Some(9);
    let d = spec.complete(r).await.unwrap();
    assert!(
        c.text != a.text || d.text != a.text,
        "the seed is ignored: {:?}",
        a.text
    );
}

#[tokio::test]
async fn concurrent_speculative_requests_each_give_their_solo_output() {
    let spec = Arc::new(pipeline(DraftSource::Model(draft())));
    let mut solo = Vec::new();
    for prompt in CODE_PROMPTS {
        solo.push(spec.complete(request(prompt, 24)).await.unwrap());
    }
    let together = futures::future::join_all(CODE_PROMPTS.iter().map(|prompt| {
        let spec = Arc::clone(&spec);
        async move { spec.complete(request(prompt, 24)).await.unwrap() }
    }))
    .await;
    for ((alone, beside), prompt) in solo.iter().zip(&together).zip(CODE_PROMPTS) {
        assert_same_or_near_tie(alone, beside, prompt);
    }
}

async fn wait_for_idle(engine: &LlamaEngine) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.load()
        != (EngineLoad {
            active: 0,
            waiting: 0,
        })
    {
        assert!(Instant::now() < deadline, "still {:?}", engine.load());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_cancelled_stream_frees_both_sequences() {
    // Engines of their own, so no other test's requests show in their load: the small model
    // drafting for itself, with long drafts so that most of each step is drafting.
    let target = engine(draft_model(), "cancel-target", 1);
    let drafter = engine(draft_model(), "cancel-draft", 1);
    let mut options = SpeculativeOptions::new("cancel");
    options.p_min = 0.0;
    options.max_draft = 16;
    let spec = Speculative::new(
        Arc::clone(&target),
        DraftSource::Model(Arc::clone(&drafter)),
        options,
    )
    .unwrap();
    let mut stream = spec
        .stream(request("Count from 1 to 500, one number per line.", 900))
        .await
        .unwrap();
    for _ in 0..2 {
        let event = stream.next().await.unwrap().unwrap();
        assert!(matches!(event, ChatEvent::Delta { .. }), "{event:?}");
    }
    assert_eq!(target.load().active, 1);
    assert_eq!(drafter.load().active, 1);
    drop(stream);
    wait_for_idle(&target).await;
    wait_for_idle(&drafter).await;
}

/// An editing prompt: the answer repeats most of the code it was given.
const EDITING_PROMPT: &str = "Rename the variable `total` to `sum` in this function and change \
nothing else. Reply with the code only.\n\n```python\ndef add_all(values):\n    total = 0\n    \
for value in values:\n        total = total + value\n    return total\n```";

/// The target's plain greedy answer to [`EDITING_PROMPT`] (48 tokens), computed once for the
/// tests that compare with it.
async fn plain_editing_answer() -> &'static ChatOutput {
    static ANSWER: tokio::sync::OnceCell<ChatOutput> = tokio::sync::OnceCell::const_new();
    ANSWER
        .get_or_init(|| async {
            target()
                .complete(request(EDITING_PROMPT, 48))
                .await
                .unwrap()
        })
        .await
}

#[tokio::test]
async fn prompt_lookup_accepts_drafts_on_an_editing_prompt() {
    let spec = pipeline(DraftSource::PromptLookup);
    let plain = plain_editing_answer().await;
    let out = spec.complete(request(EDITING_PROMPT, 48)).await.unwrap();
    assert_same_or_near_tie(plain, &out, "editing");
    let accepted = detail(&out, "accepted");
    assert!(accepted >= 10.0, "{:?}", out.report.strategies);
    assert_eq!(out.report.strategies[0].details["draft"], "prompt_lookup");
}

#[tokio::test]
async fn the_suffix_cache_drafts_from_earlier_requests_of_the_same_tenant_only() {
    let cache = Arc::new(SuffixCache::new(100_000));
    let spec = pipeline(DraftSource::Suffix(Arc::clone(&cache)));
    let prompt = "Write a Python class `Stack` with push, pop and peek methods.";
    let mut first = request(prompt, 32);
    first.tenant = Some("alice".into());
    let a1 = spec.complete(first.clone()).await.unwrap();
    let a2 = spec.complete(first.clone()).await.unwrap();
    let mut other = first.clone();
    other.tenant = Some("bob".into());
    let b1 = spec.complete(other).await.unwrap();
    assert_same_or_near_tie(&a1, &a2, "the same request again");
    let (accepted_1, accepted_2) = (detail(&a1, "accepted"), detail(&a2, "accepted"));
    // The second request drafts its answer from the first one's.
    assert!(
        accepted_2 >= 12.0 && accepted_2 > accepted_1,
        "first {accepted_1}, second {accepted_2}"
    );
    assert_eq!(
        detail(&b1, "accepted"),
        accepted_1,
        "bob drafted from alice's requests"
    );
}

/// SmolLM2-135M, whose vocabulary is not Qwen's, drafts for the target through text: the output
/// stays the target's greedy output, and its drafts stand on an editing prompt, whose answer
/// repeats the prompt's code.
#[tokio::test]
async fn a_draft_with_another_vocabulary_drafts_through_text() {
    let smol = LoadedModel::load(&tandem_fetch::test_model(), None, 0).unwrap();
    let mut options = SpeculativeOptions::new("cross");
    options.fallback = false;
    let spec = Speculative::new(
        target(),
        DraftSource::Model(engine(smol, "smollm2", 1)),
        options,
    )
    .expect("another vocabulary drafts through text");
    assert!(spec.translates());
    let plain = plain_editing_answer().await;
    let out = spec.complete(request(EDITING_PROMPT, 48)).await.unwrap();
    assert_same_or_near_tie(plain, &out, "cross-vocabulary drafts");
    let entry = &out.report.strategies[0];
    assert_eq!(entry.details["cross_vocabulary"], true, "{entry:?}");
    assert_eq!(entry.details["draft"], "smollm2");
    let (drafted, accepted) = (detail(&out, "drafted"), detail(&out, "accepted"));
    assert!(accepted >= 8.0 && accepted <= drafted, "{entry:?}");
}
