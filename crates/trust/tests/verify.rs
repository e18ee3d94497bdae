//! The verifier with a real model: SmolLM2-135M answers and verifies (one engine), so every
//! confidence can be recomputed from the model's own probabilities, and the abstention threshold
//! set just above and just below it.

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, FinishReason, Message, Role, TokenLogprob};
use tandem_core::{ChatEvent, ChatModel, Report};
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_trust::calibration::{Calibration, Isotonic};
use tandem_trust::classifier::Logistic;
use tandem_trust::grounding::{unsupported_words, GroundingModel};
use tandem_trust::verify::{answer_probability, claim_request, claims, Confidence, ABSTAIN_TEXT};
use tandem_trust::{Verify, VerifyOptions};

fn engine() -> Arc<dyn ChatModel> {
    llama()
}

fn llama() -> Arc<LlamaEngine> {
    static ENGINE: OnceLock<Arc<LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let model =
                LoadedModel::load(&tandem_fetch::test_model(), None, 0).expect("model loads");
            let mut options = EngineOptions::new("smol");
            options.context_size = 4096;
            // One sequence at a time: logits computed in a batch with another test's tokens can
            // differ in the last bits, and the comparisons below are exact.
            options.parallel = 1;
            options.threads = 1;
            Arc::new(LlamaEngine::start(model, options).expect("engine starts"))
        })
        .clone()
}

fn verify(abstain_below: Option<f64>) -> Verify {
    let mut options = VerifyOptions::new("checked");
    options.abstain_below = abstain_below;
    Verify::new(options, engine(), engine())
}

const CONTEXT: &str =
    "The Eiffel Tower is in Paris. It was finished in 1889 and is 330 metres tall.";
const QUESTION: &str = "Where is the Eiffel Tower, and when was it finished?";

fn request() -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "checked".into(),
        messages: vec![
            Message::new(Role::System, CONTEXT),
            Message::new(Role::User, QUESTION),
        ],
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
    let entry = report
        .strategies
        .iter()
        .find(|s| s.strategy == "verify")
        .expect("a verify entry");
    assert_eq!(entry.pipeline, "checked");
    &entry.details
}

/// The confidence an independent reading of the verifier's logprobs gives the answer: the
/// weakest claim's P(yes) among yes/no.
async fn independent_confidence(answer: &str) -> f64 {
    let mut lowest = f64::INFINITY;
    for claim in claims(answer) {
        let mut ask = claim_request(Some(CONTEXT), QUESTION, &claim);
        ask.model = "smol".into();
        let reply = engine().complete(ask).await.unwrap();
        let p = yes_over_yes_and_no(&reply.logprobs.unwrap()[0]);
        assert!(p.is_finite(), "neither yes nor no for {claim:?}");
        lowest = lowest.min(p);
    }
    lowest
}

#[tokio::test]
async fn the_confidence_equals_the_verifiers_own_probabilities() {
    let plain = engine()
        .complete(ChatCompletionRequest {
            model: "smol".into(),
            ..request()
        })
        .await
        .unwrap();
    let output = verify(None).complete(request()).await.unwrap();
    assert_eq!(output.text, plain.text, "the answer passes unchanged");
    let entry = entry(&output.report);
    let confidence = entry["confidence"].as_f64().unwrap();
    let expected = independent_confidence(&output.text).await;
    assert!(
        (confidence - expected).abs() < 1e-9,
        "{confidence} vs {expected}"
    );
    assert!((0.0..=1.0).contains(&confidence));
    assert_eq!(entry["context"], "system");
    assert_eq!(entry["abstained"], false);
    assert_eq!(
        entry["claims"].as_array().unwrap().len(),
        claims(&output.text).len()
    );
    // The answer's stage and one per claim.
    assert_eq!(output.report.stages.len(), 1 + claims(&output.text).len());
}

