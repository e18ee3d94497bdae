//! [`Memo`]: a model that answers a greedy request it has seen before from memory. The
//! evaluation's detection, leakage and quality passes put the same name questions to the judge
//! (the same sentence, the same value); a greedy answer to the same prompt is the model's answer,
//! so each later pass replays the first's instead of spending the CPU on it again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use tandem_core::openai::ChatCompletionRequest;
use tandem_core::{ChatEvent, ChatModel, ChatStream, ModelError};

pub struct Memo {
    inner: Arc<dyn ChatModel>,
    /// Every event of each greedy request's answer, keyed by the request as JSON.
    seen: Mutex<HashMap<String, Vec<ChatEvent>>>,
    replayed: AtomicUsize,
}

impl Memo {
    pub fn new(inner: Arc<dyn ChatModel>) -> Self {
        Memo {
            inner,
            seen: Mutex::new(HashMap::new()),
            replayed: AtomicUsize::new(0),
        }
    }

    /// Requests answered from memory so far.
    pub fn replayed(&self) -> usize {
        self.replayed.load(Ordering::Relaxed)
    }
}

fn replay(events: Vec<ChatEvent>) -> ChatStream {
    futures::stream::iter(events.into_iter().map(Ok)).boxed()
}

#[async_trait]
impl ChatModel for Memo {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        // A sampled answer is one draw among many: only greedy ones are worth remembering.
        if request.temperature != Some(0.0) {
            return self.inner.stream(request).await;
        }
        let key = serde_json::to_string(&request)
            .map_err(|e| ModelError::invalid("messages", e.to_string()))?;
        let known = self.seen.lock().expect("not poisoned").get(&key).cloned();
        if let Some(events) = known {
            self.replayed.fetch_add(1, Ordering::Relaxed);
            return Ok(replay(events));
        }
        let events: Vec<ChatEvent> = self.inner.stream(request).await?.try_collect().await?;
        self.seen
            .lock()
            .expect("not poisoned")
            .insert(key, events.clone());
        Ok(replay(events))
    }
}

#[cfg(test)]
mod tests {
    use tandem_core::openai::{FinishReason, Message, Role, Usage};
    use tandem_core::report::{Report, Stage};
    use tandem_core::Completion;

    use super::*;

    /// Answers each request with the number of requests it has been asked so far.
    struct Counting(AtomicUsize);

    #[async_trait]
    impl ChatModel for Counting {
        fn name(&self) -> &str {
            "counting"
        }

        async fn stream(&self, _: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
            let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
            Ok(replay(vec![
                ChatEvent::Delta {
                    text: n.to_string(),
                    logprobs: Vec::new(),
                },
                ChatEvent::Done(Completion {
                    finish_reason: FinishReason::Stop,
                    usage: Usage::default(),
                    report: Report::single(Stage::unpriced_local("counting", 1, 1, 0.0)),
                }),
            ]))
        }
    }

    fn request(text: &str, temperature: f32) -> ChatCompletionRequest {
        ChatCompletionRequest {
            messages: vec![Message::new(Role::User, text)],
            temperature: Some(temperature),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_greedy_request_seen_before_is_answered_from_memory_and_others_are_asked() {
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        let memo = Memo::new(counting.clone());
        let text = |r| async { memo.complete(r).await.unwrap().text };
        assert_eq!(text(request("who is Ann?", 0.0)).await, "1");
        assert_eq!(text(request("who is Bo?", 0.0)).await, "2");
        assert_eq!(text(request("who is Ann?", 0.0)).await, "1");
        assert_eq!(memo.replayed(), 1);
        // Sampled requests always reach the model.
        assert_eq!(text(request("who is Ann?", 0.7)).await, "3");
        assert_eq!(text(request("who is Ann?", 0.7)).await, "4");
        assert_eq!(counting.0.load(Ordering::Relaxed), 4);
        assert_eq!(memo.replayed(), 1);
    }
}
