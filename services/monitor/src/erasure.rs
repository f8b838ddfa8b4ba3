//! Erasure in the monitor: the deployer logs a prediction's features, so when an erasure's column
//! is a feature, the monitor forgets the inputs of the subject's kept predictions and drops their
//! labelled rows waiting for the next feedback version, so that no later feedback version brings
//! the subject back. Rows are matched by the value's keyed hash, as ingest matched them, which
//! needs the same `MLOPS_PII_KEY`.

use mlops_proto as pb;
use mlops_shared::events::Envelope;
use tracing::{info, warn};

use crate::Monitor;
use crate::error::MonitorError;

impl Monitor {
    /// Forgets what the monitor keeps of the subject `data.erased` names.
    pub(crate) async fn on_erased(&self, e: Envelope<pb::DataErased>) -> Result<(), MonitorError> {
        let erased = e.payload;
        let Some(spec) = self.specs.get(&erased.pipeline).await? else {
            return Ok(()); // a pipeline deleted since: nothing of it is kept
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
        // Not while a feedback version is being written: its rows are fixed, and would be written
        // with the subject's.
        let _writer = self.feedback_writer.lock().await;
        let (pipeline, column, hash) = (erased.pipeline.clone(), erased.column.clone(), erased.subject_hash.clone());
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
