//! [`SemanticCache`]: answers a request from the answers of earlier ones, per pipeline and API key.
//!
//! A request is looked up twice. An **exact hit** needs the same normalised request: the messages
//! (whitespace collapsed) and every setting that changes the answer (temperature, seed, max tokens,
//! stop, response format, ...; only `model`, `stream`, `stream_options`, `user` and `n` are left
//! out). A **similarity hit** needs the same everything except the last user message (the
//! question), a question whose sentence embedding is at least `threshold` cosine-similar to the
//! stored one, and equal salient [`literals`](crate::literals) (numbers, quoted strings,
//! identifiers, names, negations), so "17 × 23" is never answered with the answer to "17 × 24".
//!
//! Only requests that ask for a reproducible answer are cached: temperature 0, or a seed (then the
//! seed is part of the key). Requests with tools or log probabilities pass through uncached (a
//! tool call acts in the world; stored answers keep no log probabilities); `n` > 1 reaches the
//! cache as `n` single-choice requests with seeds `seed + i`, each keyed by its own seed.
//!
//! Entries live in the [`Store`] (SQLite), keyed by pipeline and tenant (the API key's id), never
//! read across keys; they expire after the TTL, and a pipeline keeps at most `max_entries`, the
//! oldest going first. A hit streams the stored answer again in pieces, costs nothing, and the
//! report's `cache` entry says how it matched, the similarity, the entry's age and what it saved.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tandem_core::openai::{ChatCompletionRequest, FinishReason, Role, Usage};
use tandem_core::{ChatEvent, ChatModel, ChatStream, Completion, ModelError, Report};
use tandem_embed::Embedder;
use tandem_store::{CacheEntry, Store};

use crate::literals::literals;

/// The tenant of requests that carry none (a server without API keys).
const ANONYMOUS: &str = "anonymous";

/// How a cache matches and keeps answers.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// The pipeline's name: entries are kept per pipeline.
    pub name: String,
    /// Least cosine similarity of a similarity hit; above 1 turns similarity hits off.
    pub threshold: f32,
    pub ttl: Duration,
    /// Most entries the pipeline keeps.
    pub max_entries: usize,
}

pub struct SemanticCache {
    options: CacheOptions,
    inner: Arc<dyn ChatModel>,
    embedder: Arc<Embedder>,
    store: Arc<dyn Store>,
}

/// The cache's entry in the report.
#[derive(Debug, Clone, Default, Serialize)]
struct Lookup {
    /// `exact`, `similar`, `miss` or `bypass`.
    hit: &'static str,
    /// Why a request was not looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// The hit's similarity, or the best candidate's on a miss.
    #[serde(skip_serializing_if = "Option::is_none")]
    similarity: Option<f64>,
    /// Seconds since the hit's answer was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    age_s: Option<f64>,
    /// What the stored answer cost when it was generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    saved_usd: Option<f64>,
    /// Whether a missed request's answer was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<bool>,
}

/// A stored answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Answer {
    text: String,
    finish_reason: FinishReason,
    usage: Usage,
    model: String,
    cost_usd: f64,
}

/// What a request is looked up by.
struct Keys {
    tenant: String,
    exact: String,
    context: String,
    question: String,
    literals: String,
}

impl SemanticCache {
    pub fn new(
        options: CacheOptions,
        inner: Arc<dyn ChatModel>,
        embedder: Arc<Embedder>,
        store: Arc<dyn Store>,
    ) -> Self {
        SemanticCache {
            options,
            inner,
            embedder,
            store,
        }
    }

    fn since_ms(&self) -> i64 {
        now_ms().saturating_sub(self.options.ttl.as_millis().min(i64::MAX as u128) as i64)
    }

