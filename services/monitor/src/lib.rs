//! The monitor: reads the prediction log in batches, gathers each pipeline's live inputs and
//! predictions in windows (by count or time), tests each feature's drift from the serving model's
//! training data or the window before, records every window (redb), and publishes
//! `monitor.drift_detected` when a window drifts. It also keeps every logged prediction by id,
//! joins the `labels.arrived` that come later, tracks the serving version's quality on them, and
//! publishes `monitor.performance_degraded` under the spec's floor. Either alert is a retraining
//! trigger, raised once per cooldown, and kept in the alert history. With `monitoring.feedback`,
//! labelled predictions become feedback dataset versions (`feedback`). Serves `mlops.v1.Monitor`
//! reports over gRPC.

pub mod drift;
mod erasure;
pub mod error;
mod feedback;
pub mod labels;
mod skew;
pub mod store;
mod ui;
mod windows;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_shared::bus::{Bus, ConsumerSpec, DATASETS_BUCKET, MODELS_BUCKET, PREDICTIONS_STREAM, off_runtime};
use mlops_shared::config::NatsArgs;
use mlops_shared::events::{Envelope, EventContext};
use mlops_shared::ids::Sha256;
use mlops_shared::objects::Objects;
use mlops_shared::service::Service;
use mlops_shared::spec::{MonitoringSpec, SpecStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::error::MonitorError;
use crate::store::{AlertKind, AlertRecord, Inputs, Logged, Store, StoreError, WindowRecord};

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
    /// Predictions one pipeline's drift windows may have waiting (its model still loading, say);
    /// beyond it they are left out of that pipeline's windows (counted in
    /// `mlops_monitor_window_dropped_total`) rather than holding up every other pipeline's.
    #[arg(long, env = "MLOPS_MONITOR_WINDOW_QUEUE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub window_queue: u64,
    /// How long a label waits, in all, for its prediction to be read (seconds): longer than the
    /// 30 s after which a crashed monitor's unacknowledged predictions come back.
    #[arg(long, env = "MLOPS_LABEL_WAIT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub label_wait_secs: u64,
    /// Compact the prediction log into the archive (`mlops predictions show`, `export`). Off on
    /// all but one monitor when several share a bus.
    #[arg(long, env = "MLOPS_ARCHIVE", default_value_t = true, action = clap::ArgAction::Set)]
    pub archive: bool,
    /// The archive writes what it gathered once the oldest prediction waited this long (seconds).
    #[arg(long, env = "MLOPS_ARCHIVE_FLUSH_SECS", default_value_t = 60.0)]
    pub archive_flush_secs: f64,
    /// ... or once it gathered this many predictions (the memory held: about 300 B each).
    #[arg(long, env = "MLOPS_ARCHIVE_MAX_ROWS", default_value_t = 200_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub archive_max_rows: u64,
    /// How often the archive looks for partitions past their pipeline's `audit.retention_days`
    /// (seconds).
    #[arg(long, env = "MLOPS_ARCHIVE_RETENTION_CHECK_SECS", default_value_t = 3600.0)]
    pub archive_retention_check_secs: f64,
    /// The key of erasures (`mlops data erase`), the same as ingest's: an erasure by a feature
    /// finds the subject's kept predictions and waiting feedback rows by the value's keyed hash.
    /// Never printed.
    #[arg(long, env = "MLOPS_PII_KEY", hide_env_values = true)]
    pub pii_key: Option<String>,
}

impl mlops_shared::service::ServiceConfig for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}

