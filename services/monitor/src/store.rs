//! The monitor's redb file: closed windows with their drift scores; every logged prediction by id
//! (for the labels that come later) and every label joined to one; labelled predictions waiting
//! for the next feedback version; the alert history; so reports, cooldowns, label quality and
//! feedback survive restarts.

use std::collections::BTreeMap;
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
/// Beside `labelled`, under the same key: whether the served label was the positive class (what
/// the decision was, whatever threshold made it).
const DECIDED: TableDefinition<(&str, u64, u64), bool> = TableDefinition::new("decided");
/// Beside `labelled`, under the same key: the row's amount (`business.amount`), when it had one.
const AMOUNTS: TableDefinition<(&str, u64, u64), f64> = TableDefinition::new("amounts");
/// (pipeline, n) -> the pipeline's n-th alert.
const ALERTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("alerts");
/// pipeline -> the newest label-quality figure.
const PERFORMANCE: TableDefinition<&str, &[u8]> = TableDefinition::new("performance");
/// (pipeline, n) -> the n-th labelled prediction waiting for the pipeline's next feedback version.
const FEEDBACK_WAITING: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("feedback_waiting");
/// pipeline -> its feedback bookkeeping ([`FeedbackState`]).
const FEEDBACK_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("feedback_state");

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
    /// Whether the served label was the positive class (a classifier's); absent in records kept
    /// before decisions were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive: Option<bool>,
    /// Its inputs, kept only for pipelines that write feedback versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Inputs>,
    /// Its amount (the `business.amount` feature), when the spec prices decisions by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
}

/// The inputs of a prediction as it was logged: numbers and categories by feature name (a
/// missing value is absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub numeric: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categorical: BTreeMap<String, String>,
}

/// Labelled predictions of one version, newest first: each one's label, score and, when it was
/// kept, the served decision.
#[derive(Debug, Default)]
pub struct Labelled {
    pub labels: Vec<f64>,
    pub scores: Vec<f64>,
    pub positive: Vec<Option<bool>>,
    /// Each one's amount, when it was kept (`business.amount`).
    pub amounts: Vec<Option<f64>>,
    /// How many the version has in all.
    pub total: u64,
}

/// A labelled prediction waiting for the next feedback version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRow {
    pub prediction_id: String,
    pub version: u64,
    pub predicted_ms: i64,
    pub labelled_ms: i64,
    /// The label as it arrived.
    pub label: String,
    pub inputs: Inputs,
}

/// What [`Store::erase_inputs`] forgot: kept predictions' inputs, waiting feedback rows, and rows
/// of a feedback version already stored (left as they were).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ErasedInputs {
    pub predictions: u64,
    pub waiting: u64,
    pub in_stored_cut: u64,
}

/// A pipeline's feedback: rows waiting, labels left out as late, versions written, and the
/// version being written, if any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedbackState {
    pub waiting: u64,
    pub late: u64,
    pub versions: u64,
    pub last_dataset_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<Cut>,
}

/// The rows of one feedback version, fixed before it is written so that a crash and a retry
/// write the same rows (and so the same bytes): the waiting rows up to number `upto`. Once the
/// version is in the object store, `stored` says which it is, so a retry announces that one
/// whatever changed meanwhile (the spec, the Parquet writer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cut {
    /// The version's number among the pipeline's feedback versions (1, 2, …).
    pub sequence: u64,
    pub upto: u64,
    pub rows: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredCut>,
}

/// A cut's version as stored: its dataset id (sha256) and the lineage its announcement carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCut {
    pub dataset_id: String,
    pub origin: mlops_proto::FeedbackOrigin,
}

