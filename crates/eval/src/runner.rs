//! The run loop: asks a model every selected item of a dataset, scores each answer and stores the
//! outcome right away, so a killed run loses at most the item in flight and resumes where it
//! stopped. Also re-scoring of stored outputs, which generates nothing.
//!
//! A run is identified by its [`Settings`]: everything that changes what the model is asked or how
//! it generates (model name, dataset version, prompt template version, generation parameters). Its
//! hash is the store's run key; the full settings, plus how answers are scored, are recorded
//! with the run.

use std::collections::HashSet;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tandem_core::openai::ChatCompletionRequest;
use tandem_core::{ChatModel, Pricing};

use crate::dataset::{Dataset, Item, Split};
use crate::error::EvalError;
use crate::store::{now, Filter, Outcome, RunRecord, Store};

/// Generation parameters sent with every request of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub temperature: f32,
    pub top_p: Option<f32>,
    pub max_tokens: u32,
    pub seed: Option<u64>,
}

impl Default for Generation {
    /// Greedy decoding, as pass@1 with one sample is usually reported.
    fn default() -> Self {
        Generation {
            temperature: 0.0,
            top_p: None,
            max_tokens: 512,
            seed: None,
        }
    }
}

impl Generation {
    /// The request a run sends `model` for `item`.
    pub fn request(&self, model: &str, item: &Item) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: model.to_string(),
            messages: item.messages.clone(),
            temperature: Some(self.temperature),
            top_p: self.top_p,
            max_tokens: Some(self.max_tokens),
            seed: self.seed,
            ..ChatCompletionRequest::default()
        }
    }
}

/// Everything that decides what a run generates; its hash keys the run in the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub model: String,
    /// What identifies the model beyond its name: for a local model its file and sha256, for a
    /// remote one the upstream and its model id, for a pipeline its structure; null trusts the
    /// name alone.
    pub model_fingerprint: serde_json::Value,
    pub dataset: String,
    pub dataset_version: String,
    pub prompt_version: String,
    pub generation: Generation,
    /// Requests in flight at once. Batched decoding can break near-ties differently from one
    /// request at a time, so runs at different concurrency are kept apart.
    pub concurrency: usize,
}

impl Settings {
    pub fn new(plan: &Plan<'_>, subject: &Subject<'_>) -> Settings {
        let dataset = plan.dataset;
        Settings {
            model: subject.name.to_string(),
            model_fingerprint: subject.fingerprint.clone(),
            dataset: dataset.name().to_string(),
            dataset_version: dataset.version().to_string(),
            prompt_version: dataset.prompt_version().to_string(),
            generation: plan.generation.clone(),
            concurrency: plan.concurrency,
        }
    }

    /// The first 16 hex digits of the sha256 of the settings as JSON (fields in declaration
    /// order, so the hash is stable).
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(self).expect("settings serialise");
        crate::dataset::sha256_hex(json.as_bytes())[..16].to_string()
    }
}

/// What to run, shared by every model of one `tandem eval run`.
pub struct Plan<'a> {
    pub dataset: &'a dyn Dataset,
    pub split: Split,
    /// Only the first `limit` items of the split, in dataset order.
    pub limit: Option<usize>,
    pub generation: Generation,
    /// Generate again the items whose generation failed in an earlier session.
    pub retry_errors: bool,
    pub progress: bool,
    /// Items generated at once (a local engine batches them); at least 1.
    pub concurrency: usize,
}

impl Plan<'_> {
    pub fn items(&self) -> Vec<&Item> {
        self.dataset
            .items()
            .iter()
            .filter(|item| self.split.selects(item.split))
            .take(self.limit.unwrap_or(usize::MAX))
            .collect()
    }
}

/// The model or pipeline under evaluation.
pub struct Subject<'a> {
    /// Its name in the configuration.
    pub name: &'a str,
    pub model: &'a dyn ChatModel,
    pub pricing: Pricing,
    pub fingerprint: serde_json::Value,
}

/// What one model's run did in this session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub model: String,
    pub settings_hash: String,
    pub selected: usize,
    /// Items that already had an outcome and were skipped.
    pub resumed: usize,
    pub generated: usize,
    /// Passed among all selected items that have an outcome now.
    pub passed: usize,
    pub errors: usize,
    pub wall_ms: f64,
    /// Time spent generating; 0 when generations overlapped (`concurrency` > 1), where wall clock
    /// minus generation time says nothing about the harness.
    pub gen_ms: f64,
}

