//! The cascade with real models: SmolLM2-135M plays both sides, as two engines with their own names
//! (`small` with a short context, `large`), so every decision and report can be checked against
//! what each model says on its own.

use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::{ChatEvent, ChatModel, ModelError, Pricing, Report};
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_route::signal::{self, Signal};
use tandem_route::{
    AnswerScorer, Cascade, CascadeOptions, ExampleCheck, ExamplesPassed, ScoreOptions,
};

const SMALL_CONTEXT: u32 = 256;

fn engines() -> (Arc<dyn ChatModel>, Arc<dyn ChatModel>) {
    static ENGINES: OnceLock<(Arc<LlamaEngine>, Arc<LlamaEngine>)> = OnceLock::new();
    let (small, large) = ENGINES.get_or_init(|| {
        let model = LoadedModel::load(&tandem_fetch::test_model(), None, 0).expect("model loads");
        let start = |name: &str, context_size: u32| {
            let mut options = EngineOptions::new(name);
            options.context_size = context_size;
            // One sequence: the tests compare scores of separate runs to 1e-6, and a request
            // decoded beside another test's request in the same batch gets slightly different
            // logits (seen: a self-check score 0.3947 against 0.4005).
            options.parallel = 1;
            options.threads = 1;
            options.pricing = Pricing {
                input_per_million: if name == "large" { 3.0 } else { 0.1 },
                output_per_million: if name == "large" { 9.0 } else { 0.2 },
            };
            Arc::new(LlamaEngine::start(Arc::clone(&model), options).expect("engine starts"))
        };
        (start("small", SMALL_CONTEXT), start("large", 1024))
    });
    (small.clone(), large.clone())
}

fn cascade(signal: Signal, threshold: f64) -> Cascade {
    let (small, large) = engines();
    let mut scoring = ScoreOptions::new(signal);
    scoring.samples = 2;
    let mut options = CascadeOptions::new("cheap", threshold);
    options.large_pricing = Some(Pricing {
        input_per_million: 3.0,
        output_per_million: 9.0,
    });
    Cascade::new(options, AnswerScorer::new("cheap", scoring, small), large)
}

fn request(prompt: &str) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "cheap".into(),
        messages: vec![Message::new(Role::User, prompt)],
        temperature: Some(0.0),
        max_tokens: Some(24),
        ..Default::default()
    }
}

fn decision(report: &Report) -> &serde_json::Map<String, serde_json::Value> {
    assert_eq!(report.strategies.len(), 1, "{report:?}");
    let entry = &report.strategies[0];
    assert_eq!(
        (entry.pipeline.as_str(), entry.strategy.as_str()),
        ("cheap", "cascade")
    );
    &entry.details
}

fn stage_models(report: &Report) -> Vec<&str> {
    report.stages.iter().map(|s| s.model.as_str()).collect()
}

#[tokio::test]
async fn a_confident_enough_answer_is_kept_and_scored_from_its_own_logprobs() {
    let (small, _) = engines();
    let prompt = request("Name the capital of France.");
    let mut alone = prompt.clone();
    alone.logprobs = Some(true);
    let alone = small.complete(alone).await.unwrap();
    let expected = signal::mean_token_probability(alone.logprobs.as_deref().unwrap());

    let kept = cascade(Signal::MeanLogprob, 0.0)
        .complete(prompt)
        .await
        .unwrap();
    assert_eq!(kept.text, alone.text);
    assert_eq!(kept.logprobs, None, "logprobs were not asked for");
    assert_eq!(stage_models(&kept.report), ["small"]);
    assert_eq!(kept.report.model, "small");
    let decision = decision(&kept.report);
    assert_eq!(decision["escalated"], false);
    let score = decision["score"].as_f64().unwrap();
    assert!((score - expected).abs() < 1e-6, "{score} vs {expected}");
    let saved = decision["saved_usd"].as_f64().unwrap();
    let large_price = Pricing {
        input_per_million: 3.0,
        output_per_million: 9.0,
    }
    .cost(kept.usage);
    assert!((saved - (large_price - kept.report.cost_usd)).abs() < 1e-12);
    assert!(saved > 0.0);

    // The small side alone, as `tandem router calibrate --cascade` runs it, scores the same.
    let scorer = AnswerScorer::new("cheap", ScoreOptions::new(Signal::MeanLogprob), small);
    let attempt = scorer
        .attempt(&request("Name the capital of France."))
        .await
        .unwrap();
    assert_eq!(attempt.answer.unwrap().text, alone.text);
    assert!((attempt.score.unwrap() - score).abs() < 1e-6);
    assert_eq!(attempt.spent.len(), 1);
}

