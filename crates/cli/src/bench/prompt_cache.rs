//! `tandem bench prompt-cache`: time to first token of each turn of a five-turn chat, with the
//! engine's prompt cache and without it. Two one-sequence engines of the same model answer the same
//! turns, alternating turn by turn so both see the same machine; each turn's prompt is the system
//! prompt, the earlier questions and the uncached engine's earlier answers (greedy), so both get the
//! same prompt. Each round is one tenant, so a round never reuses an earlier round's cache: turn 1
//! is cold on both sides. The report also says, per turn, in how many rounds the cached answer
//! equals the uncached one, and where they first differ (the gap between the uncached answer's top
//! two log probabilities there: a near-tie under rounding noise is below 0.5). A cached answer that
//! differs leaves a cache that the next turn's prompt (built from the uncached answer) shares only
//! up to the difference.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, Message, Role, TokenLogprob};
use tandem_core::{ChatEvent, ChatModel};
use tandem_llama::{cpu_kernels, EngineOptions, LlamaEngine, LoadedModel};

use super::Rate;

const SYSTEM: &str = "You are a senior software engineer reviewing and writing code for a team \
that maintains a medium-sized Python web service. Follow these rules in every answer. Prefer the \
standard library over third-party packages unless the user names one. Write type hints on every \
function signature and keep functions short. Explain a change in one or two sentences before the \
code, never after it. When you change existing code, show only the changed function, not the whole \
file. Never invent APIs: if you are unsure whether a function exists, say so. Use f-strings for \
formatting, pathlib for paths, and logging instead of print. Tests use pytest with plain assert \
statements and fixtures instead of setup methods. Errors are raised as specific exception types \
with a message that names the offending value. Keep lines under 100 characters. Do not add \
comments that repeat what the code says. If the user's request is ambiguous, state the assumption \
you make and go on. Answer in English even when the code's identifiers are in another language.";

const TURNS: [&str; 5] = [
    "Write a function that reads a CSV file of orders (id, customer, amount) and returns the total \
     amount per customer.",
    "Now make it skip rows whose amount is not a number, logging a warning for each.",
    "Add a pytest test for the skipping behaviour.",
    "Change the function to accept an open file object instead of a path.",
    "Finally, return the customers sorted by total, largest first.",
];

pub struct Settings<'a> {
    pub path: &'a Path,
    pub threads: i32,
    pub max_tokens: u32,
    pub rounds: usize,
}

/// One answer: its text, the milliseconds to its first text, and the prompt tokens read from the
/// cache.
struct Answer {
    text: String,
    logprobs: Vec<TokenLogprob>,
    ttft_ms: f64,
    prompt_tokens: u32,
    cached: u32,
}

async fn answer(engine: &LlamaEngine, request: ChatCompletionRequest) -> Result<Answer> {
    let started = Instant::now();
    let mut stream = engine.stream(request).await?;
    let mut first = None;
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Delta {
                text: piece,
                logprobs: more,
            } => {
                logprobs.extend(more);
                if !piece.is_empty() {
                    first.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1000.0);
                }
                text.push_str(&piece);
            }
            ChatEvent::ToolCall(_) => bail!("no tools were offered"),
            ChatEvent::Done(done) => {
                let Some(ttft_ms) = first else {
                    bail!("the answer had no text");
                };
                return Ok(Answer {
                    text,
                    logprobs,
                    ttft_ms,
                    prompt_tokens: done.usage.prompt_tokens,
                    cached: done.usage.cached_tokens().unwrap_or(0),
                });
            }
        }
    }
    bail!("the stream ended without a final event")
}

/// Where two greedy answers first differ: the token's index and the gap between the uncached
/// answer's top two log probabilities there, and whether the cached answer took its second choice
/// (a near-tie under rounding noise, as the tests accept).
fn first_difference(plain: &Answer, cached: &Answer) -> Option<(usize, f32, bool)> {
    let i = plain
        .logprobs
        .iter()
        .zip(&cached.logprobs)
        .position(|(a, b)| a.token != b.token)?;
    let top = &plain.logprobs[i].top_logprobs;
    let gap = top[0].logprob - top[1].logprob;
    Some((i, gap, cached.logprobs[i].token == top[1].token))
}