/// Runs `subject` over the plan's items, skipping those already stored for the same settings.
pub async fn run_model(
    plan: &Plan<'_>,
    subject: &Subject<'_>,
    store: &Store,
) -> Result<RunSummary, EvalError> {
    let started = Instant::now();
    let dataset = plan.dataset;
    let name = subject.name;
    let settings = Settings::new(plan, subject);
    let hash = settings.hash();
    store.ensure_run(&RunRecord {
        settings_hash: hash.clone(),
        model: name.to_string(),
        dataset: dataset.name().to_string(),
        settings: serde_json::json!({
            "settings": settings,
            "scoring": dataset.scoring(),
            "harness": concat!("tandem-eval ", env!("CARGO_PKG_VERSION")),
        }),
        created_at: now(),
    })?;
    if plan.retry_errors {
        store.delete_errors(&hash)?;
    }
    let items = plan.items();
    let selected: HashSet<&str> = items.iter().map(|item| item.id.as_str()).collect();
    let previous: Vec<Outcome> = store
        .outcomes(&Filter {
            dataset: Some(dataset.name().to_string()),
            models: vec![name.to_string()],
            split: None,
        })?
        .into_iter()
        .filter(|o| o.settings_hash == hash && selected.contains(o.item_id.as_str()))
        .collect();
    let done: HashSet<&str> = previous.iter().map(|o| o.item_id.as_str()).collect();
    let todo: Vec<&Item> = items
        .iter()
        .copied()
        .filter(|item| !done.contains(item.id.as_str()))
        .collect();
    let mut tally = Tally {
        scored: previous.len(),
        passed: previous.iter().filter(|o| o.passed).count(),
        errors: previous.iter().filter(|o| o.error.is_some()).count(),
    };

    let bar = progress_bar(plan.progress, items.len(), previous.len(), name);
    bar.set_message(tally.message(dataset.metric()));
    let session = store.start_session(&hash)?;
    let mut gen_total = 0.0;
    // Up to `concurrency` generations in flight; outcomes are stored one at a time as they
    // finish. (A plain loop rather than `buffer_unordered` over a closure keeps this future Send.)
    let mut queue = todo.iter().copied();
    let mut in_flight = FuturesUnordered::new();
    for item in queue.by_ref().take(plan.concurrency.max(1)) {
        in_flight.push(evaluate(dataset, item, subject, &settings, &hash));
    }
    while let Some(outcome) = in_flight.next().await {
        if let Some(item) = queue.next() {
            in_flight.push(evaluate(dataset, item, subject, &settings, &hash));
        }
        let outcome = outcome?;
        gen_total += outcome.gen_ms;
        store.insert(&outcome)?;
        tally.add(&outcome);
        bar.inc(1);
        bar.set_message(tally.message(dataset.metric()));
    }
    drop(in_flight);
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Overlapping generations make wall-clock minus generation time meaningless: the session
    // overhead is only recorded for one request at a time (per-item overhead always is).
    let session_gen_ms = if plan.concurrency > 1 { 0.0 } else { gen_total };
    store.finish_session(session, todo.len() as u64, wall_ms, session_gen_ms)?;
    bar.finish();
    Ok(RunSummary {
        model: name.to_string(),
        settings_hash: hash,
        selected: items.len(),
        resumed: items.len() - todo.len(),
        generated: todo.len(),
        passed: tally.passed,
        errors: tally.errors,
        wall_ms,
        gen_ms: session_gen_ms,
    })
}

