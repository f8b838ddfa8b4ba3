//! What each pipeline serves, as records in the `deployments` bucket: `route.<pipeline>` names the
//! stable model and, during a release, the new one. Records change by compare-and-swap against the
//! other replicas; every replica watches them and serves (loads and verifies) what they name.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use mlops_shared::runs::kv_key;
use mlops_shared::spec::CanarySpec;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::Deployer;
use crate::error::DeployerError;
use crate::registry::PRODUCTION;
use crate::serving::{LiveStats, PendingLabels, Release, ReleaseMode, Route};

/// A model a route names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub version: u64,
    pub sha256: String,
}

/// A release in a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub model: ModelRef,
    pub mode: ReleaseMode,
    pub percent: f64,
    pub started_ms: i64,
    /// The limits it is judged by (the spec's, when it started).
    pub spec: CanarySpec,
}

/// What a pipeline serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub pipeline: String,
    pub stable: ModelRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseRecord>,
    pub updated_ms: i64,
    /// Why it last changed.
    pub reason: String,
    /// The stable model this one replaced, kept so that a promotion retried after its route was
    /// written still names the model it really replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ModelRef>,
}

/// Where route records live in the bucket: `route.<pipeline>`.
const ROUTE_PREFIX: &str = "route.";
/// Attempts at a compare-and-swap before the route is reported as conflicted.
const ROUTE_ATTEMPTS: usize = 20;
/// Predictions a replica keeps awaiting their labels during a release (about 200 bytes each).
const PENDING_LABELS: usize = 200_000;

fn route_key(pipeline: &str) -> String {
    format!("{ROUTE_PREFIX}{}", kv_key(pipeline))
}