#[tokio::test]
async fn it_abstains_below_the_threshold_and_not_above() {
    let answer = engine()
        .complete(ChatCompletionRequest {
            model: "smol".into(),
            ..request()
        })
        .await
        .unwrap()
        .text;
    let confidence = independent_confidence(&answer).await;

    let above = verify(Some(confidence + 1e-6))
        .complete(request())
        .await
        .unwrap();
    assert_eq!(above.text, ABSTAIN_TEXT);
    assert_eq!(entry(&above.report)["abstained"], true);
    assert_eq!(above.finish_reason, FinishReason::Stop);

    let below = verify(Some(confidence - 1e-6));
    let mut stream = below.stream(request()).await.unwrap();
    let mut text = String::new();
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::Delta { text: piece, .. } => text.push_str(&piece),
            ChatEvent::Done(end) => done = Some(end),
            ChatEvent::ToolCall(call) => panic!("no tools were offered: {call:?}"),
        }
    }
    let done = done.expect("a Done event");
    assert_eq!(
        text, answer,
        "a streamed answer arrives whole and unchanged"
    );
    assert_eq!(entry(&done.report)["abstained"], false);
    let reported = entry(&done.report)["confidence"].as_f64().unwrap();
    assert!((reported - confidence).abs() < 1e-9);
}

#[tokio::test]
async fn a_calibration_map_turns_the_raw_confidence_into_the_reported_one() {
    // Every confidence up to 1 maps to 0.25: the reported value is the map's, the raw one is kept.
    let mut options = VerifyOptions::new("checked");
    options.calibration = Some(Calibration::Isotonic(Isotonic {
        steps: vec![(1.0, 0.25)],
    }));
    options.abstain_below = Some(0.3);
    let output = Verify::new(options, engine(), engine())
        .complete(request())
        .await
        .unwrap();
    let entry = entry(&output.report);
    assert_eq!(entry["confidence"].as_f64(), Some(0.25));
    assert_eq!(entry["abstained"], true, "the calibrated value is compared");
    let raw = entry["raw_confidence"].as_f64().unwrap();
    let grounding = entry["grounding"].as_f64().unwrap();
    assert_eq!(raw, grounding);
}

/// A grounding model whose weights make every unsupported word count against a claim and the
/// verifier's probability for it, and verify options that use it.
fn grounded() -> (GroundingModel, VerifyOptions) {
    let grounding = GroundingModel {
        verifier: "smol".into(),
        combiner: Logistic {
            weights: vec![1.0, -3.0],
            bias: 0.5,
        },
        fitted_on: "test".into(),
    };
    let mut options = VerifyOptions::new("checked");
    options.grounding = Some(grounding.clone());
    (grounding, options)
}

#[tokio::test]
async fn a_grounding_model_combines_the_verifiers_probability_with_the_unsupported_words() {
    // Each claim's reported P(supported) must be the grounding model's value of the verifier's own
    // probability and of the words the context and the question lack.
    let (grounding, options) = grounded();
    let output = Verify::new(options, engine(), engine())
        .complete(request())
        .await
        .unwrap();
    let entry = entry(&output.report);
    let reported = entry["claims"].as_array().unwrap();
    assert_eq!(reported.len(), claims(&output.text).len());
    assert!(!reported.is_empty(), "SmolLM2 answers: {:?}", output.text);
    let mut lowest = f64::INFINITY;
    for (claim, text) in reported.iter().zip(claims(&output.text)) {
        let mut ask = claim_request(Some(CONTEXT), QUESTION, &text);
        ask.model = "smol".into();
        let own = yes_over_yes_and_no(&engine().complete(ask).await.unwrap().logprobs.unwrap()[0]);
        let words = unsupported_words(&text, &[CONTEXT, QUESTION]);
        assert_eq!(claim["verifier"].as_f64(), Some(own), "{text}");
        assert_eq!(
            claim["unsupported"],
            serde_json::json!(words),
            "{text}: the words are reported"
        );
        let expected = grounding.probability(own, words.len());
        let supported = claim["supported"].as_f64().unwrap();
        assert!(
            (supported - expected).abs() < 1e-12,
            "{supported} vs {expected}"
        );
        lowest = lowest.min(expected);
    }
    assert!((entry["grounding"].as_f64().unwrap() - lowest).abs() < 1e-12);

    // Without a grounding model the words are still reported, and the verifier's probability is
    // the claim's.
    let plain = verify(None).complete(request()).await.unwrap();
    let first = &entry_claims(&plain.report)[0];
    assert!(first["verifier"].is_null());
    assert!(first["unsupported"].is_array());
}

fn entry_claims(report: &Report) -> Vec<serde_json::Value> {
    entry(report)["claims"].as_array().unwrap().clone()
}

/// An answering model that always says `ANSWER`: the verifier under test is the real one.
struct Fixed;

