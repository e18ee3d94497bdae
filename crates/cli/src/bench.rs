//! `tandem bench`: speed measurements with a written report.
//!
//! - `decode`: prompt processing and decoding tokens/s of one local model. Two rows time llama.cpp
//!   through the `llama-cpp-2` binding the way `llama-bench` does (pp: one batch of N prompt tokens;
//!   tg: N single-token decodes), fed through a sequence handle of a one-sequence engine (one
//!   channel hop per decode); the engine row times the serving engine itself: one client
//!   streaming a greedy chat request through the scheduler. Given the path of a `llama-bench`
//!   binary, it runs it in the same invocation and reports our/llama.cpp ratios. Every column's
//!   spread is computed as llama-bench computes its own.
//! - `concurrent`: aggregate generation throughput of the batching engine with 1, 2, 4... clients.
//! - `speculative`: speculative decoding against plain decoding of the target ([`speculative`]).
//! - `grammar`: decode rate of `json_schema`-constrained answers against free ones ([`grammar`]).
//! - `fusion`: contrastive decoding, proxy-tuning and the uncertainty hand-off against each model
//!   alone ([`fusion`]).
//! - `prompt-cache`: time to first token of each turn of a five-turn chat with the engine's prompt
//!   cache and without it ([`prompt_cache`]).
//! - `redact`: the `redact` stage's own work (detection, placeholders, restoring) as a
//!   conversation grows ([`redact`]).

mod fusion;
mod grammar;
mod prompt_cache;
mod redact;
mod speculative;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::{ChatEvent, ChatModel};
use tandem_fetch::Fetcher;
use tandem_llama::{cpu_kernels, EngineOptions, LlamaEngine, LoadedModel, SequenceHandle};

