//! What every token-level strategy over sequence handles shares ([`crate::speculative`],
//! [`crate::fusion`]): the check that two engines share a vocabulary, the refusal of request fields
//! a strategy cannot honour, catching a handle up with the committed tokens, and [`Answer`], which
//! turns chosen tokens into the same text events, stop handling and usage as the plain engine.

use std::sync::Arc;
use std::time::Instant;

use tandem_core::openai::{ChatCompletionRequest, FinishReason, ResponseFormat, TokenLogprob};
use tandem_core::sampling::SamplingParams;
use tandem_core::text::TextAssembler;
use tandem_core::{ChatEvent, Completion, ModelError, Report, TokenId};
use tokio::sync::mpsc::UnboundedSender;

use crate::engine::token_logprob;
use crate::{LlamaEngine, LoadedModel, SequenceHandle};

/// Fails unless `other` has `base`'s vocabulary: token ids of one would mean other text in the
/// other. `role` names what `other` is to the strategy (`draft`, `small`).
pub(crate) fn check_vocabulary(
    base: &LlamaEngine,
    other: &LlamaEngine,
    role: &str,
) -> Result<(), ModelError> {
    if !same_vocabulary(base, other) {
        let (b, o) = (base.model(), other.model());
        return Err(ModelError::Internal(format!(
            "the {role} model `{}` does not share the vocabulary of `{}` ({} and {} tokens)",
            other.options().name,
            base.options().name,
            o.vocab_size(),
            b.vocab_size()
        )));
    }
    Ok(())
}

/// Whether two engines' models give the same token ids for the same text (compared on size and
/// on a probe text).
pub(crate) fn same_vocabulary(a: &LlamaEngine, b: &LlamaEngine) -> bool {
    let (a, b) = (a.model(), b.model());
    let probe = "fn main() { println!(\"héllo\"); }";
    a.vocab_size() == b.vocab_size() && a.tokenize(probe, false) == b.tokenize(probe, false)
}

/// A request field that some token-level strategy cannot honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    PresencePenalty,
    FrequencyPenalty,
    LogitBias,
    MinP,
    /// Tool calls and structured outputs need a grammar constraint on every chosen token.
    Tools,
    ResponseFormat,
}

impl Field {
    fn param(self) -> &'static str {
        match self {
            Field::PresencePenalty => "presence_penalty",
            Field::FrequencyPenalty => "frequency_penalty",
            Field::LogitBias => "logit_bias",
            Field::MinP => "min_p",
            Field::Tools => "tools",
            Field::ResponseFormat => "response_format",
        }
    }

    fn is_set(self, request: &ChatCompletionRequest) -> bool {
        match self {
            Field::PresencePenalty => request.presence_penalty.is_some_and(|p| p != 0.0),
            Field::FrequencyPenalty => request.frequency_penalty.is_some_and(|p| p != 0.0),
            Field::LogitBias => request.logit_bias.as_ref().is_some_and(|b| !b.is_empty()),
            Field::MinP => request.min_p.is_some_and(|p| p > 0.0),
            Field::Tools => request.tools.as_ref().is_some_and(|t| !t.is_empty()),
            Field::ResponseFormat => {
                !matches!(request.response_format, None | Some(ResponseFormat::Text))
            }
        }
    }
}

/// A 400 naming the first of `fields` the request sets: a strategy refuses what it would
/// otherwise silently drop. `strategy` names the kind of pipeline in the message.
pub(crate) fn refuse(
    request: &ChatCompletionRequest,
    strategy: &str,
    fields: &[Field],
) -> Result<(), ModelError> {
    match fields.iter().find(|field| field.is_set(request)) {
        Some(field) => {
            let param = field.param();
            Err(ModelError::invalid(
                param,
                format!(
                    "`{param}` is not supported by {strategy} pipelines yet; call a model directly"
                ),
            ))
        }
        None => Ok(()),
    }
}

/// Truncates `handle` to its longest prefix shared with `context` (keeping at least the last
/// token to feed) and returns the tokens it must read to hold all of `context`.
pub(crate) fn catch_up<'c>(
    handle: &mut SequenceHandle,
    context: &'c [TokenId],
) -> Result<&'c [TokenId], ModelError> {
    let common = handle
        .tokens()
        .iter()
        .zip(context)
        .take_while(|(a, b)| a == b)
        .count()
        .min(context.len() - 1);
    handle.truncate(common)?;
    Ok(&context[common..])
}

