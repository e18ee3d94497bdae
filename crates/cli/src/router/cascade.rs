//! `tandem router calibrate --cascade PIPELINE`: a cascade's threshold from a sample of traffic.
//!
//! The cascade's small side is built as its pipeline builds it ([`Runtime::answer_scorer`]: the
//! small model or pipeline, the signal and its settings, the sandbox of `shown_examples`); it
//! answers a data set's prompts, asked as `tandem eval run` asks them (greedy, `--max-tokens`),
//! and scores each answer with the code the live cascade runs ([`score_sample`]). The threshold
//! that escalates the share of the sample closest to `--llm-share` ([`choose`]) is stored for the
//! pipeline with what it was calibrated on; the pipeline uses it while its configuration sets no
//! `threshold` and still names the same small model and scoring. An item whose answer could not
//! be scored (a failed self-check or agreement call, a failed sandbox) is reported, counted and
//! left out of the choice; the calibration fails only when too few answers were scored
//! ([`tandem_route::calibrate::MIN_SCORED`]).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use serde_json::json;
use tandem_core::openai::ChatCompletionRequest;
use tandem_fetch::Fetcher;
use tandem_route::calibrate::{choose, score_sample, Calibration, SampleScore};
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
    let requests = items
        .iter()
        .map(|item| ChatCompletionRequest {
            model: pipeline.to_string(),
            messages: item.messages.clone(),
            temperature: Some(0.0),
            max_tokens: Some(sample.max_tokens),
            ..ChatCompletionRequest::default()
        })
        .collect();
    let (done, progress) = (AtomicUsize::new(0), std::io::stderr().is_terminal());
    let scores = score_sample(&scorer, requests, sample.concurrency, |index, score| {
        let id = &items[index].id;
        match score {
            SampleScore::Scored(_) => {}
            SampleScore::Unanswered(why) => {
                eprintln!("item {id}: the small model gave no answer, which escalates: {why}")
            }
            SampleScore::Failed(why) => {
                eprintln!("item {id}: left out, its answer could not be scored: {why}")
            }
        }
        let done = done.fetch_add(1, Ordering::Relaxed) + 1;
        if progress {
            eprint!("\rscored {done} of {} answers", items.len());
            if done == items.len() {
                eprintln!();
            }
        }
    })
    .await;
    let calibration = choose(&scores, llm_share).map_err(|e| {
        anyhow::anyhow!(
            "cannot calibrate cascade `{pipeline}` on {}: {e}",
            dataset.name()
        )
    })?;
    let Calibration {
        threshold,
        items: sampled,
        scored,
        unanswered,
        failed,
        escalated,
        escalated_share,
    } = calibration;
    let provenance = json!({
        "dataset": dataset.name(),
        "prompt_version": dataset.prompt_version(),
        "items": sampled,
        "scored": scored,
        "unanswered": unanswered,
        "failed": failed,
        "llm_share": llm_share,
        "escalated": escalated,
        "escalated_share": escalated_share,
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

    let mut sorted: Vec<f64> = scores
        .iter()
        .filter_map(|score| match score {
            SampleScore::Scored(score) => Some(*score),
            _ => None,
        })
        .collect();
    sorted.sort_by(f64::total_cmp);
    if let (Some(low), Some(high)) = (sorted.first(), sorted.last()) {
        println!(
            "{scored} answers of `{}` scored by {}: lowest {low:.4}, median {:.4}, highest {high:.4}; {unanswered} without an answer, {failed} that could not be scored (left out)",
            cascade.small,
            cascade.signal.as_str(),
            sorted[sorted.len() / 2],
        );
    }
    let left_out = if failed > 0 {
        format!(", leaving out the {failed} it could not score")
    } else {
        String::new()
    };
    println!(
        "cascade `{pipeline}`: threshold {threshold} escalates {escalated} of {} prompts of {} ({:.1}%; asked {:.1}%){left_out}",
        scored + unanswered,
        dataset.name(),
        100.0 * escalated_share,
        100.0 * llm_share
    );
    println!(
        "stored for pipeline `{pipeline}`, which uses it while its configuration sets no `threshold`"
    );
    Ok(())
}
