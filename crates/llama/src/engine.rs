//! [`LlamaEngine`]: a local model served through [`ChatModel`] with continuous batching.
//!
//! One scheduler thread owns one llama.cpp context holding `parallel` sequences. Each step it puts
//! one token of every generating request and a chunk of every new prompt into a single batch, runs
//! one decode, and samples each request's next token from its own row of logits. Requests join and
//! leave between steps, so concurrent requests share the machine instead of queueing behind a lock,
//! and a request whose client went away is dropped at the next step, whether it was waiting for a
//! sequence, reading its prompt or generating.
//!
//! [`LlamaEngine::open_sequence`] hands out a sequence of the same context as a
//! [`SequenceHandle`] for token-level strategies: the scheduler puts each handle's pending tokens
//! into the same batch as the chat jobs' and answers with the logits rows it asked for.
//!
//! A prompt cache across requests, as llama-server's `cache_prompt`: a chat request's sequence
//! keeps its KV cache when the request ends, and the scheduler remembers the tokens it holds and
//! the tenant whose they are. A new request is seated in the free sequence whose tokens share the
//! longest prefix with its prompt (none, or a tie: an empty one, else the least recently freed),
//! the sequence's cache past that prefix is dropped and only the rest of the prompt is evaluated
//! (at least its last token, whose logits give the first sampled one). A sequence is never reused across tenants
//! ([`ChatCompletionRequest::tenant`]): a request of another tenant starts from a cleared one, as
//! the time to its first token would otherwise tell whether someone else sent the same prefix. The
//! cache costs no memory beyond the KV cells the context already allocates for its `parallel`
//! sequences, plus one token list per sequence; [`SequenceHandle`]s get a cleared sequence and
//! leave nothing to reuse. `tandem_prompt_cache_tokens_total{model}` counts the prompt tokens
//! reused, each response reports its own (`cached_prompt_tokens` in its stage,
//! `usage.prompt_tokens_details.cached_tokens`). [`EngineOptions::prompt_cache`] turns it on (the
//! configuration does by default).
//!
//! Requests beyond the `parallel` sequences wait in a queue of at most `max_queue`; past that,
//! [`ChatModel::stream`] and [`LlamaEngine::open_sequence`] fail at once with [`ModelError::Overloaded`]. [`LlamaEngine::load`] and
//! the gauges `tandem_engine_active_sequences{model}` and `tandem_engine_waiting_requests{model}`
//! show the occupancy; `tandem_engine_rejected_total{model,reason="queue_full"}` counts refusals.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use tandem_core::completions::{validate_completion, CompletionRequest};
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
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::compute::{self, Exclusive};
use crate::model::{backend, LoadedModel};
use crate::output::Prepared;
use crate::sequence::{Command, EvalRequest, Lease, Logits, OpenRequest, SequenceHandle};

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
    /// Reuse the KV cache of an earlier request's longest common token prefix (see the module
    /// doc). Off in [`EngineOptions::new`], so that a library caller (and a test) gets the same
    /// logits for the same prompt every time; `[models.X] prompt_cache` turns it on by default.
    pub prompt_cache: bool,
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
            prompt_cache: false,
        }
    }
}

pub struct LlamaEngine {
    options: EngineOptions,
    model: Arc<LoadedModel>,
    commands: mpsc::Sender<Command>,
    occupancy: Arc<Occupancy>,
}

/// How busy an engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLoad {
    /// Requests and sequence handles holding a sequence.
    pub active: usize,
    /// Requests and handles accepted and waiting for a sequence.
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
    /// llama.cpp decodes run so far.
    steps: AtomicUsize,
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

