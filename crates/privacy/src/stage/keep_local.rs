//! [`KeepLocal`]: route a sensitive request to a local model instead of a remote one.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tandem_core::openai::ChatCompletionRequest;
use tandem_core::report::StrategyEntry;
use tandem_core::{ChatEvent, ChatModel, ChatStream, ModelError};

use super::{counts_json, Guard};

/// Sends a request to `remote` unless its sensitivity (the highest confidence of any finding)
/// reaches `threshold`; then `local` answers and nothing leaves the machine. `remote` may itself
/// be a [`super::Redact`] pipeline, so that what is sent is also pseudonymised.
pub struct KeepLocal {
    guard: Guard,
    local: Arc<dyn ChatModel>,
    remote: Arc<dyn ChatModel>,
    threshold: f32,
}

impl KeepLocal {
    pub fn new(
        guard: Guard,
        local: Arc<dyn ChatModel>,
        remote: Arc<dyn ChatModel>,
        threshold: f32,
    ) -> KeepLocal {
        KeepLocal {
            guard,
            local,
            remote,
            threshold,
        }
    }
}

#[async_trait]
impl ChatModel for KeepLocal {
    fn name(&self) -> &str {
        &self.guard.pipeline
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let (sensitivity, found, judged) = self.guard.sensitivity(&request).await?;
        let keep = sensitivity >= self.threshold;
        let model = if keep { &self.local } else { &self.remote };
        if !keep {
            self.guard
                .audit(
                    "keep_local",
                    self.remote.as_ref(),
                    &request,
                    &Default::default(),
                )
                .await?;
        }
        let mut details = serde_json::Map::new();
        details.insert("route".into(), if keep { "local" } else { "remote" }.into());
        details.insert("model".into(), model.name().into());
        details.insert(
            "sensitivity".into(),
            serde_json::Value::from((f64::from(sensitivity) * 100.0).round() / 100.0),
        );
        details.insert("threshold".into(), f64::from(self.threshold).into());
        details.insert("found".into(), counts_json(&found));
        self.guard
            .record("keep_local", &found, judged, &mut details);
        let pipeline = self.guard.pipeline.clone();
        let events = model.stream(request).await?;
        Ok(events
            .map(move |event| match event {
                Ok(ChatEvent::Done(mut done)) => {
                    done.report.strategies.push(StrategyEntry {
                        pipeline: pipeline.clone(),
                        strategy: "keep_local".into(),
                        details: details.clone(),
                    });
                    Ok(ChatEvent::Done(done))
                }
                other => other,
            })
            .boxed())
    }
}
