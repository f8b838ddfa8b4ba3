//! The deployer: promotes models that passed their gates (fetch, verify sha256, hot swap, move the
//! `production` alias, publish `model.promoted`), serves them over the Open Inference Protocol v2
//! (REST and gRPC on one port), logs predictions to `mlops.predictions.<pipeline>` for the monitor,
//! and rolls back on request.

pub mod grpc;
pub mod invocations;
pub mod labels;
pub mod release;
pub mod rest;
pub mod serving;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context as _;
use backon::{ExponentialBuilder, Retryable};
use mlops_proto as pb;
use mlops_proto::registry_client::RegistryClient;
use mlops_shared::bus::{Bus, ConsumerSpec, HandlerError, MODELS_BUCKET};
use mlops_shared::config::{NatsArgs, RegistryArgs};
use mlops_shared::events::{Envelope, EventContext};
use mlops_shared::http::{Readiness, ops_router, serve};
use mlops_shared::ids::Sha256;
use mlops_shared::model::Artifact;
use mlops_shared::objects::Objects;
use mlops_shared::spec::{SpecStore, Strategy};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::{info, warn};

use crate::serving::{Models, PredictionLog, Served};

/// Deployer configuration.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "mlops-deployer", version, about = "Deployer: promotion, hot swap and OIP v2 serving")]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub tls: mlops_shared::tls::TlsArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// REST and gRPC (OIP v2, Deployer) and /healthz, /metrics listen address.
    #[arg(long, env = "MLOPS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Prediction logs held in memory while NATS is slow; beyond this they are dropped and counted.
    #[arg(long, env = "MLOPS_PREDICTION_LOG_QUEUE", default_value_t = 10_000)]
    pub log_queue: usize,
    #[command(flatten)]
    pub admin: mlops_shared::config::AdminArgs,
    /// The largest inference request accepted, in bytes (REST body or gRPC message).
    #[arg(long, env = "MLOPS_MAX_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// This replica's name in the shared release figures (default: host name and process id).
    #[arg(long, env = "MLOPS_REPLICA_ID")]
    pub replica: Option<String>,
}

impl mlops_shared::service::ServiceConfig for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// The deployer's state, shared by its consumers and its APIs.
pub struct Deployer {
    pub models: Models,
    pub readiness: Readiness,
    pub log: PredictionLog,
    bus: Bus,
    artifacts: Objects,
    specs: SpecStore,
    registry: RegistryClient<Channel>,
    /// Routes and release figures, shared by every replica.
    deployments: async_nats::jetstream::kv::Store,
    /// This replica's name in the release figures.
    replica: String,
    /// Who may deploy, roll back and steer traffic.
    pub admin: mlops_shared::config::AdminArgs,
}

