//! [`Redact`]: pseudonymise, send, restore.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tandem_core::openai::ChatCompletionRequest;
use tandem_core::report::StrategyEntry;
use tandem_core::{ChatEvent, ChatModel, ChatStream, ModelError};

use super::{counts_json, Guard};
use crate::vault::{Restorer, Vault};

/// Sends `inner` the request with every private value replaced by its placeholder, and gives the
/// caller the answer with the values put back. The answer's text is its only text field today;
/// tool-call arguments in answers will be restored the same way once responses carry them.
pub struct Redact {
    guard: Guard,
    inner: Arc<dyn ChatModel>,
}

impl Redact {
    pub fn new(guard: Guard, inner: Arc<dyn ChatModel>) -> Redact {
        Redact { guard, inner }
    }
}

#[async_trait]
impl ChatModel for Redact {
    fn name(&self) -> &str {
        &self.guard.pipeline
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let (sent, vault) = self.guard.pseudonymise(&request)?;
        tracing::debug!(
            pipeline = %self.guard.pipeline,
            replaced = ?vault.replaced(),
            "redacted a request"
        );
        self.guard
            .audit("redact", self.inner.as_ref(), &sent, vault.replaced())
            .await?;
        let details = details(&vault);
        let mut restorer = Restorer::new(Arc::new(vault));
        let events = self.inner.stream(sent).await?;
        let pipeline = self.guard.pipeline.clone();
        let restored = events.flat_map(move |event| {
            let out: Vec<Result<ChatEvent, ModelError>> = match event {
                Ok(ChatEvent::Delta { text, logprobs }) => {
                    let text = restorer.push(&text);
                    if text.is_empty() {
                        Vec::new()
                    } else {
                        vec![Ok(ChatEvent::Delta { text, logprobs })]
                    }
                }
                Ok(ChatEvent::Done(mut done)) => {
                    let rest = restorer.finish();
                    done.report.strategies.push(StrategyEntry {
                        pipeline: pipeline.clone(),
                        strategy: "redact".into(),
                        details: details.clone(),
                    });
                    let mut out = Vec::with_capacity(2);
                    if !rest.is_empty() {
                        out.push(Ok(ChatEvent::Delta {
                            text: rest,
                            logprobs: Vec::new(),
                        }));
                    }
                    out.push(Ok(ChatEvent::Done(done)));
                    out
                }
                Err(error) => vec![Err(error)],
            };
            futures::stream::iter(out)
        });
        Ok(restored.boxed())
    }
}

/// The report entry: kinds replaced and how often, never a value.
fn details(vault: &Vault) -> serde_json::Map<String, serde_json::Value> {
    let mut details = serde_json::Map::new();
    details.insert("redacted".into(), counts_json(vault.replaced()));
    details.insert("distinct_values".into(), vault.len().into());
    details
}
