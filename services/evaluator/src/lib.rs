//! The evaluator: judges each trained model on its holdout rows, and the production model on the
//! same rows, against the spec's gates; publishes `model.evaluated` with pass or fail and every
//! check's numbers.

mod batch;
pub mod error;
pub mod gate;
pub mod importance;
pub mod judge;
pub mod measure;
pub mod staleness;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_proto::registry_client::RegistryClient;
use mlops_shared::bus::{BATCHES_BUCKET, Bus, ConsumerSpec, DATASETS_BUCKET, JOBS_KV, MODELS_BUCKET, off_runtime};

use crate::error::EvaluatorError;
use mlops_shared::config::{NatsArgs, RegistryArgs};
use mlops_shared::events::Envelope;
use mlops_shared::ids::Sha256;
use mlops_shared::model::Model;
use mlops_shared::objects::Objects;
use mlops_shared::runs::Runs;
use mlops_shared::service::Service;
use mlops_shared::spec::{PipelineSpec, SpecStore};
use pb::get_model_version_request::Selector;
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
    /// HTTP (/healthz, /metrics) and gRPC (`mlops.v1.Evaluator`) listen address.
    #[arg(long, env = "MLOPS_LISTEN", default_value = "127.0.0.1:9103")]
    pub listen: SocketAddr,
    /// How long a batch job may go without a heartbeat before another replica gets it.
    #[arg(long, env = "MLOPS_JOB_ACK_WAIT_SECS", default_value_t = 30)]
    pub ack_wait_secs: u64,
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
    /// Feature views, for pipelines that look features up.
    features: mlops_features::FeatureStore,
    registry: RegistryClient<Channel>,
    runs: Runs,
    slots: mlops_shared::schedule::Slots,
    /// Runs imported ONNX models.
    onnx: mlops_onnx::Engine,
    /// Batch jobs' outputs, and the record of jobs done.
    batches: Objects,
    jobs: async_nats::jetstream::kv::Store,
}

/// Runs the evaluator until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Before anything connects: an ONNX Runtime named by a path that is not a file stops the start.
    let onnx = mlops_onnx::Engine::from_env()?;
    let mut service = Service::start("evaluator", &config.nats, &config.tls, &shutdown).await?;
    let ev = Evaluator::open(&service.bus, &config.registry.registry_url, config.tls.tls_ca.as_deref(), onnx).await?;
    let (schedules, token) = (ev.clone(), service.shutdown());
    service.spawn(async move {
        schedules.run_staleness_schedules(token).await;
        Ok(())
    });
    // A durable of its own: the one named `evaluator` took `model.trained` before versions were
    // announced by `model.registered`.
    let registered = ConsumerSpec::events::<pb::ModelRegistered>("evaluator-registered");
    service.consume(registered, ev.clone(), |ev, e| async move { Ok(ev.on_registered(e).await?) });
    // Batch jobs: one at a time per replica, so queued jobs spread over the replicas.
    let batch = ConsumerSpec {
        one_at_a_time: true,
        ack_wait: std::time::Duration::from_secs(config.ack_wait_secs.max(3)),
        ..ConsumerSpec::events::<pb::BatchRequested>("evaluator-batch")
    };
    service.consume(batch, ev.clone(), |ev, e| async move { Ok(ev.on_batch(e).await?) });
    let api = pb::evaluator_server::EvaluatorServer::new(staleness::Api(ev));
    service.serve(listener, Some(tonic::service::Routes::new(api).into_axum_router())).await
}

/// Asks the registry for one version; `None` when it has none.
async fn lookup(
    registry: &RegistryClient<Channel>,
    pipeline: &str,
    selector: pb::get_model_version_request::Selector,
) -> Result<Option<pb::ModelVersion>, EvaluatorError> {
    let req = pb::GetModelVersionRequest { pipeline: pipeline.into(), selector: Some(selector) };
    match registry.clone().get_model_version(mlops_shared::telemetry::traced(req)).await {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(EvaluatorError::Registry(s.message().to_owned())),
    }
}