/// The machine's load averages, as `uptime` reports them (Linux).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

pub async fn run(settings: Settings<'_>) -> Result<String> {
    if settings.rounds == 0 || settings.max_tokens == 0 {
        bail!("--rounds and --max-tokens must be at least 1");
    }
    let model = LoadedModel::load(settings.path, None, 0)?;
    let engine = |name: &str, prompt_cache: bool| {
        let mut options = EngineOptions::new(name);
        options.threads = settings.threads;
        options.parallel = 1;
        options.context_size = 4096;
        options.prompt_cache = prompt_cache;
        LlamaEngine::start(Arc::clone(&model), options)
    };
    let without = engine("bench-uncached", false)?;
    let with = engine("bench-cached", true)?;
    let load_before = load_average();
    // Per turn: TTFTs without and with the cache, prompt tokens, cached tokens.
    let mut off = vec![Vec::new(); TURNS.len()];
    let mut on = vec![Vec::new(); TURNS.len()];
    let mut prompt_tokens = vec![0u32; TURNS.len()];
    let mut cached = vec![Vec::new(); TURNS.len()];
    // Rounds in which the cached engine's answer equals the uncached one's, and the first
    // difference of each other round.
    let mut same = vec![0usize; TURNS.len()];
    let mut differences = vec![Vec::new(); TURNS.len()];
    for round in 0..settings.rounds {
        let mut messages = vec![Message::new(Role::System, SYSTEM)];
        for (turn, question) in TURNS.iter().enumerate() {
            messages.push(Message::new(Role::User, *question));
            let request = ChatCompletionRequest {
                model: "bench".into(),
                messages: messages.clone(),
                temperature: Some(0.0),
                max_tokens: Some(settings.max_tokens),
                logprobs: Some(true),
                top_logprobs: Some(2),
                tenant: Some(format!("round-{round}")),
                ..Default::default()
            };
            let plain = answer(&without, request.clone()).await?;
            let reused = answer(&with, request).await?;
            eprintln!(
                "round {} turn {}: {} prompt tokens, {:.0} ms uncached, {:.0} ms cached ({} reused)",
                round + 1,
                turn + 1,
                plain.prompt_tokens,
                plain.ttft_ms,
                reused.ttft_ms,
                reused.cached
            );
            off[turn].push(plain.ttft_ms);
            on[turn].push(reused.ttft_ms);
            prompt_tokens[turn] = plain.prompt_tokens;
            cached[turn].push(f64::from(reused.cached));
            match first_difference(&plain, &reused) {
                None => same[turn] += 1,
                Some((i, gap, second)) => {
                    let took = if second {
                        "second choice"
                    } else {
                        "other token"
                    };
                    differences[turn].push(format!("token {i}, gap {gap:.3}, {took}"));
                }
            }
            messages.push(Message::new(Role::Assistant, plain.text));
        }
    }
    let name = settings.path.file_name().map_or_else(
        || settings.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut report = String::new();
    let _ = writeln!(
        report,
        "## Prompt cache: {name}\n\nA five-turn chat (a {}-character system prompt, answers of at most \
         {} tokens, greedy), {} rounds, threads {}, one sequence per engine, CPU kernels: {}. \
         Load average (1, 5, 15 min) before: {load_before}, after: {}.\n",
        SYSTEM.len(),
        settings.max_tokens,
        settings.rounds,
        settings.threads,
        cpu_kernels()?,
        load_average()
    );
    let _ = writeln!(
        report,
        "| turn | prompt tokens | reused (cache on) | TTFT off (ms) | TTFT on (ms) | speedup | same answer | first differences |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for turn in 0..TURNS.len() {
        let (a, b) = (Rate::of(&off[turn]), Rate::of(&on[turn]));
        let _ = writeln!(
            report,
            "| {} | {} | {:.0} | {:.0} ± {:.0} | {:.0} ± {:.0} | {:.1}x | {}/{} | {} |",
            turn + 1,
            prompt_tokens[turn],
            Rate::of(&cached[turn]).mean,
            a.mean,
            a.std,
            b.mean,
            b.std,
            a.mean / b.mean,
            same[turn],
            settings.rounds,
            differences[turn].join("; ")
        );
    }
    Ok(report)
}
