//! Turns stored outcomes into numbers: per run (model or pipeline with its settings, on one
//! dataset split) the score with a 95% Wilson interval, tokens, latency, throughput, cost and the
//! harness's own overhead; and the oracle router, the best any router over the same runs could do,
//! simulated from per-item outcomes alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tandem_core::stats::wilson;

use crate::error::EvalError;
use crate::store::{Filter, Outcome, RunRecord, Session, Store};

/// The summary of one run on one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub dataset: String,
    pub split: String,
    /// The model or pipeline; for the oracle, `oracle(a|b|...)`.
    pub model: String,
    pub settings_hash: String,
    /// The prompt version the items were asked with ("?" if the run is not recorded).
    pub prompt: String,
    /// How the run's code was sandboxed (`full`, `user_namespace`, `limits_only`), `none` for a
    /// dataset that runs no code, "?" if the run is not recorded; for the oracle, those of its
    /// runs joined by `+`.
    pub isolation: String,
    pub metric: String,
    pub n: usize,
    pub passed: usize,
    /// Items whose generation failed (counted as not passed).
    pub errors: usize,
    pub score: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Items whose generation stopped at `max_tokens` (finish reason `length`).
    pub max_token_stops: usize,
    pub mean_latency_ms: f64,
    /// Completion tokens per second of generation time.
    pub tokens_per_s: f64,
    pub cost_usd: f64,
    pub cost_per_item_usd: f64,
    pub mean_score_ms: f64,
    pub mean_store_ms: f64,
    /// Scoring and storage time as a share of generation time, per item.
    pub overhead_pct: f64,
    /// Everything but generation, from the wall clock of whole sessions; `None` when no session
    /// of this run finished.
    pub session_overhead_pct: Option<f64>,
}

/// The report's rows for the outcomes `filter` selects: one per run and split, then the oracle
/// rows. An empty selection is an error, not an empty report.
pub fn build(store: &Store, filter: &Filter) -> Result<Vec<Row>, EvalError> {
    let outcomes = store.outcomes(filter)?;
    if outcomes.is_empty() {
        return Err(EvalError::NoOutcomes {
            store: store.path().to_path_buf(),
        });
    }
    let metric_of = |name: &str| {
        crate::dataset::info(name)
            .map_or("score", |d| d.metric)
            .to_string()
    };
    let runs = store.runs(filter)?;
    let mut rows = summarize(&outcomes, &store.sessions()?, &runs, metric_of);
    rows.extend(oracles(&outcomes, &runs, metric_of));
    Ok(rows)
}

/// Writes `report.json`, `report.md` and (with `plots`) the plots into `out`, creating it;
/// returns the files written.
pub fn write(rows: &[Row], out: &Path, plots: bool) -> Result<Vec<PathBuf>, EvalError> {
    std::fs::create_dir_all(out).map_err(EvalError::io(out))?;
    let json = out.join("report.json");
    let bytes = serde_json::to_vec_pretty(rows).expect("report rows serialise");
    std::fs::write(&json, bytes).map_err(EvalError::io(&json))?;
    let markdown_path = out.join("report.md");
    std::fs::write(&markdown_path, markdown(rows)).map_err(EvalError::io(&markdown_path))?;
    let mut written = vec![json, markdown_path];
    if plots {
        written.extend(crate::plot::write_plots(rows, out)?);
    }
    Ok(written)
}

