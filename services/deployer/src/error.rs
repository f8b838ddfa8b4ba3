//! What can go wrong in the deployer, in its own terms: a model not served, a version the registry
//! refuses, a route other replicas kept changing, a store out of reach. Each edge translates once:
//! gRPC to a `tonic::Status` and the bus consumers to retry or dead letter (here), REST to HTTP.

use mlops_shared::bus::HandlerError;
use tonic::{Code, Status};

/// A deployer failure.
#[derive(Debug, thiserror::Error)]
pub enum DeployerError {
    /// No model of the pipeline is served here.
    #[error("model `{pipeline}` is not served")]
    NotServed { pipeline: String },
    /// A request named a version that is neither the stable model nor the release's.
    #[error("version {version} of model `{pipeline}` is not served (serving {serving})")]
    VersionNotServed { pipeline: String, version: String, serving: String },
    /// The registry knows no such pipeline or version (its words).
    #[error("{0}")]
    UnknownVersion(String),
    /// The registry refuses to make the version `production`: an operator blocked it (its words).
    #[error("{0}")]
    Blocked(String),
    /// A rollback found no `previous` version.
    #[error("pipeline `{pipeline}` has no previous version to roll back to")]
    NothingToRollBackTo { pipeline: String },
    /// A release needs a stable model to be compared with.
    #[error("`{pipeline}` serves no model to release against")]
    NothingToReleaseAgainst { pipeline: String },
    /// Traffic is steered only while a release runs.
    #[error(
        "`{pipeline}` has no canary or shadow release running (releases start when a version passes its gates under `deployment.strategy: canary`)"
    )]
    NoRelease { pipeline: String },
    /// The release an operator steered ended while the route was being changed.
    #[error("the release ended meanwhile")]
    ReleaseEnded,
    /// The artifact is missing, tampered, oversized or malformed: it is never served.
    #[error("artifact {sha256} of `{pipeline}` v{version} is not servable: {reason}")]
    BadArtifact { pipeline: String, version: u64, sha256: String, reason: String },
    /// Other replicas changed the route every time this one tried to (compare-and-swap).
    #[error("the route of `{pipeline}` kept changing; try again")]
    RouteConflict { pipeline: String },
    /// The registry does not take this deployer's admin token.
    #[error("the registry refused the deployer: {0}")]
    RegistryDenied(String),
    /// The registry did not answer, or failed inside.
    #[error("registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// NATS did not answer: the `deployments` bucket, the models bucket or the event stream.
    #[error("{0}")]
    StoreUnavailable(String),
    /// A request the deployer cannot take: inputs that do not fit the model, a value out of range.
    #[error("{0}")]
    BadInput(String),
    /// The model's engine failed on inputs that fit it (an imported graph's runtime error).
    #[error("model `{pipeline}` v{version} could not answer: {reason}")]
    Inference { pipeline: String, version: u64, reason: String },
}

impl DeployerError {
    /// The registry's answer to a call that failed, in the deployer's terms.
    pub(crate) fn from_registry(s: Status) -> Self {
        let message = s.message().to_owned();
        match s.code() {
            Code::NotFound => Self::UnknownVersion(message),
            Code::FailedPrecondition => Self::Blocked(message),
            Code::Unauthenticated | Code::PermissionDenied => Self::RegistryDenied(message),
            _ => Self::RegistryUnavailable(message),
        }
    }

    /// A store (key-value bucket, object store, stream) that did not answer.
    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        Self::StoreUnavailable(e.to_string())
    }

    /// Whether trying again cannot help: the request or the model itself is at fault, not a
    /// dependency or a race with another replica.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::NotServed { .. }
            | Self::VersionNotServed { .. }
            | Self::UnknownVersion(_)
            | Self::Blocked(_)
            | Self::NothingToRollBackTo { .. }
            | Self::NothingToReleaseAgainst { .. }
            | Self::NoRelease { .. }
            | Self::ReleaseEnded
            | Self::BadArtifact { .. }
            | Self::BadInput(_)
            | Self::Inference { .. } => true,
            Self::RouteConflict { .. }
            | Self::RegistryDenied(_)
            | Self::RegistryUnavailable(_)
            | Self::StoreUnavailable(_) => false,
        }
    }
}

