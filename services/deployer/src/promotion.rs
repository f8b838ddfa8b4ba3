//! Promotion and rollback: the `model.evaluated` consumer (promote at once, or start a release),
//! the `model.blocked` consumer (end or roll back what serves a blocked version), and the same
//! moves by hand — deploy a version, roll back to `previous`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mlops_proto as pb;
use mlops_shared::bus::HandlerError;
use mlops_shared::events::{Envelope, EventContext};
use mlops_shared::spec::Strategy;
use tracing::{info, warn};

use crate::Deployer;
use crate::error::DeployerError;
use crate::registry::PREVIOUS;
use crate::release::Outcome;
use crate::routes::{ModelRef, RouteRecord};
use crate::serving::Served;

impl Deployer {
    /// A version passed (or failed) its gates: serve it at once (`deployment.strategy: direct`,
    /// or the pipeline's first model), or start a canary or shadow release of it.
    pub(crate) async fn on_evaluated(&self, e: Envelope<pb::ModelEvaluated>) -> Result<(), HandlerError> {
        let ctx = e.follow();
        let v = &e.payload;
        if !v.passed {
            info!(pipeline = %v.pipeline, version = v.version, "candidate failed its gates, not promoted");
            return Ok(());
        }
        if let Some(route) = self.models.route(&v.pipeline) {
            let newest =
                route.release.as_ref().map_or(route.stable.version, |r| r.model.version.max(route.stable.version));
            if newest >= v.version {
                info!(pipeline = %v.pipeline, version = v.version, newest, "a newer version is already served, not promoted");
                return Ok(());
            }
        }
        // A tampered or unreadable artifact is never served.
        self.load(&v.pipeline, v.version, &v.artifact_sha256).await.map_err(|err| {
            if let DeployerError::BadArtifact { .. } = err {
                metrics::counter!("mlops_artifacts_refused_total", "pipeline" => v.pipeline.clone()).increment(1);
            }
            HandlerError::from(err)
        })?;
        let deployment = self.specs.get(&v.pipeline).await?.map(|s| s.deployment).unwrap_or_default();
        let model = ModelRef { version: v.version, sha256: v.artifact_sha256.clone() };
        let first = self.read_route(&v.pipeline).await?.is_none();
        if deployment.strategy == Strategy::Direct || first {
            let reason = match &v.decision {
                Some(d) => format!("approved by {}: {}", d.by, d.reason),
                None => "passed its quality gates".into(),
            };
            self.promote_now(&v.pipeline, model, &reason, &ctx).await
        } else {
            self.start_release(&v.pipeline, model, deployment.strategy, &deployment.canary, &ctx).await
        }
        .map_err(|e| match HandlerError::from(e) {
            HandlerError::Permanent(why) => HandlerError::permanent(format!("not promoted: {why}")),
            transient => transient,
        })
    }

    /// Serves `model` to all traffic now, ending any release: `production` moves first (the
    /// registry refuses a blocked version, which then never serves), then the route. Returns the
    /// version that was stable before.
    async fn make_stable(&self, pipeline: &str, model: &ModelRef, reason: &str) -> Result<u64, DeployerError> {
        self.set_production(pipeline, model.version, reason).await?;
        let previous = AtomicU64::new(0);
        self.change_route(pipeline, |current| {
            // Retried after the route already names `model`: what it replaced is kept there.
            let replaced = match current {
                Some(c) if c.stable == *model => c.previous.clone(),
                Some(c) => Some(c.stable.clone()),
                None => None,
            };
            previous.store(replaced.as_ref().map_or(0, |m| m.version), Ordering::Relaxed);
            Ok(Some(RouteRecord {
                pipeline: pipeline.into(),
                stable: model.clone(),
                release: None,
                updated_ms: mlops_shared::now_unix_ms(),
                reason: reason.into(),
                previous: replaced,
            }))
        })
        .await?;
        Ok(previous.into_inner())
    }

    /// [`Deployer::make_stable`], announced as `model.promoted`.
    pub async fn promote_now(
        &self,
        pipeline: &str,
        model: ModelRef,
        reason: &str,
        ctx: &EventContext,
    ) -> Result<(), DeployerError> {
        let version = model.version;
        let previous = self.make_stable(pipeline, &model, reason).await?;
        let event = pb::ModelPromoted {
            pipeline: pipeline.into(),
            version,
            artifact_sha256: model.sha256.clone(),
            previous_version: previous,
            reason: reason.into(),
        };
        self.bus.publish(&format!("promoted-{pipeline}-{version}"), ctx, &event).await.map_err(DeployerError::store)?;
        metrics::counter!("mlops_promotions_total", "pipeline" => pipeline.to_owned()).increment(1);
        info!(pipeline, version, previous, "model promoted");
        Ok(())
    }

