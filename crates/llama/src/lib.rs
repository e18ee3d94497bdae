//! Tandem's local inference engine over llama.cpp (through the `llama-cpp-2` crate).
//!
//! - [`LoadedModel`]: a GGUF file in memory with its chat template and vocabulary.
//! - [`LlamaEngine`]: serves a model as a [`tandem_core::ChatModel`] with continuous batching, so
//!   concurrent requests are decoded together.
//! - [`SequenceHandle`]: one sequence of an engine's context lent to a token-level strategy:
//!   evaluation with the logits of chosen positions and cache roll-back, batched by the scheduler
//!   with everything else the engine runs.
//! - [`cpu_kernels`]: which of ggml's CPU kernels this process runs (a `cpu-variants` build picks
//!   the best for the CPU at start-up).
//! - [`speculative::Speculative`]: speculative decoding (a draft model, prompt lookup, a suffix
//!   cache) as a [`tandem_core::ChatModel`] over sequence handles.
//! - [`fusion::Fusion`]: a large and a small model deciding tokens together (contrastive
//!   decoding, proxy-tuning, uncertainty hand-off) as a [`tandem_core::ChatModel`] over sequence
//!   handles; the shared pieces of both strategies sit in one private module (`collab`).
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
mod collab;
mod compute;
mod cpu;
mod engine;
pub mod fusion;
mod grammar;
mod jinja;
mod model;
mod output;
mod sequence;
pub mod speculative;

pub use cpu::{CpuKernels, VARIANT_ENV};
pub use engine::{EngineLoad, EngineOptions, LlamaEngine};
pub use model::{cpu_kernels, LoadedModel};
pub use sequence::{Logits, SequenceHandle};
