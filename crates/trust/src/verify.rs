//! [`Verify`]: a `ChatModel` that wraps another and has a small model check the answer before it
//! is released, reporting a confidence in [0, 1] and, optionally, abstaining below a threshold.
//!
//! - Context: the text of the request's system messages (the usual shape of a question asked over
//!   retrieved documents). The wrapped model sees the request unchanged.
//! - Grounding: the answer is split into claims ([`claims`]: sentences of prose, each fenced code
//!   block whole) and the verifier is asked of each, in one token, whether the context supports
//!   it ([`claim_request`]); P(supported) is P(yes) / (P(yes) + P(no)) from that token's
//!   probabilities ([`tandem_core::logprobs::yes_share`]), 0.5 when neither word is among them.
//!   Without a system message the question is whether the claim is correct. With a context, each
//!   prose claim's words that neither the context nor the question holds are reported
//!   ([`unsupported_words`]), and a fitted [`GroundingModel`], when configured, combines them with
//!   the verifier's probability into the claim's P(supported). The answer's grounding is its
//!   weakest claim's P(supported): one unsupported claim is enough to be wrong.
//! - Agreement (`samples` > 0): the wrapped model answers `samples` more times with sampling;
//!   agreement is the share of samples whose final answer (a number, a `\boxed{}` or the
//!   normalised text) equals the answer's.
//! - Confidence ([`Confidence`]): by default the grounding, or the mean of grounding and agreement
//!   when samples are drawn; or the answering model's own geometric-mean token probability of its
//!   answer ([`answer_probability`], read from the answer's logprobs, which the stage asks for).
//!   Either is mapped through a [`Calibration`] fitted on held-out outcomes when one is
//!   configured.
//!   Below `abstain_below` the answer is replaced by `abstain_text` (finish reason `stop`, no tool
//!   calls, empty logprobs: the words are not the model's).
//!
//! A streamed answer is verified whole before any of it is released (verification needs every
//! claim), then sent as one delta. Every response's `tandem.strategies` holds a `verify` entry with
//! the confidence, its parts and each claim's probability; /metrics has the histogram
//! `tandem_verify_confidence{pipeline}` and `tandem_verify_responses_total{pipeline,abstained}`.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use serde::Serialize;
use tandem_core::logprobs::{one_token_question, yes_share};
use tandem_core::openai::{ChatCompletionRequest, FinishReason, Message, Role};
use tandem_core::{ChatEvent, ChatModel, ChatOutput, ChatStream, Completion, ModelError, Report};

use crate::calibration::Calibration;
use crate::grounding::{unsupported_words, GroundingModel};
use crate::judge::{request_text, UNDECIDED};

/// What the reported confidence is made of, before calibration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// The weakest claim's P(supported), averaged with agreement when samples are drawn.
    #[default]
    Verifier,
    /// The answering model's geometric-mean token probability of its answer.
    Answer,
}

impl Confidence {
    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Confidence::Verifier => "verifier",
            Confidence::Answer => "answer",
        }
    }
}

/// The geometric-mean probability of an answer's tokens from their log probabilities; 0 for an
/// answer of no tokens (nothing to be confident in).
pub fn answer_probability(logprobs: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = logprobs.len();
    if n == 0 {
        return 0.0;
    }
    (logprobs.sum::<f64>() / n as f64).exp()
}

/// What the verifier does, and when the stage abstains.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The pipeline's name, reported in responses.
    pub name: String,
    /// Answer `abstain_text` instead of the answer when the confidence is below this.
    pub abstain_below: Option<f64>,
    pub abstain_text: String,
    /// Extra answers sampled from the wrapped model for agreement; 0 leaves agreement out.
    pub samples: u32,
    pub sample_temperature: f32,
    /// Claims checked, at most: the first ones, and the answer's grounding is over those.
    pub max_claims: usize,
    /// A map fitted on held-out outcomes, applied to the confidence before it is reported and
    /// compared with `abstain_below`.
    pub calibration: Option<Calibration>,
    /// Combines the verifier's probability with the unsupported words of a claim checked against
    /// a context; without it a claim's P(supported) is the verifier's.
    pub grounding: Option<GroundingModel>,
    pub confidence: Confidence,
}

/// What an abstaining response says.
pub const ABSTAIN_TEXT: &str =
    "I am not sure: I could not verify this answer, so I would rather not give it.";