impl Evaluator {
    /// Opens the buckets and stores, and a lazy connection to the registry at `registry_url`
    /// (trusting the CA file `ca` when it is `https://`).
    pub async fn open(
        bus: &Bus,
        registry_url: &str,
        ca: Option<&std::path::Path>,
        onnx: mlops_onnx::Engine,
    ) -> anyhow::Result<Arc<Self>> {
        let channel = mlops_shared::tls::endpoint(registry_url, ca)
            .with_context(|| format!("registry url {registry_url:?}"))?
            .connect_lazy();
        Ok(Arc::new(Self {
            datasets: bus.objects(DATASETS_BUCKET).await?,
            models: bus.objects(MODELS_BUCKET).await?,
            specs: SpecStore::open(bus).await?,
            features: mlops_features::FeatureStore::open(bus).await?,
            registry: RegistryClient::new(channel),
            runs: Runs::open(bus).await?,
            slots: mlops_shared::schedule::Slots::open(bus).await?,
            onnx,
            batches: bus.objects(BATCHES_BUCKET).await?,
            jobs: bus.kv(JOBS_KV).await?,
            bus: bus.clone(),
        }))
    }

    /// The datasets `ids`, verified, as (id, bytes).
    async fn datasets(&self, ids: &[String]) -> Result<Vec<(String, Vec<u8>)>, EvaluatorError> {
        let mut blobs = Vec::with_capacity(ids.len());
        for id in ids {
            let sha = Sha256::parse(id.clone()).map_err(|err| EvaluatorError::BadData(err.to_string()))?;
            blobs.push((id.clone(), self.datasets.get_verified(&sha).await?));
        }
        Ok(blobs)
    }

    /// For a pipeline that looks features up: the spec its models are judged under (its
    /// features, then the looked-up ones) and the views to join datasets with (their logs are
    /// read at each join); other pipelines' spec as it is.
    pub(crate) async fn looked_up(
        &self,
        spec: PipelineSpec,
    ) -> Result<(PipelineSpec, Option<Arc<mlops_features::LookedUp>>), EvaluatorError> {
        let Some(lookup) = &spec.lookup else { return Ok((spec, None)) };
        let looked = self.features.looked_up(lookup).await?;
        let model_spec = looked.model_spec(&spec).map_err(|e| EvaluatorError::BadData(e.to_string()))?;
        Ok((model_spec, Some(Arc::new(looked))))
    }

    /// The datasets `ids`, verified, with any looked-up features joined in as of each row's time.
    pub(crate) async fn datasets_joined(
        &self,
        looked: &Option<Arc<mlops_features::LookedUp>>,
        ids: &[String],
    ) -> Result<Vec<(String, Vec<u8>)>, EvaluatorError> {
        let blobs = self.datasets(ids).await?;
        let Some(looked) = looked.clone() else { return Ok(blobs) };
        off_runtime(move || {
            let ids: Vec<String> = blobs.iter().map(|(id, _)| id.clone()).collect();
            let sources = blobs.into_iter().map(|(id, bytes)| (id, mlops_data::Source::Bytes(bytes.into())));
            let joined = looked.join_datasets(sources.collect()).map_err(|e| match e.is_transient() {
                true => EvaluatorError::Features(mlops_features::StoreError::Nats {
                    what: "offline",
                    message: e.to_string(),
                }),
                false => EvaluatorError::BadData(format!("looking features up: {e}")),
            })?;
            Ok(ids.into_iter().zip(joined).map(|(id, (bytes, _))| (id, bytes)).collect())
        })
        .await
    }

    /// The model of artifact `sha`, verified and made ready to answer (off the runtime: a large
    /// model parses for a while).
    async fn load(&self, sha: &str) -> Result<Arc<dyn Model>, EvaluatorError> {
        let sha = Sha256::parse(sha.to_owned()).map_err(|e| EvaluatorError::BadArtifact(e.to_string()))?;
        let bytes = self.models.get_verified(&sha).await?;
        let engine = self.onnx.clone();
        off_runtime(move || engine.load_verified(&bytes, &sha).map_err(EvaluatorError::BadArtifact)).await
    }

