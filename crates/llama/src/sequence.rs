//! [`SequenceHandle`]: one sequence of an engine's context, driven token by token from async code.
//!
//! Token-level strategies (speculative decoding and the like) need what a chat job hides: feed
//! chosen tokens, read the logits of several positions, roll the cache back. A handle gives that
//! without a context of its own: its tokens go into the scheduler's next batch beside every other
//! handle's and chat job's, so concurrent requests still share each decode step.
//!
//! Commands travel to the scheduler in order through one channel, so a [`SequenceHandle::truncate`]
//! takes effect before the next [`SequenceHandle::eval`]. Dropping the handle frees the sequence.

use std::sync::mpsc;
use std::sync::Arc;

use tandem_core::{ModelError, TokenId};
use tokio::sync::oneshot;

use crate::engine::Job;
use crate::model::LoadedModel;

/// What the scheduler thread receives.
pub(crate) enum Command {
    Chat(Job),
    Open(OpenRequest),
    Eval(EvalRequest),
    Truncate { seq: usize, len: usize },
    Close { seq: usize },
}

/// A caller waiting in [`crate::LlamaEngine::open_sequence`] for a free sequence.
pub(crate) struct OpenRequest {
    pub reply: oneshot::Sender<Lease>,
    /// Travels inside the [`Lease`] so that a lease nobody receives still closes its sequence.
    pub commands: mpsc::Sender<Command>,
}

pub(crate) struct EvalRequest {
    pub seq: usize,
    /// Tokens the handle believes its cache holds; the scheduler checks it agrees.
    pub start: usize,
    pub tokens: Vec<TokenId>,
    /// How many of the last tokens want their logits back.
    pub tail: usize,
    pub reply: oneshot::Sender<Result<Logits, ModelError>>,
}

/// A sequence given to one caller; dropping it frees the sequence.
pub(crate) struct Lease {
    pub seq: usize,
    pub commands: mpsc::Sender<Command>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A stopped scheduler has nothing left to free.
        let _ = self.commands.send(Command::Close { seq: self.seq });
    }
}

/// Rows of logits, one per requested position, copied out of the context.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    vocab: usize,
    data: Vec<f32>,
}

impl Logits {
    pub(crate) fn with_capacity(vocab: usize, rows: usize) -> Self {
        Logits {
            vocab,
            data: Vec::with_capacity(vocab * rows),
        }
    }

    pub(crate) fn push_row(&mut self, row: &[f32]) {
        self.data.extend_from_slice(row);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.vocab).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The `i`-th row, in the order of the evaluated tokens.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }
}

/// One sequence of a [`crate::LlamaEngine`]'s context, owned by one caller.
pub struct SequenceHandle {
    lease: Lease,
    model: Arc<LoadedModel>,
    engine: String,
    context_size: usize,
    /// What the sequence's cache holds (or will, once evaluations in flight finish).
    tokens: Vec<TokenId>,
}

impl SequenceHandle {
    pub(crate) fn new(
        lease: Lease,
        model: Arc<LoadedModel>,
        engine: String,
        context_size: usize,
    ) -> Self {
        SequenceHandle {
            lease,
            model,
            engine,
            context_size,
            tokens: Vec::new(),
        }
    }

    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    /// The tokens in the cache, in order.
    pub fn tokens(&self) -> &[TokenId] {
        &self.tokens
    }

    /// Most tokens the sequence can hold.
    pub fn context_size(&self) -> usize {
        self.context_size
    }

    /// Appends `tokens` to the cache at the scheduler's next step and returns the logits of the
    /// last `tail` of them (0: none, 1: the next-token distribution, `tokens.len()`: all).
    pub async fn eval(&mut self, tokens: &[TokenId], tail: usize) -> Result<Logits, ModelError> {
        if tokens.is_empty() || tail > tokens.len() {
            return Err(ModelError::Internal(format!(
                "eval of {} tokens with logits for the last {tail}",
                tokens.len()
            )));
        }
        let start = self.tokens.len();
        if start + tokens.len() > self.context_size {
            return Err(ModelError::ContextOverflow {
                model: self.engine.clone(),
                prompt_tokens: start + tokens.len(),
                context_size: self.context_size,
            });
        }
        let (reply, answer) = oneshot::channel();
        let request = EvalRequest {
            seq: self.lease.seq,
            start,
            tokens: tokens.to_vec(),
            tail,
            reply,
        };
        self.send(Command::Eval(request))?;
        // If this future is dropped before the answer, the scheduler still decodes the tokens;
        // counting them now keeps the handle's view equal to the cache either way.
        self.tokens.extend_from_slice(tokens);
        let result = answer.await.unwrap_or_else(|_| Err(stopped()));
        if result.is_err() {
            // The scheduler rolled the sequence back to `start` on failure.
            self.tokens.truncate(start);
        }
        result
    }

    /// Appends every token of `tokens` but the last and returns each later token's loss,
    /// `-ln p(tokens[i + 1] | everything before it)`, in nats: what perplexity is made of.
    /// Evaluates in chunks of [`LOSS_CHUNK`] tokens, so the logits copied out stay small however
    /// long the text (a 151,936-token vocabulary is 600 kB a row).
    pub async fn token_losses(&mut self, tokens: &[TokenId]) -> Result<Vec<f64>, ModelError> {
        let Some((_, inputs)) = tokens.split_last() else {
            return Ok(Vec::new());
        };
        let mut losses = Vec::with_capacity(inputs.len());
        for (chunk_index, chunk) in inputs.chunks(LOSS_CHUNK).enumerate() {
            let logits = self.eval(chunk, chunk.len()).await?;
            for i in 0..chunk.len() {
                let next = tokens[chunk_index * LOSS_CHUNK + i + 1] as usize;
                losses.push(negative_log_probability(logits.row(i), next));
            }
        }
        Ok(losses)
    }

    /// Drops every cached token from position `len` on, before the next evaluation.
    pub fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        if len > self.tokens.len() {
            return Err(ModelError::Internal(format!(
                "cannot truncate to {len}: only {} tokens are cached",
                self.tokens.len()
            )));
        }
        if len < self.tokens.len() {
            self.send(Command::Truncate {
                seq: self.lease.seq,
                len,
            })?;
            self.tokens.truncate(len);
        }
        Ok(())
    }

    fn send(&self, command: Command) -> Result<(), ModelError> {
        self.lease.commands.send(command).map_err(|_| stopped())
    }
}

/// Tokens evaluated per step by [`SequenceHandle::token_losses`].
const LOSS_CHUNK: usize = 32;

/// `-ln softmax(row)[token]`, computed stably in f64.
fn negative_log_probability(row: &[f32], token: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| f64::from(x - max).exp()).sum();
    f64::from(max) + sum.ln() - f64::from(row[token])
}

fn stopped() -> ModelError {
    ModelError::Internal("the llama.cpp scheduler has stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_is_a_log_softmax() {
        let row = [0.0f32, (3.0f32).ln()];
        assert!((negative_log_probability(&row, 1) - -(0.75f64).ln()).abs() < 1e-6);
    }
}