const ANSWER: &str =
    "The tower was finished in 1889 by Gustave Eiffel.\n```python\nheight_metres = 330\n```";

#[async_trait::async_trait]
impl ChatModel for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }

    async fn stream(
        &self,
        _request: ChatCompletionRequest,
    ) -> Result<tandem_core::ChatStream, tandem_core::ModelError> {
        let done = tandem_core::Completion {
            finish_reason: FinishReason::Stop,
            usage: Default::default(),
            report: Report::single(tandem_core::Stage::unpriced_local("fixed", 1, 1, 1.0)),
        };
        Ok(futures::stream::iter([
            Ok(ChatEvent::Delta {
                text: ANSWER.into(),
                logprobs: Vec::new(),
            }),
            Ok(ChatEvent::Done(done)),
        ])
        .boxed())
    }
}

#[tokio::test]
async fn a_code_block_keeps_the_verifiers_probability_and_counts_no_words() {
    let (grounding, options) = grounded();
    let output = Verify::new(options, engine(), Arc::new(Fixed))
        .complete(request())
        .await
        .unwrap();
    assert_eq!(output.text, ANSWER);
    let claims = entry_claims(&output.report);
    assert_eq!(claims.len(), 2, "{claims:?}");
    let (prose, code) = (&claims[0], &claims[1]);
    // The prose names a person the context never mentions; its other words are all there.
    assert_eq!(prose["unsupported"], serde_json::json!(["gustave"]));
    let own = prose["verifier"].as_f64().unwrap();
    assert_eq!(
        prose["supported"].as_f64(),
        Some(grounding.probability(own, 1))
    );
    // The code block: no words, no combination, the verifier's own probability.
    assert!(code["unsupported"].is_null(), "{code}");
    assert!(code["verifier"].is_null(), "{code}");
    let mut ask = claim_request(Some(CONTEXT), QUESTION, code["text"].as_str().unwrap());
    ask.model = "smol".into();
    let expected = yes_over_yes_and_no(&engine().complete(ask).await.unwrap().logprobs.unwrap()[0]);
    assert_eq!(code["supported"].as_f64(), Some(expected));
}

#[tokio::test]
async fn the_answer_confidence_is_the_answers_own_token_probability_as_the_evaluation_scores_it() {
    let mut options = VerifyOptions::new("checked");
    options.confidence = Confidence::Answer;
    options.max_claims = 0;
    let stage = Verify::new(options, engine(), engine());
    // The unverified answer and its logprobs, read here on their own.
    let mut asked = request();
    asked.model = "smol".into();
    asked.logprobs = Some(true);
    let alone = engine().complete(asked).await.unwrap();
    let logprobs = alone.logprobs.clone().expect("logprobs");
    assert!(!logprobs.is_empty());
    let mean = logprobs.iter().map(|t| f64::from(t.logprob)).sum::<f64>() / logprobs.len() as f64;

    let answered = stage.complete(request()).await.unwrap();
    assert_eq!(answered.text, alone.text);
    assert!(
        answered.logprobs.is_none(),
        "the client did not ask for logprobs"
    );
    let entry = entry(&answered.report);
    let confidence = entry["confidence"].as_f64().unwrap();
    assert!(
        (confidence - mean.exp()).abs() < 1e-9,
        "{confidence} vs {}",
        mean.exp()
    );
    assert_eq!(entry["answer_probability"], entry["confidence"]);
    // No claim was checked: the verifier was not asked.
    assert_eq!(
        answered.report.stages.len(),
        1,
        "{:?}",
        answered.report.stages
    );

    // `eval trust --calibrate` scores a stored answer's text by re-reading it under the model:
    // the same quantity, up to how the text tokenises again.
    let llama = llama();
    let mut handle = llama.open_sequence().await.unwrap();
    let mut tokens = handle.model().chat_prompt(&request().messages).unwrap();
    let prompt_len = tokens.len();
    tokens.extend(handle.model().tokenize(&alone.text, false));
    let losses = handle.token_losses(&tokens).await.unwrap();
    drop(handle);
    let rescored = answer_probability(losses[prompt_len - 1..].iter().map(|loss| -loss));
    assert!(
        (rescored - confidence).abs() < 0.02,
        "re-scored {rescored} vs served {confidence}"
    );
}