use crate::config::{Config, ModelConfig};
use crate::runtime::local_file;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Prompt and decode tokens/s of a local model (pp/tg, as llama-bench).
    Decode {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 64)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 64)]
        gen_tokens: usize,
        /// Repetitions of each test per round.
        #[arg(long, default_value_t = 5)]
        repetitions: usize,
        /// Rounds; with --llama-bench, each round runs our tests and then llama-bench's, so both
        /// see the same machine conditions.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// A llama-bench binary to run side by side as the yardstick.
        #[arg(long)]
        llama_bench: Option<PathBuf>,
        /// Also write the report (Markdown) to this file.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Speculative decoding (draft model, prompt lookup, suffix cache) against plain decoding of
    /// the target on a fixed set of code prompts, with llama.cpp's own tools beside.
    Speculative {
        /// The target: a local model of the configuration, or a catalog name.
        #[arg(long, default_value = "qwen2.5-coder-1.5b")]
        target: String,
        /// The draft model, with the target's vocabulary.
        #[arg(long, default_value = "qwen2.5-coder-0.5b")]
        draft: String,
        /// A draft model of another vocabulary, drafting through text ("none": skip it).
        #[arg(long, default_value = "smollm2")]
        other_draft: String,
        /// Threads of each engine.
        #[arg(long, short)]
        threads: Option<i32>,
        #[arg(long, default_value_t = 96)]
        max_tokens: u32,
        /// Most drafted tokens per step.
        #[arg(long, default_value_t = 8)]
        k: usize,
        #[arg(long, default_value_t = 0.75)]
        p_min: f32,
        /// The directory of llama-speculative, llama-lookup and llama-bench
        /// (scripts/build-llama-tools.sh), run on the same prompts as the yardstick.
        #[arg(long)]
        llama_tools: Option<PathBuf>,
        /// Numbers of concurrent clients to measure against plain decoding ("0": none).
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        clients: Vec<usize>,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Decode tokens/s of json_schema-constrained answers against free answers to the same
    /// prompts, side by side in one run.
    Grammar {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 96)]
        max_tokens: u32,
        /// Rounds over the prompts; each round answers every prompt free, then constrained.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Contrastive decoding, proxy-tuning and the uncertainty hand-off against each model alone,
    /// on the prompt set of `bench speculative`: what each costs per token.
    Fusion {
        /// The large model: a local model of the configuration, or a catalog name.
        #[arg(long, default_value = "qwen2.5-coder-1.5b")]
        large: String,
        /// The small model, with the large one's vocabulary.
        #[arg(long, default_value = "qwen2.5-coder-0.5b")]
        small: String,
        /// Threads of each engine.
        #[arg(long, short)]
        threads: Option<i32>,
        #[arg(long, default_value_t = 96)]
        max_tokens: u32,
        /// Contrastive decoding's alphas (beta 0.1).
        #[arg(long, value_delimiter = ',', default_value = "0.5,1.0")]
        alphas: Vec<f32>,
        /// Hand-off thresholds on the small model's top probability.
        #[arg(long, value_delimiter = ',', default_value = "0.6,0.8,0.95")]
        thresholds: Vec<f64>,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Time to first token of each turn of a five-turn chat, with the engine's prompt cache and
    /// without it, side by side in one run.
    PromptCache {
        #[command(flatten)]
        target: Target,
        /// Most tokens of each answer.
        #[arg(long, default_value_t = 64)]
        max_tokens: u32,
        /// Rounds over the chat; each is a tenant of its own, so it starts cold.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// The `redact` stage's own work (detection, placeholders, restoring; no model) as a
    /// conversation grows: time per kilobyte at each size.
    Redact {
        /// Conversation sizes in kilobytes.
        #[arg(long, value_delimiter = ',', default_value = "32,128,512")]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Aggregate throughput of concurrent requests through the batching engine.
    Concurrent {
        #[command(flatten)]
        target: Target,
        /// Numbers of concurrent clients to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        clients: Vec<usize>,
        /// Tokens each request generates.
        #[arg(long, default_value_t = 64)]
        gen_tokens: u32,
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub struct Target {
    /// A local model of the configuration, or a catalog name.
    #[arg(long, short, default_value = "smollm2")]
    model: String,
    /// A GGUF file instead of a named model.
    #[arg(long, conflicts_with = "model")]
    file: Option<PathBuf>,
    #[arg(long, short)]
    threads: Option<i32>,
}

impl Target {
    async fn path(&self, config: &Config, fetcher: &Fetcher) -> Result<PathBuf> {
        if let Some(file) = &self.file {
            return Ok(file.clone());
        }
        if let Some(model) = config.single_model(&self.model) {
            return match &config.models[model] {
                ModelConfig::Local(local) => local_file(local, fetcher).await,
                ModelConfig::Remote(_) => bail!("`{}` is a remote model", self.model),
                ModelConfig::Embedding(_) => bail!("`{}` is an embedding model", self.model),
            };
        }
        fetcher
            .pull(&self.model)
            .await
            .with_context(|| format!("`{}` is neither configured nor in the catalog", self.model))
    }

    fn threads(&self) -> i32 {
        self.threads
            .unwrap_or_else(|| EngineOptions::new("bench").threads)
    }
}

pub async fn run(command: BenchCommand, config: Config, fetcher: &Fetcher) -> Result<()> {
    let (report, output) = match command {
        BenchCommand::Decode {
            target,
            prompt_tokens,
            gen_tokens,
            repetitions,
            rounds,
            llama_bench,
            output,
        } => {
            let path = target.path(&config, fetcher).await?;
            let sizes = Sizes {
                threads: target.threads(),
                prompt_tokens,
                gen_tokens,
                repetitions,
                rounds,
            };
            let report =
                tokio::task::spawn_blocking(move || decode(&path, &sizes, llama_bench.as_deref()))
                    .await??;
            (report, output)
        }
        BenchCommand::Speculative {
            target,
            draft,
            other_draft,
            threads,
            max_tokens,
            k,
            p_min,
            llama_tools,
            clients,
            output,
        } => {
            let path = |model: String| Target {
                model,
                file: None,
                threads,
            };
            let target = path(target);
            let settings = speculative::Settings {
                target: target.path(&config, fetcher).await?,
                draft: path(draft).path(&config, fetcher).await?,
                other_draft: match other_draft.as_str() {
                    "none" => None,
                    _ => Some(path(other_draft).path(&config, fetcher).await?),
                },
                threads: target.threads(),
                max_tokens,
                k,
                p_min,
                llama_tools,
                clients: clients.into_iter().filter(|&n| n > 0).collect(),
            };
            (speculative::run(settings).await?, output)
        }
        BenchCommand::Grammar {
            target,
            max_tokens,
            rounds,
            output,
        } => {
            let path = target.path(&config, fetcher).await?;
            let settings = grammar::Settings {
                path: &path,
                threads: target.threads(),
                max_tokens,
                rounds,
            };
            (grammar::run(settings).await?, output)
        }
        BenchCommand::Fusion {
            large,
            small,
            threads,
            max_tokens,
            alphas,
            thresholds,
            output,
        } => {
            let path = |model: String| Target {
                model,
                file: None,
                threads,
            };
            let large = path(large);
            let settings = fusion::Settings {
                large: large.path(&config, fetcher).await?,
                small: path(small).path(&config, fetcher).await?,
                threads: large.threads(),
                max_tokens,
                alphas,
                thresholds,
            };
            (fusion::run(settings).await?, output)
        }
        BenchCommand::PromptCache {
            target,
            max_tokens,
            rounds,
            output,
        } => {
            let path = target.path(&config, fetcher).await?;
            let settings = prompt_cache::Settings {
                path: &path,
                threads: target.threads(),
                max_tokens,
                rounds,
            };
            (prompt_cache::run(settings).await?, output)
        }
        BenchCommand::Redact {
            sizes,
            rounds,
            output,
        } => (
            redact::run(redact::Settings { sizes, rounds }).await?,
            output,
        ),
        BenchCommand::Concurrent {
            target,
            clients,
            gen_tokens,
            output,
        } => {
            let path = target.path(&config, fetcher).await?;
            (
                concurrent(&path, target.threads(), &clients, gen_tokens).await?,
                output,
            )
        }
    };
    print!("{report}");
    if let Some(output) = output {
        std::fs::write(&output, &report)
            .with_context(|| format!("cannot write {}", output.display()))?;
    }
    Ok(())
}

/// Mean and spread of tokens/s over repetitions, computed as llama-bench computes `avg_ts` and
/// `stddev_ts`: the mean and the sample standard deviation (n - 1) of the per-repetition rates.
#[derive(Debug, PartialEq)]
struct Rate {
    mean: f64,
    std: f64,
}

impl Rate {
    fn of(samples: &[f64]) -> Rate {
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n.max(1.0);
        let std = if samples.len() < 2 {
            0.0
        } else {
            (samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        Rate { mean, std }
    }
}

/// What `bench decode` measures, shared with llama-bench's command line.
struct Sizes {
    threads: i32,
    prompt_tokens: usize,
    gen_tokens: usize,
    repetitions: usize,
    rounds: usize,
}

/// Per-repetition tokens/s of every row, pooled over the rounds.
#[derive(Default)]
struct Samples {
    pp: Vec<f64>,
    tg: Vec<f64>,
    engine: Vec<f64>,
    yardstick_pp: Vec<f64>,
    yardstick_tg: Vec<f64>,
}

fn decode(path: &Path, sizes: &Sizes, llama_bench: Option<&Path>) -> Result<String> {
    let Sizes {
        threads,
        prompt_tokens,
        gen_tokens,
        repetitions,
        rounds,
    } = *sizes;
    if prompt_tokens == 0 || gen_tokens == 0 || repetitions == 0 || rounds == 0 {
        bail!("--prompt-tokens, --gen-tokens, --repetitions and --rounds must be at least 1");
    }
    let model = LoadedModel::load(path, None, 0)?;
    let mut options = EngineOptions::new("bench-bare");
    options.threads = threads;
    options.parallel = 1;
    options.context_size = (prompt_tokens + gen_tokens + 16) as u32;
    options.batch_size = prompt_tokens.max(512) as u32;
    let bare = LlamaEngine::start(Arc::clone(&model), options)?;
    let mut handle = futures::executor::block_on(bare.open_sequence())?;
    let engine = EngineRun::start(model, threads, gen_tokens)?;
    let vocab = handle.model().vocab_size();
    let tokens = arbitrary_tokens(vocab, prompt_tokens);
    let eval = |handle: &mut SequenceHandle, tokens: &[i32]| {
        futures::executor::block_on(handle.eval(tokens, 1)).map(drop)
    };

    // Warm-up: one batch and one single-token decode, not timed.
    eval(&mut handle, &tokens)?;
    eval(&mut handle, &tokens[..1])?;

    let mut samples = Samples::default();
    for _ in 0..rounds {
        for _ in 0..repetitions {
            handle.truncate(0)?;
            let start = Instant::now();
            eval(&mut handle, &tokens)?;
            samples
                .pp
                .push(prompt_tokens as f64 / start.elapsed().as_secs_f64());

            handle.truncate(0)?;
            let start = Instant::now();
            for i in 0..gen_tokens {
                eval(&mut handle, &tokens[i % prompt_tokens..][..1])?;
            }
            samples
                .tg
                .push(gen_tokens as f64 / start.elapsed().as_secs_f64());

            samples.engine.push(engine.generation_rate()?);
        }
        if let Some(bin) = llama_bench {
            let (pp, tg) = run_llama_bench(bin, path, sizes)?;
            samples.yardstick_pp.extend(pp);
            samples.yardstick_tg.extend(tg);
        }
    }
    let kernels = cpu_kernels()?.to_string();
    Ok(decode_report(
        path,
        sizes,
        &kernels,
        llama_bench.is_some(),
        &samples,
    ))
}

fn decode_report(
    path: &Path,
    sizes: &Sizes,
    kernels: &str,
    with_yardstick: bool,
    samples: &Samples,
) -> String {
    let Sizes {
        threads,
        prompt_tokens,
        gen_tokens,
        repetitions,
        rounds,
    } = *sizes;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let yardstick_pp = with_yardstick.then(|| Rate::of(&samples.yardstick_pp));
    let yardstick_tg = with_yardstick.then(|| Rate::of(&samples.yardstick_tg));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# tandem bench decode\n\nmodel: {name}, threads: {threads}, rounds: {rounds} x {repetitions} repetitions\n\n\
         CPU kernels: {kernels}\n"
    );
    let _ = writeln!(out, "| test | tandem t/s | llama-bench t/s | ratio |");
    let _ = writeln!(out, "|---|---|---|---|");
    let rows = [
        (
            format!("pp{prompt_tokens} (llama-cpp-2 batch)"),
            Rate::of(&samples.pp),
            yardstick_pp.as_ref(),
        ),
        (
            format!("tg{gen_tokens} (llama-cpp-2 decodes)"),
            Rate::of(&samples.tg),
            yardstick_tg.as_ref(),
        ),
        (
            format!("tg{gen_tokens} engine (one client, greedy)"),
            Rate::of(&samples.engine),
            yardstick_tg.as_ref(),
        ),
    ];
    for (test, ours, theirs) in rows {
        let (theirs_text, ratio) = match theirs {
            Some(t) => (
                format!("{:.1} ± {:.1}", t.mean, t.std),
                format!("{:.3}", ours.mean / t.mean),
            ),
            None => ("—".to_string(), "—".to_string()),
        };
        let _ = writeln!(
            out,
            "| {test} | {:.1} ± {:.1} | {theirs_text} | {ratio} |",
            ours.mean, ours.std
        );
    }
    let _ = writeln!(
        out,
        "\nmean ± sample standard deviation of the per-repetition rates of all rounds, for every \
         column (llama-bench's avg_ts and stddev_ts, pooled over its runs). The engine row: \
         {gen_tokens} tokens generated after the first one of a streamed chat request, timed from \
         the arrival of the first text to the final event."
    );
    out
}

/// The serving engine as one client sees it: a chat request streamed through the scheduler.
struct EngineRun {
    engine: LlamaEngine,
    request: ChatCompletionRequest,
    gen_tokens: usize,
    /// Tokens generated by the time the first text arrives (more than one when the first tokens
    /// hold only part of a character, or no text).
    tokens_at_first_text: usize,
}

impl EngineRun {
    /// Starts a one-sequence engine and makes an untimed request with log probabilities, which
    /// send every token on its own, to learn how many tokens the first text of the (greedy, hence
    /// always the same) answer holds, and that the answer is long enough.
    fn start(model: Arc<LoadedModel>, threads: i32, gen_tokens: usize) -> Result<EngineRun> {
        let mut options = EngineOptions::new("bench");
        options.threads = threads;
        options.parallel = 1;
        options.context_size = (ENGINE_PROMPT_ROOM + gen_tokens) as u32;
        let engine = LlamaEngine::start(model, options)?;
        let mut request = ChatCompletionRequest {
            model: "bench".into(),
            messages: vec![Message::new(
                Role::User,
                "Write a long story about a lighthouse keeper, with many details.",
            )],
            temperature: Some(0.0),
            // Room for a first text that takes a few tokens.
            max_tokens: Some(gen_tokens as u32 + 16),
            logprobs: Some(true),
            ..Default::default()
        };
        let (tokens_at_first_text, answered) =
            futures::executor::block_on(probe(&engine, request.clone()))?;
        let wanted = gen_tokens + tokens_at_first_text;
        if answered < wanted {
            bail!(
                "the model ended its answer to the benchmark prompt after {answered} tokens; \
                 choose --gen-tokens below {}",
                answered.saturating_sub(tokens_at_first_text) + 1
            );
        }
        request.logprobs = None;
        request.max_tokens = Some(wanted as u32);
        Ok(EngineRun {
            engine,
            request,
            gen_tokens,
            tokens_at_first_text,
        })
    }

    /// Tokens/s of one streamed request after its first text: each of those tokens costs one
    /// scheduler step (one single-token decode, sampling, detokenization, delivery).
    fn generation_rate(&self) -> Result<f64> {
        futures::executor::block_on(async {
            let mut stream = self.engine.stream(self.request.clone()).await?;
            let mut first_text = None;
            while let Some(event) = stream.next().await {
                match event? {
                    ChatEvent::Delta { .. } => {
                        first_text.get_or_insert_with(Instant::now);
                    }
                    ChatEvent::ToolCall(_) => bail!("the benchmark offers no tools"),
                    ChatEvent::Done(done) => {
                        let end = Instant::now();
                        let generated = done.usage.completion_tokens as usize;
                        let expected = self.gen_tokens + self.tokens_at_first_text;
                        if generated != expected {
                            bail!(
                                "the engine generated {generated} tokens where the untimed \
                                 probe generated {expected}: greedy decoding was not repeatable"
                            );
                        }
                        let first_text = first_text.context("the answer had no text")?;
                        return Ok(
                            self.gen_tokens as f64 / end.duration_since(first_text).as_secs_f64()
                        );
                    }
                }
            }
            bail!("the engine's stream ended without its final event")
        })
    }
}

/// Streams `request` (with log probabilities: one delta per token); returns the tokens generated
/// by the first delta with text, and all tokens generated.
async fn probe(engine: &LlamaEngine, request: ChatCompletionRequest) -> Result<(usize, usize)> {
    let mut stream = engine.stream(request).await?;
    let mut tokens = 0;
    let mut at_first_text = None;
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Delta { text, logprobs } => {
                tokens += logprobs.len();
                if !text.is_empty() {
                    at_first_text.get_or_insert(tokens);
                }
            }
            ChatEvent::ToolCall(_) => bail!("the benchmark offers no tools"),
            ChatEvent::Done(done) => {
                let at_first_text = at_first_text
                    .context("the model's answer to the benchmark prompt has no text")?;
                return Ok((at_first_text, done.usage.completion_tokens as usize));
            }
        }
    }
    bail!("the engine's stream ended without its final event")
}

/// Context the engine's bench request may use besides the generated tokens: its chat-templated
/// prompt is a few dozen tokens.
const ENGINE_PROMPT_ROOM: usize = 256;

/// Runs llama-bench on the same file, threads and sizes; returns its per-repetition tokens/s
/// (`samples_ts`) of the prompt test and of the generation test.
fn run_llama_bench(bin: &Path, model: &Path, sizes: &Sizes) -> Result<(Vec<f64>, Vec<f64>)> {
    let output = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["-t", &sizes.threads.to_string()])
        .args(["-p", &sizes.prompt_tokens.to_string()])
        .args(["-n", &sizes.gen_tokens.to_string()])
        .args(["-r", &sizes.repetitions.to_string()])
        .args(["-o", "json"])
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    llama_bench_samples(&output.stdout)
}

/// The `samples_ts` of llama-bench's JSON output: (prompt test, generation test).
fn llama_bench_samples(json: &[u8]) -> Result<(Vec<f64>, Vec<f64>)> {
    let tests: Vec<serde_json::Value> =
        serde_json::from_slice(json).context("llama-bench printed no JSON list")?;
    let samples = |want_prompt: bool| -> Result<Vec<f64>> {
        let test = tests
            .iter()
            .find(|t| (t["n_prompt"].as_u64().unwrap_or(0) > 0) == want_prompt)
            .context("llama-bench output lacks a test")?;
        test["samples_ts"]
            .as_array()
            .and_then(|s| s.iter().map(serde_json::Value::as_f64).collect())
            .context("llama-bench output lacks samples_ts")
    };
    Ok((samples(true)?, samples(false)?))
}

async fn concurrent(
    path: &Path,
    threads: i32,
    clients: &[usize],
    gen_tokens: u32,
) -> Result<String> {
    let most = clients.iter().copied().max().unwrap_or(1).max(1);
    let path = path.to_path_buf();
    let engine = tokio::task::spawn_blocking(move || {
        let model = LoadedModel::load(&path, None, 0)?;
        let mut options = EngineOptions::new("bench");
        options.threads = threads;
        options.parallel = most as u32;
        options.context_size = 1024;
        LlamaEngine::start(model, options)
    })
    .await??;
    let engine = Arc::new(engine);
    let request = ChatCompletionRequest {
        model: "bench".into(),
        messages: vec![Message::new(
            Role::User,
            "Write a long story about a lighthouse keeper, with many details.",
        )],
        temperature: Some(0.0),
        max_tokens: Some(gen_tokens),
        ..Default::default()
    };
    // Warm-up with every sequence busy: llama.cpp sizes its buffers on the first batches it sees.
    futures::future::try_join_all((0..most).map(|_| engine.complete(request.clone()))).await?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# tandem bench concurrent\n\nthreads: {threads}, tokens per request: up to {gen_tokens}, engine sequences: {most}\n"
    );
    let _ = writeln!(
        out,
        "| clients | aggregate t/s | per-client t/s | mean latency s | speed-up vs first row |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let mut single = None;
    for &n in clients {
        let start = Instant::now();
        let outputs = futures::future::join_all((0..n).map(|i| {
            let mut request = request.clone();
            request.seed = Some(i as u64);
            let engine = engine.clone();
            async move { engine.complete(request).await }
        }))
        .await;
        let wall = start.elapsed().as_secs_f64();
        let mut tokens = 0u64;
        let mut latency = 0.0;
        for output in outputs {
            let output = output?;
            tokens += u64::from(output.usage.completion_tokens);
            latency += output.report.latency_ms / 1000.0;
        }
        let aggregate = tokens as f64 / wall;
        let base = *single.get_or_insert(aggregate);
        let _ = writeln!(
            out,
            "| {n} | {aggregate:.1} | {:.1} | {:.2} | {:.2}x |",
            aggregate / n as f64,
            latency / n as f64,
            aggregate / base
        );
    }
    Ok(out)
}

/// `n` arbitrary tokens of a vocabulary of `vocab`, as llama-bench uses: content does not change
/// the cost of an evaluation.
fn arbitrary_tokens(vocab: usize, n: usize) -> Vec<i32> {
    (0..n as i32)
        .map(|i| (i * 7919 + 13) % vocab as i32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_is_the_sample_standard_deviation_as_in_llama_bench() {
        // llama-bench's stdev: sqrt(sum of squares / (n - 1) - mean^2 * n / (n - 1)).
        let rate = Rate::of(&[1.0, 3.0]);
        assert_eq!(rate.mean, 2.0);
        assert!((rate.std - 2f64.sqrt()).abs() < 1e-12, "{rate:?}");
        assert_eq!(
            Rate::of(&[5.0]),
            Rate {
                mean: 5.0,
                std: 0.0
            }
        );
    }

    #[test]
    fn llama_bench_rates_are_its_per_repetition_samples() {
        let json = br#"[
            {"n_prompt": 64, "n_gen": 0, "avg_ts": 300.0, "samples_ts": [290.0, 310.0]},
            {"n_prompt": 0, "n_gen": 64, "avg_ts": 170.0, "samples_ts": [169.0, 171.0, 170.0]}
        ]"#;
        let (pp, tg) = llama_bench_samples(json).unwrap();
        assert_eq!(pp, [290.0, 310.0]);
        assert_eq!(tg, [169.0, 171.0, 170.0]);
        assert!(llama_bench_samples(br#"[{"n_prompt": 64, "avg_ts": 1.0}]"#).is_err());
    }
}
