//! Tandem's core: the types and traits every other crate speaks, with no I/O.
//!
//! - [`openai`]: the chat-completions wire format, byte-compatible with OpenAI's API.
//! - [`completions`]: the legacy text-completions format, raw text continued without a template.
//! - [`model`]: [`ChatModel`], implemented by engines, clients and strategies.
//! - [`report`]: the per-response report served as the `tandem` object.
//! - [`sampling`], [`text`]: logits to tokens, tokens to text (UTF-8 safe, stop sequences).
//! - [`validate`]: request checks that name the bad parameter.
//! - [`stats`]: the Wilson interval every measure reports.
//! - [`number`]: numbers as answers write them, in one canonical form.
//! - [`constraint`], [`grammar`]: limits on the next token, and the grammars (from JSON schemas)
//!   that keep structured output and tool calls well-formed.
//! - [`tools`]: tool-call formats of model families, read out of streamed output.
//! - [`error`]: [`ModelError`], the one failure type of every model.

pub mod completions;
pub mod constraint;
pub mod error;
pub mod grammar;
pub mod logprobs;
pub mod model;
pub mod number;
pub mod openai;
pub mod report;
pub mod sampling;
pub mod stats;
pub mod text;
pub mod tools;
pub mod validate;

pub use error::ModelError;
pub use model::{collect, ChatEvent, ChatModel, ChatOutput, ChatStream, Completion, TokenId};
pub use report::{Location, Pricing, Report, Stage, StrategyEntry};
