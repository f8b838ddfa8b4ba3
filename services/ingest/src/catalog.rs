//! The dataset catalog in redb: one row per (dataset id, pipeline) with its source, size, arrival
//! time and validation verdict.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const DATASETS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("datasets");

/// What validation said of a dataset version (stored as `pending`, `accepted` or `rejected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not validated yet.
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

/// A catalogued dataset version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

fn training() -> String {
    "training".into()
}

/// Catalog errors.
#[derive(Debug, thiserror::Error)]
#[error("catalog database: {0}")]
pub struct CatalogError(#[from] mlops_shared::DbError);

mlops_shared::redb_errors!(CatalogError);

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

    /// The first row for `id`, whatever the pipeline.
    pub fn find(&self, id: &str) -> Result<Option<DatasetRecord>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DATASETS)?;
        let first = table.range((id, "")..)?.next().transpose()?;
        Ok(match first {
            Some((k, v)) if k.value().0 == id => Some(serde_json::from_slice(v.value())?),
            _ => None,
        })
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

    /// Records a validation verdict and its report; `false` when the dataset is unknown.
    pub fn set_verdict(
        &self,
        id: &str,
        pipeline: &str,
        verdict: Verdict,
        rows: u64,
        detail: &str,
        report_hex: String,
    ) -> Result<bool, CatalogError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(DATASETS)?;
            let mut record: DatasetRecord = match table.get((id, pipeline))? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => return Ok(false),
            };
            record.verdict = verdict;
            record.rows = rows;
            record.verdict_detail = detail.into();
            record.report_hex = report_hex;
            table.insert((id, pipeline), serde_json::to_vec(&record)?.as_slice())?;
        }
        txn.commit()?;
        Ok(true)
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
        let r = DatasetRecord {
            dataset_id: "abc".into(),
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
        };
        c.put(&r).unwrap();
        assert!(c.set_verdict("abc", "churn", Verdict::Accepted, 10, "", String::new()).unwrap());
        assert!(!c.set_verdict("zzz", "churn", Verdict::Accepted, 10, "", String::new()).unwrap());
        drop(c);
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.find("abc").unwrap().unwrap().verdict, Verdict::Accepted);
        assert_eq!(c.list("churn", Some(Verdict::Accepted)).unwrap().len(), 1);
        assert!(c.list("churn", Some(Verdict::Rejected)).unwrap().is_empty());
        assert!(c.find("ab").unwrap().is_none());
    }
}
