//! Feedback versions: production truth becomes training data. For a pipeline with
//! `monitoring.feedback`, the monitor keeps each logged prediction's inputs; a label that joins
//! one makes a row waiting for the next feedback version (in the same commit that marks the label
//! used, so a row is used once). Once `min_rows` wait, or the oldest has waited `max_age_hours`,
//! the rows are fixed (a *cut*, recorded before anything is written), written as Parquet — the
//! spec's features and target, then `prediction_id`, `model_version` and `predicted_at` — into the
//! `datasets` bucket by their sha256, and announced as `data.arrived` with `feedback` set. Ingest
//! catalogues the version with origin `feedback`, and the validator judges it like any upload.
//!
//! Once the file is stored its sha256 is recorded with the cut, and only once it is announced do
//! the rows stop waiting. A crash in between finds the cut again: before the file was stored, it
//! writes the same rows; after, it announces the stored version again, whatever changed meanwhile.
//! Ingest sees known content, and the stream drops a repeated event (its id is the sha256) within
//! its duplicate window.

use std::collections::BTreeSet;
use std::time::Duration;

use mlops_proto as pb;
use mlops_shared::events::EventContext;
use mlops_shared::ids::Sha256;
use mlops_shared::spec::{FeatureKind, FeedbackSpec, MAX_FEEDBACK_ROWS, PipelineSpec};
use mlops_shared::table::{Column, Frame};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Monitor;
use crate::error::MonitorError;
use crate::store::{Cut, FeedbackRow, StoredCut};

/// How often pipelines with waiting rows are looked at for their age (and cuts left by a crash
/// are finished).
const AGE_CHECK: Duration = Duration::from_secs(1);

impl Monitor {
    /// Writes `pipeline`'s next feedback version when one is due (or one was cut and not
    /// written); the dataset id of what it wrote, if anything.
    pub(crate) async fn write_feedback_if_due(&self, pipeline: &str) -> Result<Option<String>, MonitorError> {
        let spec = self.specs.get(pipeline).await?;
        // One writer at a time: the label consumer and the age check may both find a version due.
        let _writing = self.feedback_writer.lock().await;
        let Some((spec, feedback)) = spec.and_then(|s| s.monitoring.feedback.clone().map(|f| (s, f))) else {
            // The spec no longer asks for feedback (or is gone): what waits is not written.
            let p = pipeline.to_owned();
            let dropped = self.commit(move |store| store.forget_feedback(&p)).await?;
            if dropped > 0 {
                info!(pipeline, dropped, "no `monitoring.feedback` any more: labelled rows waiting dropped");
            }
            return Ok(None);
        };
        let state = self.store.feedback_state(pipeline)?;
        let oldest = self.store.oldest_waiting(pipeline)?;
        if state.cut.is_none() && !due(&feedback, state.waiting, oldest, mlops_shared::now_unix_ms()) {
            return Ok(None);
        }
        let p = pipeline.to_owned();
        let Some(cut) = self.commit(move |store| store.cut_feedback(&p, MAX_FEEDBACK_ROWS)).await? else {
            return Ok(None);
        };
        let stored = match cut.stored.clone() {
            Some(stored) => stored,
            None => self.store_cut(pipeline, spec, &cut).await?,
        };
        let sha = Sha256::parse(stored.dataset_id.clone())?;
        let event = pb::DataArrived {
            pipeline: pipeline.to_owned(),
            object: sha.to_string(),
            source: format!("feedback:{pipeline}#{}", cut.sequence),
            path: String::new(),
            environment: "training".into(),
            feedback: Some(stored.origin),
        };
        let ctx = EventContext::new_run(format!("feedback-{pipeline}-{}", cut.sequence));
        self.bus.publish(&format!("feedback-{pipeline}-{sha}"), &ctx, &event).await?;
        let (p, id, c) = (pipeline.to_owned(), sha.to_string(), cut.clone());
        self.commit(move |store| store.feedback_written(&p, &c, &id)).await?;
        metrics::counter!("mlops_feedback_versions_total", "pipeline" => pipeline.to_owned()).increment(1);
        metrics::counter!("mlops_feedback_rows_total", "pipeline" => pipeline.to_owned()).increment(cut.rows);
        info!(pipeline, version = cut.sequence, rows = cut.rows, dataset = %sha.short(), "feedback version written");
        Ok(Some(sha.to_string()))
    }

