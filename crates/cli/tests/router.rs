//! `tandem router` end to end on outcomes a real model (SmolLM2-135M) generated through
//! `tandem eval run`: train a learned router by cross-validation, calibrate its threshold to a
//! share of large-model calls, list it, and measure every routing score side by side with
//! `router evaluate` (its table, scores and plots).
//!
//! The "small" and "large" models are the same file; the small one's answers are cut to a few
//! tokens, so the two differ in what they pass as a real pair would.

use std::path::{Path, PathBuf};
use std::process::Command;

const ITEMS: usize = 6;

fn config(dir: &Path) -> PathBuf {
    let model = tandem_fetch::test_model();
    let path = dir.join("tandem.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\npath = \"{state}\"\n\n\
             [models.small]\nkind = \"local\"\nfile = \"{model}\"\ncontext_size = 1024\nthreads = 1\n\n\
             [models.large]\nkind = \"local\"\nfile = \"{model}\"\ncontext_size = 1024\nthreads = 1\n\
             price = {{ input_per_million = 0.15, output_per_million = 0.60 }}\n",
            state = dir.join("state.sqlite").display(),
            model = model.display(),
        ),
    )
    .unwrap();
    path
}

fn tandem(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command.arg("--config").arg(config(dir)).args(args);
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
