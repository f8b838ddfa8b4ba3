//! The monitor's redb file: closed windows with their drift scores, and alerts, so reports and
//! cooldowns survive restarts.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

const WINDOWS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("windows");
const LAST_ALERT: TableDefinition<&str, i64> = TableDefinition::new("last_alert");

/// A closed window as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowRecord {
    pub version: u64,
    pub rows: u64,
    pub drifted_share: f64,
    /// (feature, method, score, threshold, drifted)
    pub features: Vec<(String, String, f64, f64, bool)>,
    pub closed_unix_ms: i64,
    pub alert_id: String,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
#[error("monitor database: {0}")]
pub struct StoreError(String);

mlops_shared::redb_errors!(StoreError, StoreError);

/// The monitor database.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(WINDOWS)?;
        txn.open_table(LAST_ALERT)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// The next window number of `pipeline`.
    pub fn next_seq(&self, pipeline: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(WINDOWS)?;
        let last =
            t.range((pipeline, 0)..=(pipeline, u64::MAX))?.next_back().transpose()?.map_or(0, |(k, _)| k.value().1);
        Ok(last + 1)
    }

    /// Records a closed window, and the alert time when it raised one.
    pub fn record(&self, pipeline: &str, seq: u64, w: &WindowRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(WINDOWS)?;
            t.insert((pipeline, seq), serde_json::to_vec(w)?.as_slice())?;
            if !w.alert_id.is_empty() {
                txn.open_table(LAST_ALERT)?.insert(pipeline, w.closed_unix_ms)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// When `pipeline` last raised an alert.
    pub fn last_alert(&self, pipeline: &str) -> Result<Option<i64>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(LAST_ALERT)?;
        Ok(t.get(pipeline)?.map(|v| v.value()))
    }

    /// The newest `limit` windows of `pipeline`, newest first, and how many raised alerts.
    pub fn windows(&self, pipeline: &str, limit: usize) -> Result<(Vec<WindowRecord>, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(WINDOWS)?;
        let mut out = Vec::new();
        let mut alerts = 0;
        for kv in t.range((pipeline, 0)..=(pipeline, u64::MAX))?.rev() {
            let w: WindowRecord = serde_json::from_slice(kv?.1.value())?;
            alerts += u64::from(!w.alert_id.is_empty());
            if out.len() < limit {
                out.push(w);
            }
        }
        Ok((out, alerts))
    }
}
