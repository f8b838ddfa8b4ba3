//! What goes wrong in the monitor, in its own words. Each edge translates once: the bus consumers
//! to retry, defer or dead letter (`HandlerError`, here), the `Monitor` gRPC service to a
//! `tonic::Status` (here), and the dashboard's JSON API to an HTTP status (`ui.rs`).

use std::time::Duration;

use mlops_shared::bus::{BusError, HandlerError, Interrupted};
use mlops_shared::ids::IdError;
use mlops_shared::model::ArtifactError;
use mlops_shared::objects::ObjectError;
use tonic::Status;

use crate::store::StoreError;

/// A monitor failure.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A pipeline name or an artifact's sha256 that is not one.
    #[error(transparent)]
    BadId(#[from] IdError),
    /// A request names a pipeline that has no spec.
    #[error("there is no pipeline `{0}`")]
    UnknownPipeline(String),
    /// A `labels.arrived` the monitor cannot use: it names no pipeline, or none of its labels
    /// matched a logged prediction or could be read.
    #[error("labels.arrived: {0}")]
    BadLabels(String),
    /// Labels that may have overtaken their predictions, or an erasure, wait for the prediction
    /// log (read separately) to be read: the event is to be delivered again after this long.
    #[error("waits {0:?} for the prediction log to be read")]
    NotYet(Duration),
    /// The serving model's artifact is not a model.
    #[error(transparent)]
    BadArtifact(#[from] ArtifactError),
    /// The serving model could not be fetched, however often it was tried.
    #[error("gave up after {attempts} attempts: {last}")]
    ModelUnavailable { attempts: u32, last: Box<MonitorError> },
    /// The monitor stopped while waiting.
    #[error("shutting down")]
    Stopping,
    /// The monitor's own database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blob could not be read (missing or tampered blobs are permanent, see [`ObjectError`]).
    #[error(transparent)]
    Objects(#[from] ObjectError),
    /// NATS (the spec bucket, a publish) failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The registry did not answer (its words).
    #[error("registry: {0}")]
    Registry(String),
    /// The events stream could not be read back.
    #[error("events: {0}")]
    Events(String),
    /// A feedback version could not be written as Parquet (what, and why).
    #[error("{0}")]
    Feedback(String),
    /// The feature store (views, offline log) did not answer.
    #[error("feature store: {0}")]
    Features(String),
    /// An erasure the monitor cannot carry out as configured (its words).
    #[error("erasure {0}")]
    Erasure(String),
    /// The prediction log or its archive could not be read or written.
    #[error("prediction log: {0}")]
    Log(String),
    /// Work on the blocking pool (a commit, judging a window, parsing a model) did not finish.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

impl MonitorError {
    /// The feature store's failure.
    pub(crate) fn features(e: mlops_features::StoreError) -> Self {
        Self::Features(e.to_string())
    }

    /// Whether trying again cannot help: bad input, a model that is not one, or work that
    /// panicked (the same input would panic again). A dependency out of reach may clear, and
    /// labels waiting for their predictions are deferred, not failed.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::BadId(_)
            | Self::UnknownPipeline(_)
            | Self::BadLabels(_)
            | Self::BadArtifact(_)
            | Self::Erasure(_) => true,
            Self::Objects(e) => !matches!(e, ObjectError::Store { .. }),
            Self::Interrupted(e) => matches!(e, Interrupted::Panicked(_)),
            Self::NotYet(_)
            | Self::ModelUnavailable { .. }
            | Self::Stopping
            | Self::Store(_)
            | Self::Bus(_)
            | Self::Registry(_)
            | Self::Events(_)
            | Self::Feedback(_)
            | Self::Log(_)
            | Self::Features(_) => false,
        }
    }
}

/// The bus edge: labels that wait for their predictions come back later; bad input is
/// dead-lettered with its reason; the rest is retried.
impl From<MonitorError> for HandlerError {
    fn from(e: MonitorError) -> Self {
        match e {
            MonitorError::NotYet(delay) => Self::Later(delay),
            e if e.is_permanent() => Self::permanent(e.to_string()),
            e => Self::Transient(e.into()),
        }
    }
}

/// The gRPC edge (`Monitor.Report`): a bad name is the caller's, the monitor's own database
/// failing is internal, a dependency out of reach is unavailable.
impl From<MonitorError> for Status {
    fn from(e: MonitorError) -> Self {
        use MonitorError as E;
        match &e {
            E::BadId(_) | E::BadLabels(_) => Status::invalid_argument(e.to_string()),
            E::UnknownPipeline(_) => Status::not_found(e.to_string()),
            E::BadArtifact(_) | E::Erasure(_) => Status::failed_precondition(e.to_string()),
            E::Objects(o) if !matches!(o, ObjectError::Store { .. }) => Status::failed_precondition(e.to_string()),
            E::Store(_) | E::Interrupted(_) | E::Feedback(_) => Status::internal(e.to_string()),
            E::NotYet(_)
            | E::ModelUnavailable { .. }
            | E::Stopping
            | E::Objects(_)
            | E::Bus(_)
            | E::Registry(_)
            | E::Events(_)
            | E::Log(_)
            | E::Features(_) => Status::unavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_deferred_dead_lettered_or_retried_with_the_reasons_they_always_had() {
        let later = HandlerError::from(MonitorError::NotYet(Duration::from_secs(2)));
        assert!(matches!(later, HandlerError::Later(d) if d == Duration::from_secs(2)));
        let nosuch = HandlerError::from(MonitorError::BadLabels("there is no pipeline `nosuch`".into()));
        assert!(
            matches!(&nosuch, HandlerError::Permanent(why) if why == "labels.arrived: there is no pipeline `nosuch`")
        );
        let db = StoreError::from(serde_json::from_str::<u8>("x").unwrap_err());
        assert!(matches!(HandlerError::from(MonitorError::Store(db)), HandlerError::Transient(_)));
        assert!(matches!(
            HandlerError::from(MonitorError::Interrupted(Interrupted::Panicked("boom".into()))),
            HandlerError::Permanent(_)
        ));
        let tampered = ObjectError::Tampered { bucket: "models", name: "ab".into(), actual: "cd".into() };
        assert!(MonitorError::Objects(tampered).is_permanent());
        let down = ObjectError::Store { bucket: "models", message: "timed out".into() };
        assert!(!MonitorError::Objects(down).is_permanent());
    }

    #[test]
    fn report_answers_with_the_codes_it_always_gave() {
        let bad = MonitorError::from(mlops_shared::ids::PipelineName::new("Bad Name").unwrap_err());
        assert_eq!(Status::from(bad).code(), tonic::Code::InvalidArgument);
        let db = StoreError::from(serde_json::from_str::<u8>("x").unwrap_err());
        let s = Status::from(MonitorError::Store(db));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(s.message().starts_with("monitor database: "), "{}", s.message());
        assert_eq!(Status::from(MonitorError::Registry("down".into())).code(), tonic::Code::Unavailable);
    }
}
