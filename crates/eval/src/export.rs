//! Export of the store for other tools: `outcomes.json` (every column, nested JSON kept as JSON),
//! `outcomes.csv` (one row per outcome, nested JSON as text) and `runs.json` (the settings).

use std::path::{Path, PathBuf};

use crate::error::EvalError;
use crate::store::{Outcome, RunRecord};

/// Writes the three files into `dir` and returns their paths.
pub fn export(
    runs: &[RunRecord],
    outcomes: &[Outcome],
    dir: &Path,
) -> Result<Vec<PathBuf>, EvalError> {
    std::fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
    let runs_path = dir.join("runs.json");
    write_json(&runs_path, runs)?;
    let json_path = dir.join("outcomes.json");
    write_json(&json_path, outcomes)?;
    let csv_path = dir.join("outcomes.csv");
    write_csv(&csv_path, outcomes)?;
    Ok(vec![runs_path, json_path, csv_path])
}

fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), EvalError> {
    let file = std::fs::File::create(path).map_err(EvalError::io(path))?;
    serde_json::to_writer_pretty(std::io::BufWriter::new(file), value)
        .map_err(|e| EvalError::io(path)(e.into()))
}

fn write_csv(path: &Path, outcomes: &[Outcome]) -> Result<(), EvalError> {
    let csv_error = |e: csv::Error| EvalError::io(path)(std::io::Error::other(e));
    let mut writer = csv::Writer::from_path(path).map_err(csv_error)?;
    writer
        .write_record([
            "dataset",
            "item_id",
            "model",
            "settings_hash",
            "split",
            "passed",
            "prompt_tokens",
            "completion_tokens",
            "latency_ms",
            "cost_usd",
            "gen_ms",
            "score_ms",
            "store_ms",
            "finish_reason",
            "error",
            "output",
            "score_detail",
            "report",
            "created_at",
        ])
        .map_err(csv_error)?;
    let optional = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for o in outcomes {
        writer
            .write_record([
                o.dataset.clone(),
                o.item_id.clone(),
                o.model.clone(),
                o.settings_hash.clone(),
                o.split.clone(),
                u8::from(o.passed).to_string(),
                o.prompt_tokens.to_string(),
                o.completion_tokens.to_string(),
                optional(o.latency_ms),
                o.cost_usd.to_string(),
                o.gen_ms.to_string(),
                o.score_ms.to_string(),
                optional(o.store_ms),
                o.finish_reason.clone().unwrap_or_default(),
                o.error.clone().unwrap_or_default(),
                o.output.clone().unwrap_or_default(),
                o.score_detail.to_string(),
                o.report.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                o.created_at.to_string(),
            ])
            .map_err(csv_error)?;
    }
    writer.flush().map_err(EvalError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_json_and_csv_that_read_back() {
        let outcome = Outcome {
            dataset: "d".into(),
            item_id: "i,1".into(),
            model: "m".into(),
            settings_hash: "h".into(),
            split: "test".into(),
            output: Some("line one\n\"quoted\", line two".into()),
            finish_reason: Some("stop".into()),
            passed: true,
            score_detail: serde_json::json!({"extracted": "1"}),
            prompt_tokens: 1,
            completion_tokens: 2,
            latency_ms: None,
            cost_usd: 0.5,
            gen_ms: 3.0,
            score_ms: 4.0,
            store_ms: Some(0.25),
            error: None,
            report: None,
            created_at: 9,
        };
        let dir = tempfile::tempdir().unwrap();
        let files = export(&[], std::slice::from_ref(&outcome), dir.path()).unwrap();
        assert_eq!(files.len(), 3);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("outcomes.json")).unwrap())
                .unwrap();
        assert_eq!(json[0]["output"], serde_json::json!(outcome.output));
        assert_eq!(json[0]["score_detail"]["extracted"], "1");
        let mut reader = csv::Reader::from_path(dir.path().join("outcomes.csv")).unwrap();
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 1);
        assert_eq!(&records[0][1], "i,1");
        assert_eq!(&records[0][5], "1");
        assert_eq!(&records[0][15], outcome.output.as_deref().unwrap());
    }
}
