//! The monitor's redb file: closed windows with their drift scores; every logged prediction by id
//! (for the labels that come later) and every label joined to one; the alert history; so reports,
//! cooldowns and label quality survive restarts.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const WINDOWS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("windows");
const LAST_ALERT: TableDefinition<&str, i64> = TableDefinition::new("last_alert");
/// prediction id -> the prediction, for the label that may come.
const PREDICTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("predictions");
/// (logged at, prediction id), to forget predictions past the retention.
const PREDICTION_TIMES: TableDefinition<(i64, &str), ()> = TableDefinition::new("prediction_times");
/// prediction id -> labelled, so a label delivered twice counts once.
const LABELS: TableDefinition<&str, ()> = TableDefinition::new("labels");
/// (pipeline, version, n) -> (label, score) of the version's n-th labelled prediction.
const LABELLED: TableDefinition<(&str, u64, u64), (f64, f64)> = TableDefinition::new("labelled");
/// (pipeline, n) -> the pipeline's n-th alert.
const ALERTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("alerts");
/// pipeline -> the newest label-quality figure.
const PERFORMANCE: TableDefinition<&str, &[u8]> = TableDefinition::new("performance");

/// Predictions deleted per batch while forgetting old ones, so the sweep never stalls a batch.
const FORGET_PER_BATCH: usize = 5_000;

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
    /// The predictions' drift, (feature, method, score, threshold, drifted), when measured.
    #[serde(default)]
    pub prediction: Option<(String, String, f64, f64, bool)>,
}

/// A logged prediction, as its label will need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logged {
    pub pipeline: String,
    pub version: u64,
    pub score: f64,
    pub time_unix_ms: i64,
}

/// What raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// A window of live inputs drifted.
    Drift,
    /// Quality on labels broke the spec's limit.
    Performance,
}

impl AlertKind {
    /// The name the history (stored and reported) carries.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Drift => "drift",
            Self::Performance => "performance",
        }
    }
}

/// An alert as kept in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub alert_id: String,
    pub kind: AlertKind,
    pub version: u64,
    pub time_unix_ms: i64,
    pub detail: String,
}

/// The newest label-quality figure of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceRecord {
    pub version: u64,
    pub metric: String,
    pub value: f64,
    pub labelled: u64,
    pub threshold: f64,
    pub higher_is_better: bool,
    pub at_unix_ms: i64,
}

/// What became of the labels of one `labels.arrived`.
#[derive(Debug, Default, PartialEq)]
pub struct Joined {
    /// Versions that got labels, with how many.
    pub versions: Vec<(u64, u64)>,
    /// Labels counted before (a redelivery).
    pub already: usize,
    /// Prediction ids no logged prediction of this pipeline has (yet).
    pub unknown: Vec<String>,
    /// (prediction id, label) pairs whose label the model cannot read.
    pub unreadable: Vec<(String, String)>,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
#[error("monitor database: {0}")]
pub struct StoreError(#[from] mlops_shared::DbError);

mlops_shared::redb_errors!(StoreError);

fn alert_key(pipeline: &str, kind: AlertKind) -> String {
    // Drift alerts kept the bare pipeline name as their key before there were other kinds.
    match kind {
        AlertKind::Drift => pipeline.to_owned(),
        AlertKind::Performance => format!("{}:{pipeline}", kind.as_str()),
    }
}

fn insert_alert(txn: &redb::WriteTransaction, pipeline: &str, a: &AlertRecord) -> Result<(), StoreError> {
    let mut t = txn.open_table(ALERTS)?;
    let n = t.range((pipeline, 0)..=(pipeline, u64::MAX))?.next_back().transpose()?.map_or(0, |(k, _)| k.value().1);
    t.insert((pipeline, n + 1), serde_json::to_vec(a)?.as_slice())?;
    txn.open_table(LAST_ALERT)?.insert(alert_key(pipeline, a.kind).as_str(), a.time_unix_ms)?;
    Ok(())
}

/// The monitor database.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // redb caches up to 1 GiB by default, which reads as a leak in a long-running process:
        // 64 MiB is the bound (the predictions kept for labels are written at thousands a second).
        let db = redb::Builder::new().set_cache_size(64 << 20).create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(WINDOWS)?;
        txn.open_table(LAST_ALERT)?;
        txn.open_table(PREDICTIONS)?;
        txn.open_table(PREDICTION_TIMES)?;
        txn.open_table(LABELS)?;
        txn.open_table(LABELLED)?;
        txn.open_table(ALERTS)?;
        txn.open_table(PERFORMANCE)?;
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

    /// Records a closed window, and its alert when it raised one.
    pub fn record(
        &self,
        pipeline: &str,
        seq: u64,
        w: &WindowRecord,
        alert: Option<&AlertRecord>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(WINDOWS)?;
            t.insert((pipeline, seq), serde_json::to_vec(w)?.as_slice())?;
        }
        if let Some(a) = alert {
            insert_alert(&txn, pipeline, a)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// When `pipeline` last raised an alert of `kind`.
    pub fn last_alert(&self, pipeline: &str, kind: AlertKind) -> Result<Option<i64>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(LAST_ALERT)?;
        Ok(t.get(alert_key(pipeline, kind).as_str())?.map(|v| v.value()))
    }

    /// The number the next alert of `pipeline` will have.
    pub fn next_alert_seq(&self, pipeline: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ALERTS)?;
        let last =
            t.range((pipeline, 0)..=(pipeline, u64::MAX))?.next_back().transpose()?.map_or(0, |(k, _)| k.value().1);
        Ok(last + 1)
    }

