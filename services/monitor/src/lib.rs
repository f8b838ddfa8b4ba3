//! The monitor: reads the prediction log in batches, gathers each pipeline's live inputs and
//! predictions in windows (by count or time), tests each feature's drift from the serving model's
//! training data or the window before, records every window (redb), and publishes
//! `monitor.drift_detected` when a window drifts. It also keeps every logged prediction by id,
//! joins the `labels.arrived` that come later, tracks the serving version's quality on them, and
//! publishes `monitor.performance_degraded` under the spec's floor. Either alert is a retraining
//! trigger, raised once per cooldown, and kept in the alert history. Serves `mlops.v1.Monitor`
//! reports over gRPC.

pub mod drift;
pub mod labels;
pub mod store;
mod ui;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_shared::bus::{Bus, ConsumerSpec, HandlerError, MODELS_BUCKET, PREDICTIONS_STREAM};
use mlops_shared::config::NatsArgs;
use mlops_shared::events::{Envelope, EventContext};
use mlops_shared::http::{Readiness, ops_router, serve};
use mlops_shared::ids::Sha256;
use mlops_shared::model::Artifact;
use mlops_shared::objects::Objects;
use mlops_shared::spec::{MonitoringSpec, ReferenceKind, SpecStore};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::drift::{References, Window};
use crate::store::{AlertRecord, Logged, Store, WindowRecord};

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
    #[command(flatten)]
    pub registry: mlops_shared::config::RegistryArgs,
    /// Directory of the monitor's redb file.
    #[arg(long, env = "MLOPS_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// How long a logged prediction waits for its label (hours). Only pipelines whose spec has
    /// `monitoring.performance` keep their predictions: about 100 bytes each, so size the disk as
    /// predictions per hour × this × 100 B (less with `deployment.log_sample`).
    #[arg(long, env = "MLOPS_PREDICTION_RETENTION_HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub prediction_retention_hours: u64,
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
    /// What the window is compared with: the training data, or the window before (rolling).
    references: References,
    spec: MonitoringSpec,
    window: Window,
}

struct Monitor {
    bus: Bus,
    /// For the dashboard's model versions.
    registry: pb::registry_client::RegistryClient<tonic::transport::Channel>,
    models: Objects,
    specs: SpecStore,
    store: Store,
    open: Mutex<HashMap<String, Open>>,
    /// How long a logged prediction waits for its label.
    retention_ms: i64,
}

/// Runs the monitor until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    // A bad certificate fails the start, before the service touches NATS.
    let tls = config.tls.server_config()?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store = Store::open(&config.data_dir.join("monitor.redb")).context("opening monitor database")?;
    let bus = Bus::connect(&config.nats, "monitor", &shutdown).await?;
    bus.provision(config.nats.replicas).await?;
    let registry = mlops_shared::tls::endpoint(&config.registry.registry_url)
        .with_context(|| format!("registry url {:?}", config.registry.registry_url))?
        .connect_lazy();
    let m = Arc::new(Monitor {
        registry: pb::registry_client::RegistryClient::new(registry),
        models: bus.objects(MODELS_BUCKET).await?,
        specs: SpecStore::open(&bus).await?,
        store,
        open: Mutex::new(HashMap::new()),
        retention_ms: (config.prediction_retention_hours as i64) * 3600 * 1000,
        bus: bus.clone(),
    });
    let readiness = Readiness::default();
    let grpc =
        tonic::service::Routes::new(pb::monitor_server::MonitorServer::new(MonitorApi(m.clone()))).into_axum_router();
    let router = ops_router(readiness.clone()).merge(ui::router(m.clone())).merge(grpc);
    let http = tokio::spawn(serve(listener, router, tls, shutdown.clone()));
    readiness.set_ready();
    let spec = ConsumerSpec {
        batch: 500,
        max_ack_pending: 20_000,
        ..ConsumerSpec::on::<pb::PredictionLogged>(PREDICTIONS_STREAM, "monitor")
    };
    let labels_spec = ConsumerSpec {
        max_deliver: labels::LABEL_ATTEMPTS,
        ..ConsumerSpec::events::<pb::LabelsArrived>("monitor-labels")
    };
    let (predictions, labelled, ()) = tokio::join!(
        bus.consume_batches(spec, shutdown.child_token(), |batch| m.on_predictions(batch)),
        bus.consume(labels_spec, shutdown.child_token(), |e| m.on_labels(e)),
        m.close_windows_on_time(shutdown.child_token()),
    );
    predictions?;
    labelled?;
    http.await??;
    Ok(())
}