    /// The stored entry that answers `keys`, with how it matched and its similarity; and the
    /// question's embedding, to store with its answer on a miss.
    async fn find(
        &self,
        keys: &Keys,
    ) -> Result<
        (
            Option<(CacheEntry, &'static str, f64)>,
            Option<f64>,
            Vec<f32>,
        ),
        String,
    > {
        let store = Arc::clone(&self.store);
        let (pipeline, tenant, exact) = (
            self.options.name.clone(),
            keys.tenant.clone(),
            keys.exact.clone(),
        );
        let since = self.since_ms();
        let found = blocking(move || store.cache_exact(&pipeline, &tenant, &exact, since)).await?;
        if let Some(entry) = found {
            return Ok((Some((entry, "exact", 1.0)), Some(1.0), Vec::new()));
        }
        let embedder = Arc::clone(&self.embedder);
        let question = keys.question.clone();
        let embedding = blocking(move || embedder.embed(&[question]))
            .await?
            .vectors
            .into_iter()
            .next()
            .ok_or("the embedder returned no vector")?;
        let store = Arc::clone(&self.store);
        let (pipeline, tenant, context) = (
            self.options.name.clone(),
            keys.tenant.clone(),
            keys.context.clone(),
        );
        let candidates =
            blocking(move || store.cache_candidates(&pipeline, &tenant, &context, since)).await?;
        let mut best: Option<f64> = None;
        let mut hit: Option<(CacheEntry, f64)> = None;
        for candidate in candidates {
            let similarity = f64::from(cosine(&embedding, &candidate.embedding));
            best = Some(best.map_or(similarity, |b| b.max(similarity)));
            if similarity < f64::from(self.options.threshold) {
                continue;
            }
            if candidate.literals != keys.literals {
                metrics::counter!(
                    "tandem_cache_literal_mismatches_total",
                    "pipeline" => self.options.name.clone()
                )
                .increment(1);
                continue;
            }
            if hit.as_ref().is_none_or(|(_, s)| similarity > *s) {
                hit = Some((candidate, similarity));
            }
        }
        if let Some(best) = best {
            metrics::histogram!("tandem_cache_similarity", "pipeline" => self.options.name.clone())
                .record(best);
        }
        Ok((
            hit.map(|(entry, similarity)| (entry, "similar", similarity)),
            best,
            embedding,
        ))
    }

    fn count(&self, result: &'static str) {
        metrics::counter!(
            "tandem_cache_requests_total",
            "pipeline" => self.options.name.clone(),
            "result" => result
        )
        .increment(1);
    }

    /// The inner model's answer, reported with `lookup`; stored under `keys` when it ends well.
    async fn pass(
        &self,
        request: ChatCompletionRequest,
        lookup: Lookup,
        store_as: Option<(Keys, Vec<f32>)>,
    ) -> Result<ChatStream, ModelError> {
        self.count(lookup.hit);
        let stream = self.inner.stream(request).await?;
        let name = self.options.name.clone();
        let store = Arc::clone(&self.store);
        let max_entries = self.options.max_entries;
        let text = Arc::new(Mutex::new(Some(String::new())));
        let lookup = Arc::new(Mutex::new(lookup));
        // Taken by the final event: what to store the answer under.
        let store_as = Arc::new(Mutex::new(store_as));
        Ok(stream
            .then(move |event| {
                let (name, store, text) = (name.clone(), Arc::clone(&store), Arc::clone(&text));
                let (lookup, store_as) = (Arc::clone(&lookup), Arc::clone(&store_as));
                async move {
                    let done = match event {
                        Ok(ChatEvent::Delta {
                            text: piece,
                            logprobs,
                        }) => {
                            if let Some(text) = lock(&text).as_mut() {
                                text.push_str(&piece);
                            }
                            return Ok(ChatEvent::Delta {
                                text: piece,
                                logprobs,
                            });
                        }
                        Ok(ChatEvent::ToolCall(call)) => {
                            *lock(&text) = None;
                            return Ok(ChatEvent::ToolCall(call));
                        }
                        Ok(ChatEvent::Done(done)) => done,
                        Err(e) => return Err(e),
                    };
                    let mut lookup = lock(&lookup).clone();
                    let answer = lock(&text).take();
                    let keys = lock(&store_as).take();
                    if let (Some(text), Some((keys, embedding))) = (answer, keys) {
                        let answer = Answer {
                            text,
                            finish_reason: done.finish_reason,
                            usage: done.usage,
                            model: done.report.model.clone(),
                            cost_usd: done.report.cost_usd,
                        };
                        let entry = CacheEntry {
                            pipeline: name.clone(),
                            tenant: keys.tenant,
                            key: keys.exact,
                            context: keys.context,
                            literals: keys.literals,
                            embedding,
                            answer: serde_json::to_string(&answer).expect("an answer serialises"),
                            created_ms: now_ms(),
                        };
                        let put = blocking(move || store.cache_put(&entry, max_entries)).await;
                        if let Err(e) = &put {
                            tracing::error!(error = %e, "cannot store an answer in the cache");
                        }
                        lookup.stored = Some(put.is_ok());
                    }
                    let mut report = done.report;
                    if let Err(e) = report.push_strategy(&name, "cache", &lookup) {
                        tracing::error!(error = %e, "cannot record the cache's lookup");
                    }
                    Ok(ChatEvent::Done(Completion { report, ..done }))
                }
            })
            .boxed())
    }
}

/// Why `request` is not cached, if it is not.
fn bypass_reason(request: &ChatCompletionRequest) -> Option<&'static str> {
    if request.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Some("tools");
    }
    if request.logprobs.unwrap_or(false) {
        return Some("logprobs");
    }
    if request.temperature != Some(0.0) && request.seed.is_none() {
        return Some("sampled");
    }
    None
}

