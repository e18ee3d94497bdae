//! Trustworthiness stages for Tandem: a small local model guards what goes into a model and what
//! comes out of it.
//!
//! - [`Guard`] (`guard`): a `ChatModel` wrapping another; judges the request before it is
//!   answered and the answer (streamed or not) before it is released, and ends blocked ones with
//!   `finish_reason: "content_filter"`.
//! - [`Judge`] (`judge`) and [`Policy`] (`policy`): the one-token questions asked of the guard
//!   model and the hazard categories they name; [`verdict`] reads scores from token
//!   probabilities, never from text.
//! - [`TrustModel`] (`classifier`) and [`InputScorer`] (`scorer`): a harm classifier and a
//!   jailbreak classifier (perceptrons with one hidden layer on sentence embeddings, trained on
//!   public prompt sets, [`data`]) and the thresholds at which either blocks a request.
//! - [`perplexity`]: prompt perplexity under the small model, whole and in windows, a jailbreak
//!   signal that needs no extra model.
//! - [`Verify`] (`verify`): a `ChatModel` wrapping another whose answers a small model checks claim
//!   by claim against the request's context, reporting a confidence and abstaining below a
//!   threshold.
//! - [`grounding`]: the words of a claim its context does not hold, and the fitted combination of
//!   those with the verifier's probability.
//! - [`calibration`]: Platt scaling, isotonic regression and the expected calibration error.

pub mod calibration;
pub mod classifier;
pub mod data;
mod error;
pub mod grounding;
pub mod guard;
pub mod judge;
pub mod perplexity;
pub mod policy;
pub mod scorer;
pub mod verdict;
pub mod verify;

pub use classifier::TrustModel;
pub use error::TrustError;
pub use guard::{Guard, GuardOptions};
pub use judge::Judge;
pub use policy::{Category, Policy, Side};
pub use scorer::InputScorer;
pub use verify::{Verify, VerifyOptions};
