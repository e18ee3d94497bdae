//! `tandem router evaluate`: every routing score measured side by side on the same held-out items,
//! from the stored outcomes of a small and a large model, with RouteLLM's metrics (APGR, CPT) and
//! plots of quality against the share of large-model calls and against cost.
//!
//! A score is higher where the large model is more likely needed. Scores of a router are computed
//! from the prompt alone: the learned routers (nearest neighbours and logistic regression on the
//! prompt's sentence embedding, fitted without the item: train split, else k-fold) and the small
//! model's perplexity of the prompt. Scores of a cascade come from the small model's stored answer,
//! scored the way a cascade would score it live: its token probabilities (the answer teacher-forced
//! through the small model), the small model's own yes/no verdict on it, and, where the item shows
//! examples (a code task's docstring), the share of them the answer passes in the sandbox.
//!
//! A cascade always pays for the small attempt: its cost is the small model's on every item plus
//! the large model's on the escalated ones. Prices come from the configuration's models.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;
use tandem_core::openai::{ChatCompletionRequest, Message, Usage};
use tandem_core::{ChatModel, Pricing};
use tandem_eval::plot::{write_curves, Curve};
use tandem_eval::runner::Generation;
use tandem_eval::store::Filter;
use tandem_eval::{Item, Outcome, Split};
use tandem_fetch::Fetcher;
use tandem_llama::LlamaEngine;
use tandem_route::cascade::ScoreOptions;
use tandem_route::quality::{routing_quality, ties_highest_first, RoutingQuality, Scored};
use tandem_route::router::mean_negative_log_likelihood;
use tandem_route::signal::{sampled_agreement, self_check_request, yes_probability, Signal};
use tandem_route::Learner;

use super::{
    cross_validate, cross_validation_note, label, outcomes_of, random_baseline, train_test,
};
use crate::config::Config;
use crate::eval::{DataArgs, StoreArgs};
use crate::runtime::Runtime;

#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    #[arg(long)]
    dataset: String,
    /// The dataset's prompt the outcomes were generated with (`tandem eval datasets`)
    #[arg(long)]
    prompt: Option<String>,
    /// The small model (a local model of the configuration: its answers are scored again)
    #[arg(long)]
    small: String,
    #[arg(long)]
    large: String,
    /// Folds of the cross-validation, for data sets without a train split
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// The sentence-embedding model of the learned routers (a catalog name)
    #[arg(long, default_value = "all-minilm-l6-v2")]
    embedder: String,
    /// Extra answers the `agreement` score samples from the small model for each item, as a
    /// cascade with `signal = "agreement"` does (0 leaves the score out)
    #[arg(long, default_value_t = ScoreOptions::new(Signal::Agreement).samples)]
    agreement_samples: u32,
    /// Sampling temperature of those answers
    #[arg(long, default_value_t = ScoreOptions::new(Signal::Agreement).sample_temperature)]
    agreement_temperature: f32,
    /// Where report.md, scores.json and the plots are written
    #[arg(long, default_value = "routing-report")]
    out: PathBuf,
    #[command(flatten)]
    outcomes: StoreArgs,
    #[command(flatten)]
    pub(super) data: DataArgs,
}

/// Shares of large-model calls at which the table gives the quality.
const SHARES: [f64; 3] = [0.2, 0.4, 0.6];

/// One routing score over the held-out items.
#[derive(Debug, Clone, Serialize)]
struct Method {
    name: String,
    /// `router` (decides from the prompt) or `cascade` (decides from the small model's answer).
    kind: &'static str,
    /// The items it could score; the rest count as unscored (score 0.5, the middle).
    scored: usize,
    quality: RoutingQuality,
    /// Mean cost per item at each point of `quality.curve`.
    cost_per_item: Vec<f64>,
}