impl Deployer {
    /// The route record of `pipeline` and its revision.
    pub async fn read_route(&self, pipeline: &str) -> Result<Option<(RouteRecord, u64)>, DeployerError> {
        let entry = self.deployments.entry(route_key(pipeline)).await.map_err(DeployerError::store)?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put && !e.value.is_empty() => {
                Some((serde_json::from_slice(&e.value).map_err(DeployerError::store)?, e.revision))
            }
            _ => None,
        })
    }

    /// Changes the route of `pipeline` with `change` (given the current record, if any), safely
    /// against other replicas doing the same, then serves the result here at once (the others
    /// follow through their watch). `change` returning `None` leaves the route as it is.
    pub async fn change_route(
        &self,
        pipeline: &str,
        change: impl Fn(Option<&RouteRecord>) -> Result<Option<RouteRecord>, DeployerError>,
    ) -> Result<Option<RouteRecord>, DeployerError> {
        for _ in 0..ROUTE_ATTEMPTS {
            let current = self.read_route(pipeline).await?;
            let Some(next) = change(current.as_ref().map(|(r, _)| r))? else { return Ok(None) };
            let bytes = serde_json::to_vec(&next).map_err(DeployerError::store)?;
            let written = match current {
                Some((_, revision)) => {
                    self.deployments.update(route_key(pipeline), bytes.into(), revision).await.is_ok()
                }
                None => self.deployments.create(route_key(pipeline), bytes.into()).await.is_ok(),
            };
            if written {
                self.apply(&next).await?;
                return Ok(Some(next));
            }
        }
        Err(DeployerError::RouteConflict { pipeline: pipeline.into() })
    }

    /// Deletes the route of `pipeline`: no replica serves it any more.
    pub async fn remove_route(&self, pipeline: &str) -> Result<(), DeployerError> {
        self.deployments.purge(route_key(pipeline)).await.map_err(DeployerError::store)
    }

    /// Serves what `record` names here: the models already loaded are kept (and a running
    /// release keeps its figures), the others are fetched and verified.
    pub async fn apply(&self, record: &RouteRecord) -> Result<(), DeployerError> {
        let current = self.models.route(&record.pipeline);
        let reuse = |r: &ModelRef| {
            let cur = current.as_ref()?;
            let release = cur.release.as_ref().map(|x| &x.model);
            [Some(&cur.stable), release]
                .into_iter()
                .flatten()
                .find(|m| m.version == r.version && m.sha.as_str() == r.sha256)
                .cloned()
        };
        let stable = match reuse(&record.stable) {
            Some(m) => m,
            None => Arc::new(self.load(&record.pipeline, record.stable.version, &record.stable.sha256).await?),
        };
        let release = match &record.release {
            None => None,
            Some(r) => {
                let model = match reuse(&r.model) {
                    Some(m) => m,
                    None => Arc::new(self.load(&record.pipeline, r.model.version, &r.model.sha256).await?),
                };
                let same = current
                    .as_ref()
                    .and_then(|c| c.release.as_ref())
                    .filter(|c| c.model.version == r.model.version && c.started_ms == r.started_ms && c.mode == r.mode);
                let (champion_stats, candidate_stats, pending) = match same {
                    Some(c) => (c.champion_stats.clone(), c.candidate_stats.clone(), c.pending.clone()),
                    None => (
                        Arc::new(LiveStats::default()),
                        Arc::new(LiveStats::default()),
                        Arc::new(PendingLabels::new(PENDING_LABELS)),
                    ),
                };
                Some(Release {
                    model,
                    mode: r.mode,
                    percent: r.percent,
                    started_ms: r.started_ms,
                    champion_stats,
                    candidate_stats,
                    pending,
                })
            }
        };
        self.models.set(Route { stable, release });
        Ok(())
    }

    /// Applies every route record as it changes, until `shutdown`; `ready` fires once the records
    /// present at start-up are served.
    pub async fn follow_routes(&self, ready: tokio::sync::oneshot::Sender<()>, shutdown: CancellationToken) {
        let mut ready = Some(ready);
        loop {
            let existing = match self.deployments.keys().await {
                Ok(keys) => {
                    keys.filter_map(|k| async move { k.ok() })
                        .filter(|k| std::future::ready(k.starts_with(ROUTE_PREFIX)))
                        .count()
                        .await
                }
                Err(e) => {
                    warn!(error = %e, "cannot list routes yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if existing == 0
                && let Some(r) = ready.take()
            {
                let _ = r.send(());
            }
            let mut watch = match self.deployments.watch_with_history(format!("{ROUTE_PREFIX}>")).await {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "cannot watch routes yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            loop {
                let entry = tokio::select! {
                    e = watch.next() => e,
                    () = shutdown.cancelled() => return,
                };
                let Some(Ok(entry)) = entry else { break };
                let pipeline = entry.key.trim_start_matches(ROUTE_PREFIX).to_owned();
                if entry.operation != kv::Operation::Put || entry.value.is_empty() {
                    self.models.remove(&pipeline);
                } else {
                    match serde_json::from_slice::<RouteRecord>(&entry.value) {
                        Ok(record) => self.apply_retrying(&record, &shutdown).await,
                        Err(e) => error!(pipeline, error = %e, "unreadable route record ignored"),
                    }
                }
                if entry.delta == 0
                    && let Some(r) = ready.take()
                {
                    let _ = r.send(());
                }
            }
            warn!("route watch ended; watching again");
        }
    }

    /// [`Deployer::apply`], retried while the store is unreachable. A bad artifact (tampered,
    /// missing) is refused: the pipeline goes unserved rather than serve it, and says so.
    async fn apply_retrying(&self, record: &RouteRecord, shutdown: &CancellationToken) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.apply(record).await {
                Ok(()) => return,
                Err(err @ DeployerError::BadArtifact { .. }) => {
                    metrics::counter!("mlops_artifacts_refused_total", "pipeline" => record.pipeline.clone())
                        .increment(1);
                    error!(pipeline = %record.pipeline, version = record.stable.version, error = %err, "production artifact refused; not serving this pipeline");
                    self.models.remove(&record.pipeline);
                    return;
                }
                Err(err) => {
                    warn!(pipeline = %record.pipeline, error = %err, retry_in = ?delay, "cannot load the route's models yet")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Routes for pipelines whose production model predates route records (or was set while no
    /// deployer ran): made from the registry's `production` alias, once.
    pub async fn adopt_production(&self) -> Result<(), DeployerError> {
        for pipeline in self.registry_pipelines().await? {
            if self.read_route(&pipeline).await?.is_some() {
                continue;
            }
            let Some(v) = self.registry_alias(&pipeline, PRODUCTION).await? else { continue };
            let record = RouteRecord {
                pipeline: v.pipeline.clone(),
                stable: ModelRef { version: v.version, sha256: v.artifact_sha256.clone() },
                release: None,
                updated_ms: mlops_shared::now_unix_ms(),
                reason: "the registry's production model".into(),
                previous: None,
            };
            let bytes = serde_json::to_vec(&record).map_err(DeployerError::store)?;
            // Another replica may have written it first: theirs stands.
            if self.deployments.create(route_key(&v.pipeline), bytes.into()).await.is_ok() {
                info!(pipeline = %v.pipeline, version = v.version, "route made from the registry's production model");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_records_already_in_the_bucket_still_read_and_write_the_same() {
        // As replicas write a route with no release (older ones without `previous`).
        for json in [
            r#"{"pipeline":"churn","stable":{"version":3,"sha256":"ab"},"updated_ms":7,"reason":"r","previous":{"version":2,"sha256":"cd"}}"#,
            r#"{"pipeline":"churn","stable":{"version":3,"sha256":"ab"},"updated_ms":7,"reason":"r"}"#,
        ] {
            let record: RouteRecord = serde_json::from_str(json).unwrap();
            assert_eq!(serde_json::to_string(&record).unwrap(), json);
        }
        let with_release = r#"{"pipeline":"churn","stable":{"version":3,"sha256":"ab"},"release":{"model":{"version":4,"sha256":"ef"},"mode":"shadow","percent":10.0,"started_ms":5,"spec":{"percent":10.0}},"updated_ms":7,"reason":"r"}"#;
        let record: RouteRecord = serde_json::from_str(with_release).unwrap();
        let release = record.release.as_ref().unwrap();
        assert_eq!((release.model.version, release.mode, release.percent), (4, ReleaseMode::Shadow, 10.0));
        let written: serde_json::Value = serde_json::to_value(&record).unwrap();
        assert_eq!(written["release"]["mode"], "shadow");
        assert_eq!(route_key("churn"), "route.churn");
    }
}
