//! `tandem bench`: speed measurements with a written report.
//!
//! - `decode`: prompt processing and decoding tokens/s of one local model, measured the way
//!   llama.cpp's `llama-bench` measures them (pp: one batch of N prompt tokens; tg: N single-token
//!   decodes), plus our full generation loop (decode, greedy choice, detokenization). Given the path
//!   of a `llama-bench` binary, it runs it in the same invocation and reports our/llama.cpp ratios.
//! - `concurrent`: aggregate generation throughput of the batching engine with 1, 2, 4... clients.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::sampling::argmax;
use tandem_core::{ChatModel, LogitsFor, TokenModel};
use tandem_fetch::Fetcher;
use tandem_llama::{EngineOptions, LlamaEngine, LlamaSession, LoadedModel, SessionOptions};

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
        if let Ok(model) = config.model_of(&self.model) {
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

/// Mean and standard deviation of tokens/s over repetitions.
struct Rate {
    mean: f64,
    std: f64,
}

impl Rate {
    fn of(samples: &[f64]) -> Rate {
        let n = samples.len().max(1) as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
        Rate {
            mean,
            std: var.sqrt(),
        }
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
    let mut session = LlamaSession::new(
        model,
        SessionOptions {
            context_size: (prompt_tokens + gen_tokens + 16) as u32,
            batch_size: prompt_tokens.max(512) as u32,
            threads,
        },
    )?;
    let vocab = session.vocab_size() as i32;
    // Like llama-bench: arbitrary tokens; content does not change the cost of a decode.
    let tokens: Vec<i32> = (0..prompt_tokens as i32)
        .map(|i| (i * 7919 + 13) % vocab)
        .collect();

    // Warm-up: one batch and one single-token decode, not timed.
    session.eval(&tokens, LogitsFor::Last)?;
    session.eval(&tokens[..1], LogitsFor::Last)?;

    let mut pp = Vec::new();
    let mut tg = Vec::new();
    let mut generation = Vec::new();
    let mut yardstick_pp = Vec::new();
    let mut yardstick_tg = Vec::new();
    for _ in 0..rounds {
        for _ in 0..repetitions {
            session.truncate(0)?;
            let start = Instant::now();
            session.eval(&tokens, LogitsFor::Last)?;
            pp.push(prompt_tokens as f64 / start.elapsed().as_secs_f64());

            session.truncate(0)?;
            let start = Instant::now();
            for i in 0..gen_tokens {
                session.eval(&tokens[i % prompt_tokens..][..1], LogitsFor::Last)?;
            }
            tg.push(gen_tokens as f64 / start.elapsed().as_secs_f64());

            // The generation loop: decode, choose greedily from the logits, detokenize.
            session.truncate(0)?;
            session.eval(&tokens[..1], LogitsFor::Last)?;
            let mut bytes = Vec::new();
            let start = Instant::now();
            for _ in 0..gen_tokens {
                let next = argmax(session.logits(0).context("logits of the last token")?);
                bytes.extend(session.token_bytes(next));
                session.eval(&[next], LogitsFor::Last)?;
            }
            generation.push(gen_tokens as f64 / start.elapsed().as_secs_f64());
        }
        if let Some(bin) = llama_bench {
            let (pp, tg) = run_llama_bench(bin, path, sizes)?;
            yardstick_pp.push(pp);
            yardstick_tg.push(tg);
        }
    }
    let (pp, tg, generation) = (Rate::of(&pp), Rate::of(&tg), Rate::of(&generation));
    let yardstick = llama_bench
        .is_some()
        .then(|| (Rate::of(&yardstick_pp), Rate::of(&yardstick_tg)));

    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# tandem bench decode\n\nmodel: {name}, threads: {threads}, rounds: {rounds} x {repetitions} repetitions\n"
    );
    let _ = writeln!(out, "| test | tandem t/s | llama-bench t/s | ratio |");
    let _ = writeln!(out, "|---|---|---|---|");
    let rows = [
        (
            format!("pp{prompt_tokens}"),
            &pp,
            yardstick.as_ref().map(|y| &y.0),
        ),
        (
            format!("tg{gen_tokens}"),
            &tg,
            yardstick.as_ref().map(|y| &y.1),
        ),
        (
            format!("tg{gen_tokens} + greedy + detokenize"),
            &generation,
            yardstick.as_ref().map(|y| &y.1),
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
    Ok(out)
}

/// Runs llama-bench on the same file, threads and sizes; returns its mean (pp, tg) tokens/s.
fn run_llama_bench(bin: &Path, model: &Path, sizes: &Sizes) -> Result<(f64, f64)> {
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
    let tests: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).context("llama-bench printed no JSON list")?;
    let rate = |want_prompt: bool| -> Result<f64> {
        let test = tests
            .iter()
            .find(|t| (t["n_prompt"].as_u64().unwrap_or(0) > 0) == want_prompt)
            .context("llama-bench output lacks a test")?;
        test["avg_ts"]
            .as_f64()
            .context("llama-bench output lacks avg_ts")
    };
    Ok((rate(true)?, rate(false)?))
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
