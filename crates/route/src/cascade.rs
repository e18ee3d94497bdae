//! [`Cascade`]: the small model answers first; when the answer's confidence score is under the
//! threshold, the large model is asked and its answer is the response.
//!
//! [`AnswerScorer`] is the small side alone: the attempt and its score under the cascade's signal.
//! The cascade decides on what it returns, and `tandem router calibrate --cascade` runs the same
//! scorer on a sample of traffic to choose the threshold ([`crate::calibrate`]), so the scores a
//! threshold is calibrated on are the scores it is served on. [`escalates`] is the one rule both
//! apply.
//!
//! The small attempt always runs to its end before anything is sent, since the score needs the
//! whole answer; an escalated answer then streams from the large model as it is generated. The
//! report carries every model call (the small attempt, the signal's extra calls, the escalation),
//! so the cost of the small attempt is never hidden, and one `cascade` entry with the signal, the
//! score, the threshold, whether it escalated and what it saved against always calling the large
//! model.
//!
//! With the `shown_examples` signal, a request that shows no example (not a code task) gets
//! [`ScoreOptions::no_examples_score`], 0 unless configured: no evidence, so the answer is not
//! trusted and the cascade escalates, as every signal does on an answer it cannot score. The entry
//! then says `"no_examples": true`; otherwise it carries `"examples": {"passed", "total"}`. A
//! sandbox that fails scores 0 too (escalating), with the failure in `signal_error`; a failed
//! extra call of a signal (the self-check, an agreement sample) leaves no score and escalates,
//! with its error there too.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use serde::Serialize;
use tandem_core::openai::{ChatCompletionRequest, FunctionCallChunk, ToolCallChunk};
use tandem_core::{
    ChatEvent, ChatModel, ChatOutput, ChatStream, Completion, ModelError, Pricing, Report,
};

use crate::signal::{self, ExampleCheck, ExamplesPassed, Signal};

/// Whether a cascade at `threshold` escalates an answer that scored `score` (`None`: there was no
/// answer to score): unless the score is at least the threshold. So 0 escalates only requests
/// without a score, and a threshold above 1 escalates every request (scores are in [0, 1]).
pub fn escalates(score: Option<f64>, threshold: f64) -> bool {
    !score.is_some_and(|score| score >= threshold)
}

/// How a cascade scores the small model's answer.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub signal: Signal,
    /// Extra answers the `agreement` signal samples.
    pub samples: u32,
    /// Sampling temperature of those extra answers.
    pub sample_temperature: f32,
    /// The `shown_examples` score of a request that shows no example, in [0, 1]: 0 escalates
    /// such requests at any positive threshold, 1 keeps the small answer.
    pub no_examples_score: f64,
}

impl ScoreOptions {
    pub fn new(signal: Signal) -> Self {
        ScoreOptions {
            signal,
            samples: 4,
            sample_temperature: 0.8,
            no_examples_score: 0.0,
        }
    }
}

/// How a cascade decides.
#[derive(Debug, Clone)]
pub struct CascadeOptions {
    /// The pipeline's name, reported in responses.
    pub name: String,
    /// Escalate when the score is under this (see [`escalates`]).
    pub threshold: f64,
    /// The large model's prices, to report what a kept small answer saved; `None` when unknown.
    pub large_pricing: Option<Pricing>,
}

impl CascadeOptions {
    pub fn new(name: impl Into<String>, threshold: f64) -> Self {
        CascadeOptions {
            name: name.into(),
            threshold,
            large_pricing: None,
        }
    }
}

/// The small side of a cascade: the small model's attempt at a request, scored by the cascade's
/// signal.
pub struct AnswerScorer {
    /// The cascade's name, for messages.
    name: String,
    options: ScoreOptions,
    small: Arc<dyn ChatModel>,
    examples: Option<Arc<dyn ExampleCheck>>,
}

/// What the signal found besides the score, for the cascade's report entry.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    /// Why the small attempt produced no answer, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub small_error: Option<String>,
    /// `shown_examples`: how the answer fared on the request's examples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<ExamplesPassed>,
    /// `shown_examples`: the request showed none, and the score is `no_examples_score`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_examples: bool,
    /// Why the signal could not score the answer (the sandbox failed); the score is then 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_error: Option<String>,
}

/// The small model's attempt at one request, scored.
pub struct Attempt {
    /// The small model's answer; an `Err` when it gave none (its context is too short, it is
    /// overloaded), which escalates.
    pub answer: Result<ChatOutput, ModelError>,
    /// `None` when there was no answer to score.
    pub score: Option<f64>,
    pub findings: Findings,
    /// The reports of every call made: the attempt first, then the signal's extra calls; empty
    /// when the attempt failed.
    pub spent: Vec<Report>,
}

