//! `tandem router`: fit routers from the evaluation harness's stored outcomes, measure them on
//! held-out items only, keep them in the state store, and calibrate their thresholds.
//!
//! A training item is a dataset prompt both models have an outcome for. Its label says whether the
//! large model should answer it: the small model failed and the large one passed. Data sets with a
//! train split (GSM-symbolic: items 0-199) are fitted on it and measured on the test split; data sets
//! without one (HumanEval) are measured by k-fold cross-validation, and the stored router is then
//! fitted on every item. `tandem router evaluate` measures every router and cascade score side by
//! side on the same held-out items ([`evaluate`]). `tandem router calibrate --cascade` sets a
//! cascade pipeline's threshold from a sample of traffic ([`cascade`]).

mod cascade;
mod evaluate;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;
use tandem_eval::store::Filter;
use tandem_eval::{Outcome, Split, Store as OutcomeStore};
use tandem_fetch::Fetcher;
use tandem_route::quality::{routing_quality, threshold_for_share, RoutingQuality, Scored};
use tandem_route::router::query_text;
use tandem_route::{Example, LearnedRouter, Learner};
use tandem_store::{SqliteStore, Store, StoredRouter};

use crate::config::Config;
use crate::embed::load_from_catalog;
use crate::eval::{DataArgs, StoreArgs};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum RouterCommand {
    /// Fit a router from stored outcomes of a small and a large model, report its quality on
    /// held-out items, and store it under a name
    Train {
        #[arg(long)]
        name: String,
        #[arg(long)]
        dataset: String,
        /// The dataset's prompt the outcomes were generated with (`tandem eval datasets`)
        #[arg(long)]
        prompt: Option<String>,
        #[arg(long)]
        small: String,
        #[arg(long)]
        large: String,
        #[arg(long, value_enum, default_value = "knn")]
        learner: LearnerArg,
        /// Folds of the cross-validation, for data sets without a train split
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// The sentence-embedding model (a catalog name)
        #[arg(long, default_value = "all-minilm-l6-v2")]
        embedder: String,
        #[command(flatten)]
        outcomes: StoreArgs,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Set a stored router's threshold so that a share of the prompts of a data set (a sample
    /// of traffic) goes to the large model; with --cascade, a cascade pipeline's threshold so
    /// that a share of its small model's answers to them escalates
    Calibrate {
        /// The stored router
        #[arg(long, required_unless_present = "cascade", conflicts_with = "cascade")]
        name: Option<String>,
        /// A cascade pipeline of the configuration: its small model answers the prompts, its
        /// signal scores the answers, and the threshold is stored for the pipeline
        #[arg(long)]
        cascade: Option<String>,
        /// Share of requests the large model should answer, in [0, 1]
        #[arg(long)]
        llm_share: f64,
        /// The prompts to calibrate on [default for a router: the data set it was trained on]
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long)]
        prompt: Option<String>,
        /// Only the first N prompts of the data set
        #[arg(long)]
        limit: Option<usize>,
        /// Cascades: the longest answer of the small model, in tokens (greedy, as `eval run`)
        /// [default: 512]
        #[arg(long, requires = "cascade")]
        max_tokens: Option<u32>,
        /// Cascades: prompts answered at once (set the small model's `parallel` at least as high)
        #[arg(long, requires = "cascade", value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: Option<u16>,
        #[arg(long, default_value = "all-minilm-l6-v2")]
        embedder: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Measure every routing score side by side on held-out items from stored outcomes: the
    /// learned routers, the small model's prompt perplexity, and the cascade scores of the small
    /// model's stored answers; writes a table and plots
    Evaluate(evaluate::EvaluateArgs),
    /// List the stored routers, how they were trained and their thresholds, and the calibrated
    /// thresholds of cascades
    Show,
}

