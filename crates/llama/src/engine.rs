//! [`LlamaEngine`]: a local model served through [`ChatModel`] with continuous batching.
//!
//! One scheduler thread owns one llama.cpp context holding `parallel` sequences. Each step it puts
//! one token of every generating request and a chunk of every new prompt into a single batch, runs
//! one decode, and samples each request's next token from its own row of logits. Requests join and
//! leave between steps, so concurrent requests share the machine instead of queueing behind a lock,
//! and a request whose client went away is dropped at the next step, whether it was waiting for a
//! sequence, reading its prompt or generating.
//!
//! Requests beyond the `parallel` sequences wait in a queue of at most `max_queue`; past that,
//! [`ChatModel::stream`] fails at once with [`ModelError::Overloaded`]. [`LlamaEngine::load`] and
//! the gauges `tandem_engine_active_sequences{model}` and `tandem_engine_waiting_requests{model}`
//! show the occupancy; `tandem_engine_rejected_total{model,reason="queue_full"}` counts refusals.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use tandem_core::constraint::Constraint;
use tandem_core::openai::{ChatCompletionRequest, FinishReason, TokenLogprob, TopLogprob, Usage};
use tandem_core::sampling::{log_sum_exp, top_logprobs, Sampler, SamplingParams};
use tandem_core::text::TextAssembler;
use tandem_core::validate::validate;
use tandem_core::{
    ChatEvent, ChatModel, ChatStream, Completion, Location, ModelError, Pricing, Report, Stage,
    TokenId,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::model::{backend, LoadedModel};
use crate::output::Prepared;
use crate::session::{context_params, LlamaSession, SessionOptions};

/// How a local model is served.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The model's name in the configuration, reported in responses.
    pub name: String,
    /// Context length of each request: prompt plus generated tokens.
    pub context_size: u32,
    /// Requests decoded together; more wait in a queue.
    pub parallel: u32,
    /// Requests that may wait for a sequence; more are refused with [`ModelError::Overloaded`].
    pub max_queue: usize,
    /// Most tokens per decode step (prompt chunks included).
    pub batch_size: u32,
    pub threads: i32,
    pub pricing: Pricing,
}

impl EngineOptions {
    pub fn new(name: impl Into<String>) -> Self {
        EngineOptions {
            name: name.into(),
            context_size: 4096,
            parallel: 4,
            max_queue: 64,
            batch_size: 512,
            threads: thread::available_parallelism().map_or(2, |n| n.get() as i32),
            pricing: Pricing::default(),
        }
    }
}

pub struct LlamaEngine {
    options: EngineOptions,
    model: Arc<LoadedModel>,
    jobs: mpsc::Sender<Job>,
    occupancy: Arc<Occupancy>,
}

/// How busy an engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLoad {
    /// Requests holding a sequence (reading their prompt or generating).
    pub active: usize,
    /// Requests accepted and waiting for a sequence.
    pub waiting: usize,
}

/// Counts shared by [`LlamaEngine::stream`] and the scheduler. `admitted` (requests accepted and not
/// yet finished or dropped) decides admission: `stream` adds one and undoes it if that passes
/// `parallel + max_queue`, so concurrent callers can never admit more than the bound. `active` is
/// written by the scheduler alone; `waiting` is the difference, read without a lock, so a reader
/// may see a request in neither place for an instant but never the bound exceeded.
struct Occupancy {
    admitted: AtomicUsize,
    active: AtomicUsize,
    model: String,
}

impl Occupancy {
    fn load(&self) -> EngineLoad {
        let active = self.active.load(Ordering::SeqCst);
        let admitted = self.admitted.load(Ordering::SeqCst);
        EngineLoad {
            active,
            waiting: admitted.saturating_sub(active),
        }
    }

