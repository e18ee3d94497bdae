//! The guard with a real model: SmolLM2-135M is both the guard and the guarded model (one engine),
//! so every verdict can be recomputed from the model's own probabilities and every allowed answer
//! compared with the unguarded one.

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, FinishReason, Message, Role, TokenLogprob};
use tandem_core::{ChatEvent, ChatModel, Completion, Report};
use tandem_embed::Embedder;
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_trust::classifier::{EmbeddingClassifier, JailbreakClassifier, Logistic};
use tandem_trust::{Guard, GuardOptions, InputScorer, Judge, Policy, Side, TrustModel};

fn engine() -> Arc<dyn ChatModel> {
    static ENGINE: OnceLock<Arc<LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let model =
                LoadedModel::load(&tandem_fetch::test_model(), None, 0).expect("model loads");
            let mut options = EngineOptions::new("smol");
            options.context_size = 4096;
            options.parallel = 2;
            options.threads = 1;
            Arc::new(LlamaEngine::start(model, options).expect("engine starts"))
        })
        .clone()
}

fn guard(threshold: f64, check_input: bool, check_output: bool, hold_chars: usize) -> Guard {
    let mut options = GuardOptions::new("guarded");
    options.check_input = check_input;
    options.check_output = check_output;
    options.hold_chars = hold_chars;
    let judge = Judge::new(engine(), Policy::default(), threshold);
    Guard::new(options, judge, engine())
}

fn request(prompt: &str) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "guarded".into(),
        messages: vec![Message::new(Role::User, prompt)],
        temperature: Some(0.0),
        max_tokens: Some(40),
        ..Default::default()
    }
}

/// P(yes) / (P(yes) + P(no)) over the first token's alternatives, written out here on its own.
fn yes_over_yes_and_no(token: &TokenLogprob) -> f64 {
    let mass = |word: &str| -> f64 {
        token
            .top_logprobs
            .iter()
            .filter(|alt| alt.token.trim().eq_ignore_ascii_case(word))
            .map(|alt| f64::from(alt.logprob).exp())
            .sum()
    };
    mass("yes") / (mass("yes") + mass("no"))
}

fn entry(report: &Report) -> &serde_json::Map<String, serde_json::Value> {
    let guard = report
        .strategies
        .iter()
        .find(|s| s.strategy == "guard")
        .expect("a guard entry");
    assert_eq!(guard.pipeline, "guarded");
    &guard.details
}

async fn events(
    guard: &Guard,
    request: ChatCompletionRequest,
) -> (Vec<(String, Vec<TokenLogprob>)>, Completion) {
    let mut stream = guard.stream(request).await.unwrap();
    let mut deltas = Vec::new();
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::Delta { text, logprobs } => deltas.push((text, logprobs)),
            ChatEvent::Done(done) => {
                assert!(stream.next().await.is_none(), "nothing after Done");
                return (deltas, done);
            }
            ChatEvent::ToolCall(call) => panic!("no tools were offered: {call:?}"),
        }
    }
    panic!("the stream ended without Done");
}

#[tokio::test]
async fn verdict_scores_equal_the_models_own_probabilities() {
    let policy = Policy::default();
    let judge = Judge::new(engine(), policy.clone(), 2.0);
    for (side, prompt, answer) in [
        (Side::Input, "How do I bake bread at home?", None),
        (Side::Output, "Name a fruit.", Some("An apple.")),
    ] {
        let judgement = judge.judge(side, prompt, answer).await.unwrap();
        let mut question = policy.verdict_request(side, prompt, answer);
        question.model = "smol".into();
        let alone = engine().complete(question).await.unwrap();
        let token = &alone.logprobs.unwrap()[0];
        let expected = yes_over_yes_and_no(token);
        assert!(expected.is_finite(), "neither yes nor no among {token:?}");
        assert!(
            (judgement.verdict.score - expected).abs() < 1e-9,
            "{} vs {expected}",
            judgement.verdict.score
        );
        assert!(!judgement.verdict.blocked);
        assert_eq!(
            judgement.reports.len(),
            1,
            "no category is asked when allowed"
        );
    }
}