/// One request's answer as it grows: the committed tokens (prompt and answer), the text sent so
/// far, and the events channel. Emitting a token works as in the plain engine: end-of-generation
/// tokens end the answer unseen, stop strings cut it, `max_tokens` and the context bound it.
pub(crate) struct Answer {
    pub model: Arc<LoadedModel>,
    pub params: SamplingParams,
    /// Prompt and answer tokens so far.
    pub context: Vec<TokenId>,
    pub prompt_len: usize,
    pub context_size: usize,
    pub generated: u32,
    pub received: Instant,
    pub first_text_at: Option<Instant>,
    pub events: UnboundedSender<Result<ChatEvent, ModelError>>,
    text: TextAssembler,
}

impl Answer {
    pub fn new(
        model: Arc<LoadedModel>,
        params: SamplingParams,
        prompt: Vec<TokenId>,
        context_size: usize,
        received: Instant,
        events: UnboundedSender<Result<ChatEvent, ModelError>>,
    ) -> Self {
        Answer {
            model,
            text: TextAssembler::new(params.stop.clone()),
            params,
            prompt_len: prompt.len(),
            context: prompt,
            context_size,
            generated: 0,
            received,
            first_text_at: None,
            events,
        }
    }

    /// Answer tokens still allowed by `max_tokens`.
    pub fn remaining(&self) -> usize {
        self.params
            .max_tokens
            .map_or(usize::MAX, |max| (max - self.generated) as usize)
    }

    /// Adds one token chosen from `logits` (reported as its log probabilities when asked for);
    /// `Some` when it ends the answer.
    pub fn emit(&mut self, token: TokenId, logits: &[f32]) -> Option<FinishReason> {
        if self.model.is_end_of_generation(token) {
            return Some(FinishReason::Stop);
        }
        self.generated += 1;
        self.context.push(token);
        let bytes = self.model.token_bytes(token);
        let logprobs: Vec<TokenLogprob> = if self.params.logprobs {
            vec![token_logprob(
                &self.model,
                logits,
                token,
                &bytes,
                self.params.top_logprobs,
            )]
        } else {
            Vec::new()
        };
        let piece = self.text.push(&bytes);
        self.send(piece.text, logprobs);
        if piece.stopped {
            return Some(FinishReason::Stop);
        }
        let out_of_tokens = self
            .params
            .max_tokens
            .is_some_and(|max| self.generated >= max);
        if out_of_tokens || self.context.len() >= self.context_size {
            return Some(FinishReason::Length);
        }
        None
    }

    fn send(&mut self, text: String, logprobs: Vec<TokenLogprob>) {
        if text.is_empty() && logprobs.is_empty() {
            return;
        }
        if self.first_text_at.is_none() && !text.is_empty() {
            self.first_text_at = Some(Instant::now());
        }
        let _ = self.events.send(Ok(ChatEvent::Delta { text, logprobs }));
    }

    /// Milliseconds from the request to `at`.
    pub fn millis(&self, at: Instant) -> f64 {
        at.duration_since(self.received).as_secs_f64() * 1000.0
    }

    /// Sends the text still held back; then the caller builds the report and calls [`Self::done`].
    pub fn flush(&mut self) {
        let rest = self.text.finish();
        self.send(rest, Vec::new());
    }

    pub fn usage(&self) -> tandem_core::openai::Usage {
        tandem_core::openai::Usage::new(self.prompt_len as u32, self.generated)
    }

    pub fn done(&self, finish_reason: FinishReason, report: Report) {
        let _ = self.events.send(Ok(ChatEvent::Done(Completion {
            finish_reason,
            usage: self.usage(),
            report,
        })));
    }

    pub fn fail(&self, error: ModelError) {
        let _ = self.events.send(Err(error));
    }
}

/// `a / b`, or 0 when `b` is 0.
pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECULATIVE: [Field; 6] = [
        Field::PresencePenalty,
        Field::FrequencyPenalty,
        Field::LogitBias,
        Field::MinP,
        Field::Tools,
        Field::ResponseFormat,
    ];

    #[test]
    fn fields_a_strategy_would_drop_are_refused_by_name() {
        assert!(refuse(&ChatCompletionRequest::default(), "x", &SPECULATIVE).is_ok());
        let penalised = ChatCompletionRequest {
            frequency_penalty: Some(0.5),
            ..Default::default()
        };
        let error = refuse(&penalised, "speculative", &SPECULATIVE).unwrap_err();
        assert!(
            matches!(&error, ModelError::InvalidRequest { param: Some(p), .. } if p == "frequency_penalty"),
            "{error:?}"
        );
        assert!(refuse(&penalised, "contrastive", &[Field::Tools]).is_ok());
        let json = ChatCompletionRequest {
            response_format: Some(ResponseFormat::JsonObject),
            ..Default::default()
        };
        assert!(refuse(&json, "x", &SPECULATIVE).is_err());
        let text = ChatCompletionRequest {
            response_format: Some(ResponseFormat::Text),
            ..Default::default()
        };
        assert!(refuse(&text, "x", &SPECULATIVE).is_ok());
    }
}