struct Monitor {
    bus: Bus,
    /// For the dashboard's model versions.
    registry: pb::registry_client::RegistryClient<tonic::transport::Channel>,
    models: Objects,
    /// Where feedback versions are written.
    datasets: Objects,
    /// Held while a feedback version is written.
    feedback_writer: tokio::sync::Mutex<()>,
    specs: SpecStore,
    store: Arc<Store>,
    /// Each pipeline's drift windows, in a task of its own.
    pipelines: windows::Pipelines,
    /// Feature views' offline logs, for the skew of looked-up features.
    features: mlops_features::FeatureStore,
    offline: skew::OfflineLogs,
    /// How long a logged prediction waits for its label.
    retention_ms: i64,
    /// How long a label waits for its prediction.
    label_wait: std::time::Duration,
    /// The keyed hash erasures match values by, when `MLOPS_PII_KEY` is set.
    pseudonymiser: Option<Arc<mlops_shared::pii::Pseudonymiser>>,
}

/// The monitor's durable consumer of the prediction log.
const PREDICTIONS_CONSUMER: &str = "monitor";

/// Runs the monitor until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store = Arc::new(Store::open(&config.data_dir.join("monitor.redb")).context("opening monitor database")?);
    let pseudonymiser = config.pii_key.as_deref().map(|k| mlops_shared::pii::Pseudonymiser::new(k.as_bytes()));
    let pseudonymiser = pseudonymiser.transpose().map_err(anyhow::Error::msg)?.map(Arc::new);
    let mut service = Service::start("monitor", &config.nats, &config.tls, &shutdown).await?;
    let bus = service.bus.clone();
    let registry = mlops_shared::tls::endpoint(&config.registry.registry_url, config.tls.tls_ca.as_deref())
        .with_context(|| format!("registry url {:?}", config.registry.registry_url))?
        .connect_lazy();
    let m = Arc::new(Monitor {
        registry: pb::registry_client::RegistryClient::new(registry),
        models: bus.objects(MODELS_BUCKET).await?,
        datasets: bus.objects(DATASETS_BUCKET).await?,
        feedback_writer: tokio::sync::Mutex::new(()),
        specs: SpecStore::open(&bus).await?,
        store,
        pipelines: windows::Pipelines::new(service.shutdown(), config.window_queue as usize),
        features: mlops_features::FeatureStore::open(&bus).await?,
        offline: skew::OfflineLogs::default(),
        retention_ms: (config.prediction_retention_hours as i64) * 3600 * 1000,
        label_wait: std::time::Duration::from_secs(config.label_wait_secs),
        pseudonymiser,
        bus,
    });
    let predictions = ConsumerSpec {
        batch: 500,
        max_ack_pending: 20_000,
        ..ConsumerSpec::on::<pb::PredictionLogBatch>(PREDICTIONS_STREAM, PREDICTIONS_CONSUMER)
    };
    service.consume_batches(predictions, m.clone(), |m, batch| async move { Ok(m.on_predictions(batch).await?) });
    let labels = ConsumerSpec {
        max_deliver: labels::LABEL_ATTEMPTS,
        ..ConsumerSpec::events::<pb::LabelsArrived>("monitor-labels")
    };
    service.consume(labels, m.clone(), |m, e| async move { Ok(m.on_labels(e).await?) });
    let erased = ConsumerSpec {
        // Deferred until the prediction log is read through the erasure, however long that takes.
        // (A durable keeps the `max_deliver` it was created with: a new name for the new limit.)
        max_deliver: -1,
        ..ConsumerSpec::events::<pb::DataErased>("monitor-erasures")
    };
    service.consume(erased, m.clone(), |m, e| async move { Ok(m.on_erased(e).await?) });
    if config.archive {
        let secs = |s: f64, name: &str| {
            (s.is_finite() && s > 0.0)
                .then(|| std::time::Duration::from_secs_f64(s))
                .with_context(|| format!("{name} must be a positive number of seconds, not {s}"))
        };
        let archive = mlops_archive::Archive::open(&m.bus).await?;
        let config = mlops_archive::CompactorConfig {
            max_rows: config.archive_max_rows as usize,
            flush_after: secs(config.archive_flush_secs, "MLOPS_ARCHIVE_FLUSH_SECS")?,
            retention_check: secs(config.archive_retention_check_secs, "MLOPS_ARCHIVE_RETENTION_CHECK_SECS")?,
        };
        // The predictions, the labels that come for them later, and batch jobs' outputs.
        for archive in [archive.labels(), archive.batches(), archive] {
            let compactor = mlops_archive::Compactor {
                archive,
                bus: m.bus.clone(),
                specs: m.specs.clone(),
                config: config.clone(),
            };
            service.spawn(compactor.run(service.shutdown()));
        }
    }
    let (ages, stop) = (m.clone(), service.shutdown());
    service.spawn(async move {
        ages.check_feedback_ages(stop).await;
        Ok(())
    });
    let grpc =
        tonic::service::Routes::new(pb::monitor_server::MonitorServer::new(MonitorApi(m.clone()))).into_axum_router();
    service.serve(listener, Some(ui::router(m).merge(grpc))).await
}

