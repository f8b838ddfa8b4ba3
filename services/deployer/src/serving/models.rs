//! The models being served, one route per pipeline, swapped atomically: a request holds the models
//! it started with, so a swap never fails a request. During a release a route holds both models,
//! and picking one for a request follows the release's mode and traffic share.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use mlops_shared::ids::Sha256;
use mlops_shared::model::Model;
use mlops_shared::spec::Task;

use super::pending_labels::PendingLabels;
use super::rand_unit;
use super::stats::LiveStats;
use crate::error::DeployerError;

/// A model in service.
pub struct Served {
    pub pipeline: String,
    pub version: u64,
    pub sha: Sha256,
    /// The model answering: a built-in artifact or an imported graph.
    pub artifact: Arc<dyn Model>,
    pub since_unix_ms: i64,
    pub predictions: AtomicU64,
    /// Share of predictions logged for monitoring.
    pub log_sample: f64,
}

impl Served {
    /// Whether the model predicts a class (with its probability) rather than a value.
    pub fn is_classifier(&self) -> bool {
        self.artifact.manifest().target.task == Task::BinaryClassification
    }
}

/// A release in progress: the new model, how it is exposed, and both models' live figures
/// since it started.
pub struct Release {
    pub model: Arc<Served>,
    pub mode: ReleaseMode,
    /// Percent of requests the new model answers (canary) or sees mirrored (shadow).
    pub percent: f64,
    pub started_ms: i64,
    pub champion_stats: Arc<LiveStats>,
    pub candidate_stats: Arc<LiveStats>,
    /// This replica's predictions in the release, awaiting their labels.
    pub pending: Arc<PendingLabels>,
}

/// How a release meets traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseMode {
    Canary,
    Shadow,
}

impl ReleaseMode {
    /// The mode's name on the wire (`canary.started`, the deployer API, the route's reason).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Canary => "canary",
            Self::Shadow => "shadow",
        }
    }
}

/// What one pipeline serves: the stable model, and a release when one runs.
pub struct Route {
    pub stable: Arc<Served>,
    pub release: Option<Release>,
}

/// The model chosen for one request, with where to record its figures, and the model to mirror
/// the request to (shadow).
pub struct Picked {
    pub model: Arc<Served>,
    pub stats: Option<Arc<LiveStats>>,
    pub shadow: Option<(Arc<Served>, Arc<LiveStats>)>,
    /// Where the release keeps predictions for their labels.
    pub pending: Option<Arc<PendingLabels>>,
}

/// Every served route, by pipeline; swapped whole, so a request keeps the models it started with.
#[derive(Default)]
pub struct Models {
    by_pipeline: RwLock<HashMap<String, Arc<Route>>>,
}

impl Models {
    /// The stable model serving `pipeline`.
    pub fn get(&self, pipeline: &str) -> Option<Arc<Served>> {
        self.route(pipeline).map(|r| r.stable.clone())
    }

    /// The route of `pipeline`.
    pub fn route(&self, pipeline: &str) -> Option<Arc<Route>> {
        self.by_pipeline.read().expect("lock is never poisoned: no panics while held").get(pipeline).cloned()
    }

    /// Serves `model` alone for its pipeline from now on; returns the route it replaced.
    pub fn swap(&self, model: Served) -> Option<Arc<Route>> {
        self.set(Route { stable: Arc::new(model), release: None })
    }

    /// Serves `route` for its pipeline from now on; returns the one it replaced.
    pub fn set(&self, route: Route) -> Option<Arc<Route>> {
        let mut map = self.by_pipeline.write().expect("lock is never poisoned: no panics while held");
        map.insert(route.stable.pipeline.clone(), Arc::new(route))
    }

    /// Stops serving `pipeline`.
    pub fn remove(&self, pipeline: &str) -> Option<Arc<Route>> {
        self.by_pipeline.write().expect("lock is never poisoned: no panics while held").remove(pipeline)
    }

    /// Stops serving `pipeline` if it serves `version`; returns whether it did.
    pub fn remove_version(&self, pipeline: &str, version: u64) -> bool {
        let mut map = self.by_pipeline.write().expect("lock is never poisoned: no panics while held");
        if map.get(pipeline).is_some_and(|m| m.stable.version == version) {
            map.remove(pipeline);
            return true;
        }
        false
    }

    /// Every served stable model, by pipeline name.
    pub fn all(&self) -> Vec<Arc<Served>> {
        self.routes().into_iter().map(|r| r.stable.clone()).collect()
    }

    /// Every route, by pipeline name.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        let mut v: Vec<_> =
            self.by_pipeline.read().expect("lock is never poisoned: no panics while held").values().cloned().collect();
        v.sort_by(|a, b| a.stable.pipeline.cmp(&b.stable.pipeline));
        v
    }

    /// The served model of `pipeline` — the stable one, or the one of `version` when given (which
    /// may be a release in progress) — as [`Models::pick`] chooses it.
    pub fn find(&self, pipeline: &str, version: Option<&str>) -> Result<Arc<Served>, DeployerError> {
        self.pick(pipeline, version).map(|p| p.model)
    }

    /// Chooses the model for one request of `pipeline`; `version`, when given, must be one of
    /// the models served. During a canary the new model answers its percent of the requests;
    /// during a shadow release the stable model answers and the new one sees a mirror.
    pub fn pick(&self, pipeline: &str, version: Option<&str>) -> Result<Picked, DeployerError> {
        let route = self.route(pipeline).ok_or_else(|| DeployerError::NotServed { pipeline: pipeline.into() })?;
        let release = route.release.as_ref();
        if let Some(v) = version.filter(|v| !v.is_empty()) {
            if v == route.stable.version.to_string() {
                let stats = release.map(|r| r.champion_stats.clone());
                let pending = release.map(|r| r.pending.clone());
                return Ok(Picked { model: route.stable.clone(), stats, shadow: None, pending });
            }
            if let Some(r) = release.filter(|r| v == r.model.version.to_string()) {
                return Ok(Picked {
                    model: r.model.clone(),
                    stats: Some(r.candidate_stats.clone()),
                    shadow: None,
                    pending: Some(r.pending.clone()),
                });
            }
            return Err(DeployerError::VersionNotServed {
                pipeline: pipeline.into(),
                version: v.into(),
                serving: format!(
                    "version {}{}",
                    route.stable.version,
                    release.map_or(String::new(), |r| format!(", {} {}", r.mode.as_str(), r.model.version))
                ),
            });
        }
        let Some(r) = release else {
            return Ok(Picked { model: route.stable.clone(), stats: None, shadow: None, pending: None });
        };
        let chosen = rand_unit() * 100.0 < r.percent;
        let pending = Some(r.pending.clone());
        Ok(match (r.mode, chosen) {
            (ReleaseMode::Canary, true) => {
                Picked { model: r.model.clone(), stats: Some(r.candidate_stats.clone()), shadow: None, pending }
            }
            (ReleaseMode::Shadow, true) => Picked {
                model: route.stable.clone(),
                stats: Some(r.champion_stats.clone()),
                shadow: Some((r.model.clone(), r.candidate_stats.clone())),
                pending,
            },
            (_, false) => {
                Picked { model: route.stable.clone(), stats: Some(r.champion_stats.clone()), shadow: None, pending }
            }
        })
    }
}
