//! [`Store`] on one SQLite file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection};

use crate::{
    CacheEntry, EgressQuery, EgressRecord, Spend, SpendTotals, Store, StoreError, StoredCascade,
    StoredRouter,
};

/// Schema migrations, in order; the file's `user_version` counts those applied. A part of the store
/// added later appends its migration here.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE egress (
    id        INTEGER PRIMARY KEY,
    at_ms     INTEGER NOT NULL,
    pipeline  TEXT NOT NULL,
    strategy  TEXT NOT NULL,
    model     TEXT NOT NULL,
    sha256    TEXT NOT NULL,
    bytes     INTEGER NOT NULL,
    redacted  TEXT NOT NULL
);
CREATE INDEX egress_by_time ON egress(at_ms);
",
    "
CREATE TABLE routers (
    name        TEXT PRIMARY KEY,
    router      TEXT NOT NULL,
    provenance  TEXT NOT NULL,
    threshold   REAL,
    updated_ms  INTEGER NOT NULL
);
",
    "
CREATE TABLE spend (
    tenant             TEXT NOT NULL,
    pipeline           TEXT NOT NULL,
    requests           INTEGER NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cost_usd           REAL NOT NULL,
    saved_usd          REAL NOT NULL,
    updated_ms         INTEGER NOT NULL,
    PRIMARY KEY (tenant, pipeline)
);
",
    "
CREATE TABLE cache (
    id          INTEGER PRIMARY KEY,
    pipeline    TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL,
    context     TEXT NOT NULL,
    literals    TEXT NOT NULL,
    embedding   BLOB NOT NULL,
    answer      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    UNIQUE (pipeline, tenant, key)
);
CREATE INDEX cache_by_context ON cache(pipeline, tenant, context, created_ms);
CREATE INDEX cache_by_age ON cache(pipeline, created_ms);
",
    "
CREATE TABLE cascades (
    pipeline    TEXT PRIMARY KEY,
    threshold   REAL NOT NULL,
    small       TEXT NOT NULL,
    scoring     TEXT NOT NULL,
    provenance  TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL
);
",
];

pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and its directory, and migrating its schema.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sqlite)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sqlite)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                known,
            });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(sqlite)?;
            tx.execute_batch(migration).map_err(sqlite)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)
                .map_err(sqlite)?;
            tx.commit().map_err(sqlite)?;
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }
}

