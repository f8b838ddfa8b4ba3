//! Releases and routes. What each pipeline serves lives in the `deployments` bucket as
//! `route.<pipeline>` — the stable model and, during a canary or shadow release, the new one —
//! written with revision checks and watched by every serving replica, which loads (and verifies)
//! what the record names. During a release each replica publishes its live figures for both
//! models (`stats.<pipeline>.<replica>`); every replica judges the sum once the release is due,
//! and the first to write the verdict into the route concludes it: promote to all traffic, or roll
//! back. Events carry ids derived from the release, so a verdict is announced once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use mlops_proto as pb;
use mlops_shared::events::EventContext;
use mlops_shared::runs::kv_key;
use mlops_shared::spec::{CanarySpec, Strategy};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tracing::{error, info, warn};

use crate::serving::{LiveStats, PendingLabels, Release, ReleaseMode, Route, Snapshot};
use crate::{Deployer, bad_artifact, registry_err};

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

/// One replica's figures for a release.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StatsRecord {
    version: u64,
    started_ms: i64,
    champion: Snapshot,
    candidate: Snapshot,
    at_ms: i64,
}

/// A release's judgement.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Wait(String),
    Promote(String),
    RollBack(String),
}

/// The significance at which two prediction histograms are taken to differ.
const PREDICTION_SHIFT_P: f64 = 0.001;
/// The significance at which the new model's labelled predictions are taken to be worse.
const LABEL_QUALITY_P: f64 = 0.01;
/// Predictions a replica keeps awaiting their labels during a release (about 200 bytes each).
const PENDING_LABELS: usize = 200_000;