    /// Accepts one more request unless `limit` are already in.
    fn admit(&self, limit: usize) -> bool {
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= limit {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        self.publish();
        true
    }

    /// A request left: finished, failed, or dropped because its client went away.
    fn release(&self) {
        self.admitted.fetch_sub(1, Ordering::SeqCst);
    }

    fn set_active(&self, active: usize) {
        self.active.store(active, Ordering::SeqCst);
    }

    fn publish(&self) {
        let load = self.load();
        let model = self.model.clone();
        metrics::gauge!("tandem_engine_active_sequences", "model" => model.clone())
            .set(load.active as f64);
        metrics::gauge!("tandem_engine_waiting_requests", "model" => model)
            .set(load.waiting as f64);
    }
}

struct Job {
    prompt: Vec<TokenId>,
    params: SamplingParams,
    /// What the sampler may draw, beyond the logits (a grammar for structured output).
    constraint: Option<Box<dyn Constraint>>,
    events: UnboundedSender<Result<ChatEvent, ModelError>>,
    received: Instant,
}

impl LlamaEngine {
    /// Starts the scheduler thread; fails if llama.cpp cannot create the context.
    pub fn start(model: Arc<LoadedModel>, options: EngineOptions) -> Result<Self, ModelError> {
        if options.parallel == 0
            || options.batch_size == 0
            || options.context_size == 0
            || options.max_queue == 0
        {
            return Err(ModelError::Internal(
                "parallel, max_queue, batch_size and context_size must be at least 1".into(),
            ));
        }
        let (jobs, queue) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let occupancy = Arc::new(Occupancy {
            admitted: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            model: options.name.clone(),
        });
        let scheduler = Scheduler {
            model: Arc::clone(&model),
            options: options.clone(),
            occupancy: Arc::clone(&occupancy),
        };
        thread::Builder::new()
            .name(format!("llama-{}", options.name))
            .spawn(move || scheduler.run(queue, ready_tx))
            .map_err(|e| ModelError::Internal(format!("cannot start the scheduler: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| ModelError::Internal("the scheduler died at start".into()))??;
        occupancy.publish();
        Ok(LlamaEngine {
            options,
            model,
            jobs,
            occupancy,
        })
    }

    /// Requests holding a sequence and requests waiting for one, now.
    pub fn load(&self) -> EngineLoad {
        self.occupancy.load()
    }

    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// A token-level session over the same weights, with a context of its own.
    pub fn session(&self) -> Result<LlamaSession, ModelError> {
        LlamaSession::new(
            Arc::clone(&self.model),
            SessionOptions {
                context_size: self.options.context_size,
                batch_size: self.options.batch_size,
                threads: self.options.threads,
            },
        )
    }
}

#[async_trait]
impl ChatModel for LlamaEngine {
    fn name(&self) -> &str {
        &self.options.name
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let received = Instant::now();
        validate(&request)?;
        let mut output = Prepared::new(&self.model, &request)?;
        let prompt = std::mem::take(&mut output.prompt);
        if prompt.len() >= self.options.context_size as usize {
            return Err(ModelError::ContextOverflow {
                model: self.options.name.clone(),
                prompt_tokens: prompt.len(),
                context_size: self.options.context_size as usize,
            });
        }
        let limit = self.options.parallel as usize + self.options.max_queue;
        if !self.occupancy.admit(limit) {
            metrics::counter!(
                "tandem_engine_rejected_total",
                "model" => self.options.name.clone(),
                "reason" => "queue_full"
            )
            .increment(1);
            return Err(ModelError::Overloaded(self.options.name.clone()));
        }
        let (events, receiver) = unbounded_channel();
        let job = Job {
            prompt,
            params: SamplingParams::from_request(&request),
            constraint: output.constraint.take(),
            events,
            received,
        };
        if self.jobs.send(job).is_err() {
            self.occupancy.release();
            return Err(ModelError::Internal(
                "the llama.cpp scheduler has stopped".into(),
            ));
        }
        Ok(output.read(UnboundedReceiverStream::new(receiver).boxed()))
    }
}

/// A request occupying one sequence of the context.
struct Sequence {
    job: Job,
    /// Prompt tokens already in the batch or cache.
    prompt_fed: usize,
    /// Position the next token takes in this sequence.
    position: usize,
    /// The last sampled token, fed at the next step.
    next_token: TokenId,
    generated: u32,
    sampler: Sampler,
    text: TextAssembler,
    first_text_at: Option<Instant>,
}

impl Sequence {
    fn new(mut job: Job) -> Self {
        Sequence {
            sampler: Sampler::new(&job.params).with_constraint(job.constraint.take()),
            text: TextAssembler::new(job.params.stop.clone()),
            job,
            prompt_fed: 0,
            position: 0,
            next_token: 0,
            generated: 0,
            first_text_at: None,
        }
    }

    fn prompt_done(&self) -> bool {
        self.prompt_fed == self.job.prompt.len()
    }

    fn send(&mut self, text: String, logprobs: Vec<TokenLogprob>) {
        if text.is_empty() && logprobs.is_empty() {
            return;
        }
        if self.first_text_at.is_none() && !text.is_empty() {
            self.first_text_at = Some(Instant::now());
        }
        // A closed receiver means the client left; the scheduler frees the sequence next step.
        let _ = self
            .job
            .events
            .send(Ok(ChatEvent::Delta { text, logprobs }));
    }

    /// Samples the next token from `logits`; returns true when the request is finished.
    fn step(&mut self, model: &LoadedModel, logits: &[f32], options: &EngineOptions) -> bool {
        let token = match self.sampler.sample(logits) {
            Ok(token) => token,
            Err(e) => {
                let _ = self.job.events.send(Err(e));
                return true;
            }
        };
        if model.is_end_of_generation(token) {
            self.finish(FinishReason::Stop, options);
            return true;
        }
        self.generated += 1;
        let bytes = model.token_bytes(token);
        let logprobs = if self.job.params.logprobs {
            vec![token_logprob(
                model,
                logits,
                token,
                &bytes,
                self.job.params.top_logprobs,
            )]
        } else {
            Vec::new()
        };
        let piece = self.text.push(&bytes);
        self.send(piece.text, logprobs);
        if piece.stopped {
            self.finish(FinishReason::Stop, options);
            return true;
        }
        let out_of_tokens = self
            .job
            .params
            .max_tokens
            .is_some_and(|max| self.generated >= max);
        // The sampled token would take `position`, past the end of the sequence's context.
        let out_of_context = self.position >= options.context_size as usize;
        if out_of_tokens || out_of_context {
            self.finish(FinishReason::Length, options);
            return true;
        }
        self.next_token = token;
        false
    }

    fn finish(&mut self, finish_reason: FinishReason, options: &EngineOptions) {
        let rest = self.text.finish();
        self.send(rest, Vec::new());
        let usage = Usage::new(self.job.prompt.len() as u32, self.generated);
        let millis = |at: Instant| at.duration_since(self.job.received).as_secs_f64() * 1000.0;
        let stage = Stage {
            model: options.name.clone(),
            location: Location::Local,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            latency_ms: millis(Instant::now()),
            time_to_first_token_ms: self.first_text_at.map(millis),
            cost_usd: options.pricing.cost(usage),
        };
        let _ = self.job.events.send(Ok(ChatEvent::Done(Completion {
            finish_reason,
            usage,
            report: Report::single(stage),
        })));
    }
}

fn token_logprob(
    model: &LoadedModel,
    logits: &[f32],
    token: TokenId,
    bytes: &[u8],
    top: usize,
) -> TokenLogprob {
    let lse = log_sum_exp(logits);
    let top_logprobs = top_logprobs(logits, lse, top)
        .into_iter()
        .map(|(t, logprob)| {
            let bytes = model.token_bytes(t);
            TopLogprob {
                token: String::from_utf8_lossy(&bytes).into_owned(),
                logprob,
                bytes: Some(bytes),
            }
        })
        .collect();
    TokenLogprob {
        token: String::from_utf8_lossy(bytes).into_owned(),
        logprob: logits[token as usize] - lse,
        bytes: Some(bytes.to_vec()),
        top_logprobs,
    }
}

/// The scheduler thread's state that outlives one step.
struct Scheduler {
    model: Arc<LoadedModel>,
    options: EngineOptions,
    occupancy: Arc<Occupancy>,
}

impl Scheduler {
    fn run(self, queue: Receiver<Job>, ready: SyncSender<Result<(), ModelError>>) {
        let Scheduler {
            model,
            options,
            occupancy,
        } = self;
        let params = context_params(
            options.context_size,
            options.batch_size,
            options.parallel,
            options.threads,
        );
        let context = backend().and_then(|backend| {
            model.model.new_context(backend, params).map_err(|e| {
                ModelError::Internal(format!("cannot create a llama.cpp context: {e}"))
            })
        });
        let mut context = match context {
            Ok(context) => {
                let _ = ready.send(Ok(()));
                context
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let batch_size = options.batch_size as usize;
        let mut batch = LlamaBatch::new(batch_size, 1);
        let mut slots: Vec<Option<Sequence>> = (0..options.parallel).map(|_| None).collect();
        let mut waiting: VecDeque<Job> = VecDeque::new();
        // (sequence, row of the batch whose logits it samples from)
        let mut rows: Vec<(usize, i32)> = Vec::with_capacity(slots.len());
        let free = |context: &mut llama_cpp_2::context::LlamaContext,
                    slots: &mut [Option<Sequence>],
                    seq: usize| {
            slots[seq] = None;
            let _ = context.clear_kv_cache_seq(Some(seq as u32), None, None);
            occupancy.release();
        };

        loop {
            occupancy.set_active(slots.iter().flatten().count());
            occupancy.publish();
            if waiting.is_empty() && slots.iter().all(Option::is_none) {
                match queue.recv() {
                    Ok(job) => waiting.push_back(job),
                    Err(_) => return,
                }
            }
            // A disconnected queue (the engine was dropped) still lets running requests finish.
            while let Ok(job) = queue.try_recv() {
                waiting.push_back(job);
            }
            // Clients that left while waiting leave the queue now, not when a sequence frees.
            waiting.retain(|job| {
                let open = !job.events.is_closed();
                if !open {
                    occupancy.release();
                }
                open
            });
            for seq in 0..slots.len() {
                if slots[seq]
                    .as_ref()
                    .is_some_and(|s| s.job.events.is_closed())
                {
                    tracing::debug!(seq, "client left; dropping its sequence");
                    free(&mut context, &mut slots, seq);
                }
                if slots[seq].is_none() {
                    slots[seq] = waiting.pop_front().map(Sequence::new);
                }
            }
            occupancy.set_active(slots.iter().flatten().count());
            occupancy.publish();

            batch.clear();
            rows.clear();
            let mut used = 0usize;
            let add = |batch: &mut LlamaBatch, token: TokenId, pos: usize, seq: usize, logits| {
                batch
                    .add(LlamaToken(token), pos as i32, &[seq as i32], logits)
                    .map_err(|e| ModelError::Internal(e.to_string()))
            };
            let mut failure = None;
            // Generating sequences first: one token each keeps every stream moving.
            for (seq, slot) in slots.iter_mut().enumerate() {
                let Some(s) = slot.as_mut().filter(|s| s.prompt_done()) else {
                    continue;
                };
                if used == batch_size {
                    break;
                }
                if let Err(e) = add(&mut batch, s.next_token, s.position, seq, true) {
                    failure = Some(e);
                }
                rows.push((seq, used as i32));
                s.position += 1;
                used += 1;
            }
            // Then prompts, in chunks that fill the rest of the batch.
            for (seq, slot) in slots.iter_mut().enumerate() {
                let Some(s) = slot.as_mut().filter(|s| !s.prompt_done()) else {
                    continue;
                };
                let take = (batch_size - used).min(s.job.prompt.len() - s.prompt_fed);
                for k in 0..take {
                    let index = s.prompt_fed + k;
                    let last = index + 1 == s.job.prompt.len();
                    if let Err(e) = add(&mut batch, s.job.prompt[index], index, seq, last) {
                        failure = Some(e);
                    }
                    if last {
                        rows.push((seq, (used + k) as i32));
                    }
                }
                s.prompt_fed += take;
                s.position += take;
                used += take;
            }
            if used == 0 {
                continue;
            }
            let result = match failure {
                Some(e) => Err(e),
                None => context
                    .decode(&mut batch)
                    .map_err(|e| ModelError::Internal(format!("llama.cpp decode failed: {e}"))),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "decode step failed; failing its requests");
                for seq in 0..slots.len() {
                    if let Some(s) = &slots[seq] {
                        let _ = s.job.events.send(Err(e.clone()));
                        free(&mut context, &mut slots, seq);
                    }
                }
                continue;
            }
            for &(seq, row) in &rows {
                let Some(s) = slots[seq].as_mut() else {
                    continue;
                };
                if s.step(&model, context.get_logits_ith(row), &options) {
                    free(&mut context, &mut slots, seq);
                }
            }
        }
    }
}