impl Store for SqliteStore {
    fn record_egress(&self, record: &EgressRecord) -> Result<(), StoreError> {
        let redacted = serde_json::to_string(&record.redacted).expect("a map of counts serialises");
        self.with(|c| {
            c.execute(
                "INSERT INTO egress (at_ms, pipeline, strategy, model, sha256, bytes, redacted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    record.at_ms,
                    record.pipeline,
                    record.strategy,
                    record.model,
                    record.sha256,
                    record.bytes as i64,
                    redacted
                ],
            )
            .map(drop)
        })
    }

    fn egress(&self, query: &EgressQuery) -> Result<Vec<EgressRecord>, StoreError> {
        let limit = query.limit.map_or(-1, |n| n as i64);
        let mut records = self.with(|c| {
            let mut statement = c.prepare(
                "SELECT at_ms, pipeline, strategy, model, sha256, bytes, redacted FROM egress
                 WHERE at_ms >= ?1 AND (?2 IS NULL OR pipeline = ?2)
                 ORDER BY at_ms DESC, id DESC LIMIT ?3",
            )?;
            let rows = statement.query_map(
                params![query.since_ms.unwrap_or(i64::MIN), query.pipeline, limit],
                |row| {
                    let redacted: String = row.get(6)?;
                    Ok(EgressRecord {
                        at_ms: row.get(0)?,
                        pipeline: row.get(1)?,
                        strategy: row.get(2)?,
                        model: row.get(3)?,
                        sha256: row.get(4)?,
                        bytes: row.get::<_, i64>(5)? as u64,
                        redacted: serde_json::from_str(&redacted).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                6,
                                rusqlite::types::Type::Text,
                                Box::new(e),
                            )
                        })?,
                    })
                },
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        records.reverse();
        Ok(records)
    }

    fn save_router(&self, router: &StoredRouter) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO routers (name, router, provenance, threshold, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET router = ?2, provenance = ?3, threshold = ?4,
                     updated_ms = ?5",
                params![
                    router.name,
                    router.router,
                    router.provenance,
                    router.threshold,
                    router.updated_ms
                ],
            )
            .map(drop)
        })
    }

    fn router(&self, name: &str) -> Result<Option<StoredRouter>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT name, router, provenance, threshold, updated_ms FROM routers WHERE name = ?1",
            )?;
            let mut rows = statement.query_map(params![name], |row| {
                Ok(StoredRouter {
                    name: row.get(0)?,
                    router: row.get(1)?,
                    provenance: row.get(2)?,
                    threshold: row.get(3)?,
                    updated_ms: row.get(4)?,
                })
            })?;
            rows.next().transpose()
        })
    }

    fn routers(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT name FROM routers ORDER BY name")?;
            let names = statement.query_map([], |row| row.get(0))?;
            names.collect()
        })
    }

    fn save_cascade(&self, cascade: &StoredCascade) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO cascades (pipeline, threshold, small, scoring, provenance, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(pipeline) DO UPDATE SET threshold = ?2, small = ?3, scoring = ?4,
                     provenance = ?5, updated_ms = ?6",
                params![
                    cascade.pipeline,
                    cascade.threshold,
                    cascade.small,
                    cascade.scoring,
                    cascade.provenance,
                    cascade.updated_ms
                ],
            )
            .map(drop)
        })
    }

    fn cascade(&self, pipeline: &str) -> Result<Option<StoredCascade>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {CASCADE_COLUMNS} FROM cascades WHERE pipeline = ?1"
            ))?;
            let mut rows = statement.query_map(params![pipeline], stored_cascade)?;
            rows.next().transpose()
        })
    }

    fn cascades(&self) -> Result<Vec<StoredCascade>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {CASCADE_COLUMNS} FROM cascades ORDER BY pipeline"
            ))?;
            let rows = statement.query_map([], stored_cascade)?;
            rows.collect()
        })
    }

    fn add_spend(
        &self,
        tenant: &str,
        pipeline: &str,
        spend: &Spend,
        at_ms: i64,
    ) -> Result<SpendTotals, StoreError> {
        self.with(|c| {
            c.query_row(
                "INSERT INTO spend (tenant, pipeline, requests, prompt_tokens, completion_tokens,
                     cost_usd, saved_usd, updated_ms)
                 VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(tenant, pipeline) DO UPDATE SET requests = requests + 1,
                     prompt_tokens = prompt_tokens + ?3,
                     completion_tokens = completion_tokens + ?4,
                     cost_usd = cost_usd + ?5, saved_usd = saved_usd + ?6, updated_ms = ?7
                 RETURNING tenant, pipeline, requests, prompt_tokens, completion_tokens, cost_usd,
                     saved_usd, updated_ms",
                params![
                    tenant,
                    pipeline,
                    spend.prompt_tokens as i64,
                    spend.completion_tokens as i64,
                    spend.cost_usd,
                    spend.saved_usd,
                    at_ms
                ],
                spend_totals,
            )
        })
    }

    fn spent_usd(&self, tenant: &str) -> Result<f64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT COALESCE(SUM(cost_usd), 0.0) FROM spend WHERE tenant = ?1",
                params![tenant],
                |row| row.get(0),
            )
        })
    }

    fn cache_put(&self, entry: &CacheEntry, max_entries: usize) -> Result<(), StoreError> {
        let blob: Vec<u8> = entry
            .embedding
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        self.with(|c| {
            c.execute(
                "INSERT INTO cache (pipeline, tenant, key, context, literals, embedding, answer,
                     created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(pipeline, tenant, key) DO UPDATE SET context = ?4, literals = ?5,
                     embedding = ?6, answer = ?7, created_ms = ?8",
                params![
                    entry.pipeline,
                    entry.tenant,
                    entry.key,
                    entry.context,
                    entry.literals,
                    blob,
                    entry.answer,
                    entry.created_ms
                ],
            )?;
            // The oldest entries of the pipeline go first once it holds more than it may.
            c.execute(
                "DELETE FROM cache WHERE pipeline = ?1 AND id NOT IN
                     (SELECT id FROM cache WHERE pipeline = ?1
                      ORDER BY created_ms DESC, id DESC LIMIT ?2)",
                params![entry.pipeline, max_entries as i64],
            )
            .map(drop)
        })
    }

    fn cache_exact(
        &self,
        pipeline: &str,
        tenant: &str,
        key: &str,
        since_ms: i64,
    ) -> Result<Option<CacheEntry>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {CACHE_COLUMNS} FROM cache
                 WHERE pipeline = ?1 AND tenant = ?2 AND key = ?3 AND created_ms >= ?4"
            ))?;
            let mut rows =
                statement.query_map(params![pipeline, tenant, key, since_ms], cache_entry)?;
            rows.next().transpose()
        })
    }

    fn cache_candidates(
        &self,
        pipeline: &str,
        tenant: &str,
        context: &str,
        since_ms: i64,
    ) -> Result<Vec<CacheEntry>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {CACHE_COLUMNS} FROM cache
                 WHERE pipeline = ?1 AND tenant = ?2 AND context = ?3 AND created_ms >= ?4"
            ))?;
            let rows =
                statement.query_map(params![pipeline, tenant, context, since_ms], cache_entry)?;
            rows.collect()
        })
    }

    fn spending(&self) -> Result<Vec<SpendTotals>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT tenant, pipeline, requests, prompt_tokens, completion_tokens, cost_usd,
                     saved_usd, updated_ms FROM spend ORDER BY tenant, pipeline",
            )?;
            let rows = statement.query_map([], spend_totals)?;
            rows.collect()
        })
    }
}

