//! Tandem's shared state behind one storage trait.
//!
//! State that several replicas of a Tandem server would share lives behind [`Store`]: the egress
//! audit (one record per call that left the machine through a privacy stage), learned routers
//! with their calibrated thresholds, the calibrated thresholds of cascades, what each API key spent
//! on each pipeline (for budgets), and the semantic cache's answers;
//! each is a group of methods on the same trait, so one backend (SQLite here, a networked database
//! later) holds all of it and a deployment configures one place.
//!
//! [`SqliteStore`] keeps everything in one SQLite file; its schema is versioned with SQLite's
//! `user_version`, so parts added later migrate files written by earlier versions.
//!
//! ```
//! use tandem_store::{EgressQuery, EgressRecord, SqliteStore, Store};
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(&dir.path().join("state.sqlite")).unwrap();
//! store.record_egress(&EgressRecord {
//!     at_ms: 1_700_000_000_000,
//!     pipeline: "private".into(),
//!     strategy: "redact".into(),
//!     model: "cloud".into(),
//!     sha256: "00".repeat(32),
//!     bytes: 120,
//!     redacted: [("email".to_string(), 2)].into(),
//! }).unwrap();
//! assert_eq!(store.egress(&EgressQuery::default()).unwrap().len(), 1);
//! ```

mod cache;
mod cascades;
mod egress;
mod routers;
mod spend;
mod sqlite;

use std::ffi::OsString;
use std::path::PathBuf;

pub use cache::CacheEntry;
pub use cascades::StoredCascade;
pub use egress::{EgressQuery, EgressRecord};
pub use routers::StoredRouter;
pub use spend::{Spend, SpendTotals};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store {path}: cannot create its directory: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store {path} has schema version {found}, newer than this Tandem knows ({known}); upgrade Tandem")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
}

/// Shared state. Every method is a short, blocking call; async callers run it on a blocking thread.
pub trait Store: Send + Sync {
    /// Appends one record of data that left the machine.
    fn record_egress(&self, record: &EgressRecord) -> Result<(), StoreError>;
    /// Egress records, oldest first.
    fn egress(&self, query: &EgressQuery) -> Result<Vec<EgressRecord>, StoreError>;
    /// Adds or replaces the router called `router.name`.
    fn save_router(&self, router: &StoredRouter) -> Result<(), StoreError>;
    fn router(&self, name: &str) -> Result<Option<StoredRouter>, StoreError>;
    /// The names of the stored routers.
    fn routers(&self) -> Result<Vec<String>, StoreError>;
    /// Adds or replaces the calibrated threshold of the cascade `cascade.pipeline`.
    fn save_cascade(&self, cascade: &StoredCascade) -> Result<(), StoreError>;
    fn cascade(&self, pipeline: &str) -> Result<Option<StoredCascade>, StoreError>;
    /// Every calibrated cascade, by pipeline name.
    fn cascades(&self) -> Result<Vec<StoredCascade>, StoreError>;
    /// Adds one response's `spend` to the totals of `tenant` (an API key's id) on `pipeline`, in one
    /// statement (replicas adding at once lose nothing); returns the new totals.
    fn add_spend(
        &self,
        tenant: &str,
        pipeline: &str,
        spend: &Spend,
        at_ms: i64,
    ) -> Result<SpendTotals, StoreError>;
    /// What `tenant` has spent on every pipeline together, in US dollars.
    fn spent_usd(&self, tenant: &str) -> Result<f64, StoreError>;
    /// Every key's totals on every pipeline.
    fn spending(&self) -> Result<Vec<SpendTotals>, StoreError>;
    /// Adds `entry` to the semantic cache (replacing one with the same pipeline, tenant and key),
    /// then drops the pipeline's oldest entries beyond `max_entries`.
    fn cache_put(&self, entry: &CacheEntry, max_entries: usize) -> Result<(), StoreError>;
    /// The entry of `pipeline` and `tenant` with exactly `key`, stored at or after `since_ms`.
    fn cache_exact(
        &self,
        pipeline: &str,
        tenant: &str,
        key: &str,
        since_ms: i64,
    ) -> Result<Option<CacheEntry>, StoreError>;
    /// The entries of `pipeline` and `tenant` with `context`, stored at or after `since_ms`: the
    /// candidates of a similarity hit.
    fn cache_candidates(
        &self,
        pipeline: &str,
        tenant: &str,
        context: &str,
        since_ms: i64,
    ) -> Result<Vec<CacheEntry>, StoreError>;
}

/// Where the state store lives unless the configuration says otherwise:
/// `$XDG_DATA_HOME/tandem/state.sqlite`, else `~/.local/share/tandem/state.sqlite`. Unlike models
/// (a cache, see `tandem_fetch::default_cache_dir`), an audit must survive cache cleaning.
pub fn default_path() -> PathBuf {
    path_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn path_from(xdg_data_home: Option<OsString>, home: Option<OsString>) -> PathBuf {
    let set = |value: Option<OsString>| value.filter(|v| !v.is_empty()).map(PathBuf::from);
    let dir = match (set(xdg_data_home), set(home)) {
        (Some(data), _) => data.join("tandem"),
        (None, Some(home)) => home.join(".local").join("share").join("tandem"),
        (None, None) => std::env::temp_dir().join("tandem"),
    };
    dir.join("state.sqlite")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_prefers_xdg_data_home_then_home() {
        assert_eq!(
            path_from(Some("/data".into()), Some("/home/u".into())),
            PathBuf::from("/data/tandem/state.sqlite")
        );
        assert_eq!(
            path_from(Some("".into()), Some("/home/u".into())),
            PathBuf::from("/home/u/.local/share/tandem/state.sqlite")
        );
        assert!(path_from(None, None).starts_with(std::env::temp_dir()));
    }
}
