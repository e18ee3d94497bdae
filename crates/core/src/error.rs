//! The one error type every model returns, so that any stage of a pipeline can fail the same way and
//! the server can map each failure to one HTTP status and OpenAI error body.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The request itself is wrong; `param` names the offending field where there is one.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error(
        "the prompt has {prompt_tokens} tokens, which leaves no room in model `{model}`'s context of {context_size} tokens; shorten the messages"
    )]
    ContextOverflow {
        model: String,
        prompt_tokens: usize,
        context_size: usize,
    },
    #[error("model `{0}` does not exist; GET /v1/models lists the models and pipelines served")]
    NotFound(String),
    /// An upstream answered with an error status or a body we could not use.
    #[error("upstream `{upstream}` failed{}: {message}", status.map(|s| format!(" with HTTP {s}")).unwrap_or_default())]
    Upstream {
        upstream: String,
        status: Option<u16>,
        message: String,
    },
    #[error("upstream `{upstream}` did not answer within {}s", after.as_secs_f64())]
    Timeout { upstream: String, after: Duration },
    #[error("model `{0}` is busy; retry later")]
    Overloaded(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ModelError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ModelError::InvalidRequest {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }
}
