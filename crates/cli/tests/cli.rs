//! The `tandem` binary end to end, with SmolLM2-135M as the local model.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{ask_cheap, cascade_entry, local_model};

/// A config with SmolLM2 as `small` and the `default` pipeline on it.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("tandem.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[models.small]
kind = "local"
file = "{}"
context_size = 512
parallel = 2

[pipelines.default]
strategy = "direct"
model = "small"
"#,
            tandem_fetch::test_model().display()
        ),
    )
    .unwrap();
    path
}

fn tandem(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command.arg("--config").arg(config);
    command
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn run_streams_an_answer_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let output = tandem(&config(dir.path()))
        .args([
            "run",
            "Tell me a story.",
            "--max-tokens",
            "5",
            "--temperature",
            "0",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(!stdout.trim().is_empty());
    assert!(stderr.contains("5 completion tokens"), "{stderr}");
    assert!(stderr.contains("finish: Length"), "{stderr}");
}

#[test]
fn a_cascade_pipeline_from_the_config_escalates_under_its_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cascade.toml");
    let local = |name: &str| local_model(name, 512);
    let cascade = |threshold: f64| {
        format!(
            "{}{}[pipelines.cheap]\nstrategy = \"cascade\"\nsmall = \"small\"\nlarge = \"large\"\nsignal = \"mean_logprob\"\nthreshold = {threshold:?}\n",
            local("small"),
            local("large")
        )
    };
    for (threshold, answered_by, escalated) in [(1.01, "large", true), (0.0, "small", false)] {
        std::fs::write(&path, cascade(threshold)).unwrap();
        let stderr = ask_cheap(&path, "Say hi.", 4);
        assert!(stderr.contains(&format!("[{answered_by}: ")), "{stderr}");
        assert!(stderr.contains("[cheap (cascade): {"), "{stderr}");
        assert!(
            stderr.contains(&format!("\"escalated\":{escalated}")),
            "{stderr}"
        );
    }
}

#[test]
fn a_cascade_escalates_over_http_to_a_remote_model_priced_like_a_cloud_one() {
    // The large model runs behind the OpenAI-compatible HTTP hop (a `tandem serve` on loopback),
    // priced in the cascade's configuration like a cloud model; the small one is local and free.
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&config(dir.path()));
    let path = dir.path().join("cascade.toml");
    let cascade = |threshold: f64| {
        format!(
            "{}\n[models.cloud]\nkind = \"remote\"\nbase_url = \"http://{}/v1\"\nmodel = \"small\"\n\
             price = {{ input_per_million = 150000.0, output_per_million = 600000.0 }}\n\n\
             [pipelines.cheap]\nstrategy = \"cascade\"\nsmall = \"small\"\nlarge = \"cloud\"\n\
             signal = \"mean_logprob\"\nthreshold = {threshold:?}\n",
            local_model("small", 512),
            server.address
        )
    };
    // `[MODEL: P prompt + C completion tokens, S s, R tokens/s, $COST, finish: ..]`
    let summary = |stderr: &str| -> (String, f64) {
        let line = stderr
            .lines()
            .find(|line| line.contains(" completion tokens, "))
            .unwrap_or_else(|| panic!("no summary: {stderr}"));
        let model = line[1..line.find(": ").unwrap()].to_string();
        let dollars = line.split(", $").nth(1).unwrap();
        (model, dollars.split(',').next().unwrap().parse().unwrap())
    };
    for (threshold, escalated) in [(1.01, true), (0.0, false)] {
        std::fs::write(&path, cascade(threshold)).unwrap();
        let stderr = ask_cheap(&path, "Say hi.", 4);
        let entry = cascade_entry(&stderr);
        assert_eq!(entry["escalated"], escalated, "{stderr}");
        let (model, cost) = summary(&stderr);
        if escalated {
            // The remote answer is billed at the configured price (the small attempt is free).
            assert_eq!(model, "cloud", "{stderr}");
            assert!(cost > 0.0, "{stderr}");
            assert!(
                entry
                    .get("saved_usd")
                    .is_none_or(|s| s.as_f64().unwrap() <= 0.0),
                "{stderr}"
            );
        } else {
            // A kept small answer costs nothing and saved the cloud price of its tokens.
            assert_eq!(model, "small", "{stderr}");
            assert_eq!(cost, 0.0, "{stderr}");
            assert!(entry["saved_usd"].as_f64().unwrap() > 0.0, "{stderr}");
        }
    }
}

