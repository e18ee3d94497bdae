//! [`RemoteModel`]: one upstream behind [`ChatModel`].

use std::collections::VecDeque;
use std::error::Error as _;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Response, StatusCode};
use tandem_core::completions::{validate_completion, CompletionRequest, TextCompletion};
use tandem_core::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ErrorBody, FinishReason,
    StreamOptions, Usage,
};
use tandem_core::{
    ChatEvent, ChatModel, ChatOutput, ChatStream, Completion, Location, ModelError, Pricing,
    Report, Stage,
};
use tracing::Instrument;

use crate::error::RemoteError;
use crate::options::RemoteOptions;
use crate::retry;
use crate::sse::SseDecoder;

/// Upstream text quoted in error messages is cut to this many characters.
const QUOTE_LIMIT: usize = 300;

/// A model served by an OpenAI-compatible API (OpenAI itself, vLLM, llama.cpp's server, another
/// Tandem), reached with `POST {base_url}/chat/completions`.
///
/// Requests are forwarded as they are, with `model` replaced by the upstream's id. Failures before
/// the response starts are retried as [`RemoteOptions`] says; once a stream has passed on its first
/// byte nothing is retried, so a caller never sees text twice.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tandem_core::openai::{ChatCompletionRequest, Message, Role};
/// use tandem_core::ChatModel;
/// use tandem_remote::{RemoteModel, RemoteOptions};
///
/// let mut options = RemoteOptions::new("big", "https://api.openai.com/v1", "gpt-4o-mini");
/// options.api_key_env = Some("OPENAI_API_KEY".into());
/// let model = RemoteModel::new(options)?;
/// let request = ChatCompletionRequest {
///     model: "big".into(),
///     messages: vec![Message::new(Role::User, "Say hi")],
///     ..Default::default()
/// };
/// let output = model.complete(request).await?;
/// println!("{} ({} tokens)", output.text, output.usage.total_tokens);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RemoteModel {
    options: RemoteOptions,
    url: String,
    authorization: Option<HeaderValue>,
    client: reqwest::Client,
}

