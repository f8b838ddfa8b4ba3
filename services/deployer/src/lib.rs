//! The deployer: promotes models that passed their gates (fetch, verify sha256, hot swap, move the
//! `production` alias, publish `model.promoted`), serves them over the Open Inference Protocol v2
//! (REST and gRPC on one port), logs predictions to `mlops.predictions.<pipeline>` for the monitor,
//! and rolls back on request.

pub mod grpc;
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
use mlops_shared::spec::SpecStore;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::{error, info, warn};

use crate::serving::{Models, PredictionLog, Served};

/// Deployer configuration.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "mlops-deployer", version, about = "Deployer: promotion, hot swap and OIP v2 serving")]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// REST and gRPC (OIP v2, Deployer) and /healthz, /metrics listen address.
    #[arg(long, env = "MLOPS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Prediction logs held in memory while NATS is slow; beyond this they are dropped and counted.
    #[arg(long, env = "MLOPS_PREDICTION_LOG_QUEUE", default_value_t = 10_000)]
    pub log_queue: usize,
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
}

/// Runs the deployer until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let bus = Bus::connect(&config.nats, "deployer", &shutdown).await?;
    bus.provision(config.nats.replicas).await?;
    let channel = Channel::from_shared(config.registry.registry_url.clone())
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
        bus: bus.clone(),
    });

    let grpc = tonic::service::Routes::new(
        pb::inference::grpc_inference_service_server::GrpcInferenceServiceServer::new(grpc::Inference(d.clone())),
    )
    .add_service(pb::deployer_server::DeployerServer::new(grpc::DeployerApi(d.clone())))
    .into_axum_router();
    let router = ops_router(d.readiness.clone()).merge(rest::router(d.clone())).merge(grpc);
    let tracker = TaskTracker::new();
    tracker.spawn(serve(listener, router, shutdown.clone()));
    tracker.spawn(publish_logs(bus.clone(), log_rx, shutdown.child_token()));

    // Serve what production was before taking new promotions.
    let restore = || async { d.restore().await };
    tokio::select! {
        res = restore.retry(ExponentialBuilder::default().with_max_delay(Duration::from_secs(5)).with_max_times(usize::MAX))
            .notify(|e: &anyhow::Error, after| warn!(error = format!("{e:#}"), retry_in = ?after, "cannot restore production models yet")) => res?,
        () = shutdown.cancelled() => return Ok(()),
    }
    d.readiness.set_ready();
    info!(models = d.models.all().len(), "deployer ready");
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

/// Publishes queued prediction logs until shutdown, then drains what is left.
async fn publish_logs(
    bus: Bus,
    mut rx: mpsc::Receiver<pb::PredictionLogged>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ctx = EventContext::default();
    loop {
        let log = tokio::select! {
            log = rx.recv() => log,
            () = shutdown.cancelled() => { rx.close(); rx.recv().await }
        };
        let Some(log) = log else { return Ok(()) };
        if let Err(e) = bus.publish(&log.prediction_id.clone(), &ctx, &log).await {
            metrics::counter!("mlops_prediction_log_dropped_total").increment(1);
            warn!(error = %e, "prediction log lost");
        }
    }
}

/// Whether loading failed because the artifact itself is bad (missing, tampered, oversized or
/// malformed) rather than the store being unreachable.
fn bad_artifact(err: &anyhow::Error) -> bool {
    match err.downcast_ref::<mlops_shared::objects::ObjectError>() {
        Some(mlops_shared::objects::ObjectError::Store { .. }) => false,
        Some(_) => true,
        None => err.downcast_ref::<mlops_shared::model::ArtifactError>().is_some(),
    }
}

fn registry_err(s: Status) -> anyhow::Error {
    anyhow::anyhow!("registry: {} ({:?})", s.message(), s.code())
}