/// One row per (dataset, split, model, settings hash), in that order. `runs` give each run's
/// prompt version; `metric_of` names each dataset's score.
pub fn summarize(
    outcomes: &[Outcome],
    sessions: &[Session],
    runs: &[RunRecord],
    metric_of: impl Fn(&str) -> String,
) -> Vec<Row> {
    let mut groups: BTreeMap<(&str, &str, &str, &str), Vec<&Outcome>> = BTreeMap::new();
    for outcome in outcomes {
        groups
            .entry((
                &outcome.dataset,
                &outcome.split,
                &outcome.model,
                &outcome.settings_hash,
            ))
            .or_default()
            .push(outcome);
    }
    let mut session_totals: HashMap<&str, (f64, f64)> = HashMap::new();
    for session in sessions {
        let total = session_totals.entry(&session.settings_hash).or_default();
        total.0 += session.wall_ms;
        total.1 += session.gen_ms;
    }
    let prompts = prompt_versions(runs);
    let isolations = isolations(runs);
    groups
        .into_iter()
        .map(|((dataset, split, model, hash), group)| {
            let prompt = prompt_of(&prompts, hash);
            let mut row = Row {
                isolation: isolation_of(&isolations, hash).to_string(),
                ..aggregate(
                    dataset,
                    split,
                    model,
                    hash,
                    prompt,
                    &metric_of(dataset),
                    &group,
                )
            };
            row.session_overhead_pct = session_totals
                .get(hash)
                .filter(|(_, gen)| *gen > 0.0)
                .map(|(wall, gen)| 100.0 * (wall - gen) / gen);
            row
        })
        .collect()
}

/// Each run's prompt version as recorded in its settings, by settings hash.
fn prompt_versions(runs: &[RunRecord]) -> HashMap<&str, &str> {
    runs.iter()
        .filter_map(|run| {
            let prompt = run.settings["settings"]["prompt_version"].as_str()?;
            Some((run.settings_hash.as_str(), prompt))
        })
        .collect()
}

/// The prompt version of the run `hash`; "?" if the run is not recorded.
fn prompt_of<'a>(prompts: &HashMap<&str, &'a str>, hash: &str) -> &'a str {
    prompts.get(hash).copied().unwrap_or("?")
}

/// Each run's sandbox isolation as recorded in its scoring settings (`none` when its dataset
/// runs no code), by settings hash.
fn isolations(runs: &[RunRecord]) -> HashMap<&str, &str> {
    runs.iter()
        .map(|run| {
            let isolation = run.settings["scoring"]["sandbox"]["isolation"]
                .as_str()
                .unwrap_or("none");
            (run.settings_hash.as_str(), isolation)
        })
        .collect()
}

/// The isolation of the run `hash`; "?" if the run is not recorded.
fn isolation_of<'a>(isolations: &HashMap<&str, &'a str>, hash: &str) -> &'a str {
    isolations.get(hash).copied().unwrap_or("?")
}

fn aggregate(
    dataset: &str,
    split: &str,
    model: &str,
    hash: &str,
    prompt: &str,
    metric: &str,
    group: &[&Outcome],
) -> Row {
    let n = group.len();
    let passed = group.iter().filter(|o| o.passed).count();
    let sum = |f: fn(&Outcome) -> f64| group.iter().map(|o| f(o)).sum::<f64>();
    let gen_ms = sum(|o| o.gen_ms);
    let score_ms = sum(|o| o.score_ms);
    let store_ms = sum(|o| o.store_ms.unwrap_or(0.0));
    let completion_tokens = group.iter().map(|o| u64::from(o.completion_tokens)).sum();
    let cost = sum(|o| o.cost_usd);
    let per_item = |total: f64| if n == 0 { 0.0 } else { total / n as f64 };
    let (ci_low, ci_high) = wilson(passed, n);
    Row {
        dataset: dataset.to_string(),
        split: split.to_string(),
        model: model.to_string(),
        settings_hash: hash.to_string(),
        prompt: prompt.to_string(),
        // Known to the caller, which has the run's record.
        isolation: String::new(),
        metric: metric.to_string(),
        n,
        passed,
        errors: group.iter().filter(|o| o.error.is_some()).count(),
        score: per_item(passed as f64),
        ci_low,
        ci_high,
        prompt_tokens: group.iter().map(|o| u64::from(o.prompt_tokens)).sum(),
        completion_tokens,
        max_token_stops: group
            .iter()
            .filter(|o| o.finish_reason.as_deref() == Some("length"))
            .count(),
        mean_latency_ms: per_item(gen_ms),
        tokens_per_s: if gen_ms > 0.0 {
            completion_tokens as f64 / (gen_ms / 1000.0)
        } else {
            0.0
        },
        cost_usd: cost,
        cost_per_item_usd: per_item(cost),
        mean_score_ms: per_item(score_ms),
        mean_store_ms: per_item(store_ms),
        overhead_pct: if gen_ms > 0.0 {
            100.0 * (score_ms + store_ms) / gen_ms
        } else {
            0.0
        },
        session_overhead_pct: None,
    }
}