#[tokio::test]
async fn a_score_under_the_threshold_escalates_and_reports_both_calls() {
    let (small, large) = engines();
    let prompt = request("Write one sentence about rivers.");
    let large_alone = large.complete(prompt.clone()).await.unwrap();
    let mut attempt = prompt.clone();
    attempt.logprobs = Some(true);
    let small_alone = small.complete(attempt).await.unwrap();

    let cascade = cascade(Signal::MinLogprob, 1.01);
    let escalated = cascade.complete(prompt.clone()).await.unwrap();
    assert_eq!(escalated.text, large_alone.text);
    assert_eq!(stage_models(&escalated.report), ["small", "large"]);
    let expected_cost = small_alone.report.cost_usd + large_alone.report.cost_usd;
    assert!((escalated.report.cost_usd - expected_cost).abs() < 1e-12);
    let decision = decision(&escalated.report);
    assert_eq!(decision["escalated"], true);
    // Always asking the large model would have saved the small attempt.
    let saved = decision["saved_usd"].as_f64().unwrap();
    assert!(
        (saved + small_alone.report.cost_usd).abs() < 1e-12,
        "{saved}"
    );
    let score = decision["score"].as_f64().unwrap();
    let expected = signal::min_token_probability(small_alone.logprobs.as_deref().unwrap());
    assert!((score - expected).abs() < 1e-6);

    // Streamed, the escalated answer arrives in pieces and ends with the same report shape.
    let mut stream = cascade.stream(prompt).await.unwrap();
    let (mut text, mut deltas) = (String::new(), 0);
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::Delta { text: piece, .. } => {
                text.push_str(&piece);
                deltas += 1;
            }
            ChatEvent::Done(d) => done = Some(d),
            ChatEvent::ToolCall(call) => panic!("no tools were offered: {call:?}"),
        }
    }
    assert_eq!(text, large_alone.text);
    assert!(deltas > 1, "the large model's answer streams");
    let done = done.expect("a final event");
    assert_eq!(stage_models(&done.report), ["small", "large"]);
    assert!(done.report.time_to_first_token_ms.is_some());
}

#[tokio::test]
async fn self_check_scores_the_yes_probability_of_the_small_model() {
    let (small, _) = engines();
    let prompt = request("What is 2 + 2?");
    let answer = small.complete(prompt.clone()).await.unwrap();
    let check = small
        .complete(signal::self_check_request(&prompt, &answer.text))
        .await
        .unwrap();
    let expected = signal::yes_probability(check.logprobs.as_deref().unwrap().first());

    let out = cascade(Signal::SelfCheck, 0.0)
        .complete(prompt)
        .await
        .unwrap();
    let score = decision(&out.report)["score"].as_f64().unwrap();
    assert!((score - expected).abs() < 1e-6, "{score} vs {expected}");
    // The check is a model call of its own, reported and paid for.
    assert_eq!(stage_models(&out.report), ["small", "small"]);
}

#[tokio::test]
async fn agreement_counts_sampled_answers_that_match() {
    let out = cascade(Signal::Agreement, 0.0)
        .complete(request(
            "Reply with just a number: how many legs does a cat have?",
        ))
        .await
        .unwrap();
    let score = decision(&out.report)["score"].as_f64().unwrap();
    assert!([0.0, 0.5, 1.0].contains(&score), "{score}");
    assert_eq!(stage_models(&out.report), ["small", "small", "small"]);
}