impl Deployer {
    /// Loads the production model of every pipeline from the registry.
    async fn restore(&self) -> anyhow::Result<()> {
        let pipelines = self
            .registry
            .clone()
            .list_pipelines(pb::ListPipelinesRequest {})
            .await
            .map_err(registry_err)?
            .into_inner()
            .pipelines;
        for p in pipelines {
            let req = pb::GetModelVersionRequest {
                pipeline: p.name.clone(),
                selector: Some(pb::get_model_version_request::Selector::Alias("production".into())),
            };
            match self.registry.clone().get_model_version(req).await {
                Ok(v) => {
                    let v = v.into_inner();
                    match self.load(&v.pipeline, v.version, &v.artifact_sha256).await {
                        Ok(served) => {
                            info!(pipeline = %v.pipeline, version = v.version, "serving production model");
                            self.models.swap(served);
                        }
                        // A tampered artifact is refused: that pipeline goes unserved, the others
                        // are not held up.
                        Err(err) if bad_artifact(&err) => {
                            metrics::counter!("mlops_artifacts_refused_total", "pipeline" => v.pipeline.clone())
                                .increment(1);
                            error!(pipeline = %v.pipeline, version = v.version, error = format!("{err:#}"), "production artifact refused; not serving this pipeline");
                        }
                        Err(err) => return Err(err),
                    }
                }
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(registry_err(s)),
            }
        }
        Ok(())
    }

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
        let current = self.models.get(&v.pipeline);
        if current.as_ref().is_some_and(|c| c.version > v.version) {
            info!(pipeline = %v.pipeline, version = v.version, "a newer version is already served, not promoted");
            return Ok(());
        }
        let served = self.load(&v.pipeline, v.version, &v.artifact_sha256).await.map_err(|err| {
            // A tampered or unreadable artifact is never served.
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
        let previous = current.as_ref().map_or(0, |c| c.version);
        // The registry first: it refuses `production` to a blocked version, which then never serves.
        let reason = match &v.decision {
            Some(d) => format!("approved by {}: {} (event {})", d.by, d.reason, e.id),
            None => format!("passed gates (event {})", e.id),
        };
        self.registry
            .clone()
            .set_alias(pb::SetAliasRequest {
                pipeline: v.pipeline.clone(),
                alias: "production".into(),
                version: v.version,
                reason,
                by: "deployer".into(),
            })
            .await
            .map_err(|s| match s.code() {
                Code::FailedPrecondition => HandlerError::permanent(format!("not promoted: {}", s.message())),
                _ => HandlerError::Transient(registry_err(s)),
            })?;
        self.models.swap(served);
        let event = pb::ModelPromoted {
            pipeline: v.pipeline.clone(),
            version: v.version,
            artifact_sha256: v.artifact_sha256.clone(),
            previous_version: previous,
            reason: match &v.decision {
                Some(d) => format!("approved by {}: {}", d.by, d.reason),
                None => "passed its quality gates".into(),
            },
        };
        self.bus.publish(&format!("promoted-{}-{}", v.pipeline, v.version), &ctx, &event).await?;
        metrics::counter!("mlops_promotions_total", "pipeline" => v.pipeline.clone()).increment(1);
        info!(pipeline = %v.pipeline, version = v.version, previous, "model promoted");
        Ok(())
    }

    /// An operator blocked a version: if it is the one serving, roll back to `previous`; when
    /// there is none to roll back to, stop serving the pipeline rather than serve a blocked model.
    async fn on_blocked(&self, e: Envelope<pb::ModelBlocked>) -> Result<(), HandlerError> {
        let b = &e.payload;
        if self.models.get(&b.pipeline).is_none_or(|m| m.version != b.version) {
            return Ok(());
        }
        let d = b.decision.clone().unwrap_or_default();
        let reason = format!("version {} blocked by {}: {}", b.version, d.by, d.reason);
        match self.rollback(&b.pipeline, &reason).await {
            Ok(_) => Ok(()),
            Err(s) if matches!(s.code(), Code::FailedPrecondition | Code::NotFound) => {
                self.models.remove_version(&b.pipeline, b.version);
                warn!(pipeline = %b.pipeline, version = b.version, why = s.message(), "blocked version unloaded with nothing to roll back to");
                Ok(())
            }
            Err(s) => Err(HandlerError::Transient(registry_err(s))),
        }
    }

    /// Serves the `previous` version of `pipeline` again and makes it `production`.
    pub async fn rollback(&self, pipeline: &str, reason: &str) -> Result<Arc<Served>, Status> {
        let current = self
            .models
            .get(pipeline)
            .ok_or_else(|| Status::not_found(format!("pipeline `{pipeline}` has no served model")))?;
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
        let served = self
            .load(pipeline, previous.version, &previous.artifact_sha256)
            .await
            .map_err(|e| Status::unavailable(format!("{e:#}")))?;
        self.registry
            .clone()
            .set_alias(pb::SetAliasRequest {
                pipeline: pipeline.into(),
                alias: "production".into(),
                version: previous.version,
                reason: reason.into(),
                by: "deployer".into(),
            })
            .await?;
        self.models.swap(served);
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
        Ok(self.models.get(pipeline).expect("just swapped in"))
    }
}