/// Generates and scores one item. A failed generation is an outcome (with `error` set and
/// counted as not passed); a failure of the scorer is an error of the harness.
async fn evaluate(
    dataset: &dyn Dataset,
    item: &Item,
    subject: &Subject<'_>,
    settings: &Settings,
    hash: &str,
) -> Result<Outcome, EvalError> {
    let name = subject.name;
    let request = settings.generation.request(name, item);
    let generation_started = Instant::now();
    let result = subject.model.complete(request).await;
    let gen_ms = generation_started.elapsed().as_secs_f64() * 1000.0;
    let mut outcome = Outcome {
        dataset: dataset.name().to_string(),
        item_id: item.id.clone(),
        model: name.to_string(),
        settings_hash: hash.to_string(),
        split: item.split.as_str().to_string(),
        output: None,
        finish_reason: None,
        passed: false,
        score_detail: serde_json::Value::Null,
        prompt_tokens: 0,
        completion_tokens: 0,
        latency_ms: None,
        cost_usd: 0.0,
        gen_ms,
        score_ms: 0.0,
        store_ms: None,
        error: None,
        report: None,
        created_at: now(),
    };
    match result {
        Ok(output) => {
            let scoring_started = Instant::now();
            let score = dataset.score(item, &output.text).await?;
            outcome.score_ms = scoring_started.elapsed().as_secs_f64() * 1000.0;
            outcome.passed = score.passed;
            outcome.score_detail = score.detail;
            outcome.prompt_tokens = output.usage.prompt_tokens;
            outcome.completion_tokens = output.usage.completion_tokens;
            outcome.latency_ms = Some(output.report.latency_ms);
            // A pipeline prices its own stages; a plain model is priced from the configuration.
            outcome.cost_usd = if output.report.cost_usd > 0.0 {
                output.report.cost_usd
            } else {
                subject.pricing.cost(output.usage)
            };
            outcome.finish_reason = serde_json::to_value(output.finish_reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            outcome.report = serde_json::to_value(&output.report).ok();
            outcome.output = Some(output.text);
        }
        Err(error) => outcome.error = Some(error.to_string()),
    }
    Ok(outcome)
}

struct Tally {
    scored: usize,
    passed: usize,
    errors: usize,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        self.scored += 1;
        self.passed += usize::from(outcome.passed);
        self.errors += usize::from(outcome.error.is_some());
    }

    fn message(&self, metric: &str) -> String {
        let rate = if self.scored == 0 {
            0.0
        } else {
            100.0 * self.passed as f64 / self.scored as f64
        };
        let errors = if self.errors > 0 {
            format!(", {} failed to generate", self.errors)
        } else {
            String::new()
        };
        format!(
            "{metric} {rate:.1}% ({}/{}){errors}",
            self.passed, self.scored
        )
    }
}

fn progress_bar(visible: bool, total: usize, done: usize, prefix: &str) -> ProgressBar {
    let bar = if visible {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta} {msg}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar.set_position(done as u64);
    // Items resumed from the store took no time now; they must not speed up the estimate.
    bar.reset_eta();
    bar
}

/// What re-scoring changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RescoreSummary {
    pub rescored: usize,
    /// Outcomes whose verdict is different now.
    pub changed: usize,
    pub passed: usize,
}

