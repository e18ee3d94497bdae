//! [`Fusion`]: strategies in which a large and small models of one vocabulary decide each token
//! together, as a [`ChatModel`] over sequence handles of their engines (so concurrent requests
//! share each engine's decode steps, as speculative decoding does).
//!
//! - Contrastive decoding ([`Mode::Contrastive`]): both models read every token; the next token is
//!   drawn from `ln p_L - alpha ln p_S` over the tokens the large model finds plausible
//!   ([`fuse::contrastive`]).
//! - Proxy-tuning ([`Mode::ProxyTune`]): the large model's logits plus the difference between a
//!   tuned and an untuned small model ([`fuse::proxy_tune`]); all three read every token.
//! - Uncertainty hand-off ([`Mode::Handoff`]): the small model generates; where its uncertainty
//!   ([`fuse::Uncertainty`]) says it is unsure, the large model catches up on everything it has not
//!   read in one evaluation and chooses the next `takeover` tokens, then hands back. The large
//!   model reads nothing while the small one is sure.
//!
//! Unlike speculative decoding these change the answer. The request's sampling (temperature,
//! top-p, top-k, min-p, penalties, bias, seed, stop, max_tokens) runs on the fused scores through
//! the engine's own [`Sampler`]; tools and structured outputs are refused by name. Log
//! probabilities, when asked for, are those of the distribution the token was drawn from (the
//! fused one, or the deciding model's).
//!
//! Each response's report gets a strategy entry ([`FusionStats`]: tokens from each model, the
//! large model's share, hand-offs); the counters
//! `tandem_fusion_tokens_total{pipeline,strategy,model}` and
//! `tandem_fusion_handoffs_total{pipeline}` sum the same.

pub mod fuse;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::future::try_join_all;
use futures::StreamExt;
use serde::Serialize;
use tandem_core::openai::{ChatCompletionRequest, FinishReason, Usage};
use tandem_core::sampling::{Sampler, SamplingParams};
use tandem_core::validate::validate;
use tandem_core::{ChatModel, ChatStream, Location, ModelError, Report, Stage};
use tokio::sync::mpsc::unbounded_channel;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::collab::{catch_up, check_vocabulary, ratio, refuse, Answer, Field};
use crate::{LlamaEngine, Logits, SequenceHandle};
pub use fuse::Uncertainty;

/// How the models decide each token.
#[derive(Clone)]
pub enum Mode {
    /// `ln p_L - alpha ln p_S` over the tokens with `p_L >= beta max p_L`.
    Contrastive {
        small: Arc<LlamaEngine>,
        alpha: f32,
        beta: f32,
    },
    /// `logits_L + (logits_tuned - logits_untuned)`.
    ProxyTune {
        tuned: Arc<LlamaEngine>,
        untuned: Arc<LlamaEngine>,
    },
    /// The small model generates and hands `takeover` tokens to the large one where it is unsure.
    Handoff {
        small: Arc<LlamaEngine>,
        uncertainty: Uncertainty,
        threshold: f64,
        takeover: usize,
    },
}

impl Mode {
    /// The strategy's name, as the configuration's `strategy` key spells it.
    pub fn strategy(&self) -> &'static str {
        match self {
            Mode::Contrastive { .. } => "contrastive",
            Mode::ProxyTune { .. } => "proxy_tune",
            Mode::Handoff { .. } => "handoff",
        }
    }

    /// The models beside the large one, in the order their handles are opened.
    fn others(&self) -> Vec<(&'static str, &Arc<LlamaEngine>)> {
        match self {
            Mode::Contrastive { small, .. } | Mode::Handoff { small, .. } => vec![("small", small)],
            Mode::ProxyTune { tuned, untuned } => vec![("tuned", tuned), ("untuned", untuned)],
        }
    }
}

/// Tools and structured outputs need a grammar over the chosen tokens, which these strategies do
/// not apply; everything else the sampler honours.
const REFUSED: [Field; 2] = [Field::Tools, Field::ResponseFormat];

pub struct Fusion {
    name: String,
    large: Arc<LlamaEngine>,
    mode: Mode,
}

