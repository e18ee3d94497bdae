//! The `tandem eval` command line: [`EvalCommand`] (clap) and [`execute`], which the `tandem`
//! binary calls with a [`ModelProvider`] built from its configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tandem_core::{ChatModel, Pricing};

use crate::dataset::{self, Dataset, SandboxOptions, Split, DATASETS};
use crate::runner::{self, Generation, Plan, Subject};
use crate::sandbox::Limits;
use crate::store::{Filter, Store};
use crate::{export, plot, report};

/// The models and pipelines of the configuration, as the harness sees them.
pub trait ModelProvider: Send + Sync {
    /// The model or pipeline called `name`, ready to generate.
    fn model(&self, name: &str) -> anyhow::Result<Arc<dyn ChatModel>>;
    /// Its prices from the configuration (zero for local models).
    fn pricing(&self, name: &str) -> Pricing;
    /// Every model and pipeline name the configuration defines.
    fn names(&self) -> Vec<String>;
    /// What identifies `name` beyond its name: for a local model its file and sha256, for a
    /// remote one the upstream and its model id, for a pipeline its structure. It is part of the
    /// settings hash, so changing what a name stands for starts a new run instead of mixing
    /// outcomes. The default (null) trusts the name alone.
    fn fingerprint(&self, _name: &str) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Where the outcome store is.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The outcome store (SQLite) [default: <cache>/eval/outcomes.sqlite]
    #[arg(long, env = "TANDEM_EVAL_DB")]
    pub db: Option<PathBuf>,
}

impl StoreArgs {
    fn open(&self, cache_dir: &Path) -> anyhow::Result<Store> {
        let path = self
            .db
            .clone()
            .unwrap_or_else(|| cache_dir.join("eval").join("outcomes.sqlite"));
        Ok(Store::open(&path)?)
    }
}

/// Where datasets are cached and how answers that are code get run.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Wall-clock limit for one sandboxed program, in seconds
    #[arg(long, default_value_t = 10.0)]
    pub timeout_s: f64,
    /// Memory limit (address space) for one sandboxed program, in MiB
    #[arg(long, default_value_t = 1024)]
    pub memory_mib: u64,
    /// Python for sandboxed code; any user must be able to run it [default: /usr/bin/python3]
    #[arg(long)]
    pub python: Option<PathBuf>,
}

impl DataArgs {
    async fn load(
        &self,
        name: &str,
        prompt: Option<&str>,
        cache_dir: &Path,
    ) -> anyhow::Result<Arc<dyn Dataset>> {
        let options = SandboxOptions {
            limits: Limits {
                wall: Duration::try_from_secs_f64(self.timeout_s)
                    .context("--timeout-s must be a positive number of seconds")?,
                memory_bytes: self.memory_mib << 20,
                ..Limits::default()
            },
            python: self.python.clone(),
        };
        Ok(dataset::load(name, prompt, cache_dir, &options).await?)
    }
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EvalCommand {
    /// Generate answers with one or more models or pipelines, score them and store every outcome.
    /// A run that was stopped resumes where it stopped.
    Run {
        /// Dataset name (see `tandem eval datasets`)
        #[arg(long)]
        dataset: String,
        /// Model or pipeline of the configuration; repeat for several
        #[arg(long = "model", required = true)]
        models: Vec<String>,
        /// How the items are asked (see `tandem eval datasets`) [default: the dataset's first]
        #[arg(long)]
        prompt: Option<String>,
        #[arg(long, value_enum, default_value_t = Split::Test)]
        split: Split,
        /// Only the first N items of the split
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long)]
        top_p: Option<f32>,
        #[arg(long, default_value_t = 512)]
        max_tokens: u32,
        #[arg(long)]
        seed: Option<u64>,
        /// Generate again the items whose generation failed before
        #[arg(long)]
        retry_errors: bool,
        /// Items generated at once; a local engine decodes them in one batch (set its
        /// `parallel` at least as high)
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: u16,
        /// No progress bar
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Score the stored outputs again (after a scorer fix), without generating.
    Rescore {
        #[arg(long)]
        dataset: String,
        /// Only these models or pipelines; repeat for several [default: all]
        #[arg(long = "model")]
        models: Vec<String>,
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        data: DataArgs,
    },
    /// A table of scores with 95% intervals, tokens, latency, throughput and cost, and plots of
    /// quality against cost and latency.
    Report {
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long, value_enum)]
        split: Option<Split>,
        #[arg(long = "model")]
        models: Vec<String>,
        /// Directory for report.json, report.md (a Markdown table) and the plots
        #[arg(long, default_value = "tandem-eval-report")]
        out: PathBuf,
        #[arg(long)]
        no_plots: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write runs.json, outcomes.json and outcomes.csv.
    Export {
        /// Directory to write into
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long = "model")]
        models: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the datasets; with --check, score every reference solution to prove the scoring path
    /// (sandbox included) works on this machine.
    Datasets {
        /// Dataset whose reference solutions to score
        #[arg(long)]
        check: Option<String>,
        #[arg(long, value_enum, default_value_t = Split::All)]
        split: Split,
        #[command(flatten)]
        data: DataArgs,
    },
}