/// What the label store keeps of one prediction: its inputs too when `with_inputs` (feedback).
/// `positive` is the target's positive class, for a classifier: whether the served label was it
/// is what the decision was.
/// `amount` names the feature holding its amount (`business.amount`), kept when the spec has one
/// (0 when the prediction has none).
fn logged(p: &pb::PredictionLogged, with_inputs: bool, positive: Option<&str>, amount: Option<&str>) -> Logged {
    let inputs = with_inputs.then(|| Inputs {
        numeric: p.numeric.iter().filter(|(_, v)| v.is_finite()).map(|(k, v)| (k.clone(), *v)).collect(),
        categorical: p.categorical.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    });
    Logged {
        pipeline: p.pipeline.clone(),
        version: p.version,
        score: p.score,
        time_unix_ms: p.time_unix_ms,
        positive: positive.filter(|_| !p.label.is_empty()).map(|c| p.label == c),
        inputs,
        // A missing amount counts as 0, as it does on the holdout.
        amount: amount.map(|a| p.numeric.get(a).copied().filter(|v| v.is_finite()).unwrap_or(0.0)),
    }
}

impl Monitor {
    /// Runs `write`, which commits to the store, on the blocking pool: a commit waits for the
    /// disk (fsync), which must not hold a runtime thread while predictions and requests wait.
    async fn commit<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, MonitorError> {
        let store = self.store.clone();
        off_runtime(move || Ok(write(&store)?)).await
    }

    /// Messages of the prediction log, each a batch of predictions: kept by id for the labels (one
    /// durable commit, before the messages are acknowledged), then added to the windows. A message
    /// whose every prediction names no valid artifact is refused; one with some is counted.
    async fn on_predictions(
        self: &Arc<Self>,
        batch: Vec<Envelope<pb::PredictionLogBatch>>,
    ) -> Result<Vec<(usize, String)>, MonitorError> {
        let forget_before = mlops_shared::now_unix_ms() - self.retention_ms;
        // Only pipelines that use labels (for quality or feedback) keep their predictions for
        // them, and only those writing feedback versions keep the inputs too.
        let mut kept = HashMap::new();
        for e in &batch {
            if !kept.contains_key(&e.payload.pipeline) {
                let spec = self.specs.get(&e.payload.pipeline).await?;
                let m = spec.as_ref().map(|s| &s.monitoring);
                let keep = m.map_or(Keep::Nothing, |m| match (&m.performance, &m.feedback) {
                    (_, Some(_)) => Keep::Inputs,
                    (Some(_), None) => Keep::Score,
                    (None, None) => Keep::Nothing,
                });
                // A regression prediction is served with no label, and so keeps no decision.
                let amount = spec.as_ref().and_then(|s| s.business.as_ref()).and_then(|b| b.amount.clone());
                let positive = spec.map(|s| s.target.positive);
                kept.insert(e.payload.pipeline.clone(), (keep, positive, amount));
            }
        }
        let logged: Vec<(String, Logged)> = batch
            .iter()
            .filter(|e| kept[&e.payload.pipeline].0 != Keep::Nothing)
            .flat_map(|e| e.payload.predictions.iter().map(|p| (p, &kept[&e.payload.pipeline])))
            .map(|(p, (keep, positive, amount))| {
                (p.prediction_id.clone(), logged(p, *keep == Keep::Inputs, positive.as_deref(), amount.as_deref()))
            })
            .collect();
        self.commit(move |store| {
            store.index_predictions(logged.iter().map(|(id, l)| (id.as_str(), l.clone())), forget_before)
        })
        .await?;
        let total: usize = batch.iter().map(|e| e.payload.predictions.len()).sum();
        metrics::counter!("mlops_monitor_predictions_total").increment(total as u64);
        let mut bad = Vec::new();
        for (i, e) in batch.into_iter().enumerate() {
            let (ctx, n) = (e.follow(), e.payload.predictions.len());
            let mut refused = Vec::new();
            for p in e.payload.predictions {
                match Sha256::parse(p.artifact_sha256.clone()) {
                    Ok(_) => self.pipelines.send(self, ctx.clone(), p),
                    Err(err) => refused.push(format!("prediction {}: {err}", p.prediction_id)),
                }
            }
            if refused.len() == n && n > 0 {
                bad.push((i, refused.join("; ")));
            } else if !refused.is_empty() {
                metrics::counter!("mlops_monitor_predictions_refused_total").increment(refused.len() as u64);
                warn!(id = %e.id, refused = %refused.join("; "), "predictions without a valid artifact skipped");
            }
        }
        Ok(bad)
    }

