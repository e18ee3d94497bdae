//! Checks of a chat request before any model sees it. Every failure names the offending parameter,
//! and the server answers it with HTTP 400.
//!
//! A field Tandem does not honour is refused, never ignored: a client that asks for a JSON schema
//! and silently gets free text has been misled. A `null` value counts as absent.

use serde_json::{Map, Value};

use crate::error::ModelError;
use crate::openai::{
    ChatCompletionRequest, Message, ResponseFormat, Role, ToolChoice, ToolChoiceMode,
};

/// The most `top_logprobs` OpenAI allows.
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// The most stop sequences OpenAI allows.
pub const MAX_STOP_SEQUENCES: usize = 4;
/// The longest stop sequence accepted, in bytes: generation holds back as much text as the longest
/// stop sequence while it might still become one, and checks every stop after every token.
pub const MAX_STOP_BYTES: usize = 256;

/// OpenAI chat-completions fields that Tandem knows but does not honour, with the reason given to
/// the client. Any other field it has no member for is refused as unknown.
const UNSUPPORTED_FIELDS: &[(&str, &str)] = &[
    (
        "functions",
        "the deprecated `functions` are not supported; use `tools`",
    ),
    (
        "function_call",
        "the deprecated `function_call` is not supported; use `tool_choice`",
    ),
    ("audio", "audio output is not supported"),
    (
        "modalities",
        "`modalities` is not supported; the output is text",
    ),
    ("prediction", "predicted outputs are not supported"),
    ("reasoning_effort", "`reasoning_effort` is not supported"),
    ("service_tier", "`service_tier` is not supported"),
    ("store", "stored completions are not supported"),
    (
        "metadata",
        "`metadata` is for stored completions, which are not supported",
    ),
    ("web_search_options", "web search is not supported"),
];

/// Message fields Tandem knows but does not honour.
const UNSUPPORTED_MESSAGE_FIELDS: &[(&str, &str)] = &[
    (
        "function_call",
        "the deprecated `function_call` is not supported; use `tool_calls`",
    ),
    ("audio", "audio is not supported"),
];

/// The most choices (`n`) one request may ask for.
pub const MAX_CHOICES: u32 = 16;

/// The most entries of `logit_bias` accepted.
pub const MAX_LOGIT_BIAS: usize = 1024;

