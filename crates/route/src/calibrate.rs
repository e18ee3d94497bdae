//! A cascade's threshold from a sample of traffic: [`score_sample`] has the cascade's
//! [`AnswerScorer`] answer and score each prompt as the live cascade does, and [`choose`] picks
//! the threshold ([`escalation_threshold`]) on what it could score. `tandem router calibrate
//! --cascade` runs both and stores the [`Calibration`].
//!
//! An item **fails**, and is left out of the choice, when its answer could not be scored: an extra
//! call of the signal failed (the self-check question, an agreement sample: a timeout, an error
//! from the model), the sandbox of `shown_examples` failed, or the request was refused as invalid.
//! Such a failure says nothing about the traffic, and one of them no longer aborts the
//! calibration. An item the small model gave **no answer** to (its context is too short) is
//! different: served, it escalates at any threshold, so it stays in the sample as such. The
//! calibration fails only when no answer could be scored, or when items failed and fewer than
//! [`MIN_SCORED`] answers were scored.

use futures::StreamExt;
use serde::Serialize;
use tandem_core::openai::ChatCompletionRequest;
use tandem_core::ModelError;

use crate::cascade::{escalates, AnswerScorer, Attempt};
use crate::quality::escalation_threshold;

/// The fewest scored answers a calibration with failed items accepts.
pub const MIN_SCORED: usize = 5;

/// What one item of the sample gives the calibration.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleScore {
    /// The signal's score of the small model's answer.
    Scored(f64),
    /// The small model gave no answer (why): escalated at any threshold, and kept in the sample.
    Unanswered(String),
    /// The answer could not be scored (why): left out of the choice.
    Failed(String),
}

impl SampleScore {
    /// What the small side's attempt at an item gives: a failed attempt, or an answer whose
    /// signal reports an error, fails.
    pub fn of(attempt: Result<Attempt, ModelError>) -> SampleScore {
        match attempt {
            Err(e) => SampleScore::Failed(e.to_string()),
            Ok(Attempt {
                findings,
                answer,
                score,
                ..
            }) => match (findings.signal_error, answer) {
                (Some(e), _) => SampleScore::Failed(e),
                (None, Err(e)) => SampleScore::Unanswered(e.to_string()),
                (None, Ok(_)) => SampleScore::Scored(score.expect("an answer is scored")),
            },
        }
    }
}

