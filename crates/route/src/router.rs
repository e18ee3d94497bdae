//! [`Router`]: a score computed from the prompt alone, before any model answers, sends the request
//! to the small or the large model. Unlike a cascade, only one model runs.
//!
//! Scores (higher: the large model is more likely needed):
//! - [`LearnedScorer`]: a [`LearnedRouter`] (nearest neighbours or logistic regression, trained by
//!   `tandem router train` from stored outcomes) on the sentence embedding of the last user message;
//! - [`PerplexityScorer`]: the small model's mean negative log-likelihood of the prompt, in nats per
//!   token, which needs no training data: prompts the small model finds surprising go large.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use serde::Serialize;
use tandem_core::openai::{ChatCompletionRequest, Role};
use tandem_core::{ChatEvent, ChatModel, ChatStream, Completion, ModelError, Pricing};
use tandem_embed::Embedder;
use tandem_llama::LlamaEngine;

use crate::learn::LearnedRouter;

/// Scores a request from its prompt alone.
#[async_trait]
pub trait PromptScorer: Send + Sync {
    /// How the score is computed, as the report names it.
    fn kind(&self) -> &'static str;
    async fn score(&self, request: &ChatCompletionRequest) -> Result<f64, ModelError>;
}

/// The text a learned router embeds: the last user message, the query itself.
pub fn query_text(request: &ChatCompletionRequest) -> Result<String, ModelError> {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .and_then(|m| m.content.text())
        .ok_or_else(|| {
            ModelError::invalid(
                "messages",
                "a routed request needs a user message with text",
            )
        })
}

pub struct LearnedScorer {
    embedder: Arc<Embedder>,
    router: LearnedRouter,
}

impl LearnedScorer {
    pub fn new(embedder: Arc<Embedder>, router: LearnedRouter) -> Self {
        LearnedScorer { embedder, router }
    }
}

#[async_trait]
impl PromptScorer for LearnedScorer {
    fn kind(&self) -> &'static str {
        match self.router {
            LearnedRouter::Knn { .. } => "knn",
            LearnedRouter::Logistic { .. } => "logistic",
        }
    }

    async fn score(&self, request: &ChatCompletionRequest) -> Result<f64, ModelError> {
        let text = query_text(request)?;
        let embedder = Arc::clone(&self.embedder);
        let embedded = tokio::task::spawn_blocking(move || embedder.embed(&[text]))
            .await
            .map_err(|e| ModelError::Internal(format!("the embedder stopped: {e}")))?
            .map_err(|e| ModelError::Internal(format!("cannot embed the prompt: {e}")))?;
        let vector = embedded
            .vectors
            .first()
            .ok_or_else(|| ModelError::Internal("the embedder returned no vector".into()))?;
        Ok(self.router.predict(vector))
    }
}

pub struct PerplexityScorer {
    engine: Arc<LlamaEngine>,
}

impl PerplexityScorer {
    pub fn new(engine: Arc<LlamaEngine>) -> Self {
        PerplexityScorer { engine }
    }
}

#[async_trait]
impl PromptScorer for PerplexityScorer {
    fn kind(&self) -> &'static str {
        "perplexity"
    }

    async fn score(&self, request: &ChatCompletionRequest) -> Result<f64, ModelError> {
        let tokens = self.engine.model().chat_prompt(&request.messages)?;
        mean_negative_log_likelihood(&self.engine, &tokens).await
    }
}

/// The mean of `-ln p(token | tokens before it)` over every token but the first, under `engine`'s
/// model; 0 for fewer than two tokens.
pub async fn mean_negative_log_likelihood(
    engine: &LlamaEngine,
    tokens: &[i32],
) -> Result<f64, ModelError> {
    if tokens.len() < 2 {
        return Ok(0.0);
    }
    let losses = engine.open_sequence().await?.token_losses(tokens).await?;
    Ok(losses.iter().sum::<f64>() / losses.len() as f64)
}

/// How a router decides.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// The pipeline's name, reported in responses.
    pub name: String,
    /// Requests scoring at or above this go to the large model.
    pub threshold: f64,
    /// The large model's prices, to report what answering with the small one saved; `None` when
    /// unknown.
    pub large_pricing: Option<Pricing>,
}

pub struct Router {
    options: RouterOptions,
    scorer: Arc<dyn PromptScorer>,
    small: Arc<dyn ChatModel>,
    large: Arc<dyn ChatModel>,
}

/// The router's entry in the report.
#[derive(Debug, Clone, Serialize)]
struct Choice {
    scorer: &'static str,
    score: f64,
    threshold: f64,
    /// `small` or `large`.
    chose: &'static str,
    scoring_ms: f64,
    /// The large model's price of the answer's tokens minus the answer's cost (0 when the large
    /// model answered); only when the large model's prices are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    saved_usd: Option<f64>,
}

impl Router {
    pub fn new(
        options: RouterOptions,
        scorer: Arc<dyn PromptScorer>,
        small: Arc<dyn ChatModel>,
        large: Arc<dyn ChatModel>,
    ) -> Self {
        Router {
            options,
            scorer,
            small,
            large,
        }
    }
}

#[async_trait]
impl ChatModel for Router {
    fn name(&self) -> &str {
        &self.options.name
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let started = Instant::now();
        let score = self.scorer.score(&request).await?;
        let large = score >= self.options.threshold;
        let choice = Choice {
            scorer: self.scorer.kind(),
            score,
            threshold: self.options.threshold,
            chose: if large { "large" } else { "small" },
            scoring_ms: started.elapsed().as_secs_f64() * 1000.0,
            saved_usd: None,
        };
        metrics::counter!(
            "tandem_router_requests_total",
            "pipeline" => self.options.name.clone(),
            "chose" => choice.chose
        )
        .increment(1);
        let model = if large { &self.large } else { &self.small };
        let stream = model.stream(request).await?;
        let name = self.options.name.clone();
        let large_pricing = self.options.large_pricing;
        Ok(stream
            .map(move |event| match event {
                Ok(ChatEvent::Done(done)) => {
                    let mut report = done.report;
                    let mut choice = choice.clone();
                    choice.saved_usd = large_pricing.map(|price| {
                        if large {
                            0.0
                        } else {
                            price.cost(done.usage) - report.cost_usd
                        }
                    });
                    if let Err(e) = report.push_strategy(&name, "router", &choice) {
                        tracing::error!(error = %e, "cannot record the router's choice");
                    }
                    Ok(ChatEvent::Done(Completion { report, ..done }))
                }
                other => other,
            })
            .boxed())
    }
}
