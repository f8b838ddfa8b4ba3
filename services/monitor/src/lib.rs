//! The monitor: reads the prediction log, bins each pipeline's live inputs in windows, compares
//! them with the serving model's training profile (PSI), records every window (redb), and publishes
//! `monitor.drift_detected` when a window drifts — once per cooldown, so one drift episode
//! retrains once. Serves `mlops.v1.Monitor` reports over gRPC.

pub mod drift;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_shared::bus::{Bus, ConsumerSpec, HandlerError, MODELS_BUCKET, PREDICTIONS_STREAM};
use mlops_shared::config::NatsArgs;
use mlops_shared::events::Envelope;
use mlops_shared::http::{Readiness, ops_router, serve};
use mlops_shared::ids::Sha256;
use mlops_shared::model::Artifact;
use mlops_shared::objects::Objects;
use mlops_shared::spec::{MonitoringSpec, SpecStore};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::drift::Window;
use crate::store::{Store, WindowRecord};

/// Monitor configuration.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "mlops-monitor", version, about = "Monitor: drift of live inputs, alerts that retrain")]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub tls: mlops_shared::tls::TlsArgs,
    /// gRPC and HTTP (/healthz, /metrics) listen address.
    #[arg(long, env = "MLOPS_LISTEN", default_value = "127.0.0.1:9104")]
    pub listen: SocketAddr,
    /// Directory of the monitor's redb file.
    #[arg(long, env = "MLOPS_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

impl mlops_shared::service::ServiceConfig for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// The open window of one pipeline.
struct Open {
    sha: String,
    version: u64,
    reference: Arc<Artifact>,
    spec: MonitoringSpec,
    window: Window,
}

struct Monitor {
    bus: Bus,
    models: Objects,
    specs: SpecStore,
    store: Store,
    open: Mutex<HashMap<String, Open>>,
}

/// Runs the monitor until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    // A bad certificate fails the start, before the service touches NATS.
    let tls = config.tls.server_config()?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store = Store::open(&config.data_dir.join("monitor.redb")).context("opening monitor database")?;
    let bus = Bus::connect(&config.nats, "monitor", &shutdown).await?;
    bus.provision(config.nats.replicas).await?;
    let m = Arc::new(Monitor {
        models: bus.objects(MODELS_BUCKET).await?,
        specs: SpecStore::open(&bus).await?,
        store,
        open: Mutex::new(HashMap::new()),
        bus: bus.clone(),
    });
    let readiness = Readiness::default();
    let grpc =
        tonic::service::Routes::new(pb::monitor_server::MonitorServer::new(MonitorApi(m.clone()))).into_axum_router();
    let http = tokio::spawn(serve(listener, ops_router(readiness.clone()).merge(grpc), tls, shutdown.clone()));
    readiness.set_ready();
    let spec = ConsumerSpec {
        batch: 500,
        max_ack_pending: 20_000,
        ..ConsumerSpec::on::<pb::PredictionLogged>(PREDICTIONS_STREAM, "monitor")
    };
    bus.consume(spec, shutdown.child_token(), |e| m.on_prediction(e)).await?;
    http.await??;
    Ok(())
}

impl Monitor {
    // Windows live in memory: a crash loses at most the open window's counts, never a prediction
    // (the log stays in its stream) and never a recorded window or alert.
    async fn on_prediction(&self, e: Envelope<pb::PredictionLogged>) -> Result<(), HandlerError> {
        let ctx = e.follow();
        let p = e.payload;
        let mut open = self.open.lock().await;
        let stale = open.get(&p.pipeline).is_none_or(|o| o.sha != p.artifact_sha256);
        if stale {
            let sha =
                Sha256::parse(p.artifact_sha256.clone()).map_err(|err| HandlerError::permanent(err.to_string()))?;
            let bytes = self.models.get_verified(&sha).await?;
            let reference = Arc::new(
                Artifact::from_verified_bytes(&bytes, &sha).map_err(|err| HandlerError::permanent(err.to_string()))?,
            );
            let spec = self.specs.get(&p.pipeline).await?.map(|s| s.monitoring).unwrap_or_default();
            let window = Window::new(&reference.manifest.reference);
            open.insert(
                p.pipeline.clone(),
                Open { sha: p.artifact_sha256.clone(), version: p.version, reference, spec, window },
            );
        }
        let o = open.get_mut(&p.pipeline).expect("inserted above");
        o.window.add(&o.reference.manifest.reference, &p);
        if o.window.rows < u64::from(o.spec.window) {
            return Ok(());
        }
        let (features, share) = o.window.drift(&o.reference.manifest.reference, &o.spec);
        for f in &features {
            metrics::gauge!("mlops_drift_psi", "pipeline" => p.pipeline.clone(), "feature" => f.feature.clone())
                .set(f.score);
        }
        let drifted = share >= o.spec.drift_share;
        let now = mlops_shared::now_unix_ms();
        let seq = self.store.next_seq(&p.pipeline).map_err(|err| HandlerError::Transient(err.into()))?;
        let cooling = self
            .store
            .last_alert(&p.pipeline)
            .map_err(|err| HandlerError::Transient(err.into()))?
            .is_some_and(|t| now - t < (o.spec.cooldown_secs as i64) * 1000);
        let alert_id =
            if drifted && !cooling { format!("{}-v{}-w{seq}", p.pipeline, o.version) } else { String::new() };
        if !alert_id.is_empty() {
            let event = pb::DriftDetected {
                pipeline: p.pipeline.clone(),
                version: o.version,
                alert_id: alert_id.clone(),
                window_rows: o.window.rows,
                drifted_share: share,
                features: features.clone(),
            };
            self.bus.publish(&format!("drift-{alert_id}"), &ctx, &event).await?;
            warn!(pipeline = %p.pipeline, version = o.version, share, alert = %alert_id, "drift detected");
            metrics::counter!("mlops_drift_alerts_total", "pipeline" => p.pipeline.clone()).increment(1);
        } else if drifted {
            info!(pipeline = %p.pipeline, share, "drift inside the cooldown, no new alert");
        }
        let record = WindowRecord {
            version: o.version,
            rows: o.window.rows,
            drifted_share: share,
            features: features.into_iter().map(|f| (f.feature, f.method, f.score, f.threshold, f.drifted)).collect(),
            closed_unix_ms: now,
            alert_id,
        };
        self.store.record(&p.pipeline, seq, &record).map_err(|err| HandlerError::Transient(err.into()))?;
        o.window = Window::new(&o.reference.manifest.reference);
        Ok(())
    }
}

struct MonitorApi(Arc<Monitor>);

#[tonic::async_trait]
impl pb::monitor_server::Monitor for MonitorApi {
    async fn report(&self, req: Request<pb::ReportRequest>) -> Result<Response<pb::ReportResponse>, Status> {
        let pipeline = req.into_inner().pipeline;
        let (windows, alerts) = self.0.store.windows(&pipeline, 50).map_err(|e| Status::internal(e.to_string()))?;
        let windows = windows
            .into_iter()
            .map(|w| pb::WindowReport {
                version: w.version,
                rows: w.rows,
                drifted_share: w.drifted_share,
                features: w
                    .features
                    .into_iter()
                    .map(|(feature, method, score, threshold, drifted)| pb::FeatureDrift {
                        feature,
                        method,
                        score,
                        threshold,
                        drifted,
                    })
                    .collect(),
                closed_unix_ms: w.closed_unix_ms,
                alert_id: w.alert_id,
            })
            .collect();
        Ok(Response::new(pb::ReportResponse { pipeline, windows, alerts }))
    }
}