impl RemoteModel {
    /// Checks the options, reads the API key from its environment variable and builds the HTTP
    /// client. Connects to nothing: an upstream that is down fails the first request, not this.
    pub fn new(options: RemoteOptions) -> Result<Self, RemoteError> {
        let url = chat_url(&options)?;
        let authorization = match &options.api_key_env {
            Some(var) => Some(authorization(&options.name, var)?),
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .build()
            .map_err(|source| RemoteError::Client {
                upstream: options.name.clone(),
                source,
            })?;
        Ok(RemoteModel {
            options,
            url,
            authorization,
            client,
        })
    }

    pub fn options(&self) -> &RemoteOptions {
        &self.options
    }

    /// The endpoint requests go to: `{base_url}/chat/completions`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request as the upstream gets it.
    fn upstream_body(
        &self,
        mut request: ChatCompletionRequest,
        stream: bool,
    ) -> ChatCompletionRequest {
        request.model = self.options.model.clone();
        request.stream = stream;
        // Without `include_usage` OpenAI streams carry no token counts; and OpenAI rejects
        // `stream_options` on a request that does not stream.
        request.stream_options = stream.then_some(StreamOptions {
            include_usage: true,
        });
        request
    }

    /// Sends `body`, retrying connection failures, 429 and 5xx, and returns the first successful
    /// response with its body still unread.
    async fn send(&self, body: &ChatCompletionRequest) -> Result<Response, ModelError> {
        self.send_to(&self.url, body).await
    }

    /// [`RemoteModel::send`] to another of the upstream's endpoints.
    async fn send_to(
        &self,
        url: &str,
        body: &impl serde::Serialize,
    ) -> Result<Response, ModelError> {
        let attempts = self.options.max_retries.saturating_add(1);
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(url, body).await {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            if !failure.retryable || attempt >= attempts {
                return Err(failure.give_up(attempt));
            }
            let wait = failure
                .retry_after
                .unwrap_or_else(|| retry::backoff(self.options.initial_backoff, attempt - 1));
            tracing::warn!(
                upstream = %self.options.name,
                attempt,
                attempts,
                wait_ms = wait.as_millis() as u64,
                error = %failure.error,
                "retrying the upstream"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, url: &str, body: &impl serde::Serialize) -> Result<Response, Failure> {
        let mut request = self.client.post(url).json(body);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        // Counted from the start, connecting included, as reqwest's own read timeout is: connecting
        // takes milliseconds or fails, so nearly all of this wait is the upstream's.
        let response = match tokio::time::timeout(self.options.read_timeout, request.send()).await {
            Err(_) => return Err(Failure::fatal(self.timeout())),
            Ok(Err(error)) => return Err(self.transport_failure(&error)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retryable = retry::is_retryable(status);
        let retry_after = retry::retry_after(response.headers()).filter(|_| retryable);
        let message = self.error_message(status, response).await;
        Err(Failure {
            error: self.upstream_error(Some(status.as_u16()), message),
            retryable,
            retry_after,
        })
    }

    fn transport_failure(&self, error: &reqwest::Error) -> Failure {
        if error.is_connect() {
            return Failure {
                error: self.upstream_error(
                    None,
                    format!("could not connect to {}: {}", self.url, chain(error)),
                ),
                retryable: true,
                retry_after: None,
            };
        }
        if error.is_timeout() {
            return Failure::fatal(self.timeout());
        }
        Failure::fatal(self.upstream_error(
            None,
            format!("request to {} failed: {}", self.url, chain(error)),
        ))
    }

    /// The upstream's own words for an error response: the OpenAI error body's message when there
    /// is one, else the start of the body, else the status's name.
    async fn error_message(&self, status: StatusCode, response: Response) -> String {
        let body = match tokio::time::timeout(self.options.read_timeout, response.bytes()).await {
            Ok(Ok(body)) => body,
            _ => Bytes::new(),
        };
        if let Ok(body) = serde_json::from_slice::<ErrorBody>(&body) {
            return body.error.message;
        }
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
            let message = value
                .pointer("/error/message")
                .or_else(|| value.get("error"))
                .or_else(|| value.get("message"))
                .or_else(|| value.get("detail"))
                .and_then(serde_json::Value::as_str);
            if let Some(message) = message {
                return message.to_string();
            }
        }
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_string()
        } else {
            quote(text)
        }
    }

    fn upstream_error(&self, status: Option<u16>, message: String) -> ModelError {
        ModelError::Upstream {
            upstream: self.options.name.clone(),
            status,
            message,
        }
    }

    fn timeout(&self) -> ModelError {
        ModelError::Timeout {
            upstream: self.options.name.clone(),
            after: self.options.read_timeout,
        }
    }

    fn span(&self, stream: bool) -> tracing::Span {
        tracing::info_span!(
            "remote",
            upstream = %self.options.name,
            model = %self.options.model,
            stream
        )
    }
}

/// A `ChatModel` answers with one choice; the server turns `n` into `n` requests.
fn one_choice(request: &ChatCompletionRequest) -> Result<(), ModelError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(ModelError::invalid(
            "n",
            "a remote model answers one choice per request; the server sends `n` requests for `n` choices",
        ));
    }
    Ok(())
}

#[async_trait]
impl ChatModel for RemoteModel {
    fn name(&self) -> &str {
        &self.options.name
    }

    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
        let started = Instant::now();
        one_choice(&request)?;
        let body = self.upstream_body(request, true);
        let span = self.span(true);
        let response = self.send(&body).instrument(span.clone()).await?;
        let state = StreamState {
            upstream: self.options.name.clone(),
            pricing: self.options.pricing,
            read_timeout: self.options.read_timeout,
            started,
            first_text: None,
            body: response.bytes_stream().boxed(),
            decoder: SseDecoder::default(),
            ready: VecDeque::new(),
            finish_reason: None,
            usage: None,
            ended: None,
            over: false,
            span,
        };
        Ok(futures::stream::unfold(state, |mut state| async move {
            let event = state.next_event().await?;
            Some((event, state))
        })
        .boxed())
    }

