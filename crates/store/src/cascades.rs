//! Calibrated cascade thresholds: what `tandem router calibrate --cascade` chooses on a sample of
//! traffic, read by cascade pipelines whose configuration sets no `threshold`.

use serde::{Deserialize, Serialize};

/// The threshold calibrated for one cascade pipeline, and what it was calibrated with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCascade {
    /// The cascade pipeline's name in the configuration.
    pub pipeline: String,
    pub threshold: f64,
    /// The small model or pipeline whose answers were scored.
    pub small: String,
    /// The signal and the settings that change its scores (JSON): a pipeline scoring otherwise
    /// must not use the threshold.
    pub scoring: String,
    /// The sample: data set, prompts, the share asked and the share reached, generation settings
    /// (JSON).
    pub provenance: String,
    /// Unix time in milliseconds of the calibration.
    pub updated_ms: i64,
}
