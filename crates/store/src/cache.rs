//! Entries of the semantic cache: an answer, kept per pipeline and API key, found again by the
//! request's exact key or by the similarity of its question.

use serde::{Deserialize, Serialize};

/// One cached answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub pipeline: String,
    /// The API key's tenant id: entries are never read across keys.
    pub tenant: String,
    /// The hash of the whole normalised request: an exact hit.
    pub key: String,
    /// The hash of everything but the question (earlier messages, settings): a similarity hit needs
    /// the same context.
    pub context: String,
    /// The question's salient literals (numbers, quoted strings, names), which a similarity hit must
    /// match exactly.
    pub literals: String,
    /// The question's sentence embedding.
    pub embedding: Vec<f32>,
    /// The answer as the cache serialises it (JSON).
    pub answer: String,
    /// Unix time in milliseconds when it was stored.
    pub created_ms: i64,
}