impl AnswerScorer {
    /// `name` is the cascade's, for messages.
    pub fn new(name: impl Into<String>, options: ScoreOptions, small: Arc<dyn ChatModel>) -> Self {
        AnswerScorer {
            name: name.into(),
            options,
            small,
            examples: None,
        }
    }

    /// The runner of the `shown_examples` signal (required by it, unused by the others).
    pub fn with_example_check(mut self, check: Arc<dyn ExampleCheck>) -> Self {
        self.examples = Some(check);
        self
    }

    pub fn signal(&self) -> Signal {
        self.options.signal
    }

    /// Asks the small model for an answer to `request` (with its token log probabilities, which
    /// the probability signals read) and scores it. An invalid request is an error, since the
    /// large model would refuse it too; any other failure of the attempt is an [`Attempt`]
    /// without an answer, and a failed extra call of the signal one without a score (its error in
    /// `signal_error`): both escalate.
    pub async fn attempt(&self, request: &ChatCompletionRequest) -> Result<Attempt, ModelError> {
        let mut attempt_request = request.clone();
        attempt_request.logprobs = Some(true);
        let answer = self.small.complete(attempt_request).await;
        if let Err(e @ ModelError::InvalidRequest { .. }) = answer {
            return Err(e);
        }
        let mut findings = Findings::default();
        let (score, spent) = match &answer {
            Ok(answer) => match self.score(request, answer, &mut findings).await {
                Ok((score, mut extra)) => {
                    extra.insert(0, answer.report.clone());
                    (Some(score), extra)
                }
                // The signal's own call failed (a timeout, a self-check prompt too long for the
                // context): the answer cannot be trusted, so the request escalates.
                Err(e) => {
                    tracing::warn!(pipeline = %self.name, error = %e, "cannot score the small answer");
                    findings.signal_error = Some(e.to_string());
                    (None, vec![answer.report.clone()])
                }
            },
            Err(e) => {
                findings.small_error = Some(e.to_string());
                (None, Vec::new())
            }
        };
        Ok(Attempt {
            answer,
            score,
            findings,
            spent,
        })
    }

    /// The signal's score of `answer`, with the reports of any extra model calls it made; what
    /// the signal found besides goes into `findings`.
    async fn score(
        &self,
        request: &ChatCompletionRequest,
        answer: &ChatOutput,
        findings: &mut Findings,
    ) -> Result<(f64, Vec<Report>), ModelError> {
        let tokens = answer.logprobs.as_deref().unwrap_or_default();
        match self.options.signal {
            Signal::MeanLogprob => Ok((signal::mean_token_probability(tokens), Vec::new())),
            Signal::MinLogprob => Ok((signal::min_token_probability(tokens), Vec::new())),
            Signal::SelfCheck => {
                let check = self
                    .small
                    .complete(signal::self_check_request(request, &answer.text))
                    .await?;
                let first = check.logprobs.as_deref().and_then(<[_]>::first);
                Ok((signal::yes_probability(first), vec![check.report]))
            }
            Signal::Agreement => {
                let (score, samples) = signal::sampled_agreement(
                    self.small.as_ref(),
                    request,
                    &answer.text,
                    self.options.samples,
                    self.options.sample_temperature,
                )
                .await?;
                Ok((score, samples.into_iter().map(|s| s.report).collect()))
            }
            Signal::ShownExamples => {
                let check = self.examples.as_ref().ok_or_else(|| {
                    ModelError::Internal(format!(
                        "cascade `{}` uses shown_examples but has no sandbox to run examples in",
                        self.name
                    ))
                })?;
                let score = match check.check(request, &answer.text).await {
                    Ok(Some(passed)) => {
                        findings.examples = Some(passed);
                        passed.share()
                    }
                    Ok(None) => {
                        findings.no_examples = true;
                        self.options.no_examples_score
                    }
                    Err(e) => {
                        tracing::warn!(pipeline = %self.name, error = %e, "cannot run the shown examples");
                        findings.signal_error = Some(e.to_string());
                        0.0
                    }
                };
                Ok((score, Vec::new()))
            }
        }
    }
}

pub struct Cascade {
    options: CascadeOptions,
    scorer: AnswerScorer,
    large: Arc<dyn ChatModel>,
}

/// The cascade's entry in the report.
#[derive(Debug, Clone, Serialize)]
struct Decision {
    signal: &'static str,
    /// `None` when the small model failed and there was nothing to score.
    score: Option<f64>,
    threshold: f64,
    escalated: bool,
    #[serde(flatten)]
    findings: Findings,
    /// What calling the large model alone would have cost, minus what the cascade spent: for a
    /// kept answer, the large model's price of its tokens; for an escalation, the large call's own
    /// cost, so the figure is minus the small attempt's. Only when the large model's prices are
    /// known.
    #[serde(skip_serializing_if = "Option::is_none")]
    saved_usd: Option<f64>,
}