    /// Records a closed window and alerts when it drifted (once per cooldown).
    async fn record_window(
        &self,
        pipeline: &str,
        spec: &MonitoringSpec,
        closed: Closed,
        ctx: &EventContext,
    ) -> Result<(), MonitorError> {
        let Closed { version, rows, features, share, prediction } = closed;
        for f in features.iter().chain(&prediction) {
            let labels =
                [("pipeline", pipeline.to_owned()), ("feature", f.feature.clone()), ("method", f.method.clone())];
            metrics::gauge!("mlops_drift_score", &labels).set(f.score);
            metrics::gauge!("mlops_drift_detected", "pipeline" => pipeline.to_owned(), "feature" => f.feature.clone())
                .set(f64::from(u8::from(f.drifted)));
        }
        let drifted = share >= spec.drift_share;
        let now = mlops_shared::now_unix_ms();
        let seq = self.store.next_seq(pipeline)?;
        let cooling = self
            .store
            .last_alert(pipeline, AlertKind::Drift)?
            .is_some_and(|t| now - t < (spec.cooldown_secs as i64) * 1000);
        let alert_id = if drifted && !cooling { format!("{pipeline}-v{}-w{seq}", version) } else { String::new() };
        if !alert_id.is_empty() {
            let event = pb::DriftDetected {
                pipeline: pipeline.to_owned(),
                version,
                alert_id: alert_id.clone(),
                window_rows: rows,
                drifted_share: share,
                features: features.clone(),
                prediction: prediction.clone(),
            };
            self.bus.publish(&format!("drift-{alert_id}"), ctx, &event).await?;
            warn!(pipeline, version = version, share, alert = %alert_id, "drift detected");
            metrics::counter!("mlops_drift_alerts_total", "pipeline" => pipeline.to_owned()).increment(1);
        } else if drifted {
            info!(pipeline, share, "drift inside the cooldown, no new alert");
        }
        let alert = (!alert_id.is_empty()).then(|| {
            let drifted: Vec<&str> = features.iter().filter(|f| f.drifted).map(|f| f.feature.as_str()).collect();
            AlertRecord {
                alert_id: alert_id.clone(),
                kind: AlertKind::Drift,
                version,
                time_unix_ms: now,
                detail: format!(
                    "{:.0} % of features drifted over {} predictions: {}",
                    share * 100.0,
                    rows,
                    drifted.join(", ")
                ),
            }
        });
        let as_tuple = |f: pb::FeatureDrift| (f.feature, f.method, f.score, f.threshold, f.drifted);
        let record = WindowRecord {
            version,
            rows,
            drifted_share: share,
            features: features.into_iter().map(as_tuple).collect(),
            closed_unix_ms: now,
            alert_id,
            prediction: prediction.map(as_tuple),
        };
        let p = pipeline.to_owned();
        self.commit(move |store| store.record(&p, seq, &record, alert.as_ref())).await?;
        Ok(())
    }
}

