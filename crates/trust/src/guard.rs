//! [`Guard`]: a `ChatModel` that wraps another and lets a small local model judge the request
//! before it is answered and the answer before it is released.
//!
//! - Input: the request's user messages are judged first; a blocked request never reaches the
//!   wrapped model and ends at once with no text, `finish_reason: "content_filter"` and the
//!   category in the guard's report entry.
//! - Output, streamed: the answer's text is held back until at least `hold_chars` characters wait
//!   (or the answer ends); then the whole answer so far is judged, and only an allowed verdict
//!   releases the held text, unchanged and with its logprobs. A blocked answer ends with
//!   `content_filter`: what was released before stays released, what was held is dropped, and
//!   the wrapped generation is abandoned. So the delay a reader sees is bounded by `hold_chars`
//!   plus one delta and one guard call; the entry reports the most characters held at once.
//! - Output, not streamed: the whole answer is judged once; a blocked answer has no text.
//!
//! The report carries every guard call as a stage, and one `guard` entry with the verdicts.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use serde::Serialize;
use tandem_core::openai::{ChatCompletionRequest, FinishReason, TokenLogprob, Usage};
use tandem_core::{ChatEvent, ChatModel, ChatOutput, ChatStream, Completion, ModelError, Report};
use tokio::sync::mpsc;

use crate::judge::{request_text, Judge};
use crate::policy::Side;
use crate::scorer::InputScorer;
use crate::verdict::Verdict;

/// What a guard checks, and how.
#[derive(Debug, Clone)]
pub struct GuardOptions {
    /// The pipeline's name, reported in responses.
    pub name: String,
    pub check_input: bool,
    pub check_output: bool,
    /// Characters of a streamed answer held back before the guard judges and releases them.
    pub hold_chars: usize,
}

impl GuardOptions {
    pub fn new(name: impl Into<String>) -> Self {
        GuardOptions {
            name: name.into(),
            check_input: true,
            check_output: true,
            hold_chars: 200,
        }
    }
}

pub struct Guard {
    options: GuardOptions,
    judge: Arc<Judge>,
    input_scorer: Option<Arc<InputScorer>>,
    inner: Arc<dyn ChatModel>,
}

/// The output guard's entry: its last verdict and how much it held back.
#[derive(Debug, Clone, Serialize)]
struct OutputEntry {
    #[serde(flatten)]
    verdict: Verdict,
    /// Times the answer was judged.
    checks: u32,
    hold_chars: usize,
    /// Most characters held back at once: the delay a streaming reader saw, in characters.
    max_held_chars: usize,
    /// Time spent in the output guard's calls.
    guard_ms: f64,
}

/// The guard's entry in the report.
#[derive(Debug, Clone, Default, Serialize)]
struct Entry {
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<OutputEntry>,
}

impl Guard {
    pub fn new(options: GuardOptions, judge: Judge, inner: Arc<dyn ChatModel>) -> Self {
        Guard {
            options,
            judge: Arc::new(judge),
            input_scorer: None,
            inner,
        }
    }

    /// Scores requests with a trained classifier combined with the guard model's probability,
    /// instead of that probability alone.
    pub fn with_input_scorer(mut self, scorer: InputScorer) -> Self {
        self.input_scorer = Some(Arc::new(scorer));
        self
    }

    /// The input verdict and its calls' reports; `None` when the input is not checked.
    async fn check_input(
        &self,
        request: &ChatCompletionRequest,
    ) -> Result<Option<(Verdict, Vec<Report>)>, ModelError> {
        if !self.options.check_input {
            return Ok(None);
        }
        let text = request_text(request);
        let judgement = match &self.input_scorer {
            Some(scorer) => scorer.judge(&self.judge, &text).await?,
            None => self.judge.judge(Side::Input, &text, None).await?,
        };
        count(&self.options.name, Side::Input, &judgement.verdict);
        Ok(Some((judgement.verdict, judgement.reports)))
    }

    fn blocked_input(&self, verdict: Verdict, spent: Vec<Report>, started: Instant) -> Completion {
        let mut report = merge(&spent, None);
        report.pipeline = self.options.name.clone();
        report.latency_ms = millis_since(started);
        let entry = Entry {
            input: Some(verdict),
            output: None,
        };
        Completion {
            finish_reason: FinishReason::ContentFilter,
            usage: Usage::new(0, 0),
            report: record(&self.options.name, report, &entry),
        }
    }
}