    async fn complete(&self, request: ChatCompletionRequest) -> Result<ChatOutput, ModelError> {
        let started = Instant::now();
        one_choice(&request)?;
        let wants_logprobs = request.logprobs.unwrap_or(false);
        let body = self.upstream_body(request, false);
        async {
            let response = self.send(&body).await?;
            let status = response.status().as_u16();
            let bytes = tokio::time::timeout(self.options.read_timeout, response.bytes())
                .await
                .map_err(|_| self.timeout())?
                .map_err(|e| {
                    self.upstream_error(
                        Some(status),
                        format!("the response body was cut off: {}", chain(&e)),
                    )
                })?;
            let completion: ChatCompletion = serde_json::from_slice(&bytes).map_err(|e| {
                self.upstream_error(
                    Some(status),
                    format!(
                        "malformed chat completion ({e}): `{}`",
                        quote(&String::from_utf8_lossy(&bytes))
                    ),
                )
            })?;
            let usage = completion.usage;
            let Some(choice) = completion.choices.into_iter().next() else {
                return Err(
                    self.upstream_error(Some(status), "the chat completion has no choices".into())
                );
            };
            let latency = started.elapsed();
            tracing::debug!(
                latency_ms = latency.as_secs_f64() * 1e3,
                prompt_tokens = usage.prompt_tokens,
                completion_tokens = usage.completion_tokens,
                "upstream answered"
            );
            Ok(ChatOutput {
                text: choice.message.content.unwrap_or_default(),
                tool_calls: choice.message.tool_calls.unwrap_or_default(),
                logprobs: wants_logprobs
                    .then(|| choice.logprobs.map(|l| l.content).unwrap_or_default()),
                finish_reason: choice.finish_reason,
                usage,
                report: report(
                    &self.options.name,
                    self.options.pricing,
                    usage,
                    latency,
                    None,
                ),
            })
        }
        .instrument(self.span(false))
        .await
    }

    /// Passes the prompt to the upstream's `/completions` and answers its whole text as one
    /// delta: the upstream is asked without streaming, so a streamed answer from Tandem arrives
    /// in one chunk.
    async fn stream_text(&self, request: CompletionRequest) -> Result<ChatStream, ModelError> {
        let started = Instant::now();
        validate_completion(&request)?;
        request.single_prompt()?;
        let body = CompletionRequest {
            model: self.options.model.clone(),
            stream: false,
            stream_options: None,
            n: None,
            ..request
        };
        let url = completions_url(&self.url);
        let output = async {
            let response = self.send_to(&url, &body).await?;
            let status = response.status().as_u16();
            let bytes = tokio::time::timeout(self.options.read_timeout, response.bytes())
                .await
                .map_err(|_| self.timeout())?
                .map_err(|e| {
                    self.upstream_error(
                        Some(status),
                        format!("the response body was cut off: {}", chain(&e)),
                    )
                })?;
            let completion: TextCompletion = serde_json::from_slice(&bytes).map_err(|e| {
                self.upstream_error(
                    Some(status),
                    format!(
                        "malformed text completion ({e}): `{}`",
                        quote(&String::from_utf8_lossy(&bytes))
                    ),
                )
            })?;
            let usage = completion.usage.unwrap_or_default();
            let Some(choice) = completion.choices.into_iter().next() else {
                return Err(
                    self.upstream_error(Some(status), "the text completion has no choices".into())
                );
            };
            let latency = started.elapsed();
            let events = vec![
                Ok(ChatEvent::Delta {
                    text: choice.text,
                    logprobs: choice.logprobs.map(|l| l.to_tokens()).unwrap_or_default(),
                }),
                Ok(ChatEvent::Done(Completion {
                    finish_reason: choice.finish_reason.unwrap_or(FinishReason::Stop),
                    usage,
                    report: report(
                        &self.options.name,
                        self.options.pricing,
                        usage,
                        latency,
                        None,
                    ),
                })),
            ];
            Ok(events)
        }
        .instrument(self.span(false))
        .await?;
        Ok(futures::stream::iter(output).boxed())
    }
}

