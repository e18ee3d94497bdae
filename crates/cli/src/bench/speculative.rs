//! `tandem bench speculative`: speculative decoding against plain decoding of the target, on the
//! fixed prompt set `speculative-prompts.toml` (code writing and code editing), greedy.
//!
//! Every mode runs on each prompt right after plain decoding of the same prompt, so all see the
//! same machine conditions: a draft model with and without the fallback, a draft model of another
//! vocabulary (drafting through text), prompt lookup, and the suffix cache on a repeated workload (the whole prompt set asked once to fill the cache, then
//! again, as an agent that re-sends the same files and instructions; the second pass is
//! reported). Rates are decode rates, after the prompt is read (see [`Run::of`]), as llama.cpp's
//! tools report theirs, so that prompt reading does not dilute the ratios. Given the
//! directory of llama.cpp's tools (`scripts/build-llama-tools.sh`), `llama-speculative` and
//! `llama-lookup` run on the same prompts (rendered by the same chat template) and pair, with
//! `llama-bench`'s tg rate of the target as their plain yardstick.
//!
//! Where the milliseconds go: one target evaluation of n tokens with the logits of all n (a
//! verification of n - 1 drafts) against n single-token steps, for n up to k + 1, and a draft
//! model's single-token step; from these, the best ratio each length could reach if every draft
//! stood.
//!
//! Then concurrency: 1, 2 and 4 clients at once (the prompts in turn), each through plain
//! decoding of the target and through the draft model's pipeline, as aggregate tokens/s over the
//! wall time of the whole batch of requests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::{ChatModel, ChatOutput};
use tandem_llama::speculative::{DraftSource, Speculative, SpeculativeOptions, SuffixCache};
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};

const PROMPTS: &str = include_str!("speculative-prompts.toml");

#[derive(Debug, Deserialize)]
struct PromptSet {
    prompt: Vec<BenchPrompt>,
}

#[derive(Debug, Deserialize)]
struct BenchPrompt {
    name: String,
    kind: String,
    text: String,
}

/// What `bench speculative` runs.
pub struct Settings {
    pub target: PathBuf,
    pub draft: PathBuf,
    /// A draft model of another vocabulary than the target's.
    pub other_draft: Option<PathBuf>,
    pub threads: i32,
    pub max_tokens: u32,
    pub k: usize,
    pub p_min: f32,
    /// The directory holding `llama-speculative`, `llama-lookup` and `llama-bench`.
    pub llama_tools: Option<PathBuf>,
    /// Numbers of concurrent clients.
    pub clients: Vec<usize>,
}

/// One mode's run on one prompt.
struct Run {
    tokens: u32,
    rate: f64,
    same_text: bool,
    acceptance: Option<f64>,
    mean_draft: Option<f64>,
    plain_steps: Option<f64>,
}