impl Cascade {
    pub fn new(options: CascadeOptions, scorer: AnswerScorer, large: Arc<dyn ChatModel>) -> Self {
        Cascade {
            options,
            scorer,
            large,
        }
    }
}

/// Counts the decision in /metrics and adds it to `report` as the cascade's entry.
fn record(pipeline: &str, mut report: Report, decision: &Decision) -> Report {
    metrics::counter!(
        "tandem_cascade_requests_total",
        "pipeline" => pipeline.to_string(),
        "escalated" => decision.escalated.to_string()
    )
    .increment(1);
    if let Err(e) = report.push_strategy(pipeline, "cascade", decision) {
        tracing::error!(error = %e, "cannot record the cascade's decision");
    }
    report
}

/// `first`'s stages and costs followed by `then`'s; the answer's own figures are `then`'s.
fn combine(first: &[Report], mut then: Report) -> Report {
    let mut stages = Vec::new();
    let mut strategies = Vec::new();
    let mut cost = 0.0;
    for report in first {
        stages.extend(report.stages.iter().cloned());
        strategies.extend(report.strategies.iter().cloned());
        cost += report.cost_usd;
    }
    stages.append(&mut then.stages);
    strategies.append(&mut then.strategies);
    then.stages = stages;
    then.strategies = strategies;
    then.cost_usd += cost;
    then
}

fn millis_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[async_trait]
impl ChatModel for Cascade {
    fn name(&self) -> &str {
        &self.options.name
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let started = Instant::now();
        let wants_logprobs = request.logprobs.unwrap_or(false);
        let Attempt {
            answer,
            score,
            findings,
            spent,
        } = self.scorer.attempt(&request).await?;
        let keep = !escalates(score, self.options.threshold);
        let mut decision = Decision {
            signal: self.scorer.signal().as_str(),
            score,
            threshold: self.options.threshold,
            escalated: !keep,
            findings,
            saved_usd: None,
        };

        if let (true, Ok(answer)) = (keep, answer) {
            let (first, rest) = spent.split_first().expect("the attempt's report is first");
            let mut report = combine(rest, first.clone());
            report.model = answer.report.model.clone();
            report.time_to_first_token_ms = Some(millis_since(started));
            decision.saved_usd = self
                .options
                .large_pricing
                .map(|price| price.cost(answer.usage) - report.cost_usd);
            let report = record(&self.options.name, report, &decision);
            let logprobs = if wants_logprobs {
                answer.logprobs.unwrap_or_default()
            } else {
                Vec::new()
            };
            let mut events = vec![Ok(ChatEvent::Delta {
                text: answer.text,
                logprobs,
            })];
            // A kept answer's tool calls, each whole in one piece.
            events.extend(
                answer
                    .tool_calls
                    .into_iter()
                    .enumerate()
                    .map(|(index, call)| {
                        Ok(ChatEvent::ToolCall(ToolCallChunk {
                            index: index as u32,
                            id: Some(call.id),
                            kind: Some(call.kind),
                            function: FunctionCallChunk {
                                name: Some(call.function.name),
                                arguments: Some(call.function.arguments),
                            },
                        }))
                    }),
            );
            events.extend([Ok(ChatEvent::Done(Completion {
                finish_reason: answer.finish_reason,
                usage: answer.usage,
                report,
            }))]);
            return Ok(futures::stream::iter(events).boxed());
        }

        let escalated = self.large.stream(request).await?;
        let name = self.options.name.clone();
        let large_pricing = self.options.large_pricing;
        let mut first_text_at: Option<f64> = None;
        Ok(escalated
            .map(move |event| match event {
                Ok(ChatEvent::Delta { text, logprobs }) => {
                    if first_text_at.is_none() && !text.is_empty() {
                        first_text_at = Some(millis_since(started));
                    }
                    Ok(ChatEvent::Delta { text, logprobs })
                }
                Ok(ChatEvent::Done(done)) => {
                    let large_cost = done.report.cost_usd;
                    let mut report = combine(&spent, done.report);
                    report.time_to_first_token_ms = first_text_at;
                    if large_pricing.is_some() {
                        decision.saved_usd = Some(large_cost - report.cost_usd);
                    }
                    Ok(ChatEvent::Done(Completion {
                        report: record(&name, report, &decision),
                        ..done
                    }))
                }
                other => other,
            })
            .boxed())
    }
}
