//! The outcome store: one SQLite file holding every generated answer and its score, keyed by
//! (dataset, item, model or pipeline, settings hash).
//!
//! Because every row is one item's complete outcome — output, verdict, tokens, cost, timings and
//! the model's per-stage report — a killed run resumes by skipping the keys already present,
//! re-scoring reads outputs instead of generating again, and a router or cascade can later be
//! simulated offline: join the rows of several models on `(dataset, item_id)` and pick, per item,
//! which model's outcome the strategy would have used (the report's oracle line does exactly this).
//!
//! Schema (see [`SCHEMA`]):
//! - `runs`: one row per settings hash: model, dataset and the full settings as JSON (generation
//!   parameters, dataset version, prompt template version, scorer and sandbox).
//! - `outcomes`: one row per item and run, with `gen_ms`, `score_ms` and `store_ms` so the
//!   harness's own overhead can be reported next to generation time.
//! - `sessions`: one row per invocation of a run (a resumed run has several), with wall-clock and
//!   generation time, for the end-to-end overhead.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::error::EvalError;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    settings_hash TEXT PRIMARY KEY,
    model         TEXT NOT NULL,
    dataset       TEXT NOT NULL,
    settings      TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    dataset           TEXT NOT NULL,
    item_id           TEXT NOT NULL,
    model             TEXT NOT NULL,
    settings_hash     TEXT NOT NULL REFERENCES runs(settings_hash),
    split             TEXT NOT NULL,
    output            TEXT,
    finish_reason     TEXT,
    passed            INTEGER NOT NULL,
    score_detail      TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms        REAL,
    cost_usd          REAL NOT NULL,
    gen_ms            REAL NOT NULL,
    score_ms          REAL NOT NULL,
    store_ms          REAL,
    error             TEXT,
    report            TEXT,
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (dataset, item_id, model, settings_hash)
);
CREATE INDEX IF NOT EXISTS outcomes_by_item ON outcomes(dataset, item_id);
CREATE TABLE IF NOT EXISTS sessions (
    id            INTEGER PRIMARY KEY,
    settings_hash TEXT NOT NULL REFERENCES runs(settings_hash),
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    items         INTEGER NOT NULL DEFAULT 0,
    wall_ms       REAL NOT NULL DEFAULT 0,
    gen_ms        REAL NOT NULL DEFAULT 0
);
";

/// One evaluated configuration: a model or pipeline with fixed settings on one dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub settings_hash: String,
    pub model: String,
    pub dataset: String,
    pub settings: serde_json::Value,
    pub created_at: i64,
}

/// One item's outcome under one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub dataset: String,
    pub item_id: String,
    pub model: String,
    pub settings_hash: String,
    pub split: String,
    /// The model's answer; `None` when generation failed (see `error`).
    pub output: Option<String>,
    pub finish_reason: Option<String>,
    pub passed: bool,
    pub score_detail: serde_json::Value,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// The latency the model's own report gives (for pipelines: end to end inside Tandem).
    pub latency_ms: Option<f64>,
    pub cost_usd: f64,
    /// Wall-clock time of the generation as the harness saw it.
    pub gen_ms: f64,
    pub score_ms: f64,
    /// Time to write the row (recorded just after it is written).
    pub store_ms: Option<f64>,
    pub error: Option<String>,
    /// The model's per-response report (stages, models, costs), as JSON.
    pub report: Option<serde_json::Value>,
    pub created_at: i64,
}

/// Selects runs and outcomes; empty fields select everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub dataset: Option<String>,
    pub models: Vec<String>,
    pub split: Option<String>,
}

/// One invocation of a run, for the end-to-end overhead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    pub settings_hash: String,
    pub items: u64,
    pub wall_ms: f64,
    pub gen_ms: f64,
}

pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, EvalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
        }
        let store_error = |source| EvalError::Store {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(store_error)?;
        // WAL with synchronous=NORMAL: a killed process loses nothing that was committed, and a
        // commit costs no fsync, which keeps storage far below generation time.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(store_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(store_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(store_error)?;
        conn.execute_batch(SCHEMA).map_err(store_error)?;
        Ok(Store {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, EvalError> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&conn).map_err(|source| EvalError::Store {
            path: self.path.clone(),
            source,
        })
    }

    /// Records a run's settings, unless a run with the same hash is already recorded.
    pub fn ensure_run(&self, run: &RunRecord) -> Result<(), EvalError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO runs (settings_hash, model, dataset, settings, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    run.settings_hash,
                    run.model,
                    run.dataset,
                    run.settings.to_string(),
                    run.created_at
                ],
            )
            .map(drop)
        })
    }

    pub fn runs(&self, filter: &Filter) -> Result<Vec<RunRecord>, EvalError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT settings_hash, model, dataset, settings, created_at FROM runs
                 ORDER BY dataset, model, created_at",
            )?;
            let rows = statement.query_map([], |row| {
                let settings: String = row.get(3)?;
                Ok(RunRecord {
                    settings_hash: row.get(0)?,
                    model: row.get(1)?,
                    dataset: row.get(2)?,
                    settings: serde_json::from_str(&settings).unwrap_or(serde_json::Value::Null),
                    created_at: row.get(4)?,
                })
            })?;
            rows.filter(|r| {
                r.as_ref().map_or(true, |r| {
                    filter.dataset.as_ref().is_none_or(|d| *d == r.dataset)
                        && (filter.models.is_empty() || filter.models.contains(&r.model))
                })
            })
            .collect()
        })
    }

    /// Deletes a run's outcomes whose generation failed, so that they are generated again.
    pub fn delete_errors(&self, settings_hash: &str) -> Result<usize, EvalError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM outcomes WHERE settings_hash = ?1 AND error IS NOT NULL",
                [settings_hash],
            )
        })
    }

    /// Writes one outcome and then records, in the same row, how long the write took. Returns
    /// that time in milliseconds.
    pub fn insert(&self, outcome: &Outcome) -> Result<f64, EvalError> {
        self.with(|c| {
            let started = Instant::now();
            let mut insert = c.prepare_cached(
                "INSERT INTO outcomes (dataset, item_id, model, settings_hash, split, output,
                     finish_reason, passed, score_detail, prompt_tokens, completion_tokens,
                     latency_ms, cost_usd, gen_ms, score_ms, error, report, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18)",
            )?;
            insert.execute(params![
                outcome.dataset,
                outcome.item_id,
                outcome.model,
                outcome.settings_hash,
                outcome.split,
                outcome.output,
                outcome.finish_reason,
                outcome.passed,
                outcome.score_detail.to_string(),
                outcome.prompt_tokens,
                outcome.completion_tokens,
                outcome.latency_ms,
                outcome.cost_usd,
                outcome.gen_ms,
                outcome.score_ms,
                outcome.error,
                outcome.report.as_ref().map(serde_json::Value::to_string),
                outcome.created_at,
            ])?;
            let row = c.last_insert_rowid();
            let store_ms = started.elapsed().as_secs_f64() * 1000.0;
            c.prepare_cached("UPDATE outcomes SET store_ms = ?1 WHERE rowid = ?2")?
                .execute(params![store_ms, row])?;
            Ok(store_ms)
        })
    }

    /// Replaces the verdict of a stored outcome (re-scoring).
    pub fn update_score(
        &self,
        outcome: &Outcome,
        passed: bool,
        detail: &serde_json::Value,
        score_ms: f64,
    ) -> Result<(), EvalError> {
        self.with(|c| {
            c.execute(
                "UPDATE outcomes SET passed = ?1, score_detail = ?2, score_ms = ?3
                 WHERE dataset = ?4 AND item_id = ?5 AND model = ?6 AND settings_hash = ?7",
                params![
                    passed,
                    detail.to_string(),
                    score_ms,
                    outcome.dataset,
                    outcome.item_id,
                    outcome.model,
                    outcome.settings_hash
                ],
            )
            .map(drop)
        })
    }

    /// Records the scorer that produced a run's verdicts (after re-scoring).
    pub fn set_scoring(
        &self,
        settings_hash: &str,
        scoring: &serde_json::Value,
    ) -> Result<(), EvalError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET settings = json_set(settings, '$.scoring', json(?1))
                 WHERE settings_hash = ?2",
                params![scoring.to_string(), settings_hash],
            )
            .map(drop)
        })
    }

    /// Outcomes in a stable order: dataset, model, settings, item.
    pub fn outcomes(&self, filter: &Filter) -> Result<Vec<Outcome>, EvalError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT dataset, item_id, model, settings_hash, split, output, finish_reason,
                     passed, score_detail, prompt_tokens, completion_tokens, latency_ms, cost_usd,
                     gen_ms, score_ms, store_ms, error, report, created_at
                 FROM outcomes
                 WHERE (?1 IS NULL OR dataset = ?1) AND (?2 IS NULL OR split = ?2)
                 ORDER BY dataset, model, settings_hash, item_id",
            )?;
            let rows = statement.query_map(params![filter.dataset, filter.split], |row| {
                let detail: String = row.get(8)?;
                let report: Option<String> = row.get(17)?;
                Ok(Outcome {
                    dataset: row.get(0)?,
                    item_id: row.get(1)?,
                    model: row.get(2)?,
                    settings_hash: row.get(3)?,
                    split: row.get(4)?,
                    output: row.get(5)?,
                    finish_reason: row.get(6)?,
                    passed: row.get(7)?,
                    score_detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                    prompt_tokens: row.get(9)?,
                    completion_tokens: row.get(10)?,
                    latency_ms: row.get(11)?,
                    cost_usd: row.get(12)?,
                    gen_ms: row.get(13)?,
                    score_ms: row.get(14)?,
                    store_ms: row.get(15)?,
                    error: row.get(16)?,
                    report: report.and_then(|r| serde_json::from_str(&r).ok()),
                    created_at: row.get(18)?,
                })
            })?;
            rows.filter(|o| {
                o.as_ref().map_or(true, |o| {
                    filter.models.is_empty() || filter.models.contains(&o.model)
                })
            })
            .collect()
        })
    }

    /// Starts recording an invocation of a run; returns its id.
    pub fn start_session(&self, settings_hash: &str) -> Result<i64, EvalError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO sessions (settings_hash, started_at) VALUES (?1, ?2)",
                params![settings_hash, now()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn finish_session(
        &self,
        id: i64,
        items: u64,
        wall_ms: f64,
        gen_ms: f64,
    ) -> Result<(), EvalError> {
        self.with(|c| {
            c.execute(
                "UPDATE sessions SET finished_at = ?1, items = ?2, wall_ms = ?3, gen_ms = ?4
                 WHERE id = ?5",
                params![now(), items, wall_ms, gen_ms, id],
            )
            .map(drop)
        })
    }

    /// Finished sessions that generated at least one item.
    pub fn sessions(&self) -> Result<Vec<Session>, EvalError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT settings_hash, items, wall_ms, gen_ms FROM sessions
                 WHERE finished_at IS NOT NULL AND items > 0 ORDER BY id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(Session {
                    settings_hash: row.get(0)?,
                    items: row.get(1)?,
                    wall_ms: row.get(2)?,
                    gen_ms: row.get(3)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(item: &str, passed: bool) -> Outcome {
        Outcome {
            dataset: "d".into(),
            item_id: item.into(),
            model: "m".into(),
            settings_hash: "h".into(),
            split: "test".into(),
            output: Some("answer".into()),
            finish_reason: Some("stop".into()),
            passed,
            score_detail: serde_json::json!({"x": 1}),
            prompt_tokens: 10,
            completion_tokens: 20,
            latency_ms: Some(5.0),
            cost_usd: 0.001,
            gen_ms: 100.0,
            score_ms: 2.0,
            store_ms: None,
            error: None,
            report: None,
            created_at: 1,
        }
    }

    fn run_record() -> RunRecord {
        RunRecord {
            settings_hash: "h".into(),
            model: "m".into(),
            dataset: "d".into(),
            settings: serde_json::json!({"temperature": 0.0}),
            created_at: 1,
        }
    }

    #[test]
    fn stores_and_reads_back_outcomes_with_their_store_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sub/eval.sqlite")).unwrap();
        store.ensure_run(&run_record()).unwrap();
        store.ensure_run(&run_record()).unwrap();
        let ms = store.insert(&outcome("a", true)).unwrap();
        store.insert(&outcome("b", false)).unwrap();
        assert!(store.insert(&outcome("a", true)).is_err(), "duplicate key");
        let read = store.outcomes(&Filter::default()).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].store_ms, Some(ms));
        assert_eq!(
            Outcome {
                store_ms: None,
                ..read[0].clone()
            },
            outcome("a", true)
        );
        assert_eq!(store.runs(&Filter::default()).unwrap(), vec![run_record()]);
    }

    #[test]
    fn rescoring_and_error_retries_change_only_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("eval.sqlite")).unwrap();
        store.ensure_run(&run_record()).unwrap();
        store.insert(&outcome("a", false)).unwrap();
        let failed = Outcome {
            output: None,
            error: Some("upstream timed out".into()),
            ..outcome("b", false)
        };
        store.insert(&failed).unwrap();
        store
            .update_score(
                &outcome("a", false),
                true,
                &serde_json::json!({"y": 2}),
                3.0,
            )
            .unwrap();
        assert_eq!(store.delete_errors("h").unwrap(), 1);
        let read = store.outcomes(&Filter::default()).unwrap();
        assert_eq!(read.len(), 1);
        assert!(read[0].passed);
        assert_eq!(read[0].score_detail, serde_json::json!({"y": 2}));
        assert_eq!(read[0].score_ms, 3.0);
    }

    #[test]
    fn filters_by_dataset_model_and_split() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("eval.sqlite")).unwrap();
        store.ensure_run(&run_record()).unwrap();
        store.insert(&outcome("a", true)).unwrap();
        let filter = |dataset: Option<&str>, model: &str, split: Option<&str>| Filter {
            dataset: dataset.map(str::to_string),
            models: vec![model.to_string()],
            split: split.map(str::to_string),
        };
        let count = |f: Filter| store.outcomes(&f).unwrap().len();
        assert_eq!(count(filter(Some("d"), "m", Some("test"))), 1);
        assert_eq!(count(filter(Some("e"), "m", None)), 0);
        assert_eq!(count(filter(None, "n", None)), 0);
        assert_eq!(count(filter(None, "m", Some("train"))), 0);
    }

    #[test]
    fn sessions_count_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("eval.sqlite")).unwrap();
        store.ensure_run(&run_record()).unwrap();
        let killed = store.start_session("h").unwrap();
        let finished = store.start_session("h").unwrap();
        assert_ne!(killed, finished);
        store.finish_session(finished, 3, 1000.0, 900.0).unwrap();
        assert_eq!(
            store.sessions().unwrap(),
            vec![Session {
                settings_hash: "h".into(),
                items: 3,
                wall_ms: 1000.0,
                gen_ms: 900.0
            }]
        );
    }
}
