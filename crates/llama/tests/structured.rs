//! Tools and structured outputs with real models: Qwen2.5-Coder-0.5B (which calls tools in the
//! Hermes format; `tandem models pull qwen2.5-coder-0.5b`) and SmolLM2-135M (whose template has no
//! tools).

use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};
use tandem_core::openai::{
    ChatCompletionRequest, FinishReason, Message, ResponseFormat, Role, Tool, ToolChoice,
    ToolChoiceMode,
};
use tandem_core::{ChatModel, ModelError};
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};

fn start(name: &str, path: std::path::PathBuf) -> Arc<LlamaEngine> {
    let model = LoadedModel::load(&path, None, 0).expect("model loads");
    let mut options = EngineOptions::new(name);
    options.context_size = 2048;
    options.parallel = 4;
    options.threads = 2;
    Arc::new(LlamaEngine::start(model, options).expect("engine starts"))
}

fn qwen() -> Arc<LlamaEngine> {
    static ENGINE: OnceLock<Arc<LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let path = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
                .resolve_local("qwen2.5-coder-0.5b")
                .expect("run `tandem models pull qwen2.5-coder-0.5b`");
            start("qwen", path)
        })
        .clone()
}

fn smollm2() -> Arc<LlamaEngine> {
    static ENGINE: OnceLock<Arc<LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| start("smollm2", tandem_fetch::test_model()))
        .clone()
}

fn request(prompt: &str, max_tokens: u32) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "m".into(),
        messages: vec![Message::new(Role::User, prompt)],
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
}

fn tools() -> Vec<Tool> {
    serde_json::from_value(json!([
        {"type": "function", "function": {"name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"]}}},
        {"type": "function", "function": {"name": "get_time",
            "description": "The local time in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"]}}}
    ]))
    .unwrap()
}

#[tokio::test]
async fn a_required_call_is_a_well_formed_call_of_an_offered_tool() {
    // A prompt that does not ask for a tool: only the grammar makes this a call.
    let mut r = request("Write a haiku about autumn.", 60);
    r.tools = Some(tools());
    r.tool_choice = Some(ToolChoice::Mode(ToolChoiceMode::Required));
    r.parallel_tool_calls = Some(false);
    let out = qwen().complete(r).await.unwrap();
    assert_eq!(out.finish_reason, FinishReason::ToolCalls, "{out:?}");
    assert_eq!(out.tool_calls.len(), 1, "{out:?}");
    let call = &out.tool_calls[0];
    assert!(["get_weather", "get_time"].contains(&call.function.name.as_str()));
    let arguments: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert!(arguments["city"].is_string(), "{arguments}");
    if call.function.name == "get_weather" {
        assert!(["celsius", "fahrenheit"].contains(&arguments["unit"].as_str().unwrap()));
    }
    assert!(call.id.starts_with("call_"));
}

#[tokio::test]
async fn a_named_call_calls_that_tool() {
    let mut r = request("What time is it in Tokyo?", 60);
    r.tools = Some(tools());
    r.tool_choice = Some(
        serde_json::from_value(json!({"type": "function", "function": {"name": "get_weather"}}))
            .unwrap(),
    );
    let out = qwen().complete(r).await.unwrap();
    assert_eq!(out.tool_calls.len(), 1, "{out:?}");
    assert_eq!(out.tool_calls[0].function.name, "get_weather");
}

#[tokio::test]
async fn auto_lets_the_model_call_a_tool_it_needs() {
    let mut r = request("What is the weather in Paris right now, in celsius?", 80);
    r.tools = Some(tools());
    let out = qwen().complete(r).await.unwrap();
    assert_eq!(out.finish_reason, FinishReason::ToolCalls, "{out:?}");
    assert_eq!(out.tool_calls[0].function.name, "get_weather");
    let arguments: Value = serde_json::from_str(&out.tool_calls[0].function.arguments).unwrap();
    assert_eq!(arguments["city"], "Paris");
}

fn person_schema() -> ResponseFormat {
    serde_json::from_value(
        json!({"type": "json_schema", "json_schema": {"name": "person",
        "strict": true, "schema": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer"},
            "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
        "required": ["name", "age", "languages"], "additionalProperties": false}}}),
    )
    .unwrap()
}

#[tokio::test]
async fn a_json_schema_answer_validates_even_from_a_tiny_model() {
    // SmolLM2-135M rarely writes this JSON unaided; the grammar makes every answer fit.
    for prompt in [
        "Describe a fictional programmer.",
        "Tell me about Ada Lovelace.",
        "Hello!",
    ] {
        let mut r = request(prompt, 120);
        r.response_format = Some(person_schema());
        let out = smollm2().complete(r).await.unwrap();
        assert_eq!(out.finish_reason, FinishReason::Stop, "{out:?}");
        let value: Value = serde_json::from_str(&out.text).expect("the answer is JSON");
        let object = value.as_object().unwrap();
        assert_eq!(object.len(), 3, "{value}");
        assert!(object["name"].as_str().unwrap().chars().count() <= 40);
        assert!(object["age"].is_i64(), "{value}");
        assert!(object["languages"].as_array().unwrap().len() <= 3);
    }
    let mut r = request(
        "Describe a cat as a JSON object with its name and age.",
        200,
    );
    r.response_format = Some(ResponseFormat::JsonObject);
    let out = qwen().complete(r).await.unwrap();
    assert_eq!(out.finish_reason, FinishReason::Stop, "{out:?}");
    let value: Value = serde_json::from_str(&out.text).unwrap();
    assert!(value.is_object(), "{value}");
}

#[tokio::test]
async fn what_cannot_be_honoured_is_refused_by_name() {
    let param = |result: Result<_, ModelError>| match result {
        Err(ModelError::InvalidRequest { param, .. }) => param.unwrap(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let mut r = request("hi", 5);
    r.tools = Some(tools());
    assert_eq!(param(smollm2().complete(r).await), "tools");
    let mut r = request("hi", 5);
    r.response_format = Some(serde_json::from_value(json!({"type": "json_schema", "json_schema":
        {"name": "x", "schema": {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}}}})).unwrap());
    assert_eq!(
        param(smollm2().complete(r).await),
        "response_format.json_schema.schema.properties.code.pattern"
    );
}