/// Runs the deployer until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    // A bad certificate fails the start, before the service touches NATS.
    let tls = config.tls.server_config()?;
    let bus = Bus::connect(&config.nats, "deployer", &shutdown).await?;
    bus.provision(config.nats.replicas).await?;
    let channel = mlops_shared::tls::endpoint(&config.registry.registry_url)
        .with_context(|| format!("registry url {:?}", config.registry.registry_url))?
        .connect_lazy();
    let (log, log_rx) = PredictionLog::new(config.log_queue.max(1));
    let d = Arc::new(Deployer {
        models: Models::default(),
        readiness: Readiness::default(),
        log,
        artifacts: bus.objects(MODELS_BUCKET).await?,
        specs: SpecStore::open(&bus).await?,
        registry: RegistryClient::new(channel),
        deployments: bus.kv(mlops_shared::bus::DEPLOYMENTS_KV).await?,
        admin: config.admin.clone(),
        replica: config.replica.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        }),
        bus: bus.clone(),
    });

    let limit = config.max_request_bytes;
    let grpc = tonic::service::Routes::new(
        pb::inference::grpc_inference_service_server::GrpcInferenceServiceServer::new(grpc::Inference(d.clone()))
            .max_decoding_message_size(limit),
    )
    .add_service(pb::deployer_server::DeployerServer::new(grpc::DeployerApi(d.clone())))
    .into_axum_router();
    let rest = rest::router(d.clone()).layer(axum::extract::DefaultBodyLimit::max(limit));
    let router = ops_router(d.readiness.clone()).merge(rest).merge(grpc);
    let tracker = TaskTracker::new();
    tracker.spawn(serve(listener, router, tls, shutdown.clone()));
    tracker.spawn(publish_logs(bus.clone(), log_rx, shutdown.child_token()));
    tracker.spawn(labels::follow_labels(d.clone(), shutdown.child_token()));

    // Serve what the routes say before taking new promotions; a replica needs only NATS for that.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    {
        let (d, token) = (d.clone(), shutdown.child_token());
        tracker.spawn(async move { d.follow_routes(ready_tx, token).await });
    }
    tokio::select! {
        _ = ready_rx => {}
        () = shutdown.cancelled() => return Ok(()),
    }
    d.readiness.set_ready();
    info!(models = d.models.all().len(), replica = %d.replica, "deployer ready");
    {
        // Production models set while no route recorded them (an older deployment).
        let (d, token) = (d.clone(), shutdown.child_token());
        tracker.spawn(async move {
            let adopt = || async { d.adopt_production().await };
            tokio::select! {
                res = adopt.retry(ExponentialBuilder::default().with_max_delay(Duration::from_secs(5)).with_max_times(usize::MAX))
                    .notify(|e: &anyhow::Error, after| warn!(error = format!("{e:#}"), retry_in = ?after, "cannot adopt production models yet")) => res,
                () = token.cancelled() => Ok(()),
            }
        });
    }
    {
        let (d, token) = (d.clone(), shutdown.child_token());
        tracker.spawn(async move {
            d.run_releases(token).await;
            anyhow::Ok(())
        });
    }
    {
        let (d, token) = (d.clone(), shutdown.child_token());
        tracker.spawn(async move {
            d.bus.consume(ConsumerSpec::events::<pb::ModelEvaluated>("deployer"), token, |e| d.on_evaluated(e)).await
        });
    }
    {
        let (d, token) = (d.clone(), shutdown.child_token());
        tracker.spawn(async move {
            d.bus
                .consume(ConsumerSpec::events::<pb::ModelBlocked>("deployer-blocked"), token, |e| d.on_blocked(e))
                .await
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Publishes queued prediction logs until shutdown, then drains what is left. Up to `IN_FLIGHT`
/// logs are on their way at once, so the rate is not one round trip per log. A log the stream did
/// not take (no stream leader during a cluster election, a connection lost mid-ack) is sent again
/// with the same `Nats-Msg-Id`, so the stream keeps one copy, up to `ATTEMPTS` times over about
/// 16 s; only then is it counted as dropped.
async fn publish_logs(
    bus: Bus,
    mut rx: mpsc::Receiver<pb::PredictionLogged>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    use std::future::Future;
    use std::pin::Pin;
    const IN_FLIGHT: usize = 1024;
    const ATTEMPTS: u32 = 8;
    type Sending<'a> = Pin<Box<dyn Future<Output = (pb::PredictionLogged, u32, Option<String>)> + Send + 'a>>;
    let ctx = EventContext::default();
    let (bus, ctx) = (&bus, &ctx);
    let send = |log: pb::PredictionLogged, attempt: u32| -> Sending<'_> {
        Box::pin(async move {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << (attempt - 1).min(4))).await;
            }
            let error = match bus.publish_pipelined(&log.prediction_id, ctx, &log).await {
                Ok(ack) => ack.into_future().await.err().map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            (log, attempt, error)
        })
    };
    let mut sending = futures::stream::FuturesUnordered::new();
    let (mut open, mut closing) = (true, false);
    while open || !sending.is_empty() {
        tokio::select! {
            log = rx.recv(), if open && sending.len() < IN_FLIGHT => match log {
                Some(log) => sending.push(send(log, 0)),
                None => open = false,
            },
            Some((log, attempt, error)) = sending.next(), if !sending.is_empty() => {
                let Some(error) = error else { continue };
                if attempt + 1 < ATTEMPTS && !closing {
                    metrics::counter!("mlops_prediction_log_retried_total").increment(1);
                    sending.push(send(log, attempt + 1));
                } else {
                    metrics::counter!("mlops_prediction_log_dropped_total").increment(1);
                    warn!(%error, attempts = attempt + 1, "prediction log lost");
                }
            }
            // What is queued still goes out; nothing is retried any more.
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                rx.close();
            }
        }
    }
    Ok(())
}