/// What the monitor keeps of a pipeline's logged predictions for the labels to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Nothing: no label is used.
    Nothing,
    /// The score, for quality on labels.
    Score,
    /// The score and the inputs, for feedback versions.
    Inputs,
}

/// A window just judged: whose, how many predictions, each feature's drift, the share that
/// drifted, and the predictions' own drift.
pub(crate) struct Closed {
    pub(crate) version: u64,
    pub(crate) rows: u64,
    pub(crate) features: Vec<pb::FeatureDrift>,
    pub(crate) share: f64,
    pub(crate) prediction: Option<pb::FeatureDrift>,
}

struct MonitorApi(Arc<Monitor>);

#[tonic::async_trait]
impl pb::monitor_server::Monitor for MonitorApi {
    async fn report(&self, req: Request<pb::ReportRequest>) -> Result<Response<pb::ReportResponse>, Status> {
        Ok(Response::new(self.0.report(req.into_inner().pipeline).await?))
    }
}

impl Monitor {
    /// `pipeline`'s newest windows, alerts, label quality and feedback, as the `Monitor` service
    /// answers.
    async fn report(&self, pipeline: String) -> Result<pb::ReportResponse, MonitorError> {
        mlops_shared::ids::PipelineName::new(&pipeline)?;
        let (windows, alerts) = self.store.windows(&pipeline, 50)?;
        let as_drift = |(feature, method, score, threshold, drifted): (String, String, f64, f64, bool)| {
            pb::FeatureDrift { feature, method, score, threshold, drifted }
        };
        let windows = windows
            .into_iter()
            .map(|w| pb::WindowReport {
                version: w.version,
                rows: w.rows,
                drifted_share: w.drifted_share,
                features: w.features.into_iter().map(as_drift).collect(),
                closed_unix_ms: w.closed_unix_ms,
                alert_id: w.alert_id,
                prediction: w.prediction.map(as_drift),
            })
            .collect();
        let alert_history = self
            .store
            .alerts(&pipeline, 50)?
            .into_iter()
            .map(|a| pb::Alert {
                alert_id: a.alert_id,
                kind: a.kind.as_str().into(),
                version: a.version,
                time_unix_ms: a.time_unix_ms,
                detail: a.detail,
            })
            .collect();
        let performance = self.store.performance(&pipeline)?.map(|p| pb::PerformanceReport {
            version: p.version,
            metric: p.metric,
            value: p.value,
            labelled: p.labelled,
            threshold: p.threshold,
            higher_is_better: p.higher_is_better,
            at_unix_ms: p.at_unix_ms,
        });
        let spec = self.specs.get(&pipeline).await?.and_then(|s| s.monitoring.feedback);
        let state = self.store.feedback_state(&pipeline)?;
        let feedback = match spec {
            None if state == store::FeedbackState::default() => None,
            spec => Some(pb::FeedbackReport {
                waiting: state.waiting,
                min_rows: spec.as_ref().map_or(0, |f| f.min_rows),
                oldest_unix_ms: self.store.oldest_waiting(&pipeline)?.unwrap_or_default(),
                max_age_hours: spec.as_ref().map_or(0.0, |f| f.max_age_hours),
                versions: state.versions,
                last_dataset_id: state.last_dataset_id,
                late: state.late,
            }),
        };
        Ok(pb::ReportResponse { pipeline, windows, alerts, alert_history, performance, feedback })
    }
}
