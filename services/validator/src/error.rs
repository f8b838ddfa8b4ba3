//! What goes wrong while validating a dataset, in the validator's own words: mapped to retry or
//! dead letter at the bus (`HandlerError`), its only edge, and nowhere else.

use mlops_shared::bus::{BusError, HandlerError, Interrupted};
use mlops_shared::ids::IdError;
use mlops_shared::objects::ObjectError;

/// A validator failure.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    /// The event names a pipeline that has no spec.
    #[error("pipeline `{0}` not found")]
    UnknownPipeline(String),
    /// The event's dataset id is not a sha256.
    #[error(transparent)]
    BadDatasetId(#[from] IdError),
    /// The event's environment (`training`, `serving`) or origin is not one known (the spec's words).
    #[error("{0}")]
    BadEnvironment(String),
    /// The dataset could not be read (missing or tampered blobs are permanent, see [`ObjectError`]).
    #[error(transparent)]
    Objects(#[from] ObjectError),
    /// The `profiles` bucket did not answer while reading the previous accepted profile.
    #[error("reading the previous profile: {0}")]
    ReadProfile(String),
    /// The `profiles` bucket did not take the new reference profile.
    #[error("storing the profile: {0}")]
    StoreProfile(String),
    /// NATS (the spec bucket, a publish) failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The feature store did not take a view's batch.
    #[error(transparent)]
    Features(#[from] mlops_features::StoreError),
    /// Validating on the blocking pool did not finish.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

impl ValidatorError {
    /// Whether trying again cannot help: the event itself is bad, or names a blob that is not
    /// there or not what it claims. A store or NATS out of reach may clear.
    ///
    /// Validation that panicked is not retried: the same bytes would panic again (a column check
    /// that panics is caught earlier and reported as an anomaly); one cancelled at shutdown is.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::UnknownPipeline(_) | Self::BadDatasetId(_) | Self::BadEnvironment(_) => true,
            Self::Objects(e) => !matches!(e, ObjectError::Store { .. }),
            Self::Interrupted(e) => matches!(e, Interrupted::Panicked(_)),
            Self::Features(e) => !matches!(e, mlops_features::StoreError::Nats { .. }),
            Self::ReadProfile(_) | Self::StoreProfile(_) | Self::Bus(_) => false,
        }
    }
}

impl From<ValidatorError> for HandlerError {
    /// Bad input is dead-lettered with its reason; what may clear is retried.
    fn from(e: ValidatorError) -> Self {
        if e.is_permanent() { Self::permanent(e.to_string()) } else { Self::Transient(e.into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(e: ValidatorError) -> Option<String> {
        match HandlerError::from(e) {
            HandlerError::Permanent(why) => Some(why),
            _ => None,
        }
    }

    #[test]
    fn bad_events_are_dead_lettered_with_their_reasons_and_outages_are_retried() {
        assert_eq!(
            reason(ValidatorError::UnknownPipeline("ghost".into())).as_deref(),
            Some("pipeline `ghost` not found")
        );
        let bad_sha = ValidatorError::from(mlops_shared::ids::Sha256::parse("abc").unwrap_err());
        assert_eq!(reason(bad_sha).as_deref(), Some("\"abc\" is not a sha256 (64 lowercase hex characters)"));
        let environment = mlops_shared::spec::Environment::parse("staging").unwrap_err();
        assert!(reason(ValidatorError::BadEnvironment(environment)).is_some_and(|r| r.contains("\"staging\"")));
        let missing = ObjectError::NotFound { bucket: "datasets", name: "x".into() };
        assert!(reason(missing.into()).is_some_and(|r| r.contains("not found in bucket datasets")));
        for retried in [
            ValidatorError::Objects(ObjectError::Store { bucket: "datasets", message: "timed out".into() }),
            ValidatorError::ReadProfile("timed out".into()),
            ValidatorError::StoreProfile("timed out".into()),
            ValidatorError::Bus(BusError::Kv { bucket: "pipelines", message: "timed out".into() }),
            ValidatorError::Interrupted(Interrupted::Cancelled("stopping".into())),
        ] {
            assert!(matches!(HandlerError::from(retried), HandlerError::Transient(_)));
        }
        let panicked = ValidatorError::Interrupted(Interrupted::Panicked("boom".into()));
        assert!(matches!(HandlerError::from(panicked), HandlerError::Permanent(_)));
    }

    #[test]
    fn retried_failures_say_what_failed() {
        let e = HandlerError::from(ValidatorError::ReadProfile("timed out".into()));
        assert_eq!(e.to_string(), "transient: reading the previous profile: timed out");
    }
}