pub(crate) struct Job {
    prompt: Vec<TokenId>,
    params: SamplingParams,
    /// What the sampler may draw, beyond the logits (a grammar for structured output).
    constraint: Option<Box<dyn Constraint>>,
    events: UnboundedSender<Result<ChatEvent, ModelError>>,
    received: Instant,
    /// Whose request it is: the prompt cache is never shared between tenants.
    tenant: Option<String>,
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
        let (commands, queue) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let occupancy = Arc::new(Occupancy {
            admitted: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            steps: AtomicUsize::new(0),
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
            commands,
            occupancy,
        })
    }

    /// Requests holding a sequence and requests waiting for one, now.
    pub fn load(&self) -> EngineLoad {
        self.occupancy.load()
    }

    /// Decode steps run since the engine started: fewer steps for the same tokens means more
    /// requests shared each step.
    pub fn decode_steps(&self) -> usize {
        self.occupancy.steps.load(Ordering::SeqCst)
    }

    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Waits for a free sequence (in the same queue as chat requests) and hands it out for
    /// token-level use; fails at once with [`ModelError::Overloaded`] when the queue is full.
    pub async fn open_sequence(&self) -> Result<SequenceHandle, ModelError> {
        self.admit()?;
        let (reply, lease) = oneshot::channel();
        let request = OpenRequest {
            reply,
            commands: self.commands.clone(),
        };
        if self.commands.send(Command::Open(request)).is_err() {
            self.occupancy.release();
            return Err(scheduler_stopped());
        }
        let lease = lease.await.map_err(|_| scheduler_stopped())?;
        Ok(SequenceHandle::new(
            lease,
            Arc::clone(&self.model),
            self.options.name.clone(),
            self.options.context_size as usize,
        ))
    }

    /// Counts one more request or handle in, unless the queue is full.
    fn admit(&self) -> Result<(), ModelError> {
        let limit = self.options.parallel as usize + self.options.max_queue;
        if self.occupancy.admit(limit) {
            return Ok(());
        }
        metrics::counter!(
            "tandem_engine_rejected_total",
            "model" => self.options.name.clone(),
            "reason" => "queue_full"
        )
        .increment(1);
        Err(ModelError::Overloaded(self.options.name.clone()))
    }
}

fn scheduler_stopped() -> ModelError {
    ModelError::Internal("the llama.cpp scheduler has stopped".into())
}

/// Parameters of a context for `sequences` requests of up to `context_size` tokens each. Each
/// sequence has a KV cache of its own (not llama.cpp's "unified" one): with a shared cache the
/// attention of one request spans cells of the others, so its numerics, and a seeded sample, change
/// with whatever else is running. Both layouts scaled alike on 2 cores (4 clients: 1.7x SmolLM2,
/// 2.3x Qwen2.5-Coder-0.5B over one client).
fn context_params(
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
        let constraint = output.constraint.take();
        let events = self.submit(prompt, &request, constraint, received)?;
        Ok(output.read(events))
    }

    /// The prompt as text, tokenized as text (the model's BOS added, anything that looks like a
    /// control token kept as text), then generated like a chat turn.
    async fn stream_text(&self, request: CompletionRequest) -> Result<ChatStream, ModelError> {
        let received = Instant::now();
        validate_completion(&request)?;
        let prompt = self.model.tokenize(request.single_prompt()?, true);
        self.submit(prompt, &request.settings(), None, received)
    }
}

impl LlamaEngine {
    /// Queues a prompt for the scheduler, sampled as `settings` say; one path for chat and raw
    /// text.
    fn submit(
        &self,
        prompt: Vec<TokenId>,
        settings: &ChatCompletionRequest,
        constraint: Option<Box<dyn Constraint>>,
        received: Instant,
    ) -> Result<ChatStream, ModelError> {
        if prompt.len() >= self.options.context_size as usize {
            return Err(ModelError::ContextOverflow {
                model: self.options.name.clone(),
                prompt_tokens: prompt.len(),
                context_size: self.options.context_size as usize,
            });
        }
        self.admit()?;
        let (events, receiver) = unbounded_channel();
        let job = Job {
            prompt,
            params: SamplingParams::from_request(settings),
            constraint,
            events,
            received,
            tenant: settings.tenant.clone(),
        };
        if self.commands.send(Command::Chat(job)).is_err() {
            self.occupancy.release();
            return Err(scheduler_stopped());
        }
        Ok(UnboundedReceiverStream::new(receiver).boxed())
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
    /// Sampled tokens put into the cache after the prompt, in order.
    fed: Vec<TokenId>,
    /// Prompt tokens found in the cache when the request was seated.
    cached: usize,
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
            fed: Vec::new(),
            cached: 0,
            first_text_at: None,
        }
    }

    /// The tokens in this sequence's cache, in order.
    fn cached_tokens(&self) -> Vec<TokenId> {
        let mut tokens = self.job.prompt[..self.prompt_fed].to_vec();
        tokens.extend_from_slice(&self.fed);
        tokens
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
        let mut usage = Usage::new(self.job.prompt.len() as u32, self.generated);
        if options.prompt_cache {
            usage = usage.with_cached_tokens(self.cached as u32);
        }
        let millis = |at: Instant| at.duration_since(self.job.received).as_secs_f64() * 1000.0;
        let stage = Stage {
            model: options.name.clone(),
            location: Location::Local,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            latency_ms: millis(Instant::now()),
            time_to_first_token_ms: self.first_text_at.map(millis),
            cost_usd: options.pricing.cost(usage),
            cached_prompt_tokens: usage.cached_tokens(),
        };
        let _ = self.job.events.send(Ok(ChatEvent::Done(Completion {
            finish_reason,
            usage,
            report: Report::single(stage),
        })));
    }
}