/// Runs one `tandem eval` command; tables go to stdout, progress and warnings to stderr. Datasets
/// are cached, and the outcome store kept by default, under `cache_dir`.
pub async fn execute(
    command: EvalCommand,
    models: &dyn ModelProvider,
    cache_dir: &Path,
) -> anyhow::Result<()> {
    match command {
        EvalCommand::Run {
            dataset,
            models: names,
            prompt,
            split,
            limit,
            temperature,
            top_p,
            max_tokens,
            seed,
            retry_errors,
            concurrency,
            quiet,
            store,
            data,
        } => {
            let known = models.names();
            if let Some(unknown) = names.iter().find(|n| !known.contains(n)) {
                bail!(
                    "no model or pipeline `{unknown}` in the configuration; it has: {}",
                    known.join(", ")
                );
            }
            let dataset = data.load(&dataset, prompt.as_deref(), cache_dir).await?;
            let store = store.open(cache_dir)?;
            let plan = Plan {
                dataset: dataset.as_ref(),
                split,
                limit,
                generation: Generation {
                    temperature,
                    top_p,
                    max_tokens,
                    seed,
                },
                retry_errors,
                progress: !quiet,
                concurrency: usize::from(concurrency),
            };
            if plan.items().is_empty() {
                bail!(
                    "dataset `{}` has no {} items",
                    dataset.name(),
                    split.as_str()
                );
            }
            for name in &names {
                let model = models
                    .model(name)
                    .with_context(|| format!("cannot load `{name}`"))?;
                let subject = Subject {
                    name,
                    model: model.as_ref(),
                    pricing: models.pricing(name),
                    fingerprint: models.fingerprint(name),
                };
                let summary = runner::run_model(&plan, &subject, &store).await?;
                let overhead = if summary.gen_ms > 0.0 {
                    format!(
                        "; harness overhead {:.1}% of generation time",
                        100.0 * (summary.wall_ms - summary.gen_ms) / summary.gen_ms
                    )
                } else {
                    String::new()
                };
                eprintln!(
                    "{name}: {} items ({} resumed, {} generated), {} passed, {} failed to generate{overhead}",
                    summary.selected,
                    summary.resumed,
                    summary.generated,
                    summary.passed,
                    summary.errors
                );
            }
            let filter = Filter {
                dataset: Some(dataset.name().to_string()),
                models: names,
                split: None,
            };
            print!("{}", report_table(&store, &filter)?.0);
            Ok(())
        }
        EvalCommand::Rescore {
            dataset,
            models: names,
            quiet,
            store,
            data,
        } => {
            let dataset = data.load(&dataset, None, cache_dir).await?;
            let store = store.open(cache_dir)?;
            let summary = runner::rescore(dataset.as_ref(), &names, &store, !quiet).await?;
            println!(
                "rescored {} outputs: {} passed, {} changed verdict",
                summary.rescored, summary.passed, summary.changed
            );
            Ok(())
        }
        EvalCommand::Report {
            dataset,
            split,
            models: names,
            out,
            no_plots,
            store,
        } => {
            let store = store.open(cache_dir)?;
            let filter = Filter {
                dataset,
                models: names,
                split: split
                    .filter(|s| *s != Split::All)
                    .map(|s| s.as_str().to_string()),
            };
            let (text, rows) = report_table(&store, &filter)?;
            print!("{text}");
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let json = out.join("report.json");
            std::fs::write(&json, serde_json::to_vec_pretty(&rows)?)
                .with_context(|| format!("cannot write {}", json.display()))?;
            println!("wrote {}", json.display());
            let markdown = out.join("report.md");
            std::fs::write(&markdown, report::markdown(&rows))
                .with_context(|| format!("cannot write {}", markdown.display()))?;
            println!("wrote {}", markdown.display());
            if !no_plots {
                for file in plot::write_plots(&rows, &out)? {
                    println!("wrote {}", file.display());
                }
            }
            Ok(())
        }
        EvalCommand::Export {
            out,
            dataset,
            models: names,
            store,
        } => {
            let store = store.open(cache_dir)?;
            let filter = Filter {
                dataset,
                models: names,
                split: None,
            };
            let files = export::export(&store.runs(&filter)?, &store.outcomes(&filter)?, &out)?;
            for file in files {
                println!("wrote {}", file.display());
            }
            Ok(())
        }
        EvalCommand::Datasets { check, split, data } => match check {
            None => {
                for info in DATASETS {
                    println!(
                        "{:<14} {:<9} {} Prompts: {}.",
                        info.name,
                        info.metric,
                        info.description,
                        info.prompts.join(", ")
                    );
                }
                Ok(())
            }
            Some(name) => {
                let dataset = data.load(&name, None, cache_dir).await?;
                let started = Instant::now();
                let (passed, total, failures) = check_references(dataset.as_ref(), split).await?;
                println!(
                    "{name}: {passed}/{total} reference solutions pass ({:.1}s)",
                    started.elapsed().as_secs_f64()
                );
                if !failures.is_empty() {
                    bail!("reference solutions fail: {}", failures.join(", "));
                }
                Ok(())
            }
        },
    }
}

