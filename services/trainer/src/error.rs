//! What goes wrong in the trainer — the continuous-training policy and the job worker — in its own
//! words: mapped to retry, defer or dead letter at the bus (`HandlerError`), its only edge.

use std::time::Duration;

use mlops_shared::bus::{BusError, HandlerError, Interrupted};
use mlops_shared::ids::IdError;
use mlops_shared::objects::ObjectError;

use crate::train::TrainError;

/// A trainer failure.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The event or job names a pipeline that has no spec.
    #[error("pipeline `{0}` not found")]
    UnknownPipeline(String),
    /// A job without a dataset to train on.
    #[error("job {job_id} names no dataset")]
    NoDataset { job_id: String },
    /// A trigger for a pipeline that has no accepted training data (the trigger's words).
    #[error("{0}")]
    NothingToTrainOn(String),
    /// A dataset id that is not a sha256.
    #[error(transparent)]
    BadId(#[from] IdError),
    /// An event field that says nothing the trainer knows (the event and field, and why).
    #[error("{0}")]
    BadEvent(String),
    /// The pipeline's dataset history in the `jobs` bucket does not decode.
    #[error("dataset history of `{pipeline}`: {source}")]
    BadHistory { pipeline: String, source: serde_json::Error },
    /// The datasets cannot make a model (too few rows, one class, unreadable data).
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A blob could not be read or stored (missing or tampered blobs are permanent, see
    /// [`ObjectError`]).
    #[error(transparent)]
    Objects(#[from] ObjectError),
    /// The `jobs` bucket did not answer while `doing` something.
    #[error("{doing}: {message}")]
    Jobs { doing: &'static str, message: String },
    /// Other trainers kept changing the same key-value entry (`what` of `pipeline`).
    #[error("the {what} of `{pipeline}` kept changing")]
    KeptChanging { what: &'static str, pipeline: String },
    /// NATS (the spec bucket, run records, schedule slots, a publish) failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Training on the blocking pool did not finish.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// A code step made no model.
    #[error(transparent)]
    Code(#[from] crate::code::CodeError),
    /// The feature store did not answer, or a looked-up view is missing.
    #[error(transparent)]
    Features(#[from] mlops_features::StoreError),
    /// The looked-up features could not be joined to the data (a key or time column missing or
    /// unreadable).
    #[error("looking features up: {0}")]
    Lookup(#[from] mlops_features::FeatureError),
    /// Not yet: the debounce window or the cooldown ends after this long.
    #[error("deferred for {0:?}")]
    Deferred(Duration),
}

impl TrainerError {
    /// The `jobs` bucket's failure while `doing` something.
    pub(crate) fn jobs<E: std::fmt::Display>(doing: &'static str) -> impl FnOnce(E) -> Self {
        move |e| Self::Jobs { doing, message: e.to_string() }
    }

    /// Whether trying again cannot help: the trigger or job is bad, or its data cannot make a
    /// model. A dependency out of reach, or a race with another trainer, may clear.
    ///
    /// Training that panicked is not retried (the same data and spec would panic again); one
    /// cancelled at shutdown is.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::UnknownPipeline(_)
            | Self::NoDataset { .. }
            | Self::NothingToTrainOn(_)
            | Self::BadId(_)
            | Self::BadEvent(_)
            | Self::BadHistory { .. }
            | Self::Train(_) => true,
            Self::Lookup(e) => !e.is_transient(),
            Self::Features(e) => !matches!(e, mlops_features::StoreError::Nats { .. }),
            Self::Objects(e) => !matches!(e, ObjectError::Store { .. }),
            Self::Code(e) => e.is_permanent(),
            // Training that panicked would panic again on the same data and spec.
            Self::Interrupted(e) => matches!(e, Interrupted::Panicked(_)),
            Self::Jobs { .. } | Self::KeptChanging { .. } | Self::Bus(_) | Self::Deferred(_) => false,
        }
    }
}

/// The bus edge: a deferred trigger comes back later; a bad one is dead-lettered with its reason;
/// the rest is retried.
impl From<TrainerError> for HandlerError {
    fn from(e: TrainerError) -> Self {
        match e {
            TrainerError::Deferred(delay) => Self::Later(delay),
            e if e.is_permanent() => Self::permanent(e.to_string()),
            e => Self::Transient(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(e: TrainerError) -> Option<String> {
        match HandlerError::from(e) {
            HandlerError::Permanent(why) => Some(why),
            _ => None,
        }
    }

    #[test]
    fn impossible_jobs_are_dead_lettered_with_the_reasons_they_always_had() {
        assert_eq!(
            reason(TrainerError::NoDataset { job_id: "bad-churn".into() }).unwrap(),
            "job bad-churn names no dataset"
        );
        assert_eq!(reason(TrainerError::UnknownPipeline("ghost".into())).unwrap(), "pipeline `ghost` not found");
        let missing = ObjectError::NotFound { bucket: "datasets", name: "0".repeat(64) };
        assert!(reason(missing.into()).unwrap().contains("not found in bucket datasets"));
        let empty = "train.requested: pipeline `empty` has no accepted training data yet";
        assert_eq!(reason(TrainerError::NothingToTrainOn(empty.into())).unwrap(), empty);
        assert_eq!(reason(TrainError::OneClass.into()).unwrap(), TrainError::OneClass.to_string());
        let history = serde_json::from_str::<u8>("x").unwrap_err();
        let bad = reason(TrainerError::BadHistory { pipeline: "churn".into(), source: history }).unwrap();
        assert!(bad.starts_with("dataset history of `churn`: "), "{bad}");
    }

    #[test]
    fn triggers_wait_and_outages_and_races_are_retried() {
        let later = HandlerError::from(TrainerError::Deferred(Duration::from_millis(1500)));
        assert!(matches!(later, HandlerError::Later(d) if d == Duration::from_millis(1500)));
        for retried in [
            TrainerError::Jobs { doing: "reading job state", message: "timed out".into() },
            TrainerError::KeptChanging { what: "trigger state", pipeline: "churn".into() },
            TrainerError::Bus(BusError::Kv { bucket: "jobs", message: "timed out".into() }),
            TrainerError::Objects(ObjectError::Store { bucket: "models", message: "timed out".into() }),
            TrainerError::Interrupted(Interrupted::Cancelled("stopping".into())),
            // A file of a view's log the store did not give.
            TrainerError::Lookup(mlops_features::FeatureError::Unavailable("timed out".into())),
        ] {
            assert!(matches!(HandlerError::from(retried), HandlerError::Transient(_)));
        }
        let bad_log = mlops_features::FeatureError::InFile {
            file: "stats/1.parquet".into(),
            error: Box::new(mlops_features::FeatureError::MissingColumn("ts".into())),
        };
        assert_eq!(
            reason(TrainerError::Lookup(bad_log)).unwrap(),
            "looking features up: stats/1.parquet: column `ts` is missing"
        );
        let panicked = TrainerError::Interrupted(Interrupted::Panicked("boom".into()));
        assert!(matches!(HandlerError::from(panicked), HandlerError::Permanent(_)));
        let race = TrainerError::KeptChanging { what: "dataset history", pipeline: "churn".into() };
        assert_eq!(race.to_string(), "the dataset history of `churn` kept changing");
    }
}
