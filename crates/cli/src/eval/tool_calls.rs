//! `tandem eval tool-calls`: function-calling accuracy on a small set written for Tandem
//! (`tool-calls.jsonl`: the tools offered, the user's request, the calls expected).
//!
//! Items are `simple` (one tool offered, one call), `multiple` (four tools offered, one is
//! right), `parallel` (two or three calls in one turn) and `none` (tools offered, none needed).
//! An answer passes when its calls are exactly the expected ones: the same function names and,
//! as a multiset, the same arguments once parsed as JSON (key order and `3` against `3.0` do not
//! matter; strings must match exactly).
//!
//! Two modes. `free`: `tool_choice: auto`, nothing constrains the output; the model decides
//! whether to call and writes the call as text, which is then read. `grammar`:
//! `tool_choice: required`, so the output is constrained to well-formed calls of the offered
//! tools whose arguments follow their schemas. `required` cannot say "no call", so the grammar
//! mode runs on the items that expect calls only; what it measures is whether constraining the
//! form of a call makes the calls right more often.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tandem_core::openai::{ChatCompletionRequest, Message, Role, Tool, ToolChoice, ToolChoiceMode};
use tandem_core::stats::wilson;
use tandem_core::ChatModel;
use tandem_fetch::Fetcher;

use crate::config::Config;
use crate::runtime::Runtime;

const ITEMS: &str = include_str!("tool-calls.jsonl");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `tool_choice: auto`, unconstrained
    Free,
    /// `tool_choice: required`, constrained by a grammar (items that expect calls only)
    Grammar,
    Both,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ToolCallArgs {
    /// Models or pipelines of the configuration; repeat for several
    #[arg(long = "model", required = true)]
    models: Vec<String>,
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// Only the first N items of each kind
    #[arg(long)]
    limit: Option<usize>,
    /// Items asked at once (a local engine decodes them in one batch up to its `parallel`)
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 160)]
    max_tokens: u32,
    /// Write the Markdown table here as well as to stdout
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print every item's verdict with what the model called, as it finishes
    #[arg(long)]
    verbose: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct Item {
    id: String,
    kind: String,
    tools: Vec<Tool>,
    prompt: String,
    expected: Vec<ExpectedCall>,
}

#[derive(Debug, Clone, Deserialize)]
struct ExpectedCall {
    name: String,
    arguments: Value,
}

fn items() -> Result<Vec<Item>> {
    ITEMS
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| format!("tool-calls.jsonl line {}", i + 1))
        })
        .collect()
}