impl VerifyOptions {
    pub fn new(name: impl Into<String>) -> Self {
        VerifyOptions {
            name: name.into(),
            abstain_below: None,
            abstain_text: ABSTAIN_TEXT.to_string(),
            samples: 0,
            sample_temperature: 0.7,
            max_claims: 8,
            calibration: None,
            grounding: None,
            confidence: Confidence::Verifier,
        }
    }
}

pub struct Verify {
    options: VerifyOptions,
    verifier: Arc<dyn ChatModel>,
    inner: Arc<dyn ChatModel>,
}

/// One claim of the answer and the probability that it is supported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    pub text: String,
    /// The verifier's P(supported), combined with the unsupported words when a grounding model is
    /// configured.
    pub supported: f64,
    /// The verifier's own P(supported), when a grounding model combined it into `supported`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifier: Option<f64>,
    /// With a context, for prose: the claim's content words that neither the context nor the
    /// question holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<Vec<String>>,
}

/// The stage's entry in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// In [0, 1]: grounding, or the mean of grounding and agreement, or the answer's own
    /// probability (`confidence = "answer"`), calibrated when a map is configured.
    pub confidence: f64,
    /// The confidence before calibration, when a map is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_confidence: Option<f64>,
    /// The weakest claim's P(supported).
    pub grounding: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
    /// With `confidence = "answer"`: the answering model's geometric-mean token probability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_probability: Option<f64>,
    /// "system" when the system messages gave a context, "none" otherwise.
    pub context: &'static str,
    pub claims: Vec<Claim>,
    pub abstained: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abstain_below: Option<f64>,
    /// Time spent verifying (samples included).
    pub verify_ms: f64,
}

impl Verify {
    pub fn new(
        options: VerifyOptions,
        verifier: Arc<dyn ChatModel>,
        inner: Arc<dyn ChatModel>,
    ) -> Self {
        Verify {
            options,
            verifier,
            inner,
        }
    }

    /// The verifier's P(supported) of one claim, and its call's report.
    pub async fn claim_support(
        &self,
        context: Option<&str>,
        question: &str,
        claim: &str,
    ) -> Result<(f64, Report), ModelError> {
        support(&self.verifier, context, question, claim).await
    }