impl Fusion {
    /// Fails when a model does not share the large model's vocabulary, or a setting is out of
    /// range.
    pub fn new(
        name: impl Into<String>,
        large: Arc<LlamaEngine>,
        mode: Mode,
    ) -> Result<Self, ModelError> {
        for (role, engine) in mode.others() {
            check_vocabulary(&large, engine, role)?;
        }
        let bad = |what: String| Err(ModelError::Internal(what));
        match &mode {
            Mode::Contrastive { alpha, beta, .. } => {
                if !(alpha.is_finite() && *alpha >= 0.0) {
                    return bad(format!("alpha must be a number of at least 0, got {alpha}"));
                }
                if !(0.0..=1.0).contains(beta) {
                    return bad(format!("beta must be between 0 and 1, got {beta}"));
                }
            }
            Mode::Handoff {
                threshold,
                takeover,
                ..
            } => {
                if !threshold.is_finite() || *threshold < 0.0 {
                    return bad(format!(
                        "threshold must be a number of at least 0, got {threshold}"
                    ));
                }
                if *takeover == 0 {
                    return bad("takeover must be at least 1".into());
                }
            }
            Mode::ProxyTune { .. } => {}
        }
        Ok(Fusion {
            name: name.into(),
            large,
            mode,
        })
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }
}

#[async_trait]
impl ChatModel for Fusion {
    fn name(&self) -> &str {
        &self.name
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let received = Instant::now();
        validate(&request)?;
        refuse(&request, self.mode.strategy(), &REFUSED)?;
        let context_size = self.large.options().context_size as usize;
        let prompt = self.large.model().chat_prompt(&request.messages)?;
        if prompt.len() >= context_size {
            return Err(ModelError::ContextOverflow {
                model: self.name.clone(),
                prompt_tokens: prompt.len(),
                context_size,
            });
        }
        let params = SamplingParams::from_request(&request);
        // The large model's sequence first, then the others in a fixed order, in every request:
        // no two requests can each hold what the other waits for.
        let large = self.large.open_sequence().await?;
        let mut others = Vec::new();
        for (_, engine) in self.mode.others() {
            others.push(Member {
                name: engine.options().name.clone(),
                pricing: engine.options().pricing,
                handle: engine.open_sequence().await?,
            });
        }
        let context_size = others
            .iter()
            .map(|m| m.handle.context_size())
            .fold(large.context_size(), usize::min);
        let (events, receiver) = unbounded_channel();
        let run = Run {
            name: self.name.clone(),
            mode: self.mode.clone(),
            large: Member {
                name: self.large.options().name.clone(),
                pricing: self.large.options().pricing,
                handle: large,
            },
            others,
            sampler: Sampler::new(&params),
            answer: Answer::new(
                Arc::clone(self.large.model()),
                params,
                prompt,
                context_size,
                received,
                events,
            ),
            takeover_left: 0,
            plausible: 0,
            stats: FusionStats::default(),
        };
        tokio::spawn(run.run());
        Ok(UnboundedReceiverStream::new(receiver).boxed())
    }
}

/// What a request's strategy entry reports.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FusionStats {
    /// Answer tokens whose distribution came from the large model (alone or fused), and those
    /// the small model chose alone (hand-off only).
    pub tokens_from_large: u64,
    pub tokens_from_small: u64,
    /// `tokens_from_large` over both: the share of the answer the large model paid for.
    pub large_token_share: f64,
    /// Times the small model handed the answer to the large one.
    pub handoffs: u64,
    /// Evaluations each model ran (the large model's catch-ups read several tokens in one).
    pub large_evaluations: u64,
    pub small_evaluations: u64,
    /// Contrastive decoding: plausible tokens per position, on average.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_plausible: Option<f64>,
    /// Milliseconds from the request to the first token chosen.
    pub first_token_ms: f64,
}

/// One model's sequence in a request.
struct Member {
    name: String,
    pricing: tandem_core::Pricing,
    handle: SequenceHandle,
}

impl Member {
    /// Reads every committed token it has not read and returns the next-token logits.
    async fn next(&mut self, answer: &Answer) -> Result<Logits, ModelError> {
        let feed = catch_up(&mut self.handle, &answer.context)?.to_vec();
        self.handle.eval(&feed, 1).await
    }
}

struct Run {
    name: String,
    mode: Mode,
    large: Member,
    others: Vec<Member>,
    sampler: Sampler,
    answer: Answer,
    /// Hand-off: tokens the large model still chooses before handing back.
    takeover_left: usize,
    /// Contrastive: plausible tokens summed over positions.
    plausible: u64,
    stats: FusionStats,
}

/// Which model's logits decided a token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Large,
    Small,
}

impl Run {
    /// Runs until the answer ends, fails, or the client leaves (then the handles are dropped at
    /// once, mid-step if need be, which frees the sequences).
    async fn run(mut self) {
        let events = self.answer.events.clone();
        tokio::select! {
            _ = events.closed() => {}
            _ = async {
                loop {
                    match self.step().await {
                        Ok(None) => continue,
                        Ok(Some(finish)) => {
                            self.finish(finish);
                            break;
                        }
                        Err(e) => {
                            self.answer.fail(e);
                            break;
                        }
                    }
                }
            } => {}
        }
    }

