//! The deployer's calls to the registry, the source of truth for versions and aliases: read a
//! version or an alias, move `production`. The registry's refusals come back as
//! [`DeployerError`]s: an unknown version, a blocked one, a registry out of reach. Each call
//! carries the current trace, so the registry's work joins it.

use mlops_proto as pb;
use mlops_shared::telemetry::traced;
use pb::get_model_version_request::Selector;
use tonic::Code;

use crate::Deployer;
use crate::error::DeployerError;

/// The alias of the version serving all traffic; moving it also moves `previous`.
pub(crate) const PRODUCTION: &str = "production";
/// The alias of the version `production` named before.
pub(crate) const PREVIOUS: &str = "previous";

impl Deployer {
    /// The names of the registry's pipelines.
    pub(crate) async fn registry_pipelines(&self) -> Result<Vec<String>, DeployerError> {
        let answer = self
            .registry
            .clone()
            .list_pipelines(traced(pb::ListPipelinesRequest {}))
            .await
            .map_err(DeployerError::from_registry)?;
        Ok(answer.into_inner().pipelines.into_iter().map(|p| p.name).collect())
    }

    /// Version `version` of `pipeline`.
    pub(crate) async fn registry_version(
        &self,
        pipeline: &str,
        version: u64,
    ) -> Result<pb::ModelVersion, DeployerError> {
        let req = pb::GetModelVersionRequest { pipeline: pipeline.into(), selector: Some(Selector::Version(version)) };
        let answer =
            self.registry.clone().get_model_version(traced(req)).await.map_err(DeployerError::from_registry)?;
        Ok(answer.into_inner())
    }

    /// The version `alias` names for `pipeline`; `None` when it names none.
    pub(crate) async fn registry_alias(
        &self,
        pipeline: &str,
        alias: &str,
    ) -> Result<Option<pb::ModelVersion>, DeployerError> {
        let req =
            pb::GetModelVersionRequest { pipeline: pipeline.into(), selector: Some(Selector::Alias(alias.into())) };
        match self.registry.clone().get_model_version(traced(req)).await {
            Ok(answer) => Ok(Some(answer.into_inner())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(DeployerError::from_registry(s)),
        }
    }

    /// Makes `version` the `production` model of `pipeline`, for `reason`. The registry refuses a
    /// blocked version ([`DeployerError::Blocked`]).
    pub(crate) async fn set_production(&self, pipeline: &str, version: u64, reason: &str) -> Result<(), DeployerError> {
        let alias = pb::SetAliasRequest {
            pipeline: pipeline.into(),
            alias: PRODUCTION.into(),
            version,
            reason: reason.into(),
            by: "deployer".into(),
        };
        let token = self.admin.admin_token.as_deref();
        self.registry
            .clone()
            .set_alias(mlops_shared::config::with_token(alias, token))
            .await
            .map_err(DeployerError::from_registry)?;
        Ok(())
    }
}
