//! [`Rewrite`]: the local model asks the remote one a question stripped of private context, then
//! answers the user with both, as PAPILLON does (Siyan Li et al., 2025).

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::report::StrategyEntry;
use tandem_core::{collect, ChatEvent, ChatModel, ChatStream, ModelError};

use super::{counts_json, Guard, Pseudonymised};

/// Tokens the local model may spend on the rewritten question.
const REWRITE_MAX_TOKENS: u32 = 160;

const REWRITE_PROMPT: &str = "Rewrite the user's last request as one short, self-contained \
question for an outside expert. Leave out every personal detail: names, contact details, \
numbers, addresses, account data, passwords and keys. Keep what the expert needs to answer. \
Write only the question.";

const COMPOSE_PROMPT: &str = "An outside expert answered a privacy-safe version of the user's \
request. Use the expert's answer and the user's own details to answer the user's request.";

/// Three calls: `local` rewrites the conversation into a question without private context,
/// `remote` answers that question (pseudonymised again, in case the rewrite kept something), and
/// `local` composes the answer from the conversation and the remote answer. The user sees the last
/// call's stream.
pub struct Rewrite {
    guard: Guard,
    local: Arc<dyn ChatModel>,
    remote: Arc<dyn ChatModel>,
}

impl Rewrite {
    pub fn new(guard: Guard, local: Arc<dyn ChatModel>, remote: Arc<dyn ChatModel>) -> Rewrite {
        Rewrite {
            guard,
            local,
            remote,
        }
    }
}

/// The conversation as one text, for a prompt.
fn transcript(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| {
            format!(
                "{}: {}",
                m.role.as_str(),
                m.content.text().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[async_trait]
impl ChatModel for Rewrite {
    fn name(&self) -> &str {
        &self.guard.pipeline
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        // The same refusals as the other stages, before any model runs (what is sent is the
        // rewritten question, pseudonymised below).
        self.guard.check(&request)?;
        let rewrite = ChatCompletionRequest {
            model: self.local.name().to_string(),
            messages: vec![
                Message::new(Role::System, REWRITE_PROMPT),
                Message::new(Role::User, transcript(&request.messages)),
            ],
            max_tokens: Some(REWRITE_MAX_TOKENS),
            temperature: Some(0.0),
            ..Default::default()
        };
        let question = self.local.complete(rewrite).await?.text.trim().to_string();
        let asked = ChatCompletionRequest {
            messages: vec![Message::new(Role::User, question)],
            ..request.clone()
        };
        let Pseudonymised {
            request: sent,
            vault,
            judged,
        } = self.guard.pseudonymise(&asked).await?;
        self.guard
            .audit("rewrite", self.remote.as_ref(), &sent, vault.replaced())
            .await?;
        let expert = collect(self.remote.stream(sent).await?, false).await?.text;
        let expert = vault.restore(&expert);

        let mut messages = vec![Message::new(
            Role::System,
            format!("{COMPOSE_PROMPT}\n\nExpert's answer:\n{expert}"),
        )];
        messages.extend(
            request
                .messages
                .iter()
                .filter(|m| !matches!(m.role, Role::System | Role::Developer))
                .cloned(),
        );
        let compose = ChatCompletionRequest {
            model: self.local.name().to_string(),
            messages,
            ..request
        };
        let mut details = serde_json::Map::new();
        details.insert("local".into(), self.local.name().into());
        details.insert("remote".into(), self.remote.name().into());
        details.insert(
            "redacted_after_rewrite".into(),
            counts_json(vault.replaced()),
        );
        details.insert("expert_answer_chars".into(), expert.chars().count().into());
        self.guard
            .record("rewrite", vault.replaced(), judged, &mut details);
        let pipeline = self.guard.pipeline.clone();
        let events = self.local.stream(compose).await?;
        Ok(events
            .map(move |event| match event {
                Ok(ChatEvent::Done(mut done)) => {
                    done.report.strategies.push(StrategyEntry {
                        pipeline: pipeline.clone(),
                        strategy: "rewrite".into(),
                        details: details.clone(),
                    });
                    Ok(ChatEvent::Done(done))
                }
                other => other,
            })
            .boxed())
    }
}