#[async_trait]
impl ChatModel for Guard {
    fn name(&self) -> &str {
        &self.options.name
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let started = Instant::now();
        let input = self.check_input(&request).await?;
        let (input_verdict, spent) = match input {
            Some((verdict, spent)) if verdict.blocked => {
                let done = self.blocked_input(verdict, spent, started);
                return Ok(futures::stream::iter([Ok(ChatEvent::Done(done))]).boxed());
            }
            Some((verdict, spent)) => (Some(verdict), spent),
            None => (None, Vec::new()),
        };
        let request_text = request_text(&request);
        let answer = self.inner.stream(request).await?;
        if !self.options.check_output {
            let name = self.options.name.clone();
            let entry = Entry {
                input: input_verdict,
                output: None,
            };
            return Ok(answer
                .map(move |event| match event {
                    Ok(ChatEvent::Done(done)) => {
                        let report = merge(&spent, Some(done.report));
                        Ok(ChatEvent::Done(Completion {
                            report: record(&name, report, &entry),
                            ..done
                        }))
                    }
                    other => other,
                })
                .boxed());
        }
        let (sender, receiver) = mpsc::channel(16);
        let watch = Watch {
            name: self.options.name.clone(),
            judge: Arc::clone(&self.judge),
            hold_chars: self.options.hold_chars,
            request_text,
            input_verdict,
            spent,
            sender,
        };
        tokio::spawn(watch.run(answer));
        Ok(
            futures::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|event| (event, receiver))
            })
            .boxed(),
        )
    }

    async fn complete(&self, request: ChatCompletionRequest) -> Result<ChatOutput, ModelError> {
        let started = Instant::now();
        let wants_logprobs = request.logprobs.unwrap_or(false);
        let input = self.check_input(&request).await?;
        let (input_verdict, mut spent) = match input {
            Some((verdict, spent)) if verdict.blocked => {
                let done = self.blocked_input(verdict, spent, started);
                return Ok(ChatOutput {
                    text: String::new(),
                    logprobs: wants_logprobs.then(Vec::new),
                    tool_calls: Vec::new(),
                    finish_reason: done.finish_reason,
                    usage: done.usage,
                    report: done.report,
                });
            }
            Some((verdict, spent)) => (Some(verdict), spent),
            None => (None, Vec::new()),
        };
        let request_text = request_text(&request);
        let mut answer = self.inner.complete(request).await?;
        let mut entry = Entry {
            input: input_verdict,
            output: None,
        };
        let answer_report = answer.report.clone();
        if self.options.check_output {
            let checked = Instant::now();
            let judgement = self
                .judge
                .judge(Side::Output, &request_text, Some(&answer.text))
                .await?;
            count(&self.options.name, Side::Output, &judgement.verdict);
            spent.extend(judgement.reports);
            if judgement.verdict.blocked {
                answer.text.clear();
                answer.logprobs = answer.logprobs.map(|_| Vec::new());
                answer.finish_reason = FinishReason::ContentFilter;
            }
            entry.output = Some(OutputEntry {
                verdict: judgement.verdict,
                checks: 1,
                hold_chars: self.options.hold_chars,
                max_held_chars: 0,
                guard_ms: millis_since(checked),
            });
        }
        let report = merge(&spent, Some(answer_report));
        answer.report = record(&self.options.name, report, &entry);
        Ok(answer)
    }
}

/// The output guard over one streamed answer: reads the wrapped stream, holds text back, judges,
/// and forwards what is allowed to the client's channel.
struct Watch {
    name: String,
    judge: Arc<Judge>,
    hold_chars: usize,
    request_text: String,
    input_verdict: Option<Verdict>,
    spent: Vec<Report>,
    sender: mpsc::Sender<Result<ChatEvent, ModelError>>,
}

