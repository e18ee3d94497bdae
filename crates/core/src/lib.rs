//! Tandem's core: the types and traits every other crate speaks, with no I/O.
//!
//! - [`openai`]: the chat-completions wire format, byte-compatible with OpenAI's API.
//! - [`model`]: [`ChatModel`], implemented by engines, clients and strategies.
//! - [`report`]: the per-response report served as the `tandem` object.
//! - [`sampling`], [`text`]: logits to tokens, tokens to text (UTF-8 safe, stop sequences).
//! - [`validate`]: request checks that name the bad parameter.
//! - [`error`]: [`ModelError`], the one failure type of every model.

pub mod error;
pub mod model;
pub mod openai;
pub mod report;
pub mod sampling;
pub mod text;
pub mod validate;

pub use error::ModelError;
pub use model::{collect, ChatEvent, ChatModel, ChatOutput, ChatStream, Completion, TokenId};
pub use report::{Location, Pricing, Report, Stage, StrategyEntry};