/// Whether loading failed because the artifact itself is bad (missing, tampered, oversized or
/// malformed) rather than the store being unreachable.
pub(crate) fn bad_artifact(err: &anyhow::Error) -> bool {
    match err.downcast_ref::<mlops_shared::objects::ObjectError>() {
        Some(mlops_shared::objects::ObjectError::Store { .. }) => false,
        Some(_) => true,
        None => err.downcast_ref::<mlops_shared::model::ArtifactError>().is_some(),
    }
}

fn status_err(s: Status) -> HandlerError {
    HandlerError::Transient(anyhow::anyhow!("{}", s.message()))
}

pub(crate) fn registry_err(s: Status) -> anyhow::Error {
    anyhow::anyhow!("registry: {} ({:?})", s.message(), s.code())
}

impl Deployer {
    /// Fetches an artifact, verifies its sha256 and prepares it for serving.
    async fn load(&self, pipeline: &str, version: u64, sha: &str) -> anyhow::Result<Served> {
        let sha = Sha256::parse(sha.to_owned())?;
        let bytes = self.artifacts.get_verified(&sha).await?;
        let artifact = Artifact::from_verified_bytes(&bytes, &sha)?;
        let log_sample = self.specs.get(pipeline).await?.map_or(1.0, |s| s.deployment.log_sample);
        Ok(Served {
            pipeline: pipeline.into(),
            version,
            sha,
            artifact,
            since_unix_ms: mlops_shared::now_unix_ms(),
            predictions: AtomicU64::new(0),
            log_sample,
        })
    }

