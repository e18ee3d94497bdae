//! Checks of a chat request before any model sees it. Every failure names the offending parameter,
//! and the server answers it with HTTP 400.

use crate::error::ModelError;
use crate::openai::ChatCompletionRequest;

/// The most `top_logprobs` OpenAI allows.
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// The most stop sequences OpenAI allows.
pub const MAX_STOP_SEQUENCES: usize = 4;

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
    }
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
}