pub async fn run(settings: Settings) -> Result<String> {
    let set: PromptSet = toml::from_str(PROMPTS).context("the built-in prompt set")?;
    let threads = settings.threads;
    let parallel = settings.clients.iter().copied().max().unwrap_or(1).max(1) as u32;
    let load = |path: PathBuf, name: &'static str| async move {
        tokio::task::spawn_blocking(move || -> Result<Arc<LlamaEngine>> {
            let model = LoadedModel::load(&path, None, 0)?;
            let mut options = EngineOptions::new(name);
            options.threads = threads;
            options.parallel = parallel;
            options.context_size = 4096;
            Ok(Arc::new(LlamaEngine::start(model, options)?))
        })
        .await?
    };
    let target = load(settings.target.clone(), "target").await?;
    let draft = load(settings.draft.clone(), "draft").await?;
    let pipeline = |source: DraftSource, fallback: bool| -> Result<Arc<dyn ChatModel>> {
        let mut options = SpeculativeOptions::new("bench");
        options.max_draft = settings.k;
        options.p_min = settings.p_min;
        options.fallback = fallback;
        Ok(Arc::new(Speculative::new(
            Arc::clone(&target),
            source,
            options,
        )?))
    };
    let suffix = pipeline(
        DraftSource::Suffix(Arc::new(SuffixCache::new(1_000_000))),
        true,
    )?;
    let mut modes: Vec<(String, Arc<dyn ChatModel>)> = vec![
        (
            "draft model".into(),
            pipeline(DraftSource::Model(Arc::clone(&draft)), true)?,
        ),
        (
            "draft model, no fallback".into(),
            pipeline(DraftSource::Model(Arc::clone(&draft)), false)?,
        ),
    ];
    if let Some(path) = &settings.other_draft {
        let other = load(path.clone(), "other-draft").await?;
        let name = format!("{}, no fallback", file_name(path));
        modes.push((name, pipeline(DraftSource::Model(other), false)?));
    }
    modes.push((
        "prompt lookup".into(),
        pipeline(DraftSource::PromptLookup, true)?,
    ));
    modes.push(("suffix cache (cold)".into(), Arc::clone(&suffix)));
    let request = |text: &str| ChatCompletionRequest {
        model: "bench".into(),
        messages: vec![Message::new(Role::User, text)],
        temperature: Some(0.0),
        max_tokens: Some(settings.max_tokens),
        ..Default::default()
    };

    // Untimed warm-up of both engines.
    target.complete(request("Say hi.")).await?;
    draft.complete(request("Say hi.")).await?;

    let mut plain = Vec::new();
    let mut runs: Vec<Vec<Run>> = Vec::new();
    for prompt in &set.prompt {
        eprintln!("bench speculative: {} ...", prompt.name);
        let reference = target.complete(request(&prompt.text)).await?;
        let mut row = Vec::new();
        for (_, mode) in &modes {
            row.push(measure(mode.as_ref(), request(&prompt.text), &reference).await?);
        }
        plain.push(Run::of(&reference, &reference));
        runs.push(row);
    }
    // The repeated workload: the same requests again, now that the cache holds the first pass.
    for (i, prompt) in set.prompt.iter().enumerate() {
        let reference = target.complete(request(&prompt.text)).await?;
        runs[i].push(measure(suffix.as_ref(), request(&prompt.text), &reference).await?);
        plain[i] = Run::of(&reference, &reference).averaged_with(&plain[i]);
    }

    let llama = match &settings.llama_tools {
        Some(dir) => Some(llama_cpp(dir, &settings, &set, &target).await?),
        None => None,
    };
    let mut concurrency = Vec::new();
    for &clients in &settings.clients {
        eprintln!("bench speculative: {clients} clients ...");
        let requests: Vec<_> = (0..clients)
            .map(|i| request(&set.prompt[i % set.prompt.len()].text))
            .collect();
        let plain_rate = aggregate_rate(target.as_ref(), &requests).await?;
        let spec_rate = aggregate_rate(modes[0].1.as_ref(), &requests).await?;
        concurrency.push((clients, plain_rate, spec_rate));
    }
    let costs = step_costs(&target, &draft, settings.k + 1).await?;
    let copy_us = row_copy_micros(target.model().vocab_size());
    let mut names: Vec<String> = modes.into_iter().map(|(name, _)| name).collect();
    names.push("suffix cache (repeat)".into());
    let mut text = report(&settings, &set, &names, &plain, &runs, llama.as_ref());
    text.push_str(&costs_report(&costs));
    if !concurrency.is_empty() {
        text.push_str(
            "\nConcurrent clients (the prompts in turn), aggregate tokens/s over the wall time \
             of all requests, prompts included:\n\n\
             | clients | plain target | draft model | ratio |\n|---:|---:|---:|---:|\n",
        );
        for (clients, plain_rate, spec_rate) in concurrency {
            let _ = writeln!(
                text,
                "| {clients} | {plain_rate:.2} | {spec_rate:.2} | {:.2} |",
                spec_rate / plain_rate
            );
        }
    }
    let _ = writeln!(
        text,
        "\nA sequence handle copies each logits row it returns out of the context: {copy_us:.0} µs \
         for a row of {} floats here, once per drafted token and k+1 times per verification.",
        target.model().vocab_size()
    );
    Ok(text)
}

