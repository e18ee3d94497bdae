//! `tandem router calibrate --cascade PIPELINE`: a cascade's threshold from a sample of traffic.
//!
//! The cascade's small side is built as its pipeline builds it ([`Runtime::answer_scorer`]: the
//! small model or pipeline, the signal and its settings, the sandbox of `shown_examples`); it
//! answers a data set's prompts, asked as `tandem eval run` asks them (greedy, `--max-tokens`),
//! and scores each answer with the code the live cascade runs. The threshold that escalates the
//! share of the sample closest to `--llm-share` ([`escalation_threshold`]) is stored for the
//! pipeline with what it was calibrated on; the pipeline uses it while its configuration sets no
//! `threshold` and still names the same small model and scoring.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tandem_core::openai::ChatCompletionRequest;
use tandem_fetch::Fetcher;
use tandem_route::quality::escalation_threshold;
use tandem_store::{Store, StoredCascade};

use super::now_ms;
use crate::config::{Config, PipelineConfig};
use crate::eval::DataArgs;
use crate::pipeline;
use crate::runtime::Runtime;

/// The prompts a cascade is calibrated on, and how they are asked.
pub struct Sample {
    pub dataset: String,
    pub prompt: Option<String>,
    /// Only the first N items.
    pub limit: Option<usize>,
    pub max_tokens: u32,
    /// Prompts answered at once.
    pub concurrency: usize,
    pub data: DataArgs,
}

/// Calibrates cascade `pipeline` so that a share `llm_share` of the sample escalates, and stores
/// the threshold.
pub async fn calibrate(
    pipeline: &str,
    llm_share: f64,
    sample: Sample,
    config: Config,
    fetcher: &Fetcher,
    store: &dyn Store,
) -> Result<()> {
    let cascade = match config.pipelines.get(pipeline) {
        Some(PipelineConfig::Cascade(cascade)) => cascade.clone(),
        Some(other) => {
            let strategy = serde_json::to_value(other)?["strategy"].clone();
            anyhow::bail!("pipeline `{pipeline}` is not a cascade (strategy = {strategy})")
        }
        None => anyhow::bail!(
            "no pipeline is called `{pipeline}` in the configuration (known: {})",
            config
                .pipelines
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dataset = sample
        .data
        .load(
            &sample.dataset,
            sample.prompt.as_deref(),
            &fetcher.cache_dir,
        )
        .await?;
    let items = &dataset.items()[..sample
        .limit
        .unwrap_or(usize::MAX)
        .min(dataset.items().len())];
    anyhow::ensure!(!items.is_empty(), "no prompts to calibrate on");

    let mut runtime = Runtime::load(config, fetcher, std::slice::from_ref(&cascade.small)).await?;
    let scorer = runtime.answer_scorer(pipeline).await?;
    let (scorer, dataset_name, max_tokens) = (&scorer, dataset.name(), sample.max_tokens);
    let (done, progress) = (&AtomicUsize::new(0), std::io::stderr().is_terminal());
    let scores: Vec<Option<f64>> = futures::stream::iter(items)
        .map(|item| async move {
            let request = ChatCompletionRequest {
                model: pipeline.to_string(),
                messages: item.messages.clone(),
                temperature: Some(0.0),
                max_tokens: Some(max_tokens),
                ..ChatCompletionRequest::default()
            };
            let attempt = scorer
                .attempt(&request)
                .await
                .with_context(|| format!("item {} of {dataset_name}", item.id))?;
            if let Err(e) = &attempt.answer {
                eprintln!(
                    "item {}: the small model gave no answer, which escalates: {e}",
                    item.id
                );
            }
            let done = done.fetch_add(1, Ordering::Relaxed) + 1;
            if progress {
                eprint!("\rscored {done} of {} answers", items.len());
                if done == items.len() {
                    eprintln!();
                }
            }
            anyhow::Ok(attempt.score)
        })
        .buffered(sample.concurrency)
        .try_collect()
        .await?;

    let (threshold, escalated) =
        escalation_threshold(&scores, llm_share).expect("the sample is not empty");
    let reached = escalated as f64 / scores.len() as f64;
    let unscored = scores.iter().filter(|s| s.is_none()).count();
    let provenance = json!({
        "dataset": dataset.name(),
        "prompt_version": dataset.prompt_version(),
        "items": scores.len(),
        "unscored": unscored,
        "llm_share": llm_share,
        "escalated": escalated,
        "escalated_share": reached,
        "max_tokens": sample.max_tokens,
        "temperature": 0.0,
    });
    let scoring = pipeline::scoring(&cascade);
    store.save_cascade(&StoredCascade {
        pipeline: pipeline.to_string(),
        threshold,
        small: cascade.small.clone(),
        scoring: scoring.to_string(),
        provenance: provenance.to_string(),
        updated_ms: now_ms(),
    })?;

    let mut sorted: Vec<f64> = scores.iter().flatten().copied().collect();
    sorted.sort_by(f64::total_cmp);
    if let (Some(low), Some(high)) = (sorted.first(), sorted.last()) {
        println!(
            "{} answers of `{}` scored by {}: lowest {low:.4}, median {:.4}, highest {high:.4}; {unscored} without an answer",
            sorted.len(),
            cascade.small,
            cascade.signal.as_str(),
            sorted[sorted.len() / 2],
        );
    }
    println!(
        "cascade `{pipeline}`: threshold {threshold} escalates {escalated} of {} prompts of {} ({:.1}%; asked {:.1}%)",
        scores.len(),
        dataset.name(),
        100.0 * reached,
        100.0 * llm_share
    );
    println!(
        "stored for pipeline `{pipeline}`, which uses it while its configuration sets no `threshold`"
    );
    Ok(())
}
