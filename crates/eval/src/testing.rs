//! Test doubles for the plumbing tests (store, resume, report). They check bookkeeping only;
//! whether real models are evaluated correctly is tested by the binary with a real model.
//!
//! - [`ToyDataset`]: a tiny arithmetic set scored like the math set.
//! - [`ScriptedModel`]: a deterministic `ChatModel` that answers each item as a closure says
//!   (for example with the dataset's reference solution), counts its calls, and can be told to
//!   hang (as a killed run would) or fail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, FinishReason, Message, Role, Usage};
use tandem_core::{ChatEvent, ChatModel, ChatStream, Completion, ModelError, Report, Stage};

use crate::dataset::gsm::final_number;
use crate::dataset::{Dataset, Item, Score, Split};
use crate::error::EvalError;

pub struct ToyDataset {
    items: Vec<Item>,
}

impl ToyDataset {
    /// `n` items `toy/00`.. asking for `i + i`; the first two are train, the rest test.
    pub fn new(n: usize) -> ToyDataset {
        let items = (0..n)
            .map(|i| Item {
                id: format!("toy/{i:02}"),
                split: if i < 2 { Split::Train } else { Split::Test },
                messages: vec![Message::new(Role::User, format!("What is {i} + {i}?"))],
                solution: format!("#### {}", 2 * i),
            })
            .collect();
        ToyDataset { items }
    }
}

#[async_trait]
impl Dataset for ToyDataset {
    fn name(&self) -> &'static str {
        "toy"
    }

    fn metric(&self) -> &'static str {
        "accuracy"
    }

    fn version(&self) -> &str {
        "toy-v1"
    }

    fn prompt_version(&self) -> &'static str {
        "toy-prompt-v1"
    }

    fn scoring(&self) -> serde_json::Value {
        serde_json::json!({ "scorer": "toy" })
    }

    fn items(&self) -> &[Item] {
        &self.items
    }

    async fn score(&self, item: &Item, answer: &str) -> Result<Score, EvalError> {
        let reference = final_number(&item.solution);
        let extracted = final_number(answer);
        Ok(Score {
            passed: extracted.is_some() && extracted == reference,
            detail: serde_json::json!({ "extracted": extracted }),
        })
    }
}

/// What a [`ScriptedModel`] does for one item.
pub enum Reply {
    Answer(String),
    Fail,
}

pub struct ScriptedModel {
    name: String,
    /// User message text to reply.
    replies: HashMap<String, Reply>,
    calls: AtomicUsize,
    /// Calls after this many never finish.
    hang_after: Option<usize>,
}

impl ScriptedModel {
    pub fn new(
        name: &str,
        dataset: &dyn Dataset,
        reply: impl Fn(&Item) -> Reply,
        hang_after: Option<usize>,
    ) -> Arc<ScriptedModel> {
        let replies = dataset
            .items()
            .iter()
            .map(|item| (user_text(&item.messages), reply(item)))
            .collect();
        Arc::new(ScriptedModel {
            name: name.to_string(),
            replies,
            calls: AtomicUsize::new(0),
            hang_after,
        })
    }

    /// Answers every item with its reference solution.
    pub fn reference(name: &str, dataset: &dyn Dataset) -> Arc<ScriptedModel> {
        ScriptedModel::new(
            name,
            dataset,
            |item| Reply::Answer(item.solution.clone()),
            None,
        )
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn user_text(messages: &[Message]) -> String {
    messages
        .iter()
        .filter(|m| m.role == Role::User)
        .filter_map(|m| m.content.text())
        .collect::<Vec<_>>()
        .join("\n")
}

#[async_trait]
impl ChatModel for ScriptedModel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hang_after.is_some_and(|n| call >= n) {
            std::future::pending::<()>().await;
        }
        let prompt = user_text(&request.messages);
        let text = match self.replies.get(&prompt) {
            Some(Reply::Answer(text)) => text.clone(),
            Some(Reply::Fail) => {
                return Err(ModelError::Overloaded(self.name.clone()));
            }
            None => "I do not know.".to_string(),
        };
        let prompt_tokens = prompt.split_whitespace().count() as u32;
        let completion_tokens = text.split_whitespace().count() as u32;
        let report = Report::single(Stage::unpriced_local(
            self.name.clone(),
            prompt_tokens,
            completion_tokens,
            1.0,
        ));
        let events = vec![
            Ok(ChatEvent::Delta {
                text,
                logprobs: Vec::new(),
            }),
            Ok(ChatEvent::Done(Completion {
                finish_reason: FinishReason::Stop,
                usage: Usage::new(prompt_tokens, completion_tokens),
                report,
            })),
        ];
        Ok(futures::stream::iter(events).boxed())
    }
}
