//! `tandem bench grammar`: what grammar-constrained sampling costs. The same prompts are answered
//! free and under a `json_schema` response format by one engine in one run, alternating prompt by
//! prompt so both see the same machine; the report gives each side's decode rate (tokens after the
//! first, over the time after the first) and the ratio constrained / free.
//!
//! The two answers to a prompt differ (one is JSON, one is prose), so the rates compare the cost
//! of a token, not of an answer.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use futures::StreamExt;
use serde_json::json;
use tandem_core::openai::{ChatCompletionRequest, JsonSchemaFormat, Message, ResponseFormat, Role};
use tandem_core::{ChatEvent, ChatModel};
use tandem_llama::{cpu_kernels, EngineOptions, LlamaEngine, LoadedModel};

use super::Rate;

/// The prompts, each with the schema its constrained answer follows.
fn prompts() -> Vec<(&'static str, serde_json::Value)> {
    let person = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "hobbies": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["name", "age", "hobbies"],
        "additionalProperties": false
    });
    let recipe = json!({
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "servings": {"type": "integer"},
            "ingredients": {"type": "array", "items": {
                "type": "object",
                "properties": {"item": {"type": "string"}, "grams": {"type": "number"}},
                "required": ["item", "grams"], "additionalProperties": false}},
            "vegetarian": {"type": "boolean"}
        },
        "required": ["title", "servings", "ingredients", "vegetarian"],
        "additionalProperties": false
    });
    let event = json!({
        "type": "object",
        "properties": {
            "event": {"type": "string"},
            "city": {"type": "string"},
            "date": {"type": "string"},
            "attendees": {"type": "integer"},
            "kind": {"enum": ["conference", "concert", "match", "festival"]}
        },
        "required": ["event", "city", "date", "attendees", "kind"],
        "additionalProperties": false
    });
    vec![
        ("Invent a person and describe them.", person.clone()),
        ("Describe a retired sailor and what he likes to do.", person),
        ("Give me a recipe for a pancake breakfast.", recipe.clone()),
        ("Give me a recipe for a vegetable soup.", recipe),
        (
            "Describe a big music festival in Spain next summer.",
            event.clone(),
        ),
        ("Describe a chess tournament in Oslo.", event),
    ]
}

pub struct Settings<'a> {
    pub path: &'a Path,
    pub threads: i32,
    pub max_tokens: u32,
    pub rounds: usize,
}

/// Tokens after the first and the seconds they took, of one answer.
async fn timed(engine: &LlamaEngine, request: ChatCompletionRequest) -> Result<(usize, f64)> {
    let mut stream = engine.stream(request).await?;
    let mut first = None;
    let mut tokens = 0usize;
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Delta { .. } | ChatEvent::ToolCall(_) => {
                first.get_or_insert_with(Instant::now);
            }
            ChatEvent::Done(done) => {
                tokens = done.usage.completion_tokens as usize;
                break;
            }
        }
    }
    let Some(first) = first else {
        bail!("the answer had no text");
    };
    Ok((tokens.saturating_sub(1), first.elapsed().as_secs_f64()))
}

pub async fn run(settings: Settings<'_>) -> Result<String> {
    if settings.rounds == 0 || settings.max_tokens < 2 {
        bail!("--rounds must be at least 1 and --max-tokens at least 2");
    }
    let model = LoadedModel::load(settings.path, None, 0)?;
    let mut options = EngineOptions::new("bench-grammar");
    options.threads = settings.threads;
    options.parallel = 1;
    options.context_size = 1024;
    let engine = LlamaEngine::start(Arc::clone(&model), options)?;
    let prompts = prompts();
    // Per prompt: (free, constrained) per-answer rates, and the pooled tokens and seconds.
    let mut rates = vec![(Vec::new(), Vec::new()); prompts.len()];
    let mut pooled = [(0usize, 0f64); 2];
    for _ in 0..settings.rounds {
        for (i, (prompt, schema)) in prompts.iter().enumerate() {
            let free = ChatCompletionRequest {
                model: "bench".into(),
                messages: vec![Message::new(Role::User, *prompt)],
                temperature: Some(0.0),
                max_tokens: Some(settings.max_tokens),
                ..Default::default()
            };
            let constrained = ChatCompletionRequest {
                response_format: Some(ResponseFormat::JsonSchema {
                    json_schema: JsonSchemaFormat {
                        name: "answer".into(),
                        description: None,
                        schema: Some(schema.clone()),
                        strict: Some(true),
                    },
                }),
                ..free.clone()
            };
            for (side, request) in [free, constrained].into_iter().enumerate() {
                let (tokens, seconds) = timed(&engine, request).await?;
                let side_name = ["free", "json_schema"][side];
                eprintln!(
                    "{prompt} ({side_name}): {tokens} tokens after the first in {seconds:.1} s"
                );
                if tokens > 0 && seconds > 0.0 {
                    let rate = tokens as f64 / seconds;
                    if side == 0 {
                        rates[i].0.push(rate);
                    } else {
                        rates[i].1.push(rate);
                    }
                    pooled[side].0 += tokens;
                    pooled[side].1 += seconds;
                }
            }
        }
    }
    let name = settings.path.file_name().map_or_else(
        || settings.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut report = String::new();
    let _ = writeln!(
        report,
        "## Grammar-constrained sampling: {name}\n\nthreads {}, max_tokens {}, {} rounds, greedy, CPU kernels: {}\n",
        settings.threads,
        settings.max_tokens,
        settings.rounds,
        cpu_kernels()?
    );
    let _ = writeln!(
        report,
        "| prompt | free t/s | json_schema t/s | ratio |\n|---|---|---|---|"
    );
    for ((prompt, _), (free, constrained)) in prompts.iter().zip(&rates) {
        let (free, constrained) = (Rate::of(free), Rate::of(constrained));
        let _ = writeln!(
            report,
            "| {prompt} | {:.1} ± {:.1} | {:.1} ± {:.1} | {:.2} |",
            free.mean,
            free.std,
            constrained.mean,
            constrained.std,
            constrained.mean / free.mean
        );
    }
    let free = pooled[0].0 as f64 / pooled[0].1;
    let constrained = pooled[1].0 as f64 / pooled[1].1;
    let _ = writeln!(
        report,
        "| all (pooled: {} and {} tokens) | {free:.1} | {constrained:.1} | {:.2} |",
        pooled[0].0,
        pooled[1].0,
        constrained / free
    );
    Ok(report)
}
