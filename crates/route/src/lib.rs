//! Query-level collaboration: send each query to the cheapest model that answers it well.
//!
//! - [`cascade`]: the small model answers first; a confidence [`Signal`] computed from its answer
//!   decides whether the answer stands or the large model is asked instead.
//! - [`signal`]: the confidence signals, each a score in [0, 1] (higher: more confident).

pub mod cascade;
pub mod signal;

pub use cascade::{Cascade, CascadeOptions};
pub use signal::Signal;