pub(crate) fn token_logprob(
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

/// A caller waiting for a sequence.
enum Waiting {
    Chat(Job),
    Open(OpenRequest),
}

impl Waiting {
    /// The caller went away before a sequence freed.
    fn abandoned(&self) -> bool {
        match self {
            Waiting::Chat(job) => job.events.is_closed(),
            Waiting::Open(open) => open.reply.is_closed(),
        }
    }
}

/// Who holds a sequence of the context.
enum Occupant {
    Chat(Box<Sequence>),
    Handle(HandleSlot),
}

/// A sequence lent out through a [`SequenceHandle`].
struct HandleSlot {
    /// Tokens in the cache, counting those already put into the batch being built.
    position: usize,
    pending: Option<PendingEval>,
}

/// An evaluation a handle asked for; a long one is fed over several steps.
struct PendingEval {
    request: EvalRequest,
    fed: usize,
    logits: Logits,
}

/// The scheduler thread's state that outlives one step.
struct Scheduler {
    model: Arc<LoadedModel>,
    options: EngineOptions,
    occupancy: Arc<Occupancy>,
}

impl Scheduler {
    fn run(self, queue: Receiver<Command>, ready: SyncSender<Result<(), ModelError>>) {
        let params = context_params(
            self.options.context_size,
            self.options.batch_size,
            self.options.parallel,
            self.options.threads,
        );
        let context = backend().and_then(|backend| {
            self.model.model.new_context(backend, params).map_err(|e| {
                ModelError::Internal(format!("cannot create a llama.cpp context: {e}"))
            })
        });
        let context = match context {
            Ok(context) => {
                let _ = ready.send(Ok(()));
                context
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut running = Running {
            model: &self.model,
            options: &self.options,
            occupancy: &self.occupancy,
            context,
            batch: LlamaBatch::new(self.options.batch_size as usize, 1),
            slots: (0..self.options.parallel).map(|_| None).collect(),
            memory: (0..self.options.parallel)
                .map(|_| Remembered::default())
                .collect(),
            clock: 0,
            waiting: VecDeque::new(),
            answered: Vec::new(),
        };
        loop {
            // A disconnected queue (the engine and every handle dropped) still lets running
            // requests finish.
            while let Ok(command) = queue.try_recv() {
                running.accept(command);
            }
            running.seat_waiting();
            if !running.has_work() {
                match queue.recv() {
                    Ok(command) => running.accept(command),
                    Err(_) => return,
                }
                continue;
            }
            running.gather(&queue);
            running.step();
        }
    }
}

/// The scheduler's live state: the context, who holds each sequence, who waits for one.
struct Running<'m> {
    model: &'m LoadedModel,
    options: &'m EngineOptions,
    occupancy: &'m Occupancy,
    context: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    slots: Vec<Option<Occupant>>,
    /// What each free sequence's cache holds, for the prompt cache.
    memory: Vec<Remembered>,
    /// Counts frees, to tell the least recently used sequence.
    clock: u64,
    waiting: VecDeque<Waiting>,
    /// Handles answered by the last step: their next evaluation is usually on its way.
    answered: Vec<usize>,
}

/// How long a step with work waits for the handles answered by the previous step. A driver turns
/// an answer into its next evaluation in well under a millisecond; without the wait, the first
/// one back would take a step alone and concurrent speculative requests would fall into
/// alternating one-sequence steps instead of sharing each. A handle whose driver moved on to
/// another engine costs one wait, a small fraction of a step.
const GATHER: Duration = Duration::from_millis(2);

/// The tokens a free sequence's cache holds, left by a chat request, and whose they are.
#[derive(Default)]
struct Remembered {
    tenant: Option<String>,
    tokens: Vec<TokenId>,
    /// [`Running::clock`] when the sequence was freed.
    freed_at: u64,
}

/// Length of the longest common prefix of two token lists.
fn common_prefix(a: &[TokenId], b: &[TokenId]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// What a row of the batch's logits is for.
#[derive(Clone, Copy)]
struct Row {
    seq: usize,
    index: i32,
}

impl Running<'_> {
    fn accept(&mut self, command: Command) {
        match command {
            Command::Chat(job) => self.waiting.push_back(Waiting::Chat(job)),
            Command::Open(open) => self.waiting.push_back(Waiting::Open(open)),
            Command::Eval(request) => self.queue_eval(request),
            Command::Truncate { seq, len } => {
                if let Some(Some(Occupant::Handle(handle))) = self.slots.get_mut(seq) {
                    // Only an evaluation whose caller gave up can still be pending here.
                    handle.pending = None;
                    if len < handle.position {
                        let _ = self.context.clear_kv_cache_seq(
                            Some(seq as u32),
                            Some(len as u32),
                            None,
                        );
                        handle.position = len;
                    }
                }
            }
            Command::Close { seq } => {
                if matches!(self.slots.get(seq), Some(Some(Occupant::Handle(_)))) {
                    self.free(seq);
                }
            }
        }
    }

    fn queue_eval(&mut self, request: EvalRequest) {
        let vocab = self.model.vocab_size();
        let problem = match self.slots.get_mut(request.seq) {
            Some(Some(Occupant::Handle(handle))) if handle.pending.is_some() => {
                "an evaluation is already pending".to_string()
            }
            Some(Some(Occupant::Handle(handle))) if handle.position != request.start => format!(
                "the handle expects {} cached tokens, the sequence holds {}",
                request.start, handle.position
            ),
            Some(Some(Occupant::Handle(handle))) => {
                let logits = Logits::with_capacity(vocab, request.tail);
                handle.pending = Some(PendingEval {
                    request,
                    fed: 0,
                    logits,
                });
                return;
            }
            _ => "the sequence is not held by a handle".to_string(),
        };
        let _ = request.reply.send(Err(ModelError::Internal(problem)));
    }

    /// Frees a sequence. With the prompt cache on, a chat request's cache stays for the next
    /// request with the same prefix and the same tenant; anything else is cleared.
    fn free(&mut self, seq: usize) {
        let kept = match self.slots[seq].take() {
            Some(Occupant::Chat(s)) if self.options.prompt_cache => {
                Some((s.job.tenant.clone(), s.cached_tokens()))
            }
            _ => None,
        };
        self.release(seq, kept);
    }

    /// Frees a sequence whose cache may not hold what its occupant believes (a failed decode).
    fn free_cleared(&mut self, seq: usize) {
        self.slots[seq] = None;
        self.release(seq, None);
    }

    fn release(&mut self, seq: usize, kept: Option<(Option<String>, Vec<TokenId>)>) {
        self.clock += 1;
        let memory = &mut self.memory[seq];
        memory.freed_at = self.clock;
        match kept {
            Some((tenant, tokens)) => {
                memory.tenant = tenant;
                memory.tokens = tokens;
            }
            None => {
                memory.tenant = None;
                memory.tokens.clear();
                let _ = self
                    .context
                    .clear_kv_cache_seq(Some(seq as u32), None, None);
            }
        }
        self.occupancy.release();
    }

    /// The free sequence for `job` (`None`: a handle): the one whose cache shares the longest
    /// prefix with its prompt (same tenant only), else an empty one, else the least recently
    /// freed; with the tokens it can reuse.
    fn choose(&self, job: Option<&Job>) -> Option<(usize, usize)> {
        (0..self.slots.len())
            .filter(|&seq| self.slots[seq].is_none())
            .map(|seq| {
                let memory = &self.memory[seq];
                let common = match job {
                    Some(job) if self.options.prompt_cache && memory.tenant == job.tenant => {
                        // The last prompt token is always evaluated: its logits give the first
                        // sampled token.
                        common_prefix(&memory.tokens, &job.prompt)
                            .min(job.prompt.len().saturating_sub(1))
                    }
                    _ => 0,
                };
                (seq, common)
            })
            .max_by_key(|&(seq, common)| {
                let memory = &self.memory[seq];
                // Among equals, a sequence holding nothing goes first, so that no cache is evicted
                // while one is empty; then the least recently freed.
                (
                    common,
                    memory.tokens.is_empty(),
                    std::cmp::Reverse(memory.freed_at),
                )
            })
    }

    /// Keeps the first `keep` tokens of a free sequence's cache and forgets the rest; returns how
    /// many are kept (none if llama.cpp cannot drop part of a sequence, as for recurrent models).
    fn keep_prefix(&mut self, seq: usize, keep: usize) -> usize {
        let memory = &mut self.memory[seq];
        let mut keep = keep;
        if keep < memory.tokens.len() {
            let cut = self
                .context
                .clear_kv_cache_seq(Some(seq as u32), Some(keep as u32), None);
            if keep == 0 || !matches!(cut, Ok(true)) {
                let _ = self
                    .context
                    .clear_kv_cache_seq(Some(seq as u32), None, None);
                keep = 0;
            }
        }
        memory.tenant = None;
        memory.tokens.clear();
        keep
    }

    /// Drops callers that left and gives free sequences to the longest waiting.
    fn seat_waiting(&mut self) {
        let occupancy = self.occupancy;
        self.waiting.retain(|waiting| {
            let abandoned = waiting.abandoned();
            if abandoned {
                occupancy.release();
            }
            !abandoned
        });
        for seq in 0..self.slots.len() {
            if let Some(Occupant::Chat(s)) = &self.slots[seq] {
                if s.job.events.is_closed() {
                    tracing::debug!(seq, "client left; dropping its sequence");
                    self.free(seq);
                }
            }
        }
        loop {
            let job = match self.waiting.front() {
                Some(Waiting::Chat(job)) => Some(job),
                Some(Waiting::Open(_)) => None,
                None => break,
            };
            let Some((seq, common)) = self.choose(job) else {
                break;
            };
            match self.waiting.pop_front() {
                Some(Waiting::Chat(job)) => {
                    let cached = self.keep_prefix(seq, common);
                    let mut sequence = Sequence::new(job);
                    sequence.prompt_fed = cached;
                    sequence.position = cached;
                    sequence.cached = cached;
                    if cached > 0 {
                        metrics::counter!(
                            "tandem_prompt_cache_tokens_total",
                            "model" => self.options.name.clone()
                        )
                        .increment(cached as u64);
                    }
                    self.slots[seq] = Some(Occupant::Chat(Box::new(sequence)));
                }
                Some(Waiting::Open(open)) => {
                    self.keep_prefix(seq, 0);
                    self.slots[seq] = Some(Occupant::Handle(HandleSlot {
                        position: 0,
                        pending: None,
                    }));
                    let lease = Lease {
                        seq,
                        commands: open.commands,
                    };
                    // A caller gone since the check above drops the lease, whose `Close`
                    // frees the sequence at the next drain of the queue.
                    let _ = open.reply.send(lease);
                }
                None => break,
            }
        }
        self.occupancy
            .set_active(self.slots.iter().flatten().count());
        self.occupancy.publish();
    }

    /// Waits (at most [`GATHER`]) for the handles answered by the last step to send their next
    /// evaluation, so that they join this step.
    fn gather(&mut self, queue: &Receiver<Command>) {
        let deadline = Instant::now() + GATHER;
        while self.answered.iter().any(
            |&seq| matches!(&self.slots[seq], Some(Occupant::Handle(h)) if h.pending.is_none()),
        ) {
            let left = deadline.saturating_duration_since(Instant::now());
            match queue.recv_timeout(left) {
                Ok(command) => self.accept(command),
                Err(_) => break,
            }
        }
        self.answered.clear();
    }

    fn has_work(&self) -> bool {
        self.slots.iter().flatten().any(|occupant| match occupant {
            Occupant::Chat(_) => true,
            Occupant::Handle(handle) => handle.pending.is_some(),
        })
    }

    /// One decode: a token of every generating request, the pending tokens of every handle, then
    /// prompt chunks to fill the batch.
    fn step(&mut self) {
        let batch_size = self.options.batch_size as usize;
        let mut rows: Vec<Row> = Vec::with_capacity(self.slots.len());
        self.batch.clear();
        let batch = &mut self.batch;
        let mut used = 0usize;
        let mut failure = None;
        let mut add = |token: TokenId, pos: usize, seq: usize, logits: bool| {
            if let Err(e) = batch.add(LlamaToken(token), pos as i32, &[seq as i32], logits) {
                failure = Some(ModelError::Internal(e.to_string()));
            }
        };
        // Generating sequences first: one token each keeps every stream moving.
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            let Some(Occupant::Chat(s)) = slot else {
                continue;
            };
            if !s.prompt_done() || used == batch_size {
                continue;
            }
            add(s.next_token, s.position, seq, true);
            s.fed.push(s.next_token);
            rows.push(Row {
                seq,
                index: used as i32,
            });
            s.position += 1;
            used += 1;
        }
        // Handles next: a speculative step waits on its whole batch of drafts.
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            let Some(Occupant::Handle(handle)) = slot else {
                continue;
            };
            let Some(pending) = handle.pending.as_mut() else {
                continue;
            };
            let tokens = &pending.request.tokens;
            let take = (batch_size - used).min(tokens.len() - pending.fed);
            let first_with_logits = tokens.len() - pending.request.tail;
            for (i, &token) in tokens.iter().enumerate().skip(pending.fed).take(take) {
                let wants = i >= first_with_logits;
                add(token, handle.position, seq, wants);
                if wants {
                    rows.push(Row {
                        seq,
                        index: used as i32,
                    });
                }
                handle.position += 1;
                used += 1;
            }
            pending.fed += take;
        }
        // Then prompts, in chunks that fill the rest of the batch.
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            let Some(Occupant::Chat(s)) = slot else {
                continue;
            };
            if s.prompt_done() {
                continue;
            }
            let take = (batch_size - used).min(s.job.prompt.len() - s.prompt_fed);
            for k in 0..take {
                let index = s.prompt_fed + k;
                let last = index + 1 == s.job.prompt.len();
                add(s.job.prompt[index], index, seq, last);
                if last {
                    rows.push(Row {
                        seq,
                        index: (used + k) as i32,
                    });
                }
            }
            s.prompt_fed += take;
            s.position += take;
            used += take;
        }
        if used == 0 {
            return;
        }
        self.occupancy.steps.fetch_add(1, Ordering::SeqCst);
        let result = match failure {
            Some(e) => Err(e),
            None => self.decode(),
        };
        if let Err(e) = result {
            self.fail_step(e);
            return;
        }
        for row in rows {
            let logits = self.context.get_logits_ith(row.index);
            let finished = match self.slots[row.seq].as_mut() {
                Some(Occupant::Chat(s)) => s.step(self.model, logits, self.options),
                Some(Occupant::Handle(handle)) => {
                    if let Some(pending) = handle.pending.as_mut() {
                        pending.logits.push_row(logits);
                    }
                    false
                }
                None => false,
            };
            if finished {
                self.free(row.seq);
            }
        }
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            let Some(Occupant::Handle(handle)) = slot else {
                continue;
            };
            if handle
                .pending
                .as_ref()
                .is_some_and(|p| p.fed == p.request.tokens.len())
            {
                let pending = handle.pending.take().expect("checked above");
                let _ = pending.request.reply.send(Ok(pending.logits));
                self.answered.push(seq);
            }
        }
    }

    /// Evaluates the batch; an engine with several threads does it on the process's compute
    /// thread ([`compute`]).
    fn decode(&mut self) -> Result<(), ModelError> {
        let failed = |e: llama_cpp_2::DecodeError| {
            ModelError::Internal(format!("llama.cpp decode failed: {e}"))
        };
        if self.options.threads <= 1 {
            return self.context.decode(&mut self.batch).map_err(failed);
        }
        let work = Exclusive((&mut self.context, &mut self.batch));
        compute::run(move || {
            let Exclusive((context, batch)) = work;
            context.decode(batch)
        })
        .ok_or_else(|| ModelError::Internal("llama.cpp decode panicked".into()))?
        .map_err(failed)
    }

    /// A failed decode fails every chat request and rolls each handle with a pending evaluation
    /// back to where that evaluation started.
    fn fail_step(&mut self, e: ModelError) {
        tracing::error!(error = %e, "decode step failed; failing its requests");
        for seq in 0..self.slots.len() {
            match self.slots[seq].as_mut() {
                Some(Occupant::Chat(s)) => {
                    let _ = s.job.events.send(Err(e.clone()));
                    self.free_cleared(seq);
                }
                Some(Occupant::Handle(handle)) => {
                    if let Some(pending) = handle.pending.take() {
                        let start = pending.request.start;
                        handle.position = start;
                        let _ = self.context.clear_kv_cache_seq(
                            Some(seq as u32),
                            Some(start as u32),
                            None,
                        );
                        let _ = pending.request.reply.send(Err(e.clone()));
                    }
                }
                None => {}
            }
        }
    }
}
