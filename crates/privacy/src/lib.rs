//! Cloud-edge privacy: what leaves the machine is controlled.
//!
//! - [`detect`]: private data in text (e-mails, phones, cards, IBANs, national ids, IPs,
//!   credential URLs, keys and secrets, dates of birth, addresses, names), each finding with a
//!   kind, a byte span and a confidence.
//! - [`names`]: a local model judges the capitalised words the rules left (people,
//!   organisations), when a pipeline names one.
//! - [`fields`]: every text field of a request that is sent, so nothing is left unchecked.
//! - [`vault`]: reversible pseudonymisation: one placeholder per distinct value per conversation,
//!   and [`vault::Restorer`], which puts the values back into a streamed answer.
//! - [`surrogate`]: realistic stand-ins (a made-up name, the value's shape with other digits)
//!   that a vault hands out instead of tags when a pipeline asks for them.
//! - [`eval`]: a labelled set generated with a fixed seed, and precision and recall per kind.
//! - [`stage`]: the pipeline stages, each a `ChatModel` wrapping others: [`stage::Redact`],
//!   [`stage::KeepLocal`] and [`stage::Rewrite`], with the egress audit.
//!
//! The mapping from placeholders to values lives in memory for one request and is never logged.

pub mod detect;
pub mod eval;
pub mod fields;

pub mod kind;
pub mod names;
pub mod normalize;
pub mod stage;
pub mod surrogate;
pub mod vault;

pub use detect::{Detector, DetectorConfig, Finding};
pub use kind::Kind;

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("privacy configuration: {0}")]
    Config(String),
    #[error("evaluation data: {0}")]
    Data(String),
}
