//! The prediction archive: the prediction log (`MLOPS_PREDICTIONS`) at rest.
//!
//! A compactor (run by the monitor) reads the stream in order from the sequence after the last
//! one archived, gathers its predictions per pipeline and hour (UTC), and writes each group as a
//! Parquet file plus a bloom filter of its prediction ids to the `archive` object store. The
//! manifest is the `archive` key-value bucket:
//!
//! - `flush.<first>`: one record per flush, naming the stream sequences it covers (`first` to
//!   `last`) and the files it wrote. It is *created* (never overwritten): the creation is the
//!   commit, so a flush is archived once or not at all, and the records form an unbroken chain
//!   (each starts at the sequence after the one before ends). A crash before the commit leaves
//!   files no record names, deleted at the next start; a crash after it leaves nothing to redo.
//! - `part.<pipeline>.<yyyymmddhh>`: the files of one partition, which queries read. Entries are
//!   added after their flush is committed, and added again (idempotently) at start-up.
//! - `head`: the newest flush's first sequence, a hint that spares walking the chain from 1.
//! - `audit.<pipeline>.<yyyymmddhh>`: the record of a partition deleted at the end of its
//!   retention (`audit: {retention_days}` in the pipeline's spec).
//! - `bjob.<batch id>`: the files holding a batch job's rows. Batch outputs (`batch.completed`)
//!   are archived into the same partitions by a chain of their own over the events (`bflush.`,
//!   `bhead`, `bpending`); labels likewise (`lflush.`, …, `lpart.`), under `_labels/`.
//!
//! Files are named by the flush's sequence range, `<pipeline>/<yyyymmddhh>/<first>-<last>.parquet`,
//! and each is checked against the sha256 the manifest holds before it is read: a file that fails
//! is reported, never skipped.

pub mod batches;
mod columns;
pub mod compact;
mod erase;
pub mod manifest;
pub mod query;
pub mod wire;

pub use columns::{Encoded, LABELS_DIR, LabelPartition, OWN_COLUMNS, Partition};
pub use compact::{Compactor, CompactorConfig};
pub use erase::Rewritten;
pub use manifest::{Archive, BatchRows, FileEntry, Flush, Log};
pub use query::{Export, Found};

/// Errors of the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive file {name} fails its checksum: the manifest says sha256 {expected}, the file hashes to {actual}")]
    Checksum { name: String, expected: String, actual: String },
    #[error("archive file {name} is named in the manifest but missing from the object store")]
    Missing { name: String },
    #[error("archive file {name} cannot be read: {message}")]
    Unreadable { name: String, message: String },
    #[error("archive manifest entry {key} cannot be read: {message}")]
    Manifest { key: String, message: String },
    #[error("writing an archive file: {0}")]
    Write(String),
    /// The bus or the object store did not answer: worth retrying.
    #[error("archive store: {0}")]
    Store(String),
    #[error("{0}")]
    BadRequest(String),
}

/// Milliseconds in an hour.
const HOUR_MS: i64 = 3_600_000;

/// The partition hour of a time, `yyyymmddhh` in UTC.
pub fn hour_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms.div_euclid(HOUR_MS) * HOUR_MS)
        .map_or_else(|| "1970010100".into(), |t| t.format("%Y%m%d%H").to_string())
}

/// The first millisecond of a partition hour `yyyymmddhh`.
pub fn hour_start(hour: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(&format!("{hour}0000"), "%Y%m%d%H%M%S")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// The time a prediction id was made, when it is a UUID of version 7 (the deployer's ids).
pub fn id_time(id: &str) -> Option<i64> {
    let uuid = uuid::Uuid::parse_str(id).ok()?;
    let (secs, nanos) = uuid.get_timestamp()?.to_unix();
    Some((secs as i64) * 1000 + i64::from(nanos / 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_utc_and_round_trip() {
        // 2026-12-03T13:59:59.999Z and the next millisecond.
        let t = 1_796_306_399_999;
        assert_eq!(hour_of(t), "2026120313");
        assert_eq!(hour_of(t + 1), "2026120314");
        assert_eq!(hour_start("2026120314"), Some(t + 1));
        assert_eq!(hour_start("2026139914"), None);
    }

    #[test]
    fn v7_ids_carry_their_time_and_others_none() {
        let before = mlops_shared::now_unix_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let t = id_time(&id).unwrap();
        assert!(t >= before && t <= mlops_shared::now_unix_ms(), "{t}");
        assert_eq!(id_time(&uuid::Uuid::new_v4().to_string()), None);
        assert_eq!(id_time("batch-1-7"), None);
    }
}