pub fn validate(request: &ChatCompletionRequest) -> Result<(), ModelError> {
    if request.messages.is_empty() {
        return Err(ModelError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    for (i, message) in request.messages.iter().enumerate() {
        if message.content.text().is_none() {
            return Err(ModelError::invalid(
                &format!("messages[{i}].content"),
                "only text content parts are supported",
            ));
        }
        refuse_other_fields(
            &message.extra,
            UNSUPPORTED_MESSAGE_FIELDS,
            &format!("messages[{i}]."),
        )?;
        validate_message_tools(i, message)?;
    }
    validate_tools(request)?;
    validate_response_format(request)?;
    refuse_other_fields(&request.extra, UNSUPPORTED_FIELDS, "")?;
    validate_sampling(request)
}

/// The checks of the settings every generation shares, chat or raw text (see
/// [`crate::completions`]): sampling, length, choices, log probabilities, stops, penalties, biases.
pub fn validate_sampling(request: &ChatCompletionRequest) -> Result<(), ModelError> {
    if let Some(t) = request.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ModelError::invalid(
                "temperature",
                format!("`temperature` must be between 0 and 2, got {t}"),
            ));
        }
    }
    if let Some(p) = request.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ModelError::invalid(
                "top_p",
                format!("`top_p` must be in (0, 1], got {p}"),
            ));
        }
    }
    for (name, value) in [
        ("max_tokens", request.max_tokens),
        ("max_completion_tokens", request.max_completion_tokens),
    ] {
        if value == Some(0) {
            return Err(ModelError::invalid(
                name,
                format!("`{name}` must be at least 1"),
            ));
        }
    }
    if let Some(n) = request.n {
        if !(1..=MAX_CHOICES).contains(&n) {
            return Err(ModelError::invalid(
                "n",
                format!("`n` must be between 1 and {MAX_CHOICES}, got {n}"),
            ));
        }
        if n > 1 && request.stream {
            return Err(ModelError::invalid(
                "n",
                "`n` above 1 is not supported with `stream: true`; stream one choice, or ask without streaming",
            ));
        }
    }
    if let Some(k) = request.top_logprobs {
        if k > MAX_TOP_LOGPROBS {
            return Err(ModelError::invalid(
                "top_logprobs",
                format!("`top_logprobs` must be at most {MAX_TOP_LOGPROBS}, got {k}"),
            ));
        }
        if k > 0 && request.logprobs != Some(true) {
            return Err(ModelError::invalid(
                "top_logprobs",
                "`top_logprobs` requires `logprobs: true`",
            ));
        }
    }
    if let Some(stop) = &request.stop {
        let stops = stop.to_vec();
        if stops.len() > MAX_STOP_SEQUENCES {
            return Err(ModelError::invalid(
                "stop",
                format!(
                    "at most {MAX_STOP_SEQUENCES} stop sequences, got {}",
                    stops.len()
                ),
            ));
        }
        if stops.iter().any(String::is_empty) {
            return Err(ModelError::invalid(
                "stop",
                "stop sequences must not be empty",
            ));
        }
        if let Some(long) = stops.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(ModelError::invalid(
                "stop",
                format!(
                    "stop sequences must be at most {MAX_STOP_BYTES} bytes long, got one of {}",
                    long.len()
                ),
            ));
        }
    }
    for (name, value) in [
        ("presence_penalty", request.presence_penalty),
        ("frequency_penalty", request.frequency_penalty),
    ] {
        if let Some(v) = value {
            if !(-2.0..=2.0).contains(&v) {
                return Err(ModelError::invalid(
                    name,
                    format!("`{name}` must be between -2 and 2, got {v}"),
                ));
            }
        }
    }
    if let Some(p) = request.min_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(ModelError::invalid(
                "min_p",
                format!("`min_p` must be between 0 and 1, got {p}"),
            ));
        }
    }
    if let Some(biases) = &request.logit_bias {
        if biases.len() > MAX_LOGIT_BIAS {
            return Err(ModelError::invalid(
                "logit_bias",
                format!("at most {MAX_LOGIT_BIAS} entries in `logit_bias`"),
            ));
        }
        for (token, bias) in biases {
            if token.parse::<u32>().is_err() {
                return Err(ModelError::invalid(
                    "logit_bias",
                    format!("`logit_bias` keys are token ids, got `{token}`"),
                ));
            }
            if !(-100.0..=100.0).contains(bias) {
                return Err(ModelError::invalid(
                    "logit_bias",
                    format!("biases must be between -100 and 100, got {bias} for token {token}"),
                ));
            }
        }
    }
    Ok(())
}

/// `tool_calls` only on assistant turns, `tool_call_id` on (and only on) tool turns.
fn validate_message_tools(i: usize, message: &Message) -> Result<(), ModelError> {
    if let Some(calls) = &message.tool_calls {
        if message.role != Role::Assistant {
            return Err(ModelError::invalid(
                &format!("messages[{i}].tool_calls"),
                "only assistant messages carry `tool_calls`",
            ));
        }
        for (k, call) in calls.iter().enumerate() {
            if call.kind != "function" {
                return Err(ModelError::invalid(
                    &format!("messages[{i}].tool_calls[{k}].type"),
                    format!("tool calls are of type `function`, got `{}`", call.kind),
                ));
            }
        }
    }
    match (message.role, &message.tool_call_id) {
        (Role::Tool, None) => Err(ModelError::invalid(
            &format!("messages[{i}].tool_call_id"),
            "a tool message must name the call it answers in `tool_call_id`",
        )),
        (role, Some(_)) if role != Role::Tool => Err(ModelError::invalid(
            &format!("messages[{i}].tool_call_id"),
            "only tool messages carry `tool_call_id`",
        )),
        _ => Ok(()),
    }
}

