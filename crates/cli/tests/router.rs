//! `tandem router` end to end on outcomes a real model (SmolLM2-135M) generated through
//! `tandem eval run`: train a learned router by cross-validation, calibrate its threshold to a
//! share of large-model calls, list it, and measure every routing score side by side with
//! `router evaluate` (its table, scores and plots). Then a cascade's threshold, calibrated on the
//! small model's answers to a sample of prompts and used by the pipeline, and a new `eval run`
//! (not the old outcomes resumed) once the stored threshold changes.
//!
//! The "small" and "large" models are the same file; the small one's answers are cut to a few
//! tokens, so the two differ in what they pass as a real pair would.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ask_cheap, cascade_entry, local_model};

const ITEMS: usize = 6;

/// Both models, with the state store in `dir`; the large one priced like a cloud model.
fn models(dir: &Path) -> String {
    format!(
        "[store]\npath = \"{}\"\n\n{}\n{}price = {{ input_per_million = 0.15, output_per_million = 0.60 }}\n\n",
        dir.join("state.sqlite").display(),
        local_model("small", 1024),
        local_model("large", 1024),
    )
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("tandem.toml");
    std::fs::write(&path, models(dir)).unwrap();
    path
}

fn tandem(dir: &Path, args: &[&str]) -> Command {
    tandem_with(&config(dir), args)
}

fn tandem_with(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command.arg("--config").arg(config).args(args);
    command
}

fn succeed(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    stdout
}

/// Stores both models' outcomes on the first HumanEval tasks: the small model's cut at 8 tokens.
fn generate(dir: &Path) -> PathBuf {
    let db = dir.join("outcomes.sqlite");
    let limit = ITEMS.to_string();
    for (model, max_tokens) in [("small", "8"), ("large", "160")] {
        succeed(&mut tandem(
            dir,
            &[
                "eval",
                "run",
                "--dataset",
                "humaneval",
                "--model",
                model,
                "--limit",
                &limit,
                "--max-tokens",
                max_tokens,
                "--quiet",
                "--db",
                db.to_str().unwrap(),
            ],
        ));
    }
    db
}

fn passed(db: &Path, model: &str) -> f64 {
    let db = rusqlite::Connection::open(db).unwrap();
    db.query_row(
        "SELECT avg(passed) FROM outcomes WHERE model = ?1",
        [model],
        |row| row.get(0),
    )
    .unwrap()
}