    /// Checks `answer` to `request` as the stage does before releasing it: the entry (the
    /// confidence and its parts) and the verifier's reports. `answer_probability`, the answering
    /// model's own, is the confidence with `confidence = "answer"`; samples for agreement are
    /// drawn from the wrapped model.
    pub async fn check(
        &self,
        request: &ChatCompletionRequest,
        answer: &str,
        answer_probability: Option<f64>,
    ) -> Result<(Entry, Vec<Report>), ModelError> {
        let started = Instant::now();
        let context = context_text(request);
        let question = request_text(request);
        let mut reports = Vec::new();
        let mut checked = Vec::new();
        for claim in claims(answer).into_iter().take(self.options.max_claims) {
            let (verifier, report) = self
                .claim_support(context.as_deref(), &question, &claim)
                .await?;
            reports.push(report);
            // A code block's identifiers are not claims about the context: its words are not
            // counted, and the verifier's probability stands.
            let unsupported = context
                .as_deref()
                .filter(|_| !claim.starts_with("```"))
                .map(|context| unsupported_words(&claim, &[context, &question]));
            let combined = match (&self.options.grounding, &unsupported) {
                (Some(model), Some(words)) => Some(model.probability(verifier, words.len())),
                _ => None,
            };
            checked.push(Claim {
                text: claim,
                supported: combined.unwrap_or(verifier),
                verifier: combined.is_some().then_some(verifier),
                unsupported,
            });
        }
        // An empty answer claims nothing, and nothing supports it either.
        let grounding = if checked.is_empty() {
            UNDECIDED
        } else {
            checked.iter().map(|c| c.supported).fold(1.0, f64::min)
        };
        let agreement = if self.options.samples > 0 {
            let mut samples = Vec::with_capacity(self.options.samples as usize);
            for k in 0..self.options.samples {
                let mut again = request.clone();
                again.temperature = Some(self.options.sample_temperature);
                again.seed = Some(request.seed.unwrap_or(0).wrapping_add(u64::from(k) + 1));
                again.logprobs = None;
                again.top_logprobs = None;
                again.stream = false;
                let sample = self.inner.complete(again).await?;
                samples.push(sample.text);
                reports.push(sample.report);
            }
            Some(tandem_route::signal::agreement(answer, &samples))
        } else {
            None
        };
        let raw = answer_probability
            .unwrap_or_else(|| agreement.map_or(grounding, |a| (grounding + a) / 2.0));
        let confidence = self
            .options
            .calibration
            .as_ref()
            .map_or(raw, |map| map.apply(raw));
        let abstained = self.options.abstain_below.is_some_and(|t| confidence < t);
        let entry = Entry {
            confidence,
            raw_confidence: self.options.calibration.is_some().then_some(raw),
            grounding,
            agreement,
            answer_probability,
            context: if context.is_some() { "system" } else { "none" },
            claims: checked,
            abstained,
            abstain_below: self.options.abstain_below,
            verify_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        Ok((entry, reports))
    }
}

/// The verifier's P(supported) of `claim`, read from its one token's probabilities.
pub async fn support(
    verifier: &Arc<dyn ChatModel>,
    context: Option<&str>,
    question: &str,
    claim: &str,
) -> Result<(f64, Report), ModelError> {
    let mut ask = claim_request(context, question, claim);
    ask.model = verifier.name().to_string();
    let reply = verifier.complete(ask).await?;
    let supported = reply
        .logprobs
        .as_deref()
        .and_then(<[_]>::first)
        .and_then(yes_share)
        .unwrap_or(UNDECIDED);
    Ok((supported, reply.report))
}

/// The one-token question about one claim: is it supported by the context (or, without one,
/// correct)? Greedy, with its alternatives' log probabilities.
pub fn claim_request(context: Option<&str>, question: &str, claim: &str) -> ChatCompletionRequest {
    let (system, user) = match context {
        Some(context) => (
            "You check answers against a context. A claim is supported when the context states \
             it or it follows from the context; otherwise it is not supported.",
            format!(
                "Context:\n\"\"\"\n{context}\n\"\"\"\nQuestion:\n\"\"\"\n{question}\n\"\"\"\n\
                 Claim:\n\"\"\"\n{claim}\n\"\"\"\n\
                 Is the claim supported by the context? Answer with one word: yes or no."
            ),
        ),
        None => (
            "You check whether answers are correct.",
            format!(
                "Question:\n\"\"\"\n{question}\n\"\"\"\nClaim:\n\"\"\"\n{claim}\n\"\"\"\n\
                 Is the claim correct? Answer with one word: yes or no."
            ),
        ),
    };
    one_token_question(vec![
        Message::new(Role::System, system),
        Message::new(Role::User, user),
    ])
}

/// The context an answer is checked against: every system message's text, blank-line separated;
/// `None` when there is none.
pub fn context_text(request: &ChatCompletionRequest) -> Option<String> {
    let texts: Vec<String> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .filter_map(|m| m.content.text())
        .filter(|t| !t.trim().is_empty())
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n\n"))
}

/// The claims of an answer: its prose split into sentences (at `.`, `!` or `?` before a space or
/// a line end, and at blank lines and list items), each fenced code block whole.
pub fn claims(answer: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut sentence = String::new();
    let mut code: Option<String> = None;
    let flush = |sentence: &mut String, out: &mut Vec<String>| {
        let text = sentence.trim();
        if text.chars().any(char::is_alphanumeric) {
            out.push(text.to_string());
        }
        sentence.clear();
    };
    for line in answer.lines() {
        if line.trim_start().starts_with("```") {
            match code.take() {
                Some(mut block) => {
                    block.push_str(line);
                    out.push(block.trim().to_string());
                }
                None => {
                    flush(&mut sentence, &mut out);
                    code = Some(format!("{line}\n"));
                }
            }
            continue;
        }
        if let Some(block) = &mut code {
            block.push_str(line);
            block.push('\n');
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['-', '*']) || starts_numbered(trimmed) {
            flush(&mut sentence, &mut out);
        }
        let mut chars = trimmed.chars().peekable();
        while let Some(c) = chars.next() {
            sentence.push(c);
            // A list number ("1. ") ends no sentence: a sentence has a letter.
            if matches!(c, '.' | '!' | '?')
                && chars.peek().is_none_or(|n| n.is_whitespace())
                && sentence.chars().any(char::is_alphabetic)
            {
                flush(&mut sentence, &mut out);
            }
        }
        sentence.push(' ');
    }
    if let Some(block) = code {
        out.push(block.trim().to_string());
    }
    flush(&mut sentence, &mut out);
    out
}

fn starts_numbered(line: &str) -> bool {
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && line[digits..].starts_with(['.', ')'])
}

#[async_trait]
impl ChatModel for Verify {
    fn name(&self) -> &str {
        &self.options.name
    }

