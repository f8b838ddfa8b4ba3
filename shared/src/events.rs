//! Typed events: which subject each message travels on, its CloudEvents attributes, and the
//! envelope a handler receives.

use mlops_proto as pb;

use crate::ids::PipelineName;

/// A protobuf message that travels on the bus.
pub trait Event: prost::Message + Default + Send + Sync + 'static {
    /// The subject without the trailing pipeline token, e.g. `mlops.events.data.ingested`.
    const SUBJECT_PREFIX: &'static str;
    /// The CloudEvents type, e.g. `io.mlops.data.ingested.v1`.
    const CE_TYPE: &'static str;

    /// The pipeline the event belongs to.
    fn pipeline(&self) -> &str;

    /// Decodes a proto3 JSON payload, for events that outside systems publish. `None` means JSON is
    /// not accepted for this event.
    fn from_json(_payload: &[u8]) -> Option<Result<Self, String>> {
        None
    }

    /// Decodes a protobuf payload of CloudEvents type `ce_type` (`None` when the message has no
    /// headers). An event that took the place of an older type reads that type too.
    fn from_protobuf(_ce_type: Option<&str>, payload: &[u8]) -> Result<Self, prost::DecodeError> {
        Self::decode(payload)
    }

    /// Checks fields that the protobuf encoding cannot require. The error names the problem.
    fn check(&self) -> Result<(), String> {
        PipelineName::new(self.pipeline()).map(drop).map_err(|e| e.to_string())
    }

    /// The subject for this event.
    fn subject(&self) -> String {
        format!("{}.{}", Self::SUBJECT_PREFIX, self.pipeline())
    }
}

macro_rules! event {
    ($ty:ty, $domain:literal, $fact:literal) => {
        impl Event for $ty {
            const SUBJECT_PREFIX: &'static str = concat!("mlops.events.", $domain, ".", $fact);
            const CE_TYPE: &'static str = concat!("io.mlops.", $domain, ".", $fact, ".v1");
            fn pipeline(&self) -> &str {
                &self.pipeline
            }
        }
    };
}

event!(pb::DataIngested, "data", "ingested");
event!(pb::DataValidated, "data", "validated");
event!(pb::DataRejected, "data", "rejected");
event!(pb::DataErased, "data", "erased");
event!(pb::FeaturesMaterialised, "features", "materialised");
event!(pb::ModelTrained, "model", "trained");
event!(pb::TrainingFailed, "model", "training_failed");
event!(pb::ModelRegistered, "model", "registered");
event!(pb::ModelEvaluated, "model", "evaluated");
event!(pb::ModelPromoted, "model", "promoted");
event!(pb::ModelRolledBack, "model", "rolled_back");
event!(pb::DriftDetected, "monitor", "drift_detected");
event!(pb::SkewDetected, "monitor", "skew_detected");
event!(pb::PerformanceDegraded, "monitor", "performance_degraded");
event!(pb::ModelBlocked, "model", "blocked");
event!(pb::CanaryStarted, "deployment", "canary_started");
event!(pb::StalenessReported, "model", "staleness_reported");
event!(pb::PipelineApplied, "pipeline", "applied");
event!(pb::BatchCompleted, "batch", "completed");

impl Event for pb::BatchRequested {
    const SUBJECT_PREFIX: &'static str = "mlops.events.batch.requested";
    const CE_TYPE: &'static str = "io.mlops.batch.requested.v1";
    fn pipeline(&self) -> &str {
        &self.pipeline
    }
    fn from_json(payload: &[u8]) -> Option<Result<Self, String>> {
        Some(serde_json::from_slice(payload).map_err(|e| format!("invalid batch.requested JSON: {e}")))
    }
    fn check(&self) -> Result<(), String> {
        PipelineName::new(&self.pipeline).map_err(|e| format!("batch.requested: {e}"))?;
        crate::ids::Sha256::parse(self.dataset_id.clone())
            .map_err(|e| format!("batch.requested: `datasetId` is not a dataset id: {e}"))?;
        let id_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
        if self.batch_id.is_empty() || self.batch_id.len() > 128 || !self.batch_id.chars().all(id_char) {
            return Err(format!(
                "batch.requested: `batchId` {:?} is not 1 to 128 letters, digits, `-` or `_`",
                self.batch_id
            ));
        }
        Ok(())
    }
}