/// A function name as OpenAI accepts it: 1 to 64 letters, digits, `_` and `-`.
fn is_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn validate_tools(request: &ChatCompletionRequest) -> Result<(), ModelError> {
    let tools = request.tools.as_deref().unwrap_or_default();
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind != "function" {
            return Err(ModelError::invalid(
                &format!("tools[{i}].type"),
                format!("tools are of type `function`, got `{}`", tool.kind),
            ));
        }
        let name = &tool.function.name;
        if !is_function_name(name) {
            return Err(ModelError::invalid(
                &format!("tools[{i}].function.name"),
                format!("function names are 1 to 64 letters, digits, `_` or `-`, got `{name}`"),
            ));
        }
        if tools[..i].iter().any(|t| t.function.name == *name) {
            return Err(ModelError::invalid(
                &format!("tools[{i}].function.name"),
                format!("two tools are named `{name}`"),
            ));
        }
        if let Some(parameters) = &tool.function.parameters {
            if !parameters.is_object() {
                return Err(ModelError::invalid(
                    &format!("tools[{i}].function.parameters"),
                    "`parameters` must be a JSON schema object",
                ));
            }
        }
    }
    match &request.tool_choice {
        Some(ToolChoice::Named(named)) => {
            if named.kind != "function" {
                return Err(ModelError::invalid(
                    "tool_choice.type",
                    format!(
                        "a named tool choice is of type `function`, got `{}`",
                        named.kind
                    ),
                ));
            }
            if !tools.iter().any(|t| t.function.name == named.function.name) {
                return Err(ModelError::invalid(
                    "tool_choice",
                    format!(
                        "`tool_choice` names `{}`, which is not among the `tools`",
                        named.function.name
                    ),
                ));
            }
        }
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) if tools.is_empty() => {
            return Err(ModelError::invalid(
                "tool_choice",
                "`tool_choice: required` needs `tools`",
            ));
        }
        _ => {}
    }
    if request.parallel_tool_calls.is_some() && tools.is_empty() {
        return Err(ModelError::invalid(
            "parallel_tool_calls",
            "`parallel_tool_calls` is only allowed with `tools`",
        ));
    }
    Ok(())
}

fn validate_response_format(request: &ChatCompletionRequest) -> Result<(), ModelError> {
    let Some(format) = &request.response_format else {
        return Ok(());
    };
    if let ResponseFormat::JsonSchema { json_schema } = format {
        if !is_function_name(&json_schema.name) {
            return Err(ModelError::invalid(
                "response_format.json_schema.name",
                format!(
                    "schema names are 1 to 64 letters, digits, `_` or `-`, got `{}`",
                    json_schema.name
                ),
            ));
        }
        if !json_schema.schema.as_ref().is_some_and(Value::is_object) {
            return Err(ModelError::invalid(
                "response_format.json_schema.schema",
                "`json_schema` needs a `schema` object",
            ));
        }
    }
    let calls_possible = uses_tools(request);
    if calls_possible && *format != ResponseFormat::Text {
        return Err(ModelError::invalid(
            "response_format",
            "`response_format` cannot be combined with `tools` (unless `tool_choice` is `none`)",
        ));
    }
    Ok(())
}

/// Whether the model may call a tool: tools are given and `tool_choice` is not `none`.
pub fn uses_tools(request: &ChatCompletionRequest) -> bool {
    request.tools.as_ref().is_some_and(|t| !t.is_empty())
        && request.tool_choice != Some(ToolChoice::Mode(ToolChoiceMode::None))
}

