//! What goes wrong in the evaluator, in its own words: mapped to retry or dead letter at the bus
//! (`HandlerError`) and to a gRPC status at the `Evaluator` service, and nowhere else.

use mlops_shared::bus::{BusError, HandlerError, Interrupted};
use mlops_shared::objects::ObjectError;

/// An evaluator failure.
#[derive(Debug, thiserror::Error)]
pub enum EvaluatorError {
    /// The event or request names a pipeline that has no spec.
    #[error("pipeline `{0}` not found")]
    UnknownPipeline(String),
    /// An event that lacks what it must carry.
    #[error("{0}")]
    BadEvent(String),
    /// An artifact that is not one: a malformed sha256, or bytes that do not parse as a model.
    #[error("{0}")]
    BadArtifact(String),
    /// Datasets that cannot be read with the pipeline's spec.
    #[error("{0}")]
    BadData(String),
    /// A request the evaluator cannot answer as asked, or not yet: bad limits, no data, no
    /// production version, no unseen row.
    #[error("{0}")]
    Unanswerable(String),
    /// The registry did not answer.
    #[error("registry: {0}")]
    Registry(String),
    /// A blob could not be read (missing or tampered blobs are permanent, see [`ObjectError`]).
    #[error(transparent)]
    Objects(#[from] ObjectError),
    /// NATS (a key-value read, a publish) failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The feature store did not answer, or a looked-up view is missing.
    #[error(transparent)]
    Features(#[from] mlops_features::StoreError),
    /// Computing on the blocking pool did not finish.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

impl EvaluatorError {
    /// Whether trying again cannot help: bad input, or a state that only new data or new versions
    /// change. A dependency out of reach (the registry, NATS, the store) may clear.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Objects(e) => !matches!(e, ObjectError::Store { .. }),
            Self::Interrupted(e) => matches!(e, Interrupted::Panicked(_)),
            Self::Registry(_) | Self::Bus(_) => false,
            Self::Features(e) => !matches!(e, mlops_features::StoreError::Nats { .. }),
            Self::UnknownPipeline(_) | Self::BadEvent(_) | Self::BadArtifact(_) | Self::BadData(_) => true,
            Self::Unanswerable(_) => true,
        }
    }
}

impl From<EvaluatorError> for HandlerError {
    /// Bad input is dead-lettered; what may clear is retried.
    fn from(e: EvaluatorError) -> Self {
        if e.is_permanent() { Self::permanent(e.to_string()) } else { Self::Transient(e.into()) }
    }
}

impl From<EvaluatorError> for tonic::Status {
    /// What the pipeline's state cannot give is a failed precondition (the CLI prints its
    /// message as it is); a dependency out of reach is `unavailable`.
    fn from(e: EvaluatorError) -> Self {
        if e.is_permanent() { Self::failed_precondition(e.to_string()) } else { Self::unavailable(e.to_string()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_dead_lettered_and_outages_are_retried() {
        let permanent = |e: EvaluatorError| matches!(HandlerError::from(e), HandlerError::Permanent(_));
        assert!(permanent(EvaluatorError::UnknownPipeline("churn".into())));
        assert!(permanent(EvaluatorError::BadArtifact("not a model".into())));
        assert!(permanent(EvaluatorError::Interrupted(Interrupted::Panicked("boom".into()))));
        assert!(!permanent(EvaluatorError::Registry("connection refused".into())));
        assert!(!permanent(EvaluatorError::Interrupted(Interrupted::Cancelled("stopping".into()))));
        let missing = ObjectError::NotFound { bucket: "models", name: "x".into() };
        assert!(permanent(EvaluatorError::Objects(missing)));
        let s = tonic::Status::from(EvaluatorError::UnknownPipeline("nope".into()));
        assert_eq!((s.code(), s.message()), (tonic::Code::FailedPrecondition, "pipeline `nope` not found"));
        assert_eq!(tonic::Status::from(EvaluatorError::Registry("down".into())).code(), tonic::Code::Unavailable);
    }
}
