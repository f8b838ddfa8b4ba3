//! The deployer: promotes models that passed their gates (verify, hot swap, move `production`,
//! announce), serves them over the Open Inference Protocol v2 (REST and gRPC on one port), logs
//! predictions for the monitor, runs canary and shadow releases, and rolls back on request.

pub mod canary;
pub mod error;
pub mod features;
mod features_api;
pub mod grpc;
pub mod invocations;
pub mod labels;
mod promotion;
mod registry;
pub mod release;
pub mod rest;
pub mod routes;
pub mod serving;

pub use error::DeployerError;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context as _;
use backon::{ExponentialBuilder, Retryable};
use mlops_proto as pb;
use mlops_proto::registry_client::RegistryClient;
use mlops_shared::bus::{Bus, ConsumerSpec, MODELS_BUCKET};
use mlops_shared::config::{NatsArgs, RegistryArgs};
use mlops_shared::http::Readiness;
use mlops_shared::ids::Sha256;
use mlops_shared::objects::{ObjectError, Objects};
use mlops_shared::service::Service;
use mlops_shared::spec::SpecStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
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
    /// The most prediction logs one JetStream message carries (1: a message each, as before
    /// batches; `just bench-serve` compares the two).
    #[arg(long, env = "MLOPS_PREDICTION_LOG_BATCH", default_value_t = 256,
          value_parser = clap::value_parser!(u16).range(1..=2048))]
    pub log_batch: u16,
    #[command(flatten)]
    pub admin: mlops_shared::config::AdminArgs,
    /// The largest inference request accepted, in bytes (REST body or gRPC message).
    #[arg(long, env = "MLOPS_MAX_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// The most entities of one feature view held in memory for serving by entity key (a
    /// replica following the online store); a bigger view is read from the store on each
    /// request. 0 reads every view from the store.
    #[arg(long, env = "MLOPS_FEATURE_REPLICA_ENTITIES", default_value_t = 2_000_000)]
    pub feature_replica_entities: usize,
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
    /// The online feature store, for models that look features up.
    pub online: features::OnlineFeatures,
    bus: Bus,
    artifacts: Objects,
    /// Runs imported ONNX models.
    onnx: mlops_onnx::Engine,
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
    // Before anything connects: an ONNX Runtime named by a path that is not a file stops the start.
    let onnx = mlops_onnx::Engine::from_env()?;
    let mut service = Service::start("deployer", &config.nats, &config.tls, &shutdown).await?;
    let (log, log_rx) = PredictionLog::new(config.log_queue.max(1));
    let d = Arc::new(Deployer::open(&config, service.bus.clone(), log, onnx, service.shutdown()).await?);
    service.spawn(serving::publish_logs(service.bus.clone(), log_rx, config.log_batch.into(), service.shutdown()));
    let (labelled, token) = (d.clone(), service.shutdown());
    service.spawn(async move {
        labels::follow_labels(labelled, token).await;
        Ok(())
    });
    // Serve what the routes say before taking new promotions; a replica needs only NATS for that.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (routed, token) = (d.clone(), service.shutdown());
    service.spawn(async move {
        routed.follow_routes(ready_tx, token).await;
        Ok(())
    });
    tokio::select! {
        _ = ready_rx => {}
        () = shutdown.cancelled() => return Ok(()),
    }
    d.readiness.set_ready();
    info!(models = d.models.all().len(), replica = %d.replica, "deployer follows its routes");
    let (adopting, token) = (d.clone(), service.shutdown());
    service.spawn(async move {
        // Production models set while no route recorded them (an older deployment).
        let adopt = || async { adopting.adopt_production().await };
        let backoff = ExponentialBuilder::default().with_max_delay(Duration::from_secs(5)).with_max_times(usize::MAX);
        tokio::select! {
            res = adopt.retry(backoff).notify(|e: &DeployerError, after| warn!(error = %e, retry_in = ?after, "cannot adopt production models yet")) => Ok(res?),
            () = token.cancelled() => Ok(()),
        }
    });
    let (releasing, token) = (d.clone(), service.shutdown());
    service.spawn(async move {
        releasing.run_releases(token).await;
        Ok(())
    });
    let evaluated = ConsumerSpec::events::<pb::ModelEvaluated>("deployer");
    service.consume(evaluated, d.clone(), |d, e| async move { d.on_evaluated(e).await });
    let blocked = ConsumerSpec::events::<pb::ModelBlocked>("deployer-blocked");
    service.consume(blocked, d.clone(), |d, e| async move { d.on_blocked(e).await });
    service.serve(listener, Some(routes(&d, config.max_request_bytes))).await
}