    async fn stream(&self, mut request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let wants_logprobs = request.logprobs.unwrap_or(false);
        request.stream = false;
        let output = self.complete(request).await?;
        let mut events = Vec::with_capacity(2);
        if !output.text.is_empty() {
            events.push(Ok(ChatEvent::Delta {
                text: output.text,
                logprobs: if wants_logprobs {
                    output.logprobs.unwrap_or_default()
                } else {
                    Vec::new()
                },
            }));
        }
        events.push(Ok(ChatEvent::Done(Completion {
            finish_reason: output.finish_reason,
            usage: output.usage,
            report: output.report,
        })));
        Ok(futures::stream::iter(events).boxed())
    }

    async fn complete(&self, request: ChatCompletionRequest) -> Result<ChatOutput, ModelError> {
        let started = Instant::now();
        let mut asked = request.clone();
        if self.options.confidence == Confidence::Answer {
            asked.logprobs = Some(true);
        }
        let mut answer = self.inner.complete(asked).await?;
        let own = match self.options.confidence {
            Confidence::Verifier => None,
            Confidence::Answer => {
                let logprobs = answer.logprobs.as_deref().ok_or_else(|| {
                    ModelError::Internal(format!(
                        "`{}` returned no token log probabilities, which the verify pipeline `{}` \
                         reads for its confidence (`confidence = \"answer\"`)",
                        self.inner.name(),
                        self.options.name
                    ))
                })?;
                Some(answer_probability(
                    logprobs.iter().map(|t| f64::from(t.logprob)),
                ))
            }
        };
        if !request.logprobs.unwrap_or(false) {
            answer.logprobs = None;
        }
        let (entry, reports) = self.check(&request, &answer.text, own).await?;
        metrics::histogram!("tandem_verify_confidence", "pipeline" => self.options.name.clone())
            .record(entry.confidence);
        metrics::counter!(
            "tandem_verify_responses_total",
            "pipeline" => self.options.name.clone(),
            "abstained" => entry.abstained.to_string()
        )
        .increment(1);
        if entry.abstained {
            answer.text = self.options.abstain_text.clone();
            // The abstention's words are not the model's tokens: their logprobs would lie.
            answer.logprobs = answer.logprobs.map(|_| Vec::new());
            answer.tool_calls.clear();
            answer.finish_reason = FinishReason::Stop;
        }
        let mut report = answer.report;
        for extra in reports {
            report.stages.extend(extra.stages);
            report.cost_usd += extra.cost_usd;
        }
        report.pipeline = self.options.name.clone();
        report.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        if let Err(e) = report.push_strategy(&self.options.name, "verify", &entry) {
            tracing::error!(error = %e, "cannot record the verifier's entry");
        }
        answer.report = report;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_sentences_and_whole_code_blocks() {
        let answer = "Paris is the capital. It has 2.1 million people!\n\n- Built in 1889\n\
                      ```python\nx = 1. \ny = 2\n```\nDone";
        assert_eq!(
            claims(answer),
            [
                "Paris is the capital.",
                "It has 2.1 million people!",
                "- Built in 1889",
                "```python\nx = 1. \ny = 2\n```",
                "Done"
            ]
        );
        assert!(claims("  \n...\n").is_empty());
        assert_eq!(claims("1. one\n2. two"), ["1. one", "2. two"]);
    }

    #[test]
    fn the_context_is_the_system_messages() {
        let mut request = ChatCompletionRequest {
            messages: vec![Message::new(Role::User, "q")],
            ..Default::default()
        };
        assert_eq!(context_text(&request), None);
        request
            .messages
            .insert(0, Message::new(Role::System, "Paris is in France."));
        assert_eq!(
            context_text(&request).as_deref(),
            Some("Paris is in France.")
        );
        let ask = claim_request(Some("ctx"), "q", "c");
        let user = ask.messages[1].content.text().unwrap();
        assert!(user.contains("ctx") && user.contains("supported by the context"));
        assert_eq!(ask.max_tokens, Some(1));
    }
}