/// The upstream's text-completions endpoint, beside its chat one.
fn completions_url(chat_url: &str) -> String {
    let base = chat_url
        .strip_suffix("/chat/completions")
        .unwrap_or(chat_url);
    format!("{base}/completions")
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    error: ModelError,
    retryable: bool,
    /// What the upstream asked us to wait, when it did.
    retry_after: Option<Duration>,
}

impl Failure {
    fn fatal(error: ModelError) -> Self {
        Failure {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    /// The error to return after `attempts` attempts, saying how many there were.
    fn give_up(self, attempts: u32) -> ModelError {
        match self.error {
            ModelError::Upstream {
                upstream,
                status,
                message,
            } if attempts > 1 => ModelError::Upstream {
                upstream,
                status,
                message: format!("{message} (gave up after {attempts} attempts)"),
            },
            error => error,
        }
    }
}

/// A streamed response being turned into [`ChatEvent`]s.
struct StreamState {
    upstream: String,
    pricing: Pricing,
    read_timeout: Duration,
    started: Instant,
    first_text: Option<Duration>,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    decoder: SseDecoder,
    /// Events decoded but not yet handed out.
    ready: VecDeque<ChatEvent>,
    finish_reason: Option<FinishReason>,
    /// From the final usage chunk, which upstreams send only when asked (`include_usage`).
    usage: Option<Usage>,
    /// Why the bytes ended, once they have; what is still buffered is decoded first.
    ended: Option<String>,
    /// Nothing more will be read: `[DONE]` came, or the stream failed.
    over: bool,
    span: tracing::Span,
}

impl StreamState {
    async fn next_event(&mut self) -> Option<Result<ChatEvent, ModelError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.over {
                return None;
            }
            // One event at a time, so that the deltas before a bad event are handed out before
            // its error.
            match self.decoder.next_event() {
                Ok(Some(data)) => {
                    if let Err(error) = self.on_data(&data) {
                        return Some(Err(self.fail(error)));
                    }
                    continue;
                }
                Ok(None) => {}
                Err(reason) => {
                    let error = self.upstream_error(format!("malformed event stream: {reason}"));
                    return Some(Err(self.fail(error)));
                }
            }
            if let Some(reason) = self.ended.take() {
                // Everything received has been decoded: the stream is complete if the upstream
                // had said why it finished, and cut off otherwise.
                if let Some(finish_reason) = self.finish_reason {
                    tracing::debug!(
                        parent: &self.span,
                        reason,
                        "the stream ended without [DONE] after its finish reason"
                    );
                    self.finish(finish_reason);
                    continue;
                }
                let error = self.upstream_error(format!(
                    "stream ended before completion: {reason} before a finish reason or [DONE]"
                ));
                return Some(Err(self.fail(error)));
            }
            match tokio::time::timeout(self.read_timeout, self.body.next()).await {
                Err(_) => {
                    let error = ModelError::Timeout {
                        upstream: self.upstream.clone(),
                        after: self.read_timeout,
                    };
                    return Some(Err(self.fail(error)));
                }
                Ok(Some(Ok(bytes))) => self.decoder.push(&bytes),
                Ok(None) => {
                    self.decoder.end();
                    self.ended = Some("the upstream closed the connection".into());
                }
                Ok(Some(Err(error))) => {
                    self.decoder.end();
                    self.ended = Some(format!("reading the response failed ({})", chain(&error)));
                }
            }
        }
    }