/// What a label joined for feedback needs: the longest a prediction may wait for its label, and
/// the time now (Unix ms).
#[derive(Debug, Clone, Copy)]
pub struct FeedbackJoin {
    pub max_age_ms: i64,
    pub now_ms: i64,
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
    /// Labelled predictions added to the waiting feedback rows, and those left out as late.
    pub feedback: u64,
    pub late: u64,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
#[error("monitor database: {0}")]
pub struct StoreError(#[from] mlops_shared::DbError);

mlops_shared::redb_errors!(StoreError);

/// The highest n of `pipeline`'s keys in a `(pipeline, n)` table; 0 when it has none.
fn last_key(t: &impl ReadableTable<(&'static str, u64), &'static [u8]>, pipeline: &str) -> Result<u64, StoreError> {
    Ok(t.range((pipeline, 0)..=(pipeline, u64::MAX))?.next_back().transpose()?.map_or(0, |(k, _)| k.value().1))
}

/// Removes `pipeline`'s waiting rows numbered up to `upto`.
fn remove_waiting(txn: &redb::WriteTransaction, pipeline: &str, upto: u64) -> Result<(), StoreError> {
    let mut t = txn.open_table(FEEDBACK_WAITING)?;
    let keys: Vec<u64> =
        t.range((pipeline, 0)..=(pipeline, upto))?.map(|kv| kv.map(|(k, _)| k.value().1)).collect::<Result<_, _>>()?;
    for n in keys {
        t.remove((pipeline, n))?;
    }
    Ok(())
}

/// The JSON value kept under `key` in `t`, decoded; `None` when there is none.
fn json_at<T: serde::de::DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    Ok(match t.get(key)? {
        Some(v) => Some(serde_json::from_slice(v.value())?),
        None => None,
    })
}

fn read_feedback_state(txn: &redb::WriteTransaction, pipeline: &str) -> Result<FeedbackState, StoreError> {
    Ok(json_at(&txn.open_table(FEEDBACK_STATE)?, pipeline)?.unwrap_or_default())
}

fn write_feedback_state(txn: &redb::WriteTransaction, pipeline: &str, state: &FeedbackState) -> Result<(), StoreError> {
    txn.open_table(FEEDBACK_STATE)?.insert(pipeline, serde_json::to_vec(state)?.as_slice())?;
    Ok(())
}

fn alert_key(pipeline: &str, kind: AlertKind) -> String {
    // Drift alerts kept the bare pipeline name as their key before there were other kinds.
    match kind {
        AlertKind::Drift => pipeline.to_owned(),
        AlertKind::Performance => format!("{}:{pipeline}", kind.as_str()),
    }
}

fn insert_alert(txn: &redb::WriteTransaction, pipeline: &str, a: &AlertRecord) -> Result<(), StoreError> {
    let mut t = txn.open_table(ALERTS)?;
    let n = last_key(&t, pipeline)?;
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
        txn.open_table(DECIDED)?;
        txn.open_table(AMOUNTS)?;
        txn.open_table(ALERTS)?;
        txn.open_table(PERFORMANCE)?;
        txn.open_table(FEEDBACK_WAITING)?;
        txn.open_table(FEEDBACK_STATE)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// The next window number of `pipeline`.
    pub fn next_seq(&self, pipeline: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(last_key(&txn.open_table(WINDOWS)?, pipeline)? + 1)
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
        Ok(last_key(&txn.open_table(ALERTS)?, pipeline)? + 1)
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
    /// With `feedback`, each joined prediction that kept its inputs also waits for the next
    /// feedback version, unless it is older than the limit (late) — in the same commit, so a
    /// row is used once.
    pub fn join_labels<'a>(
        &self,
        pipeline: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        read: impl Fn(&str) -> Option<f64>,
        feedback: Option<FeedbackJoin>,
    ) -> Result<Joined, StoreError> {
        let txn = self.db.begin_write()?;
        let mut joined = Joined::default();
        {
            let predictions = txn.open_table(PREDICTIONS)?;
            let mut seen = txn.open_table(LABELS)?;
            let mut labelled = txn.open_table(LABELLED)?;
            let mut decided = txn.open_table(DECIDED)?;
            let mut amounts = txn.open_table(AMOUNTS)?;
            let mut waiting = txn.open_table(FEEDBACK_WAITING)?;
            let mut next_waiting = last_key(&waiting, pipeline)? + 1;
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
                if let Some(positive) = logged.positive {
                    decided.insert((pipeline, v, n + 1), positive)?;
                }
                if let Some(amount) = logged.amount {
                    amounts.insert((pipeline, v, n + 1), amount)?;
                }
                seen.insert(id, ())?;
                if let (Some(f), Some(inputs)) = (feedback, logged.inputs) {
                    if f.now_ms - logged.time_unix_ms > f.max_age_ms {
                        joined.late += 1;
                    } else {
                        let row = FeedbackRow {
                            prediction_id: id.to_owned(),
                            version: v,
                            predicted_ms: logged.time_unix_ms,
                            labelled_ms: f.now_ms,
                            label: label.to_owned(),
                            inputs,
                        };
                        waiting.insert((pipeline, next_waiting), serde_json::to_vec(&row)?.as_slice())?;
                        next_waiting += 1;
                        joined.feedback += 1;
                    }
                }
                match joined.versions.iter_mut().find(|(ver, _)| *ver == v) {
                    Some((_, count)) => *count += 1,
                    None => joined.versions.push((v, 1)),
                }
            }
        }
        if joined.feedback + joined.late > 0 {
            let mut state = read_feedback_state(&txn, pipeline)?;
            state.waiting += joined.feedback;
            state.late += joined.late;
            write_feedback_state(&txn, pipeline, &state)?;
        }
        txn.commit()?;
        Ok(joined)
    }

    /// `pipeline`'s feedback bookkeeping (the default before any label joined).
    pub fn feedback_state(&self, pipeline: &str) -> Result<FeedbackState, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(json_at(&txn.open_table(FEEDBACK_STATE)?, pipeline)?.unwrap_or_default())
    }