/// Refuses the first field of `extra` with a value: by its reason if `known` lists it, as unknown
/// otherwise. `prefix` turns a field name into the `param` the error names.
pub(crate) fn refuse_other_fields(
    extra: &Map<String, Value>,
    known: &[(&str, &str)],
    prefix: &str,
) -> Result<(), ModelError> {
    let Some((name, _)) = extra
        .iter()
        .find(|(name, value)| !asks_for_nothing(name, value))
    else {
        return Ok(());
    };
    let param = format!("{prefix}{name}");
    let message = match known.iter().find(|(field, _)| field == name) {
        Some((_, reason)) => format!("`{param}` cannot be honoured: {reason}"),
        None => format!("unrecognised parameter `{param}`; Tandem does not honour it"),
    };
    Err(ModelError::invalid(&param, message))
}

/// `null`, which is the same as absent; or `store: false`, which asks for what Tandem does anyway.
fn asks_for_nothing(name: &str, value: &Value) -> bool {
    value.is_null() || (name == "store" && *value == Value::Bool(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{Message, Role, Stop};

    fn request() -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: "m".into(),
            messages: vec![Message::new(Role::User, "hi")],
            ..Default::default()
        }
    }

    fn param_of(r: ChatCompletionRequest) -> Option<String> {
        match validate(&r) {
            Err(ModelError::InvalidRequest { param, .. }) => param,
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_plain_request() {
        assert_eq!(validate(&request()), Ok(()));
    }

    #[test]
    fn names_the_bad_parameter() {
        let mut r = request();
        r.temperature = Some(3.0);
        assert_eq!(param_of(r).as_deref(), Some("temperature"));
        let mut r = request();
        r.top_logprobs = Some(3);
        assert_eq!(param_of(r).as_deref(), Some("top_logprobs"));
        let mut r = request();
        r.max_tokens = Some(0);
        assert_eq!(param_of(r).as_deref(), Some("max_tokens"));
        let mut r = request();
        r.stop = Some(Stop::Many(vec!["a".into(); 5]));
        assert_eq!(param_of(r).as_deref(), Some("stop"));
        let mut r = request();
        r.messages.clear();
        assert_eq!(param_of(r).as_deref(), Some("messages"));
        let mut r = request();
        r.n = Some(0);
        assert_eq!(param_of(r).as_deref(), Some("n"));
        let mut r = request();
        r.n = Some(3);
        assert_eq!(validate(&r), Ok(()));
        r.stream = true;
        assert_eq!(param_of(r).as_deref(), Some("n"));
    }

    #[test]
    fn caps_the_length_of_a_stop_sequence() {
        let mut r = request();
        r.stop = Some(Stop::One("x".repeat(MAX_STOP_BYTES)));
        assert_eq!(validate(&r), Ok(()));
        let mut r = request();
        r.stop = Some(Stop::Many(vec![
            "a".into(),
            "é".repeat(MAX_STOP_BYTES / 2 + 1),
        ]));
        assert_eq!(param_of(r).as_deref(), Some("stop"));
    }

    fn with_field(name: &str, value: Value) -> ChatCompletionRequest {
        let mut r = request();
        r.extra.insert(name.into(), value);
        r
    }

    fn parsed(body: Value) -> ChatCompletionRequest {
        let mut full =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        full.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        serde_json::from_value(full).unwrap()
    }

    fn weather() -> Value {
        serde_json::json!([{"type": "function", "function": {"name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    }

    #[test]
    fn checks_tools_and_tool_choice() {
        use serde_json::json;
        assert_eq!(
            validate(&parsed(
                json!({"tools": weather(), "tool_choice": "required"})
            )),
            Ok(())
        );
        let named = json!({"type": "function", "function": {"name": "weather"}});
        assert_eq!(
            validate(&parsed(json!({"tools": weather(), "tool_choice": named}))),
            Ok(())
        );
        let other = json!({"type": "function", "function": {"name": "news"}});
        let r = parsed(json!({"tools": weather(), "tool_choice": other}));
        assert_eq!(param_of(r).as_deref(), Some("tool_choice"));
        let r = parsed(json!({"tool_choice": "required"}));
        assert_eq!(param_of(r).as_deref(), Some("tool_choice"));
        let r = parsed(json!({"parallel_tool_calls": false}));
        assert_eq!(param_of(r).as_deref(), Some("parallel_tool_calls"));
        let bad_name = json!([{"type": "function", "function": {"name": "get weather"}}]);
        let r = parsed(json!({"tools": bad_name}));
        assert_eq!(param_of(r).as_deref(), Some("tools[0].function.name"));
        let twice = json!([weather()[0], weather()[0]]);
        assert_eq!(
            param_of(parsed(json!({"tools": twice}))).as_deref(),
            Some("tools[1].function.name")
        );
        let format = json!({"type": "json_object"});
        let r = parsed(json!({"tools": weather(), "response_format": format}));
        assert_eq!(param_of(r).as_deref(), Some("response_format"));
        let r =
            parsed(json!({"tools": weather(), "tool_choice": "none", "response_format": format}));
        assert_eq!(validate(&r), Ok(()));
    }

    #[test]
    fn checks_tool_turns() {
        let mut r = request();
        r.messages.push(Message::new(Role::Tool, "18 C"));
        assert_eq!(
            param_of(r.clone()).as_deref(),
            Some("messages[1].tool_call_id")
        );
        r.messages[1].tool_call_id = Some("call_1".into());
        assert_eq!(validate(&r), Ok(()));
        r.messages[0].tool_call_id = Some("call_1".into());
        assert_eq!(param_of(r).as_deref(), Some("messages[0].tool_call_id"));
    }

    #[test]
    fn checks_a_json_schema_response_format() {
        use serde_json::json;
        let ok = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}});
        assert_eq!(validate(&parsed(json!({"response_format": ok}))), Ok(()));
        let no_schema = json!({"type": "json_schema", "json_schema": {"name": "x"}});
        let r = parsed(json!({"response_format": no_schema}));
        assert_eq!(
            param_of(r).as_deref(),
            Some("response_format.json_schema.schema")
        );
    }

    #[test]
    fn checks_penalties_bias_and_min_p() {
        use serde_json::json;
        let fine = json!({"presence_penalty": 1.5, "frequency_penalty": -0.5, "min_p": 0.1,
            "logit_bias": {"42": -100, "7": 5}});
        assert_eq!(validate(&parsed(fine)), Ok(()));
        let r = parsed(json!({"presence_penalty": 2.5}));
        assert_eq!(param_of(r).as_deref(), Some("presence_penalty"));
        let r = parsed(json!({"logit_bias": {"hello": 1}}));
        assert_eq!(param_of(r).as_deref(), Some("logit_bias"));
        let r = parsed(json!({"logit_bias": {"1": 101}}));
        assert_eq!(param_of(r).as_deref(), Some("logit_bias"));
        let r = parsed(json!({"min_p": 1.5}));
        assert_eq!(param_of(r).as_deref(), Some("min_p"));
    }

    #[test]
    fn refuses_every_field_it_does_not_honour_by_name() {
        for (name, _) in UNSUPPORTED_FIELDS {
            let r = with_field(name, Value::Bool(true));
            assert_eq!(param_of(r).as_deref(), Some(*name));
        }
        let r = with_field("frobnicate", serde_json::json!(1));
        assert_eq!(param_of(r).as_deref(), Some("frobnicate"));
        let mut r = request();
        r.messages[0]
            .extra
            .insert("function_call".into(), Value::String("auto".into()));
        assert_eq!(param_of(r).as_deref(), Some("messages[0].function_call"));
    }

    #[test]
    fn a_null_field_is_absent_and_store_false_is_honoured() {
        assert_eq!(validate(&with_field("prediction", Value::Null)), Ok(()));
        assert_eq!(validate(&with_field("frobnicate", Value::Null)), Ok(()));
        assert_eq!(validate(&with_field("store", Value::Bool(false))), Ok(()));
        let mut r = request();
        r.user = Some("end-user-7".into());
        assert_eq!(validate(&r), Ok(()));
    }
}
