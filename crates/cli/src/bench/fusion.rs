//! `tandem bench fusion`: what logit fusion and the uncertainty hand-off cost per token, against
//! each model decoding alone, on the prompt set of `bench speculative` (code writing and code
//! editing), greedy.
//!
//! For each prompt the small model alone, the large model alone, and every strategy run one after
//! the other, so all see the same machine conditions. A fused step evaluates both models (three for
//! proxy-tuning); a hand-off step evaluates the small model, and the large one only where the
//! small is unsure (its first catch-up reads the prompt too). Rates are answer tokens over the
//! wall time of the whole answer, prompt reading included, since a hand-off's prompt cost falls
//! inside decoding; every rate is measured the same way.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Deserialize;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::{ChatModel, ChatOutput};
use tandem_llama::fusion::{Fusion, Mode, Uncertainty};
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

/// What `bench fusion` runs.
pub struct Settings {
    pub large: PathBuf,
    pub small: PathBuf,
    pub threads: i32,
    pub max_tokens: u32,
    /// Contrastive decoding's alphas (beta is 0.1).
    pub alphas: Vec<f32>,
    /// Hand-off thresholds on the small model's top probability.
    pub thresholds: Vec<f64>,
}

/// One mode's answers, summed over the prompts.
#[derive(Default)]
struct Total {
    tokens: u64,
    seconds: f64,
    from_large: f64,
    handoffs: f64,
    same_as_large: usize,
    /// Per prompt: tokens/s.
    rates: Vec<f64>,
}

impl Total {
    fn add(&mut self, out: &ChatOutput, seconds: f64, large: Option<&ChatOutput>) {
        let detail = |key: &str| {
            out.report
                .strategies
                .first()
                .and_then(|s| s.details.get(key))
                .and_then(|v| v.as_f64())
        };
        let tokens = u64::from(out.usage.completion_tokens);
        self.tokens += tokens;
        self.seconds += seconds;
        self.from_large += detail("tokens_from_large").unwrap_or(0.0);
        self.handoffs += detail("handoffs").unwrap_or(0.0);
        self.same_as_large += usize::from(large.is_some_and(|l| l.text == out.text));
        self.rates.push(tokens as f64 / seconds);
    }

    fn rate(&self) -> f64 {
        self.tokens as f64 / self.seconds
    }
}

pub async fn run(settings: Settings) -> Result<String> {
    let set: PromptSet = toml::from_str(PROMPTS).context("the built-in prompt set")?;
    let threads = settings.threads;
    let load = |path: PathBuf, name: &'static str| async move {
        tokio::task::spawn_blocking(move || -> Result<Arc<LlamaEngine>> {
            let model = LoadedModel::load(&path, None, 0)?;
            let mut options = EngineOptions::new(name);
            options.threads = threads;
            // Proxy-tuning holds two sequences of the small model per request.
            options.parallel = 2;
            options.context_size = 4096;
            Ok(Arc::new(LlamaEngine::start(model, options)?))
        })
        .await?
    };
    let large = load(settings.large.clone(), "large").await?;
    let small = load(settings.small.clone(), "small").await?;

    let mut modes: Vec<(String, Arc<dyn ChatModel>)> = vec![
        ("large alone".into(), large.clone()),
        ("small alone".into(), small.clone()),
    ];
    for &alpha in &settings.alphas {
        let mode = Mode::Contrastive {
            small: small.clone(),
            alpha,
            beta: 0.1,
        };
        modes.push((
            format!("contrastive, alpha {alpha}"),
            Arc::new(Fusion::new("bench", large.clone(), mode)?),
        ));
    }
    // No tuned/untuned pair of this vocabulary is at hand: the small model stands for both, which
    // leaves the large model's answer and shows the cost of three evaluations per token.
    let proxy = Mode::ProxyTune {
        tuned: small.clone(),
        untuned: small.clone(),
    };
    modes.push((
        "proxy-tuning (tuned = untuned = small)".into(),
        Arc::new(Fusion::new("bench", large.clone(), proxy)?),
    ));
    for &threshold in &settings.thresholds {
        let mode = Mode::Handoff {
            small: small.clone(),
            uncertainty: Uncertainty::TopProbability,
            threshold,
            takeover: 1,
        };
        modes.push((
            format!("hand-off, top p <= {threshold}"),
            Arc::new(Fusion::new("bench", large.clone(), mode)?),
        ));
    }

    let request = |text: &str| ChatCompletionRequest {
        model: "bench".into(),
        messages: vec![Message::new(Role::User, text)],
        temperature: Some(0.0),
        max_tokens: Some(settings.max_tokens),
        ..Default::default()
    };
    // Untimed warm-up of both engines.
    large.complete(request("Say hi.")).await?;
    small.complete(request("Say hi.")).await?;

    let mut totals: Vec<Total> = modes.iter().map(|_| Total::default()).collect();
    for prompt in &set.prompt {
        eprintln!("bench fusion: {} ...", prompt.name);
        let mut large_out = None;
        for (i, (_, model)) in modes.iter().enumerate() {
            let started = Instant::now();
            let out = model.complete(request(&prompt.text)).await?;
            let seconds = started.elapsed().as_secs_f64();
            totals[i].add(&out, seconds, large_out.as_ref());
            if i == 0 {
                large_out = Some(out);
            }
        }
    }
    Ok(report(&settings, &set, &modes, &totals))
}

fn report(
    settings: &Settings,
    set: &PromptSet,
    modes: &[(String, Arc<dyn ChatModel>)],
    totals: &[Total],
) -> String {
    let name = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Logit fusion and hand-off: cost per token\n\nlarge {}, small {}, {} threads per \
         engine, greedy, up to {} tokens, {} prompts ({}); rates are answer tokens over each \
         answer's wall time, prompt included\n",
        name(&settings.large),
        name(&settings.small),
        settings.threads,
        settings.max_tokens,
        set.prompt.len(),
        set.prompt
            .iter()
            .map(|p| format!("{} ({})", p.name, p.kind))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (large_rate, small_rate) = (totals[0].rate(), totals[1].rate());
    out.push_str(
        "| mode | tokens | tok/s | vs small | vs large | large-token share | hand-offs | same text as large | per prompt tok/s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (i, ((mode, _), total)) in modes.iter().zip(totals).enumerate() {
        let share = match i {
            0 => 1.0,
            1 => 0.0,
            _ => total.from_large / total.tokens.max(1) as f64,
        };
        let _ = writeln!(
            out,
            "| {mode} | {} | {:.2} | {:.2} | {:.2} | {:.0}% | {} | {}/{} | {} |",
            total.tokens,
            total.rate(),
            total.rate() / small_rate,
            total.rate() / large_rate,
            share * 100.0,
            total.handoffs,
            if i == 0 {
                set.prompt.len()
            } else {
                total.same_as_large
            },
            set.prompt.len(),
            total
                .rates
                .iter()
                .map(|r| format!("{r:.1}"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    out
}