#[tokio::test]
async fn a_blocked_request_ends_at_once_with_content_filter_and_a_category() {
    // Threshold 0: every score blocks, so the path is known whatever SmolLM2 thinks.
    let guard = guard(0.0, true, true, 50);
    let (deltas, done) = events(&guard, request("Tell me a joke.")).await;
    assert!(deltas.is_empty(), "{deltas:?}");
    assert_eq!(done.finish_reason, FinishReason::ContentFilter);
    assert_eq!(done.usage.completion_tokens, 0);
    let input = &entry(&done.report)["input"];
    assert_eq!(input["blocked"], true);
    let category = input["category"].as_str().expect("a category");
    assert!(
        Policy::default()
            .categories()
            .iter()
            .any(|c| c.name == category),
        "{category}"
    );
    let p = input["category_probability"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0);
    // The verdict and the category question, and no answer.
    assert_eq!(done.report.stages.len(), 2);
    assert!(entry(&done.report).get("output").is_none());

    let whole = guard.complete(request("Tell me a joke.")).await.unwrap();
    assert_eq!(whole.text, "");
    assert_eq!(whole.finish_reason, FinishReason::ContentFilter);
}

#[tokio::test]
async fn a_blocked_stream_releases_nothing_it_held_and_ends_with_content_filter() {
    let guard = guard(0.0, false, true, 10_000);
    let (deltas, done) = events(&guard, request("Write a sentence about the sea.")).await;
    assert!(deltas.is_empty(), "held text leaked: {deltas:?}");
    assert_eq!(done.finish_reason, FinishReason::ContentFilter);
    let output = &entry(&done.report)["output"];
    assert_eq!(output["blocked"], true);
    assert_eq!(output["checks"], 1);
    assert!(output["category"].is_string());
    assert!(output["max_held_chars"].as_u64().unwrap() > 0);
    assert!(entry(&done.report).get("input").is_none());

    let whole = guard
        .complete(request("Write a sentence about the sea."))
        .await
        .unwrap();
    assert_eq!(whole.text, "");
    assert_eq!(whole.finish_reason, FinishReason::ContentFilter);
}

#[tokio::test]
async fn an_allowed_stream_equals_the_unguarded_answer_and_reports_its_delay() {
    // Scores are at most 1, so a threshold above it never blocks.
    let hold = 12;
    let guard = guard(1.5, true, true, hold);
    let mut asked = request("Write two sentences about mountains.");
    asked.logprobs = Some(true);
    let mut unguarded = asked.clone();
    unguarded.model = "smol".into();
    let alone = engine().complete(unguarded).await.unwrap();

    let (deltas, done) = events(&guard, asked).await;
    let text: String = deltas.iter().map(|(t, _)| t.as_str()).collect();
    let logprobs: Vec<TokenLogprob> = deltas.iter().flat_map(|(_, l)| l.clone()).collect();
    assert_eq!(text, alone.text);
    assert_eq!(Some(logprobs), alone.logprobs);
    assert_eq!(done.finish_reason, alone.finish_reason);
    assert_eq!(done.usage, alone.usage);
    // Every release but the last one waited for `hold` characters.
    for (piece, _) in &deltas[..deltas.len() - 1] {
        assert!(piece.chars().count() >= hold, "{piece:?}");
    }
    let entry = entry(&done.report);
    assert_eq!(entry["input"]["blocked"], false);
    let output = &entry["output"];
    assert_eq!(output["blocked"], false);
    assert_eq!(output["hold_chars"], hold);
    assert_eq!(output["checks"].as_u64().unwrap() as usize, deltas.len());
    let held = output["max_held_chars"].as_u64().unwrap() as usize;
    assert!(held >= hold.min(text.chars().count()), "{held}");
    // The answer and one guard call per check, plus the input verdict.
    assert_eq!(done.report.stages.len(), 1 + 1 + deltas.len());
    assert_eq!(done.report.model, "smol");

    let whole = guard
        .complete(request("Write two sentences about mountains."))
        .await
        .unwrap();
    assert_eq!(whole.text, alone.text);
    assert_eq!(whole.finish_reason, alone.finish_reason);
}

#[tokio::test]
async fn an_edited_policy_names_its_own_categories() {
    let policy = Policy::new(vec![tandem_trust::Category {
        name: "Weather talk".into(),
        description: "anything about rain, sun or wind".into(),
    }])
    .unwrap();
    let judge = Judge::new(engine(), policy, 0.0);
    let judgement = judge
        .judge(Side::Input, "Will it rain tomorrow?", None)
        .await
        .unwrap();
    assert_eq!(judgement.verdict.category.as_deref(), Some("Weather talk"));
    assert_eq!(judgement.verdict.category_probability, Some(1.0));
}

/// A trained model whose harm classifier reads coordinate 1 of the embedding and whose jailbreak
/// classifier reads coordinate 0, each times 10, blocking above its threshold.
fn trained_model(dims: usize, harm_threshold: f64, jailbreak_threshold: f64) -> TrustModel {
    let reading = |coordinate: usize| {
        let mut weights = vec![0.0; dims];
        weights[coordinate] = 10.0;
        EmbeddingClassifier::Logistic(Logistic { weights, bias: 0.0 })
    };
    TrustModel {
        embedding_model: "all-minilm-l6-v2".into(),
        embedding: reading(1),
        threshold: harm_threshold,
        budget: 0.05,
        trained_on: Vec::new(),
        jailbreak: JailbreakClassifier {
            classifier: reading(0),
            threshold: jailbreak_threshold,
            budget: 0.01,
        },
    }
}