/// The gRPC edge.
impl From<DeployerError> for Status {
    fn from(e: DeployerError) -> Self {
        use DeployerError as E;
        match e {
            E::NotServed { .. } | E::VersionNotServed { .. } => Status::not_found(e.to_string()),
            E::UnknownVersion(m) => Status::not_found(m),
            E::Blocked(m) => Status::failed_precondition(m),
            E::NothingToRollBackTo { .. }
            | E::NothingToReleaseAgainst { .. }
            | E::NoRelease { .. }
            | E::ReleaseEnded
            | E::BadArtifact { .. } => Status::failed_precondition(e.to_string()),
            E::RouteConflict { .. } => Status::aborted(e.to_string()),
            // The registry's own words: the caller asked the deployer, the deployer the registry.
            E::RegistryDenied(m) => Status::unauthenticated(m),
            E::RegistryUnavailable(m) | E::StoreUnavailable(m) => Status::unavailable(m),
            E::BadInput(m) => Status::invalid_argument(m),
            E::Inference { .. } => Status::internal(e.to_string()),
        }
    }
}

/// The bus edge: a permanent failure is dead-lettered with its reason, the others retried.
impl From<DeployerError> for HandlerError {
    fn from(e: DeployerError) -> Self {
        if e.is_permanent() { HandlerError::Permanent(e.to_string()) } else { HandlerError::Transient(e.into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_answers_become_the_deployer_s_own_terms() {
        let blocked = DeployerError::from_registry(Status::failed_precondition("version 2 of `churn` is blocked"));
        assert!(matches!(&blocked, DeployerError::Blocked(m) if m == "version 2 of `churn` is blocked"));
        assert!(blocked.is_permanent());
        assert!(matches!(DeployerError::from_registry(Status::not_found("no v9")), DeployerError::UnknownVersion(_)));
        let denied = DeployerError::from_registry(Status::unauthenticated("wrong token"));
        assert!(matches!(denied, DeployerError::RegistryDenied(_)) && !denied.is_permanent());
        for down in [Status::unavailable("connection refused"), Status::internal("db"), Status::deadline_exceeded("")] {
            let e = DeployerError::from_registry(down);
            assert!(matches!(e, DeployerError::RegistryUnavailable(_)) && !e.is_permanent(), "{e}");
        }
    }

    #[test]
    fn grpc_answers_with_the_codes_and_words_the_api_always_gave() {
        let churn = || "churn".to_owned();
        let cases = [
            (DeployerError::NotServed { pipeline: churn() }, Code::NotFound, "model `churn` is not served"),
            (
                DeployerError::VersionNotServed {
                    pipeline: churn(),
                    version: "7".into(),
                    serving: "version 3, canary 4".into(),
                },
                Code::NotFound,
                "version 7 of model `churn` is not served (serving version 3, canary 4)",
            ),
            (DeployerError::UnknownVersion("no v9".into()), Code::NotFound, "no v9"),
            (DeployerError::Blocked("v2 is blocked".into()), Code::FailedPrecondition, "v2 is blocked"),
            (
                DeployerError::NothingToRollBackTo { pipeline: churn() },
                Code::FailedPrecondition,
                "pipeline `churn` has no previous version to roll back to",
            ),
            (DeployerError::ReleaseEnded, Code::FailedPrecondition, "the release ended meanwhile"),
            (
                DeployerError::RouteConflict { pipeline: churn() },
                Code::Aborted,
                "the route of `churn` kept changing; try again",
            ),
            (DeployerError::RegistryDenied("wrong token".into()), Code::Unauthenticated, "wrong token"),
            (DeployerError::RegistryUnavailable("connection refused".into()), Code::Unavailable, "connection refused"),
            (DeployerError::store("kv: timed out"), Code::Unavailable, "kv: timed out"),
            (DeployerError::BadInput("input `x` is missing".into()), Code::InvalidArgument, "input `x` is missing"),
        ];
        for (e, code, message) in cases {
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, message));
        }
    }

    #[test]
    fn the_bus_dead_letters_refusals_and_retries_outages_and_races() {
        let refused = HandlerError::from(DeployerError::NothingToReleaseAgainst { pipeline: "churn".into() });
        assert!(
            matches!(&refused, HandlerError::Permanent(why) if why == "`churn` serves no model to release against"),
            "{refused}"
        );
        let bad = DeployerError::BadArtifact {
            pipeline: "churn".into(),
            version: 2,
            sha256: "ab".into(),
            reason: "object ab in bucket models is corrupt or tampered".into(),
        };
        assert!(matches!(HandlerError::from(bad), HandlerError::Permanent(why) if why.contains("corrupt or tampered")));
        for retried in [
            DeployerError::RouteConflict { pipeline: "churn".into() },
            DeployerError::RegistryUnavailable("connection refused".into()),
            DeployerError::store("kv: timed out"),
        ] {
            assert!(matches!(HandlerError::from(retried), HandlerError::Transient(_)));
        }
    }
}