/// The report table for `filter`, with the oracle rows, and the rows themselves.
fn report_table(store: &Store, filter: &Filter) -> anyhow::Result<(String, Vec<report::Row>)> {
    let outcomes = store.outcomes(filter)?;
    if outcomes.is_empty() {
        bail!(
            "no outcomes in {} for this selection; `tandem eval run` stores them",
            store.path().display()
        );
    }
    let metric_of = |name: &str| {
        dataset::info(name)
            .map_or("score", |d| d.metric)
            .to_string()
    };
    let runs = store.runs(filter)?;
    let mut rows = report::summarize(&outcomes, &store.sessions()?, &runs, metric_of);
    rows.extend(report::oracles(&outcomes, &runs, metric_of));
    Ok((report::table(&rows), rows))
}

/// Scores each selected item's reference solution: (passed, total, ids that failed).
pub async fn check_references(
    dataset: &dyn Dataset,
    split: Split,
) -> anyhow::Result<(usize, usize, Vec<String>)> {
    let mut passed = 0;
    let mut total = 0;
    let mut failures = Vec::new();
    for item in dataset.items().iter().filter(|i| split.selects(i.split)) {
        total += 1;
        if dataset.score(item, &item.solution).await?.passed {
            passed += 1;
        } else {
            failures.push(item.id.clone());
        }
    }
    Ok((passed, total, failures))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::dataset::Item;
    use crate::testing::{Reply, ScriptedModel};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: EvalCommand,
    }

    fn parse(args: &[&str]) -> EvalCommand {
        Cli::try_parse_from(std::iter::once("eval").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    struct Provider {
        models: HashMap<String, Arc<ScriptedModel>>,
    }

    impl ModelProvider for Provider {
        fn model(&self, name: &str) -> anyhow::Result<Arc<dyn ChatModel>> {
            let model = self.models.get(name).context("unknown")?;
            Ok(model.clone())
        }

        fn pricing(&self, name: &str) -> Pricing {
            Pricing {
                input_per_million: if name == "large" { 1.0 } else { 0.0 },
                output_per_million: if name == "large" { 4.0 } else { 0.0 },
            }
        }

        fn names(&self) -> Vec<String> {
            self.models.keys().cloned().collect()
        }

        fn fingerprint(&self, name: &str) -> serde_json::Value {
            serde_json::json!({ "file": format!("{name}.gguf") })
        }
    }

    fn data_args() -> DataArgs {
        DataArgs {
            timeout_s: 10.0,
            memory_mib: 1024,
            python: None,
        }
    }

    #[tokio::test]
    async fn humaneval_reference_solutions_all_pass_and_bare_prompts_all_fail() {
        let dataset = data_args()
            .load("humaneval", None, &tandem_fetch::default_cache_dir())
            .await
            .unwrap();
        assert_eq!(dataset.items().len(), 164);
        let (passed, total, failures) = check_references(dataset.as_ref(), Split::All)
            .await
            .unwrap();
        assert_eq!((passed, total), (164, 164), "{failures:?}");
        let mut wrongly_passed = Vec::new();
        for item in dataset.items() {
            // The bare stub returns None: every task's tests must reject it.
            if dataset.score(item, "").await.unwrap().passed {
                wrongly_passed.push(item.id.clone());
            }
        }
        assert_eq!(wrongly_passed, Vec::<String>::new());
    }

    #[tokio::test]
    async fn gsm_problems_are_generated_reproducibly_and_their_solutions_score() {
        for prompt in dataset::gsm::Prompt::NAMES {
            let dataset = data_args()
                .load(
                    dataset::gsm::NAME,
                    Some(prompt),
                    &tandem_fetch::default_cache_dir(),
                )
                .await
                .unwrap();
            let items = dataset.items();
            assert_eq!(items.len(), 500);
            assert_eq!(
                items.iter().filter(|i| i.split == Split::Train).count(),
                200
            );
            let (passed, total, failures) = check_references(dataset.as_ref(), Split::All)
                .await
                .unwrap();
            assert_eq!((passed, total), (500, 500), "{prompt}: {failures:?}");
            let wrong = dataset.score(&items[300], "#### 123456789").await.unwrap();
            assert!(!wrong.passed);
        }
    }

    #[tokio::test]
    async fn run_report_and_export_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("eval.sqlite").display().to_string();
        let dataset = data_args()
            .load("humaneval", None, &tandem_fetch::default_cache_dir())
            .await
            .unwrap();
        let wrong = |_: &Item| Reply::Answer("```python\ndef nothing():\n    pass\n```".into());
        let provider = Provider {
            models: HashMap::from([
                (
                    "large".to_string(),
                    ScriptedModel::reference("large", dataset.as_ref()),
                ),
                (
                    "small".to_string(),
                    ScriptedModel::new("small", dataset.as_ref(), wrong, None),
                ),
            ]),
        };
        let run = parse(&[
            "run",
            "--dataset",
            "humaneval",
            "--model",
            "large",
            "--model",
            "small",
            "--limit",
            "4",
            "--quiet",
            "--db",
            &db,
        ]);
        execute(run.clone(), &provider, &tandem_fetch::default_cache_dir())
            .await
            .unwrap();
        execute(run, &provider, &tandem_fetch::default_cache_dir())
            .await
            .unwrap();
        assert_eq!(
            provider.models["large"].calls(),
            4,
            "the second run resumed everything"
        );

        let store = Store::open(Path::new(&db)).unwrap();
        let outcomes = store.outcomes(&Filter::default()).unwrap();
        assert_eq!(outcomes.len(), 8);
        for outcome in &outcomes {
            assert_eq!(outcome.passed, outcome.model == "large", "{outcome:?}");
            assert_eq!(outcome.cost_usd > 0.0, outcome.model == "large");
        }

        let out = dir.path().join("report");
        let report = parse(&["report", "--db", &db, "--out", &out.display().to_string()]);
        execute(report, &provider, &tandem_fetch::default_cache_dir())
            .await
            .unwrap();
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        let score = |model: &str| {
            rows.iter()
                .find(|r| r["model"] == model)
                .map(|r| r["score"].as_f64().unwrap())
        };
        assert_eq!(score("large"), Some(1.0));
        assert_eq!(score("small"), Some(0.0));
        assert_eq!(score("oracle(large|small)"), Some(1.0));
        let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            markdown.contains(
                "| humaneval | test | large | humaneval-instruct-v1 | 4 | pass@1 | 100.0% |"
            ),
            "{markdown}"
        );
        assert!(
            markdown.contains(
                "| humaneval | test | oracle(large\\|small) | humaneval-instruct-v1 | 4 |"
            ),
            "{markdown}"
        );
        for plot in ["quality-vs-cost", "quality-vs-latency"] {
            for ext in ["png", "svg"] {
                assert!(out.join(format!("humaneval-test-{plot}.{ext}")).is_file());
            }
        }

        let exported = dir.path().join("export");
        let export = parse(&[
            "export",
            "--db",
            &db,
            "--out",
            &exported.display().to_string(),
        ]);
        execute(export, &provider, &tandem_fetch::default_cache_dir())
            .await
            .unwrap();
        let json: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(exported.join("outcomes.json")).unwrap())
                .unwrap();
        assert_eq!(json.len(), 8);
        let csv = std::fs::read_to_string(exported.join("outcomes.csv")).unwrap();
        assert!(csv.starts_with("dataset,item_id,model,settings_hash"));
        let runs: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(exported.join("runs.json")).unwrap()).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(
            runs[0]["settings"]["scoring"]["sandbox"]["isolation"],
            "full"
        );
        assert_eq!(
            runs[0]["settings"]["settings"]["model_fingerprint"]["file"],
            format!("{}.gguf", runs[0]["model"].as_str().unwrap())
        );
    }

    #[test]
    fn execute_can_run_on_any_tokio_worker() {
        fn assert_send<T: Send>(_: &T) {}
        let provider = Provider {
            models: HashMap::new(),
        };
        assert_send(&execute(
            parse(&["datasets"]),
            &provider,
            &tandem_fetch::default_cache_dir(),
        ));
    }

    #[tokio::test]
    async fn unknown_models_and_datasets_are_refused_with_the_known_names() {
        let provider = Provider {
            models: HashMap::new(),
        };
        let run = parse(&["run", "--dataset", "humaneval", "--model", "nope"]);
        let error = execute(run, &provider, &tandem_fetch::default_cache_dir())
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("no model or pipeline `nope`"), "{error}");
        async fn load_error(name: &str, prompt: Option<&str>) -> String {
            data_args()
                .load(name, prompt, &tandem_fetch::default_cache_dir())
                .await
                .err()
                .unwrap()
                .to_string()
        }
        let error = load_error("mbpp", None).await;
        assert!(
            error.contains("humaneval") && error.contains("gsm-symbolic"),
            "{error}"
        );
        let error = load_error("humaneval", Some("boxed")).await;
        assert!(
            error.contains("no prompt `boxed`") && error.contains("instruct"),
            "{error}"
        );
    }
}