impl Event for pb::DataArrived {
    const SUBJECT_PREFIX: &'static str = "mlops.events.data.arrived";
    const CE_TYPE: &'static str = "io.mlops.data.arrived.v1";
    fn pipeline(&self) -> &str {
        &self.pipeline
    }
    fn from_json(payload: &[u8]) -> Option<Result<Self, String>> {
        Some(serde_json::from_slice(payload).map_err(|e| format!("invalid data.arrived JSON: {e}")))
    }
    fn check(&self) -> Result<(), String> {
        PipelineName::new(&self.pipeline).map_err(|e| format!("data.arrived: {e}"))?;
        match (self.object.is_empty(), self.path.is_empty()) {
            (true, true) => Err("data.arrived: field `object` is missing (the name of an object in the `datasets` \
                                 bucket; or give `path`, a file under an allowed directory)"
                .into()),
            (false, false) => Err("data.arrived: give either `object` or `path`, not both".into()),
            _ => Ok(()),
        }
    }
}

impl Event for pb::TrainRequested {
    const SUBJECT_PREFIX: &'static str = "mlops.events.train.requested";
    const CE_TYPE: &'static str = "io.mlops.train.requested.v1";
    fn pipeline(&self) -> &str {
        &self.pipeline
    }
    fn from_json(payload: &[u8]) -> Option<Result<Self, String>> {
        Some(serde_json::from_slice(payload).map_err(|e| format!("invalid train.requested JSON: {e}")))
    }
}

impl Event for pb::LabelsArrived {
    const SUBJECT_PREFIX: &'static str = "mlops.events.labels.arrived";
    const CE_TYPE: &'static str = "io.mlops.labels.arrived.v1";
    fn pipeline(&self) -> &str {
        &self.pipeline
    }
    fn from_json(payload: &[u8]) -> Option<Result<Self, String>> {
        Some(serde_json::from_slice(payload).map_err(|e| format!("invalid labels.arrived JSON: {e}")))
    }
    fn check(&self) -> Result<(), String> {
        PipelineName::new(&self.pipeline).map_err(|e| format!("labels.arrived: {e}"))?;
        if self.labels.is_empty() {
            return Err("labels.arrived: `labels` is empty (each label is {predictionId, label})".into());
        }
        if let Some(i) = self.labels.iter().position(|l| l.prediction_id.is_empty()) {
            return Err(format!("labels.arrived: label {i} has no `predictionId`"));
        }
        Ok(())
    }
}

impl Event for pb::TrainJob {
    const SUBJECT_PREFIX: &'static str = "mlops.jobs.train";
    const CE_TYPE: &'static str = "io.mlops.jobs.train.v1";
    fn pipeline(&self) -> &str {
        &self.pipeline
    }
}

impl Event for pb::PredictionLogged {
    const SUBJECT_PREFIX: &'static str = "mlops.predictions";
    const CE_TYPE: &'static str = "io.mlops.prediction.logged.v1";
    fn pipeline(&self) -> &str {
        &self.pipeline
    }
}

impl Event for pb::PredictionLogBatch {
    const SUBJECT_PREFIX: &'static str = "mlops.predictions";
    const CE_TYPE: &'static str = "io.mlops.prediction.logged_batch.v1";
    fn pipeline(&self) -> &str {
        &self.pipeline
    }
    /// A single prediction (as logged before batches, or by another publisher) is a batch of one.
    fn from_protobuf(ce_type: Option<&str>, payload: &[u8]) -> Result<Self, prost::DecodeError> {
        if ce_type.is_some_and(|t| t == Self::CE_TYPE) {
            return <Self as prost::Message>::decode(payload);
        }
        let one = <pb::PredictionLogged as prost::Message>::decode(payload)?;
        Ok(Self { pipeline: one.pipeline.clone(), predictions: vec![one] })
    }
    fn check(&self) -> Result<(), String> {
        PipelineName::new(&self.pipeline).map_err(|e| e.to_string())?;
        if let Some(p) = self.predictions.iter().find(|p| p.pipeline != self.pipeline) {
            return Err(format!(
                "prediction {} of pipeline `{}` in a batch of pipeline `{}`",
                p.prediction_id, p.pipeline, self.pipeline
            ));
        }
        Ok(())
    }
}

