//! Every failure the API can answer with, mapped in one place to an HTTP status and OpenAI's error
//! body (`{"error": {"message", "type", "param", "code"}}`).

use axum::extract::rejection::JsonRejection;
use axum::http::header::RETRY_AFTER;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tandem_core::openai::{ErrorBody, ErrorDetail};
use tandem_core::ModelError;

/// Seconds an overloaded model asks a client to wait (`Retry-After`) before it tries again. Short,
/// because a queue frees a place with every finished generation; OpenAI's own clients honour the
/// header and back off further on each repeated 503.
pub const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

/// The `code` of the error body when a model's queue is full.
pub(crate) const OVERLOADED: &str = "overloaded";

/// The `type` and `code` of the error body when an API key's budget is spent, as OpenAI's.
pub(crate) const INSUFFICIENT_QUOTA: &str = "insufficient_quota";

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Seconds for the `Retry-After` header, when trying again later can succeed.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, message: String) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: ErrorDetail {
                    message,
                    kind: kind.to_string(),
                    param: None,
                    code: None,
                },
            },
            retry_after: None,
        }
    }

    fn with_param(mut self, param: Option<String>) -> Self {
        self.body.error.param = param;
        self
    }

    fn with_code(mut self, code: &str) -> Self {
        self.body.error.code = Some(code.to_string());
        self
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing or invalid API key: send `Authorization: Bearer <key>`".into(),
        )
        .with_code("invalid_api_key")
    }

    /// The key's budget is spent: 429 with OpenAI's `insufficient_quota` body (no `Retry-After`:
    /// waiting does not help).
    pub fn insufficient_quota(spent_usd: f64, budget_usd: f64) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            INSUFFICIENT_QUOTA,
            format!(
                "this API key has spent its budget (${spent_usd:.6} of ${budget_usd:.6}); \
                 ask the operator to raise it"
            ),
        )
        .with_code(INSUFFICIENT_QUOTA)
    }

    pub(crate) fn internal(message: String) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn route_not_found(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no route for {path}"),
        )
        .with_code("unknown_url")
    }
}

impl From<ModelError> for ApiError {
    fn from(error: ModelError) -> Self {
        let message = error.to_string();
        match error {
            ModelError::InvalidRequest { param, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
                    .with_param(param)
            }
            ModelError::ContextOverflow { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
                    .with_param(Some("messages".into()))
                    .with_code("context_length_exceeded")
            }
            ModelError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
                    .with_param(Some("model".into()))
                    .with_code("model_not_found")
            }
            ModelError::Upstream { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
            }
            ModelError::Timeout { .. } => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_error", message)
                    .with_code("timeout")
            }
            ModelError::Overloaded(_) => ApiError {
                retry_after: Some(OVERLOADED_RETRY_AFTER_SECS),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                    .with_code(OVERLOADED)
            },
            ModelError::Internal(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // OpenAI answers every malformed body with 400; only an oversized body keeps its own status.
        let status = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let message = match &rejection {
            JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is larger than this server accepts".to_string()
            }
            _ => format!("invalid request body: {}", rejection.body_text()),
        };
        ApiError::new(status, "invalid_request_error", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(RETRY_AFTER, seconds.into());
        }
        response
    }
}
