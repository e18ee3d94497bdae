//! `POST /v1/embeddings` in OpenAI's shape: `input` (a string or a list of strings), `model`,
//! `encoding_format` (`float` or `base64`), `dimensions` (only the model's own) and `user`.
//!
//! Token arrays as `input`, other dimensions and unknown fields are refused with a 400 that names
//! the parameter, never ignored. The model runs on a blocking thread, so a large request does not
//! stall the server's other requests.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};
use tandem_core::ModelError;
use tandem_embed::{EmbedError, Embedder};

use crate::error::ApiError;
use crate::{metrics, AppState};

/// OpenAI's own limit on the number of texts in one request.
const MAX_INPUTS: usize = 2048;

const FIELDS: &[&str] = &["input", "model", "encoding_format", "dimensions", "user"];

#[derive(Debug, PartialEq)]
enum Encoding {
    Float,
    Base64,
}

#[derive(Debug)]
struct EmbeddingRequest {
    model: String,
    input: Vec<String>,
    encoding: Encoding,
    dimensions: Option<u64>,
}

#[derive(Serialize)]
struct EmbeddingList {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: String,
    usage: Usage,
}

#[derive(Serialize)]
struct EmbeddingData {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

/// A vector as JSON numbers, or as base64 of its little-endian `f32` bytes (what OpenAI's
/// clients decode with `numpy.frombuffer(..., dtype="float32")`).
#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let started = Instant::now();
    let mut served = "unknown".to_string();
    let response = match body {
        Ok(Json(body)) => match parse(body) {
            Ok(request) => {
                if state.pipelines.embedder(&request.model).is_some() {
                    served = request.model.clone();
                }
                handle(&state, request).await
            }
            Err(error) => Err(error.into()),
        },
        Err(rejection) => Err(ApiError::from(rejection)),
    };
    let response = response.map_or_else(IntoResponse::into_response, IntoResponse::into_response);
    metrics::record_request(&served, response.status().as_u16(), started.elapsed());
    response
}

async fn handle(
    state: &AppState,
    request: EmbeddingRequest,
) -> Result<Json<EmbeddingList>, ApiError> {
    let embedder = lookup(state, &request.model)?;
    if let Some(dimensions) = request.dimensions {
        if dimensions != embedder.dimensions() as u64 {
            return Err(ModelError::invalid(
                "dimensions",
                format!(
                    "model `{}` makes vectors of {} dimensions and cannot shorten them; \
                     omit `dimensions` or send {}",
                    request.model,
                    embedder.dimensions(),
                    embedder.dimensions()
                ),
            )
            .into());
        }
    }
    let texts = request.input;
    let embeddings = tokio::task::spawn_blocking(move || embedder.embed(&texts))
        .await
        .map_err(|error| ModelError::Internal(format!("the embedding task failed: {error}")))?
        .map_err(model_error)?;
    ::metrics::counter!(
        "tandem_tokens_total",
        "pipeline" => request.model.clone(),
        "model" => request.model.clone(),
        "kind" => "prompt"
    )
    .increment(embeddings.tokens as u64);
    let data = embeddings
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingData {
            object: "embedding",
            index,
            embedding: match request.encoding {
                Encoding::Float => Vector::Float(vector),
                Encoding::Base64 => Vector::Base64(to_base64(&vector)),
            },
        })
        .collect();
    Ok(Json(EmbeddingList {
        object: "list",
        data,
        model: request.model,
        usage: Usage {
            prompt_tokens: embeddings.tokens,
            total_tokens: embeddings.tokens,
        },
    }))
}

fn lookup(state: &AppState, model: &str) -> Result<Arc<Embedder>, ModelError> {
    if let Some(embedder) = state.pipelines.embedder(model) {
        return Ok(embedder.clone());
    }
    if state.pipelines.get(model).is_some() {
        return Err(ModelError::invalid(
            "model",
            format!("`{model}` is a chat model; /v1/embeddings needs an embedding model"),
        ));
    }
    Err(ModelError::NotFound(model.to_string()))
}

fn model_error(error: EmbedError) -> ModelError {
    match error {
        EmbedError::NoInput => ModelError::invalid("input", "`input` must not be empty"),
        EmbedError::EmptyText { index } => ModelError::invalid(
            "input",
            format!("`input[{index}]` is an empty string; every text needs at least one character"),
        ),
        EmbedError::Tokenize { index, message } => ModelError::invalid(
            "input",
            format!("`input[{index}]` cannot be tokenized: {message}"),
        ),
        other => ModelError::Internal(other.to_string()),
    }
}