/// What tells the events of one dataset's validation rounds apart in their ids
/// (`ingested-…`, `validated-…`, `rejected-…`): nothing for round 0, so first ids stay as they
/// always were, `-rN` for round N.
pub fn round_suffix(round: u32) -> String {
    if round == 0 { String::new() } else { format!("-r{round}") }
}

/// Where an event sits in a pipeline run: the run it belongs to and the event that caused it.
#[derive(Debug, Clone, Default)]
pub struct EventContext {
    /// The pipeline run (the id of the event that started the cascade).
    pub correlation_id: String,
    /// The id of the event this one answers; empty for a first event.
    pub causation_id: String,
}

impl EventContext {
    /// A context for a first event, which starts a new run with the id `run_id`.
    pub fn new_run(run_id: impl Into<String>) -> Self {
        Self { correlation_id: run_id.into(), causation_id: String::new() }
    }
}

/// An event as a handler receives it.
#[derive(Debug, Clone)]
pub struct Envelope<E> {
    /// The CloudEvents id (also the Nats-Msg-Id).
    pub id: String,
    pub subject: String,
    /// How many times it has been delivered, 1 on the first attempt.
    pub delivered: u64,
    /// When the server stored it (Unix ms).
    pub published_ms: i64,
    pub context: EventContext,
    pub payload: E,
}

impl<E> Envelope<E> {
    /// The context for events published in answer to this one: same run, caused by this event.
    pub fn follow(&self) -> EventContext {
        EventContext {
            correlation_id: if self.context.correlation_id.is_empty() {
                self.id.clone()
            } else {
                self.context.correlation_id.clone()
            },
            causation_id: self.id.clone(),
        }
    }
}

/// CloudEvents NATS-binding header names.
pub mod headers {
    pub const SPEC_VERSION: &str = "ce-specversion";
    pub const ID: &str = "ce-id";
    pub const TYPE: &str = "ce-type";
    pub const SOURCE: &str = "ce-source";
    pub const TIME: &str = "ce-time";
    pub const SUBJECT: &str = "ce-subject";
    pub const CORRELATION: &str = "ce-correlationid";
    pub const CAUSATION: &str = "ce-causationid";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const TRACEPARENT: &str = "traceparent";
    pub const DLQ_REASON: &str = "mlops-dlq-reason";
    pub const DLQ_SERVICE: &str = "mlops-dlq-service";
    pub const PROTOBUF: &str = "application/protobuf";
    pub const JSON: &str = "application/json";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_types_follow_the_design() {
        let e = pb::ModelPromoted { pipeline: "churn".into(), ..Default::default() };
        assert_eq!(e.subject(), "mlops.events.model.promoted.churn");
        assert_eq!(<pb::ModelPromoted as Event>::CE_TYPE, "io.mlops.model.promoted.v1");
        let j = pb::TrainJob { pipeline: "churn".into(), ..Default::default() };
        assert_eq!(j.subject(), "mlops.jobs.train.churn");
    }

    #[test]
    fn data_arrived_json_accepts_camel_case_and_names_missing_fields() {
        let e = pb::DataArrived::from_json(br#"{"pipeline":"churn","object":"a.csv","source":"s3"}"#).unwrap().unwrap();
        assert_eq!(e.object, "a.csv");
        let missing = pb::DataArrived::from_json(br#"{"pipeline":"churn"}"#).unwrap().unwrap();
        let err = missing.check().unwrap_err();
        assert!(err.contains("object"), "{err}");
        let bad = pb::DataArrived::from_json(b"{not json").unwrap().unwrap_err();
        assert!(bad.contains("invalid data.arrived JSON"), "{bad}");
    }
}