    /// Serves `version` of `pipeline` to all traffic by hand, once its artifact is verified.
    pub async fn deploy(&self, pipeline: &str, version: u64, reason: &str) -> Result<(), DeployerError> {
        let v = self.registry_version(pipeline, version).await?;
        self.load(&v.pipeline, v.version, &v.artifact_sha256).await?;
        let reason =
            if reason.is_empty() { "deployed by hand".to_owned() } else { format!("deployed by hand: {reason}") };
        let model = ModelRef { version: v.version, sha256: v.artifact_sha256 };
        let id = format!("deploy-{pipeline}-{version}-{}", mlops_shared::now_unix_ms());
        self.promote_now(pipeline, model, &reason, &EventContext::new_run(id)).await
    }

    /// An operator blocked a version: a release of it ends; if it is the stable one, roll back to
    /// `previous` — or, with nothing to roll back to, stop serving the pipeline rather than serve a
    /// blocked model.
    pub(crate) async fn on_blocked(&self, e: Envelope<pb::ModelBlocked>) -> Result<(), HandlerError> {
        let b = &e.payload;
        let Some(route) = self.models.route(&b.pipeline) else { return Ok(()) };
        let d = b.decision.clone().unwrap_or_default();
        let reason = format!("version {} blocked by {}: {}", b.version, d.by, d.reason);
        // Whatever fails here is tried again: the blocked version must stop serving.
        let transient = |e: DeployerError| HandlerError::Transient(e.into());
        if route.release.as_ref().is_some_and(|r| r.model.version == b.version) {
            return self.conclude(&b.pipeline, b.version, Outcome::RollBack, &reason).await.map_err(transient);
        }
        if route.stable.version != b.version {
            return Ok(());
        }
        match self.rollback(&b.pipeline, &reason).await {
            Ok(_) => Ok(()),
            Err(
                why @ (DeployerError::NotServed { .. }
                | DeployerError::NothingToRollBackTo { .. }
                | DeployerError::UnknownVersion(_)
                | DeployerError::Blocked(_)),
            ) => {
                self.remove_route(&b.pipeline).await.map_err(transient)?;
                self.models.remove_version(&b.pipeline, b.version);
                warn!(pipeline = %b.pipeline, version = b.version, why = %why, "blocked version unloaded with nothing to roll back to");
                Ok(())
            }
            Err(e) => Err(transient(e)),
        }
    }

    /// Ends a running release without promoting it; with none running, serves the `previous`
    /// version again and makes it `production`.
    pub async fn rollback(&self, pipeline: &str, reason: &str) -> Result<Arc<Served>, DeployerError> {
        let not_served = || DeployerError::NotServed { pipeline: pipeline.into() };
        let route = self.models.route(pipeline).ok_or_else(not_served)?;
        if let Some(r) = &route.release {
            self.conclude(pipeline, r.model.version, Outcome::RollBack, reason).await?;
            return self.models.get(pipeline).ok_or_else(not_served);
        }
        let current = route.stable.clone();
        let previous = self
            .registry_alias(pipeline, PREVIOUS)
            .await?
            .ok_or_else(|| DeployerError::NothingToRollBackTo { pipeline: pipeline.into() })?;
        self.load(pipeline, previous.version, &previous.artifact_sha256).await?;
        let model = ModelRef { version: previous.version, sha256: previous.artifact_sha256.clone() };
        self.make_stable(pipeline, &model, reason).await?;
        let event = pb::ModelRolledBack {
            pipeline: pipeline.into(),
            from_version: current.version,
            to_version: previous.version,
            reason: reason.into(),
        };
        let id =
            format!("rolledback-{pipeline}-{}-{}-{}", current.version, previous.version, mlops_shared::now_unix_ms());
        self.bus.publish(&id, &EventContext::new_run(id.clone()), &event).await.map_err(DeployerError::store)?;
        info!(pipeline, from = current.version, to = previous.version, "rolled back");
        self.models.get(pipeline).ok_or_else(not_served)
    }
}