/// The oracle router over the runs of each (dataset, split, prompt) that has two or more: on
/// every item all of them answered, it takes the cheapest run that passed (or the cheapest of all
/// when none did), the faster one among equally cheap runs (local models all cost 0). No real
/// router over those runs can beat its score; its cost and latency show what that score would
/// cost. `records` give each run's prompt version.
pub fn oracles(
    outcomes: &[Outcome],
    records: &[RunRecord],
    metric_of: impl Fn(&str) -> String,
) -> Vec<Row> {
    // (dataset, split, prompt) -> (model, settings hash) -> item -> outcome
    type ItemOutcomes<'a> = HashMap<&'a str, &'a Outcome>;
    type Runs<'a> = BTreeMap<(&'a str, &'a str), ItemOutcomes<'a>>;
    let prompts = prompt_versions(records);
    let isolations = isolations(records);
    let mut by_split: BTreeMap<(&str, &str, &str), Runs> = BTreeMap::new();
    for outcome in outcomes {
        let prompt = prompt_of(&prompts, &outcome.settings_hash);
        by_split
            .entry((&outcome.dataset, &outcome.split, prompt))
            .or_default()
            .entry((&outcome.model, &outcome.settings_hash))
            .or_default()
            .insert(&outcome.item_id, outcome);
    }
    let mut rows = Vec::new();
    for ((dataset, split, prompt), runs) in by_split {
        if runs.len() < 2 {
            continue;
        }
        let first = runs.values().next().expect("two or more runs");
        let mut items: Vec<&str> = first
            .keys()
            .copied()
            .filter(|item| runs.values().all(|run| run.contains_key(item)))
            .collect();
        items.sort_unstable();
        let chosen: Vec<&Outcome> = items
            .iter()
            .map(|item| {
                let candidates = runs.values().map(|run| run[item]);
                let cheapest = |a: &&Outcome, b: &&Outcome| {
                    (a.cost_usd.total_cmp(&b.cost_usd)).then(a.gen_ms.total_cmp(&b.gen_ms))
                };
                candidates
                    .clone()
                    .filter(|o| o.passed)
                    .min_by(cheapest)
                    .or_else(|| candidates.min_by(cheapest))
                    .expect("two or more runs")
            })
            .collect();
        let name = format!(
            "oracle({})",
            runs.keys()
                .map(|(model, _)| *model)
                .collect::<Vec<_>>()
                .join("|")
        );
        let mut isolation: Vec<&str> = runs
            .keys()
            .map(|(_, hash)| isolation_of(&isolations, hash))
            .collect();
        isolation.sort_unstable();
        isolation.dedup();
        rows.push(Row {
            isolation: isolation.join("+"),
            ..aggregate(
                dataset,
                split,
                &name,
                "-",
                prompt,
                &metric_of(dataset),
                &chosen,
            )
        });
    }
    rows
}

