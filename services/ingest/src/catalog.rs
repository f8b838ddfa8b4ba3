//! The dataset catalog in redb: one row per (dataset id, pipeline) with its source, size, arrival
//! time and validation verdicts. Content is judged in rounds: round 0 when it first arrives, one
//! more each time it is validated again (`revalidate`, or an upload under a changed validation
//! spec); the current round's verdict is on the row, earlier ones in its history.

use std::path::Path;

use mlops_shared::ids::{PrefixError, resolve_prefix};
use mlops_shared::spec::Origin;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const DATASETS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("datasets");
/// Erasures by id: the audit record (`pb::DataErased` as JSON) and whether it was published.
const ERASURES: TableDefinition<&str, &[u8]> = TableDefinition::new("erasures");

/// What validation said of a dataset version (stored as `pending`, `accepted` or `rejected`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not validated yet.
    #[default]
    Pending,
    /// Validated: may be trained on.
    Accepted,
    /// Quarantined with its report: never trained on.
    Rejected,
}

impl Verdict {
    /// The name in the API and the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }

    /// Reads a verdict's name, as a list request filters by it.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Pending, Self::Accepted, Self::Rejected].into_iter().find(|v| v.as_str() == name)
    }
}

/// A catalogued dataset version. The default is a new version's row before anything happened to
/// it: pending, unpublished, round 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub dataset_id: String,
    pub pipeline: String,
    pub source: String,
    pub format: String,
    pub size_bytes: u64,
    pub arrived_unix_ms: i64,
    pub verdict: Verdict,
    pub rows: u64,
    pub verdict_detail: String,
    /// Whether `data.ingested` was acknowledged by the stream.
    pub published: bool,
    /// Hex of the protobuf `Dataset` carrying the anomalies and the profile (empty until validated).
    #[serde(default)]
    pub report_hex: String,
    /// "training" or "serving" (records written before environments existed read as training).
    #[serde(default = "training")]
    pub environment: String,
    /// The current round of validation (0 for the first).
    #[serde(default)]
    pub round: u32,
    /// The spec's validation hash the current verdict was given under (empty while pending, and
    /// in records older than rounds).
    #[serde(default)]
    pub validation_hash: String,
    /// Verdicts of earlier rounds, oldest first.
    #[serde(default)]
    pub history: Vec<PastVerdict>,
    /// When the current verdict was recorded (0 while pending, and in records older than rounds).
    #[serde(default)]
    pub decided_unix_ms: i64,
    /// How it came (`upload`, `path`, `object`, `feedback`); empty in records older than
    /// origins, which [`DatasetRecord::origin`] reads from the source.
    #[serde(default)]
    pub origin: String,
    /// For a feedback version, the predictions its rows came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<mlops_proto::FeedbackOrigin>,
    /// Set once an erasure removed rows of this version: its content is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased: Option<mlops_proto::ErasedMark>,
    /// For a version an erasure wrote: the version it replaced.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub erased_from: String,
}

/// An erasure as the catalog keeps it: its audit record, and whether `data.erased` was published
/// (an erasure interrupted before is finished when ingest starts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureRecord {
    pub audit: mlops_proto::DataErased,
    pub published: bool,
    /// The archive files written again, recorded before their manifest entries move to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archive: Vec<mlops_archive::Rewritten>,
    /// Whether the column is numeric (its cells compare as numbers) and a feature (logged with
    /// predictions, so the archive and the monitor may hold it).
    #[serde(default)]
    pub numeric: bool,
    #[serde(default)]
    pub feature: bool,
    /// Whether the pipeline is a feature view, erased by an entity key column.
    #[serde(default)]
    pub view: bool,
    /// The second look at the archive an erasure by a feature still has to take, once the
    /// archive holds the logs through where they were when it began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<LateLook>,
}

/// Where the logs the archive is written from were when an erasure began: predictions logged
/// (and batch jobs announced) by then but archived after its first look at the archive are
/// erased by a second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateLook {
    /// The last sequence of the prediction log.
    pub predictions: u64,
    /// The sequence of the pipeline's last `batch.completed` in the events stream (0: none).
    pub batches: u64,
    /// When the erasure began (Unix ms): the second look is given up a day later.
    pub since_ms: i64,
}