    /// Writes the version of `cut` as Parquet into the `datasets` bucket, and records which it is.
    async fn store_cut(&self, pipeline: &str, spec: PipelineSpec, cut: &Cut) -> Result<StoredCut, MonitorError> {
        let (p, store, c) = (pipeline.to_owned(), self.store.clone(), cut.clone());
        let written = mlops_shared::bus::off_runtime(move || {
            let rows = store.cut_rows(&p, &c)?;
            feedback_version(&spec, &rows, &c)
        })
        .await?;
        let sha = self.datasets.put(&written.bytes).await?;
        let stored = StoredCut { dataset_id: sha.to_string(), origin: written.origin };
        let (p, s, sequence) = (pipeline.to_owned(), stored.clone(), cut.sequence);
        self.commit(move |store| store.cut_stored(&p, sequence, s)).await?;
        Ok(stored)
    }

    /// Every second until `shutdown`: writes the feedback versions that came due by age, and
    /// finishes those a crash left cut and unwritten.
    pub(crate) async fn check_feedback_ages(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(AGE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let pending = match self.store.feedback_pending() {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "cannot read the feedback waiting");
                    continue;
                }
            };
            for pipeline in pending {
                if let Err(e) = self.write_feedback_if_due(&pipeline).await {
                    warn!(pipeline, error = %e, "feedback version not written; trying again");
                }
            }
        }
    }
}

/// Whether a feedback version is due: `min_rows` wait, or the oldest waiting row (labelled at
/// `oldest`, Unix ms) has waited `max_age_hours` by `now`.
fn due(spec: &FeedbackSpec, waiting: u64, oldest: Option<i64>, now: i64) -> bool {
    waiting >= spec.min_rows || (waiting > 0 && oldest.is_some_and(|t| now - t >= spec.max_age_ms()))
}

/// A feedback version's bytes and the lineage its announcement carries.
struct Written {
    bytes: Vec<u8>,
    origin: pb::FeedbackOrigin,
}

/// The Parquet file of `rows` under `spec`, and its lineage.
fn feedback_version(spec: &PipelineSpec, rows: &[FeedbackRow], cut: &Cut) -> Result<Written, MonitorError> {
    let columns = spec
        .features
        .iter()
        .map(|f| match f.kind {
            FeatureKind::Numeric => {
                Column::Numeric(rows.iter().map(|r| r.inputs.numeric.get(&f.name).copied()).collect())
            }
            FeatureKind::Categorical => {
                Column::Categorical(rows.iter().map(|r| r.inputs.categorical.get(&f.name).cloned()).collect())
            }
        })
        .collect();
    let inputs = Frame { columns, target: None, rows: rows.len() };
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    let ids: Vec<String> = rows.iter().map(|r| r.prediction_id.clone()).collect();
    let versions: Vec<u64> = rows.iter().map(|r| r.version).collect();
    let predicted: Vec<i64> = rows.iter().map(|r| r.predicted_ms).collect();
    let origin = pb::FeedbackOrigin {
        rows: rows.len() as u64,
        first_predicted_unix_ms: predicted.iter().copied().min().unwrap_or_default(),
        last_predicted_unix_ms: predicted.iter().copied().max().unwrap_or_default(),
        model_versions: versions.iter().copied().collect::<BTreeSet<_>>().into_iter().collect(),
        spec_validation_hash: spec.validation_hash(),
        sequence: cut.sequence,
    };
    let metadata = vec![
        ("mlops.pipeline".to_owned(), spec.name.to_string()),
        ("mlops.feedback.sequence".to_owned(), cut.sequence.to_string()),
        ("mlops.spec.validation_hash".to_owned(), origin.spec_validation_hash.clone()),
    ];
    let written = mlops_data::FeedbackRows {
        inputs: &inputs,
        labels: &labels,
        prediction_ids: &ids,
        model_versions: &versions,
        predicted_ms: &predicted,
    };
    let mut bytes = Vec::new();
    mlops_data::write_feedback(spec, &written, metadata, &mut bytes)
        .map_err(|e| MonitorError::Feedback(format!("writing feedback version {}: {e}", cut.sequence)))?;
    Ok(Written { bytes, origin })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_due_by_rows_or_by_the_age_of_the_oldest() {
        let spec = FeedbackSpec { min_rows: 100, max_age_hours: 1.0 };
        let hour = 3_600_000;
        assert!(due(&spec, 100, Some(0), 1));
        assert!(!due(&spec, 99, Some(0), hour - 1));
        assert!(due(&spec, 1, Some(0), hour));
        assert!(!due(&spec, 0, None, 10 * hour));
    }
}