/// The rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "dataset", "split", "model", "settings", "prompt", "sandbox", "n", "metric", "score",
        "95% CI", "errors", "tok out", "latency", "tok/s", "cost $", "harness",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        let harness = match row.session_overhead_pct {
            Some(session) => format!("{:.1}% ({session:.1}%)", row.overhead_pct),
            None => format!("{:.1}%", row.overhead_pct),
        };
        cells.push(vec![
            row.dataset.clone(),
            row.split.clone(),
            row.model.clone(),
            row.settings_hash.chars().take(8).collect(),
            row.prompt.clone(),
            row.isolation.clone(),
            row.n.to_string(),
            row.metric.clone(),
            format!("{:.1}%", 100.0 * row.score),
            format!("{:.1}-{:.1}%", 100.0 * row.ci_low, 100.0 * row.ci_high),
            row.errors.to_string(),
            row.completion_tokens.to_string(),
            format!("{:.2}s", row.mean_latency_ms / 1000.0),
            format!("{:.1}", row.tokens_per_s),
            format!("{:.4}", row.cost_usd),
            harness,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
    out.push_str(
        "latency: mean generation wall time per item; harness: scoring + storage time as a share \
         of generation time (in parentheses: everything but generation, from whole sessions)\n",
    );
    out
}

/// The rows as a Markdown table, per-item means where the text table shows totals: the form the
/// README's baselines are pasted in.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| dataset | split | model | prompt | sandbox | n | metric | score | 95% CI \
         | mean tokens out | stopped at max_tokens | mean latency | tok/s | cost $ per item \
         | harness |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let mean_tokens = if row.n == 0 {
            0.0
        } else {
            row.completion_tokens as f64 / row.n as f64
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1}% | {:.1}–{:.1}% | {mean_tokens:.0} | {} \
             | {:.1} s | {:.1} | {:.4} | {:.1}% |",
            row.dataset,
            row.split,
            // The oracle's name lists its runs with `|`, which would end a Markdown cell.
            row.model.replace('|', "\\|"),
            row.prompt,
            row.isolation,
            row.n,
            row.metric,
            100.0 * row.score,
            100.0 * row.ci_low,
            100.0 * row.ci_high,
            row.max_token_stops,
            row.mean_latency_ms / 1000.0,
            row.tokens_per_s,
            row.cost_per_item_usd,
            row.overhead_pct,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(model: &str, prompt: &str) -> RunRecord {
        RunRecord {
            settings_hash: format!("hash-{model}"),
            model: model.into(),
            dataset: "d".into(),
            settings: serde_json::json!({ "settings": { "prompt_version": prompt } }),
            created_at: 0,
        }
    }

    /// `record`, as a run of a dataset whose code ran in a sandbox at `isolation`.
    fn sandboxed(record: RunRecord, isolation: &str) -> RunRecord {
        let mut settings = record.settings;
        settings["scoring"] = serde_json::json!({ "sandbox": { "isolation": isolation } });
        RunRecord { settings, ..record }
    }

    fn outcome(model: &str, item: &str, passed: bool, cost: f64) -> Outcome {
        Outcome {
            dataset: "d".into(),
            item_id: item.into(),
            model: model.into(),
            settings_hash: format!("hash-{model}"),
            split: "test".into(),
            output: Some(String::new()),
            finish_reason: None,
            passed,
            score_detail: serde_json::Value::Null,
            prompt_tokens: 10,
            completion_tokens: 50,
            latency_ms: None,
            cost_usd: cost,
            gen_ms: 1000.0,
            score_ms: 20.0,
            store_ms: Some(1.0),
            error: None,
            report: None,
            created_at: 0,
        }
    }

    #[test]
    fn summarizes_each_run() {
        let outcomes = vec![
            outcome("small", "1", true, 0.0),
            Outcome {
                finish_reason: Some("length".into()),
                ..outcome("small", "2", false, 0.0)
            },
            Outcome {
                error: Some("boom".into()),
                output: None,
                ..outcome("small", "3", false, 0.0)
            },
            outcome("large", "1", true, 0.01),
        ];
        let sessions = vec![Session {
            settings_hash: "hash-small".into(),
            items: 3,
            wall_ms: 3300.0,
            gen_ms: 3000.0,
        }];
        let records = [sandboxed(record("small", "p1"), "full")];
        let rows = summarize(&outcomes, &sessions, &records, |_| "pass@1".into());
        assert_eq!(rows.len(), 2);
        let small = rows.iter().find(|r| r.model == "small").unwrap();
        assert_eq!((small.n, small.passed, small.errors), (3, 1, 1));
        assert!((small.score - 1.0 / 3.0).abs() < 1e-12);
        assert!((small.tokens_per_s - 50.0).abs() < 1e-9);
        assert!((small.overhead_pct - 2.1).abs() < 1e-9);
        assert!((small.session_overhead_pct.unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(small.prompt, "p1");
        assert_eq!(small.isolation, "full");
        let large = rows.iter().find(|r| r.model == "large").unwrap();
        assert_eq!(large.session_overhead_pct, None);
        assert_eq!(large.prompt, "?", "no run recorded");
        assert_eq!(large.isolation, "?", "no run recorded");
        assert!((large.cost_usd - 0.01).abs() < 1e-12);
        let text = table(&rows);
        assert!(text.contains("33.3%"), "{text}");
        assert!(text.lines().next().unwrap().contains("sandbox"), "{text}");
        assert!(text.contains("p1      full"), "{text}");
        let markdown = markdown(&rows);
        assert!(
            markdown.contains(
                "| d | test | small | p1 | full | 3 | pass@1 | 33.3% | 6.1–79.2% | 50 | 1 | 1.0 s | 50.0 \
                 | 0.0000 | 2.1% |"
            ),
            "{markdown}"
        );
    }

    #[test]
    fn the_oracle_takes_the_cheapest_passing_run_per_item() {
        let outcomes = vec![
            outcome("small", "1", true, 0.001),
            outcome("small", "2", false, 0.001),
            outcome("small", "3", false, 0.001),
            outcome("large", "1", true, 0.01),
            outcome("large", "2", true, 0.01),
            outcome("large", "3", false, 0.01),
            // Only one run answered item 4: the oracle compares items all runs answered.
            outcome("large", "4", true, 0.01),
        ];
        let records = [record("small", "p1"), record("large", "p1")];
        let rows = oracles(&outcomes, &records, |_| "pass@1".into());
        assert_eq!(rows.len(), 1);
        let oracle = &rows[0];
        assert_eq!(oracle.model, "oracle(large|small)");
        assert_eq!((oracle.n, oracle.passed), (3, 2));
        assert_eq!(oracle.prompt, "p1");
        // A dataset that runs no code records no sandbox.
        assert_eq!(oracle.isolation, "none");
        let mixed = [
            sandboxed(record("small", "p1"), "full"),
            sandboxed(record("large", "p1"), "limits_only"),
        ];
        let oracle = &oracles(&outcomes, &mixed, |_| "pass@1".into())[0];
        assert_eq!(oracle.isolation, "full+limits_only");
        // Item 1 from small, item 2 from large, item 3 (no one passed) from the cheaper small.
        assert!(
            (oracle.cost_usd - 0.012).abs() < 1e-12,
            "{}",
            oracle.cost_usd
        );
        assert!(oracles(&outcomes[..3], &records, |_| "pass@1".into()).is_empty());
        // Runs asked with different prompts are not routed between: no oracle.
        let records = [record("small", "p1"), record("large", "p2")];
        assert!(oracles(&outcomes, &records, |_| "pass@1".into()).is_empty());
    }

    #[test]
    fn among_equally_cheap_runs_the_oracle_takes_the_faster() {
        let timed = |model: &str, item: &str, passed: bool, gen_ms: f64| Outcome {
            gen_ms,
            ..outcome(model, item, passed, 0.0)
        };
        let outcomes = vec![
            timed("a-slow", "1", true, 3000.0),
            timed("b-fast", "1", true, 1000.0),
            timed("a-slow", "2", true, 3000.0),
            timed("b-fast", "2", false, 1000.0),
        ];
        let oracle = &oracles(&outcomes, &[], |_| "pass@1".into())[0];
        assert_eq!((oracle.n, oracle.passed), (2, 2));
        // Item 1 from b-fast (1 s), item 2 from a-slow (3 s).
        assert_eq!(oracle.mean_latency_ms, 2000.0);
    }
}