impl DatasetRecord {
    /// How it came; for records older than origins, as their source says (`file:…` and
    /// `object:…` were `data.arrived`, anything else an upload).
    pub fn origin(&self) -> Origin {
        if let Ok(o) = Origin::parse(&self.origin)
            && !self.origin.is_empty()
        {
            return o;
        }
        if self.source.starts_with("file:") {
            Origin::Path
        } else if self.source.starts_with("object:") {
            Origin::Object
        } else {
            Origin::Upload
        }
    }
}

/// A verdict a later round replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastVerdict {
    pub verdict: Verdict,
    pub rows: u64,
    pub detail: String,
    pub validation_hash: String,
    pub round: u32,
    pub decided_unix_ms: i64,
}

/// What the validator said of one round.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub verdict: Verdict,
    pub rows: u64,
    pub detail: String,
    /// Hex of the protobuf report (anomalies and profile).
    pub report_hex: String,
    pub validation_hash: String,
    pub round: u32,
}

/// What became of a verdict sent to [`Catalog::set_verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Recorded,
    /// It answers a round a newer one replaced (a late redelivery): kept out of the row.
    Stale,
    /// No such dataset.
    Unknown,
}

fn training() -> String {
    "training".into()
}

/// Writes `erasure`'s record in `txn`.
fn insert_erasure(txn: &redb::WriteTransaction, erasure: &ErasureRecord) -> Result<(), CatalogError> {
    let mut erasures = txn.open_table(ERASURES)?;
    erasures.insert(erasure.audit.erasure_id.as_str(), serde_json::to_vec(erasure)?.as_slice())?;
    Ok(())
}