/// The population stability index of `actual` against `expected` (bin counts), each bin's count
/// smoothed by half a count so that an empty bin in a small sample weighs what it can tell.
pub fn psi(expected: &[u64], actual: &[u64]) -> f64 {
    let n = expected.len().max(actual.len());
    let (te, ta) = (expected.iter().sum::<u64>() as f64, actual.iter().sum::<u64>() as f64);
    if te == 0.0 || ta == 0.0 {
        return 0.0;
    }
    let share =
        |v: &[u64], i: usize, total: f64| (v.get(i).copied().unwrap_or(0) as f64 + 0.5) / (total + 0.5 * n as f64);
    (0..n)
        .map(|i| {
            let (p, q) = (share(expected, i, te), share(actual, i, ta));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Judges a release from both models' figures summed over replicas: worse than the serving
/// model by one of the spec's limits once it answered `min_requests` — roll back (at once); as
/// good after `duration_secs` — promote; otherwise wait.
pub fn judge(
    spec: &CanarySpec,
    elapsed_secs: f64,
    champion: &Snapshot,
    candidate: &Snapshot,
    classifier: bool,
) -> Verdict {
    if candidate.requests < spec.min_requests {
        return Verdict::Wait(format!(
            "{} of {} requests after {elapsed_secs:.0} s",
            candidate.requests, spec.min_requests
        ));
    }
    let mut failures = Vec::new();
    let (ce, he) = (candidate.error_rate(), champion.error_rate());
    let mut figures = vec![format!("error rate {ce:.4} against {he:.4}")];
    if ce > he + spec.max_error_rate_increase {
        failures.push(format!(
            "error rate {ce:.4} exceeds the serving model's {he:.4} by more than {}",
            spec.max_error_rate_increase
        ));
    }
    if champion.requests > 0 {
        let (cp, hp) = (candidate.p99() * 1e3, champion.p99() * 1e3);
        figures.push(format!("p99 {cp:.3} ms against {hp:.3} ms"));
        if cp > (hp * spec.max_latency_ratio).max(hp + 1.0) {
            failures.push(format!(
                "p99 latency {cp:.3} ms is over {} × the serving model's {hp:.3} ms",
                spec.max_latency_ratio
            ));
        }
        if classifier {
            // A shift must be both large (PSI) and real: on a few hundred requests PSI alone is
            // inflated by chance, so the chi-square test of the two histograms must also reject
            // "same distribution" at 0.1 %.
            let psi = psi(&champion.scores, &candidate.scores);
            let p = mlops_shared::stats::chi2_homogeneity(&champion.scores, &candidate.scores).map_or(1.0, |t| t.2);
            figures.push(format!("prediction PSI {psi:.3} (chi-square p {p:.2e})"));
            if psi > spec.max_prediction_psi && p < PREDICTION_SHIFT_P {
                failures.push(format!(
                    "predictions drifted from the serving model's: PSI {psi:.3} over {}, chi-square p {p:.2e}",
                    spec.max_prediction_psi
                ));
            }
        }
    }
    if let Some(finding) = label_quality(spec, champion, candidate, classifier, &mut figures) {
        failures.push(finding);
    }
    let figures = format!("{} requests, {}", candidate.requests, figures.join(", "));
    if !failures.is_empty() {
        Verdict::RollBack(format!("{} ({figures})", failures.join("; ")))
    } else if elapsed_secs < spec.duration_secs {
        Verdict::Wait(format!("as good so far after {elapsed_secs:.0} of {} s ({figures})", spec.duration_secs))
    } else {
        Verdict::Promote(format!("as good as the serving model after {elapsed_secs:.0} s ({figures})"))
    }
}

/// Quality on labelled predictions (`labels.arrived`), once both models have `min_labels`: worse
/// by more than the spec tolerates — accuracy lower by `max_accuracy_drop`, or mean absolute error
/// higher by `max_mae_increase` of the serving model's — *and* worse beyond chance (a one-sided
/// test of the mean losses at 1 %), so a few unlucky labels do not roll a good model back.
fn label_quality(
    spec: &CanarySpec,
    champion: &Snapshot,
    candidate: &Snapshot,
    classifier: bool,
    figures: &mut Vec<String>,
) -> Option<String> {
    if candidate.labelled < spec.min_labels || champion.labelled < spec.min_labels {
        if candidate.labelled > 0 || champion.labelled > 0 {
            figures.push(format!("{} and {} of {} labels", candidate.labelled, champion.labelled, spec.min_labels));
        }
        return None;
    }
    let moments = |s: &Snapshot| (s.labelled, s.loss_sum, s.loss_squares);
    let (_, p) = mlops_shared::stats::mean_exceeds(moments(candidate), moments(champion))?;
    let (lc, lh) = (candidate.mean_loss(), champion.mean_loss());
    let n = candidate.labelled;
    if classifier {
        let (ac, ah) = (1.0 - lc, 1.0 - lh);
        figures.push(format!("accuracy on {n} labels {ac:.4} against {ah:.4} (p {p:.2e})"));
        (ah - ac > spec.max_accuracy_drop && p < LABEL_QUALITY_P).then(|| {
            format!(
                "accuracy on {n} labelled predictions {ac:.4} is below the serving model's {ah:.4} by more than {} (p {p:.2e})",
                spec.max_accuracy_drop
            )
        })
    } else {
        figures.push(format!("MAE on {n} labels {lc:.4} against {lh:.4} (p {p:.2e})"));
        (lc > lh * (1.0 + spec.max_mae_increase) && p < LABEL_QUALITY_P).then(|| {
            format!(
                "mean absolute error on {n} labelled predictions {lc:.4} exceeds the serving model's {lh:.4} by more than {} of it (p {p:.2e})",
                spec.max_mae_increase
            )
        })
    }
}

fn route_key(pipeline: &str) -> String {
    format!("route.{}", kv_key(pipeline))
}

fn status(e: impl std::fmt::Display) -> Status {
    Status::unavailable(e.to_string())
}

impl Deployer {
    /// The route record of `pipeline` and its revision.
    pub async fn read_route(&self, pipeline: &str) -> Result<Option<(RouteRecord, u64)>, Status> {
        let entry = self.deployments.entry(route_key(pipeline)).await.map_err(status)?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put && !e.value.is_empty() => {
                Some((serde_json::from_slice(&e.value).map_err(status)?, e.revision))
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
        change: impl Fn(Option<&RouteRecord>) -> Result<Option<RouteRecord>, Status>,
    ) -> Result<Option<RouteRecord>, Status> {
        for _ in 0..20 {
            let current = self.read_route(pipeline).await?;
            let Some(next) = change(current.as_ref().map(|(r, _)| r))? else { return Ok(None) };
            let bytes = serde_json::to_vec(&next).map_err(status)?;
            let written = match current {
                Some((_, revision)) => {
                    self.deployments.update(route_key(pipeline), bytes.into(), revision).await.is_ok()
                }
                None => self.deployments.create(route_key(pipeline), bytes.into()).await.is_ok(),
            };
            if written {
                self.apply(&next).await.map_err(|e| Status::unavailable(format!("{e:#}")))?;
                return Ok(Some(next));
            }
        }
        Err(Status::aborted(format!("the route of `{pipeline}` kept changing; try again")))
    }

    /// Serves what `record` names here: the models already loaded are kept (and a running
    /// release keeps its figures), the others are fetched and verified.
    pub async fn apply(&self, record: &RouteRecord) -> anyhow::Result<()> {
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
                        .filter(|k| std::future::ready(k.starts_with("route.")))
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
            let mut watch = match self.deployments.watch_with_history("route.>").await {
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
                let pipeline = entry.key.trim_start_matches("route.").to_owned();
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
                Err(err) if bad_artifact(&err) => {
                    metrics::counter!("mlops_artifacts_refused_total", "pipeline" => record.pipeline.clone())
                        .increment(1);
                    error!(pipeline = %record.pipeline, version = record.stable.version, error = format!("{err:#}"), "production artifact refused; not serving this pipeline");
                    self.models.remove(&record.pipeline);
                    return;
                }
                Err(err) => {
                    warn!(pipeline = %record.pipeline, error = format!("{err:#}"), retry_in = ?delay, "cannot load the route's models yet")
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
    pub async fn adopt_production(&self) -> anyhow::Result<()> {
        let pipelines = self
            .registry
            .clone()
            .list_pipelines(pb::ListPipelinesRequest {})
            .await
            .map_err(registry_err)?
            .into_inner()
            .pipelines;
        for p in pipelines {
            if self.read_route(&p.name).await?.is_some() {
                continue;
            }
            let req = pb::GetModelVersionRequest {
                pipeline: p.name.clone(),
                selector: Some(pb::get_model_version_request::Selector::Alias("production".into())),
            };
            match self.registry.clone().get_model_version(req).await {
                Ok(v) => {
                    let v = v.into_inner();
                    let record = RouteRecord {
                        pipeline: v.pipeline.clone(),
                        stable: ModelRef { version: v.version, sha256: v.artifact_sha256.clone() },
                        release: None,
                        updated_ms: mlops_shared::now_unix_ms(),
                        reason: "the registry's production model".into(),
                        previous: None,
                    };
                    let bytes = serde_json::to_vec(&record)?;
                    // Another replica may have written it first: theirs stands.
                    if self.deployments.create(route_key(&v.pipeline), bytes.into()).await.is_ok() {
                        info!(pipeline = %v.pipeline, version = v.version, "route made from the registry's production model");
                    }
                }
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(registry_err(s)),
            }
        }
        Ok(())
    }

    /// Starts a release of `version` for `pipeline` by the spec's `strategy`.
    pub async fn start_release(
        &self,
        pipeline: &str,
        model: ModelRef,
        strategy: Strategy,
        spec: &CanarySpec,
        ctx: &EventContext,
    ) -> Result<(), Status> {
        let mode = if strategy == Strategy::Shadow { ReleaseMode::Shadow } else { ReleaseMode::Canary };
        let started_ms = mlops_shared::now_unix_ms();
        let version = model.version;
        let written = self
            .change_route(pipeline, |current| {
                let Some(current) = current else {
                    return Err(Status::failed_precondition(format!(
                        "`{pipeline}` serves no model to release against"
                    )));
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
        self.bus.publish(&format!("canary-{pipeline}-{version}"), ctx, &event).await.map_err(status)?;
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

    async fn review(&self, pipeline: &str, release: &Release) -> Result<(), Status> {
        let mine = StatsRecord {
            version: release.model.version,
            started_ms: release.started_ms,
            champion: release.champion_stats.snapshot(),
            candidate: release.candidate_stats.snapshot(),
            at_ms: mlops_shared::now_unix_ms(),
        };
        let prefix = format!("stats.{}.", kv_key(pipeline));
        let key = format!("{prefix}{}", kv_key(&self.replica));
        self.deployments.put(key, serde_json::to_vec(&mine).map_err(status)?.into()).await.map_err(status)?;
        let Some((record, _)) = self.read_route(pipeline).await? else { return Ok(()) };
        let Some(r) =
            record.release.filter(|r| r.model.version == release.model.version && r.started_ms == release.started_ms)
        else {
            return Ok(());
        };
        // The figures of every replica serving this release.
        let (mut champion, mut candidate) = (Snapshot::default(), Snapshot::default());
        let keys: Vec<String> = self
            .deployments
            .keys()
            .await
            .map_err(status)?
            .filter_map(|k| async move { k.ok() })
            .filter(|k| std::future::ready(k.starts_with(&prefix)))
            .collect()
            .await;
        for k in keys {
            let Some(bytes) = self.deployments.get(k.as_str()).await.map_err(status)? else { continue };
            let Ok(s) = serde_json::from_slice::<StatsRecord>(&bytes) else { continue };
            if s.version == r.model.version && s.started_ms == r.started_ms {
                champion.merge(&s.champion);
                candidate.merge(&s.candidate);
            }
        }
        let elapsed = (mlops_shared::now_unix_ms() - r.started_ms) as f64 / 1000.0;
        match judge(&r.spec, elapsed, &champion, &candidate, release.model.is_classifier()) {
            Verdict::Wait(_) => Ok(()),
            Verdict::Promote(why) => self.conclude(pipeline, r.model.version, true, &why).await,
            Verdict::RollBack(why) => self.conclude(pipeline, r.model.version, false, &why).await,
        }
    }

    /// Ends the release of `version`: promoted to all traffic (and `production`), or rolled back.
    pub async fn conclude(&self, pipeline: &str, version: u64, promote: bool, why: &str) -> Result<(), Status> {
        let mut promote = promote;
        let mut why = why.to_owned();
        if promote {
            let alias = pb::SetAliasRequest {
                pipeline: pipeline.into(),
                alias: "production".into(),
                version,
                reason: why.clone(),
                by: "deployer".into(),
            };
            match self.registry.clone().set_alias(self.as_admin(alias)).await {
                Ok(_) => {}
                // Blocked meanwhile: it never serves.
                Err(s) if s.code() == Code::FailedPrecondition => {
                    promote = false;
                    why = s.message().to_owned();
                }
                Err(s) => return Err(s),
            }
        }
        let reason = why.clone();
        let champion = std::sync::atomic::AtomicU64::new(0);
        let done = self
            .change_route(pipeline, |current| {
                let Some(current) = current else { return Ok(None) };
                champion.store(current.stable.version, std::sync::atomic::Ordering::Relaxed);
                let Some(r) = current.release.as_ref().filter(|r| r.model.version == version) else { return Ok(None) };
                let mut next = current.clone();
                if promote {
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
        let ctx = EventContext::new_run(format!("release-{pipeline}-{version}"));
        let published = if promote {
            let event = pb::ModelPromoted {
                pipeline: pipeline.into(),
                version,
                artifact_sha256: route.stable.sha256.clone(),
                previous_version: champion.load(std::sync::atomic::Ordering::Relaxed),
                reason: why.clone(),
            };
            self.bus.publish(&format!("promoted-{pipeline}-{version}"), &ctx, &event).await
        } else {
            let event = pb::ModelRolledBack {
                pipeline: pipeline.into(),
                from_version: version,
                to_version: route.stable.version,
                reason: why.clone(),
            };
            self.bus.publish(&format!("release-rolledback-{pipeline}-{version}"), &ctx, &event).await
        };
        published.map_err(status)?;
        if promote {
            metrics::counter!("mlops_promotions_total", "pipeline" => pipeline.to_owned()).increment(1);
        }
        info!(pipeline, version, promote, why, "release concluded");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(requests: u64, errors: u64, latency_bucket: usize, scores: &[u64]) -> Snapshot {
        let mut latency = vec![0; 64];
        latency[latency_bucket] = requests;
        Snapshot { requests, errors, latency, scores: scores.to_vec(), ..Default::default() }
    }

    /// `s` with `labelled` labels of which `wrong` were mispredicted (0/1 losses).
    fn labelled(mut s: Snapshot, labelled: u64, wrong: u64) -> Snapshot {
        (s.labelled, s.loss_sum, s.loss_squares) = (labelled, wrong as f64, wrong as f64);
        s
    }

    #[test]
    fn labels_roll_back_a_model_that_is_really_worse_and_only_then() {
        let spec = CanarySpec { duration_secs: 60.0, min_requests: 100, min_labels: 50, ..Default::default() };
        let spread = [10; 10];
        let champion = labelled(snap(900, 0, 30, &spread), 400, 80); // accuracy 0.80
        // 0.60 on 100 labels: 0.2 worse, far beyond chance.
        let Verdict::RollBack(why) = judge(&spec, 5.0, &champion, &labelled(snap(100, 0, 30, &spread), 100, 40), true)
        else {
            panic!()
        };
        assert!(
            why.contains("accuracy on 100 labelled predictions 0.6000 is below the serving model's 0.8000"),
            "{why}"
        );
        // Too few labels to judge: wait, and say how many there are.
        let Verdict::Wait(why) = judge(&spec, 5.0, &champion, &labelled(snap(100, 0, 30, &spread), 20, 20), true)
        else {
            panic!()
        };
        assert!(why.contains("20 and 400 of 50 labels"), "{why}");
        // 0.74 on 50 labels: more than 0.05 lower, but within chance (p about 0.17).
        let Verdict::Promote(why) = judge(&spec, 61.0, &champion, &labelled(snap(100, 0, 30, &spread), 50, 13), true)
        else {
            panic!()
        };
        assert!(why.contains("accuracy on 50 labels 0.7400 against 0.8000"), "{why}");
        // Regression: mean absolute error 2 against 1, the same spread, 60 labels each.
        let regression = |n: u64, mean: f64| {
            let mut s = snap(100, 0, 30, &[]);
            (s.labelled, s.loss_sum, s.loss_squares) = (n, mean * n as f64, (mean * mean + 0.25) * n as f64);
            s
        };
        let Verdict::RollBack(why) = judge(&spec, 5.0, &regression(60, 1.0), &regression(60, 2.0), false) else {
            panic!()
        };
        assert!(why.contains("mean absolute error on 60 labelled predictions 2.0000 exceeds"), "{why}");
        assert!(matches!(judge(&spec, 61.0, &regression(60, 1.0), &regression(60, 1.05), false), Verdict::Promote(_)));
    }

    #[test]
    fn a_release_waits_for_requests_and_time_then_promotes_or_rolls_back_with_reasons() {
        let spec = CanarySpec { duration_secs: 60.0, min_requests: 100, ..Default::default() };
        let spread = [10, 10, 10, 10, 10, 10, 10, 10, 10, 10];
        let champion = snap(900, 0, 30, &spread);
        let like = snap(100, 0, 30, &spread);
        assert!(
            matches!(judge(&spec, 120.0, &champion, &snap(50, 0, 30, &spread), true), Verdict::Wait(w) if w.contains("50 of 100"))
        );
        assert!(matches!(judge(&spec, 30.0, &champion, &like, true), Verdict::Wait(w) if w.contains("as good so far")));
        let Verdict::Promote(why) = judge(&spec, 61.0, &champion, &like, true) else { panic!() };
        assert!(why.contains("100 requests") && why.contains("prediction PSI 0.000 (chi-square p 1.00e0)"), "{why}");
        // Worse: at once, whatever the time.
        let Verdict::RollBack(why) = judge(&spec, 5.0, &champion, &snap(100, 5, 30, &spread), true) else { panic!() };
        assert!(why.contains("error rate 0.0500 exceeds the serving model's 0.0000"), "{why}");
        let Verdict::RollBack(why) = judge(&spec, 5.0, &champion, &snap(100, 0, 60, &spread), true) else { panic!() };
        assert!(why.contains("p99 latency"), "{why}");
        let Verdict::RollBack(why) =
            judge(&spec, 5.0, &champion, &snap(100, 0, 30, &[0, 0, 0, 0, 100, 0, 0, 0, 0, 0]), true)
        else {
            panic!()
        };
        assert!(why.contains("predictions drifted"), "{why}");
        // A large PSI on too few requests to tell is not a shift: 3 of 10 bins differ by chance.
        let small = CanarySpec { min_requests: 10, ..spec.clone() };
        let noisy = snap(10, 0, 30, &[2, 0, 1, 1, 0, 2, 1, 1, 0, 2]);
        let Verdict::Wait(why) = judge(&small, 5.0, &champion, &noisy, true) else { panic!() };
        assert!(why.contains("prediction PSI") && !why.contains("drifted"), "{why}");
        // Regression: no probability histogram to compare.
        assert!(matches!(judge(&spec, 61.0, &champion, &snap(100, 0, 30, &[]), false), Verdict::Promote(_)));
    }

    #[test]
    fn psi_is_zero_for_equal_shares_and_grows_with_the_shift() {
        assert!(psi(&[100, 200, 300], &[100, 200, 300]).abs() < 1e-15);
        let small = psi(&[50, 50], &[55, 45]);
        let large = psi(&[50, 50], &[90, 10]);
        assert!(small > 0.0 && small < 0.05 && large > 0.5, "{small} {large}");
        // A single stray count in a bin the other side never filled weighs next to nothing.
        assert!(psi(&[1000, 0], &[999, 1]) < 0.01);
        assert_eq!(psi(&[], &[1]), 0.0);
    }

    #[test]
    fn snapshots_merge_and_give_a_p99() {
        let mut a = snap(99, 1, 10, &[1, 2]);
        a.merge(&snap(1, 0, 40, &[3, 4, 5]));
        assert_eq!((a.requests, a.errors, a.scores.clone()), (100, 1, vec![4, 6, 5]));
        assert_eq!(a.p99(), crate::serving::latency_bound(10));
        a.merge(&snap(10, 0, 40, &[]));
        assert_eq!(a.p99(), crate::serving::latency_bound(40));
        assert!((a.error_rate() - 1.0 / 110.0).abs() < 1e-12);
    }
}
