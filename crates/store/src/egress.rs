//! The egress audit's record: what left the machine, described without its content.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One call to a remote model through a privacy stage. Holds a hash and a size of what was sent and
/// the kinds of private data replaced in it with their counts; never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressRecord {
    /// Unix time in milliseconds.
    pub at_ms: i64,
    pub pipeline: String,
    /// The privacy stage that let the request out (`redact`, `keep_local`, `rewrite`).
    pub strategy: String,
    /// The remote model's name in the configuration.
    pub model: String,
    /// Hex sha256 of the request as handed to the remote model (its JSON).
    pub sha256: String,
    pub bytes: u64,
    /// Kind of private data (`email`, `secret`, ...) to the number of values replaced.
    pub redacted: BTreeMap<String, u32>,
}

/// Which egress records to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressQuery {
    /// Only records at or after this Unix time in milliseconds.
    pub since_ms: Option<i64>,
    pub pipeline: Option<String>,
    /// At most this many, the newest ones.
    pub limit: Option<usize>,
}
