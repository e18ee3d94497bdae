//! Runs one `tandem eval` command with the library's functions and prints what they return:
//! tables and written files to stdout, per-model summaries to stderr.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use tandem_core::{ChatModel, Pricing};
use tandem_eval::dataset::{self, DATASETS};
use tandem_eval::runner::{self, Generation, Plan, Subject};
use tandem_eval::store::Filter;
use tandem_eval::{export, report, Split};

use super::args::EvalCommand;

/// The models and pipelines of the configuration, as `tandem eval` sees them.
pub trait ModelProvider: Send + Sync {
    /// The model or pipeline called `name`, ready to generate.
    fn model(&self, name: &str) -> anyhow::Result<Arc<dyn ChatModel>>;
    /// Its prices from the configuration (zero for local models).
    fn pricing(&self, name: &str) -> Pricing;
    /// Every model and pipeline name the configuration defines.
    fn names(&self) -> Vec<String>;
    /// What identifies `name` beyond its name (see [`tandem_eval::runner::Settings`]). It is part
    /// of the settings hash, so changing what a name stands for starts a new run instead of
    /// mixing outcomes. The default (null) trusts the name alone.
    fn fingerprint(&self, _name: &str) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Runs one `tandem eval` command. Datasets are cached, and the outcome store kept by default,
/// under `cache_dir`.
pub async fn execute(
    command: EvalCommand,
    models: &dyn ModelProvider,
    cache_dir: &Path,
) -> anyhow::Result<()> {
    match command {
        EvalCommand::Privacy(args) => crate::eval_privacy::run(args, models, cache_dir).await,
        EvalCommand::Cache(args) => crate::eval_cache::run(args, cache_dir).await,
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
            let split = Split::from(split);
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
                eprintln!("{}", run_summary(&summary));
            }
            let filter = Filter {
                dataset: Some(dataset.name().to_string()),
                models: names,
                split: None,
            };
            print!("{}", report::table(&report::build(&store, &filter)?));
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
                    .map(Split::from)
                    .filter(|s| *s != Split::All)
                    .map(|s| s.as_str().to_string()),
            };
            let rows = report::build(&store, &filter)?;
            print!("{}", report::table(&rows));
            for file in report::write(&rows, &out, !no_plots)? {
                println!("wrote {}", file.display());
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
        EvalCommand::Trust(_) | EvalCommand::ToolCalls(_) => {
            anyhow::bail!("`eval trust` and `eval tool-calls` load their own models: `eval::run` runs them, not this")
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
                let check = dataset::check_references(dataset.as_ref(), split.into()).await?;
                println!(
                    "{name}: {}/{} reference solutions pass ({:.1}s)",
                    check.passed,
                    check.total,
                    started.elapsed().as_secs_f64()
                );
                if !check.failures.is_empty() {
                    bail!("reference solutions fail: {}", check.failures.join(", "));
                }
                Ok(())
            }
        },
    }
}

/// The line printed after each model's run.
fn run_summary(summary: &runner::RunSummary) -> String {
    let overhead = if summary.gen_ms > 0.0 {
        format!(
            "; harness overhead {:.1}% of generation time",
            100.0 * (summary.wall_ms - summary.gen_ms) / summary.gen_ms
        )
    } else {
        String::new()
    };
    format!(
        "{}: {} items ({} resumed, {} generated), {} passed, {} failed to generate{overhead}",
        summary.model,
        summary.selected,
        summary.resumed,
        summary.generated,
        summary.passed,
        summary.errors
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;
    use tandem_eval::testing::{Reply, ScriptedModel};
    use tandem_eval::Item;
    use tandem_eval::Store;

    use super::*;

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

    #[tokio::test]
    async fn run_report_and_export_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("eval.sqlite").display().to_string();
        let cache = tandem_fetch::default_cache_dir();
        let dataset = dataset::load("humaneval", None, &cache, &Default::default())
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
        execute(run.clone(), &provider, &cache).await.unwrap();
        execute(run, &provider, &cache).await.unwrap();
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
        execute(report, &provider, &cache).await.unwrap();
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
                "| humaneval | test | large | humaneval-instruct-v1 | full | 4 | pass@1 | 100.0% |"
            ),
            "{markdown}"
        );
        assert!(
            markdown.contains(
                "| humaneval | test | oracle(large\\|small) | humaneval-instruct-v1 | full | 4 |"
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
        execute(export, &provider, &cache).await.unwrap();
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
    async fn unknown_models_are_refused_with_the_known_names() {
        let provider = Provider {
            models: HashMap::from([(
                "small".to_string(),
                ScriptedModel::new(
                    "small",
                    &tandem_eval::testing::ToyDataset::new(1),
                    |_: &Item| Reply::Answer(String::new()),
                    None,
                ),
            )]),
        };
        let run = parse(&["run", "--dataset", "humaneval", "--model", "nope"]);
        let error = execute(run, &provider, &tandem_fetch::default_cache_dir())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no model or pipeline `nope`") && error.contains("small"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_report_of_an_empty_store_says_how_to_fill_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("empty.sqlite").display().to_string();
        let provider = Provider {
            models: HashMap::new(),
        };
        let out = dir.path().join("report").display().to_string();
        let report = parse(&["report", "--db", &db, "--out", &out]);
        let error = execute(report, &provider, &tandem_fetch::default_cache_dir())
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("`tandem eval run` stores them"), "{error}");
    }
}
