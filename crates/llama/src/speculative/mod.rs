//! [`Speculative`]: speculative decoding as a [`ChatModel`] over sequence handles of the target's
//! engine (and of a draft model's engine), so concurrent speculative requests share each engine's
//! decode steps.
//!
//! Each request holds one target sequence and, with a draft model, one draft sequence. A draft
//! model with another vocabulary drafts through text ([`translate`]). A step
//! drafts up to `k` tokens (a draft model stops early when its top probability falls under
//! `p_min`; prompt lookup and the suffix cache propose what followed the context's tail
//! elsewhere), verifies them and one more token in a single target evaluation
//! ([`verify`]), keeps what stands and rolls both caches back. Greedy requests emit exactly the
//! target's argmax at every position; sampled ones follow the target's distribution under the
//! request's own settings (rejection sampling). The draft length follows the acceptance history
//! and the pipeline falls back to plain decoding when drafting does not pay ([`pace`]).
//!
//! Each response's report gets a `speculative` strategy entry ([`SpeculativeStats`]); the
//! counters `tandem_speculative_{steps,drafted,accepted}_total{pipeline}` sum the same.

mod driver;
pub mod lookup;
pub mod pace;
mod translate;
pub mod verify;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tandem_core::openai::ChatCompletionRequest;
use tandem_core::sampling::SamplingParams;
use tandem_core::validate::validate;
use tandem_core::{ChatModel, ChatStream, ModelError};
use tokio::sync::mpsc::unbounded_channel;
use tokio_stream::wrappers::UnboundedReceiverStream;

pub use driver::SpeculativeStats;
use driver::{Drafter, Driver};
pub use lookup::SuffixCache;
use pace::{Costs, Pace};
use translate::Translation;

use crate::collab::{refuse, same_vocabulary, Answer, Field};
use crate::LlamaEngine;

/// Where drafts come from.
#[derive(Clone)]
pub enum DraftSource {
    /// A smaller model; with another vocabulary than the target's, its drafts are translated
    /// through text.
    Model(Arc<LlamaEngine>),
    /// Continuations of the context's tail found earlier in the prompt and answer.
    PromptLookup,
    /// As prompt lookup, and also in earlier requests of the same tenant.
    Suffix(Arc<SuffixCache>),
}

/// Settings of a speculative pipeline.
#[derive(Debug, Clone)]
pub struct SpeculativeOptions {
    /// The pipeline's name, reported in responses.
    pub name: String,
    /// Most tokens drafted per step.
    pub max_draft: usize,
    /// A draft model stops drafting when its most probable token is less likely than this.
    pub p_min: f32,
    /// Shortest context tail a lookup may continue.
    pub min_match: usize,
    /// Fall back to plain decoding while drafting does not pay.
    pub fallback: bool,
}

impl SpeculativeOptions {
    pub fn new(name: impl Into<String>) -> Self {
        SpeculativeOptions {
            name: name.into(),
            max_draft: 8,
            p_min: 0.75,
            min_match: 2,
            fallback: true,
        }
    }
}

pub struct Speculative {
    target: Arc<LlamaEngine>,
    draft: DraftSource,
    options: Arc<SpeculativeOptions>,
    /// With a draft model, shared by the requests; lookups get one per request ([`pace`]).
    pace: Arc<Pace>,
    costs: Arc<Costs>,
    /// The draft model's vocabulary is not the target's.
    translate: bool,
}

impl Speculative {
    /// A draft model of another vocabulary than the target's drafts through text.
    pub fn new(
        target: Arc<LlamaEngine>,
        draft: DraftSource,
        options: SpeculativeOptions,
    ) -> Result<Self, ModelError> {
        if options.max_draft == 0 {
            return Err(ModelError::Internal(
                "k (max_draft) must be at least 1".into(),
            ));
        }
        let translate = match &draft {
            DraftSource::Model(engine) => !same_vocabulary(&target, engine),
            _ => false,
        };
        Ok(Speculative {
            target,
            draft,
            translate,
            pace: Arc::new(Pace::new(options.fallback)),
            costs: Arc::new(Costs::default()),
            options: Arc::new(options),
        })
    }

    pub fn options(&self) -> &SpeculativeOptions {
        &self.options
    }

    /// Whether drafts are translated from another vocabulary.
    pub fn translates(&self) -> bool {
        self.translate
    }
}

#[async_trait]
impl ChatModel for Speculative {
    fn name(&self) -> &str {
        &self.options.name
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let received = Instant::now();
        validate(&request)?;
        refuse(&request, "speculative", &REFUSED)?;
        let target_options = self.target.options().clone();
        let prompt = self.target.model().chat_prompt(&request.messages)?;
        if prompt.len() >= target_options.context_size as usize {
            return Err(ModelError::ContextOverflow {
                model: self.options.name.clone(),
                prompt_tokens: prompt.len(),
                context_size: target_options.context_size as usize,
            });
        }
        let params = SamplingParams::from_request(&request);
        // Target first, then draft, in every request: no two requests can each hold what the
        // other waits for.
        let target = self.target.open_sequence().await?;
        let drafter = match &self.draft {
            DraftSource::Model(engine) => Drafter::Model {
                translation: match self.translate {
                    true => Some(Translation::new(
                        Arc::clone(engine.model()),
                        Arc::clone(self.target.model()),
                        engine.model().chat_prompt(&request.messages)?,
                    )),
                    false => None,
                },
                handle: engine.open_sequence().await?,
                options: engine.options().clone(),
            },
            DraftSource::PromptLookup => Drafter::PromptLookup,
            DraftSource::Suffix(cache) => {
                let tenant = request.tenant.clone().unwrap_or_default();
                Drafter::Suffix {
                    sequences: cache.sequences(&tenant),
                    cache: Arc::clone(cache),
                    tenant,
                }
            }
        };
        let seed = params.seed.unwrap_or_else(|| rand::rng().random());
        let (events, receiver) = unbounded_channel();
        let context_size = target.context_size();
        let driver = Driver {
            answer: Answer::new(
                Arc::clone(self.target.model()),
                params,
                prompt,
                context_size,
                received,
                events,
            ),
            target,
            target_options,
            drafter,
            pace: match &self.draft {
                DraftSource::Model(_) => Arc::clone(&self.pace),
                DraftSource::PromptLookup | DraftSource::Suffix(_) => {
                    Arc::new(Pace::new(self.options.fallback))
                }
            },
            costs: Arc::clone(&self.costs),
            rng: ChaCha8Rng::seed_from_u64(seed),
            draft_length: self.options.max_draft,
            options: Arc::clone(&self.options),
            stats: SpeculativeStats::default(),
        };
        tokio::spawn(driver.run());
        Ok(UnboundedReceiverStream::new(receiver).boxed())
    }
}

/// Fields a speculative pipeline cannot honour yet: its verification compares the target's and the
/// draft's plain distributions, so penalties, biases, `min_p` and grammar constraints (tools,
/// structured outputs) would be silently dropped. Refused by name instead.
const REFUSED: [Field; 6] = [
    Field::PresencePenalty,
    Field::FrequencyPenalty,
    Field::LogitBias,
    Field::MinP,
    Field::Tools,
    Field::ResponseFormat,
];
