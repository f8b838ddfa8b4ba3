//! The evaluator: judges each trained model on its holdout rows, and the production model on the
//! same rows, against the spec's gates; publishes `model.evaluated` with pass or fail and every
//! check's numbers.

pub mod gate;
pub mod measure;
pub mod staleness;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_proto::registry_client::RegistryClient;
use mlops_shared::bus::{Bus, ConsumerSpec, DATASETS_BUCKET, HandlerError, MODELS_BUCKET};
use mlops_shared::config::{NatsArgs, RegistryArgs};
use mlops_shared::events::Envelope;
use mlops_shared::http::{Readiness, ops_router, serve};
use mlops_shared::ids::Sha256;
use mlops_shared::model::{Artifact, holdout_split};
use mlops_shared::objects::Objects;
use mlops_shared::runs::Runs;
use mlops_shared::spec::SpecStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::info;

/// Evaluator configuration.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "mlops-evaluator", version, about = "Evaluator: quality gates against the production model")]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub tls: mlops_shared::tls::TlsArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// HTTP (/healthz, /metrics) listen address.
    #[arg(long, env = "MLOPS_LISTEN", default_value = "127.0.0.1:9103")]
    pub listen: SocketAddr,
}

impl mlops_shared::service::ServiceConfig for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// The evaluator's handles: the bus, both buckets, the specs, the run records and the registry.
pub struct Evaluator {
    bus: Bus,
    datasets: Objects,
    models: Objects,
    specs: SpecStore,
    registry: RegistryClient<Channel>,
    runs: Runs,
    slots: mlops_shared::schedule::Slots,
}

/// Runs the evaluator until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    // A bad certificate fails the start, before the service touches NATS.
    let tls = config.tls.server_config()?;
    let bus = Bus::connect(&config.nats, "evaluator", &shutdown).await?;
    bus.provision(config.nats.replicas).await?;
    let ev = Evaluator::open(&bus, &config.registry.registry_url).await?;
    let readiness = Readiness::default();
    readiness.set_ready();
    let http = tokio::spawn(serve(listener, ops_router(readiness), tls, shutdown.clone()));
    let schedules = {
        let (ev, token) = (ev.clone(), shutdown.child_token());
        tokio::spawn(async move { ev.run_staleness_schedules(token).await })
    };
    bus.consume(ConsumerSpec::events::<pb::ModelTrained>("evaluator"), shutdown.child_token(), |e| ev.on_trained(e))
        .await?;
    schedules.await?;
    http.await??;
    Ok(())
}

/// Asks the registry for one version; `None` when it has none.
async fn lookup(
    registry: &RegistryClient<Channel>,
    pipeline: &str,
    selector: pb::get_model_version_request::Selector,
) -> Result<Option<pb::ModelVersion>, HandlerError> {
    let req = pb::GetModelVersionRequest { pipeline: pipeline.into(), selector: Some(selector) };
    match registry.clone().get_model_version(req).await {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(HandlerError::Transient(anyhow::anyhow!("registry: {}", s.message()))),
    }
}

impl Evaluator {
    /// Opens the buckets and stores, and a lazy connection to the registry at `registry_url`.
    pub async fn open(bus: &Bus, registry_url: &str) -> anyhow::Result<Arc<Self>> {
        let channel = mlops_shared::tls::endpoint(registry_url)
            .with_context(|| format!("registry url {registry_url:?}"))?
            .connect_lazy();
        Ok(Arc::new(Self {
            datasets: bus.objects(DATASETS_BUCKET).await?,
            models: bus.objects(MODELS_BUCKET).await?,
            specs: SpecStore::open(bus).await?,
            registry: RegistryClient::new(channel),
            runs: Runs::open(bus).await?,
            slots: mlops_shared::schedule::Slots::open(bus).await?,
            bus: bus.clone(),
        }))
    }

    /// The datasets `ids`, verified, as (id, bytes).
    async fn datasets(&self, ids: &[String]) -> Result<Vec<(String, Vec<u8>)>, HandlerError> {
        let mut blobs = Vec::with_capacity(ids.len());
        for id in ids {
            let sha = Sha256::parse(id.clone()).map_err(|err| HandlerError::permanent(err.to_string()))?;
            blobs.push((id.clone(), self.datasets.get_verified(&sha).await?));
        }
        Ok(blobs)
    }

    async fn load(&self, sha: &str) -> Result<Artifact, HandlerError> {
        let sha = Sha256::parse(sha.to_owned()).map_err(|e| HandlerError::permanent(e.to_string()))?;
        let bytes = self.models.get_verified(&sha).await?;
        Artifact::from_verified_bytes(&bytes, &sha).map_err(|e| HandlerError::permanent(e.to_string()))
    }

