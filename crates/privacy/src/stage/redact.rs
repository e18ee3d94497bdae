//! [`Redact`]: pseudonymise, send, restore.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, FunctionCallChunk, ToolCallChunk};
use tandem_core::report::StrategyEntry;
use tandem_core::{ChatEvent, ChatModel, ChatStream, ModelError};

use super::{counts_json, Guard, Pseudonymised};
use crate::vault::{Restorer, Vault};

/// Sends `inner` the request with every private value replaced by its placeholder, and gives the
/// caller the answer with the values put back: its text, and its tool calls' arguments (as JSON,
/// so a value with a quote or a line break keeps them valid).
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
        let Pseudonymised {
            request: sent,
            vault,
            judged,
        } = self.guard.pseudonymise(&request).await?;
        tracing::debug!(
            pipeline = %self.guard.pipeline,
            replaced = ?vault.replaced(),
            "redacted a request"
        );
        self.guard
            .audit("redact", self.inner.as_ref(), &sent, vault.replaced())
            .await?;
        let mut details = details(&vault);
        self.guard
            .record("redact", vault.replaced(), judged, &mut details);
        let vault = Arc::new(vault);
        let mut restorer = Restorer::new(Arc::clone(&vault));
        // Each tool call's arguments stream on their own, so each gets its own restorer.
        let mut call_restorers: BTreeMap<u32, Restorer> = BTreeMap::new();
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
                Ok(ChatEvent::ToolCall(mut call)) => {
                    call.function.name = call.function.name.map(|name| vault.restore(&name));
                    if let Some(arguments) = call.function.arguments.take() {
                        let restorer = call_restorers
                            .entry(call.index)
                            .or_insert_with(|| Restorer::for_json(Arc::clone(&vault)));
                        call.function.arguments = Some(restorer.push(&arguments));
                    }
                    vec![Ok(ChatEvent::ToolCall(call))]
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
                    for (index, restorer) in &mut call_restorers {
                        let rest = restorer.finish();
                        if !rest.is_empty() {
                            out.push(Ok(ChatEvent::ToolCall(ToolCallChunk {
                                index: *index,
                                id: None,
                                kind: None,
                                function: FunctionCallChunk {
                                    name: None,
                                    arguments: Some(rest),
                                },
                            })));
                        }
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