/// Reads the body by hand rather than through serde so that every refusal can name its field.
fn parse(body: Value) -> Result<EmbeddingRequest, ModelError> {
    let Value::Object(mut fields) = body else {
        return Err(ModelError::InvalidRequest {
            message: "the request body must be a JSON object".into(),
            param: None,
        });
    };
    if let Some(unknown) = fields.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(ModelError::invalid(
            unknown,
            format!(
                "unknown field `{unknown}`; /v1/embeddings accepts {}",
                FIELDS.join(", ")
            ),
        ));
    }
    let model = match fields.remove("model") {
        Some(Value::String(model)) => model,
        Some(_) => return Err(ModelError::invalid("model", "`model` must be a string")),
        None => return Err(ModelError::invalid("model", "`model` is required")),
    };
    let input = parse_input(fields.remove("input"))?;
    let encoding = match fields.remove("encoding_format") {
        None | Some(Value::Null) => Encoding::Float,
        Some(Value::String(format)) if format == "float" => Encoding::Float,
        Some(Value::String(format)) if format == "base64" => Encoding::Base64,
        Some(other) => {
            return Err(ModelError::invalid(
                "encoding_format",
                format!("`encoding_format` must be \"float\" or \"base64\", not {other}"),
            ))
        }
    };
    let dimensions = match fields.remove("dimensions") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(other) => {
            return Err(ModelError::invalid(
                "dimensions",
                format!("`dimensions` must be a positive integer, not {other}"),
            ))
        }
    };
    check_user(&mut fields)?;
    Ok(EmbeddingRequest {
        model,
        input,
        encoding,
        dimensions,
    })
}

fn parse_input(input: Option<Value>) -> Result<Vec<String>, ModelError> {
    let invalid = |message: &str| ModelError::invalid("input", message);
    let texts = match input {
        None => return Err(invalid("`input` is required")),
        Some(Value::String(text)) => vec![text],
        Some(Value::Array(items)) => {
            if items.len() > MAX_INPUTS {
                return Err(invalid(&format!(
                    "`input` has {} texts; at most {MAX_INPUTS} are accepted per request",
                    items.len()
                )));
            }
            items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text),
                    Value::Number(_) | Value::Array(_) => Err(invalid(
                        "token arrays are not supported as `input`; send the text as strings",
                    )),
                    _ => Err(invalid("`input` must be a string or a list of strings")),
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(invalid("`input` must be a string or a list of strings")),
    };
    Ok(texts)
}

/// `user` identifies the caller for abuse monitoring at OpenAI; here it only has to be a string.
fn check_user(fields: &mut Map<String, Value>) -> Result<(), ModelError> {
    match fields.remove("user") {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(ModelError::invalid("user", "`user` must be a string")),
    }
}

fn to_base64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(body: Value) -> (Option<String>, String) {
        match parse(body) {
            Err(ModelError::InvalidRequest { param, message }) => (param, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_string_or_a_list_of_strings() {
        let one = parse(json!({"model": "m", "input": "hello"})).unwrap();
        assert_eq!(one.input, vec!["hello"]);
        assert_eq!(one.encoding, Encoding::Float);
        let many = parse(json!({
            "model": "m", "input": ["a", "b"], "encoding_format": "base64",
            "dimensions": 384, "user": "u-1"
        }))
        .unwrap();
        assert_eq!(many.input, vec!["a", "b"]);
        assert_eq!(many.encoding, Encoding::Base64);
        assert_eq!(many.dimensions, Some(384));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                json!({"model": "m", "input": "x", "truncate": true}),
                "truncate",
            ),
            (json!({"model": "m", "input": [1, 2, 3]}), "input"),
            (json!({"model": "m", "input": [[1, 2]]}), "input"),
            (json!({"model": "m", "input": 7}), "input"),
            (json!({"model": "m"}), "input"),
            (json!({"input": "x"}), "model"),
            (
                json!({"model": "m", "input": "x", "encoding_format": "int8"}),
                "encoding_format",
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": -3}),
                "dimensions",
            ),
            (json!({"model": "m", "input": "x", "user": 5}), "user"),
        ];
        for (body, field) in cases {
            let (param, message) = refusal(body.clone());
            assert_eq!(param.as_deref(), Some(field), "{body}");
            assert!(message.contains(field), "{body}: {message}");
        }
        let (_, message) = refusal(json!({"model": "m", "input": [1, 2]}));
        assert!(message.contains("token arrays"), "{message}");
        let too_many = vec!["x"; MAX_INPUTS + 1];
        let (param, _) = refusal(json!({"model": "m", "input": too_many}));
        assert_eq!(param.as_deref(), Some("input"));
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let encoded = to_base64(&[1.0, -2.5]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat()
        );
    }
}
