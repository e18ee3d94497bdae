//! Checks of a chat request before any model sees it. Every failure names the offending parameter,
//! and the server answers it with HTTP 400.
//!
//! A field Tandem does not honour is refused, never ignored: a client that asks for a JSON schema
//! and silently gets free text has been misled. A `null` value counts as absent.

use serde_json::{Map, Value};

use crate::error::ModelError;
use crate::openai::ChatCompletionRequest;

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
        "response_format",
        "structured output (`json_object`, `json_schema`) is not supported",
    ),
    ("tool_choice", "tool calls are not supported"),
    ("parallel_tool_calls", "tool calls are not supported"),
    ("functions", "function calls are not supported"),
    ("function_call", "function calls are not supported"),
    ("logit_bias", "`logit_bias` is not supported"),
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

/// Message fields beyond `role`, `content` and `name`, which only tool calls use.
const UNSUPPORTED_MESSAGE_FIELDS: &[(&str, &str)] = &[
    ("tool_calls", "tool calls are not supported"),
    ("tool_call_id", "tool calls are not supported"),
    ("function_call", "function calls are not supported"),
    ("audio", "audio is not supported"),
];

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
    }
    refuse_other_fields(&request.extra, UNSUPPORTED_FIELDS, "")?;
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
        if n != 1 {
            return Err(ModelError::invalid(
                "n",
                format!("only `n = 1` is supported, got {n}"),
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
        match value {
            Some(v) if !(-2.0..=2.0).contains(&v) => {
                return Err(ModelError::invalid(
                    name,
                    format!("`{name}` must be between -2 and 2, got {v}"),
                ))
            }
            Some(v) if v != 0.0 => {
                return Err(ModelError::invalid(
                    name,
                    format!("`{name}` is not supported; leave it out or set it to 0"),
                ))
            }
            _ => {}
        }
    }
    if request.tools.as_ref().is_some_and(|t| !t.is_null()) {
        return Err(ModelError::invalid("tools", "tool calls are not supported"));
    }
    Ok(())
}

/// Refuses the first field of `extra` with a value: by its reason if `known` lists it, as unknown
/// otherwise. `prefix` turns a field name into the `param` the error names.
fn refuse_other_fields(
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
        r.n = Some(2);
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

    #[test]
    fn refuses_a_json_schema_response_format() {
        let schema = serde_json::json!({
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}}
        });
        let r = with_field("response_format", schema);
        let Err(ModelError::InvalidRequest { message, param }) = validate(&r) else {
            panic!("a JSON schema was accepted");
        };
        assert_eq!(param.as_deref(), Some("response_format"));
        assert!(message.contains("structured output"), "{message}");
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
            .insert("tool_call_id".into(), Value::String("call_1".into()));
        assert_eq!(param_of(r).as_deref(), Some("messages[0].tool_call_id"));
    }

    #[test]
    fn a_null_field_is_absent_and_store_false_is_honoured() {
        assert_eq!(
            validate(&with_field("response_format", Value::Null)),
            Ok(())
        );
        assert_eq!(validate(&with_field("frobnicate", Value::Null)), Ok(()));
        assert_eq!(validate(&with_field("store", Value::Bool(false))), Ok(()));
        let mut r = request();
        r.user = Some("end-user-7".into());
        assert_eq!(validate(&r), Ok(()));
    }
}