/// Has `scorer` answer and score each of `requests`, `concurrency` at once; `on_scored` hears of
/// each item (its index in `requests`) as it is done. The scores are in the order of `requests`.
pub async fn score_sample(
    scorer: &AnswerScorer,
    requests: Vec<ChatCompletionRequest>,
    concurrency: usize,
    on_scored: impl Fn(usize, &SampleScore),
) -> Vec<SampleScore> {
    let on_scored = &on_scored;
    futures::stream::iter(requests.into_iter().enumerate())
        .map(|(index, request)| async move {
            let score = SampleScore::of(scorer.attempt(&request).await);
            on_scored(index, &score);
            score
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// The threshold chosen on a sample, and what the sample was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub threshold: f64,
    /// The sample's size.
    pub items: usize,
    /// Answers scored.
    pub scored: usize,
    /// Items the small model gave no answer to (in the choice: they always escalate).
    pub unanswered: usize,
    /// Items left out of the choice because their answer could not be scored.
    pub failed: usize,
    /// Of the items in the choice (scored and unanswered), those the threshold escalates.
    pub escalated: usize,
    /// `escalated` over the items in the choice: what the stored threshold gives on the sample.
    pub escalated_share: f64,
}

/// The threshold that escalates the share of the sample's scored and unanswered items closest to
/// `escalate_share` ([`escalation_threshold`]), leaving failed items out. An error when no answer
/// was scored, or when items failed and fewer than [`MIN_SCORED`] answers were scored; it quotes
/// the first failure.
pub fn choose(sample: &[SampleScore], escalate_share: f64) -> Result<Calibration, String> {
    let mut scores = Vec::with_capacity(sample.len());
    let (mut scored, mut unanswered, mut failures) = (0, 0, Vec::new());
    for item in sample {
        match item {
            SampleScore::Scored(score) => {
                scored += 1;
                scores.push(Some(*score));
            }
            SampleScore::Unanswered(_) => {
                unanswered += 1;
                scores.push(None);
            }
            SampleScore::Failed(why) => failures.push(why.as_str()),
        }
    }
    let first_failure = || {
        failures
            .first()
            .map_or(String::new(), |why| format!("; the first failure: {why}"))
    };
    if scored == 0 {
        return Err(format!(
            "none of the {} answers could be scored ({} failed, {unanswered} without an answer){}",
            sample.len(),
            failures.len(),
            first_failure()
        ));
    }
    if !failures.is_empty() && scored < MIN_SCORED {
        return Err(format!(
            "only {scored} of {} answers could be scored and {} failed; with failures at least {MIN_SCORED} scored answers are needed{}",
            sample.len(),
            failures.len(),
            first_failure()
        ));
    }
    let (threshold, escalated) =
        escalation_threshold(&scores, escalate_share).expect("at least one answer was scored");
    debug_assert_eq!(
        escalated,
        scores.iter().filter(|s| escalates(**s, threshold)).count()
    );
    Ok(Calibration {
        threshold,
        items: sample.len(),
        scored,
        unanswered,
        failed: failures.len(),
        escalated,
        escalated_share: escalated as f64 / scores.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use tandem_core::openai::{FinishReason, Message, Role, Usage};
    use tandem_core::{ChatEvent, ChatModel, ChatStream, Completion, Report, Stage};

    use super::*;
    use crate::cascade::ScoreOptions;
    use crate::signal::{ExampleCheck, ExamplesPassed, Signal};

    /// A small model whose behaviour each prompt spells out: `agree=N` (N of the agreement samples
    /// give the greedy answer), `samples-fail` (every sample is an error, as a timed-out upstream
    /// gives), `no-answer` (the attempt itself fails, as with too short a context).
    struct Scripted;

    #[async_trait]
    impl ChatModel for Scripted {
        fn name(&self) -> &str {
            "small"
        }

        async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
            let prompt = request.messages[0].content.text().unwrap_or_default();
            let sample = request.temperature.is_some_and(|t| t > 0.0);
            if prompt.contains("no-answer") {
                return Err(ModelError::ContextOverflow {
                    model: "small".into(),
                    prompt_tokens: 300,
                    context_size: 256,
                });
            }
            if sample && prompt.contains("samples-fail") {
                return Err(ModelError::Timeout {
                    upstream: "small".into(),
                    after: std::time::Duration::from_secs(60),
                });
            }
            let agreeing: u64 = prompt
                .split("agree=")
                .nth(1)
                .and_then(|n| n[..1].parse().ok())
                .unwrap_or(0);
            // The k-th sample is asked with seed k + 1 (and the request's seed is unset).
            let text = match request.seed {
                Some(seed) if sample && seed > agreeing => "7",
                _ => "42",
            };
            Ok(answer("small", text))
        }
    }

    /// `model`'s whole answer `text`, streamed as one delta with a one-token report.
    fn answer(model: &str, text: &str) -> ChatStream {
        let stage = Stage::unpriced_local(model, 1, 1, 0.0);
        let events = vec![
            Ok(ChatEvent::Delta {
                text: text.into(),
                logprobs: Vec::new(),
            }),
            Ok(ChatEvent::Done(Completion {
                finish_reason: FinishReason::Stop,
                usage: Usage::default(),
                report: Report::single(stage),
            })),
        ];
        futures::stream::iter(events).boxed()
    }

    fn request(prompt: &str) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: "cheap".into(),
            messages: vec![Message::new(Role::User, prompt)],
            temperature: Some(0.0),
            ..ChatCompletionRequest::default()
        }
    }

    fn agreement() -> AnswerScorer {
        let mut options = ScoreOptions::new(Signal::Agreement);
        options.samples = 2;
        AnswerScorer::new("cheap", options, Arc::new(Scripted))
    }

    #[tokio::test]
    async fn a_served_cascade_escalates_when_its_signal_call_fails() {
        use crate::cascade::{Cascade, CascadeOptions};
        /// The large model: answers "large".
        struct Large;
        #[async_trait]
        impl ChatModel for Large {
            fn name(&self) -> &str {
                "large"
            }
            async fn stream(&self, _: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
                Ok(answer("large", "large"))
            }
        }
        let cascade = Cascade::new(
            CascadeOptions::new("cheap", 0.5),
            agreement(),
            Arc::new(Large),
        );
        let kept = cascade.complete(request("agree=2 a")).await.unwrap();
        assert_eq!(kept.text, "42");
        let escalated = cascade.complete(request("samples-fail f")).await.unwrap();
        assert_eq!(escalated.text, "large");
        let entry = &escalated.report.strategies[0].details;
        assert_eq!(entry["escalated"], true, "{entry:?}");
        assert!(
            entry["signal_error"]
                .as_str()
                .is_some_and(|e| e.contains("60")),
            "{entry:?}"
        );
    }

    #[tokio::test]
    async fn items_whose_signal_calls_fail_are_counted_and_left_out_of_the_choice() {
        let prompts = [
            "agree=2 a",
            "agree=2 b",
            "agree=2 c",
            "agree=1 d",
            "agree=1 e",
            "samples-fail f",
            "agree=0 g",
            "samples-fail h",
            "no-answer i",
        ];
        let heard = AtomicUsize::new(0);
        let sample = score_sample(
            &agreement(),
            prompts.iter().map(|p| request(p)).collect(),
            3,
            |_, _| {
                heard.fetch_add(1, Ordering::Relaxed);
            },
        )
        .await;
        assert_eq!(heard.into_inner(), prompts.len());
        assert_eq!(sample[0], SampleScore::Scored(1.0));
        assert_eq!(sample[3], SampleScore::Scored(0.5));
        assert_eq!(sample[6], SampleScore::Scored(0.0));
        assert!(
            matches!(&sample[5], SampleScore::Failed(why) if why.contains("60")),
            "{:?}",
            sample[5]
        );
        assert!(
            matches!(&sample[8], SampleScore::Unanswered(why) if why.contains("context")),
            "{:?}",
            sample[8]
        );

        // Seven items in the choice (six scored, one unanswered): asked half, four of them
        // (under 1: two at 0.5, one at 0, the unanswered) are the closest to 3.5.
        let calibration = choose(&sample, 0.5).unwrap();
        assert_eq!(
            calibration,
            Calibration {
                threshold: 1.0,
                items: 9,
                scored: 6,
                unanswered: 1,
                failed: 2,
                escalated: 4,
                escalated_share: 4.0 / 7.0,
            }
        );
        // Shares 0 and 1: only the unanswered item, then all seven.
        let none = choose(&sample, 0.0).unwrap();
        assert_eq!((none.threshold, none.escalated), (0.0, 1));
        let all = choose(&sample, 1.0).unwrap();
        assert_eq!(all.escalated, 7);
        assert!(all.threshold > 1.0);
        assert_eq!(all.escalated_share, 1.0);
    }

    #[tokio::test]
    async fn too_few_scored_answers_fail_the_calibration_and_say_why() {
        let score = |prompts: &[&str]| {
            let requests = prompts.iter().map(|p| request(p)).collect();
            async move { score_sample(&agreement(), requests, 1, |_, _| {}).await }
        };
        let few = score(&["agree=2", "agree=1", "agree=0", "agree=2", "samples-fail"]).await;
        let error = choose(&few, 0.3).unwrap_err();
        assert!(
            error.contains("only 4 of 5 answers could be scored and 1 failed"),
            "{error}"
        );
        assert!(error.contains("at least 5"), "{error}");
        assert!(error.contains("60"), "the first failure is quoted: {error}");

        let none = score(&["samples-fail", "no-answer"]).await;
        let error = choose(&none, 0.3).unwrap_err();
        assert!(
            error.contains("none of the 2 answers could be scored (1 failed, 1 without an answer)"),
            "{error}"
        );

        // Without failures a small sample is enough.
        let small = score(&["agree=2", "agree=0", "no-answer"]).await;
        let calibration = choose(&small, 0.5).unwrap();
        assert_eq!((calibration.scored, calibration.failed), (2, 0));
        assert_eq!(calibration.escalated, 2);
    }

    /// The sandbox of `shown_examples`, failing on prompts that say `sandbox-fails`.
    struct Sandbox;

    #[async_trait]
    impl ExampleCheck for Sandbox {
        async fn check(
            &self,
            request: &ChatCompletionRequest,
            _answer: &str,
        ) -> Result<Option<ExamplesPassed>, ModelError> {
            if request.messages[0]
                .content
                .text()
                .is_some_and(|t| t.contains("sandbox-fails"))
            {
                return Err(ModelError::Internal("no namespaces".into()));
            }
            Ok(Some(ExamplesPassed {
                passed: 1,
                total: 2,
            }))
        }
    }

    #[tokio::test]
    async fn a_failed_sandbox_is_a_failed_item_not_a_score_of_zero() {
        let scorer = AnswerScorer::new(
            "cheap",
            ScoreOptions::new(Signal::ShownExamples),
            Arc::new(Scripted),
        )
        .with_example_check(Arc::new(Sandbox));
        let prompts = ["a", "b", "sandbox-fails c", "d", "e", "f"];
        let sample = score_sample(
            &scorer,
            prompts.iter().map(|p| request(p)).collect(),
            2,
            |_, _| {},
        )
        .await;
        assert_eq!(
            sample[2],
            SampleScore::Failed("internal error: no namespaces".into())
        );
        let calibration = choose(&sample, 1.0).unwrap();
        assert_eq!((calibration.scored, calibration.failed), (5, 1));
        assert_eq!(calibration.escalated, 5);
    }
}