#[test]
fn a_shown_examples_cascade_runs_the_small_answer_on_the_request_examples() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cascade.toml");
    let local = |name: &str| local_model(name, 1024);
    let config = |threshold: f64, extra: &str| {
        format!(
            "{}{}[pipelines.cheap]\nstrategy = \"cascade\"\nsmall = \"small\"\nlarge = \"large\"\n\
             signal = \"shown_examples\"\nthreshold = {threshold:?}\n{extra}",
            local("small"),
            local("large")
        )
    };
    let ask = |prompt: &str| ask_cheap(&path, prompt, 48);
    let code_task = "Write the Python function `add(a, b)` that returns the sum of a and b.\n\
                     >>> add(2, 3)\n5\nadd(-1, 1) => 0";
    let mut scores = Vec::new();
    for (threshold, escalated, answered_by) in [(0.0, false, "small"), (1.01, true, "large")] {
        std::fs::write(&path, config(threshold, "")).unwrap();
        let stderr = ask(code_task);
        let entry = cascade_entry(&stderr);
        assert_eq!(entry["signal"], "shown_examples", "{stderr}");
        assert_eq!(entry["examples"]["total"], 2, "{stderr}");
        let passed = entry["examples"]["passed"].as_f64().unwrap();
        let score = entry["score"].as_f64().unwrap();
        assert_eq!(score, passed / 2.0, "{stderr}");
        assert_eq!(entry["escalated"], escalated, "{stderr}");
        assert!(stderr.contains(&format!("[{answered_by}: ")), "{stderr}");
        scores.push(score);
    }
    // Greedy answers to the same request score the same, whatever the threshold made of them.
    assert_eq!(scores[0], scores[1]);

    // A question without examples: the signal has nothing to say, and `no_examples_score`
    // decides (0 by default: escalate).
    for (extra, escalated) in [("", true), ("no_examples_score = 1.0\n", false)] {
        std::fs::write(&path, config(0.5, extra)).unwrap();
        let entry = cascade_entry(&ask("Say hi."));
        assert_eq!(entry["no_examples"], true, "{entry}");
        assert!(entry.get("examples").is_none(), "{entry}");
        assert_eq!(entry["escalated"], escalated, "{entry}");
    }
}

#[test]
fn a_speculative_pipeline_is_built_from_the_config_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path());
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml.push_str(
        "\n[pipelines.fast]\nstrategy = \"speculative\"\ntarget = \"small\"\ndraft = \"prompt_lookup\"\nk = 4\n",
    );
    std::fs::write(&path, toml).unwrap();
    let output = tandem(&path)
        .args([
            "run",
            "Repeat exactly: one two three one two three one two three",
            "--model",
            "fast",
            "--max-tokens",
            "12",
            "--temperature",
            "0",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("one two"), "{stdout}");
    assert!(stderr.contains("12 completion tokens"), "{stderr}");
}

#[test]
fn chat_keeps_a_conversation_until_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tandem(&config(dir.path()))
        .args(["chat", "--max-tokens", "8", "--temperature", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Say hi.\nName a colour.\n/reset\nName a fruit.\n/exit\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let summaries: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("completion tokens"))
        .collect();
    assert_eq!(summaries.len(), 3, "{stderr}");
    // The second turn carries the first turn's exchange; the turn after /reset does not.
    let prompt_tokens = |line: &str| -> u32 {
        line.split(": ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(prompt_tokens(summaries[1]) > prompt_tokens(summaries[0]) + 8);
    assert!(prompt_tokens(summaries[2]) < prompt_tokens(summaries[1]));
    assert!(stderr.contains("(conversation cleared)"));
}

#[test]
fn configuration_errors_name_the_key_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[models.a]\nkind = \"local\"\nsource = \"x\"\nthreads = 0\n",
    )
    .unwrap();
    let output = tandem(&bad).args(["run", "hi"]).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("models.a.threads"), "{stderr}");

    let output = tandem(&config(dir.path()))
        .args(["run", "hi", "--model", "nope"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("no model or pipeline is called `nope`"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn serve_answers_over_http_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&config(dir.path()));
    let address = &server.address;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let result = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let health: serde_json::Value = client
            .get(format!("http://{address}/health"))
            .send()
            .await?
            .json()
            .await?;
        let reply: serde_json::Value = client
            .post(format!("http://{address}/v1/chat/completions"))
            .json(&serde_json::json!({
                "model": "default",
                "messages": [{"role": "user", "content": "Say hi."}],
                "max_tokens": 4
            }))
            .send()
            .await?
            .json()
            .await?;
        Ok::<_, reqwest::Error>((health, reply))
    });
    drop(server);
    let (health, reply) = result.unwrap();
    assert_eq!(health["pipelines"], serde_json::json!(["default", "small"]));
    assert_eq!(reply["tandem"]["model"], "small");
    assert_eq!(reply["tandem"]["pipeline"], "default");
    assert_eq!(reply["usage"]["completion_tokens"], 4);
}