/// Scores again every stored output of `dataset` (of `models`, or all), without generating.
pub async fn rescore(
    dataset: &dyn Dataset,
    models: &[String],
    store: &Store,
    progress: bool,
) -> Result<RescoreSummary, EvalError> {
    let outcomes: Vec<Outcome> = store
        .outcomes(&Filter {
            dataset: Some(dataset.name().to_string()),
            models: models.to_vec(),
            split: None,
        })?
        .into_iter()
        .filter(|o| o.output.is_some())
        .collect();
    let bar = progress_bar(progress, outcomes.len(), 0, "rescore");
    let mut summary = RescoreSummary {
        rescored: 0,
        changed: 0,
        passed: 0,
    };
    for outcome in &outcomes {
        let item = dataset.item(&outcome.item_id).ok_or_else(|| {
            EvalError::dataset(
                dataset.name(),
                format!("stored item `{}` is not in this dataset", outcome.item_id),
            )
        })?;
        let started = Instant::now();
        let score = dataset
            .score(item, outcome.output.as_deref().unwrap_or_default())
            .await?;
        let score_ms = started.elapsed().as_secs_f64() * 1000.0;
        store.update_score(outcome, score.passed, &score.detail, score_ms)?;
        summary.rescored += 1;
        summary.changed += usize::from(score.passed != outcome.passed);
        summary.passed += usize::from(score.passed);
        bar.inc(1);
    }
    bar.finish();
    let scoring = dataset.scoring();
    let runs: HashSet<&str> = outcomes.iter().map(|o| o.settings_hash.as_str()).collect();
    for settings_hash in runs {
        store.set_scoring(settings_hash, &scoring)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use tandem_core::openai::Usage;

    use crate::testing::{Reply, ScriptedModel, ToyDataset};

    fn plan(dataset: &ToyDataset) -> Plan<'_> {
        Plan {
            dataset,
            split: Split::Test,
            limit: None,
            generation: Generation::default(),
            retry_errors: false,
            progress: false,
            concurrency: 1,
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("eval.sqlite")).unwrap();
        (dir, store)
    }

    /// Right on even-numbered items, wrong on odd ones.
    fn half_right(
        name: &str,
        dataset: &ToyDataset,
        hang_after: Option<usize>,
    ) -> std::sync::Arc<ScriptedModel> {
        ScriptedModel::new(
            name,
            dataset,
            |item| {
                let n: usize = item.id[4..].parse().unwrap();
                Reply::Answer(if n % 2 == 1 {
                    "#### -1".into()
                } else {
                    item.solution.clone()
                })
            },
            hang_after,
        )
    }

    fn subject<'a>(name: &'a str, model: &'a ScriptedModel) -> Subject<'a> {
        Subject {
            name,
            model,
            pricing: PRICING,
            fingerprint: serde_json::Value::Null,
        }
    }

    const PRICING: Pricing = Pricing {
        input_per_million: 1.0,
        output_per_million: 2.0,
    };

    #[tokio::test]
    async fn stores_every_selected_item_with_its_verdict_and_timings() {
        let dataset = ToyDataset::new(10);
        let (_dir, store) = store();
        let model = half_right("toy-model", &dataset, None);
        let summary = run_model(
            &plan(&dataset),
            &subject("toy-model", model.as_ref()),
            &store,
        )
        .await
        .unwrap();
        assert_eq!(
            (summary.selected, summary.generated, summary.resumed),
            (8, 8, 0)
        );
        assert_eq!(summary.passed, 4);
        assert_eq!(model.calls(), 8);
        let outcomes = store.outcomes(&Filter::default()).unwrap();
        assert_eq!(outcomes.len(), 8);
        for outcome in &outcomes {
            assert_eq!(outcome.split, "test");
            assert_eq!(outcome.settings_hash, summary.settings_hash);
            assert!(outcome.gen_ms >= 0.0 && outcome.score_ms >= 0.0);
            assert!(outcome.store_ms.is_some_and(|ms| ms > 0.0));
            let expected =
                PRICING.cost(Usage::new(outcome.prompt_tokens, outcome.completion_tokens));
            assert!((outcome.cost_usd - expected).abs() < 1e-15 && expected > 0.0);
            assert_eq!(outcome.finish_reason.as_deref(), Some("stop"));
            assert_eq!(outcome.report.as_ref().unwrap()["model"], "toy-model");
        }
        let runs = store.runs(&Filter::default()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(
            runs[0].settings["settings"]["prompt_version"],
            "toy-prompt-v1"
        );
        assert_eq!(
            runs[0].settings["settings"]["generation"]["max_tokens"],
            512
        );
        assert_eq!(runs[0].settings["scoring"]["scorer"], "toy");
        assert_eq!(store.sessions().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_killed_run_resumes_where_it_stopped() {
        let dataset = ToyDataset::new(10);
        let (_dir, store) = store();
        // The first run stops for good during its fourth generation and is dropped, as a killed
        // process would be: three outcomes are committed, nothing else.
        let hanging = half_right("toy-model", &dataset, Some(3));
        let killed = tokio::time::timeout(
            Duration::from_millis(500),
            run_model(
                &plan(&dataset),
                &subject("toy-model", hanging.as_ref()),
                &store,
            ),
        )
        .await;
        assert!(killed.is_err(), "the run should have been stopped");
        assert_eq!(store.outcomes(&Filter::default()).unwrap().len(), 3);

        let fresh = half_right("toy-model", &dataset, None);
        let summary = run_model(
            &plan(&dataset),
            &subject("toy-model", fresh.as_ref()),
            &store,
        )
        .await
        .unwrap();
        assert_eq!(fresh.calls(), 5, "only the missing items are generated");
        assert_eq!((summary.resumed, summary.generated), (3, 5));
        assert_eq!(summary.passed, 4);
        let outcomes = store.outcomes(&Filter::default()).unwrap();
        assert_eq!(outcomes.len(), 8);

        // Run again: nothing left to do.
        let idle = half_right("toy-model", &dataset, None);
        let summary = run_model(
            &plan(&dataset),
            &subject("toy-model", idle.as_ref()),
            &store,
        )
        .await
        .unwrap();
        assert_eq!((idle.calls(), summary.resumed, summary.passed), (0, 8, 4));
    }

    #[tokio::test]
    async fn other_settings_are_another_run() {
        let dataset = ToyDataset::new(6);
        let (_dir, store) = store();
        let model = ScriptedModel::reference("m", &dataset);
        let mut plan = plan(&dataset);
        let first = run_model(&plan, &subject("m", model.as_ref()), &store)
            .await
            .unwrap();
        plan.generation.temperature = 0.7;
        let second = run_model(&plan, &subject("m", model.as_ref()), &store)
            .await
            .unwrap();
        assert_ne!(first.settings_hash, second.settings_hash);
        assert_eq!((second.generated, model.calls()), (4, 8));
        plan.split = Split::Train;
        plan.generation.temperature = 0.0;
        let train = run_model(&plan, &subject("m", model.as_ref()), &store)
            .await
            .unwrap();
        assert_eq!(train.settings_hash, first.settings_hash);
        assert_eq!((train.selected, train.generated), (2, 2));
    }

    #[tokio::test]
    async fn failed_generations_count_as_failures_until_retried() {
        let dataset = ToyDataset::new(6);
        let (_dir, store) = store();
        let flaky = ScriptedModel::new(
            "m",
            &dataset,
            |item| {
                if item.id == "toy/03" {
                    Reply::Fail
                } else {
                    Reply::Answer(item.solution.clone())
                }
            },
            None,
        );
        let summary = run_model(&plan(&dataset), &subject("m", flaky.as_ref()), &store)
            .await
            .unwrap();
        assert_eq!((summary.passed, summary.errors), (3, 1));
        let failed = store
            .outcomes(&Filter::default())
            .unwrap()
            .into_iter()
            .find(|o| o.item_id == "toy/03")
            .unwrap();
        assert!(!failed.passed && failed.output.is_none());
        assert!(failed.error.unwrap().contains("busy"));

        let healthy = ScriptedModel::reference("m", &dataset);
        let again = run_model(&plan(&dataset), &subject("m", healthy.as_ref()), &store)
            .await
            .unwrap();
        assert_eq!(
            healthy.calls(),
            0,
            "errors are outcomes: no retry by default"
        );
        assert_eq!(again.errors, 1);
        let mut retry = plan(&dataset);
        retry.retry_errors = true;
        let retried = run_model(&retry, &subject("m", healthy.as_ref()), &store)
            .await
            .unwrap();
        assert_eq!(healthy.calls(), 1);
        assert_eq!((retried.passed, retried.errors), (4, 0));
    }

    #[tokio::test]
    async fn rescoring_uses_stored_outputs_only() {
        let dataset = ToyDataset::new(6);
        let (_dir, store) = store();
        let model = half_right("m", &dataset, None);
        run_model(&plan(&dataset), &subject("m", model.as_ref()), &store)
            .await
            .unwrap();
        // Pretend an earlier, buggy scorer failed everything.
        for outcome in store.outcomes(&Filter::default()).unwrap() {
            store
                .update_score(&outcome, false, &serde_json::Value::Null, 0.0)
                .unwrap();
            store
                .set_scoring(
                    &outcome.settings_hash,
                    &serde_json::json!({ "scorer": "old" }),
                )
                .unwrap();
        }
        let summary = rescore(&dataset, &[], &store, false).await.unwrap();
        assert_eq!(model.calls(), 4, "no generation during re-scoring");
        assert_eq!(
            (summary.rescored, summary.passed, summary.changed),
            (4, 2, 2)
        );
        let passed = store
            .outcomes(&Filter::default())
            .unwrap()
            .iter()
            .filter(|o| o.passed)
            .count();
        assert_eq!(passed, 2);
        let runs = store.runs(&Filter::default()).unwrap();
        assert_eq!(runs[0].settings["scoring"], dataset.scoring());
    }

    #[test]
    fn the_settings_hash_covers_every_setting() {
        let dataset = ToyDataset::new(1);
        let model = ScriptedModel::reference("m", &dataset);
        let base = Settings::new(&plan(&dataset), &subject("m", &model));
        let hash = base.hash();
        assert_eq!(hash.len(), 16);
        assert_eq!(
            hash,
            Settings::new(&plan(&dataset), &subject("m", &model)).hash()
        );
        let variants = [
            Settings {
                model: "n".into(),
                ..base.clone()
            },
            Settings {
                model_fingerprint: serde_json::json!({"sha256": "abc"}),
                ..base.clone()
            },
            Settings {
                dataset_version: "v2".into(),
                ..base.clone()
            },
            Settings {
                prompt_version: "p2".into(),
                ..base.clone()
            },
            Settings {
                concurrency: 4,
                ..base.clone()
            },
            Settings {
                generation: Generation {
                    max_tokens: 100,
                    ..Generation::default()
                },
                ..base.clone()
            },
            Settings {
                generation: Generation {
                    seed: Some(1),
                    ..Generation::default()
                },
                ..base.clone()
            },
            Settings {
                generation: Generation {
                    top_p: Some(0.9),
                    ..Generation::default()
                },
                ..base.clone()
            },
        ];
        for variant in variants {
            assert_ne!(variant.hash(), hash, "{variant:?}");
        }
    }
}
