//! Erasing a data subject's rows from the archive (`mlops data erase`). The deployer logs a
//! prediction's features, so a file holds a subject's rows only when the erasure's column is a
//! feature; a file is written again without them as a new object, and its manifest entry keeps
//! its name and points at the new object (`FileEntry::object`), so that indexing a flush again
//! never brings the old file back. The old object is deleted once the entry no longer names it.
//!
//! The caller records each [`Rewritten`] file before [`Archive::swap`] moves its entry, so that a
//! crash in between is finished by swapping again (both steps are idempotent).

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::{Archive, ArchiveError, FileEntry, OWN_COLUMNS};

/// A file an erasure wrote again: where it is in the manifest, the object that held it, and the
/// one that holds it now (a file of no rows when every row was the subject's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewritten {
    pub name: String,
    pub pipeline: String,
    pub hour: String,
    pub old_object: String,
    pub new_object: String,
    pub new_sha256: String,
    pub new_bytes: u64,
    pub rows_removed: u64,
    pub rows_kept: u64,
}

impl Archive {
    /// Writes each archived file of `pipeline` whose input `column` holds a value `matches` (a
    /// cell's trimmed text; integers as integers) again without those rows, as a new object
    /// named after `tag`. The manifest is left as it was: see [`Archive::swap`].
    pub async fn rewrite_without(
        &self,
        pipeline: &str,
        column: &str,
        matches: &(dyn Fn(&str) -> bool + Sync),
        tag: &str,
    ) -> Result<Vec<Rewritten>, ArchiveError> {
        let input = if OWN_COLUMNS.contains(&column) { format!("input.{column}") } else { column.to_owned() };
        let mut out = Vec::new();
        for hour in self.hours(pipeline).await? {
            for entry in self.partition(pipeline, &hour).await? {
                if !entry.inputs.contains_key(&input) {
                    continue;
                }
                let bytes = self.file(&entry).await?;
                let Some((kept, removed)) = without(&entry, bytes, &input, matches)? else { continue };
                // Written even with no row left: the entry stays, so that indexing its flush again
                // never brings the old file back.
                let parquet = crate::columns::to_parquet(&kept, pipeline, entry.first_sequence, entry.last_sequence)?;
                let rewritten = Rewritten {
                    name: entry.name.clone(),
                    pipeline: pipeline.to_owned(),
                    hour: hour.clone(),
                    old_object: entry.object_name().to_owned(),
                    new_object: format!("{}.{tag}", entry.name),
                    new_sha256: mlops_shared::sha256_hex(&parquet),
                    new_bytes: parquet.len() as u64,
                    rows_removed: removed,
                    rows_kept: kept.iter().map(|b| b.num_rows() as u64).sum(),
                };
                self.put_object(&rewritten.new_object, &parquet).await?;
                out.push(rewritten);
            }
        }
        Ok(out)
    }

    /// Points the manifest entry of `r.name` — in its partition and, for a batch job's file, in
    /// the job's list — at its new object, unless that was done already, then deletes the old
    /// object. Idempotent.
    pub async fn swap(&self, r: &Rewritten) -> Result<(), ArchiveError> {
        let key = self.part_key(&format!("part.{}.{}", r.pipeline, r.hour));
        let mut job = None;
        let moved = |files: &mut Vec<FileEntry>| {
            let Some(f) = files.iter_mut().find(|f| f.name == r.name && f.object_name() == r.old_object) else {
                return false;
            };
            f.object = r.new_object.clone();
            f.sha256 = r.new_sha256.clone();
            f.bytes = r.new_bytes;
            f.rows = r.rows_kept;
            true
        };
        self.change_partition(&key, |files| {
            job = files.iter().find(|f| f.name == r.name).and_then(|f| f.batch.as_ref()).map(|b| b.id.clone());
            moved(files)
        })
        .await?;
        if let Some(id) = job {
            self.change_partition(&format!("bjob.{id}"), moved).await?;
        }
        self.delete_object(&r.old_object).await
    }
}

/// The batches of `bytes` (the file of `entry`) without the rows whose `column` matches, and how
/// many it left out; `None` when none matched.
fn without(
    entry: &FileEntry,
    bytes: Bytes,
    column: &str,
    matches: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Option<(Vec<RecordBatch>, u64)>, ArchiveError> {
    let unreadable =
        |e: &dyn std::fmt::Display| ArchiveError::Unreadable { name: entry.name.clone(), message: e.to_string() };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| unreadable(&e))?
        .build()
        .map_err(|e| unreadable(&e))?;
    let (mut kept, mut removed) = (Vec::new(), 0u64);
    for batch in reader {
        let batch = batch.map_err(|e| unreadable(&e))?;
        let Ok(i) = batch.schema().index_of(column) else { return Ok(None) };
        let keep = mlops_data::keep_unmatched(batch.column(i), matches);
        let filtered = arrow_select::filter::filter_record_batch(&batch, &keep).map_err(|e| unreadable(&e))?;
        removed += (batch.num_rows() - filtered.num_rows()) as u64;
        kept.push(filtered);
    }
    Ok((removed > 0).then_some((kept, removed)))
}