    async fn on_trained(&self, e: Envelope<pb::ModelTrained>) -> Result<(), HandlerError> {
        use pb::get_model_version_request::Selector;
        let ctx = e.follow();
        let t = &e.payload;
        // The registry numbers the version from the same event, usually within milliseconds: poll
        // briefly, then leave it to a delayed redelivery.
        let by_sha = Selector::ArtifactSha256(t.artifact_sha256.clone());
        let mut candidate = None;
        for _ in 0..50 {
            candidate = lookup(&self.registry, &t.pipeline, by_sha.clone()).await?;
            if candidate.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let Some(candidate) = candidate else {
            return Err(HandlerError::Transient(anyhow::anyhow!(
                "registry has not recorded artifact {} yet",
                t.artifact_sha256
            )));
        };
        let spec = self
            .specs
            .get(&t.pipeline)
            .await?
            .ok_or_else(|| HandlerError::permanent(format!("pipeline `{}` not found", t.pipeline)))?;
        let artifact = self.load(&t.artifact_sha256).await?;
        let m = &artifact.manifest;
        let blobs = self.datasets(&m.dataset_ids).await?;
        let (frame, counts) =
            mlops_data::read_datasets_counted(&spec, &blobs).map_err(|err| HandlerError::permanent(err.to_string()))?;
        let (_, holdout_idx) = holdout_split(frame.rows, m.holdout_share, m.seed);
        let holdout = frame.take(&holdout_idx);
        let labels = holdout.target.clone().unwrap_or_default();
        let task = spec.target.task;
        let candidate_scores = artifact.predict_frame(&holdout);

        let production = lookup(&self.registry, &t.pipeline, Selector::Alias("production".into())).await?;
        let champion = match &production {
            Some(p) => Some(self.load(&p.artifact_sha256).await?),
            None => None,
        };
        let production_scores = champion.as_ref().map(|c| c.predict_frame(&holdout));
        let mut measured = gate::Measured {
            holdout: measure::score(task, &labels, &candidate_scores, production_scores.as_deref()),
            newest: None,
            slices: measure::slices(&spec, &holdout, &labels, &candidate_scores, production_scores.as_deref()),
            min_slice_rows: spec.evaluation.min_slice_rows as usize,
        };
        // The newest validated data: the holdout's share of it when the candidate trained on it,
        // all of it when it arrived after the candidate's window was chosen.
        let newest_id = self.runs.history(&t.pipeline).await?.last().map(|(id, _)| id.clone());
        if let Some(id) = &newest_id {
            measured.newest = Some(match m.dataset_ids.iter().position(|d| d == id) {
                Some(k) => {
                    let at = measure::rows_of(&holdout_idx, &counts, k);
                    let pick = |scores: &[f64]| at.iter().map(|&i| scores[i]).collect::<Vec<_>>();
                    let labels = pick(&labels);
                    let production = production_scores.as_deref().map(pick);
                    measure::score(task, &labels, &pick(&candidate_scores), production.as_deref())
                }
                None => {
                    let blobs = self.datasets(std::slice::from_ref(id)).await?;
                    let newest = mlops_data::read_datasets(&spec, &blobs)
                        .map_err(|err| HandlerError::permanent(err.to_string()))?;
                    let labels = newest.target.clone().unwrap_or_default();
                    let production = champion.as_ref().map(|c| c.predict_frame(&newest));
                    measure::score(task, &labels, &artifact.predict_frame(&newest), production.as_deref())
                }
            });
        }
        let (mut passed, mut checks) = gate::judge(task, &spec.gates, &measured);
        if let Some(limits) = &spec.serving_limits {
            let (p99_ms, timed) = single_row_p99(&artifact, &holdout);
            let infra = gate::serving_checks(limits, p99_ms, timed, t.artifact_size);
            passed &= infra.iter().all(|c| c.passed);
            checks.extend(infra);
        }
        let candidate_metrics = measured.holdout.candidate.clone();
        let production_metrics = measured.holdout.production.clone();
        let rows = holdout.rows as u64;
        let event = pb::ModelEvaluated {
            pipeline: t.pipeline.clone(),
            version: candidate.version,
            artifact_sha256: t.artifact_sha256.clone(),
            passed,
            checks,
            candidate_metrics: Some(pb::Metrics { values: finite(candidate_metrics.clone()), rows }),
            production_metrics: production_metrics.map(|m| pb::Metrics { values: finite(m), rows }),
            production_version: production.as_ref().map_or(0, |p| p.version),
            newest_dataset_id: newest_id.unwrap_or_default(),
            candidate_newest_metrics: measured
                .newest
                .as_ref()
                .map(|n| pb::Metrics { values: finite(n.candidate.clone()), rows: n.rows as u64 }),
            production_newest_metrics: measured
                .newest
                .as_ref()
                .and_then(|n| n.production.clone().map(|p| pb::Metrics { values: finite(p), rows: n.rows as u64 })),
            slices: measured.slices.iter().map(measure::slice_proto).collect(),
            decision: None,
        };
        info!(
            pipeline = %t.pipeline,
            version = candidate.version,
            passed,
            auc = candidate_metrics.get("roc_auc").copied().unwrap_or(f64::NAN),
            production = production.as_ref().map_or(0, |p| p.version),
            "model evaluated"
        );
        metrics::counter!("mlops_models_evaluated_total", "pipeline" => t.pipeline.clone(), "passed" => passed.to_string()).increment(1);
        self.bus.publish(&format!("evaluated-{}", t.job_id), &ctx, &event).await?;
        Ok(())
    }
}

/// Times single-row predictions (preprocessing included) on up to 2,000 holdout rows, cycling
/// through them when there are fewer than 200: the p99 in milliseconds, and how many were timed.
fn single_row_p99(artifact: &Artifact, holdout: &mlops_shared::table::Frame) -> (f64, usize) {
    if holdout.rows == 0 {
        return (f64::NAN, 0);
    }
    let rows: Vec<_> = (0..holdout.rows.min(2_000)).map(|i| holdout.row(i)).collect();
    let n = rows.len().max(200);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let row = &rows[i % rows.len()];
        let started = std::time::Instant::now();
        std::hint::black_box(artifact.predict(std::hint::black_box(row)));
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    (gate::p99(&mut samples), n)
}

fn finite(m: std::collections::BTreeMap<String, f64>) -> std::collections::HashMap<String, f64> {
    m.into_iter().filter(|(_, v)| v.is_finite()).collect()
}