    /// Chooses one token; `Some` when the answer is complete.
    async fn step(&mut self) -> Result<Option<FinishReason>, ModelError> {
        let (scores, source) = match self.mode.clone() {
            Mode::Contrastive { alpha, beta, .. } => {
                let (large, small) = self.all_next().await?;
                let (scores, plausible) =
                    fuse::contrastive(large.row(0), small[0].row(0), alpha, beta);
                self.plausible += plausible as u64;
                (scores, Source::Large)
            }
            Mode::ProxyTune { .. } => {
                let (large, others) = self.all_next().await?;
                let scores = fuse::proxy_tune(large.row(0), others[0].row(0), others[1].row(0));
                (scores, Source::Large)
            }
            Mode::Handoff {
                uncertainty,
                threshold,
                takeover,
                ..
            } => {
                if self.takeover_left == 0 {
                    let small = self.others[0].next(&self.answer).await?;
                    self.stats.small_evaluations += 1;
                    let row = small.row(0);
                    if !uncertainty.unsure(row, threshold) {
                        (row.to_vec(), Source::Small)
                    } else {
                        self.stats.handoffs += 1;
                        metrics::counter!("tandem_fusion_handoffs_total", "pipeline" => self.name.clone())
                            .increment(1);
                        self.takeover_left = takeover;
                        self.large_next().await?
                    }
                } else {
                    self.large_next().await?
                }
            }
        };
        if self.stats.tokens_from_large + self.stats.tokens_from_small == 0 {
            self.stats.first_token_ms = self.answer.millis(Instant::now());
        }
        let token = self.sampler.sample(&scores)?;
        if self.answer.model.is_end_of_generation(token) {
            return Ok(Some(FinishReason::Stop));
        }
        let source_name = match source {
            Source::Large => {
                self.stats.tokens_from_large += 1;
                "large"
            }
            Source::Small => {
                self.stats.tokens_from_small += 1;
                "small"
            }
        };
        metrics::counter!("tandem_fusion_tokens_total", "pipeline" => self.name.clone(),
            "strategy" => self.mode.strategy(), "model" => source_name)
        .increment(1);
        Ok(self.answer.emit(token, &scores))
    }

    /// Hand-off: the large model's next-token logits, after one catch-up evaluation.
    async fn large_next(&mut self) -> Result<(Vec<f32>, Source), ModelError> {
        self.takeover_left -= 1;
        let large = self.large.next(&self.answer).await?;
        self.stats.large_evaluations += 1;
        Ok((large.row(0).to_vec(), Source::Large))
    }

    /// Every model's next-token logits, evaluated at once (on different engines, or batched
    /// together on one).
    async fn all_next(&mut self) -> Result<(Logits, Vec<Logits>), ModelError> {
        let answer = &self.answer;
        let (large, others) = tokio::join!(
            self.large.next(answer),
            try_join_all(self.others.iter_mut().map(|m| m.next(answer)))
        );
        self.stats.large_evaluations += 1;
        self.stats.small_evaluations += self.others.len() as u64;
        Ok((large?, others?))
    }

    fn finish(&mut self, finish_reason: FinishReason) {
        self.answer.flush();
        let latency_ms = self.answer.millis(Instant::now());
        let usage = self.answer.usage();
        let stats = &mut self.stats;
        let stage = |member: &Member, completion_tokens: u64| {
            let usage = Usage::new(usage.prompt_tokens, completion_tokens as u32);
            Stage {
                model: member.name.clone(),
                location: Location::Local,
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                latency_ms,
                time_to_first_token_ms: None,
                cost_usd: member.pricing.cost(usage),
                cached_prompt_tokens: None,
            }
        };
        let mut large = stage(&self.large, stats.tokens_from_large);
        large.time_to_first_token_ms = self.answer.first_text_at.map(|at| self.answer.millis(at));
        let mut report = Report::single(large);
        report.completion_tokens = usage.completion_tokens;
        report.pipeline = self.name.clone();
        for member in &self.others {
            // Fused strategies evaluate every position on every model; the hand-off's small
            // model decides its own tokens.
            let tokens = match self.mode {
                Mode::Handoff { .. } => stats.tokens_from_small,
                _ => stats.tokens_from_large,
            };
            let stage = stage(member, tokens);
            report.cost_usd += stage.cost_usd;
            report.stages.push(stage);
        }
        stats.large_token_share = ratio(
            stats.tokens_from_large,
            stats.tokens_from_large + stats.tokens_from_small,
        );
        if let Mode::Contrastive { .. } = self.mode {
            stats.mean_plausible = Some(ratio(self.plausible, stats.large_evaluations));
        }
        if let Err(e) = report.push_strategy(&self.name, self.mode.strategy(), &*stats) {
            tracing::error!(error = %e, "cannot report the fusion entry");
        }
        self.answer.done(finish_reason, report);
    }
}
