//! The life cycle of a canary or shadow release: started in the route, reviewed every half second
//! on the figures of every replica (`stats.<pipeline>.<replica>`), concluded — promoted to all
//! traffic or rolled back — by the first replica to write the verdict, and announced once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use mlops_proto as pb;
use mlops_shared::events::EventContext;
use mlops_shared::runs::kv_key;
use mlops_shared::spec::{CanarySpec, Strategy};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Deployer;
use crate::canary::{Verdict, judge};
use crate::error::DeployerError;
use crate::routes::{ModelRef, ReleaseRecord, RouteRecord};
use crate::serving::{Release, ReleaseMode, Snapshot};

/// One replica's figures for a release.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StatsRecord {
    version: u64,
    started_ms: i64,
    champion: Snapshot,
    candidate: Snapshot,
    at_ms: i64,
}

/// How a release ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The new model serves all traffic and becomes `production`.
    Promote,
    /// The stable model serves all traffic again.
    RollBack,
}

/// Where the replicas' figures for the release of `pipeline` live: `stats.<pipeline>.<replica>`.
fn stats_prefix(pipeline: &str) -> String {
    format!("stats.{}.", kv_key(pipeline))
}

impl Deployer {
    /// Starts a release of `version` for `pipeline` by the spec's `strategy`.
    pub async fn start_release(
        &self,
        pipeline: &str,
        model: ModelRef,
        strategy: Strategy,
        spec: &CanarySpec,
        ctx: &EventContext,
    ) -> Result<(), DeployerError> {
        let mode = if strategy == Strategy::Shadow { ReleaseMode::Shadow } else { ReleaseMode::Canary };
        let started_ms = mlops_shared::now_unix_ms();
        let version = model.version;
        let written = self
            .change_route(pipeline, |current| {
                let Some(current) = current else {
                    return Err(DeployerError::NothingToReleaseAgainst { pipeline: pipeline.into() });
                };
                if current.stable.version >= version
                    || current.release.as_ref().is_some_and(|r| r.model.version >= version)
                {
                    return Ok(None);
                }
                let mut next = current.clone();
                next.release = Some(ReleaseRecord {
                    model: model.clone(),
                    mode,
                    percent: spec.percent,
                    started_ms,
                    spec: spec.clone(),
                });
                next.updated_ms = started_ms;
                next.reason = format!("{} release of version {version}", mode.as_str());
                Ok(Some(next))
            })
            .await?;
        let Some(route) = written else { return Ok(()) };
        let event = pb::CanaryStarted {
            pipeline: pipeline.into(),
            version,
            champion_version: route.stable.version,
            mode: mode.as_str().into(),
            percent: spec.percent,
            duration_secs: spec.duration_secs,
            min_requests: spec.min_requests,
        };
        self.bus.publish(&format!("canary-{pipeline}-{version}"), ctx, &event).await.map_err(DeployerError::store)?;
        info!(
            pipeline,
            version,
            champion = route.stable.version,
            mode = mode.as_str(),
            percent = spec.percent,
            "release started"
        );
        Ok(())
    }

