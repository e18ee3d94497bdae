//! One speculative request: draft, verify the drafts and one more token in a single target step,
//! keep what stands, roll both caches back, and emit text as the plain engine does.
//!
//! Both caches hold the committed tokens (prompt and answer so far) minus the last one, which the
//! next step feeds: the target reads it and the drafts in one evaluation whose logits rows decide
//! every drafted position and the one after. Whatever a cache holds beyond the committed tokens
//! (rejected drafts) is truncated before the next evaluation.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tandem_core::openai::{FinishReason, Usage};
use tandem_core::sampling::{argmax, draw};
use tandem_core::{Location, ModelError, Report, Stage, TokenId};

use super::lookup::{best_continuation, SuffixCache};
use super::pace::{next_draft_length, Costs, Mode, Pace};
use super::translate::Translation;
use super::verify::{self, Proposal};
use super::SpeculativeOptions;
use crate::collab::{catch_up, ratio, Answer};
use crate::{EngineOptions, SequenceHandle};

/// Where one request's drafts come from.
pub(crate) enum Drafter {
    Model {
        handle: SequenceHandle,
        options: EngineOptions,
        /// Present when the draft's vocabulary is not the target's.
        translation: Option<Translation>,
    },
    PromptLookup,
    Suffix {
        cache: Arc<SuffixCache>,
        tenant: String,
        sequences: Vec<Arc<Vec<TokenId>>>,
    },
}

impl Drafter {
    fn name(&self) -> String {
        match self {
            Drafter::Model { options, .. } => options.name.clone(),
            Drafter::PromptLookup => "prompt_lookup".into(),
            Drafter::Suffix { .. } => "suffix".into(),
        }
    }
}

/// What a request's strategy entry reports.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SpeculativeStats {
    /// The draft source: a model's name, `prompt_lookup` or `suffix`.
    pub draft: String,
    /// The draft model has another vocabulary: its drafts were translated through text.
    pub cross_vocabulary: bool,
    /// Tokens proposed by the draft source, and those the target kept.
    pub drafted: u64,
    pub accepted: u64,
    pub acceptance_rate: f64,
    /// Drafted tokens per step that drafted at all.
    pub mean_draft_length: f64,
    /// Target evaluations that verified drafts, and those that decoded one token plainly.
    pub speculative_steps: u64,
    pub plain_steps: u64,
    /// Answer tokens proposed by the draft source, and chosen by the target itself.
    pub tokens_from_draft: u64,
    pub tokens_from_target: u64,
    /// True when the pipeline was decoding plainly at the end because drafting did not pay.
    pub fallback: bool,
    /// Milliseconds from the request to both models having read the prompt; what follows is
    /// decoding.
    pub prompt_ms: f64,
}

pub(crate) struct Driver {
    pub target: SequenceHandle,
    pub target_options: EngineOptions,
    pub drafter: Drafter,
    pub options: Arc<SpeculativeOptions>,
    pub pace: Arc<Pace>,
    pub costs: Arc<Costs>,
    pub rng: ChaCha8Rng,
    pub answer: Answer,
    pub draft_length: usize,
    pub stats: SpeculativeStats,
}