impl RouterCommand {
    /// Lets the command run code unisolated (`[eval] allow_unisolated` of the configuration): loading
    /// a data set that runs code checks the sandbox.
    pub fn allow_unisolated(&mut self) {
        match self {
            RouterCommand::Train { data, .. } | RouterCommand::Calibrate { data, .. } => {
                data.allow_unisolated = true
            }
            RouterCommand::Evaluate(args) => args.data.allow_unisolated = true,
            RouterCommand::Show => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LearnerArg {
    Knn,
    Logistic,
}

impl From<LearnerArg> for Learner {
    fn from(arg: LearnerArg) -> Learner {
        match arg {
            LearnerArg::Knn => Learner::Knn,
            LearnerArg::Logistic => Learner::Logistic,
        }
    }
}

pub async fn run(command: RouterCommand, config: Config, fetcher: &Fetcher) -> Result<()> {
    let state = &config.store.path();
    let cache_dir = &fetcher.cache_dir;
    let store = SqliteStore::open(state)?;
    match command {
        RouterCommand::Train {
            name,
            dataset,
            prompt,
            small,
            large,
            learner,
            folds,
            embedder,
            outcomes,
            data,
        } => {
            if folds < 2 {
                bail!("--folds must be at least 2");
            }
            let dataset = data.load(&dataset, prompt.as_deref(), cache_dir).await?;
            let outcomes = outcomes.open(cache_dir)?;
            let small_outcomes = outcomes_of(&outcomes, dataset.as_ref(), &small)?;
            let large_outcomes = outcomes_of(&outcomes, dataset.as_ref(), &large)?;
            let items: Vec<_> = dataset
                .items()
                .iter()
                .filter(|i| {
                    small_outcomes.contains_key(&i.id) && large_outcomes.contains_key(&i.id)
                })
                .collect();
            if items.len() < folds.max(4) {
                bail!(
                    "only {} items of `{}` have outcomes for both `{small}` and `{large}`; run \
                     `tandem eval run --dataset {} --model {small} --model {large}` first",
                    items.len(),
                    dataset.name(),
                    dataset.name()
                );
            }
            let vectors = embed_prompts(fetcher, &embedder, &items).await?;
            let labelled = label(&items, vectors, &small_outcomes, &large_outcomes);
            let learner = Learner::from(learner);
            let has_split = labelled.iter().any(|l| l.split == Split::Train)
                && labelled.iter().any(|l| l.split == Split::Test);
            let (held_out, method) = if has_split {
                (
                    train_test(learner, &labelled)?,
                    "train split -> test split".to_string(),
                )
            } else {
                (
                    cross_validate(learner, &labelled, folds)?,
                    cross_validation_note(folds, dataset.as_ref()),
                )
            };
            let random = random_baseline(&held_out);
            print_quality(&name, &method, &held_out, &random);
            let fitted_on: Vec<Example> = labelled
                .iter()
                .filter(|l| !has_split || l.split == Split::Train)
                .map(|l| l.example.clone())
                .collect();
            let router = LearnedRouter::fit(learner, &fitted_on).map_err(anyhow::Error::msg)?;
            let provenance = json!({
                "dataset": dataset.name(),
                "prompt_version": dataset.prompt_version(),
                "small": small,
                "large": large,
                "learner": learner,
                "items": labelled.len(),
                "fitted_on": fitted_on.len(),
                "evaluated": method,
                "apgr": routing_quality(&held_out).apgr,
                "random_apgr": random.apgr,
            });
            store.save_router(&StoredRouter {
                name: name.clone(),
                router: serde_json::to_string(&router)?,
                provenance: provenance.to_string(),
                threshold: None,
                updated_ms: now_ms(),
            })?;
            println!(
                "stored router `{name}` in {}; set its threshold with `tandem router calibrate --name {name} --llm-share 0.3`",
                state.display()
            );
            Ok(())
        }
        RouterCommand::Calibrate {
            name,
            cascade,
            llm_share,
            dataset,
            prompt,
            limit,
            max_tokens,
            concurrency,
            embedder,
            data,
        } => {
            if !(0.0..=1.0).contains(&llm_share) {
                bail!("--llm-share must be in [0, 1]");
            }
            if let Some(pipeline) = cascade {
                let sample = cascade::Sample {
                    dataset: dataset.context(
                        "--dataset is needed with --cascade: the prompts the small model answers",
                    )?,
                    prompt,
                    limit,
                    max_tokens: max_tokens.unwrap_or(512),
                    concurrency: concurrency.unwrap_or(1).into(),
                    data,
                };
                return cascade::calibrate(&pipeline, llm_share, sample, config, fetcher, &store)
                    .await;
            }
            let name = name.expect("clap asks for --name without --cascade");
            let mut stored = store
                .router(&name)?
                .with_context(|| format!("no stored router is called `{name}`"))?;
            let router: LearnedRouter = serde_json::from_str(&stored.router)?;
            let provenance: serde_json::Value = serde_json::from_str(&stored.provenance)?;
            let dataset_name = match dataset {
                Some(name) => name,
                None => provenance["dataset"]
                    .as_str()
                    .context("the router does not say what it was trained on; pass --dataset")?
                    .to_string(),
            };
            let dataset = data
                .load(&dataset_name, prompt.as_deref(), cache_dir)
                .await?;
            let texts = dataset
                .items()
                .iter()
                .take(limit.unwrap_or(usize::MAX))
                .map(|item| query_text(&request_of(&item.messages)))
                .collect::<Result<Vec<_>, _>>()?;
            let embedder = load_from_catalog(fetcher, &embedder).await?;
            let vectors = tokio::task::spawn_blocking(move || embedder.embed(&texts))
                .await??
                .vectors;
            let scores: Vec<f64> = vectors.iter().map(|v| router.predict(v)).collect();
            let threshold =
                threshold_for_share(&scores, llm_share).context("the data set has no prompts")?;
            let routed = scores.iter().filter(|s| **s >= threshold).count();
            stored.threshold = Some(threshold);
            stored.updated_ms = now_ms();
            store.save_router(&stored)?;
            println!(
                "router `{name}`: threshold {threshold} sends {routed} of {} prompts of {} ({:.1}%; asked {:.1}%) to the large model",
                scores.len(),
                dataset.name(),
                100.0 * routed as f64 / scores.len() as f64,
                100.0 * llm_share
            );
            Ok(())
        }
        RouterCommand::Evaluate(args) => evaluate::run(args, config, fetcher).await,
        RouterCommand::Show => {
            for name in store.routers()? {
                let stored = store.router(&name)?.expect("listed just now");
                let threshold = stored
                    .threshold
                    .map_or("not calibrated".to_string(), |t| format!("{t:.6}"));
                println!("{name}: threshold {threshold}; {}", stored.provenance);
            }
            for stored in store.cascades()? {
                println!(
                    "cascade {}: threshold {}; small `{}`, scoring {}; {}",
                    stored.pipeline,
                    stored.threshold,
                    stored.small,
                    stored.scoring,
                    stored.provenance
                );
            }
            Ok(())
        }
    }
}

struct Labelled {
    example: Example,
    split: Split,
    small: bool,
    large: bool,
}

/// `model`'s outcome on each item, from its run of `dataset`'s current prompt with the most
/// outcomes; failed generations are left out.
fn outcomes_of(
    outcomes: &OutcomeStore,
    dataset: &dyn tandem_eval::dataset::Dataset,
    model: &str,
) -> Result<BTreeMap<String, Outcome>> {
    let filter = Filter {
        dataset: Some(dataset.name().to_string()),
        models: vec![model.to_string()],
        split: None,
    };
    let runs: Vec<String> = outcomes
        .runs(&filter)?
        .into_iter()
        .filter(|run| {
            run.settings["settings"]["prompt_version"].as_str() == Some(dataset.prompt_version())
        })
        .map(|run| run.settings_hash)
        .collect();
    let mut by_run: BTreeMap<String, BTreeMap<String, Outcome>> = BTreeMap::new();
    for outcome in outcomes.outcomes(&filter)? {
        if runs.contains(&outcome.settings_hash) && outcome.error.is_none() {
            by_run
                .entry(outcome.settings_hash.clone())
                .or_default()
                .insert(outcome.item_id.clone(), outcome);
        }
    }
    by_run
        .into_values()
        .max_by_key(BTreeMap::len)
        .with_context(|| {
            format!(
                "no stored outcomes of `{model}` on `{}` with this prompt",
                dataset.name()
            )
        })
}

/// The sentence embedding of each item's prompt (its last user message).
async fn embed_prompts(
    fetcher: &Fetcher,
    embedder: &str,
    items: &[&tandem_eval::Item],
) -> Result<Vec<Vec<f32>>> {
    let embedder = load_from_catalog(fetcher, embedder).await?;
    let texts = items
        .iter()
        .map(|item| query_text(&request_of(&item.messages)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tokio::task::spawn_blocking(move || embedder.embed(&texts))
        .await??
        .vectors)
}

/// Training examples: an item is labelled 1 when only the large model passed it.
fn label(
    items: &[&tandem_eval::Item],
    vectors: Vec<Vec<f32>>,
    small: &BTreeMap<String, Outcome>,
    large: &BTreeMap<String, Outcome>,
) -> Vec<Labelled> {
    items
        .iter()
        .zip(vectors)
        .map(|(item, embedding)| {
            let (s, l) = (small[&item.id].passed, large[&item.id].passed);
            Labelled {
                example: Example {
                    embedding,
                    label: if l && !s { 1.0 } else { 0.0 },
                },
                split: item.split,
                small: s,
                large: l,
            }
        })
        .collect()
}

fn train_test(learner: Learner, labelled: &[Labelled]) -> Result<Vec<Scored>> {
    let train: Vec<Example> = labelled
        .iter()
        .filter(|l| l.split == Split::Train)
        .map(|l| l.example.clone())
        .collect();
    let router = LearnedRouter::fit(learner, &train).map_err(anyhow::Error::msg)?;
    Ok(labelled
        .iter()
        .filter(|l| l.split == Split::Test)
        .map(|l| scored(&router, l))
        .collect())
}

/// Every item scored by a router fitted without it (item `i` is in fold `i % folds`), in item
/// order.
fn cross_validate(learner: Learner, labelled: &[Labelled], folds: usize) -> Result<Vec<Scored>> {
    let mut held_out = vec![None; labelled.len()];
    for fold in 0..folds {
        let train: Vec<Example> = labelled
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds != fold)
            .map(|(_, l)| l.example.clone())
            .collect();
        let router = LearnedRouter::fit(learner, &train).map_err(anyhow::Error::msg)?;
        for (i, item) in labelled.iter().enumerate() {
            if i % folds == fold {
                held_out[i] = Some(scored(&router, item));
            }
        }
    }
    Ok(held_out.into_iter().flatten().collect())
}

/// Why the learned routers were cross-validated: the data set has no train split, or no item of
/// its train split has outcomes of both models.
fn cross_validation_note(folds: usize, dataset: &dyn tandem_eval::Dataset) -> String {
    let why = if dataset.items().iter().any(|i| i.split == Split::Train) {
        "no train-split item has outcomes of both models"
    } else {
        "the data set has no train split"
    };
    format!("{folds}-fold cross-validation ({why})")
}

fn scored(router: &LearnedRouter, item: &Labelled) -> Scored {
    Scored {
        score: router.predict(&item.example.embedding),
        small_passed: item.small,
        large_passed: item.large,
    }
}

/// The same items scored at random (seeded), averaged over many draws: random routing's APGR.
fn random_baseline(items: &[Scored]) -> RoutingQuality {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let draws = 200;
    let mut apgr = 0.0;
    let mut last = routing_quality(items);
    for _ in 0..draws {
        let mut shuffled = items.to_vec();
        shuffled.shuffle(&mut rng);
        let random: Vec<Scored> = shuffled
            .iter()
            .enumerate()
            .map(|(i, s)| Scored {
                score: i as f64,
                ..*s
            })
            .collect();
        last = routing_quality(&random);
        apgr += last.apgr.unwrap_or(0.0);
    }
    last.apgr = last.apgr.map(|_| apgr / draws as f64);
    last
}

fn print_quality(name: &str, method: &str, held_out: &[Scored], random: &RoutingQuality) {
    let quality = routing_quality(held_out);
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    println!(
        "router `{name}` on {} held-out items ({method}):",
        quality.items
    );
    println!(
        "  small {:.3}, large {:.3}, oracle {:.3} with {:.1}% large calls",
        quality.small_quality,
        quality.large_quality,
        quality.oracle_quality,
        100.0 * quality.oracle_large_share
    );
    println!(
        "  APGR {} (random {}), CPT(50%) {}, CPT(80%) {}",
        show(quality.apgr),
        show(random.apgr),
        show(quality.cpt50),
        show(quality.cpt80)
    );
}

fn request_of(
    messages: &[tandem_core::openai::Message],
) -> tandem_core::openai::ChatCompletionRequest {
    tandem_core::openai::ChatCompletionRequest {
        messages: messages.to_vec(),
        ..Default::default()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