impl Watch {
    async fn run(mut self, mut answer: ChatStream) {
        let mut text = String::new();
        let mut held = String::new();
        let mut held_logprobs: Vec<TokenLogprob> = Vec::new();
        // Tool calls come after the text; they are judged with it and released only at the end.
        let mut held_calls = Vec::new();
        let mut output = OutputEntry {
            verdict: Verdict {
                score: 0.0,
                threshold: self.judge.threshold(),
                blocked: false,
                category: None,
                category_probability: None,
                jailbreak: None,
            },
            checks: 0,
            hold_chars: self.hold_chars,
            max_held_chars: 0,
            guard_ms: 0.0,
        };
        while let Some(event) = answer.next().await {
            match event {
                Ok(ChatEvent::Delta {
                    text: piece,
                    logprobs,
                }) => {
                    text.push_str(&piece);
                    held.push_str(&piece);
                    held_logprobs.extend(logprobs);
                    if held.chars().count() < self.hold_chars {
                        continue;
                    }
                    if !self
                        .release(&text, &mut held, &mut held_logprobs, &mut output)
                        .await
                    {
                        return self.blocked(output, None).await;
                    }
                }
                Ok(ChatEvent::ToolCall(call)) => {
                    for piece in [&call.function.name, &call.function.arguments]
                        .into_iter()
                        .flatten()
                    {
                        text.push_str(piece);
                        held.push_str(piece);
                    }
                    held_calls.push(call);
                }
                Ok(ChatEvent::Done(done)) => {
                    // An empty answer is judged too: the verdict is part of every report.
                    if (!held.is_empty() || output.checks == 0)
                        && !self
                            .release(&text, &mut held, &mut held_logprobs, &mut output)
                            .await
                    {
                        return self.blocked(output, Some(done)).await;
                    }
                    for call in held_calls.drain(..) {
                        if self
                            .sender
                            .send(Ok(ChatEvent::ToolCall(call)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    let report = merge(&self.spent, Some(done.report));
                    let entry = Entry {
                        input: self.input_verdict.take(),
                        output: Some(output),
                    };
                    let done = Completion {
                        report: record(&self.name, report, &entry),
                        ..done
                    };
                    let _ = self.sender.send(Ok(ChatEvent::Done(done))).await;
                    return;
                }
                Err(e) => {
                    let _ = self.sender.send(Err(e)).await;
                    return;
                }
            }
        }
    }

    /// Judges the answer so far and sends the held text if it is allowed; false when blocked or
    /// when the guard failed (the failure has been sent) or the client left.
    async fn release(
        &mut self,
        text: &str,
        held: &mut String,
        held_logprobs: &mut Vec<TokenLogprob>,
        output: &mut OutputEntry,
    ) -> bool {
        output.max_held_chars = output.max_held_chars.max(held.chars().count());
        let checked = Instant::now();
        let judgement = self
            .judge
            .judge(Side::Output, &self.request_text, Some(text))
            .await;
        output.guard_ms += millis_since(checked);
        output.checks += 1;
        let judgement = match judgement {
            Ok(judgement) => judgement,
            Err(e) => {
                let _ = self.sender.send(Err(e)).await;
                held.clear();
                return false;
            }
        };
        self.spent.extend(judgement.reports);
        count(&self.name, Side::Output, &judgement.verdict);
        let blocked = judgement.verdict.blocked;
        output.verdict = judgement.verdict;
        if blocked {
            return false;
        }
        let delta = ChatEvent::Delta {
            text: std::mem::take(held),
            logprobs: std::mem::take(held_logprobs),
        };
        self.sender.send(Ok(delta)).await.is_ok()
    }

    /// Ends a blocked answer with `content_filter`. `done` is the wrapped model's end when the
    /// answer had finished; otherwise its usage is unknown and counted as what the stages saw.
    async fn blocked(mut self, output: OutputEntry, done: Option<Completion>) {
        if !output.verdict.blocked {
            return; // the guard failed or the client left: nothing more to send
        }
        let answer_report = done.as_ref().map(|d| d.report.clone());
        let usage = done.map(|d| d.usage).unwrap_or_default();
        let mut report = merge(&self.spent, answer_report);
        report.pipeline = self.name.clone();
        let entry = Entry {
            input: self.input_verdict.take(),
            output: Some(output),
        };
        let done = Completion {
            finish_reason: FinishReason::ContentFilter,
            usage,
            report: record(&self.name, report, &entry),
        };
        let _ = self.sender.send(Ok(ChatEvent::Done(done))).await;
    }
}

fn count(pipeline: &str, side: Side, verdict: &Verdict) {
    metrics::counter!(
        "tandem_guard_verdicts_total",
        "pipeline" => pipeline.to_string(),
        "side" => side.as_str(),
        "blocked" => verdict.blocked.to_string()
    )
    .increment(1);
}

fn record(pipeline: &str, mut report: Report, entry: &Entry) -> Report {
    if let Err(e) = report.push_strategy(pipeline, "guard", entry) {
        tracing::error!(error = %e, "cannot record the guard's verdicts");
    }
    report
}

/// One report of the answer (when there is one) and the guard's calls: the answer's own figures,
/// every stage, and the summed cost. Without an answer, the guard calls are the whole story.
fn merge(guard_calls: &[Report], answer: Option<Report>) -> Report {
    let mut stages = Vec::new();
    let mut strategies = Vec::new();
    let mut cost = 0.0;
    for report in guard_calls {
        stages.extend(report.stages.iter().cloned());
        strategies.extend(report.strategies.iter().cloned());
        cost += report.cost_usd;
    }
    match answer {
        Some(mut answer) => {
            answer.stages.extend(stages);
            strategies.append(&mut answer.strategies);
            answer.strategies = strategies;
            answer.cost_usd += cost;
            answer
        }
        None => {
            let model = guard_calls
                .first()
                .map(|r| r.model.clone())
                .unwrap_or_default();
            Report {
                pipeline: model.clone(),
                model,
                prompt_tokens: 0,
                completion_tokens: 0,
                latency_ms: 0.0,
                time_to_first_token_ms: None,
                cost_usd: cost,
                stages,
                strategies,
            }
        }
    }
}

fn millis_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}
