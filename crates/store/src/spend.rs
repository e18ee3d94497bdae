//! Spending per API key and pipeline: what the server's budgets read and add to.

use serde::{Deserialize, Serialize};

/// What one response cost, added to its key's and pipeline's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    /// What routers and cascades saved against always calling their large model (negative when an
    /// escalation cost more than the large model alone would have).
    pub saved_usd: f64,
}

/// The totals of one API key (its tenant id) on one pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendTotals {
    pub tenant: String,
    pub pipeline: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub saved_usd: f64,
    /// Unix time in milliseconds of the last response counted.
    pub updated_ms: i64,
}
