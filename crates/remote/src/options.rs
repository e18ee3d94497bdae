//! What the configuration says about one remote model.

use std::time::Duration;

use tandem_core::Pricing;

/// How to reach one OpenAI-compatible upstream and what its tokens cost.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteOptions {
    /// The model's name in Tandem's configuration: the name reports and errors use.
    pub name: String,
    /// The API root, `/chat/completions` is appended: for example `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The upstream's model id, sent as `model` in every request body.
    pub model: String,
    /// The environment variable holding the bearer key, read once by [`crate::RemoteModel::new`].
    /// `None` sends no `Authorization` header.
    pub api_key_env: Option<String>,
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest silence from the upstream: from sending the request (connecting included) to the
    /// response headers, and between two reads of a streamed body. A non-streamed body must then
    /// arrive whole within it. Timeouts are not retried: a slow upstream would be slow again.
    pub read_timeout: Duration,
    /// Retries after the first attempt, on connection failures, HTTP 429 and HTTP 5xx.
    pub max_retries: u32,
    /// Wait before the first retry; each further retry waits twice as long (with jitter), unless
    /// the upstream sends `Retry-After`.
    pub initial_backoff: Duration,
    pub pricing: Pricing,
}

impl RemoteOptions {
    /// Options with the defaults: no API key, 10 s to connect, 120 s of silence, 3 retries from
    /// 250 ms, free tokens.
    ///
    /// ```
    /// let options = tandem_remote::RemoteOptions::new("big", "http://127.0.0.1:8080/v1", "qwen2.5-7b");
    /// assert_eq!(options.max_retries, 3);
    /// ```
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        RemoteOptions {
            name: name.into(),
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            pricing: Pricing::default(),
        }
    }
}