pub async fn run(args: EvaluateArgs, config: Config, fetcher: &Fetcher) -> Result<()> {
    let dataset = args
        .data
        .load(&args.dataset, args.prompt.as_deref(), &fetcher.cache_dir)
        .await?;
    let store = args.outcomes.open(&fetcher.cache_dir)?;
    let small_outcomes = outcomes_of(&store, dataset.as_ref(), &args.small)?;
    let large_outcomes = outcomes_of(&store, dataset.as_ref(), &args.large)?;
    let items: Vec<&Item> = dataset
        .items()
        .iter()
        .filter(|i| small_outcomes.contains_key(&i.id) && large_outcomes.contains_key(&i.id))
        .collect();
    let has_split = items.iter().any(|i| i.split == Split::Train)
        && items.iter().any(|i| i.split == Split::Test);
    let held_out: Vec<&Item> = items
        .iter()
        .copied()
        .filter(|i| !has_split || i.split == Split::Test)
        .collect();
    anyhow::ensure!(
        held_out.len() >= args.folds.max(4),
        "only {} held-out items of `{}` have outcomes for both `{}` and `{}`",
        held_out.len(),
        dataset.name(),
        args.small,
        args.large
    );
    let method_note = if has_split {
        "learned routers fitted on the train split, every score measured on the test split"
            .to_string()
    } else {
        format!(
            "learned routers by {}",
            cross_validation_note(args.folds, dataset.as_ref())
        )
    };
    eprintln!(
        "{} held-out items of {}; {method_note}",
        held_out.len(),
        dataset.name()
    );

    let pricing = |name: &str| -> Result<Pricing> {
        Ok(config
            .models
            .get(name)
            .with_context(|| format!("no model `{name}` in the configuration"))?
            .pricing())
    };
    let cost = |pricing: &Pricing, outcome: &Outcome| {
        pricing.cost(Usage {
            prompt_tokens: outcome.prompt_tokens,
            completion_tokens: outcome.completion_tokens,
            total_tokens: outcome.prompt_tokens + outcome.completion_tokens,
            prompt_tokens_details: None,
        })
    };
    let (small_price, large_price) = (pricing(&args.small)?, pricing(&args.large)?);
    let costs: Vec<(f64, f64)> = held_out
        .iter()
        .map(|i| {
            (
                cost(&small_price, &small_outcomes[&i.id]),
                cost(&large_price, &large_outcomes[&i.id]),
            )
        })
        .collect();
    let outcome_pairs: Vec<(bool, bool)> = held_out
        .iter()
        .map(|i| (small_outcomes[&i.id].passed, large_outcomes[&i.id].passed))
        .collect();
    let method_with_costs =
        |name: &str, kind: &'static str, scores: &[Option<f64>], costs: &[(f64, f64)]| {
            let scored: Vec<Scored> = scores
                .iter()
                .zip(&outcome_pairs)
                .map(|(score, &(small_passed, large_passed))| Scored {
                    score: score.unwrap_or(0.5),
                    small_passed,
                    large_passed,
                })
                .collect();
            let quality = routing_quality(&scored);
            let cost_per_item = curve_costs(&scored, costs, kind == "cascade");
            Method {
                name: name.to_string(),
                kind,
                scored: scores.iter().filter(|s| s.is_some()).count(),
                quality,
                cost_per_item,
            }
        };
    let method = |name: &str, kind: &'static str, scores: &[Option<f64>]| {
        method_with_costs(name, kind, scores, &costs)
    };

    let mut methods = Vec::new();
    // Learned routers, each item scored by a router fitted without it.
    let vectors = super::embed_prompts(fetcher, &args.embedder, &items).await?;
    let labelled = label(&items, vectors, &small_outcomes, &large_outcomes);
    for (learner, name) in [(Learner::Knn, "knn"), (Learner::Logistic, "logistic")] {
        let scored = if has_split {
            train_test(learner, &labelled)?
        } else {
            cross_validate(learner, &labelled, args.folds)?
        };
        // Both return the held-out items in item order.
        let scores: Vec<Option<f64>> = scored.iter().map(|s| Some(s.score)).collect();
        methods.push(method(name, "router", &scores));
    }

    // Scores that need the small model.
    let runtime = Runtime::load(config.clone(), fetcher, std::slice::from_ref(&args.small)).await?;
    let engine = runtime.engine(&args.small)?;
    let chat = runtime.model(&args.small)?;
    let mut perplexity = Vec::new();
    let mut mean_probability = Vec::new();
    let mut min_probability = Vec::new();
    let mut self_check = Vec::new();
    let mut examples = Vec::new();
    let mut agreed = Vec::new();
    let mut agreement_costs = costs.clone();
    let small_generation = generation_of(&store, dataset.as_ref(), &small_outcomes)?;
    for (n, item) in held_out.iter().enumerate() {
        let answer = small_outcomes[&item.id].output.clone().unwrap_or_default();
        let prompt = engine.model().chat_prompt(&item.messages)?;
        let (prompt_loss, losses) = teacher_forced(&engine, &prompt, &answer).await?;
        perplexity.push(Some(prompt_loss));
        // exp(mean logprob) and exp(min logprob) of the answer, as the cascade's signals; an
        // empty answer has probability 0 (nothing to trust).
        let mean_loss = (!losses.is_empty()).then(|| mean(losses.iter().copied()));
        let max_loss = losses.iter().copied().reduce(f64::max);
        mean_probability.push(Some(1.0 - mean_loss.map_or(0.0, |l| (-l).exp())));
        min_probability.push(Some(1.0 - max_loss.map_or(0.0, |l| (-l).exp())));
        self_check.push(Some(
            1.0 - self_check_score(&chat, &item.messages, &answer).await?,
        ));
        let shown = dataset.check_shown_examples(item, &answer).await?;
        examples.push(shown.map(|s| 1.0 - s.share()));
        if args.agreement_samples > 0 {
            // Sampled as the cascade samples them live, for the run's own request.
            let (score, samples) = sampled_agreement(
                chat.as_ref(),
                &small_generation.request(&args.small, item),
                &answer,
                args.agreement_samples,
                args.agreement_temperature,
            )
            .await?;
            agreed.push(Some(1.0 - score));
            agreement_costs[n].0 += samples
                .iter()
                .map(|s| small_price.cost(s.usage))
                .sum::<f64>();
        }
        if (n + 1) % 20 == 0 {
            eprintln!("scored {} of {} answers", n + 1, held_out.len());
        }
    }
    methods.push(method("perplexity", "router", &perplexity));
    methods.push(method("mean_logprob", "cascade", &mean_probability));
    methods.push(method("min_logprob", "cascade", &min_probability));
    methods.push(method("self_check", "cascade", &self_check));
    if args.agreement_samples > 0 {
        // A cascade on agreement pays for the samples too.
        methods.push(method_with_costs(
            "agreement",
            "cascade",
            &agreed,
            &agreement_costs,
        ));
    }
    if examples.iter().any(Option::is_some) {
        methods.push(method("shown_examples", "cascade", &examples));
    }

    let scored_pairs: Vec<Scored> = outcome_pairs
        .iter()
        .map(|&(small_passed, large_passed)| Scored {
            score: 0.0,
            small_passed,
            large_passed,
        })
        .collect();
    let random = random_baseline(&scored_pairs);
    let base = routing_quality(&scored_pairs);
    let report = Report {
        dataset: dataset.name().to_string(),
        prompt_version: dataset.prompt_version().to_string(),
        small: args.small.clone(),
        large: args.large.clone(),
        items: held_out.len(),
        method: method_note,
        random_apgr: random.apgr,
        small_cost_per_item: mean(costs.iter().map(|c| c.0)),
        large_cost_per_item: mean(costs.iter().map(|c| c.1)),
        oracle_quality: base.oracle_quality,
        oracle_large_share: base.oracle_large_share,
        methods,
    };
    write_report(&report, &args.out)
}