/// Catalog errors.
#[derive(Debug, thiserror::Error)]
#[error("catalog database: {0}")]
pub struct CatalogError(#[from] mlops_shared::DbError);

mlops_shared::redb_errors!(CatalogError);

/// Why [`Catalog::find`] found no row.
#[derive(Debug, thiserror::Error)]
pub enum Found {
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    #[error("dataset {id} is not in pipeline `{pipeline}`")]
    NotInPipeline { id: String, pipeline: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// The catalog database.
pub struct Catalog {
    db: Database,
}

impl Catalog {
    /// Opens (or creates) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        // redb caches up to 1 GiB by default, which reads as a leak in a long-running process:
        // 16 MiB is the bound (catalog records are few and small).
        let db = redb::Builder::new().set_cache_size(16 << 20).create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(DATASETS)?;
        txn.open_table(ERASURES)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// The row for `id` in `pipeline`.
    pub fn get(&self, id: &str, pipeline: &str) -> Result<Option<DatasetRecord>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DATASETS)?;
        Ok(match table.get((id, pipeline))? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// The rows whose id is `id` or starts with it, any pipeline (at most `limit`).
    fn starting_with(&self, id: &str, limit: usize) -> Result<Vec<DatasetRecord>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DATASETS)?;
        let mut out = Vec::new();
        for kv in table.range((id, "")..)? {
            let (k, v) = kv?;
            if !k.value().0.starts_with(id) || out.len() >= limit {
                break;
            }
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// The rows of content `id`, one per pipeline it arrived in.
    pub fn of_content(&self, id: &str) -> Result<Vec<DatasetRecord>, CatalogError> {
        Ok(self.starting_with(id, 1000)?.into_iter().filter(|r| r.dataset_id == id).collect())
    }

    /// The row for `id` or a unique prefix of it (as [`resolve_prefix`] resolves), in `pipeline`
    /// or, when that is empty, the first pipeline that has it.
    pub fn find(&self, id: &str, pipeline: &str) -> Result<DatasetRecord, Found> {
        let rows = self.starting_with(id.trim(), 1000)?;
        let full = resolve_prefix("dataset", id, rows.iter().map(|r| r.dataset_id.as_str()))?;
        let mut of_id = rows.into_iter().filter(|r| r.dataset_id == full);
        let found = if pipeline.is_empty() { of_id.next() } else { of_id.find(|r| r.pipeline == pipeline) };
        found.ok_or_else(|| Found::NotInPipeline { id: full, pipeline: pipeline.into() })
    }

    /// Inserts or replaces a row.
    pub fn put(&self, record: &DatasetRecord) -> Result<(), CatalogError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(DATASETS)?;
            table.insert(
                (record.dataset_id.as_str(), record.pipeline.as_str()),
                serde_json::to_vec(record)?.as_slice(),
            )?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Changes the row of `id` in `pipeline` in one transaction, `change` answering what it did;
    /// `None` when there is no such row.
    fn update<T>(
        &self,
        id: &str,
        pipeline: &str,
        change: impl FnOnce(&mut DatasetRecord) -> T,
    ) -> Result<Option<T>, CatalogError> {
        let txn = self.db.begin_write()?;
        let answer = {
            let mut table = txn.open_table(DATASETS)?;
            let mut record: DatasetRecord = match table.get((id, pipeline))? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => return Ok(None),
            };
            let answer = change(&mut record);
            table.insert((id, pipeline), serde_json::to_vec(&record)?.as_slice())?;
            answer
        };
        txn.commit()?;
        Ok(Some(answer))
    }

    /// Records the validator's verdict on one round, with its report.
    pub fn set_verdict(&self, id: &str, pipeline: &str, judged: Judgement) -> Result<Recorded, CatalogError> {
        let recorded = self.update(id, pipeline, |record| {
            if judged.round < record.round {
                return Recorded::Stale;
            }
            record.verdict = judged.verdict;
            record.rows = judged.rows;
            record.verdict_detail = judged.detail;
            record.report_hex = judged.report_hex;
            record.validation_hash = judged.validation_hash;
            record.round = judged.round;
            record.decided_unix_ms = mlops_shared::now_unix_ms();
            Recorded::Recorded
        })?;
        Ok(recorded.unwrap_or(Recorded::Unknown))
    }

    /// Marks `round` of `id` in `pipeline` as published, changing nothing else: a verdict the
    /// validator sent meanwhile stays. `false` when the row is gone or has moved to another round.
    pub fn mark_published(&self, id: &str, pipeline: &str, round: u32) -> Result<bool, CatalogError> {
        let marked = self.update(id, pipeline, |record| {
            record.published |= record.round == round;
            record.round == round
        })?;
        Ok(marked == Some(true))
    }

    /// Opens the next round of validation of `id` in `pipeline`: its verdict moves to the history
    /// and it is pending again, its `data.ingested` not yet published. `None` when unknown.
    pub fn begin_round(&self, id: &str, pipeline: &str) -> Result<Option<DatasetRecord>, CatalogError> {
        self.update(id, pipeline, |record| {
            if record.verdict != Verdict::Pending {
                record.history.push(PastVerdict {
                    verdict: record.verdict,
                    rows: record.rows,
                    detail: std::mem::take(&mut record.verdict_detail),
                    validation_hash: std::mem::take(&mut record.validation_hash),
                    round: record.round,
                    decided_unix_ms: std::mem::take(&mut record.decided_unix_ms),
                });
            }
            record.round += 1;
            record.verdict = Verdict::Pending;
            record.report_hex.clear();
            record.published = false;
            record.clone()
        })
    }

    /// Records that `erasure` erased version `id` of its pipeline — marking its row with `mark`
    /// and dropping its report and verdict details, which may quote values of the erased content
    /// — and catalogues its successor (unless that content is already a version of the
    /// pipeline), in one transaction: the audit record, the mark and the successor appear
    /// together or not at all.
    pub fn record_erased(
        &self,
        erasure: &ErasureRecord,
        id: &str,
        mark: mlops_proto::ErasedMark,
        successor: Option<&DatasetRecord>,
    ) -> Result<(), CatalogError> {
        let pipeline = erasure.audit.pipeline.as_str();
        let txn = self.db.begin_write()?;
        {
            let mut datasets = txn.open_table(DATASETS)?;
            let current: Option<DatasetRecord> = match datasets.get((id, pipeline))? {
                Some(v) => Some(serde_json::from_slice(v.value())?),
                None => None,
            };
            if let Some(mut erased) = current {
                erased.erased = Some(mark);
                erased.report_hex.clear();
                erased.verdict_detail.clear();
                erased.history.iter_mut().for_each(|p| p.detail.clear());
                datasets.insert((id, pipeline), serde_json::to_vec(&erased)?.as_slice())?;
            }
            if let Some(s) = successor {
                let key = (s.dataset_id.as_str(), s.pipeline.as_str());
                if datasets.get(key)?.is_none() {
                    datasets.insert(key, serde_json::to_vec(s)?.as_slice())?;
                }
            }
        }
        insert_erasure(&txn, erasure)?;
        txn.commit()?;
        Ok(())
    }

    /// Writes an erasure's record.
    pub fn put_erasure(&self, erasure: &ErasureRecord) -> Result<(), CatalogError> {
        let txn = self.db.begin_write()?;
        insert_erasure(&txn, erasure)?;
        txn.commit()?;
        Ok(())
    }

    /// Erasure `id`'s record.
    pub fn erasure(&self, id: &str) -> Result<Option<ErasureRecord>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ERASURES)?;
        let Some(bytes) = table.get(id)? else { return Ok(None) };
        Ok(Some(serde_json::from_slice(bytes.value())?))
    }

    /// Erasures of `pipeline` (empty: all), oldest first.
    pub fn erasures(&self, pipeline: &str) -> Result<Vec<ErasureRecord>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ERASURES)?;
        let mut out = Vec::new();
        for kv in table.iter()? {
            let e: ErasureRecord = serde_json::from_slice(kv?.1.value())?;
            if pipeline.is_empty() || e.audit.pipeline == pipeline {
                out.push(e);
            }
        }
        out.sort_by_key(|e| (e.audit.requested_unix_ms, e.audit.erasure_id.clone()));
        Ok(out)
    }

    /// Rows filtered by pipeline (empty matches all) and verdict, oldest arrival first.
    pub fn list(&self, pipeline: &str, verdict: Option<Verdict>) -> Result<Vec<DatasetRecord>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DATASETS)?;
        let mut out = Vec::new();
        for kv in table.iter()? {
            let r: DatasetRecord = serde_json::from_slice(kv?.1.value())?;
            if (pipeline.is_empty() || r.pipeline == pipeline) && verdict.is_none_or(|v| r.verdict == v) {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.arrived_unix_ms.cmp(&b.arrived_unix_ms).then_with(|| a.dataset_id.cmp(&b.dataset_id)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_reopen_and_verdicts_update() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.redb");
        let c = Catalog::open(&path).unwrap();
        let r = DatasetRecord { dataset_id: "abc".into(), ..record() };
        c.put(&r).unwrap();
        assert_eq!(c.set_verdict("abc", "churn", judged(Verdict::Accepted, 0)).unwrap(), Recorded::Recorded);
        assert_eq!(c.set_verdict("zzz", "churn", judged(Verdict::Accepted, 0)).unwrap(), Recorded::Unknown);
        drop(c);
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.find("abc", "").unwrap().verdict, Verdict::Accepted);
        assert_eq!(c.list("churn", Some(Verdict::Accepted)).unwrap().len(), 1);
        assert!(c.list("churn", Some(Verdict::Rejected)).unwrap().is_empty());
        assert!(matches!(c.find("ab", ""), Err(Found::Prefix(PrefixError::TooShort { .. }))));
        assert!(matches!(c.find("abc", "other"), Err(Found::NotInPipeline { .. })));
    }

    fn judged(verdict: Verdict, round: u32) -> Judgement {
        Judgement {
            verdict,
            rows: 10,
            detail: format!("round {round}"),
            report_hex: String::new(),
            validation_hash: format!("h{round}"),
            round,
        }
    }

    #[test]
    fn rounds_keep_the_history_and_late_verdicts_of_old_rounds_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.redb")).unwrap();
        let id = "0123456789abcdef";
        c.put(&DatasetRecord { dataset_id: id.into(), ..record() }).unwrap();
        c.put(&DatasetRecord { dataset_id: "0123456789ffffff".into(), ..record() }).unwrap();
        c.set_verdict(id, "churn", judged(Verdict::Rejected, 0)).unwrap();
        let again = c.begin_round(id, "churn").unwrap().unwrap();
        assert_eq!((again.round, again.verdict, again.published), (1, Verdict::Pending, false));
        assert_eq!(c.set_verdict(id, "churn", judged(Verdict::Rejected, 0)).unwrap(), Recorded::Stale);
        c.set_verdict(id, "churn", judged(Verdict::Accepted, 1)).unwrap();
        let now = c.find("0123456789ab", "churn").unwrap();
        assert_eq!((now.verdict, now.validation_hash.as_str()), (Verdict::Accepted, "h1"));
        let past: Vec<_> = now.history.iter().map(|p| (p.verdict, p.round, p.detail.as_str())).collect();
        assert_eq!(past, [(Verdict::Rejected, 0, "round 0")]);
        let Err(Found::Prefix(PrefixError::Ambiguous { candidates, .. })) = c.find("01234567", "") else { panic!() };
        assert_eq!(candidates, ["0123456789abcdef", "0123456789ffffff"]);
        assert!(c.begin_round("nope", "churn").unwrap().is_none());
        // Marking a round published keeps a verdict that came first, and misses a replaced round.
        c.begin_round(id, "churn").unwrap();
        c.set_verdict(id, "churn", judged(Verdict::Accepted, 2)).unwrap();
        assert!(c.mark_published(id, "churn", 2).unwrap());
        let now = c.find(id, "churn").unwrap();
        assert_eq!((now.verdict, now.published, now.history.len()), (Verdict::Accepted, true, 2));
        assert!(!c.mark_published(id, "churn", 1).unwrap());
    }

    #[test]
    fn an_erasure_marks_the_old_row_and_adds_its_successor_with_its_audit_record_in_one_go() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.redb")).unwrap();
        let old = DatasetRecord {
            dataset_id: "old".into(),
            verdict: Verdict::Accepted,
            verdict_detail: "contract: unknown category \"x\"".into(),
            report_hex: "0a01".into(),
            ..record()
        };
        c.put(&old).unwrap();
        // A verdict recorded since the erasure read the catalog is kept.
        c.set_verdict("old", "churn", judged(Verdict::Accepted, 0)).unwrap();
        let mark =
            mlops_proto::ErasedMark { erasure_id: "e1".into(), successor_id: "new".into(), ..Default::default() };
        let successor = DatasetRecord { dataset_id: "new".into(), erased_from: "old".into(), ..record() };
        let audit = mlops_proto::DataErased { pipeline: "churn".into(), erasure_id: "e1".into(), ..Default::default() };
        let erasure = ErasureRecord {
            audit,
            published: false,
            archive: Vec::new(),
            numeric: false,
            feature: false,
            view: false,
            late: None,
        };
        c.record_erased(&erasure, "old", mark.clone(), Some(&successor)).unwrap();
        let marked = c.get("old", "churn").unwrap().unwrap();
        assert_eq!(marked.erased.unwrap().successor_id, "new");
        assert_eq!((marked.rows, marked.verdict_detail.as_str(), marked.report_hex.as_str()), (10, "", ""));
        assert_eq!(c.get("new", "churn").unwrap().unwrap().erased_from, "old");
        // A successor whose content the pipeline had already is left as it was.
        let known = DatasetRecord { dataset_id: "known".into(), verdict: Verdict::Accepted, ..record() };
        c.put(&known).unwrap();
        let as_successor = DatasetRecord { erased_from: "x".into(), ..known.clone() };
        c.record_erased(&erasure, "old", mark, Some(&as_successor)).unwrap();
        assert_eq!(c.get("known", "churn").unwrap().unwrap(), known);
        c.put_erasure(&ErasureRecord { published: true, ..erasure }).unwrap();
        let all = c.erasures("").unwrap();
        assert_eq!((all.len(), all[0].published), (1, true));
        assert!(c.erasures("other").unwrap().is_empty());
    }

    fn record() -> DatasetRecord {
        DatasetRecord {
            dataset_id: String::new(),
            pipeline: "churn".into(),
            source: "f.csv".into(),
            format: "csv".into(),
            size_bytes: 3,
            arrived_unix_ms: 5,
            verdict: Verdict::Pending,
            rows: 0,
            verdict_detail: String::new(),
            published: true,
            report_hex: String::new(),
            environment: "training".into(),
            round: 0,
            validation_hash: String::new(),
            history: Vec::new(),
            decided_unix_ms: 0,
            origin: String::new(),
            feedback: None,
            erased: None,
            erased_from: String::new(),
        }
    }
}