/// The deployer's own routes on its one port: OIP v2 over REST and gRPC, `/invocations`, and
/// `mlops.v1.Deployer` (`/healthz` and `/metrics` come from [`Service::serve`]); requests up to
/// `limit` bytes.
fn routes(d: &Arc<Deployer>, limit: usize) -> axum::Router {
    let grpc = tonic::service::Routes::new(
        pb::inference::grpc_inference_service_server::GrpcInferenceServiceServer::new(grpc::Inference(d.clone()))
            .max_decoding_message_size(limit),
    )
    .add_service(pb::deployer_server::DeployerServer::new(grpc::DeployerApi(d.clone())))
    .into_axum_router();
    let rest = rest::router(d.clone()).layer(axum::extract::DefaultBodyLimit::max(limit));
    rest.merge(grpc)
}

impl Deployer {
    /// Opens the buckets and the registry channel the deployer works with.
    async fn open(
        config: &Config,
        bus: Bus,
        log: PredictionLog,
        onnx: mlops_onnx::Engine,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let channel = mlops_shared::tls::endpoint(&config.registry.registry_url, config.tls.tls_ca.as_deref())
            .with_context(|| format!("registry url {:?}", config.registry.registry_url))?
            .connect_lazy();
        Ok(Self {
            models: Models::default(),
            readiness: Readiness::default(),
            log,
            online: features::OnlineFeatures::new(
                mlops_features::FeatureStore::open(&bus).await?,
                config.feature_replica_entities,
                shutdown,
            ),
            artifacts: bus.objects(MODELS_BUCKET).await?,
            onnx,
            specs: SpecStore::open(&bus).await?,
            registry: RegistryClient::new(channel),
            deployments: bus.kv(mlops_shared::bus::DEPLOYMENTS_KV).await?,
            admin: config.admin.clone(),
            replica: config.replica.clone().unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            }),
            bus,
        })
    }

    /// Fetches an artifact, verifies its sha256 and prepares it for serving. A missing, tampered,
    /// oversized or malformed artifact is [`DeployerError::BadArtifact`]; a store out of reach is not.
    async fn load(&self, pipeline: &str, version: u64, sha: &str) -> Result<Served, DeployerError> {
        let bad = |reason: String| DeployerError::BadArtifact {
            pipeline: pipeline.into(),
            version,
            sha256: sha.into(),
            reason,
        };
        let sha = Sha256::parse(sha.to_owned()).map_err(|e| bad(e.to_string()))?;
        let bytes = self.artifacts.get_verified(&sha).await.map_err(|e| match e {
            ObjectError::Store { .. } => DeployerError::store(e),
            _ => bad(e.to_string()),
        })?;
        // Off the runtime: a large model parses, and a graph is optimised, for a while.
        let (engine, checked) = (self.onnx.clone(), sha.clone());
        let artifact = tokio::task::spawn_blocking(move || engine.load_verified(&bytes, &checked))
            .await
            .map_err(|e| bad(format!("loading it failed: {e}")))?
            .map_err(bad)?;
        let spec = self.specs.get(pipeline).await.map_err(DeployerError::store)?;
        Ok(Served {
            pipeline: pipeline.into(),
            version,
            sha,
            artifact,
            since_unix_ms: mlops_shared::now_unix_ms(),
            predictions: AtomicU64::new(0),
            log_sample: spec.map_or(1.0, |s| s.deployment.log_sample),
        })
    }
}