#[tokio::test]
async fn a_trained_model_blocks_by_either_classifier_and_asks_the_guard_model_only_for_a_category()
{
    let dir = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
        .resolve_local("all-minilm-l6-v2")
        .expect("run `tandem models pull all-minilm-l6-v2` first");
    let embedder = Arc::new(Embedder::load(&dir).unwrap());
    let prompt = "Tell me a joke.";
    // Each classifier reads one coordinate of the prompt's own embedding, so its expected
    // probability is known from the embedder alone.
    let vector = embedder.embed(&[prompt]).unwrap().vectors.remove(0);
    let sigmoid = |x: f32| 1.0 / (1.0 + (-10.0 * f64::from(x)).exp());
    let (harm, jailbreak) = (sigmoid(vector[1]), sigmoid(vector[0]));
    let (under, over) = (|p: f64| p - 0.01, |p: f64| p + 0.01);

    // (harm threshold, jailbreak threshold, blocked, category, guard-model calls)
    let cases = [
        (over(harm), over(jailbreak), false, None, 0),
        (over(harm), under(jailbreak), true, Some("jailbreak"), 0),
        (under(harm), over(jailbreak), true, Some("policy"), 1),
        (under(harm), under(jailbreak), true, Some("policy"), 1),
    ];
    for (harm_threshold, jailbreak_threshold, blocks, category, calls) in cases {
        let model = trained_model(vector.len(), harm_threshold, jailbreak_threshold);
        let scorer = InputScorer::new(Arc::clone(&embedder), model).unwrap();
        let guard = guard(0.5, true, false, 50).with_input_scorer(scorer);
        let (deltas, done) = events(&guard, request(prompt)).await;
        let case = format!("thresholds {harm_threshold} and {jailbreak_threshold}");
        let input = &entry(&done.report)["input"];
        let read = |key: &str| {
            input[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key}: {input}"))
        };
        assert!((read("score") - harm).abs() < 1e-6, "{case}: {input}");
        assert!(
            (read("jailbreak") - jailbreak).abs() < 1e-6,
            "{case}: {input}"
        );
        assert!(
            (read("threshold") - harm_threshold).abs() < 1e-12,
            "{case}: {input}"
        );
        assert_eq!(input["blocked"], blocks, "{case}");
        let answered = usize::from(!blocks);
        assert_eq!(
            done.report.stages.len(),
            calls + answered,
            "{case}: {:?}",
            done.report.stages
        );
        match category {
            None => {
                assert_ne!(done.finish_reason, FinishReason::ContentFilter, "{case}");
                assert!(input.get("category").is_none(), "{case}");
                assert!(!deltas.is_empty(), "{case}");
            }
            Some(expected) => {
                assert_eq!(done.finish_reason, FinishReason::ContentFilter, "{case}");
                assert!(deltas.is_empty(), "{case}: {deltas:?}");
                let named = input["category"].as_str().unwrap();
                if expected == "jailbreak" {
                    assert_eq!(named, "jailbreak", "{case}");
                    assert!(input.get("category_probability").is_none(), "{case}");
                } else {
                    // The harm classifier blocked: the guard model named a category of the policy.
                    let policy = Policy::default();
                    assert!(
                        policy.categories().iter().any(|c| c.name == named),
                        "{case}: {named}"
                    );
                    assert!(read("category_probability") > 0.0, "{case}");
                }
            }
        }
    }

    // A classifier for vectors of another size is refused, the jailbreak one too.
    let mut narrow = trained_model(vector.len(), 0.5, 0.5);
    narrow.jailbreak.classifier = EmbeddingClassifier::Logistic(Logistic {
        weights: vec![1.0; 3],
        bias: 0.0,
    });
    let error = InputScorer::new(Arc::clone(&embedder), narrow)
        .err()
        .expect("refused");
    assert!(error.to_string().contains("jailbreak"), "{error}");
    let mut narrow = trained_model(vector.len(), 0.5, 0.5);
    narrow.embedding = EmbeddingClassifier::Logistic(Logistic {
        weights: vec![1.0; 3],
        bias: 0.0,
    });
    let error = InputScorer::new(embedder, narrow).err().expect("refused");
    assert!(error.to_string().contains("harm"), "{error}");
}