impl Monitor {
    /// One batch of the prediction log: kept by id for the labels (one durable commit, before
    /// the batch is acknowledged), then added to the windows.
    async fn on_predictions(
        &self,
        batch: Vec<Envelope<pb::PredictionLogged>>,
    ) -> Result<Vec<(usize, String)>, HandlerError> {
        let forget_before = mlops_shared::now_unix_ms() - self.retention_ms;
        // Only pipelines that measure quality on labels keep their predictions for them.
        let mut labelled = HashMap::new();
        for e in &batch {
            if !labelled.contains_key(&e.payload.pipeline) {
                let spec = self.specs.get(&e.payload.pipeline).await?;
                let wants = spec.is_some_and(|s| s.monitoring.performance.is_some());
                labelled.insert(e.payload.pipeline.clone(), wants);
            }
        }
        let logged = batch.iter().filter(|e| labelled[&e.payload.pipeline]).map(|e| {
            let p = &e.payload;
            let kept = Logged {
                pipeline: p.pipeline.clone(),
                version: p.version,
                score: p.score,
                time_unix_ms: p.time_unix_ms,
            };
            (p.prediction_id.as_str(), kept)
        });
        self.store.index_predictions(logged, forget_before).map_err(|err| HandlerError::Transient(err.into()))?;
        metrics::counter!("mlops_monitor_predictions_total").increment(batch.len() as u64);
        let mut bad = Vec::new();
        for (i, e) in batch.into_iter().enumerate() {
            match self.on_prediction(e).await {
                Ok(()) => {}
                Err(HandlerError::Permanent(reason)) => bad.push((i, reason)),
                Err(other) => return Err(other),
            }
        }
        Ok(bad)
    }

    // Windows live in memory: a crash loses at most the open window's counts, never a prediction
    // (the log stays in its stream, and its id is kept for labels) nor a recorded window or alert.
    // A batch retried after a failure may count some predictions twice in the open window.
    async fn on_prediction(&self, e: Envelope<pb::PredictionLogged>) -> Result<(), HandlerError> {
        let ctx = e.follow();
        let p = e.payload;
        let mut open = self.open.lock().await;
        let stale = open.get(&p.pipeline).is_none_or(|o| o.sha != p.artifact_sha256);
        if stale {
            let sha =
                Sha256::parse(p.artifact_sha256.clone()).map_err(|err| HandlerError::permanent(err.to_string()))?;
            let bytes = self.models.get_verified(&sha).await?;
            let artifact =
                Artifact::from_verified_bytes(&bytes, &sha).map_err(|err| HandlerError::permanent(err.to_string()))?;
            let spec = self.specs.get(&p.pipeline).await?.map(|s| s.monitoring).unwrap_or_default();
            let references = References::from_profile(&artifact.manifest.reference);
            let window = Window::new(&references);
            open.insert(
                p.pipeline.clone(),
                Open { sha: p.artifact_sha256.clone(), version: p.version, references, spec, window },
            );
        }
        let o = open.get_mut(&p.pipeline).expect("inserted above");
        o.window.add(&o.references, &p);
        let elapsed_ms = p.time_unix_ms - o.window.opened_ms;
        let timed_out = o.spec.window_secs.is_some_and(|s| elapsed_ms >= (s as i64) * 1000);
        if o.window.rows < u64::from(o.spec.window) && !timed_out {
            return Ok(());
        }
        self.close_window(&p.pipeline, o, &ctx).await
    }