    /// Handles the data of one event.
    fn on_data(&mut self, data: &str) -> Result<(), ModelError> {
        if data.trim() == "[DONE]" {
            // An upstream that says it is done without saying why has stopped by itself.
            self.finish(self.finish_reason.unwrap_or(FinishReason::Stop));
            return Ok(());
        }
        let chunk: ChatCompletionChunk = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(error) => return Err(self.bad_data(data, error)),
        };
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        // Tandem never asks for n > 1, so the first choice is the only one.
        let Some(choice) = chunk.choices.into_iter().find(|c| c.index == 0) else {
            return Ok(());
        };
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(reason);
        }
        let text = choice.delta.content.unwrap_or_default();
        let logprobs = choice.logprobs.map(|l| l.content).unwrap_or_default();
        for call in choice.delta.tool_calls.into_iter().flatten() {
            self.ready.push_back(ChatEvent::ToolCall(call));
        }
        if text.is_empty() && logprobs.is_empty() {
            return Ok(());
        }
        if !text.is_empty() && self.first_text.is_none() {
            self.first_text = Some(self.started.elapsed());
        }
        self.ready.push_back(ChatEvent::Delta { text, logprobs });
        Ok(())
    }

    /// The error for data that is not a chunk: the upstream's own error event when it is one.
    fn bad_data(&self, data: &str, error: serde_json::Error) -> ModelError {
        if let Ok(body) = serde_json::from_str::<ErrorBody>(data) {
            return self
                .upstream_error(format!("error in the event stream: {}", body.error.message));
        }
        let what = if serde_json::from_str::<serde_json::Value>(data).is_ok() {
            "malformed chunk in the event stream, JSON but not a chat completion chunk"
        } else {
            "malformed data in the event stream, not JSON"
        };
        self.upstream_error(format!("{what} ({error}): `{}`", quote(data)))
    }

    /// Queues the final event. Its usage is zero when the upstream sent none: the count is then
    /// unknown, and zero keeps the cost of an unmetered upstream at zero rather than invented.
    fn finish(&mut self, finish_reason: FinishReason) {
        self.over = true;
        let usage = self.usage.unwrap_or_default();
        let latency = self.started.elapsed();
        let report = report(
            &self.upstream,
            self.pricing,
            usage,
            latency,
            self.first_text,
        );
        tracing::debug!(
            parent: &self.span,
            latency_ms = report.latency_ms,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            usage_reported = self.usage.is_some(),
            "upstream stream finished"
        );
        self.ready.push_back(ChatEvent::Done(Completion {
            finish_reason,
            usage,
            report,
        }));
    }

    /// Ends the stream with `error`, logged in the request's span.
    fn fail(&mut self, error: ModelError) -> ModelError {
        self.over = true;
        tracing::warn!(parent: &self.span, %error, "upstream stream failed");
        error
    }

    fn upstream_error(&self, message: String) -> ModelError {
        ModelError::Upstream {
            upstream: self.upstream.clone(),
            status: None,
            message,
        }
    }
}

/// The report of one call: a single remote stage.
fn report(
    name: &str,
    pricing: Pricing,
    usage: Usage,
    latency: Duration,
    time_to_first_token: Option<Duration>,
) -> Report {
    Report::single(Stage {
        model: name.to_string(),
        location: Location::Remote,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        latency_ms: latency.as_secs_f64() * 1e3,
        time_to_first_token_ms: time_to_first_token.map(|t| t.as_secs_f64() * 1e3),
        cost_usd: pricing.cost(usage),
        cached_prompt_tokens: None,
    })
}