    /// Every pipeline with feedback rows waiting or a version being written.
    pub fn feedback_pending(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(FEEDBACK_STATE)?;
        let mut out = Vec::new();
        for kv in t.iter()? {
            let (k, v) = kv?;
            let state: FeedbackState = serde_json::from_slice(v.value())?;
            if state.waiting > 0 || state.cut.is_some() {
                out.push(k.value().to_owned());
            }
        }
        Ok(out)
    }

    /// When the oldest waiting row of `pipeline` was labelled (Unix ms), if any waits.
    pub fn oldest_waiting(&self, pipeline: &str) -> Result<Option<i64>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(FEEDBACK_WAITING)?;
        let Some(first) = t.range((pipeline, 0)..=(pipeline, u64::MAX))?.next() else { return Ok(None) };
        let row: FeedbackRow = serde_json::from_slice(first?.1.value())?;
        Ok(Some(row.labelled_ms))
    }

    /// Fixes the rows of `pipeline`'s next feedback version — the oldest `max_rows` waiting — or
    /// returns the one fixed before and not yet written; `None` when no row waits.
    pub fn cut_feedback(&self, pipeline: &str, max_rows: u64) -> Result<Option<Cut>, StoreError> {
        let txn = self.db.begin_write()?;
        let mut state = read_feedback_state(&txn, pipeline)?;
        if let Some(cut) = state.cut {
            return Ok(Some(cut));
        }
        let last = {
            let t = txn.open_table(FEEDBACK_WAITING)?;
            let mut rows = t.range((pipeline, 0)..=(pipeline, u64::MAX))?;
            let last = rows.nth(state.waiting.min(max_rows).saturating_sub(1) as usize).transpose()?;
            last.map(|(k, _)| k.value().1)
        };
        let Some(upto) = last.filter(|_| state.waiting > 0) else { return Ok(None) };
        let cut = Cut { sequence: state.versions + 1, upto, rows: state.waiting.min(max_rows), stored: None };
        state.cut = Some(cut.clone());
        write_feedback_state(&txn, pipeline, &state)?;
        txn.commit()?;
        Ok(Some(cut))
    }

    /// The rows of `cut`, in their order.
    pub fn cut_rows(&self, pipeline: &str, cut: &Cut) -> Result<Vec<FeedbackRow>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(FEEDBACK_WAITING)?;
        let mut rows = Vec::with_capacity(cut.rows as usize);
        for kv in t.range((pipeline, 0)..=(pipeline, cut.upto))? {
            rows.push(serde_json::from_slice(kv?.1.value())?);
        }
        Ok(rows)
    }

    /// Records that the version of cut `sequence` is in the object store, as `stored`.
    pub fn cut_stored(&self, pipeline: &str, sequence: u64, stored: StoredCut) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let mut state = read_feedback_state(&txn, pipeline)?;
        match &mut state.cut {
            Some(cut) if cut.sequence == sequence => cut.stored = Some(stored),
            _ => return Ok(()), // written already
        }
        write_feedback_state(&txn, pipeline, &state)?;
        txn.commit()?;
        Ok(())
    }

    /// Records `cut` as written (dataset `dataset_id`): its rows stop waiting, for good.
    pub fn feedback_written(&self, pipeline: &str, cut: &Cut, dataset_id: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let mut state = read_feedback_state(&txn, pipeline)?;
        if state.cut.as_ref().is_none_or(|c| c.sequence != cut.sequence) {
            return Ok(()); // recorded already
        }
        remove_waiting(&txn, pipeline, cut.upto)?;
        state.waiting = state.waiting.saturating_sub(cut.rows);
        state.versions = cut.sequence;
        state.last_dataset_id = dataset_id.to_owned();
        state.cut = None;
        write_feedback_state(&txn, pipeline, &state)?;
        txn.commit()?;
        Ok(())
    }

    /// Forgets the inputs of `pipeline`'s kept predictions and waiting feedback rows whose
    /// `column` (a feature) `matches` (a cell's trimmed text; numbers as
    /// [`mlops_shared::table::number_text`]): an erasure. A prediction keeps what its label needs
    /// (version, score, decision); a waiting row is dropped, and a cut not yet stored is undone so
    /// that the next one leaves it out. Rows of a cut already stored are counted, not changed:
    /// that version is on its way to ingest.
    pub fn erase_inputs(
        &self,
        pipeline: &str,
        column: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Result<ErasedInputs, StoreError> {
        let holds = |inputs: &Inputs| {
            let numeric = inputs.numeric.get(column).map(|v| mlops_shared::table::number_text(*v));
            let text = numeric.or_else(|| inputs.categorical.get(column).map(|c| c.trim().to_owned()));
            text.is_some_and(|t| !t.is_empty() && matches(&t))
        };
        let txn = self.db.begin_write()?;
        let mut erased = ErasedInputs::default();
        {
            let mut predictions = txn.open_table(PREDICTIONS)?;
            let mut cleared = Vec::new();
            for kv in predictions.iter()? {
                let (id, bytes) = kv?;
                let mut logged: Logged = serde_json::from_slice(bytes.value())?;
                if logged.pipeline == pipeline && logged.inputs.as_ref().is_some_and(holds) {
                    logged.inputs = None;
                    cleared.push((id.value().to_owned(), serde_json::to_vec(&logged)?));
                }
            }
            for (id, bytes) in &cleared {
                predictions.insert(id.as_str(), bytes.as_slice())?;
            }
            erased.predictions = cleared.len() as u64;
        }
        let mut state = read_feedback_state(&txn, pipeline)?;
        let stored_upto = state.cut.as_ref().filter(|c| c.stored.is_some()).map_or(0, |c| c.upto);
        {
            let mut waiting = txn.open_table(FEEDBACK_WAITING)?;
            let mut dropped = Vec::new();
            for kv in waiting.range((pipeline, 0)..=(pipeline, u64::MAX))? {
                let (key, bytes) = kv?;
                let row: FeedbackRow = serde_json::from_slice(bytes.value())?;
                if holds(&row.inputs) {
                    dropped.push(key.value().1);
                }
            }
            for n in dropped {
                if n <= stored_upto {
                    erased.in_stored_cut += 1;
                    continue;
                }
                waiting.remove((pipeline, n))?;
                erased.waiting += 1;
            }
        }
        if erased.waiting > 0 {
            state.waiting = state.waiting.saturating_sub(erased.waiting);
            if state.cut.as_ref().is_some_and(|c| c.stored.is_none()) {
                state.cut = None;
            }
            write_feedback_state(&txn, pipeline, &state)?;
        }
        txn.commit()?;
        Ok(erased)
    }

    /// Drops `pipeline`'s waiting rows and any cut not yet written (its spec no longer asks for
    /// feedback); how many rows were dropped.
    pub fn forget_feedback(&self, pipeline: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_write()?;
        let mut state = read_feedback_state(&txn, pipeline)?;
        if state.waiting == 0 && state.cut.is_none() {
            return Ok(0); // nothing to drop, nothing to commit
        }
        let dropped = state.waiting;
        remove_waiting(&txn, pipeline, u64::MAX)?;
        state.waiting = 0;
        state.cut = None;
        write_feedback_state(&txn, pipeline, &state)?;
        txn.commit()?;
        Ok(dropped)
    }

    /// The newest `limit` labelled predictions of `pipeline` at `version`, and how many it has
    /// in all.
    pub fn labelled(&self, pipeline: &str, version: u64, limit: usize) -> Result<Labelled, StoreError> {
        let txn = self.db.begin_read()?;
        let (t, decided, amounts) = (txn.open_table(LABELLED)?, txn.open_table(DECIDED)?, txn.open_table(AMOUNTS)?);
        let mut out = Labelled::default();
        for (i, kv) in t.range((pipeline, version, 0)..=(pipeline, version, u64::MAX))?.rev().enumerate() {
            let (k, v) = kv?;
            if i == 0 {
                out.total = k.value().2;
            }
            if i >= limit {
                break;
            }
            let (y, s) = v.value();
            out.labels.push(y);
            out.scores.push(s);
            out.positive.push(decided.get(k.value())?.map(|d| d.value()));
            out.amounts.push(amounts.get(k.value())?.map(|a| a.value()));
        }
        Ok(out)
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
        json_at(&txn.open_table(PERFORMANCE)?, pipeline)
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
    fn a_labelled_prediction_keeps_the_decision_it_was_served_with() {
        let dir = std::env::temp_dir().join(format!("mlops-monitor-decided-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.redb");
        let _ = std::fs::remove_file(&path);
        let logged = |score: f64, positive: Option<bool>| Logged {
            pipeline: "churn".into(),
            version: 2,
            score,
            time_unix_ms: 1,
            positive,
            inputs: None,
            amount: positive.map(|_| score * 10.0),
        };
        {
            let store = Store::open(&path).unwrap();
            let kept = [("a", logged(0.3, Some(true))), ("b", logged(0.6, Some(false))), ("c", logged(0.7, None))];
            store.index_predictions(kept.iter().map(|(id, l)| (*id, l.clone())), 0).unwrap();
            let read = |l: &str| l.parse::<f64>().ok();
            store.join_labels("churn", [("a", "1"), ("b", "0"), ("c", "1")], read, None).unwrap();
        }
        let kept = Store::open(&path).unwrap().labelled("churn", 2, 10).unwrap();
        assert_eq!((kept.labels, kept.scores, kept.total), (vec![1.0, 0.0, 1.0], vec![0.7, 0.6, 0.3], 3));
        assert_eq!(kept.positive, [None, Some(false), Some(true)]);
        assert_eq!(kept.amounts, [None, Some(6.0), Some(3.0)]);
        let _ = std::fs::remove_dir_all(&dir);
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

    #[test]
    fn an_erasure_forgets_the_subjects_inputs_and_waiting_rows_but_not_a_stored_cut() {
        let dir = std::env::temp_dir().join(format!("mlops-monitor-erasure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join("monitor.redb"));
        let store = Store::open(&dir.join("monitor.redb")).unwrap();
        let logged = |x: f64, email: &str| Logged {
            pipeline: "churn".into(),
            version: 1,
            score: 0.5,
            time_unix_ms: 10,
            positive: None,
            inputs: Some(Inputs {
                numeric: BTreeMap::from([("tenure".into(), x)]),
                categorical: BTreeMap::from([("email".into(), email.into())]),
            }),
            amount: None,
        };
        let kept = [("p1", logged(7.0, " a@b.org")), ("p2", logged(8.0, "c@d.org")), ("p3", logged(7.0, "e@f.org"))];
        store.index_predictions(kept.iter().map(|(id, l)| (*id, l.clone())), 0).unwrap();
        let join = FeedbackJoin { max_age_ms: 100, now_ms: 20 };
        store.join_labels("churn", [("p1", "1"), ("p2", "0")], |l| l.parse().ok(), Some(join)).unwrap();
        store.cut_feedback("churn", 1_000).unwrap().unwrap();

        // By text, trimmed: p1's waiting row goes, the unstored cut is undone, p1 keeps its score.
        let erased = store.erase_inputs("churn", "email", |v| v == "a@b.org").unwrap();
        assert_eq!(erased, ErasedInputs { predictions: 1, waiting: 1, in_stored_cut: 0 });
        let state = store.feedback_state("churn").unwrap();
        assert_eq!((state.waiting, state.cut), (1, None));
        let cut = store.cut_feedback("churn", 1_000).unwrap().unwrap();
        let rows = store.cut_rows("churn", &cut).unwrap();
        assert_eq!(rows.iter().map(|r| r.prediction_id.as_str()).collect::<Vec<_>>(), ["p2"]);
        // p3's label comes later: its prediction has no inputs left to make a feedback row of.
        assert_eq!(store.erase_inputs("churn", "tenure", |v| v == "7").unwrap().predictions, 1);
        let joined = store.join_labels("churn", [("p3", "1")], |l| l.parse().ok(), Some(join)).unwrap();
        assert_eq!((joined.feedback, joined.versions.len()), (0, 1));
        // A stored cut is left as written, and counted; another pipeline is not touched.
        let stored = StoredCut { dataset_id: "abc".into(), origin: Default::default() };
        store.cut_stored("churn", cut.sequence, stored).unwrap();
        let erased = store.erase_inputs("churn", "email", |v| v == "c@d.org").unwrap();
        assert_eq!((erased.waiting, erased.in_stored_cut), (0, 1));
        assert_eq!(store.erase_inputs("other", "email", |_| true).unwrap(), ErasedInputs::default());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn labelled_predictions_wait_for_feedback_once_and_a_cut_survives_a_crash() {
        let dir = std::env::temp_dir().join(format!("mlops-monitor-feedback-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.redb");
        let _ = std::fs::remove_file(&path);
        let hour = 3_600_000;
        let logged = |at: i64, x: f64| Logged {
            pipeline: "churn".into(),
            version: 1,
            score: 0.5,
            time_unix_ms: at,
            positive: None,
            inputs: Some(Inputs { numeric: BTreeMap::from([("tenure".into(), x)]), categorical: BTreeMap::new() }),
            amount: None,
        };
        let join = FeedbackJoin { max_age_ms: 24 * hour, now_ms: 30 * hour };
        let read = |l: &str| l.parse::<f64>().ok();
        let cut = {
            let store = Store::open(&path).unwrap();
            let kept = [("p1", logged(20 * hour, 1.0)), ("p2", logged(21 * hour, 2.0)), ("old", logged(hour, 3.0))];
            store.index_predictions(kept.iter().map(|(id, l)| (*id, l.clone())), 0).unwrap();
            let joined = store.join_labels("churn", [("p1", "1"), ("old", "0")], read, Some(join)).unwrap();
            assert_eq!((joined.feedback, joined.late), (1, 1));
            // Delivered again: used once.
            let again = store.join_labels("churn", [("p1", "1"), ("p2", "0")], read, Some(join)).unwrap();
            assert_eq!((again.already, again.feedback), (1, 1));
            let state = store.feedback_state("churn").unwrap();
            assert_eq!((state.waiting, state.late, state.versions), (2, 1, 0));
            assert_eq!(store.oldest_waiting("churn").unwrap(), Some(30 * hour));
            assert_eq!(store.feedback_pending().unwrap(), ["churn"]);
            store.cut_feedback("churn", 1_000).unwrap().unwrap()
        };
        // The process died after the cut: the cut is found again, and its rows are the same, while
        // rows labelled since wait for the next version.
        let store = Store::open(&path).unwrap();
        store.index_predictions([("p3", logged(29 * hour, 4.0))], 0).unwrap();
        store.join_labels("churn", [("p3", "1")], read, Some(join)).unwrap();
        assert_eq!(store.cut_feedback("churn", 1_000).unwrap(), Some(cut.clone()));
        assert_eq!(cut, Cut { sequence: 1, upto: 2, rows: 2, stored: None });
        // Once stored, a retry finds which version it was, to announce that one again.
        let stored = StoredCut { dataset_id: "abc".into(), origin: Default::default() };
        store.cut_stored("churn", 1, stored.clone()).unwrap();
        let cut = store.cut_feedback("churn", 1_000).unwrap().unwrap();
        assert_eq!(cut.stored, Some(stored));
        let rows = store.cut_rows("churn", &cut).unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.prediction_id.as_str()).collect();
        assert_eq!(ids, ["p1", "p2"]);
        assert_eq!((rows[1].label.as_str(), rows[1].inputs.numeric["tenure"]), ("0", 2.0));
        store.feedback_written("churn", &cut, "abc").unwrap();
        store.feedback_written("churn", &cut, "abc").unwrap();
        let state = store.feedback_state("churn").unwrap();
        assert_eq!((state.waiting, state.versions, state.last_dataset_id.as_str(), state.cut), (1, 1, "abc", None));
        let next = store.cut_feedback("churn", 1_000).unwrap().unwrap();
        assert_eq!(next, Cut { sequence: 2, upto: 3, rows: 1, stored: None });
        assert_eq!(store.cut_rows("churn", &next).unwrap()[0].prediction_id, "p3");
        // The spec stops asking for feedback: what waits is dropped.
        assert_eq!(store.forget_feedback("churn").unwrap(), 1);
        assert!(store.feedback_pending().unwrap().is_empty());
        assert_eq!(store.oldest_waiting("churn").unwrap(), None);
        // Without feedback, nothing waits.
        store.index_predictions([("p4", logged(29 * hour, 5.0))], 0).unwrap();
        assert_eq!(store.join_labels("churn", [("p4", "1")], read, None).unwrap().feedback, 0);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