/// The keys of a cacheable request; `None` when it has no user question.
fn keys(request: &ChatCompletionRequest) -> Option<Keys> {
    let last_user = request
        .messages
        .iter()
        .rposition(|m| m.role == Role::User)?;
    let question = collapse(&request.messages[last_user].content.text()?);
    let mut value = serde_json::to_value(request).expect("a request serialises");
    let object = value.as_object_mut().expect("a request is an object");
    for field in ["model", "stream", "stream_options", "user", "n"] {
        object.remove(field);
    }
    if let Some(Value::Array(messages)) = object.get_mut("messages") {
        for message in messages.iter_mut() {
            if let Some(Value::String(text)) = message.get_mut("content") {
                *text = collapse(text);
            }
        }
    }
    let exact = digest(&canonical(&value));
    if let Some(Value::Array(messages)) = value.get_mut("messages") {
        messages[last_user]["content"] = Value::Null;
    }
    Some(Keys {
        tenant: request
            .tenant
            .clone()
            .unwrap_or_else(|| ANONYMOUS.to_string()),
        exact,
        context: digest(&canonical(&value)),
        literals: literals(&question).signature(),
        question,
    })
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// JSON with every object's keys sorted, so equal requests hash equally.
fn canonical(value: &Value) -> String {
    fn sort(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sort(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(value).to_string()
}

fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Cosine similarity; the embedder's vectors are unit length, but stored ones are checked anyway.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator > 0.0 {
        dot / denominator
    } else {
        0.0
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The stored answer as a stream of a few words per piece, then its report.
fn replay(name: &str, answer: Answer, lookup: Lookup) -> ChatStream {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    for (i, word) in answer.text.split_inclusive(char::is_whitespace).enumerate() {
        piece.push_str(word);
        if i % 4 == 3 {
            pieces.push(std::mem::take(&mut piece));
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    let mut report = Report {
        pipeline: name.to_string(),
        model: answer.model,
        prompt_tokens: answer.usage.prompt_tokens,
        completion_tokens: answer.usage.completion_tokens,
        latency_ms: 0.0,
        time_to_first_token_ms: None,
        cost_usd: 0.0,
        stages: Vec::new(),
        strategies: Vec::new(),
    };
    if let Err(e) = report.push_strategy(name, "cache", &lookup) {
        tracing::error!(error = %e, "cannot record the cache's hit");
    }
    let mut events: Vec<Result<ChatEvent, ModelError>> = pieces
        .into_iter()
        .map(|text| {
            Ok(ChatEvent::Delta {
                text,
                logprobs: Vec::new(),
            })
        })
        .collect();
    events.push(Ok(ChatEvent::Done(Completion {
        finish_reason: answer.finish_reason,
        usage: answer.usage,
        report,
    })));
    futures::stream::iter(events).boxed()
}

#[async_trait]
impl ChatModel for SemanticCache {
    fn name(&self) -> &str {
        &self.options.name
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let started = Instant::now();
        let bypass = |reason| Lookup {
            hit: "bypass",
            reason: Some(reason),
            ..Lookup::default()
        };
        if let Some(reason) = bypass_reason(&request) {
            return self.pass(request, bypass(reason), None).await;
        }
        let Some(keys) = keys(&request) else {
            return self.pass(request, bypass("no_question"), None).await;
        };
        let (found, best, embedding) = match self.find(&keys).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "the cache lookup failed; answering uncached");
                return self.pass(request, bypass("lookup_failed"), None).await;
            }
        };
        if let Some((entry, how, similarity)) = found {
            match serde_json::from_str::<Answer>(&entry.answer) {
                Ok(answer) => {
                    self.count(how);
                    let lookup = Lookup {
                        hit: how,
                        similarity: Some(similarity),
                        age_s: Some((now_ms() - entry.created_ms).max(0) as f64 / 1000.0),
                        saved_usd: Some(answer.cost_usd),
                        ..Lookup::default()
                    };
                    tracing::debug!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        how,
                        "cache hit"
                    );
                    return Ok(replay(&self.options.name, answer, lookup));
                }
                Err(e) => tracing::error!(error = %e, "a cached answer does not parse"),
            }
        }
        let lookup = Lookup {
            hit: "miss",
            similarity: best,
            ..Lookup::default()
        };
        let embedding = if embedding.is_empty() {
            // An exact entry that did not parse: its question was never embedded.
            let embedder = Arc::clone(&self.embedder);
            let question = keys.question.clone();
            match blocking(move || embedder.embed(&[question])).await {
                Ok(mut embedded) => embedded.vectors.pop().unwrap_or_default(),
                Err(_) => return self.pass(request, lookup, None).await,
            }
        } else {
            embedding
        };
        self.pass(request, lookup, Some((keys, embedding))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::openai::Message;

    fn request(messages: &[(Role, &str)]) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: "cached".into(),
            messages: messages
                .iter()
                .map(|(role, text)| Message::new(*role, *text))
                .collect(),
            temperature: Some(0.0),
            max_tokens: Some(16),
            ..Default::default()
        }
    }

    #[test]
    fn the_exact_key_ignores_transport_and_whitespace_but_not_settings() {
        let base = request(&[(Role::System, "Be brief."), (Role::User, "Hi  there")]);
        let key = |r: &ChatCompletionRequest| keys(r).unwrap().exact;
        let mut same = request(&[(Role::System, "Be brief. "), (Role::User, "Hi there")]);
        same.stream = true;
        same.user = Some("u1".into());
        same.model = "alias".into();
        assert_eq!(key(&base), key(&same));
        let mut longer = base.clone();
        longer.max_tokens = Some(17);
        assert_ne!(key(&base), key(&longer));
        let mut seeded = base.clone();
        seeded.seed = Some(1);
        assert_ne!(key(&base), key(&seeded));
        // The context leaves the question out, and only the question.
        let other_question = request(&[(Role::System, "Be brief."), (Role::User, "Hello")]);
        assert_eq!(
            keys(&base).unwrap().context,
            keys(&other_question).unwrap().context
        );
        let other_system = request(&[(Role::System, "Be long."), (Role::User, "Hi there")]);
        assert_ne!(
            keys(&base).unwrap().context,
            keys(&other_system).unwrap().context
        );
        let mut tenant = base.clone();
        tenant.tenant = Some("abc".into());
        assert_eq!(keys(&tenant).unwrap().tenant, "abc");
        assert_eq!(keys(&base).unwrap().tenant, ANONYMOUS);
    }

    #[test]
    fn only_reproducible_requests_without_tools_or_logprobs_are_cached() {
        let mut r = request(&[(Role::User, "Hi")]);
        assert_eq!(bypass_reason(&r), None);
        r.temperature = Some(0.7);
        assert_eq!(bypass_reason(&r), Some("sampled"));
        r.seed = Some(3);
        assert_eq!(bypass_reason(&r), None);
        r.temperature = None;
        assert_eq!(bypass_reason(&r), None);
        r.logprobs = Some(true);
        assert_eq!(bypass_reason(&r), Some("logprobs"));
        assert!(keys(&request(&[(Role::System, "x")])).is_none());
    }
}
