//! `tandem eval` end to end with a real model (SmolLM2-135M): generation through the chat
//! template, sandboxed scoring, the SQLite store, a run killed with SIGKILL and resumed, the report
//! with its plots, and the export; and a remote model, a `tandem serve` reached through the
//! OpenAI-compatible client, scored like the local one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("tandem.toml");
    std::fs::write(
        &path,
        format!(
            // One thread per engine: these tests run several engines at once on two cores, and
            // llama.cpp's threads spinning at barriers against each other slow every one of them
            // down many times over.
            "[models.small]\nkind = \"local\"\nfile = \"{}\"\ncontext_size = 1024\nthreads = 1\n",
            tandem_fetch::test_model().display()
        ),
    )
    .unwrap();
    path
}

/// `tandem --config .. eval SUBCOMMAND --db DB ARGS`, with datasets from the shared cache.
fn eval(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command
        .arg("--config")
        .arg(config(dir))
        .arg("eval")
        .arg(args[0])
        .arg("--db")
        .arg(dir.join("outcomes.sqlite"))
        .args(&args[1..]);
    command
}

fn succeed(command: &mut Command) -> (String, String) {
    let output: Output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

fn stored(dir: &Path) -> i64 {
    let path = dir.join("outcomes.sqlite");
    if !path.exists() {
        return 0;
    }
    let db = rusqlite::Connection::open(path).unwrap();
    db.query_row("SELECT count(*) FROM outcomes", [], |row| row.get(0))
        .unwrap_or(0)
}

#[test]
fn humaneval_run_report_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let run = [
        "run",
        "--dataset",
        "humaneval",
        "--model",
        "small",
        "--limit",
        "3",
        "--max-tokens",
        "96",
        "--quiet",
    ];
    let (table, summary) = succeed(&mut eval(dir.path(), &run));
    assert!(
        summary.contains("small: 3 items (0 resumed, 3 generated)"),
        "{summary}"
    );
    assert!(
        table.contains("humaneval") && table.contains("pass@1"),
        "{table}"
    );
    assert_eq!(stored(dir.path()), 3);

    // The same command again generates nothing.
    let (_, summary) = succeed(&mut eval(dir.path(), &run));
    assert!(summary.contains("(3 resumed, 0 generated)"), "{summary}");

    let out = dir.path().join("report");
    let (text, _) = succeed(eval(dir.path(), &["report", "--out"]).arg(&out));
    assert!(text.contains("small"), "{text}");
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "small")
        .unwrap();
    assert_eq!(row["n"], 3);
    let score = row["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score));
    let plots: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(plots.iter().any(|p| p.ends_with(".png")), "{plots:?}");
    assert!(plots.iter().any(|p| p.ends_with(".svg")), "{plots:?}");

    let exported = dir.path().join("export");
    succeed(eval(dir.path(), &["export", "--out"]).arg(&exported));
    let outcomes: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exported.join("outcomes.json")).unwrap()).unwrap();
    assert_eq!(outcomes.as_array().unwrap().len(), 3, "{outcomes}");
    let csv = std::fs::read_to_string(exported.join("outcomes.csv")).unwrap();
    assert!(csv.starts_with("dataset,item_id,model,"), "{csv}");
    for id in ["HumanEval/0,", "HumanEval/1,", "HumanEval/2,"] {
        assert!(csv.contains(id), "{id} missing from\n{csv}");
    }
}

#[test]
fn a_killed_run_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let run = [
        "run",
        "--dataset",
        "gsm-symbolic",
        "--model",
        "small",
        "--limit",
        "8",
        "--max-tokens",
        "128",
        "--quiet",
    ];
    let mut child = eval(dir.path(), &run).spawn().unwrap();
    let started = Instant::now();
    while stored(dir.path()) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no outcome stored in time"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended before it was killed: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let before = stored(dir.path());
    assert!(
        (2..8).contains(&before),
        "{before} outcomes before the kill"
    );

    let (_, summary) = succeed(&mut eval(dir.path(), &run));
    let expected = format!(
        "small: 8 items ({before} resumed, {} generated)",
        8 - before
    );
    assert!(summary.contains(&expected), "{summary}");
    assert_eq!(stored(dir.path()), 8);
}

#[test]
fn a_remote_model_through_a_tandem_server_answers_like_the_local_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&config(dir.path()));
    // The evaluating side knows the same model twice: loaded here, and behind the server.
    let local = std::fs::read_to_string(config(dir.path())).unwrap();
    let both = dir.path().join("both.toml");
    std::fs::write(
        &both,
        format!(
            "{local}\n[models.served]\nkind = \"remote\"\nbase_url = \"http://{}/v1\"\nmodel = \"small\"\n",
            server.address
        ),
    )
    .unwrap();
    let db = dir.path().join("outcomes.sqlite");
    let mut run = Command::new(env!("CARGO_BIN_EXE_tandem"));
    run.arg("--config")
        .arg(&both)
        .args(["eval", "run", "--db"])
        .arg(&db)
        .args([
            "--dataset",
            "humaneval",
            "--model",
            "small",
            "--model",
            "served",
            "--limit",
            "2",
            "--max-tokens",
            "64",
            "--concurrency",
            "1",
            "--quiet",
        ]);
    let (_, summary) = succeed(&mut run);
    assert!(summary.contains("served: 2 items"), "{summary}");
    drop(server);

    let db = rusqlite::Connection::open(db).unwrap();
    let outputs = |model: &str| -> Vec<(String, String, bool)> {
        db.prepare(
            "SELECT item_id, output, passed, error FROM outcomes WHERE model = ?1 ORDER BY item_id",
        )
        .unwrap()
        .query_map([model], |row| {
            let item: String = row.get(0)?;
            let error: Option<String> = row.get(3)?;
            let output: Option<String> = row.get(1)?;
            let output = output.unwrap_or_else(|| panic!("{model} {item} failed: {error:?}"));
            Ok((item, output, row.get(2)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let served = outputs("served");
    assert_eq!(served.len(), 2);
    assert!(served.iter().all(|(_, output, _)| !output.is_empty()));
    // Greedy, one request at a time: the server's answers and verdicts are the local ones.
    assert_eq!(served, outputs("small"));
    let settings: String = db
        .query_row(
            "SELECT settings FROM runs WHERE model = 'served'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let settings: serde_json::Value = serde_json::from_str(&settings).unwrap();
    assert_eq!(
        settings["settings"]["model_fingerprint"]["is"]["kind"], "remote",
        "{settings}"
    );
}

#[test]
fn a_misspelt_dataset_or_prompt_is_refused_before_any_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    // A model that cannot load: a refusal that mentions the prompt came before loading it.
    let config = dir.path().join("missing.toml");
    std::fs::write(
        &config,
        "[models.missing]\nkind = \"local\"\nfile = \"/nonexistent/model.gguf\"\n",
    )
    .unwrap();
    for (args, expected) in [
        (
            ["gsm-symbolic", "cot"],
            "no prompt `cot`; it has: final-line, boxed",
        ),
        (
            ["mbpp", "boxed"],
            "unknown dataset; known: humaneval, gsm-symbolic",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("--config")
            .arg(&config)
            .args(["eval", "run", "--model", "missing", "--dataset", args[0]])
            .args(["--prompt", args[1]])
            .arg("--db")
            .arg(dir.path().join("outcomes.sqlite"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("nonexistent"), "{stderr}");
    }
}
