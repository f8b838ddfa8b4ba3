//! Erasure in the monitor: the deployer logs a prediction's features, so when an erasure's column
//! is a feature, the monitor forgets the inputs of the subject's kept predictions and drops their
//! labelled rows waiting for the next feedback version, so that no later feedback version brings
//! the subject back. Rows are matched by the value's keyed hash, as ingest matched them, which
//! needs the same `MLOPS_PII_KEY`. An erasure from a feature view makes the skew check read the
//! view's offline log again.
//!
//! Predictions logged before the erasure but not yet read when it ran are not kept: the monitor
//! first reads the prediction log through the sequence `data.erased` names, and, when it writes
//! the archive, waits for the archive to hold the log through it too, then writes the files
//! archived since ingest looked (or any it missed) again without the subject.

use std::sync::Arc;
use std::time::Duration;

use mlops_proto as pb;
use mlops_shared::bus::{EVENTS_STREAM, PREDICTIONS_STREAM};
use mlops_shared::events::Envelope;
use mlops_shared::pii::Pseudonymiser;
use tracing::{info, warn};

use crate::error::MonitorError;
use crate::{Monitor, PREDICTIONS_CONSUMER};

/// How long an erasure waits before it looks again whether the log was read through.
const READ_THROUGH_RETRY: Duration = Duration::from_secs(2);

/// Deliveries of one `data.erased`: ten minutes of waiting for the log to be read and archived
/// through it (the archive flushes every `MLOPS_ARCHIVE_FLUSH_SECS`, a minute by default).
pub(crate) const MAX_DELIVER: i64 = 300;

fn log_error(e: impl std::fmt::Display) -> MonitorError {
    MonitorError::Log(e.to_string())
}

impl Monitor {
    /// Forgets what the monitor keeps of the subject `data.erased` names.
    pub(crate) async fn on_erased(&self, e: Envelope<pb::DataErased>) -> Result<(), MonitorError> {
        let erased = e.payload;
        // A feature view's files were written again without the subject: read them again.
        self.offline.forget(&erased.pipeline);
        let Some(spec) = self.specs.get(&erased.pipeline).await? else {
            return Ok(()); // a feature view, or a pipeline deleted since: nothing of it is kept
        };
        let Some(feature) = spec.features.iter().find(|f| f.name == erased.column) else {
            return Ok(()); // only features are logged with predictions
        };
        let numeric = feature.kind == mlops_shared::spec::FeatureKind::Numeric;
        let Some(key) = self.pseudonymiser.clone() else {
            return Err(MonitorError::Erasure(format!(
                "{}: the monitor needs MLOPS_PII_KEY (the same as ingest's) to find the subject's kept predictions \
                 by feature `{}`",
                erased.erasure_id, erased.column
            )));
        };
        if !self.read_through(erased.predictions_sequence).await? {
            return Err(MonitorError::NotYet(READ_THROUGH_RETRY));
        }
        self.forget_subject(&erased, &key, numeric).await?;
        if let Some(archive) = &self.archive {
            erase_archived_late(archive, &self.bus, &erased, &key, numeric).await?;
        }
        Ok(())
    }

    /// Whether this monitor has read (and kept) the prediction log through sequence `seq`.
    async fn read_through(&self, seq: u64) -> Result<bool, MonitorError> {
        if seq == 0 {
            return Ok(true);
        }
        let log = self.bus.js.get_stream(PREDICTIONS_STREAM).await.map_err(log_error)?;
        let info = log.consumer_info(PREDICTIONS_CONSUMER).await.map_err(log_error)?;
        Ok(info.ack_floor.stream_sequence >= seq || (info.num_pending == 0 && info.num_ack_pending == 0))
    }

    /// Forgets the inputs of the subject's kept predictions and drops their labelled rows waiting
    /// for feedback.
    async fn forget_subject(
        &self,
        erased: &pb::DataErased,
        key: &Arc<Pseudonymiser>,
        numeric: bool,
    ) -> Result<(), MonitorError> {
        // Not while a feedback version is being written: its rows are fixed, and would be written
        // with the subject's.
        let _writer = self.feedback_writer.lock().await;
        let (pipeline, column, hash) = (erased.pipeline.clone(), erased.column.clone(), erased.subject_hash.clone());
        let key = key.clone();
        let forgot = self
            .commit(move |store| store.erase_inputs(&pipeline, &column, |cell| key.matches(cell, &hash, numeric)))
            .await?;
        metrics::counter!("mlops_erased_rows_total", "where" => "monitor")
            .increment(forgot.predictions + forgot.waiting);
        info!(pipeline = %erased.pipeline, erasure = %erased.erasure_id, predictions = forgot.predictions,
              waiting = forgot.waiting, "the subject's kept predictions forgotten");
        if forgot.in_stored_cut > 0 {
            warn!(pipeline = %erased.pipeline, erasure = %erased.erasure_id, rows = forgot.in_stored_cut,
                  "rows of the subject are in a feedback version already written: erase again once it is catalogued");
        }
        Ok(())
    }
}

/// Once the archive holds the prediction log through the erasure's sequence (and batch jobs'
/// outputs through the pipeline's last `batch.completed`), writes the archive files still holding
/// the subject again without them: those flushed after ingest looked. Idempotent: a file written
/// again holds none of the subject's rows, and its new object is named after the erasure.
async fn erase_archived_late(
    archive: &mlops_archive::Archive,
    bus: &mlops_shared::bus::Bus,
    erased: &pb::DataErased,
    key: &Arc<Pseudonymiser>,
    numeric: bool,
) -> Result<(), MonitorError> {
    let last_job = {
        let events = bus.js.get_stream(EVENTS_STREAM).await.map_err(log_error)?;
        let subject = format!("mlops.events.batch.completed.{}", erased.pipeline);
        events.get_last_raw_message_by_subject(&subject).await.map_or(0, |m| m.sequence)
    };
    let predictions = archive.listed_through(erased.predictions_sequence).await.map_err(log_error)?;
    let jobs = archive.batches().listed_through(last_job).await.map_err(log_error)?;
    if !(predictions && jobs) {
        return Err(MonitorError::NotYet(READ_THROUGH_RETRY));
    }
    let (hash, key) = (erased.subject_hash.clone(), key.clone());
    let matches = move |cell: &str| key.matches(cell, &hash, numeric);
    let rewritten = archive
        .rewrite_without(&erased.pipeline, &erased.column, &matches, &erased.erasure_id)
        .await
        .map_err(log_error)?;
    for r in &rewritten {
        archive.swap(r).await.map_err(log_error)?;
    }
    let rows: u64 = rewritten.iter().map(|r| r.rows_removed).sum();
    metrics::counter!("mlops_erased_rows_total", "where" => "archive").increment(rows);
    if !rewritten.is_empty() {
        info!(pipeline = %erased.pipeline, erasure = %erased.erasure_id, files = rewritten.len(), rows,
              "the subject erased from files archived after the erasure began");
    }
    Ok(())
}
