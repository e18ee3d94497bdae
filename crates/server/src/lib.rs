//! Tandem's OpenAI-compatible HTTP server.
//!
//! The HTTP layer only translates: it parses and validates requests, looks up the pipeline the
//! request's `model` names, and turns the pipeline's [`tandem_core::ChatEvent`]s into OpenAI JSON
//! or server-sent events. Routes:
//!
//! - `POST /v1/chat/completions` — JSON or SSE (`stream: true`), with `usage` and the `tandem` report
//! - `POST /v1/completions` — the legacy text endpoint: raw text continued without a chat
//!   template, JSON or SSE, with `echo` and legacy `logprobs`
//! - `POST /v1/embeddings` — OpenAI's embeddings, from the embedding models served
//! - `POST /v1/responses` — OpenAI's Responses API, stateless, translated to the chat path:
//!   text, function tools, `text.format`, typed stream events
//! - `GET /v1/models`, `GET /v1/models/{id}` — the pipelines served
//! - `GET /health` — liveness and the pipelines served
//! - `GET /metrics` — Prometheus: requests, rejections, tokens, cost, latency and time to first token
//!   per pipeline; spending per key and pipeline when [`Spending`] is on
//!
//! ```no_run
//! # async fn run(model: std::sync::Arc<dyn tandem_core::ChatModel>) -> std::io::Result<()> {
//! use tandem_server::{router, Pipelines, ServerOptions};
//! let mut pipelines = Pipelines::default();
//! pipelines.insert("smollm2", model);
//! let app = router(pipelines, ServerOptions::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

mod chat;
mod completions;
mod embeddings;
mod error;
mod metrics;
mod responses;
mod spending;
mod sse;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tandem_core::openai::{ModelCard, ModelList};
use tandem_core::{ChatModel, ModelError};
use tandem_embed::Embedder;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, OVERLOADED_RETRY_AFTER_SECS};
pub use spending::{Spending, ANONYMOUS};

/// The pipelines and embedding models a server answers for, by the name a request's `model`
/// field uses.
#[derive(Default, Clone)]
pub struct Pipelines {
    entries: BTreeMap<String, Arc<dyn ChatModel>>,
    embedders: BTreeMap<String, Arc<Embedder>>,
}

impl Pipelines {
    pub fn insert(&mut self, name: impl Into<String>, model: Arc<dyn ChatModel>) {
        self.entries.insert(name.into(), model);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn ChatModel>> {
        self.entries.get(name)
    }

    /// Serves `embedder` on `/v1/embeddings` under `name`.
    pub fn insert_embedder(&mut self, name: impl Into<String>, embedder: Arc<Embedder>) {
        self.embedders.insert(name.into(), embedder);
    }

    pub fn embedder(&self, name: &str) -> Option<&Arc<Embedder>> {
        self.embedders.get(name)
    }

    /// Chat pipelines first, then embedding models.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries
            .keys()
            .chain(self.embedders.keys())
            .map(String::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Bearer keys accepted on `/v1/*`; empty means no authentication.
    pub api_keys: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Per-key spending and budgets; `None`: costs are only reported and counted in /metrics.
    pub spending: Option<Arc<Spending>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            api_keys: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            spending: None,
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pipelines: Arc<Pipelines>,
    api_keys: Arc<ApiKeys>,
    spending: Option<Arc<Spending>>,
    started: u64,
}

/// The accepted bearer keys, kept as SHA-256 digests so that a presented key is checked in time
/// that tells nothing about the keys: every digest has the same length whatever the key's, each
/// comparison runs in constant time, and every key is compared, so the time does not say which
/// key matched, or how much of one.
struct ApiKeys(Vec<[u8; 32]>);

impl ApiKeys {
    fn new(keys: &[String]) -> Self {
        ApiKeys(keys.iter().map(|key| digest(key)).collect())
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented);
        let matched = self.0.iter().fold(Choice::from(0), |matched, key| {
            matched | key.as_slice().ct_eq(presented.as_slice())
        });
        matched.into()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The tenant id of an API key: its SHA-256 in hex. Requests carry it (`ChatCompletionRequest::
/// tenant`) instead of the key, and per-key state (spending, caches) is kept under it.
pub fn tenant_id(key: &str) -> String {
    digest(key).iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The application, ready for `axum::serve`.
pub fn router(pipelines: Pipelines, options: ServerOptions) -> Router {
    let metrics = metrics::handle();
    if let Some(spending) = &options.spending {
        if let Err(e) = spending.publish() {
            tracing::error!(error = %e, "cannot read the spending kept in the store");
        }
    }
    let state = AppState {
        pipelines: Arc::new(pipelines),
        api_keys: Arc::new(ApiKeys::new(&options.api_keys)),
        spending: options.spending.clone(),
        started: unix_now(),
    };
    let api = Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/completions", post(completions::create))
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/responses", post(responses::create))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/health", get(health))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .fallback(|request: Request| async move {
            ApiError::route_not_found(request.uri().path()).into_response()
        })
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The caller's API key as an opaque id (its SHA-256, hex), for state a pipeline keeps per caller.
#[derive(Clone)]
pub(crate) struct Tenant(pub String);

async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if state.api_keys.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(key) if state.api_keys.accepts(key) => {
            let tenant = tenant_id(key);
            request.extensions_mut().insert(Tenant(tenant));
            next.run(request).await
        }
        _ => ApiError::unauthorized().into_response(),
    }
}

fn card(state: &AppState, id: &str) -> ModelCard {
    ModelCard {
        id: id.to_string(),
        object: "model".into(),
        created: state.started,
        owned_by: "tandem".into(),
    }
}

async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: state.pipelines.names().map(|n| card(&state, n)).collect(),
    })
}

async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    if state.pipelines.names().any(|name| name == id) {
        Ok(Json(card(&state, &id)))
    } else {
        Err(ModelError::NotFound(id).into())
    }
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "pipelines": state.pipelines.names().collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::ApiKeys;

    #[test]
    fn accepts_each_key_and_nothing_near_one() {
        let keys = ApiKeys::new(&["first-key".to_string(), "second-key".to_string()]);
        assert!(keys.accepts("first-key"));
        assert!(keys.accepts("second-key"));
        for near in ["", "first-ke", "first-key ", "second-keyX", "FIRST-KEY"] {
            assert!(!keys.accepts(near), "{near:?} was accepted");
        }
        assert!(!ApiKeys::new(&[]).accepts(""));
    }
}