    /// Every half second until `shutdown`: publishes this replica's figures for each running
    /// release, and concludes the releases that are due.
    pub async fn run_releases(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            for route in self.models.routes() {
                let Some(release) = &route.release else { continue };
                if let Err(e) = self.review(&route.stable.pipeline, release).await {
                    warn!(pipeline = %route.stable.pipeline, error = %e, "release not reviewed; trying again");
                }
            }
        }
    }

    /// Publishes this replica's figures for `release`, then judges the release on every
    /// replica's and concludes it when the verdict is in.
    async fn review(&self, pipeline: &str, release: &Release) -> Result<(), DeployerError> {
        self.publish_figures(pipeline, release).await?;
        let Some((record, _)) = self.read_route(pipeline).await? else { return Ok(()) };
        let Some(r) =
            record.release.filter(|r| r.model.version == release.model.version && r.started_ms == release.started_ms)
        else {
            return Ok(());
        };
        let (champion, candidate) = self.summed_figures(pipeline, &r).await?;
        let elapsed = (mlops_shared::now_unix_ms() - r.started_ms) as f64 / 1000.0;
        match judge(&r.spec, elapsed, &champion, &candidate, release.model.is_classifier()) {
            Verdict::Wait(_) => Ok(()),
            Verdict::Promote(why) => self.conclude(pipeline, r.model.version, Outcome::Promote, &why).await,
            Verdict::RollBack(why) => self.conclude(pipeline, r.model.version, Outcome::RollBack, &why).await,
        }
    }

    /// Writes this replica's figures for `release` where the others find them.
    async fn publish_figures(&self, pipeline: &str, release: &Release) -> Result<(), DeployerError> {
        let mine = StatsRecord {
            version: release.model.version,
            started_ms: release.started_ms,
            champion: release.champion_stats.snapshot(),
            candidate: release.candidate_stats.snapshot(),
            at_ms: mlops_shared::now_unix_ms(),
        };
        let key = format!("{}{}", stats_prefix(pipeline), kv_key(&self.replica));
        let bytes = serde_json::to_vec(&mine).map_err(DeployerError::store)?;
        self.deployments.put(key, bytes.into()).await.map_err(DeployerError::store)?;
        Ok(())
    }

    /// Both models' figures for the release `r`, summed over every replica serving it.
    async fn summed_figures(&self, pipeline: &str, r: &ReleaseRecord) -> Result<(Snapshot, Snapshot), DeployerError> {
        let prefix = stats_prefix(pipeline);
        let (mut champion, mut candidate) = (Snapshot::default(), Snapshot::default());
        let keys: Vec<String> = self
            .deployments
            .keys()
            .await
            .map_err(DeployerError::store)?
            .filter_map(|k| async move { k.ok() })
            .filter(|k| std::future::ready(k.starts_with(&prefix)))
            .collect()
            .await;
        for k in keys {
            let Some(bytes) = self.deployments.get(k.as_str()).await.map_err(DeployerError::store)? else { continue };
            let Ok(s) = serde_json::from_slice::<StatsRecord>(&bytes) else { continue };
            if s.version == r.model.version && s.started_ms == r.started_ms {
                champion.merge(&s.champion);
                candidate.merge(&s.candidate);
            }
        }
        Ok((champion, candidate))
    }

    /// Ends the release of `version`: promoted to all traffic (and `production`), or rolled back.
    pub async fn conclude(
        &self,
        pipeline: &str,
        version: u64,
        outcome: Outcome,
        why: &str,
    ) -> Result<(), DeployerError> {
        let (mut outcome, mut why) = (outcome, why.to_owned());
        if outcome == Outcome::Promote {
            match self.set_production(pipeline, version, &why).await {
                Ok(()) => {}
                // Blocked meanwhile: it never serves.
                Err(DeployerError::Blocked(message)) => (outcome, why) = (Outcome::RollBack, message),
                Err(e) => return Err(e),
            }
        }
        let reason = why.clone();
        let champion = AtomicU64::new(0);
        let done = self
            .change_route(pipeline, |current| {
                let Some(current) = current else { return Ok(None) };
                champion.store(current.stable.version, Ordering::Relaxed);
                let Some(r) = current.release.as_ref().filter(|r| r.model.version == version) else { return Ok(None) };
                let mut next = current.clone();
                if outcome == Outcome::Promote {
                    next.previous = Some(current.stable.clone());
                    next.stable = r.model.clone();
                }
                next.release = None;
                next.updated_ms = mlops_shared::now_unix_ms();
                next.reason = reason.clone();
                Ok(Some(next))
            })
            .await?;
        let Some(route) = done else { return Ok(()) };
        self.announce(&route, version, outcome, champion.into_inner(), &why).await?;
        let promote = outcome == Outcome::Promote;
        if promote {
            metrics::counter!("mlops_promotions_total", "pipeline" => pipeline.to_owned()).increment(1);
        }
        info!(pipeline, version, promote, why, "release concluded");
        Ok(())
    }

    /// Publishes how the release of `version` ended, now that `route` says so: `model.promoted`
    /// (replacing `champion`) or `model.rolled_back`, under an id of the release's own.
    async fn announce(
        &self,
        route: &RouteRecord,
        version: u64,
        outcome: Outcome,
        champion: u64,
        why: &str,
    ) -> Result<(), DeployerError> {
        let pipeline = route.pipeline.as_str();
        let ctx = EventContext::new_run(format!("release-{pipeline}-{version}"));
        let published = match outcome {
            Outcome::Promote => {
                let event = pb::ModelPromoted {
                    pipeline: pipeline.into(),
                    version,
                    artifact_sha256: route.stable.sha256.clone(),
                    previous_version: champion,
                    reason: why.into(),
                };
                self.bus.publish(&format!("promoted-{pipeline}-{version}"), &ctx, &event).await
            }
            Outcome::RollBack => {
                let event = pb::ModelRolledBack {
                    pipeline: pipeline.into(),
                    from_version: version,
                    to_version: route.stable.version,
                    reason: why.into(),
                };
                self.bus.publish(&format!("release-rolledback-{pipeline}-{version}"), &ctx, &event).await
            }
        };
        published.map_err(DeployerError::store)?;
        Ok(())
    }

    /// Steers the running release of `pipeline` by hand: 0 % rolls it back, 100 % promotes it,
    /// any share between is the traffic it gets from now on. `reason` (may be empty) is recorded.
    pub async fn set_traffic(&self, pipeline: &str, percent: f64, reason: &str) -> Result<(), DeployerError> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(DeployerError::BadInput(format!("canary percent {percent} is not in [0, 100]")));
        }
        let route =
            self.models.route(pipeline).ok_or_else(|| DeployerError::NotServed { pipeline: pipeline.into() })?;
        let Some(release) = &route.release else {
            return Err(DeployerError::NoRelease { pipeline: pipeline.into() });
        };
        let version = release.model.version;
        let by_hand = |what: &str| if reason.is_empty() { what.to_owned() } else { format!("{what}: {reason}") };
        if percent == 0.0 {
            return self.conclude(pipeline, version, Outcome::RollBack, &by_hand("rolled back by hand")).await;
        }
        if percent == 100.0 {
            return self.conclude(pipeline, version, Outcome::Promote, &by_hand("promoted by hand")).await;
        }
        self.change_route(pipeline, |current| {
            let mut next = current.cloned().ok_or_else(|| DeployerError::NotServed { pipeline: pipeline.into() })?;
            let Some(rel) = next.release.as_mut().filter(|x| x.model.version == version) else {
                return Err(DeployerError::ReleaseEnded);
            };
            rel.percent = percent;
            next.updated_ms = mlops_shared::now_unix_ms();
            next.reason = by_hand(&format!("traffic set to {percent} %"));
            Ok(Some(next))
        })
        .await?;
        Ok(())
    }
}