fn chat_url(options: &RemoteOptions) -> Result<String, RemoteError> {
    let invalid = |reason: String| RemoteError::InvalidBaseUrl {
        upstream: options.name.clone(),
        url: options.base_url.clone(),
        reason,
    };
    // `host:port/v1` would otherwise parse with `host` as its scheme.
    if !options.base_url.contains("://") {
        return Err(invalid(format!(
            "has no scheme; write http://{} or https://{}",
            options.base_url, options.base_url
        )));
    }
    let parsed = reqwest::Url::parse(&options.base_url)
        .map_err(|e| invalid(format!("is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "has scheme `{}`; use http or https",
            parsed.scheme()
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(
            "has a query or fragment; give the API root, such as http://host:8080/v1".into(),
        ));
    }
    Ok(format!(
        "{}/chat/completions",
        options.base_url.trim_end_matches('/')
    ))
}

fn authorization(upstream: &str, var: &str) -> Result<HeaderValue, RemoteError> {
    let key = match std::env::var(var) {
        Ok(key) => key,
        Err(std::env::VarError::NotPresent) => {
            return Err(RemoteError::MissingApiKey {
                upstream: upstream.to_string(),
                var: var.to_string(),
            })
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(RemoteError::InvalidApiKey {
                upstream: upstream.to_string(),
                var: var.to_string(),
                reason: "is not valid Unicode".into(),
            })
        }
    };
    // Keys pasted from files often carry a newline, which no key contains.
    let key = key.trim();
    if key.is_empty() {
        return Err(RemoteError::MissingApiKey {
            upstream: upstream.to_string(),
            var: var.to_string(),
        });
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
        RemoteError::InvalidApiKey {
            upstream: upstream.to_string(),
            var: var.to_string(),
            reason: "contains characters an HTTP header cannot carry".into(),
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// An error with its causes, which is where reqwest says what actually happened.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `text`, cut to [`QUOTE_LIMIT`] characters.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chat_path_is_joined_to_the_base_url() {
        for base in ["http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/"] {
            let model = RemoteModel::new(RemoteOptions::new("big", base, "m")).expect("valid");
            assert_eq!(model.url(), "http://127.0.0.1:8080/v1/chat/completions");
        }
    }

    #[test]
    fn bad_base_urls_are_refused_with_the_reason() {
        for (base, reason) in [
            (
                "127.0.0.1:8080/v1",
                "no scheme; write http://127.0.0.1:8080/v1",
            ),
            ("http://", "not a URL"),
            ("localhost:8080/v1", "no scheme"),
            ("ftp://host/v1", "scheme `ftp`"),
            ("http://host/v1?x=1", "query"),
        ] {
            let error = RemoteModel::new(RemoteOptions::new("big", base, "m"))
                .expect_err("invalid base_url");
            let text = error.to_string();
            assert!(
                matches!(error, RemoteError::InvalidBaseUrl { .. }),
                "{text}"
            );
            assert!(text.contains("`big`") && text.contains(reason), "{text}");
        }
    }

    #[test]
    fn the_upstream_body_names_the_upstream_model_and_streams_only_when_asked() {
        let model =
            RemoteModel::new(RemoteOptions::new("big", "http://h/v1", "upstream-id")).expect("ok");
        let request = ChatCompletionRequest {
            model: "big".into(),
            stream: true,
            stream_options: Some(StreamOptions {
                include_usage: false,
            }),
            ..Default::default()
        };
        let plain = model.upstream_body(request.clone(), false);
        assert_eq!(plain.model, "upstream-id");
        assert!(!plain.stream);
        assert_eq!(plain.stream_options, None);
        let streamed = model.upstream_body(request, true);
        assert!(streamed.stream);
        assert_eq!(
            streamed.stream_options,
            Some(StreamOptions {
                include_usage: true
            })
        );
    }

    #[test]
    fn quotes_are_cut_on_a_character_boundary() {
        let long = "é".repeat(QUOTE_LIMIT + 5);
        let quoted = quote(&long);
        assert_eq!(quoted.chars().count(), QUOTE_LIMIT + 1);
        assert!(quoted.ends_with('…'));
        assert_eq!(quote("short"), "short");
    }
}