const CASCADE_COLUMNS: &str = "pipeline, threshold, small, scoring, provenance, updated_ms";

fn stored_cascade(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCascade> {
    Ok(StoredCascade {
        pipeline: row.get(0)?,
        threshold: row.get(1)?,
        small: row.get(2)?,
        scoring: row.get(3)?,
        provenance: row.get(4)?,
        updated_ms: row.get(5)?,
    })
}

const CACHE_COLUMNS: &str =
    "pipeline, tenant, key, context, literals, embedding, answer, created_ms";

fn cache_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<CacheEntry> {
    let blob: Vec<u8> = row.get(5)?;
    Ok(CacheEntry {
        pipeline: row.get(0)?,
        tenant: row.get(1)?,
        key: row.get(2)?,
        context: row.get(3)?,
        literals: row.get(4)?,
        embedding: blob
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        answer: row.get(6)?,
        created_ms: row.get(7)?,
    })
}

fn spend_totals(row: &rusqlite::Row<'_>) -> rusqlite::Result<SpendTotals> {
    Ok(SpendTotals {
        tenant: row.get(0)?,
        pipeline: row.get(1)?,
        requests: row.get::<_, i64>(2)? as u64,
        prompt_tokens: row.get::<_, i64>(3)? as u64,
        completion_tokens: row.get::<_, i64>(4)? as u64,
        cost_usd: row.get(5)?,
        saved_usd: row.get(6)?,
        updated_ms: row.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: i64, pipeline: &str) -> EgressRecord {
        EgressRecord {
            at_ms,
            pipeline: pipeline.into(),
            strategy: "redact".into(),
            model: "cloud".into(),
            sha256: "ab".repeat(32),
            bytes: 42,
            redacted: [("email".to_string(), 2), ("secret".to_string(), 1)].into(),
        }
    }

    #[test]
    fn records_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.sqlite");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.record_egress(&record(1, "a")).unwrap();
            store.record_egress(&record(2, "b")).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        store.record_egress(&record(3, "a")).unwrap();
        let all = store.egress(&EgressQuery::default()).unwrap();
        assert_eq!(all, vec![record(1, "a"), record(2, "b"), record(3, "a")]);
    }

    #[test]
    fn queries_filter_by_time_pipeline_and_keep_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        for (at, pipeline) in [(1, "a"), (2, "b"), (3, "a"), (4, "a")] {
            store.record_egress(&record(at, pipeline)).unwrap();
        }
        let query = EgressQuery {
            since_ms: Some(2),
            pipeline: Some("a".into()),
            limit: Some(1),
        };
        assert_eq!(store.egress(&query).unwrap(), vec![record(4, "a")]);
        let query = EgressQuery {
            since_ms: Some(2),
            ..Default::default()
        };
        assert_eq!(store.egress(&query).unwrap().len(), 3);
    }

    #[test]
    fn a_router_is_saved_replaced_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut router = StoredRouter {
            name: "code".into(),
            router: "{\"kind\":\"knn\"}".into(),
            provenance: "{}".into(),
            threshold: None,
            updated_ms: 1,
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            store.save_router(&router).unwrap();
            router.threshold = Some(0.25);
            router.updated_ms = 2;
            store.save_router(&router).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.router("code").unwrap(), Some(router));
        assert_eq!(store.router("other").unwrap(), None);
        assert_eq!(store.routers().unwrap(), ["code"]);
    }

    #[test]
    fn a_cascade_threshold_is_saved_replaced_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let cascade = |pipeline: &str, threshold: f64, updated_ms: i64| StoredCascade {
            pipeline: pipeline.into(),
            threshold,
            small: "small".into(),
            scoring: "{\"signal\":\"mean_logprob\"}".into(),
            provenance: "{\"items\":6}".into(),
            updated_ms,
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            store.save_cascade(&cascade("cheap", 0.5, 1)).unwrap();
            store.save_cascade(&cascade("cheap", 0.625, 2)).unwrap();
            store.save_cascade(&cascade("another", 0.25, 3)).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.cascade("cheap").unwrap(),
            Some(cascade("cheap", 0.625, 2))
        );
        assert_eq!(store.cascade("other").unwrap(), None);
        assert_eq!(
            store.cascades().unwrap(),
            [cascade("another", 0.25, 3), cascade("cheap", 0.625, 2)]
        );
    }

    #[test]
    fn a_file_written_before_cascades_gains_their_table_and_keeps_its_routers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        {
            // The schema as it was before calibrated cascades.
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for migration in &MIGRATIONS[..4] {
                tx.execute_batch(migration).unwrap();
            }
            tx.execute(
                "INSERT INTO routers (name, router, provenance, threshold, updated_ms)
                 VALUES ('code', '{}', '{}', 0.5, 1)",
                [],
            )
            .unwrap();
            tx.pragma_update(None, "user_version", 4).unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.router("code").unwrap().unwrap().threshold, Some(0.5));
        assert!(store.cascades().unwrap().is_empty());
    }

    #[test]
    fn spending_adds_up_per_key_and_pipeline_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let spend = |cost_usd| Spend {
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_usd,
            saved_usd: 0.5,
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            store.add_spend("alice", "chat", &spend(1.0), 1).unwrap();
            store.add_spend("alice", "code", &spend(2.0), 2).unwrap();
            store.add_spend("bob", "chat", &spend(4.0), 3).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let totals = store.add_spend("alice", "chat", &spend(0.25), 4).unwrap();
        assert_eq!(
            (
                totals.requests,
                totals.prompt_tokens,
                totals.completion_tokens
            ),
            (2, 20, 10)
        );
        assert_eq!(
            (totals.cost_usd, totals.saved_usd, totals.updated_ms),
            (1.25, 1.0, 4)
        );
        assert_eq!(store.spent_usd("alice").unwrap(), 3.25);
        assert_eq!(store.spent_usd("bob").unwrap(), 4.0);
        assert_eq!(store.spent_usd("carol").unwrap(), 0.0);
        let rows: Vec<_> = store
            .spending()
            .unwrap()
            .into_iter()
            .map(|t| (t.tenant, t.pipeline))
            .collect();
        assert_eq!(
            rows,
            [("alice", "chat"), ("alice", "code"), ("bob", "chat")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn cache_entries_are_found_per_pipeline_and_key_within_their_age_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        let entry = |tenant: &str, key: &str, created_ms| CacheEntry {
            pipeline: "cached".into(),
            tenant: tenant.into(),
            key: key.into(),
            context: "ctx".into(),
            literals: "3".into(),
            embedding: vec![0.5, -0.25, 1e-7],
            answer: format!("answer {key}"),
            created_ms,
        };
        store.cache_put(&entry("alice", "k1", 10), 3).unwrap();
        store.cache_put(&entry("bob", "k2", 20), 3).unwrap();
        let found = store.cache_exact("cached", "alice", "k1", 0).unwrap();
        assert_eq!(found, Some(entry("alice", "k1", 10)));
        assert_eq!(store.cache_exact("cached", "bob", "k1", 0).unwrap(), None);
        assert_eq!(store.cache_exact("other", "alice", "k1", 0).unwrap(), None);
        assert_eq!(
            store.cache_exact("cached", "alice", "k1", 11).unwrap(),
            None
        );
        let candidates = store.cache_candidates("cached", "alice", "ctx", 0).unwrap();
        assert_eq!(candidates, [entry("alice", "k1", 10)]);
        assert!(store
            .cache_candidates("cached", "alice", "other", 0)
            .unwrap()
            .is_empty());
        // Storing the same key again replaces it; past max_entries the oldest go.
        store.cache_put(&entry("alice", "k1", 30), 3).unwrap();
        store.cache_put(&entry("alice", "k3", 40), 3).unwrap();
        store.cache_put(&entry("alice", "k4", 50), 3).unwrap();
        assert_eq!(store.cache_exact("cached", "bob", "k2", 0).unwrap(), None);
        let left = store.cache_candidates("cached", "alice", "ctx", 0).unwrap();
        assert_eq!(left.len(), 3);
    }

    #[test]
    fn a_file_from_a_newer_tandem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let error = SqliteStore::open(&path).err().unwrap();
        assert!(error.to_string().contains("schema version 99"), "{error}");
    }
}
