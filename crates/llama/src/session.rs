//! [`LlamaSession`]: one sequence with its own llama.cpp context, exposed through
//! [`tandem_core::TokenModel`] for token-level strategies and for the decode benchmark.

use std::num::NonZeroU32;
use std::sync::Arc;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use self_cell::self_cell;
use tandem_core::openai::Message;
use tandem_core::{LogitsFor, ModelError, TokenId, TokenModel};

use crate::model::{backend, LoadedModel};

type Context<'model> = LlamaContext<'model>;

self_cell!(
    /// A context borrows its model; this keeps both in one value.
    struct ContextCell {
        owner: Arc<LoadedModel>,
        #[covariant]
        dependent: Context,
    }
);

/// Settings of a session's context.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    pub context_size: u32,
    /// Largest batch one `eval` call may pass.
    pub batch_size: u32,
    pub threads: i32,
}

pub struct LlamaSession {
    cell: ContextCell,
    batch: LlamaBatch<'static>,
    batch_size: usize,
    context_size: usize,
    position: usize,
    /// For each token of the last evaluated batch, whether its logits were computed.
    logits_kept: Vec<bool>,
}

impl LlamaSession {
    pub fn new(model: Arc<LoadedModel>, options: SessionOptions) -> Result<Self, ModelError> {
        let backend = backend()?;
        let params = context_params(options.context_size, options.batch_size, 1, options.threads);
        let cell = ContextCell::try_new(model, |model| {
            model.model.new_context(backend, params).map_err(|e| {
                ModelError::Internal(format!("cannot create a llama.cpp context: {e}"))
            })
        })?;
        let context_size = cell.borrow_dependent().n_ctx() as usize;
        Ok(LlamaSession {
            cell,
            batch: LlamaBatch::new(options.batch_size as usize, 1),
            batch_size: options.batch_size as usize,
            context_size,
            position: 0,
            logits_kept: Vec::new(),
        })
    }

    pub fn model(&self) -> &Arc<LoadedModel> {
        self.cell.borrow_owner()
    }
}

/// Parameters of a context for `sequences` requests of up to `context_size` tokens each. Each
/// sequence has a KV cache of its own (not llama.cpp's "unified" one): with a shared cache the
/// attention of one request spans cells of the others, so its numerics, and a seeded sample, change
/// with whatever else is running. Both layouts scaled alike on 2 cores (4 clients: 1.7x SmolLM2,
/// 2.3x Qwen2.5-Coder-0.5B over one client).
pub(crate) fn context_params(
    context_size: u32,
    batch_size: u32,
    sequences: u32,
    threads: i32,
) -> LlamaContextParams {
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(context_size * sequences))
        .with_n_batch(batch_size)
        .with_n_ubatch(batch_size)
        .with_n_seq_max(sequences)
        .with_kv_unified(false)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
}

impl TokenModel for LlamaSession {
    fn vocab_size(&self) -> usize {
        self.model().vocab_size()
    }

    fn context_size(&self) -> usize {
        self.context_size
    }

    fn position(&self) -> usize {
        self.position
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<TokenId>, ModelError> {
        Ok(self.model().tokenize(text, add_special))
    }

    fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<TokenId>, ModelError> {
        self.model().chat_prompt(messages)
    }

    fn token_bytes(&self, token: TokenId) -> Vec<u8> {
        self.model().token_bytes(token)
    }

    fn is_end_of_generation(&self, token: TokenId) -> bool {
        self.model().is_end_of_generation(token)
    }

    fn eval(&mut self, tokens: &[TokenId], logits_for: LogitsFor) -> Result<(), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Internal("eval of an empty batch".into()));
        }
        if tokens.len() > self.batch_size {
            return Err(ModelError::Internal(format!(
                "a batch of {} tokens exceeds the session's batch size {}",
                tokens.len(),
                self.batch_size
            )));
        }
        if self.position + tokens.len() > self.context_size {
            return Err(ModelError::ContextOverflow {
                model: self.model().path().display().to_string(),
                prompt_tokens: self.position + tokens.len(),
                context_size: self.context_size,
            });
        }
        self.batch.clear();
        self.logits_kept.clear();
        let last = tokens.len() - 1;
        for (i, &token) in tokens.iter().enumerate() {
            let keep = logits_for == LogitsFor::All || i == last;
            self.batch
                .add(LlamaToken(token), (self.position + i) as i32, &[0], keep)
                .map_err(|e| ModelError::Internal(e.to_string()))?;
            self.logits_kept.push(keep);
        }
        let batch = &mut self.batch;
        self.cell
            .with_dependent_mut(|_, context| context.decode(batch))
            .map_err(|e| ModelError::Internal(format!("llama.cpp decode failed: {e}")))?;
        self.position += tokens.len();
        Ok(())
    }

    fn logits(&self, index: usize) -> Option<&[f32]> {
        if !*self.logits_kept.get(index)? {
            return None;
        }
        Some(self.cell.borrow_dependent().get_logits_ith(index as i32))
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        if len > self.position {
            return Err(ModelError::Internal(format!(
                "cannot truncate to {len}: only {} tokens are cached",
                self.position
            )));
        }
        self.cell
            .with_dependent_mut(|_, context| context.kv_cache_seq_rm(0, Some(len as u32), None))
            .map_err(|e| ModelError::Internal(format!("cache truncation failed: {e}")))?;
        self.position = len;
        // Logits of the last batch may describe dropped positions.
        self.logits_kept.clear();
        Ok(())
    }
}