    async fn on_evaluated(&self, e: Envelope<pb::ModelEvaluated>) -> Result<(), HandlerError> {
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
            if bad_artifact(&err) {
                metrics::counter!("mlops_artifacts_refused_total", "pipeline" => v.pipeline.clone()).increment(1);
                HandlerError::permanent(format!(
                    "artifact {} of `{}` v{}: {err:#}",
                    v.artifact_sha256, v.pipeline, v.version
                ))
            } else {
                HandlerError::Transient(err)
            }
        })?;
        let deployment = self.specs.get(&v.pipeline).await?.map(|s| s.deployment).unwrap_or_default();
        let model = release::ModelRef { version: v.version, sha256: v.artifact_sha256.clone() };
        let first = self.read_route(&v.pipeline).await.map_err(status_err)?.is_none();
        if deployment.strategy == Strategy::Direct || first {
            let reason = match &v.decision {
                Some(d) => format!("approved by {}: {}", d.by, d.reason),
                None => "passed its quality gates".into(),
            };
            self.promote_now(&v.pipeline, model, &reason, &ctx).await
        } else {
            self.start_release(&v.pipeline, model, deployment.strategy, &deployment.canary, &ctx).await
        }
        .map_err(|s| match s.code() {
            Code::FailedPrecondition | Code::NotFound => {
                HandlerError::permanent(format!("not promoted: {}", s.message()))
            }
            _ => HandlerError::Transient(anyhow::anyhow!("{}", s.message())),
        })
    }

    /// Serves `model` to all traffic now, ending any release: `production` moves first (the
    /// registry refuses a blocked version, which then never serves), then the route. Returns the
    /// version that was stable before.
    async fn make_stable(&self, pipeline: &str, model: &release::ModelRef, reason: &str) -> Result<u64, Status> {
        let alias = pb::SetAliasRequest {
            pipeline: pipeline.into(),
            alias: "production".into(),
            version: model.version,
            reason: reason.into(),
            by: "deployer".into(),
        };
        self.registry.clone().set_alias(self.as_admin(alias)).await?;
        let previous = std::sync::atomic::AtomicU64::new(0);
        self.change_route(pipeline, |current| {
            // Retried after the route already names `model`: what it replaced is kept there.
            let replaced = match current {
                Some(c) if c.stable == *model => c.previous.clone(),
                Some(c) => Some(c.stable.clone()),
                None => None,
            };
            previous.store(replaced.as_ref().map_or(0, |m| m.version), std::sync::atomic::Ordering::Relaxed);
            Ok(Some(release::RouteRecord {
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

    /// `message` carrying this deployer's admin token, for the registry's mutating calls.
    pub(crate) fn as_admin<T>(&self, message: T) -> tonic::Request<T> {
        mlops_shared::config::with_token(message, self.admin.admin_token.as_deref())
    }

    /// [`Deployer::make_stable`], announced as `model.promoted`.
    pub async fn promote_now(
        &self,
        pipeline: &str,
        model: release::ModelRef,
        reason: &str,
        ctx: &EventContext,
    ) -> Result<(), Status> {
        let version = model.version;
        let previous = self.make_stable(pipeline, &model, reason).await?;
        let event = pb::ModelPromoted {
            pipeline: pipeline.into(),
            version,
            artifact_sha256: model.sha256.clone(),
            previous_version: previous,
            reason: reason.into(),
        };
        self.bus
            .publish(&format!("promoted-{pipeline}-{version}"), ctx, &event)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        metrics::counter!("mlops_promotions_total", "pipeline" => pipeline.to_owned()).increment(1);
        info!(pipeline, version, previous, "model promoted");
        Ok(())
    }

    /// An operator blocked a version: a release of it ends; if it is the stable one, roll back to
    /// `previous` — or, with nothing to roll back to, stop serving the pipeline rather than serve a
    /// blocked model.
    async fn on_blocked(&self, e: Envelope<pb::ModelBlocked>) -> Result<(), HandlerError> {
        let b = &e.payload;
        let Some(route) = self.models.route(&b.pipeline) else { return Ok(()) };
        let d = b.decision.clone().unwrap_or_default();
        let reason = format!("version {} blocked by {}: {}", b.version, d.by, d.reason);
        let transient = |s: Status| HandlerError::Transient(anyhow::anyhow!("{}", s.message()));
        if route.release.as_ref().is_some_and(|r| r.model.version == b.version) {
            return self.conclude(&b.pipeline, b.version, false, &reason).await.map_err(transient);
        }
        if route.stable.version != b.version {
            return Ok(());
        }
        match self.rollback(&b.pipeline, &reason).await {
            Ok(_) => Ok(()),
            Err(s) if matches!(s.code(), Code::FailedPrecondition | Code::NotFound) => {
                self.deployments
                    .purge(format!("route.{}", mlops_shared::runs::kv_key(&b.pipeline)))
                    .await
                    .map_err(|e| HandlerError::Transient(e.into()))?;
                self.models.remove_version(&b.pipeline, b.version);
                warn!(pipeline = %b.pipeline, version = b.version, why = s.message(), "blocked version unloaded with nothing to roll back to");
                Ok(())
            }
            Err(s) => Err(transient(s)),
        }
    }

    /// Ends a running release without promoting it; with none running, serves the `previous`
    /// version again and makes it `production`.
    pub async fn rollback(&self, pipeline: &str, reason: &str) -> Result<Arc<Served>, Status> {
        let route = self
            .models
            .route(pipeline)
            .ok_or_else(|| Status::not_found(format!("pipeline `{pipeline}` has no served model")))?;
        if let Some(r) = &route.release {
            self.conclude(pipeline, r.model.version, false, reason).await?;
            return self.models.get(pipeline).ok_or_else(|| Status::not_found(format!("`{pipeline}` is not served")));
        }
        let current = route.stable.clone();
        let req = pb::GetModelVersionRequest {
            pipeline: pipeline.into(),
            selector: Some(pb::get_model_version_request::Selector::Alias("previous".into())),
        };
        let previous = self.registry.clone().get_model_version(req).await.map_err(|s| match s.code() {
            Code::NotFound => {
                Status::failed_precondition(format!("pipeline `{pipeline}` has no previous version to roll back to"))
            }
            _ => s,
        })?;
        let previous = previous.into_inner();
        self.load(pipeline, previous.version, &previous.artifact_sha256)
            .await
            .map_err(|e| Status::unavailable(format!("{e:#}")))?;
        let model = release::ModelRef { version: previous.version, sha256: previous.artifact_sha256.clone() };
        self.make_stable(pipeline, &model, reason).await?;
        let event = pb::ModelRolledBack {
            pipeline: pipeline.into(),
            from_version: current.version,
            to_version: previous.version,
            reason: reason.into(),
        };
        let id =
            format!("rolledback-{pipeline}-{}-{}-{}", current.version, previous.version, mlops_shared::now_unix_ms());
        self.bus
            .publish(&id, &EventContext::new_run(id.clone()), &event)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        info!(pipeline, from = current.version, to = previous.version, "rolled back");
        self.models.get(pipeline).ok_or_else(|| Status::not_found(format!("`{pipeline}` is not served")))
    }
}