/// Cost per item at each point of the quality curve: routing the highest-scored items to the large
/// model, a run of tied scores in expectation (as [`routing_quality`] counts it). A cascade pays
/// for the small attempt on every item.
fn curve_costs(scored: &[Scored], costs: &[(f64, f64)], cascade: bool) -> Vec<f64> {
    let indexed: Vec<(usize, f64)> = scored.iter().map(|s| s.score).enumerate().collect();
    let n = scored.len().max(1) as f64;
    let mut total: f64 = costs.iter().map(|c| c.0).sum();
    let mut curve = vec![total / n];
    for (_, ties) in ties_highest_first(&indexed, |&(_, score)| score) {
        let extra = ties
            .iter()
            .map(|&&(i, _)| {
                if cascade {
                    costs[i].1
                } else {
                    costs[i].1 - costs[i].0
                }
            })
            .sum::<f64>()
            / ties.len() as f64;
        for _ in &ties {
            total += extra;
            curve.push(total / n);
        }
    }
    curve
}

/// One teacher-forced pass of the small model over `prompt` followed by `answer`: the prompt's
/// mean `-ln p(token)` (the perplexity router's score, as [`mean_negative_log_likelihood`] computes
/// it: a causal model's prompt losses do not depend on what follows) and `-ln p(token)` of each
/// token of the answer as re-tokenized from its text.
async fn teacher_forced(
    engine: &LlamaEngine,
    prompt: &[i32],
    answer: &str,
) -> Result<(f64, Vec<f64>)> {
    let answer_tokens = engine.model().tokenize(answer, false);
    if answer_tokens.is_empty() {
        return Ok((
            mean_negative_log_likelihood(engine, prompt).await?,
            Vec::new(),
        ));
    }
    let mut tokens = prompt.to_vec();
    tokens.extend(&answer_tokens);
    let mut losses = engine.open_sequence().await?.token_losses(&tokens).await?;
    let answer_losses = losses.split_off(losses.len().saturating_sub(answer_tokens.len()));
    // `losses` now holds the prompt's tokens after its first.
    let prompt_loss = if prompt.len() < 2 {
        0.0
    } else {
        mean(losses.iter().copied())
    };
    Ok((prompt_loss, answer_losses))
}