    /// Closes, every second, the windows whose `window_secs` have passed since their first
    /// prediction, so a quiet pipeline's window is judged without waiting for more traffic.
    async fn close_windows_on_time(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let now = mlops_shared::now_unix_ms();
            let mut open = self.open.lock().await;
            for (pipeline, o) in open.iter_mut() {
                let due = o.spec.window_secs.is_some_and(|s| now - o.window.opened_ms >= (s as i64) * 1000);
                if o.window.rows > 0 && due {
                    // A failure leaves the window open; the next tick tries again.
                    if let Err(e) = self.close_window(pipeline, o, &EventContext::default()).await {
                        warn!(pipeline, error = %e, "closing a window on time failed");
                    }
                }
            }
        }
    }

    /// Judges and records `o`'s window, alerts when it drifted (once per cooldown), and opens
    /// the next one.
    async fn close_window(&self, pipeline: &str, o: &mut Open, ctx: &EventContext) -> Result<(), HandlerError> {
        let (features, share, prediction) = o.window.drift(&o.references, &o.spec);
        for f in features.iter().chain(&prediction) {
            let labels =
                [("pipeline", pipeline.to_owned()), ("feature", f.feature.clone()), ("method", f.method.clone())];
            metrics::gauge!("mlops_drift_score", &labels).set(f.score);
            metrics::gauge!("mlops_drift_detected", "pipeline" => pipeline.to_owned(), "feature" => f.feature.clone())
                .set(f64::from(u8::from(f.drifted)));
        }
        let drifted = share >= o.spec.drift_share;
        let now = mlops_shared::now_unix_ms();
        let seq = self.store.next_seq(pipeline).map_err(|err| HandlerError::Transient(err.into()))?;
        let cooling = self
            .store
            .last_alert(pipeline, "drift")
            .map_err(|err| HandlerError::Transient(err.into()))?
            .is_some_and(|t| now - t < (o.spec.cooldown_secs as i64) * 1000);
        let alert_id = if drifted && !cooling { format!("{pipeline}-v{}-w{seq}", o.version) } else { String::new() };
        if !alert_id.is_empty() {
            let event = pb::DriftDetected {
                pipeline: pipeline.to_owned(),
                version: o.version,
                alert_id: alert_id.clone(),
                window_rows: o.window.rows,
                drifted_share: share,
                features: features.clone(),
                prediction: prediction.clone(),
            };
            self.bus.publish(&format!("drift-{alert_id}"), ctx, &event).await?;
            warn!(pipeline, version = o.version, share, alert = %alert_id, "drift detected");
            metrics::counter!("mlops_drift_alerts_total", "pipeline" => pipeline.to_owned()).increment(1);
        } else if drifted {
            info!(pipeline, share, "drift inside the cooldown, no new alert");
        }
        let alert = (!alert_id.is_empty()).then(|| {
            let drifted: Vec<&str> = features.iter().filter(|f| f.drifted).map(|f| f.feature.as_str()).collect();
            AlertRecord {
                alert_id: alert_id.clone(),
                kind: "drift".into(),
                version: o.version,
                time_unix_ms: now,
                detail: format!(
                    "{:.0} % of features drifted over {} predictions: {}",
                    share * 100.0,
                    o.window.rows,
                    drifted.join(", ")
                ),
            }
        });
        let as_tuple = |f: pb::FeatureDrift| (f.feature, f.method, f.score, f.threshold, f.drifted);
        let record = WindowRecord {
            version: o.version,
            rows: o.window.rows,
            drifted_share: share,
            features: features.into_iter().map(as_tuple).collect(),
            closed_unix_ms: now,
            alert_id,
            prediction: prediction.map(as_tuple),
        };
        self.store.record(pipeline, seq, &record, alert.as_ref()).map_err(|err| HandlerError::Transient(err.into()))?;
        if o.spec.reference == ReferenceKind::Rolling {
            o.references = o.references.from_window(&o.window);
        }
        o.window = Window::new(&o.references);
        Ok(())
    }
}

struct MonitorApi(Arc<Monitor>);

#[tonic::async_trait]
impl pb::monitor_server::Monitor for MonitorApi {
    async fn report(&self, req: Request<pb::ReportRequest>) -> Result<Response<pb::ReportResponse>, Status> {
        let pipeline = req.into_inner().pipeline;
        mlops_shared::ids::PipelineName::new(&pipeline).map_err(|e| Status::invalid_argument(e.to_string()))?;
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
                prediction: w.prediction.map(|(feature, method, score, threshold, drifted)| pb::FeatureDrift {
                    feature,
                    method,
                    score,
                    threshold,
                    drifted,
                }),
            })
            .collect();
        let store = |e: store::StoreError| Status::internal(e.to_string());
        let alert_history = self
            .0
            .store
            .alerts(&pipeline, 50)
            .map_err(store)?
            .into_iter()
            .map(|a| pb::Alert {
                alert_id: a.alert_id,
                kind: a.kind,
                version: a.version,
                time_unix_ms: a.time_unix_ms,
                detail: a.detail,
            })
            .collect();
        let performance = self.0.store.performance(&pipeline).map_err(store)?.map(|p| pb::PerformanceReport {
            version: p.version,
            metric: p.metric,
            value: p.value,
            labelled: p.labelled,
            threshold: p.threshold,
            higher_is_better: p.higher_is_better,
            at_unix_ms: p.at_unix_ms,
        });
        Ok(Response::new(pb::ReportResponse { pipeline, windows, alerts, alert_history, performance }))
    }
}