#[test]
fn serve_refuses_to_start_without_the_keys_it_was_told_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path());
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml.push_str("\n[server]\napi_keys_env = \"TANDEM_TEST_KEYS\"\n");
    std::fs::write(&path, toml).unwrap();
    for value in [None, Some(""), Some(" , ")] {
        let mut command = tandem(&path);
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match value {
            Some(value) => command.env("TANDEM_TEST_KEYS", value),
            None => command.env_remove("TANDEM_TEST_KEYS"),
        };
        let mut child = command.spawn().unwrap();
        // A server that starts anyway never exits: give up on it after a wide deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`serve` started with TANDEM_TEST_KEYS = {value:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = child.wait_with_output().unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("`TANDEM_TEST_KEYS`"), "{stderr}");
        assert!(stderr.contains("api_keys_env"), "{stderr}");
    }
}

#[test]
fn bench_decode_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.md");
    let output = tandem(&config(dir.path()))
        .args(["bench", "decode", "--file"])
        .arg(tandem_fetch::test_model())
        .args([
            "--prompt-tokens",
            "8",
            "--gen-tokens",
            "8",
            "--repetitions",
            "1",
            "--output",
        ])
        .arg(&report)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let written = std::fs::read_to_string(&report).unwrap();
    assert_eq!(written, stdout);
    let kernels = if cfg!(feature = "cpu-variants") {
        "CPU kernels: " // then the variant ggml chose, e.g. `zen4 (the best this CPU supports; ...)`
    } else {
        "CPU kernels: built in (static build)"
    };
    assert!(written.contains(kernels), "{written}");
    for row in [
        "| pp8 (llama-cpp-2 batch) |",
        "| tg8 (llama-cpp-2 decodes) |",
        "| tg8 engine (one client, greedy) |",
    ] {
        assert!(written.contains(row), "{written}");
    }
}

#[test]
fn a_cpu_variant_is_pinned_by_name_and_an_unknown_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bench = |variant: &str| {
        tandem(&config(dir.path()))
            .env("TANDEM_CPU_VARIANT", variant)
            .args(["bench", "decode", "--file"])
            .arg(tandem_fetch::test_model())
            .args([
                "--prompt-tokens",
                "4",
                "--gen-tokens",
                "2",
                "--repetitions",
                "1",
            ])
            .output()
            .unwrap()
    };
    let pinned = bench("haswell");
    let unknown = bench("pentium");
    let (pinned_out, pinned_err) = text(&pinned);
    let (_, unknown_err) = text(&unknown);
    assert_eq!(unknown.status.code(), Some(1), "{unknown_err}");
    if cfg!(feature = "cpu-variants") {
        assert!(pinned.status.success(), "{pinned_err}");
        assert!(
            pinned_out.contains("CPU kernels: haswell (pinned by TANDEM_CPU_VARIANT;"),
            "{pinned_out}"
        );
        assert!(
            unknown_err.contains("TANDEM_CPU_VARIANT=pentium: no such CPU variant"),
            "{unknown_err}"
        );
        assert!(unknown_err.contains("haswell"), "{unknown_err}");
    } else {
        // A static build has no variants: the variable is refused, not ignored.
        for stderr in [&pinned_err, &unknown_err] {
            assert!(
                stderr.contains("this build links its CPU kernels in"),
                "{stderr}"
            );
        }
        assert_eq!(pinned.status.code(), Some(1));
    }
}

#[test]
fn models_list_shows_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let output = tandem(&config(dir.path()))
        .args(["--cache-dir"])
        .arg(dir.path())
        .args(["models", "list"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    for name in [
        "smollm2-135m",
        "qwen2.5-coder-0.5b",
        "qwen2.5-coder-1.5b",
        "gemma3-270m",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing from\n{stdout}"));
        assert!(line.ends_with("not downloaded"), "{line}");
    }
}
