//! The `shown_examples` cascade signal's runner: the examples a request shows, checked against
//! the small model's answer in the evaluation harness's sandbox ([`tandem_eval::code`]), never in
//! this process.

use async_trait::async_trait;
use tandem_core::openai::ChatCompletionRequest;
use tandem_core::ModelError;
use tandem_eval::code::RequestExamples;
use tandem_eval::sandbox::{Limits, Sandbox};
use tandem_route::signal::example_texts;
use tandem_route::{ExampleCheck, ExamplesPassed};

/// Runs answers on their requests' examples in one sandbox, detected once per process.
pub struct SandboxedExamples {
    sandbox: Sandbox,
}

impl SandboxedExamples {
    /// Detects the strongest isolation the machine offers ([`Sandbox::detect`]); refuses one
    /// with resource limits only unless `allow_unisolated` (`[eval] allow_unisolated`).
    pub async fn detect(allow_unisolated: bool) -> anyhow::Result<SandboxedExamples> {
        let sandbox = Sandbox::detect(Limits::default(), None, allow_unisolated).await?;
        Ok(SandboxedExamples { sandbox })
    }
}

#[async_trait]
impl ExampleCheck for SandboxedExamples {
    async fn check(
        &self,
        request: &ChatCompletionRequest,
        answer: &str,
    ) -> Result<Option<ExamplesPassed>, ModelError> {
        let texts = example_texts(request);
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let Some(examples) = RequestExamples::find(&texts) else {
            return Ok(None);
        };
        let shown = examples
            .check(&self.sandbox, answer)
            .await
            .map_err(|e| ModelError::Internal(format!("shown examples: {e}")))?;
        Ok(shown.map(|s| ExamplesPassed {
            passed: s.passed,
            total: s.total,
        }))
    }
}