#[test]
fn routers_are_trained_calibrated_and_evaluated_from_stored_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let db = generate(dir.path());
    let db_arg = db.to_str().unwrap();

    // Train: a nearest-neighbour router by 3-fold cross-validation (HumanEval has no train split).
    let trained = succeed(&mut tandem(
        dir.path(),
        &[
            "router",
            "train",
            "--name",
            "he-knn",
            "--dataset",
            "humaneval",
            "--small",
            "small",
            "--large",
            "large",
            "--folds",
            "3",
            "--db",
            db_arg,
        ],
    ));
    assert!(trained.contains("stored router `he-knn`"), "{trained}");
    let shown = succeed(&mut tandem(dir.path(), &["router", "show"]));
    assert!(
        shown.contains("he-knn: threshold not calibrated"),
        "{shown}"
    );
    assert!(shown.contains("3-fold cross-validation"), "{shown}");

    // Calibrate on all 164 prompts. How many reach the large model depends on ties among the
    // scores (six training items give few distinct ones), so only the report is checked here;
    // `threshold_for_share` itself is tested in tandem-route.
    let calibrated = succeed(&mut tandem(
        dir.path(),
        &[
            "router",
            "calibrate",
            "--name",
            "he-knn",
            "--llm-share",
            "0.5",
        ],
    ));
    let routed: usize = calibrated
        .split(" sends ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{calibrated}"));
    assert!(calibrated.contains(" of 164 prompts"), "{calibrated}");
    assert!(routed <= 164, "{calibrated}");
    let shown = succeed(&mut tandem(dir.path(), &["router", "show"]));
    assert!(!shown.contains("not calibrated"), "{shown}");

    // A share outside [0, 1] and an unknown router are refused with a message.
    let refused = tandem(
        dir.path(),
        &[
            "router",
            "calibrate",
            "--name",
            "he-knn",
            "--llm-share",
            "1.5",
        ],
    )
    .output()
    .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--llm-share must be in [0, 1]"));
    let unknown = tandem(
        dir.path(),
        &[
            "router",
            "calibrate",
            "--name",
            "nope",
            "--llm-share",
            "0.3",
        ],
    )
    .output()
    .unwrap();
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no stored router is called `nope`"));

    // Evaluate every score on the same held-out items.
    let out = dir.path().join("report");
    succeed(&mut tandem(
        dir.path(),
        &[
            "router",
            "evaluate",
            "--dataset",
            "humaneval",
            "--small",
            "small",
            "--large",
            "large",
            "--folds",
            "3",
            "--db",
            db_arg,
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    assert_eq!(scores["items"], ITEMS);
    let (small, large) = (passed(&db, "small"), passed(&db, "large"));
    let methods = scores["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for name in [
        "knn",
        "logistic",
        "perplexity",
        "mean_logprob",
        "min_logprob",
        "self_check",
        "agreement",
        "shown_examples",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for method in methods {
        let quality = &method["quality"];
        let curve = quality["curve"].as_array().unwrap();
        // Every curve runs from always-small to always-large, one item at a time, and its costs
        // with it: a cascade pays the small attempt on top, a router does not.
        assert_eq!(curve.len(), ITEMS + 1, "{method}");
        let close = |a: &serde_json::Value, b: f64| (a.as_f64().unwrap() - b).abs() < 1e-9;
        assert!(close(&curve[0]["quality"], small), "{method}");
        assert!(close(&curve[ITEMS]["quality"], large), "{method}");
        assert!(close(&quality["small_quality"], small), "{method}");
        let costs = method["cost_per_item"].as_array().unwrap();
        assert_eq!(costs.len(), ITEMS + 1);
        let all_large = costs[ITEMS].as_f64().unwrap();
        let large_cost = scores["large_cost_per_item"].as_f64().unwrap();
        let small_cost = scores["small_cost_per_item"].as_f64().unwrap();
        let expected = if method["kind"] == "cascade" {
            small_cost + large_cost
        } else {
            large_cost
        };
        assert!((all_large - expected).abs() < 1e-12, "{method}");
        let scored = method["scored"].as_u64().unwrap();
        assert!(scored >= 1 && scored <= ITEMS as u64, "{method}");
    }
    assert!(scores["large_cost_per_item"].as_f64().unwrap() > 0.0);
    assert_eq!(scores["small_cost_per_item"].as_f64().unwrap(), 0.0);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| shown_examples | cascade |"), "{report}");
    for plot in ["humaneval-routing-vs-share", "humaneval-routing-vs-cost"] {
        for ext in ["svg", "png"] {
            let path = out.join(format!("{plot}.{ext}"));
            assert!(path.exists(), "{} missing", path.display());
        }
    }
}

/// The models of [`models`], a direct pipeline `plain`, and the cascade `cheap` with `rest` (its
/// signal, maybe a threshold).
fn cascade_config(dir: &Path, rest: &str) -> PathBuf {
    let path = dir.join("cascade.toml");
    std::fs::write(
        &path,
        format!(
            "{}[pipelines.plain]\nstrategy = \"direct\"\nmodel = \"small\"\n\n\
             [pipelines.cheap]\nstrategy = \"cascade\"\nsmall = \"small\"\nlarge = \"large\"\n{rest}",
            models(dir)
        ),
    )
    .unwrap();
    path
}

/// The stderr of a command that must fail.
fn fail(command: &mut Command) -> String {
    let Output { status, stderr, .. } = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn a_cascade_threshold_is_calibrated_on_a_sample_and_used_where_none_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mean_logprob = "signal = \"mean_logprob\"\n";
    let config = cascade_config(dir.path(), mean_logprob);
    let limit = ITEMS.to_string();
    let calibrate = |pipeline: &str, share: &str| {
        tandem_with(
            &config,
            &[
                "router",
                "calibrate",
                "--cascade",
                pipeline,
                "--llm-share",
                share,
                "--dataset",
                "humaneval",
                "--limit",
                &limit,
                "--max-tokens",
                "16",
            ],
        )
    };
    let ask = |prompt: &str| {
        tandem_with(
            &config,
            &[
                "run",
                "-m",
                "cheap",
                prompt,
                "--max-tokens",
                "4",
                "--temperature",
                "0",
            ],
        )
    };

    // Neither configured nor calibrated: the pipeline cannot be built, and says how to fix it.
    let refused = fail(&mut ask("Say hi."));
    assert!(
        refused.contains("cascade `cheap` sets no `threshold` and none was calibrated"),
        "{refused}"
    );
    assert!(
        refused.contains("tandem router calibrate --cascade cheap --llm-share"),
        "{refused}"
    );

    // Calibration refuses what it cannot do, before loading anything.
    let refusals = [
        (calibrate("cheap", "1.5"), "--llm-share must be in [0, 1]"),
        (calibrate("nope", "0.5"), "no pipeline is called `nope`"),
        (
            calibrate("plain", "0.5"),
            "pipeline `plain` is not a cascade (strategy = \"direct\")",
        ),
        (
            tandem_with(
                &config,
                &[
                    "router",
                    "calibrate",
                    "--cascade",
                    "cheap",
                    "--llm-share",
                    "0.5",
                ],
            ),
            "--dataset is needed with --cascade",
        ),
    ];
    for (mut command, message) in refusals {
        let stderr = fail(&mut command);
        assert!(stderr.contains(message), "{message}: {stderr}");
    }

    // Half of the first six HumanEval prompts: six different answers score six different
    // probabilities, so the closest share is three of them.
    let out = succeed(&mut calibrate("cheap", "0.5"));
    let escalated: usize = out
        .split(" escalates ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        out.contains(&format!(" of {ITEMS} prompts of humaneval")),
        "{out}"
    );
    assert_eq!(escalated, ITEMS / 2, "{out}");

    let state = rusqlite::Connection::open(dir.path().join("state.sqlite")).unwrap();
    let (threshold, small, scoring, provenance): (f64, String, String, String) = state
        .query_row(
            "SELECT threshold, small, scoring, provenance FROM cascades WHERE pipeline = 'cheap'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .unwrap();
    assert_eq!(small, "small");
    assert_eq!(scoring, r#"{"signal":"mean_logprob"}"#);
    let provenance: serde_json::Value = serde_json::from_str(&provenance).unwrap();
    assert_eq!(provenance["dataset"], "humaneval");
    assert_eq!(provenance["items"], ITEMS);
    assert_eq!(provenance["scored"], ITEMS);
    assert_eq!(provenance["failed"], 0);
    assert_eq!(provenance["unanswered"], 0);
    assert_eq!(provenance["llm_share"], 0.5);
    assert_eq!(provenance["escalated"], escalated);
    let shown = succeed(&mut tandem_with(&config, &["router", "show"]));
    assert!(
        shown.contains(&format!(
            "cascade cheap: threshold {threshold}; small `small`"
        )),
        "{shown}"
    );

    // Served on the same prompts, asked the same way, the pipeline without a threshold uses the
    // stored one and escalates the same answers.
    let db = dir.path().join("outcomes.sqlite");
    let eval_run = |items: &str| {
        let mut command = tandem_with(
            &config,
            &[
                "eval",
                "run",
                "--dataset",
                "humaneval",
                "--model",
                "cheap",
                "--limit",
                items,
                "--max-tokens",
                "16",
                "--quiet",
                "--db",
                db.to_str().unwrap(),
            ],
        );
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    eval_run(&limit);
    // The cascade entry of every stored outcome of `cheap`, by run.
    let entries = || -> Vec<(String, serde_json::Value)> {
        let outcomes = rusqlite::Connection::open(&db).unwrap();
        let mut statement = outcomes
            .prepare("SELECT settings_hash, report FROM outcomes WHERE model = 'cheap'")
            .unwrap();
        let rows: Vec<(String, String)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.into_iter()
            .map(|(run, report)| {
                let report: serde_json::Value = serde_json::from_str(&report).unwrap();
                let entry = report["strategies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|entry| entry["strategy"] == "cascade")
                    .unwrap_or_else(|| panic!("no cascade entry: {report}"))
                    .clone();
                (run, entry)
            })
            .collect()
    };
    let first = entries();
    assert_eq!(first.len(), ITEMS);
    assert!(first.iter().all(|(run, _)| run == &first[0].0), "one run");
    for (_, entry) in &first {
        assert_eq!(entry["threshold"].as_f64(), Some(threshold), "{entry}");
    }
    let served_escalated = first.iter().filter(|(_, e)| e["escalated"] == true).count();
    assert_eq!(served_escalated, escalated, "{first:?}");

    // Recalibrated (here: a threshold above every score, stored as calibration stores it), the
    // same configuration is another pipeline: `eval run` starts a new run rather than resuming
    // the outcomes of the old threshold.
    state
        .execute(
            "UPDATE cascades SET threshold = 2.0 WHERE pipeline = 'cheap'",
            [],
        )
        .unwrap();
    let summary = eval_run("2");
    assert!(
        summary.contains("cheap: 2 items (0 resumed, 2 generated)"),
        "{summary}"
    );
    let second: Vec<_> = entries()
        .into_iter()
        .filter(|(run, _)| run != &first[0].0)
        .collect();
    assert_eq!(second.len(), 2, "{second:?}");
    for (_, entry) in &second {
        assert_eq!(entry["threshold"], 2.0, "{entry}");
        assert_eq!(entry["escalated"], true, "{entry}");
    }

    // A configured threshold wins over the stored one.
    cascade_config(dir.path(), &format!("{mean_logprob}threshold = 0.0\n"));
    let entry = cascade_entry(&ask_cheap(&config, "Say hi.", 4));
    assert_eq!(entry["threshold"], 0.0, "{entry}");
    assert_eq!(entry["escalated"], false, "{entry}");

    // Scored otherwise, the pipeline must not use a threshold calibrated on other scores.
    cascade_config(dir.path(), "signal = \"min_logprob\"\n");
    let stale = fail(&mut ask("Say hi."));
    assert!(
        stale.contains(
            "was calibrated on the answers of `small` scored by {\"signal\":\"mean_logprob\"}"
        ),
        "{stale}"
    );
    assert!(
        stale.contains("tandem router calibrate --cascade cheap"),
        "{stale}"
    );
}