    /// Judges a newly registered version and publishes `model.evaluated`. The inputs are fetched
    /// here; the computing runs on the blocking pool.
    async fn on_registered(&self, e: Envelope<pb::ModelRegistered>) -> Result<(), EvaluatorError> {
        let ctx = e.follow();
        let r = &e.payload;
        let t = r
            .trained
            .as_ref()
            .ok_or_else(|| EvaluatorError::BadEvent("model.registered without its `trained`".into()))?;
        let inputs = self.inputs(t).await?;
        let (production_version, newest_id) =
            (inputs.production_version, inputs.newest.as_ref().map(|n| n.id().to_owned()));
        let j = off_runtime(move || judge::judge(&inputs)).await?;
        let metrics = |m: &gate::Metrics, rows: u64| pb::Metrics { values: finite(m.clone()), rows };
        let newest = j.measured.newest.as_ref();
        let event = pb::ModelEvaluated {
            pipeline: t.pipeline.clone(),
            version: r.version,
            artifact_sha256: t.artifact_sha256.clone(),
            passed: j.passed,
            checks: j.checks,
            candidate_metrics: Some(metrics(&j.measured.holdout.candidate, j.rows)),
            production_metrics: j.measured.holdout.production.as_ref().map(|m| metrics(m, j.rows)),
            production_version,
            newest_dataset_id: newest_id.unwrap_or_default(),
            candidate_newest_metrics: newest.map(|n| metrics(&n.candidate, n.rows as u64)),
            production_newest_metrics: newest.and_then(|n| n.production.as_ref().map(|p| metrics(p, n.rows as u64))),
            slices: j.measured.slices.iter().map(measure::slice_proto).collect(),
            decision: None,
            importance: j.importance,
            warnings: j.warnings,
        };
        info!(
            pipeline = %t.pipeline,
            version = r.version,
            passed = j.passed,
            auc = j.measured.holdout.candidate.get("roc_auc").copied().unwrap_or(f64::NAN),
            production = production_version,
            "model evaluated"
        );
        metrics::counter!("mlops_models_evaluated_total", "pipeline" => t.pipeline.clone(), "passed" => j.passed.to_string()).increment(1);
        self.bus.publish(&format!("evaluated-{}", t.job_id), &ctx, &event).await?;
        Ok(())
    }

    /// Fetches and verifies what judging `t` reads: the spec, both artifacts, the candidate's
    /// window and the newest validated data.
    async fn inputs(&self, t: &pb::ModelTrained) -> Result<judge::Inputs, EvaluatorError> {
        let spec =
            self.specs.get(&t.pipeline).await?.ok_or_else(|| EvaluatorError::UnknownPipeline(t.pipeline.clone()))?;
        let (spec, looked) = self.looked_up(spec).await?;
        let candidate = self.load(&t.artifact_sha256).await?;
        let production = lookup(&self.registry, &t.pipeline, Selector::Alias("production".into())).await?;
        let champion = match &production {
            Some(p) => Some(self.load(&p.artifact_sha256).await?),
            None => None,
        };
        // The window and a newest dataset past it, joined in one reading of each view's log.
        let mut ids = candidate.manifest().dataset_ids.clone();
        let newest_id = self.runs.history(&t.pipeline).await?.pop().map(|a| a.id);
        let after = newest_id.as_ref().filter(|id| !ids.contains(id)).cloned();
        ids.extend(after.clone());
        let mut window = self.datasets_joined(&looked, &ids).await?;
        let newest = match (newest_id, after) {
            (None, _) => None,
            (Some(_), Some(id)) => Some(judge::Newest::After(id, window.pop().map(|(_, b)| b).unwrap_or_default())),
            (Some(id), None) => {
                let index = window.iter().position(|(d, _)| *d == id).unwrap_or_default();
                Some(judge::Newest::InWindow { id, index })
            }
        };
        let production_version = production.map_or(0, |p| p.version);
        Ok(judge::Inputs {
            spec,
            candidate,
            artifact_size: t.artifact_size,
            champion,
            production_version,
            window,
            newest,
        })
    }
}

fn finite(m: std::collections::BTreeMap<String, f64>) -> std::collections::HashMap<String, f64> {
    m.into_iter().filter(|(_, v)| v.is_finite()).collect()
}