/// A JSON value with every number as a float, so that `3` and `3.0` compare equal.
fn normalised(value: &Value) -> Value {
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| value.clone(), Value::Number),
        Value::Array(items) => Value::Array(items.iter().map(normalised).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalised(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether `made` (name, arguments text) are the expected calls, in any order.
fn matches(expected: &[ExpectedCall], made: &[(String, String)]) -> bool {
    if expected.len() != made.len() {
        return false;
    }
    let mut left: Vec<(String, Value)> = expected
        .iter()
        .map(|call| (call.name.clone(), normalised(&call.arguments)))
        .collect();
    for (name, arguments) in made {
        let Ok(arguments) = serde_json::from_str::<Value>(arguments) else {
            return false;
        };
        let arguments = normalised(&arguments);
        match left.iter().position(|(n, a)| n == name && *a == arguments) {
            Some(i) => {
                left.swap_remove(i);
            }
            None => return false,
        }
    }
    true
}

struct Outcome {
    kind: String,
    passed: bool,
}

async fn ask(
    model: &Arc<dyn ChatModel>,
    item: &Item,
    grammar: bool,
    max_tokens: u32,
) -> (bool, String) {
    let request = ChatCompletionRequest {
        model: model.name().to_string(),
        messages: vec![Message::new(Role::User, item.prompt.clone())],
        tools: Some(item.tools.clone()),
        tool_choice: Some(ToolChoice::Mode(if grammar {
            ToolChoiceMode::Required
        } else {
            ToolChoiceMode::Auto
        })),
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        ..Default::default()
    };
    match model.complete(request).await {
        Ok(output) => {
            let made: Vec<(String, String)> = output
                .tool_calls
                .iter()
                .map(|c| (c.function.name.clone(), c.function.arguments.clone()))
                .collect();
            let shown = if made.is_empty() {
                format!(
                    "text: {:?}",
                    output.text.chars().take(120).collect::<String>()
                )
            } else {
                format!("{made:?}")
            };
            (matches(&item.expected, &made), shown)
        }
        Err(e) => (false, format!("error: {e}")),
    }
}

pub async fn run(args: ToolCallArgs, config: Config, fetcher: &Fetcher) -> Result<()> {
    let mut items = items()?;
    if let Some(limit) = args.limit {
        let mut taken = std::collections::BTreeMap::<String, usize>::new();
        items.retain(|item| {
            let count = taken.entry(item.kind.clone()).or_default();
            *count += 1;
            *count <= limit
        });
    }
    let runtime = Runtime::load(config, fetcher, &args.models).await?;
    let modes: &[bool] = match args.mode {
        Mode::Free => &[false],
        Mode::Grammar => &[true],
        Mode::Both => &[false, true],
    };
    let mut table = String::from(
        "| model | mode | simple | multiple | parallel | all calls | none | seconds |\n|---|---|---|---|---|---|---|---|\n",
    );
    for name in &args.models {
        let model = runtime.model(name)?;
        for &grammar in modes {
            let chosen: Vec<&Item> = items
                .iter()
                .filter(|item| !grammar || !item.expected.is_empty())
                .collect();
            let started = std::time::Instant::now();
            let outcomes: Vec<Outcome> = futures::stream::iter(chosen.iter().map(|item| {
                let model = model.clone();
                async move {
                    let (passed, shown) = ask(&model, item, grammar, args.max_tokens).await;
                    if args.verbose {
                        let verdict = if passed { "pass" } else { "FAIL" };
                        eprintln!(
                            "{name} {} {} {verdict}: {shown}",
                            mode_name(grammar),
                            item.id
                        );
                    }
                    Outcome {
                        kind: item.kind.clone(),
                        passed,
                    }
                }
            }))
            .buffered(args.concurrency.max(1))
            .collect()
            .await;
            let cell = |kinds: &[&str]| {
                let chosen: Vec<&Outcome> = outcomes
                    .iter()
                    .filter(|o| kinds.contains(&o.kind.as_str()))
                    .collect();
                let passed = chosen.iter().filter(|o| o.passed).count();
                rate(passed, chosen.len())
            };
            let row = format!(
                "| {name} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
                mode_name(grammar),
                cell(&["simple"]),
                cell(&["multiple"]),
                cell(&["parallel"]),
                cell(&["simple", "multiple", "parallel"]),
                if grammar {
                    "n/a".to_string()
                } else {
                    cell(&["none"])
                },
                started.elapsed().as_secs_f64(),
            );
            eprint!("{row}");
            table.push_str(&row);
        }
    }
    println!("{table}");
    if let Some(out) = &args.out {
        std::fs::write(out, &table).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

fn mode_name(grammar: bool) -> &'static str {
    if grammar {
        "grammar (required)"
    } else {
        "free (auto)"
    }
}

/// `passed/n = p% [lo, hi]`, the interval Wilson's at 95%.
fn rate(passed: usize, n: usize) -> String {
    if n == 0 {
        return "-".into();
    }
    let (lo, hi) = wilson(passed, n);
    format!(
        "{passed}/{n} = {:.0}% [{:.0}, {:.0}]",
        100.0 * passed as f64 / n as f64,
        100.0 * lo,
        100.0 * hi
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(name: &str, arguments: Value) -> ExpectedCall {
        ExpectedCall {
            name: name.into(),
            arguments,
        }
    }

    #[test]
    fn the_set_parses_and_has_every_kind() {
        let items = items().unwrap();
        assert!(items.len() >= 50, "{}", items.len());
        for kind in ["simple", "multiple", "parallel", "none"] {
            assert!(items.iter().any(|i| i.kind == kind), "{kind}");
        }
        for item in &items {
            for call in &item.expected {
                assert!(
                    item.tools.iter().any(|t| t.function.name == call.name),
                    "{}: {} is not offered",
                    item.id,
                    call.name
                );
            }
        }
    }

    #[test]
    fn calls_match_in_any_order_with_normalised_arguments() {
        let want = [
            expected("a", serde_json::json!({"x": 3, "y": "z"})),
            expected("b", serde_json::json!({})),
        ];
        let made = |calls: &[(&str, &str)]| -> Vec<(String, String)> {
            calls
                .iter()
                .map(|(n, a)| (n.to_string(), a.to_string()))
                .collect()
        };
        assert!(matches(
            &want,
            &made(&[("b", "{}"), ("a", r#"{"y": "z", "x": 3.0}"#)])
        ));
        assert!(!matches(&want, &made(&[("a", r#"{"x": 3, "y": "z"}"#)])));
        assert!(!matches(
            &want,
            &made(&[("a", r#"{"x": 3, "y": "Z"}"#), ("b", "{}")])
        ));
        assert!(!matches(&want, &made(&[("a", "not json"), ("b", "{}")])));
        assert!(matches(&[], &[]));
        assert!(!matches(&[], &made(&[("b", "{}")])));
    }

    #[test]
    fn rates_carry_wilson_intervals() {
        assert_eq!(rate(0, 0), "-");
        assert!(rate(5, 10).starts_with("5/10 = 50% ["));
    }
}
