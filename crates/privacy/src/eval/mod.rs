//! Measuring detection: a labelled set of sentences generated with a fixed seed ([`labelled`]),
//! and precision and recall per kind for any detector's findings on it ([`score`]).
//!
//! The set joins two sources: the templates, fake identities and organisation names that
//! Microsoft's `presidio-evaluator` package ships (read from its wheel by the caller, see
//! [`labelled::PresidioData`]), and Tandem's own templates for what Presidio's set lacks: keys and
//! secrets, credential URLs, street addresses in several countries' formats, tool messages, and
//! sentences that hold no private data but look as if they might (hashes, versions, ids).

pub mod labelled;
pub mod score;