/// The generation parameters of the run that `outcomes` (one run's, as [`outcomes_of`] picks
/// them) came from, so that extra answers are asked for as the stored one was.
fn generation_of(
    store: &tandem_eval::Store,
    dataset: &dyn tandem_eval::Dataset,
    outcomes: &BTreeMap<String, Outcome>,
) -> Result<Generation> {
    let hash = outcomes
        .values()
        .next()
        .map(|o| o.settings_hash.clone())
        .context("no stored outcomes")?;
    let filter = Filter {
        dataset: Some(dataset.name().to_string()),
        models: Vec::new(),
        split: None,
    };
    let run = store
        .runs(&filter)?
        .into_iter()
        .find(|run| run.settings_hash == hash)
        .with_context(|| format!("no stored run {hash}"))?;
    serde_json::from_value(run.settings["settings"]["generation"].clone())
        .with_context(|| format!("the stored run {hash} has no readable generation settings"))
}

/// The small model's P(yes) that its answer is right (the cascade's `self_check`).
async fn self_check_score(
    chat: &Arc<dyn ChatModel>,
    messages: &[Message],
    answer: &str,
) -> Result<f64> {
    let request = ChatCompletionRequest {
        messages: messages.to_vec(),
        ..Default::default()
    };
    let output = chat.complete(self_check_request(&request, answer)).await?;
    let first = output.logprobs.and_then(|l| l.into_iter().next());
    Ok(yes_probability(first.as_ref()))
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

#[derive(Debug, Serialize)]
struct Report {
    dataset: String,
    prompt_version: String,
    small: String,
    large: String,
    items: usize,
    method: String,
    random_apgr: Option<f64>,
    small_cost_per_item: f64,
    large_cost_per_item: f64,
    oracle_quality: f64,
    oracle_large_share: f64,
    methods: Vec<Method>,
}

fn write_report(report: &Report, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    let share_opt = |v: Option<f64>| v.map_or("n/a".to_string(), pct);
    let mut md = String::new();
    let first = &report.methods[0].quality;
    md.push_str(&format!(
        "{} ({}), {} held-out items; {}. Small `{}`: {}, large `{}`: {}, oracle {} with {} large \
         calls. Random routing: APGR {}.\n\n",
        report.dataset,
        report.prompt_version,
        report.items,
        report.method,
        report.small,
        pct(first.small_quality),
        report.large,
        pct(first.large_quality),
        pct(report.oracle_quality),
        pct(report.oracle_large_share),
        opt(report.random_apgr),
    ));
    md.push_str("| score | kind | items scored | APGR | CPT(50%) | CPT(80%) |");
    for share in SHARES {
        md.push_str(&format!(" quality at {} large |", pct(share)));
    }
    md.push_str(" cost per item at CPT(80%) |\n|---|---|---|---|---|---|");
    md.push_str(&"---|".repeat(SHARES.len() + 1));
    md.push('\n');
    for m in &report.methods {
        let q = &m.quality;
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |",
            m.name,
            m.kind,
            m.scored,
            opt(q.apgr),
            share_opt(q.cpt50),
            share_opt(q.cpt80)
        ));
        for share in SHARES {
            md.push_str(&format!(" {} |", pct(quality_at(q, share))));
        }
        let at_cpt80 = q.cpt80.map(|share| {
            let point = (share * (m.cost_per_item.len() - 1) as f64).round() as usize;
            m.cost_per_item[point]
        });
        md.push_str(&format!(
            " {} |\n",
            at_cpt80.map_or("n/a".into(), |c| format!("${c:.6}"))
        ));
    }
    md.push_str(&format!(
        "\nAlways small: ${:.6} per item; always large: ${:.6} per item.\n",
        report.small_cost_per_item, report.large_cost_per_item
    ));
    std::fs::write(out.join("report.md"), &md)?;
    std::fs::write(
        out.join("scores.json"),
        serde_json::to_string_pretty(report)?,
    )?;

    let stem = format!("{}-routing", report.dataset);
    let share_curves: Vec<Curve> = report
        .methods
        .iter()
        .map(|m| Curve {
            label: format!("{} ({})", m.name, m.kind),
            points: m
                .quality
                .curve
                .iter()
                .map(|p| (100.0 * p.large_share, 100.0 * p.quality))
                .collect(),
        })
        .collect();
    let oracle = (
        "oracle".to_string(),
        100.0 * report.oracle_large_share,
        100.0 * report.oracle_quality,
    );
    let title = format!(
        "{}: quality against large-model calls ({} held-out items)",
        report.dataset, report.items
    );
    write_curves(
        out,
        &format!("{stem}-vs-share"),
        &title,
        "large-model calls (%)",
        "quality (%)",
        &share_curves,
        std::slice::from_ref(&oracle),
    )?;
    let cost_curves: Vec<Curve> = report
        .methods
        .iter()
        .map(|m| Curve {
            label: format!("{} ({})", m.name, m.kind),
            points: m
                .cost_per_item
                .iter()
                .zip(&m.quality.curve)
                .map(|(c, p)| (*c, 100.0 * p.quality))
                .collect(),
        })
        .collect();
    let oracle_cost = report.small_cost_per_item * (1.0 - report.oracle_large_share)
        + report.large_cost_per_item * report.oracle_large_share;
    write_curves(
        out,
        &format!("{stem}-vs-cost"),
        &format!("{}: quality against cost per item", report.dataset),
        "cost per item (USD)",
        "quality (%)",
        &cost_curves,
        &[(
            "oracle (approx.)".to_string(),
            oracle_cost,
            100.0 * report.oracle_quality,
        )],
    )?;
    print!("{md}");
    println!("written to {}", out.display());
    Ok(())
}

/// The quality of the curve's point nearest `share` of large-model calls.
fn quality_at(quality: &RoutingQuality, share: f64) -> f64 {
    quality
        .curve
        .iter()
        .min_by(|a, b| {
            (a.large_share - share)
                .abs()
                .total_cmp(&(b.large_share - share).abs())
        })
        .map_or(0.0, |p| p.quality)
}
