//! Tandem's client for OpenAI-compatible chat APIs: [`RemoteModel`] puts any server that speaks
//! `POST /v1/chat/completions` (OpenAI, vLLM, llama.cpp's server, another Tandem) behind
//! [`tandem_core::ChatModel`], so a pipeline can use a remote model wherever it uses a local one.
//!
//! This crate owns everything about the HTTP hop and nothing above it:
//! - the request as the upstream sees it: the configured upstream model id, `stream` and
//!   `stream_options.include_usage` set by the client, a bearer key read from the environment;
//! - server-sent events, decoded from raw bytes into [`tandem_core::ChatEvent`]s;
//! - faults: connection failures, HTTP 429 and 5xx are retried with exponential backoff (honouring
//!   `Retry-After`) before any text has been passed on, never after; timeouts, cut streams,
//!   malformed data and upstream error bodies become [`tandem_core::ModelError`]s that name the
//!   upstream and say what went wrong;
//! - the report stage of each call: tokens as the upstream counted them, latency, time to first
//!   token and cost from the configured [`tandem_core::Pricing`].
//!
//! [`RemoteOptions`] holds the configuration of one upstream; [`RemoteError`] is what building a
//! [`RemoteModel`] from bad options returns.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::StreamExt;
//! use tandem_core::openai::{ChatCompletionRequest, Message, Role};
//! use tandem_core::{ChatEvent, ChatModel};
//! use tandem_remote::{RemoteModel, RemoteOptions};
//!
//! let model = RemoteModel::new(RemoteOptions::new("big", "http://127.0.0.1:8080/v1", "qwen"))?;
//! let request = ChatCompletionRequest {
//!     model: "big".into(),
//!     messages: vec![Message::new(Role::User, "Count to three")],
//!     ..Default::default()
//! };
//! let mut events = model.stream(request).await?;
//! while let Some(event) = events.next().await {
//!     match event? {
//!         ChatEvent::Delta { text, .. } => print!("{text}"),
//!         ChatEvent::ToolCall(call) => print!("{}", call.function.arguments.unwrap_or_default()),
//!         ChatEvent::Done(done) => println!("\n[{} tokens]", done.usage.total_tokens),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod client;
mod error;
mod options;
mod retry;
mod sse;

pub use client::RemoteModel;
pub use error::RemoteError;
pub use options::RemoteOptions;
