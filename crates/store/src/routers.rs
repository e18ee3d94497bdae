//! Learned routers and their thresholds: what `tandem router train` fits and `tandem router
//! calibrate` tunes, read by router pipelines when they are built.

use serde::{Deserialize, Serialize};

/// One stored router, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRouter {
    pub name: String,
    /// The fitted router, as its own crate serialises it (JSON).
    pub router: String,
    /// How it was trained and what it scored on held-out items (JSON).
    pub provenance: String,
    /// The calibrated threshold, once `tandem router calibrate` has run.
    pub threshold: Option<f64>,
    /// Unix time in milliseconds of the last change.
    pub updated_ms: i64,
}
