//! Erasure in the monitor: the deployer logs a prediction's features, so when an erasure's column
//! is a feature, the monitor forgets the inputs of the subject's kept predictions and drops their
//! labelled rows waiting for the next feedback version, so that no later feedback version brings
//! the subject back. Rows are matched by the value's keyed hash, as ingest matched them, which
//! needs the same `MLOPS_PII_KEY`. An erasure from a feature view makes the skew check read the
//! view's offline log again.
//!
//! Predictions logged before the erasure but not yet read when it ran are not kept either: the
//! subject is forgotten at once, and on every later delivery until the monitor had read the
//! prediction log through the sequence `data.erased` names before forgetting (the event is
//! delivered again, ever later). The archive's files are ingest's to rewrite.

use std::sync::Arc;
use std::time::Duration;

use mlops_proto as pb;
use mlops_shared::bus::PREDICTIONS_STREAM;
use mlops_shared::events::Envelope;
use mlops_shared::pii::Pseudonymiser;
use tracing::{info, warn};

use crate::error::MonitorError;
use crate::{Monitor, PREDICTIONS_CONSUMER};

/// How long an erasure waits before delivery `delivered + 1` while the log is not read through
/// it: a second, doubling up to a minute. It waits as long as that takes (a monitor far behind).
fn read_through_retry(delivered: u64) -> Duration {
    Duration::from_secs(1 << delivered.clamp(1, 7).saturating_sub(1)).min(Duration::from_secs(60))
}

fn log_error(e: impl std::fmt::Display) -> MonitorError {
    MonitorError::Log(e.to_string())
}

impl Monitor {
    /// Forgets what the monitor keeps of the subject `data.erased` names.
    pub(crate) async fn on_erased(&self, e: Envelope<pb::DataErased>) -> Result<(), MonitorError> {
        let delivered = e.delivered;
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
        // Whether the log was read through the erasure's start is asked before forgetting: what is
        // kept after the answer is forgotten now, or on a later delivery.
        let through = self.read_through(erased.predictions_sequence).await?;
        self.forget_subject(&erased, &key, numeric).await?;
        if !through {
            if delivered.is_multiple_of(20) {
                warn!(pipeline = %erased.pipeline, erasure = %erased.erasure_id, delivered,
                      through = erased.predictions_sequence, "the prediction log is not read through the erasure yet");
            }
            return Err(MonitorError::NotYet(read_through_retry(delivered)));
        }
        Ok(())
    }

    /// Whether this monitor has read (and kept) the prediction log through sequence `seq`, or
    /// the log no longer holds anything up to it.
    async fn read_through(&self, seq: u64) -> Result<bool, MonitorError> {
        if seq == 0 {
            return Ok(true);
        }
        let mut log = self.bus.js.get_stream(PREDICTIONS_STREAM).await.map_err(log_error)?;
        let info = log.consumer_info(PREDICTIONS_CONSUMER).await.map_err(log_error)?;
        let gone = log.info().await.map_err(log_error)?.state.first_sequence > seq;
        Ok(gone || info.ack_floor.stream_sequence >= seq || (info.num_pending == 0 && info.num_ack_pending == 0))
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
        if forgot.predictions + forgot.waiting > 0 {
            info!(pipeline = %erased.pipeline, erasure = %erased.erasure_id, predictions = forgot.predictions,
                  waiting = forgot.waiting, "the subject's kept predictions forgotten");
        }
        if forgot.in_stored_cut > 0 {
            warn!(pipeline = %erased.pipeline, erasure = %erased.erasure_id, rows = forgot.in_stored_cut,
                  "rows of the subject are in a feedback version already written: erase again once it is catalogued");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erasure_waiting_for_the_log_looks_again_later_each_time_up_to_a_minute() {
        let waits: Vec<u64> = [1, 2, 3, 6, 7, 500].into_iter().map(|d| read_through_retry(d).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 32, 60, 60]);
    }
}