impl Driver {
    /// Runs until the answer ends, fails, or the client leaves (then the handles are dropped at
    /// once, mid-step if need be, which frees both sequences).
    pub async fn run(mut self) {
        let events = self.answer.events.clone();
        tokio::select! {
            _ = events.closed() => {}
            _ = async {
                if let Err(e) = self.read_prompt().await {
                    self.answer.fail(e);
                    return;
                }
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

    /// Both models read the prompt but its last token (which the first step feeds), at once: they
    /// run on different engines.
    async fn read_prompt(&mut self) -> Result<(), ModelError> {
        let context = &self.answer.context;
        let head = &context[..context.len() - 1];
        let target_handle = &mut self.target;
        let target = async {
            match head.is_empty() {
                true => Ok(()),
                false => target_handle.eval(head, 0).await.map(drop),
            }
        };
        match &mut self.drafter {
            Drafter::Model {
                handle,
                translation,
                ..
            } => {
                let own = translation.as_ref().map(|t| t.prompt());
                let draft_head = own.map_or(head, |prompt| &prompt[..prompt.len() - 1]);
                let draft = async {
                    match draft_head.is_empty() {
                        true => Ok(()),
                        false => handle.eval(draft_head, 0).await.map(drop),
                    }
                };
                let (t, d) = tokio::join!(target, draft);
                t?;
                d?;
            }
            _ => target.await?,
        }
        self.stats.prompt_ms = self.answer.millis(Instant::now());
        Ok(())
    }

    /// One target evaluation; `Some` when the answer is complete.
    async fn step(&mut self) -> Result<Option<FinishReason>, ModelError> {
        let started = Instant::now();
        let remaining = self.answer.remaining();
        let room = self.target.context_size() - self.answer.context.len();
        let most = self
            .costs
            .draft_length(self.draft_length, self.pace.acceptance())
            .min(remaining - 1)
            .min(room);
        let mode = if most == 0 {
            Mode::Plain
        } else {
            self.pace.next_mode()
        };
        let (drafts, proposals, draft_ms) = match mode {
            Mode::Speculate => self.draft(most).await?,
            Mode::Plain => (Vec::new(), Vec::new(), None),
        };
        let feed = {
            let missing = catch_up(&mut self.target, &self.answer.context)?;
            let mut feed = missing.to_vec();
            feed.extend_from_slice(&drafts);
            feed
        };
        let caught_up = feed.len() == drafts.len() + 1;
        let verify_started = Instant::now();
        let rows = self.target.eval(&feed, drafts.len() + 1).await?;
        let verify_ms = millis_since(verify_started);
        let verdict = if self.answer.params.is_greedy() {
            verify::greedy(&drafts, |i| rows.row(i))
        } else {
            let params = &self.answer.params;
            verify::sampled(
                &drafts,
                &proposals,
                |i| params.probabilities(rows.row(i)),
                &mut self.rng,
            )
        };
        let emitted: Vec<TokenId> = drafts[..verdict.accepted]
            .iter()
            .copied()
            .chain([verdict.next])
            .collect();
        // Steps that read a prompt or caught up after plain decoding are not typical of either
        // mode's cost.
        if caught_up {
            self.pace.record(mode, millis_since(started), emitted.len());
            self.costs.record(feed.len(), verify_ms, draft_ms);
            self.pace.record_acceptance(drafts.len(), verdict.accepted);
            if !drafts.is_empty() && self.costs.ceiling().is_some_and(|c| c < 1.0) {
                self.pace.cannot_pay();
            }
        }
        self.count(mode, drafts.len(), verdict.accepted);
        self.draft_length = next_draft_length(
            self.draft_length,
            drafts.len(),
            verdict.accepted,
            self.options.max_draft,
        );
        for (i, &token) in emitted.iter().enumerate() {
            if let Some(finish) = self.answer.emit(token, rows.row(i)) {
                return Ok(Some(finish));
            }
        }
        Ok(None)
    }

    /// Up to `most` drafted tokens, each with how it was proposed, and a draft model's mean
    /// milliseconds per one-token step (its catching up on the answer left out: that depends on
    /// how long the pipeline decoded plainly, not on what a draft step costs).
    async fn draft(
        &mut self,
        most: usize,
    ) -> Result<(Vec<TokenId>, Vec<Proposal>, Option<f64>), ModelError> {
        let mut drafts = Vec::new();
        let mut proposals = Vec::new();
        let mut step_ms = Vec::new();
        match &mut self.drafter {
            Drafter::Model {
                handle,
                translation,
                ..
            } => {
                let context = match translation {
                    None => Cow::Borrowed(&self.answer.context),
                    Some(t) => {
                        match t.draft_context(&self.answer.context[self.answer.prompt_len..]) {
                            Some(context) => Cow::Owned(context),
                            None => return Ok((drafts, proposals, None)),
                        }
                    }
                };
                let mut feed = catch_up(handle, &context)?.to_vec();
                // Translated drafts lose their last token, and are proposals without a
                // distribution: the draft model drafts greedily then.
                let limit = most + usize::from(translation.is_some());
                loop {
                    let started = Instant::now();
                    let rows = handle.eval(&feed, 1).await?;
                    if feed.len() == 1 {
                        step_ms.push(millis_since(started));
                    }
                    let logits = rows.row(0);
                    let params = &self.answer.params;
                    let (token, top, proposal) = if params.is_greedy() || translation.is_some() {
                        let token = argmax(logits);
                        (token, top_probability(logits, token), Proposal::Certain)
                    } else {
                        let q = params.probabilities(logits);
                        let token = draw(&q, &mut self.rng).ok_or_else(|| {
                            ModelError::Internal("the draft's distribution is empty".into())
                        })?;
                        let top = q.iter().copied().fold(0.0, f32::max);
                        (token, top, Proposal::Sampled(q))
                    };
                    if top < self.options.p_min
                        || translation.as_ref().is_some_and(|t| !t.is_text(token))
                    {
                        break;
                    }
                    drafts.push(token);
                    proposals.push(proposal);
                    if drafts.len() == limit {
                        break;
                    }
                    feed = vec![token];
                }
                if let Some(t) = translation {
                    drafts = t.to_target(&drafts, most);
                    proposals = vec![Proposal::Certain; drafts.len()];
                }
            }
            Drafter::PromptLookup => {
                drafts = best_continuation(&self.answer.context, &[], self.options.min_match, most)
                    .unwrap_or_default();
                proposals = vec![Proposal::Certain; drafts.len()];
            }
            Drafter::Suffix { sequences, .. } => {
                drafts = best_continuation(
                    &self.answer.context,
                    sequences,
                    self.options.min_match,
                    most,
                )
                .unwrap_or_default();
                proposals = vec![Proposal::Certain; drafts.len()];
            }
        }
        let draft_ms =
            (!step_ms.is_empty()).then(|| step_ms.iter().sum::<f64>() / step_ms.len() as f64);
        Ok((drafts, proposals, draft_ms))
    }

    fn count(&mut self, mode: Mode, drafted: usize, accepted: usize) {
        let pipeline = self.options.name.clone();
        match (mode, drafted) {
            (Mode::Speculate, 1..) => self.stats.speculative_steps += 1,
            _ => self.stats.plain_steps += 1,
        }
        self.stats.drafted += drafted as u64;
        self.stats.accepted += accepted as u64;
        let kind = if drafted > 0 { "speculative" } else { "plain" };
        metrics::counter!("tandem_speculative_steps_total", "pipeline" => pipeline.clone(), "mode" => kind)
            .increment(1);
        metrics::counter!("tandem_speculative_drafted_total", "pipeline" => pipeline.clone())
            .increment(drafted as u64);
        metrics::counter!("tandem_speculative_accepted_total", "pipeline" => pipeline)
            .increment(accepted as u64);
    }

    fn finish(&mut self, finish_reason: FinishReason) {
        self.answer.flush();
        let latency_ms = self.answer.millis(Instant::now());
        let usage = self.answer.usage();
        let target = Stage {
            model: self.target_options.name.clone(),
            location: Location::Local,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            latency_ms,
            time_to_first_token_ms: self.answer.first_text_at.map(|at| self.answer.millis(at)),
            cost_usd: self.target_options.pricing.cost(usage),
            cached_prompt_tokens: None,
        };
        let mut report = Report::single(target);
        report.pipeline = self.options.name.clone();
        if let Drafter::Model {
            options,
            translation,
            ..
        } = &self.drafter
        {
            let prompt_tokens = translation
                .as_ref()
                .map_or(usage.prompt_tokens, |t| t.prompt().len() as u32);
            let usage = Usage::new(prompt_tokens, self.stats.drafted as u32);
            let cost = options.pricing.cost(usage);
            report.cost_usd += cost;
            report.stages.push(Stage {
                model: options.name.clone(),
                location: Location::Local,
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                latency_ms,
                time_to_first_token_ms: None,
                cost_usd: cost,
                cached_prompt_tokens: None,
            });
        }
        let stats = &mut self.stats;
        stats.draft = self.drafter.name();
        stats.cross_vocabulary = matches!(
            &self.drafter,
            Drafter::Model {
                translation: Some(_),
                ..
            }
        );
        let generated = u64::from(self.answer.generated);
        stats.tokens_from_draft = stats.accepted.min(generated);
        stats.tokens_from_target = generated - stats.tokens_from_draft;
        stats.acceptance_rate = ratio(stats.accepted, stats.drafted);
        stats.mean_draft_length = ratio(stats.drafted, stats.speculative_steps);
        stats.fallback = self.pace.falling_back();
        if let Err(e) = report.push_strategy(&self.options.name, "speculative", &*stats) {
            tracing::error!(error = %e, "cannot report the speculative entry");
        }
        if let Drafter::Suffix { cache, tenant, .. } = &self.drafter {
            cache.insert(tenant, self.answer.context.clone());
        }
        self.answer.done(finish_reason, report);
    }
}

fn millis_since(at: Instant) -> f64 {
    at.elapsed().as_secs_f64() * 1000.0
}

/// The probability of `token` under the softmax of `logits` (temperature 1).
fn top_probability(logits: &[f32], token: TokenId) -> f32 {
    let best = logits[token as usize];
    let sum: f32 = logits.iter().map(|&l| (l - best).exp()).sum();
    1.0 / sum
}
