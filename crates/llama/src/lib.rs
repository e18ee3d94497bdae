//! Tandem's local inference engine over llama.cpp (through the `llama-cpp-2` crate).
//!
//! - [`LoadedModel`]: a GGUF file in memory with its chat template and vocabulary.
//! - [`LlamaEngine`]: serves a model as a [`tandem_core::ChatModel`] with continuous batching, so
//!   concurrent requests are decoded together.
//! - [`LlamaSession`]: one sequence with its own context, as a [`tandem_core::TokenModel`]: batch
//!   evaluation with logits of chosen positions and cache roll-back, for token-level strategies.
//!
//! ```no_run
//! use std::path::Path;
//! use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
//!
//! let model = LoadedModel::load(Path::new("SmolLM2-135M-Instruct.Q4_1.gguf"), None, 0)?;
//! let engine = LlamaEngine::start(model, EngineOptions::new("smollm2"))?;
//! # Ok::<(), tandem_core::ModelError>(())
//! ```

mod chat;
mod engine;
mod grammar;
mod jinja;
mod model;
mod output;
mod session;

pub use engine::{EngineLoad, EngineOptions, LlamaEngine};
pub use model::LoadedModel;
pub use session::{LlamaSession, SessionOptions};