    /// Records an alert that no window carries (label quality).
    pub fn record_alert(&self, pipeline: &str, alert: &AlertRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        insert_alert(&txn, pipeline, alert)?;
        txn.commit()?;
        Ok(())
    }

    /// The newest `limit` alerts of `pipeline`, newest first.
    pub fn alerts(&self, pipeline: &str, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ALERTS)?;
        let mut out = Vec::new();
        for kv in t.range((pipeline, 0)..=(pipeline, u64::MAX))?.rev().take(limit) {
            out.push(serde_json::from_slice(kv?.1.value())?);
        }
        Ok(out)
    }

    /// Keeps `batch` (one durable commit for all of it), and forgets predictions logged before
    /// `forget_before_ms` whose labels never came.
    pub fn index_predictions<'a>(
        &self,
        batch: impl IntoIterator<Item = (&'a str, Logged)>,
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut by_id = txn.open_table(PREDICTIONS)?;
            let mut by_time = txn.open_table(PREDICTION_TIMES)?;
            for (id, logged) in batch {
                if by_id.insert(id, serde_json::to_vec(&logged)?.as_slice())?.is_none() {
                    by_time.insert((logged.time_unix_ms, id), ())?;
                }
            }
            let old: Vec<(i64, String)> = by_time
                .range((i64::MIN, "")..(forget_before_ms, ""))?
                .take(FORGET_PER_BATCH)
                .map(|kv| kv.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
                .collect::<Result<_, _>>()?;
            for (t, id) in old {
                by_time.remove((t, id.as_str()))?;
                by_id.remove(id.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Joins labels of `pipeline` to their logged predictions, once each: `read` turns a label
    /// into the number the metric needs (the class as 0/1, or the value), `None` if it cannot.
    pub fn join_labels<'a>(
        &self,
        pipeline: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        read: impl Fn(&str) -> Option<f64>,
    ) -> Result<Joined, StoreError> {
        let txn = self.db.begin_write()?;
        let mut joined = Joined::default();
        {
            let predictions = txn.open_table(PREDICTIONS)?;
            let mut seen = txn.open_table(LABELS)?;
            let mut labelled = txn.open_table(LABELLED)?;
            for (id, label) in labels {
                if seen.get(id)?.is_some() {
                    joined.already += 1;
                    continue;
                }
                let Some(bytes) = predictions.get(id)? else {
                    joined.unknown.push(id.to_owned());
                    continue;
                };
                let logged: Logged = serde_json::from_slice(bytes.value())?;
                drop(bytes);
                if logged.pipeline != pipeline {
                    joined.unknown.push(id.to_owned());
                    continue;
                }
                let Some(y) = read(label) else {
                    joined.unreadable.push((id.to_owned(), label.to_owned()));
                    continue;
                };
                let v = logged.version;
                let n = labelled
                    .range((pipeline, v, 0)..=(pipeline, v, u64::MAX))?
                    .next_back()
                    .transpose()?
                    .map_or(0, |(k, _)| k.value().2);
                labelled.insert((pipeline, v, n + 1), (y, logged.score))?;
                seen.insert(id, ())?;
                match joined.versions.iter_mut().find(|(ver, _)| *ver == v) {
                    Some((_, count)) => *count += 1,
                    None => joined.versions.push((v, 1)),
                }
            }
        }
        txn.commit()?;
        Ok(joined)
    }

    /// The newest `limit` labelled predictions of `pipeline` at `version` as (labels, scores),
    /// and how many it has in all.
    pub fn labelled(
        &self,
        pipeline: &str,
        version: u64,
        limit: usize,
    ) -> Result<(Vec<f64>, Vec<f64>, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(LABELLED)?;
        let (mut ys, mut scores, mut total) = (Vec::new(), Vec::new(), 0);
        for (i, kv) in t.range((pipeline, version, 0)..=(pipeline, version, u64::MAX))?.rev().enumerate() {
            let (k, v) = kv?;
            if i == 0 {
                total = k.value().2;
            }
            if i >= limit {
                break;
            }
            let (y, s) = v.value();
            ys.push(y);
            scores.push(s);
        }
        Ok((ys, scores, total))
    }

    /// Keeps the newest label-quality figure of `pipeline`.
    pub fn set_performance(&self, pipeline: &str, p: &PerformanceRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(PERFORMANCE)?.insert(pipeline, serde_json::to_vec(p)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The newest label-quality figure of `pipeline`.
    pub fn performance(&self, pipeline: &str) -> Result<Option<PerformanceRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PERFORMANCE)?;
        Ok(match t.get(pipeline)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_stored_before_their_kind_was_an_enum_read_back_and_are_written_the_same() {
        let old = r#"{"alert_id":"churn-v1-w3","kind":"drift","version":1,"time_unix_ms":1700000000000,"detail":"40 % of features drifted over 500 predictions: tenure"}"#;
        let drift: AlertRecord = serde_json::from_str(old).unwrap();
        assert_eq!(drift.kind, AlertKind::Drift);
        assert_eq!(serde_json::to_string(&drift).unwrap(), old);
        let old = r#"{"alert_id":"churn-v1-a1","kind":"performance","version":1,"time_unix_ms":1,"detail":"roc_auc"}"#;
        let performance: AlertRecord = serde_json::from_str(old).unwrap();
        assert_eq!((performance.kind, performance.kind.as_str()), (AlertKind::Performance, "performance"));
        assert!(serde_json::from_str::<AlertRecord>(&old.replace("performance", "latency")).is_err());
    }

    #[test]
    fn cooldown_keys_are_the_ones_already_on_disk() {
        assert_eq!(alert_key("churn", AlertKind::Drift), "churn");
        assert_eq!(alert_key("churn", AlertKind::Performance), "performance:churn");
    }

    #[test]
    fn the_last_alert_of_each_kind_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("mlops-monitor-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.redb");
        let _ = std::fs::remove_file(&path);
        let alert = |kind, at| AlertRecord {
            alert_id: format!("a{at}"),
            kind,
            version: 1,
            time_unix_ms: at,
            detail: String::new(),
        };
        {
            let store = Store::open(&path).unwrap();
            store.record_alert("churn", &alert(AlertKind::Drift, 10)).unwrap();
            store.record_alert("churn", &alert(AlertKind::Performance, 20)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_alert("churn", AlertKind::Drift).unwrap(), Some(10));
        assert_eq!(store.last_alert("churn", AlertKind::Performance).unwrap(), Some(20));
        let kinds: Vec<AlertKind> = store.alerts("churn", 10).unwrap().into_iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AlertKind::Performance, AlertKind::Drift]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
