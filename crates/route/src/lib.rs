//! Query-level collaboration: send each query to the cheapest model that answers it well.
//!
//! - [`cascade`]: the small model answers first; a confidence [`Signal`] computed from its answer
//!   decides whether the answer stands or the large model is asked instead.
//! - [`signal`]: the cascade's confidence signals, each a score in [0, 1].
//! - [`calibrate`]: a cascade's threshold from its small side's scores on a sample of traffic.
//! - [`router`]: a score from the prompt alone picks one model before any runs.
//! - [`learn`]: the routers learned from stored outcomes (nearest neighbours, logistic regression).
//! - [`cache`]: a semantic cache in the state store: exact and similarity hits, per pipeline and
//!   API key, guarded by the question's salient [`literals`]; [`cache_eval`]: its wrong-hit rate.
//! - [`quality`]: how well a score routes, on held-out items (APGR, CPT), and the router's and
//!   the cascade's thresholds for a target share of large-model calls.

pub mod cache;
pub mod cache_eval;
pub mod calibrate;
pub mod cascade;
pub mod learn;
pub mod literals;
pub mod quality;
pub mod router;
pub mod signal;

pub use cache::{CacheOptions, SemanticCache};
pub use cascade::{AnswerScorer, Cascade, CascadeOptions, ScoreOptions};
pub use learn::{Example, LearnedRouter, Learner};
pub use router::{LearnedScorer, PerplexityScorer, PromptScorer, Router, RouterOptions};
pub use signal::{ExampleCheck, ExamplesPassed, Signal};