/// Microseconds to copy one logits row of `vocab` floats into a fresh buffer, as
/// `SequenceHandle::eval` does (median of 50).
fn row_copy_micros(vocab: usize) -> f64 {
    let row: Vec<f32> = (0..vocab).map(|i| i as f32).collect();
    let times: Vec<f64> = (0..50)
        .map(|_| {
            let start = std::time::Instant::now();
            let mut copy = Vec::with_capacity(vocab);
            copy.extend_from_slice(std::hint::black_box(&row));
            std::hint::black_box(&copy);
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median(times)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Median milliseconds of one evaluation of `n` tokens with the logits of all of them, on the
/// target (`n` = 1 to `most`) and, last, of one token on the draft, each after a 300-token
/// context.
struct StepCosts {
    target: Vec<f64>,
    draft: f64,
}

async fn step_costs(target: &LlamaEngine, draft: &LlamaEngine, most: usize) -> Result<StepCosts> {
    /// Median milliseconds of evaluating 1 to `most` tokens after one reading of the context.
    async fn median_ms(engine: &LlamaEngine, most: usize) -> Result<Vec<f64>> {
        let context = super::arbitrary_tokens(engine.model().vocab_size(), 300.max(most));
        let mut handle = engine.open_sequence().await?;
        handle.eval(&context, 1).await?;
        let mut medians = Vec::new();
        for n in 1..=most {
            let mut times = Vec::new();
            for _ in 0..5 {
                let start = Instant::now();
                handle.eval(&context[..n], n).await?;
                times.push(start.elapsed().as_secs_f64() * 1000.0);
                handle.truncate(context.len())?;
            }
            medians.push(median(times));
        }
        Ok(medians)
    }
    Ok(StepCosts {
        target: median_ms(target, most).await?,
        draft: median_ms(draft, 1).await?[0],
    })
}

fn costs_report(costs: &StepCosts) -> String {
    let one = costs.target[0];
    let mut out = format!(
        "\nWhere the milliseconds go: one target evaluation of n tokens with the logits of all n \
         (a verification of n - 1 drafts), median of 5 after a 300-token context; a plain step is \
         n = 1 ({one:.1} ms), a draft model's step {:.1} ms. The best ratios assume every draft \
         stands: n tokens per evaluation, and n - 1 draft steps for a draft model.\n\n\
         | n | ms | n plain steps, ms | cost vs plain | best ratio, draftless | best ratio, draft model |\n\
         |---:|---:|---:|---:|---:|---:|\n",
        costs.draft
    );
    for (i, &ms) in costs.target.iter().enumerate() {
        let n = (i + 1) as f64;
        let _ = writeln!(
            out,
            "| {} | {ms:.1} | {:.1} | {:.2} | {:.2} | {:.2} |",
            i + 1,
            n * one,
            ms / (n * one),
            n * one / ms,
            n * one / (ms + (n - 1.0) * costs.draft)
        );
    }
    out
}

/// Completion tokens per second of wall time of `requests` sent at once.
async fn aggregate_rate(model: &dyn ChatModel, requests: &[ChatCompletionRequest]) -> Result<f64> {
    let started = Instant::now();
    let outputs =
        futures::future::try_join_all(requests.iter().map(|r| model.complete(r.clone()))).await?;
    let tokens: u32 = outputs.iter().map(|o| o.usage.completion_tokens).sum();
    Ok(f64::from(tokens) / started.elapsed().as_secs_f64())
}

async fn measure(
    model: &dyn ChatModel,
    request: ChatCompletionRequest,
    reference: &ChatOutput,
) -> Result<Run> {
    let out = model.complete(request).await?;
    Ok(Run::of(&out, reference))
}

impl Run {
    /// Decode rates: plain decoding's tokens after the first over the time after the first text
    /// (prompt reading and one step); a speculative pipeline's tokens over the time after both
    /// models read the prompt (`prompt_ms` of its report).
    fn of(out: &ChatOutput, reference: &ChatOutput) -> Run {
        let detail = |key: &str| {
            out.report
                .strategies
                .first()
                .and_then(|s| s.details.get(key))
                .and_then(|v| v.as_f64())
        };
        let tokens = f64::from(out.usage.completion_tokens);
        let rate = match detail("prompt_ms") {
            Some(prompt_ms) => tokens / ((out.report.latency_ms - prompt_ms) / 1000.0),
            None => {
                let first = out.report.time_to_first_token_ms.unwrap_or(0.0);
                (tokens - 1.0) / ((out.report.latency_ms - first) / 1000.0)
            }
        };
        Run {
            tokens: out.usage.completion_tokens,
            rate,
            same_text: out.text == reference.text,
            acceptance: detail("acceptance_rate"),
            mean_draft: detail("mean_draft_length"),
            plain_steps: detail("plain_steps"),
        }
    }

    /// Plain decoding measured twice (once per pass): the mean rate.
    fn averaged_with(self, other: &Run) -> Run {
        Run {
            rate: (self.rate + other.rate) / 2.0,
            ..self
        }
    }
}

/// llama.cpp's own numbers on the same prompts.
struct LlamaCpp {
    plain_rate: f64,
    /// Per prompt: (llama-speculative, llama-lookup), each (tokens/s, acceptance).
    runs: Vec<[(f64, f64); 2]>,
}

async fn llama_cpp(
    dir: &Path,
    settings: &Settings,
    set: &PromptSet,
    target: &LlamaEngine,
) -> Result<LlamaCpp> {
    let threads = settings.threads.to_string();
    let n = settings.max_tokens.to_string();
    let k = settings.k.to_string();
    let p_min = settings.p_min.to_string();
    let target_path = settings.target.display().to_string();
    let draft_path = settings.draft.display().to_string();
    let bench = run_tool(
        &dir.join("llama-bench"),
        &[
            "-m",
            &target_path,
            "-p",
            "0",
            "-n",
            &n,
            "-t",
            &threads,
            "-r",
            "3",
            "-o",
            "json",
        ],
    )?;
    let plain_rate = llama_bench_tg(&bench)?;
    let mut runs = Vec::new();
    for prompt in &set.prompt {
        eprintln!("bench speculative: llama.cpp on {} ...", prompt.name);
        let text = target
            .model()
            .chat_text(&[Message::new(Role::User, prompt.text.as_str())])?;
        let common = [
            "-m",
            &target_path,
            "-p",
            &text,
            "-n",
            &n,
            "--temp",
            "0",
            "-t",
            &threads,
            "-c",
            "4096",
            "--spec-draft-n-max",
            &k,
        ];
        let mut speculative = common.to_vec();
        speculative.extend([
            "-md",
            &draft_path,
            "-td",
            &threads,
            "--spec-draft-p-min",
            &p_min,
        ]);
        let spec = parse_tool(&run_tool(&dir.join("llama-speculative"), &speculative)?)?;
        let lookup = parse_tool(&run_tool(&dir.join("llama-lookup"), &common)?)?;
        runs.push([spec, lookup]);
    }
    Ok(LlamaCpp { plain_rate, runs })
}

fn run_tool(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        bail!("{} failed ({}): {tail}", bin.display(), out.status);
    }
    Ok(text)
}

/// The mean tg rate of `llama-bench -o json`.
fn llama_bench_tg(json: &str) -> Result<f64> {
    let start = json.find('[').context("no JSON in llama-bench's output")?;
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&json[start..json.rfind(']').context("no JSON")? + 1])?;
    rows.iter()
        .find(|r| r["n_gen"].as_u64().unwrap_or(0) > 0)
        .and_then(|r| r["avg_ts"].as_f64())
        .context("no tg row in llama-bench's output")
}

/// (decode tokens/s, acceptance) from the summary that llama-speculative and llama-lookup print:
/// `decoded N tokens in S seconds, speed: R t/s`, `n_drafted = D`, `n_accept = A`. The line
/// before it, `encoded N tokens in S seconds, speed: R t/s`, is the prompt's rate.
fn parse_tool(output: &str) -> Result<(f64, f64)> {
    let after_in = |line_has: &str, key: &str| -> Option<&str> {
        let line = output
            .lines()
            .find(|l| l.contains(line_has) && l.contains(key))?;
        Some(line[line.find(key)? + key.len()..].trim())
    };
    let after = |key: &str| after_in(key, key);
    let rate = after_in(" decoded ", "speed:")
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .context("no `decoded ... speed:` in the tool's output")?;
    let number = |key: &str| {
        after(key)
            .and_then(|s| s.trim_start_matches('=').split_whitespace().next())
            .and_then(|s| s.parse::<f64>().ok())
    };
    let acceptance = match (number("n_drafted"), number("n_accept")) {
        (Some(d), Some(a)) if d > 0.0 => a / d,
        _ => 0.0,
    };
    Ok((rate, acceptance))
}

/// A path's file name, for reports.
fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn report(
    settings: &Settings,
    set: &PromptSet,
    modes: &[String],
    plain: &[Run],
    runs: &[Vec<Run>],
    llama: Option<&LlamaCpp>,
) -> String {
    let name = file_name;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Speculative decoding\n\ntarget {}, draft {}, {} threads per engine, greedy, up to {} \
         tokens, k = {}, p_min = {}\n",
        name(&settings.target),
        name(&settings.draft),
        settings.threads,
        settings.max_tokens,
        settings.k,
        settings.p_min
    );
    out.push_str(
        "| prompt | kind | mode | tokens | tok/s | vs plain | accepted | mean draft | plain steps | same text |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let mut ratios: Vec<(String, String, f64)> = Vec::new();
    for ((prompt, base), row) in set.prompt.iter().zip(plain).zip(runs) {
        let _ = writeln!(
            out,
            "| {} | {} | plain target | {} | {:.2} | 1.00 | | | | |",
            prompt.name, prompt.kind, base.tokens, base.rate
        );
        for (mode, run) in modes.iter().zip(row) {
            let ratio = run.rate / base.rate;
            ratios.push((prompt.kind.clone(), mode.to_string(), ratio));
            let opt = |v: Option<f64>, pct: bool| match v {
                Some(v) if pct => format!("{:.0}%", v * 100.0),
                Some(v) => format!("{v:.1}"),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "| | | {mode} | {} | {:.2} | {ratio:.2} | {} | {} | {} | {} |",
                run.tokens,
                run.rate,
                opt(run.acceptance, true),
                opt(run.mean_draft, false),
                opt(run.plain_steps, false),
                if run.same_text { "yes" } else { "no" }
            );
        }
        if let Some(llama) = llama {
            let i = set
                .prompt
                .iter()
                .position(|p| p.name == prompt.name)
                .unwrap_or(0);
            for (tool, (rate, acceptance)) in ["llama-speculative", "llama-lookup"]
                .iter()
                .zip(llama.runs[i])
            {
                let ratio = rate / llama.plain_rate;
                ratios.push((prompt.kind.clone(), tool.to_string(), ratio));
                let _ = writeln!(
                    out,
                    "| | | {tool} (vs llama-bench tg {:.2}) | | {rate:.2} | {ratio:.2} | {:.0}% | | | |",
                    llama.plain_rate,
                    acceptance * 100.0
                );
            }
        }
    }
    out.push_str("\nGeometric mean of the ratios against plain decoding, by kind of prompt:\n\n");
    out.push_str("| mode | writing | editing |\n|---|---:|---:|\n");
    let mut modes: Vec<String> = Vec::new();
    for (_, mode, _) in &ratios {
        if !modes.contains(mode) {
            modes.push(mode.clone());
        }
    }
    for mode in modes {
        let mean = |kind: &str| {
            let logs: Vec<f64> = ratios
                .iter()
                .filter(|(k, m, _)| k == kind && *m == mode)
                .map(|(_, _, r)| r.ln())
                .collect();
            if logs.is_empty() {
                String::new()
            } else {
                format!(
                    "{:.2}",
                    (logs.iter().sum::<f64>() / logs.len() as f64).exp()
                )
            }
        };
        let _ = writeln!(
            out,
            "| {mode} | {} | {} |",
            mean("writing"),
            mean("editing")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_set_has_both_kinds() {
        let set: PromptSet = toml::from_str(PROMPTS).unwrap();
        for kind in ["writing", "editing"] {
            assert!(
                set.prompt.iter().filter(|p| p.kind == kind).count() >= 2,
                "{kind}"
            );
        }
    }

    #[test]
    fn the_tools_summary_is_parsed() {
        let output =
            "0.47.868.041 I encoded  170 tokens in    3.267 seconds, speed:   52.031 t/s\n\
                      0.47.868.062 I decoded   25 tokens in   33.873 seconds, speed:    0.738 t/s\n\
                      0.47.868.093 I n_draft      = 8\n0.47.868.123 I n_drafted    = 40\n\
                      0.47.868.171 I n_accept     = 30\n";
        assert_eq!(parse_tool(output).unwrap(), (0.738, 0.75));
        assert!(parse_tool("nothing").is_err());
    }
}