#[tokio::test]
async fn a_failed_small_attempt_escalates_and_says_why() {
    let (_, large) = engines();
    let long = "Tell me about the sea. ".repeat(60);
    let prompt = request(&long);
    let large_alone = large.complete(prompt.clone()).await.unwrap();
    let out = cascade(Signal::MeanLogprob, 0.0)
        .complete(prompt)
        .await
        .unwrap();
    assert_eq!(out.text, large_alone.text);
    let decision = decision(&out.report);
    assert_eq!(decision["escalated"], true);
    assert!(decision["score"].is_null());
    assert!(decision["small_error"]
        .as_str()
        .unwrap()
        .contains("context"));
    assert_eq!(stage_models(&out.report), ["large"]);
}

/// What a sandboxed example check would say, fixed in advance; it keeps the answers it was given.
/// (The sandbox itself is tested where it lives, in tandem-eval, and end to end in the binary's
/// tests: here only the cascade's use of its verdicts is.)
struct Verdict {
    says: Result<Option<ExamplesPassed>, String>,
    answers: Mutex<Vec<String>>,
}

#[async_trait]
impl ExampleCheck for Verdict {
    async fn check(
        &self,
        _request: &ChatCompletionRequest,
        answer: &str,
    ) -> Result<Option<ExamplesPassed>, ModelError> {
        self.answers.lock().unwrap().push(answer.to_string());
        self.says.clone().map_err(ModelError::Internal)
    }
}

#[tokio::test]
async fn shown_examples_scores_the_share_passed_and_says_when_there_were_none() {
    let (small, _) = engines();
    let prompt = request("Write f(x) that doubles x.\n>>> f(2)\n4");
    let small_alone = small.complete(prompt.clone()).await.unwrap();
    let half = ExamplesPassed {
        passed: 1,
        total: 2,
    };
    let run = |says: Result<Option<ExamplesPassed>, String>, threshold: f64, no_examples: f64| {
        let prompt = prompt.clone();
        async move {
            let verdict = Arc::new(Verdict {
                says,
                answers: Mutex::new(Vec::new()),
            });
            let (small, large) = engines();
            let mut scoring = ScoreOptions::new(Signal::ShownExamples);
            scoring.no_examples_score = no_examples;
            let scorer =
                AnswerScorer::new("cheap", scoring, small).with_example_check(verdict.clone());
            let cascade = Cascade::new(CascadeOptions::new("cheap", threshold), scorer, large);
            let out = cascade.complete(prompt).await.unwrap();
            let answers = verdict.answers.lock().unwrap().clone();
            (out, answers)
        }
    };

    // Half the examples passed: kept at 0.5, escalated above.
    for (threshold, escalated) in [(0.5, false), (0.51, true)] {
        let (out, answers) = run(Ok(Some(half)), threshold, 0.0).await;
        assert_eq!(
            answers,
            std::slice::from_ref(&small_alone.text),
            "the small answer is checked"
        );
        let decision = decision(&out.report);
        assert_eq!(decision["signal"], "shown_examples");
        assert_eq!(decision["score"], 0.5);
        assert_eq!(
            decision["examples"],
            serde_json::json!({"passed": 1, "total": 2})
        );
        assert!(decision.get("no_examples").is_none());
        assert_eq!(decision["escalated"], escalated, "threshold {threshold}");
        let models = if escalated {
            vec!["small", "large"]
        } else {
            vec!["small"]
        };
        assert_eq!(stage_models(&out.report), models);
    }

    // No example: the configured score decides, and the entry says so.
    for (no_examples, escalated) in [(0.0, true), (1.0, false)] {
        let (out, _) = run(Ok(None), 0.5, no_examples).await;
        let decision = decision(&out.report);
        assert_eq!(decision["no_examples"], true);
        assert_eq!(decision["score"], no_examples);
        assert!(decision.get("examples").is_none());
        assert_eq!(decision["escalated"], escalated);
    }

    // A sandbox that fails: nothing to trust, so the large model answers, and the entry says why.
    let (out, _) = run(Err("no namespaces".into()), 0.5, 1.0).await;
    let decision = decision(&out.report);
    assert_eq!(decision["escalated"], true);
    assert_eq!(decision["score"], 0.0);
    assert!(decision["signal_error"]
        .as_str()
        .unwrap()
        .contains("no namespaces"));
}
